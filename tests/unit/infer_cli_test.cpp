// infer_cli_test.cpp: `cpn-agent infer` end to end (the real binary, the built plugins): the
// digits model on the CPU through the backend plugin, outputs written in each format, and every
// mistake an operator can make answered with what is wrong.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tensor_io.hpp"
#include "test_support.hpp"

namespace cpn {
namespace {

std::string fixture(const std::string& name) { return std::string(CPN_FIXTURES_DIR) + "/infer/" + name; }

std::string infer_cmd(const test::TempDir& dir, const std::string& args) {
    dir.write("agent.yaml", std::string("plugins:\n  dir: ") + CPN_PLUGIN_DIR + "\n");
    return std::string(CPN_AGENT_BIN) + " --config " + dir.file("agent.yaml") + " infer " + args + " 2>&1";
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(InferCli, RunsTheDigitsModelOnTheCpuPluginAndWritesTheOutputs) {
    test::TempDir dir;
    const std::string model = fixture("digits-cnn.onnx"), x = fixture("digits-test-x.npy");
    auto r = test::run_command(infer_cmd(dir, "-m " + model + " -i image=" + x + " -o " + dir.path() + " --json --repeat 2"));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const nlohmann::json m = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    EXPECT_EQ(m["backend"], "cpu");
    EXPECT_EQ(m["nodes"], 6);
    EXPECT_EQ(m["model_nodes"], 10);
    EXPECT_EQ(m["fallback_nodes"], 0);
    EXPECT_GT(m["gflops_per_s"].get<double>(), 0);
    const infer::Tensor logits = infer::read_tensor(slurp(dir.file("logits.npy")), "logits.npy");
    const infer::Tensor want = infer::read_tensor(slurp(fixture("digits-test-logits.npy")), "ref");
    ASSERT_EQ(logits.shape, want.shape);
    for (int64_t i = 0; i < want.numel(); ++i)
        ASSERT_NEAR(logits.data<float>()[i], want.data<float>()[i], 1e-3 + 1e-3 * std::fabs(want.data<float>()[i])) << i;
    // The other formats, and the human summary.
    r = test::run_command(infer_cmd(dir, "-m " + model + " -i image=" + x + " -o " + dir.path() + " --format pb"));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("2 Conv+BatchNormalization"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("logits: float32 [450,10] -> "), std::string::npos) << r.out;
    const infer::Tensor pb = infer::read_tensor(slurp(dir.file("logits.pb")), "logits.pb");
    EXPECT_EQ(std::memcmp(pb.raw(), logits.raw(), logits.bytes()), 0);
    // fp16 asked of the CPU: it computes float32 and the metrics and the summary say so.
    r = test::run_command(infer_cmd(dir, "-m " + model + " -i image=" + x + " --precision fp16 --json"));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const nlohmann::json h = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    EXPECT_EQ(h["precision"], "fp32") << h.dump();
    EXPECT_EQ(h["precision_note"], "cpu computes float32 only: fp16 was asked for") << h.dump();
    EXPECT_EQ(m["precision"], "fp32");
    EXPECT_FALSE(m.contains("precision_note"));
    r = test::run_command(infer_cmd(dir, "-m " + model + " -i image=" + x + " --precision fp16"));
    EXPECT_NE(r.out.find("precision: fp32 (cpu computes float32 only: fp16 was asked for)"), std::string::npos) << r.out;
}

TEST(InferCli, MistakesSayWhatIsWrong) {
    test::TempDir dir;
    const std::string model = fixture("digits-cnn.onnx"), x = fixture("digits-test-x.npy");
    struct Case {
        std::string args;
        int rc;
        std::string says;
    };
    dir.write("garbage.onnx", "\x08\x01 this is not a model");
    dir.write("bad.npy", "\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}");
    const std::vector<Case> cases = {
        {"-m " + dir.file("missing.onnx") + " -i image=" + x, 1, "--model: cannot open " + dir.file("missing.onnx")},
        {"-m " + model + " -i image=" + dir.file("none.npy"), 1, "--input image: cannot open " + dir.file("none.npy")},
        {"-m " + dir.file("garbage.onnx") + " -i image=" + x, 1, "not an ONNX model"},
        {"-m " + model + " -i image", 2, "--input 'image': expected NAME=FILE"},
        {"-m " + model + " -i image=" + dir.file("bad.npy"), 1, "--input image: "},
        {"-m " + model + " -i pixels=" + x, 1, "input 'image' is missing (the model's inputs: image)"},
        {"-m " + model + " -i image=" + x + " --device gpu9", 2, "--device gpu9: no such device"},
        {"-m " + model + " -i image=" + x + " --backend levelzero", 2, "has no usable path through it"},
        {"-m " + model + " -i image=" + x + " -o " + dir.file("nodir"), 1, "not a directory"},
        {"-m " + model + " -i image=" + x + " --precision fp64", 2, "--precision: fp64 not in {fp32,fp16}"},
    };
    for (const Case& c : cases) {
        auto r = test::run_command(infer_cmd(dir, c.args));
        EXPECT_EQ(r.exit_code, c.rc) << c.args << "\n" << r.out;
        EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args << "\n" << r.out;
    }
}

}  // namespace
}  // namespace cpn
