// cuda_params_json_test.cpp: the CUDA plugin's small params_json reader, which runs only on a GPU
// machine in the plugin itself, tested here on the host (built only when the CUDA backend is).
#ifdef CPN_TEST_CUDA_PARAMS_JSON
#include "params_json.hpp"

#include <gtest/gtest.h>

namespace cpn::cuda {
namespace {

TEST(CudaParamsJson, NumberMember) {
    double v = 0;
    bool found = false;
    std::string err;
    ASSERT_TRUE(json_number_member(R"({"a": 2.5, "b": {"x": [1, "}"]}})", "a", &v, &found, &err)) << err;
    EXPECT_TRUE(found);
    EXPECT_DOUBLE_EQ(v, 2.5);
    ASSERT_TRUE(json_number_member("{}", "a", &v, &found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(json_number_member(R"({"a": 1, "a": -3e2})", "a", &v, &found, &err));
    EXPECT_DOUBLE_EQ(v, -300);  // the last of a repeated key
}

TEST(CudaParamsJson, ErrorsSayWhat) {
    double v = 0;
    bool found = false;
    std::string err;
    EXPECT_FALSE(json_number_member(R"({"a": "2"})", "a", &v, &found, &err));
    EXPECT_EQ(err, "params_json member \"a\" is not a number");
    EXPECT_FALSE(json_number_member(R"({"a": 2x})", "a", &v, &found, &err));
    EXPECT_NE(err.find("params_json is not valid JSON"), std::string::npos) << err;
    EXPECT_FALSE(json_number_member("[1]", "a", &v, &found, &err));
    EXPECT_EQ(err, "params_json is not a JSON object");
    EXPECT_FALSE(json_number_member(R"({"a": 1} trailing)", "a", &v, &found, &err));
    EXPECT_NE(err.find("trailing characters"), std::string::npos) << err;
}

TEST(CudaParamsJson, ObjectMembersKeepRawValues) {
    std::vector<std::pair<std::string, std::string>> m;
    std::string err;
    ASSERT_TRUE(json_object_members(R"({"reps": 12, "bytes": 4096, "x": {"y": 1}})", &m, &err)) << err;
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0], (std::pair<std::string, std::string>{"reps", "12"}));
    EXPECT_EQ(m[2].second, R"({"y": 1})");
}

}  // namespace
}  // namespace cpn::cuda
#endif
