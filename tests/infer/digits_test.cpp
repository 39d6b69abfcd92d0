// digits_test.cpp: a real model on real data. The CNN trained by
// workloads/infer/models/train_digits.py on scikit-learn's handwritten digits, run on the 450
// held-out images: at least 95 % correct, and the logits agree with PyTorch's.
#include <cmath>
#include <fstream>

#include <gtest/gtest.h>

#include "executor.hpp"
#include "onnx_import.hpp"
#include "optimize.hpp"
#include "tensor_io.hpp"

namespace cpn::infer {
namespace {

std::string fixture(const std::string& name) {
    std::ifstream in(std::string(CPN_FIXTURES_DIR) + "/infer/" + name, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

double accuracy(const Tensor& logits, const Tensor& labels) {
    const int64_t n = logits.shape[0], k = logits.shape[1];
    int64_t right = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float* row = logits.data<float>() + i * k;
        int64_t best = 0;
        for (int64_t j = 1; j < k; ++j)
            if (row[j] > row[best]) best = j;
        right += best == labels.data<int64_t>()[i];
    }
    return static_cast<double>(right) / static_cast<double>(n);
}

TEST(DigitsCnn, HeldOutAccuracyAtLeast95PercentAndLogitsMatchPyTorch) {
    const Model m = load_onnx_file(std::string(CPN_FIXTURES_DIR) + "/infer/digits-cnn.onnx", {});
    const Tensor x = read_tensor(fixture("digits-test-x.npy"), "digits-test-x.npy");
    const Tensor y = read_tensor(fixture("digits-test-y.npy"), "digits-test-y.npy");
    const Tensor ref = read_tensor(fixture("digits-test-logits.npy"), "digits-test-logits.npy");
    ASSERT_EQ(x.shape, (Shape{450, 1, 8, 8}));
    RunStats st;
    const auto out = run_graph(m.graph, {{"image", x}}, {}, &st);
    const Tensor& logits = out.at("logits");
    ASSERT_EQ(logits.shape, (Shape{450, 10}));
    const double acc = accuracy(logits, y);
    std::printf("digits CNN on cpu: %.2f %% of %lld held-out images right (%zu nodes, %.1f ms, peak %zu KiB)\n",
                acc * 100, static_cast<long long>(y.numel()), st.nodes, st.seconds * 1e3, st.peak_bytes / 1024);
    EXPECT_GE(acc, 0.95);
    double worst = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
        const double g = logits.data<float>()[i], w = ref.data<float>()[i];
        worst = std::max(worst, std::fabs(g - w) / (1e-3 + std::fabs(w)));
    }
    EXPECT_LT(worst, 1e-3) << "largest relative difference from PyTorch's logits";

    // The batch dimension is dynamic: one image at a time gives the same answers.
    for (int64_t i : {0, 7, 449}) {
        Tensor one = make_tensor(DType::f32, {1, 1, 8, 8});
        std::memcpy(one.raw(), x.data<float>() + i * 64, 64 * sizeof(float));
        const Tensor l = run_graph(m.graph, {{"image", one}}).at("logits");
        for (int j = 0; j < 10; ++j) EXPECT_NEAR(l.data<float>()[j], logits.data<float>()[i * 10 + j], 1e-4) << i;
    }
}

TEST(DigitsCnn, OptimizedGraphGivesTheSameLogits) {
    const Model plain = load_onnx_file(std::string(CPN_FIXTURES_DIR) + "/infer/digits-cnn.onnx", {});
    Model opt = plain;
    const OptimizeReport r = optimize(opt.graph);
    std::printf("optimize: %s; %zu -> %zu nodes\n", r.summary().c_str(), plain.graph.nodes.size(), opt.graph.nodes.size());
    EXPECT_EQ(r.conv_bn, 2);
    EXPECT_EQ(r.activations, 2);
    EXPECT_EQ(opt.graph.nodes.size(), plain.graph.nodes.size() - 4);
    const Tensor x = read_tensor(fixture("digits-test-x.npy"), "digits-test-x.npy");
    const Tensor a = run_graph(plain.graph, {{"image", x}}).at("logits");
    const Tensor b = run_graph(opt.graph, {{"image", x}}).at("logits");
    for (int64_t i = 0; i < a.numel(); ++i)
        ASSERT_NEAR(a.data<float>()[i], b.data<float>()[i], 1e-4 + 1e-4 * std::fabs(a.data<float>()[i])) << i;
}

TEST(TensorIo, FormatsRoundTripAndBadFilesAreRefused) {
    Tensor t = make_tensor(DType::f32, {2, 3});
    for (int i = 0; i < 6; ++i) t.data<float>()[i] = static_cast<float>(i) * 0.5f;
    for (TensorFormat f : {TensorFormat::npy, TensorFormat::pb, TensorFormat::cpnt}) {
        const Tensor back = read_tensor(write_tensor(t, f, "x"), "t");
        EXPECT_EQ(back.shape, t.shape);
        EXPECT_EQ(back.dtype, DType::f32);
        EXPECT_EQ(std::memcmp(back.raw(), t.raw(), t.bytes()), 0);
    }
    std::string npy = write_tensor(t, TensorFormat::npy);
    auto error = [](const std::string& b) {
        try {
            read_tensor(b, "in.npy", 1000);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_NE(error(npy.substr(0, npy.size() - 4)).find("in.npy: .npy data is 20 bytes, the shape [2, 3] of float32 needs 24"),
              std::string::npos)
        << error(npy.substr(0, npy.size() - 4));
    std::string big = npy;
    big.replace(big.find("(2, 3)"), 6, "(9999, 9999)");
    EXPECT_NE(error(big).find("more than the limit of 1000 elements"), std::string::npos) << error(big);
    std::string cpnt = write_tensor(t, TensorFormat::cpnt);
    EXPECT_NE(error(cpnt.substr(0, 10)).find("truncated"), std::string::npos);
    EXPECT_NE(error("hello world, not a tensor").find("in.npy"), std::string::npos);
}

}  // namespace
}  // namespace cpn::infer
