// onnx_node_test.cpp: ONNX's own backend tests (onnx_testdata.hpp) against the CPU operators,
// run directly by the executor.
#include <gtest/gtest.h>

#include "onnx_testdata.hpp"

namespace cpn::infer {
namespace {

namespace fs = std::filesystem;
using namespace testdata;

class OnnxNode : public ::testing::TestWithParam<std::string> {};

TEST_P(OnnxNode, EverySupportedTestPassesOnCpu) {
    if (!fs::is_directory(CPN_ONNX_TESTDATA)) GTEST_SKIP() << CPN_ONNX_TESTDATA << " is missing (install libonnx-testdata)";
    Counts c = run_set(GetParam(), "cpu", run_directly);
    EXPECT_EQ(c.fail, 0) << c.fail << " test(s) failed";
}

INSTANTIATE_TEST_SUITE_P(Sets, OnnxNode, ::testing::ValuesIn(testdata::sets()),
                         [](const auto& p) { return testdata::test_name(p.param); });

}  // namespace
}  // namespace cpn::infer
