// reference_test.cpp: the capacity reference model (task.infer) and the segment format a
// backend receives (save_onnx: the optimised graph, fused activations included).
#include <cmath>

#include <gtest/gtest.h>

#include "executor.hpp"
#include "onnx_import.hpp"
#include "optimize.hpp"
#include "reference_model.hpp"

namespace cpn::infer {
namespace {

Tensor random_images(int64_t batch) {
    Tensor t = make_tensor(DType::f32, {batch, 3, 96, 96});
    uint32_t s = 7;
    for (int64_t i = 0; i < t.numel(); ++i) {
        s = s * 1664525u + 1013904223u;
        t.data<float>()[i] = static_cast<float>(s >> 8) / 16777216.0f;
    }
    return t;
}

TEST(ReferenceModel, IsDeterministicLoadsOptimisesAndGivesProbabilities) {
    const std::string bytes = reference_model_onnx();
    EXPECT_EQ(bytes, reference_model_onnx()) << "the reference model must be the same bytes every time";
    Model m = load_onnx(bytes, {});
    const size_t before = m.graph.nodes.size();
    const OptimizeReport r = optimize(m.graph);
    EXPECT_EQ(r.conv_bn, 1) << r.summary();
    EXPECT_EQ(r.activations, 5) << r.summary();  // four Relu and the Clip(0, 6)
    EXPECT_EQ(m.graph.nodes.size(), before - 6);
    RunStats st;
    const auto out = run_graph(m.graph, {{"image", random_images(2)}}, {}, &st);
    const Tensor& p = out.at("probabilities");
    ASSERT_EQ(p.shape, (Shape{2, 1000}));
    for (int b = 0; b < 2; ++b) {
        double sum = 0;
        for (int i = 0; i < 1000; ++i) {
            const float v = p.data<float>()[b * 1000 + i];
            ASSERT_TRUE(std::isfinite(v) && v >= 0) << v;
            sum += v;
        }
        EXPECT_NEAR(sum, 1.0, 1e-4);
    }
    // About 0.18 GFLOP per image, as docs/capacity.md says.
    EXPECT_NEAR(st.flops / 2 / 1e9, 0.184, 0.01) << st.flops;
}

TEST(SegmentFormat, SavedGraphLoadsBackWithItsFusedActivations) {
    Model m = load_onnx(reference_model_onnx(), {});
    optimize(m.graph);
    const Model back = load_onnx(save_onnx(m.graph, m.opsets), {});
    ASSERT_EQ(back.graph.nodes.size(), m.graph.nodes.size());
    int fused = 0;
    for (size_t i = 0; i < m.graph.nodes.size(); ++i) {
        EXPECT_EQ(back.graph.nodes[i].op_type, m.graph.nodes[i].op_type);
        EXPECT_EQ(back.graph.nodes[i].fused_activation, m.graph.nodes[i].fused_activation);
        EXPECT_EQ(back.graph.nodes[i].fused_alpha, m.graph.nodes[i].fused_alpha);
        EXPECT_EQ(back.graph.nodes[i].fused_beta, m.graph.nodes[i].fused_beta);
        fused += !m.graph.nodes[i].fused_activation.empty();
    }
    EXPECT_EQ(fused, 5);
    const Tensor x = random_images(1);
    const Tensor a = run_graph(m.graph, {{"image", x}}).at("probabilities");
    const Tensor b = run_graph(back.graph, {{"image", x}}).at("probabilities");
    ASSERT_EQ(a.bytes(), b.bytes());
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.bytes()), 0);
}

}  // namespace
}  // namespace cpn::infer
