// conv_test.cpp: the Conv operator against a plain double-precision convolution, over the
// geometries its two float32 paths treat differently (oneDNN, onednn.cpp; im2col + sgemm and
// the depthwise loop, ops_nn.cpp): groups, depthwise with a channel multiplier, strides,
// asymmetric pads, dilations, 1-D and 3-D, batches, every fused activation, with and without
// bias, on one thread and two, through the operator with oneDNN allowed and switched off.
// oneDNN is also called directly, so a silent fallback cannot hide a wrong oneDNN setup.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "attr_helpers.hpp"
#include "executor.hpp"
#include "onednn.hpp"

namespace cpn::infer {
namespace {

struct Case {
    std::string name;
    int64_t N, C, M, G;
    std::vector<int64_t> in, k, s, d, pads;  // pads: begins then ends, as ONNX
    bool bias;
    std::string act;  // Node::fused_activation ("" none)
    float alpha = 0, beta = 0;
};

Tensor random_tensor(const Shape& s, uint32_t seed) {
    Tensor t = make_tensor(DType::f32, s);
    for (int64_t i = 0; i < t.numel(); ++i) {
        seed = seed * 1664525u + 1013904223u;
        t.data<float>()[i] = static_cast<float>(seed >> 8) / 8388608.0f - 1.0f;  // [-1, 1)
    }
    return t;
}

double activate(double v, const Case& c) {
    if (c.act == "Relu") return v > 0 ? v : 0;
    if (c.act == "LeakyRelu") return v < 0 ? c.alpha * v : v;
    if (c.act == "Clip") return std::min<double>(std::max<double>(v, c.alpha), c.beta);
    if (c.act == "Sigmoid") return 1 / (1 + std::exp(-v));
    if (c.act == "HardSigmoid") return std::max(0.0, std::min(1.0, c.alpha * v + c.beta));
    if (c.act == "Tanh") return std::tanh(v);
    if (c.act == "HardSwish") return v * std::max(0.0, std::min(1.0, v / 6 + 0.5));
    return v;
}

struct Geometry {
    size_t r;
    std::vector<int64_t> out;
};

Geometry geometry(const Case& c) {
    Geometry g{c.in.size(), {}};
    for (size_t i = 0; i < g.r; ++i) {
        const int64_t ek = (c.k[i] - 1) * c.d[i] + 1;
        g.out.push_back((c.in[i] + c.pads[i] + c.pads[i + g.r] - ek) / c.s[i] + 1);
    }
    return g;
}

// The convolution by definition, in double, over spatial dims padded to three.
std::vector<double> reference(const Case& c, const Tensor& X, const Tensor& W, const Tensor* B) {
    const Geometry geo = geometry(c);
    const size_t off = 3 - geo.r;
    int64_t in[3] = {1, 1, 1}, out[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, d[3] = {1, 1, 1}, p[3] = {0, 0, 0};
    for (size_t i = 0; i < geo.r; ++i) {
        in[off + i] = c.in[i], out[off + i] = geo.out[i], k[off + i] = c.k[i];
        s[off + i] = c.s[i], d[off + i] = c.d[i], p[off + i] = c.pads[i];
    }
    const int64_t Cg = c.C / c.G, Mg = c.M / c.G, Osz = out[0] * out[1] * out[2], Isz = in[0] * in[1] * in[2];
    const int64_t K = k[0] * k[1] * k[2];
    std::vector<double> y(static_cast<size_t>(c.N * c.M * Osz));
    for (int64_t n = 0; n < c.N; ++n)
        for (int64_t m = 0; m < c.M; ++m)
            for (int64_t o0 = 0; o0 < out[0]; ++o0)
                for (int64_t o1 = 0; o1 < out[1]; ++o1)
                    for (int64_t o2 = 0; o2 < out[2]; ++o2) {
                        double acc = B != nullptr ? B->data<float>()[m] : 0.0;
                        const int64_t g = m / Mg;
                        for (int64_t ci = 0; ci < Cg; ++ci)
                            for (int64_t a = 0; a < k[0]; ++a)
                                for (int64_t b = 0; b < k[1]; ++b)
                                    for (int64_t e = 0; e < k[2]; ++e) {
                                        const int64_t i0 = o0 * s[0] - p[0] + a * d[0];
                                        const int64_t i1 = o1 * s[1] - p[1] + b * d[1];
                                        const int64_t i2 = o2 * s[2] - p[2] + e * d[2];
                                        if (i0 < 0 || i0 >= in[0] || i1 < 0 || i1 >= in[1] || i2 < 0 || i2 >= in[2]) continue;
                                        const double xv =
                                            X.data<float>()[(n * c.C + g * Cg + ci) * Isz + (i0 * in[1] + i1) * in[2] + i2];
                                        const double wv = W.data<float>()[(m * Cg + ci) * K + (a * k[1] + b) * k[2] + e];
                                        acc += xv * wv;
                                    }
                        y[static_cast<size_t>((n * c.M + m) * Osz + (o0 * out[1] + o1) * out[2] + o2)] = activate(acc, c);
                    }
    return y;
}

Node conv_node(const Case& c) {
    Node n;
    n.name = c.name;
    n.op_type = "Conv";
    n.opset = 13;
    n.inputs = c.bias ? std::vector<std::string>{"x", "w", "b"} : std::vector<std::string>{"x", "w"};
    n.outputs = {"y"};
    n.in_types.assign(n.inputs.size(), DType::f32);
    n.out_types = {DType::f32};
    n.attrs.where = n.where();
    n.attrs.map["kernel_shape"] = test::ints_attr(c.k);
    n.attrs.map["strides"] = test::ints_attr(c.s);
    n.attrs.map["dilations"] = test::ints_attr(c.d);
    n.attrs.map["pads"] = test::ints_attr(c.pads);
    n.attrs.map["group"] = test::int_attr(c.G);
    n.fused_activation = c.act;
    n.fused_alpha = c.alpha;
    n.fused_beta = c.beta;
    return n;
}

ConvDims conv_dims(const Case& c) {
    const Geometry geo = geometry(c);
    ConvDims d;
    d.r = static_cast<int>(geo.r);
    d.N = c.N, d.C = c.C, d.M = c.M, d.G = c.G;
    for (size_t i = 0; i < geo.r; ++i) {
        d.in[i] = c.in[i], d.out[i] = geo.out[i], d.k[i] = c.k[i], d.s[i] = c.s[i], d.d[i] = c.d[i];
        d.pb[i] = c.pads[i], d.pe[i] = c.pads[i + geo.r];
    }
    return d;
}

Act conv_act(const Case& c) {
    Act a;
    a.a = c.alpha, a.b = c.beta;
    if (c.act == "Relu") a.k = Act::relu;
    else if (c.act == "LeakyRelu") a.k = Act::leaky;
    else if (c.act == "Clip") a.k = Act::clip;
    else if (c.act == "Sigmoid") a.k = Act::sigmoid;
    else if (c.act == "HardSigmoid") a.k = Act::hardsigmoid;
    else if (c.act == "Tanh") a.k = Act::tanh_;
    else if (c.act == "HardSwish") a.k = Act::hardswish;
    return a;
}

// Max |got - want| relative to max |want| (tiny absolute floor for all-zero outputs).
double rel_error(const float* got, const std::vector<double>& want) {
    double err = 0, scale = 1e-6;
    for (size_t i = 0; i < want.size(); ++i) {
        err = std::max(err, std::abs(got[i] - want[i]));
        scale = std::max(scale, std::abs(want[i]));
    }
    return err / scale;
}

const std::vector<Case>& cases() {
    static const std::vector<Case> v = {
        {"plain3x3_relu", 2, 5, 7, 1, {9, 11}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, true, "Relu"},
        {"strided_dilated_asymmetric", 1, 4, 6, 1, {13, 10}, {3, 2}, {2, 3}, {2, 1}, {0, 2, 1, 1}, false, ""},
        {"grouped_clip", 3, 6, 4, 2, {8, 8}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, true, "Clip", 0.0f, 6.0f},
        {"depthwise_x2_hardswish", 2, 8, 16, 8, {10, 9}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}, true, "HardSwish"},
        {"depthwise_leaky", 1, 32, 32, 32, {14, 14}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, true, "LeakyRelu", 0.1f},
        {"conv1d_dilated_leaky", 2, 3, 5, 1, {20}, {5}, {1}, {3}, {2, 4}, true, "LeakyRelu", 0.2f},
        {"conv3d_sigmoid", 1, 2, 3, 1, {5, 6, 7}, {3, 3, 3}, {1, 2, 1}, {1, 1, 1}, {1, 1, 1, 1, 0, 1}, true, "Sigmoid"},
        {"pointwise_tanh", 2, 32, 64, 1, {7, 7}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, true, "Tanh"},
        {"hardsigmoid_own_path", 1, 16, 8, 1, {5, 5}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, true, "HardSigmoid", 0.2f, 0.5f},
        {"resnet_like_batch", 3, 64, 64, 1, {14, 14}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, false, "Relu"},
        // thick enough for the operator to take oneDNN (kDnnlMinFlopsPerByteMoved)
        {"thick2d_relu", 1, 64, 64, 1, {28, 28}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, true, "Relu"},
        {"thick1d", 2, 64, 64, 1, {64}, {9}, {1}, {1}, {4, 4}, true, ""},
        {"thick3d_clip", 1, 16, 32, 1, {8, 8, 8}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1, 1, 1, 1}, true, "Clip", -1.0f, 1.0f},
        {"stem_7x7_stride2", 1, 3, 16, 1, {32, 32}, {7, 7}, {2, 2}, {1, 1}, {3, 3, 3, 3}, true, ""},
    };
    return v;
}

class ConvPaths : public ::testing::TestWithParam<Case> {};

TEST_P(ConvPaths, OperatorMatchesTheDefinitionOnBothPathsAndThreadCounts) {
    const Case& c = GetParam();
    const Tensor X = random_tensor([&] {
        Shape s{c.N, c.C};
        s.insert(s.end(), c.in.begin(), c.in.end());
        return s;
    }(), 11);
    Shape ws{c.M, c.C / c.G};
    ws.insert(ws.end(), c.k.begin(), c.k.end());
    const Tensor W = random_tensor(ws, 23);
    const Tensor B = random_tensor({c.M}, 31);
    const std::vector<double> want = reference(c, X, W, c.bias ? &B : nullptr);
    const Node n = conv_node(c);
    for (bool dnnl : {true, false}) {
        set_dnnl(dnnl);
        for (int threads : {1, 2}) {
            std::vector<const Tensor*> in{&X, &W};
            if (c.bias) in.push_back(&B);
            const std::vector<Tensor> out = run_node(n, in, threads);
            ASSERT_EQ(static_cast<size_t>(out.at(0).numel()), want.size());
            EXPECT_LT(rel_error(out[0].data<float>(), want), 1e-5)
                << c.name << " on " << threads << " thread(s), oneDNN " << (dnnl ? "allowed" : "switched off");
            // Where oneDNN takes the convolution, the operator must have sent it there (its
            // geometry translated right): the same bits as calling oneDNN directly.
            std::vector<float> direct(want.size());
            const bool thick = c.name.rfind("thick", 0) == 0;
            const bool on_dnnl = dnnl && dnnl_conv_f32(conv_dims(c), conv_act(c), X.data<float>(), W,
                                                       c.bias ? B.data<float>() : nullptr, direct.data(), threads);
            if (dnnl && thick && dnnl_status().rfind("oneDNN ", 0) == 0) {
                EXPECT_TRUE(on_dnnl) << c.name << " is meant to be thick enough for oneDNN";
            }
            if (on_dnnl) {
                EXPECT_EQ(std::memcmp(direct.data(), out[0].data<float>(), direct.size() * sizeof(float)), 0)
                    << c.name << ": the operator did not run the convolution on oneDNN";
            }
        }
    }
    set_dnnl(true);
}

TEST_P(ConvPaths, OneDnnDirectlyMatchesTheDefinition) {
    const std::string status = dnnl_status();
    if (status.rfind("oneDNN ", 0) != 0) GTEST_SKIP() << "oneDNN is not used here: " << status;
    const Case& c = GetParam();
    Shape xs{c.N, c.C};
    xs.insert(xs.end(), c.in.begin(), c.in.end());
    Shape ws{c.M, c.C / c.G};
    ws.insert(ws.end(), c.k.begin(), c.k.end());
    const Tensor X = random_tensor(xs, 5);
    const Tensor B = random_tensor({c.M}, 9);
    // Two weight tensors of one geometry, each twice: the cached reordered weights must follow
    // the tensor, not the geometry.
    const Tensor W1 = random_tensor(ws, 13), W2 = random_tensor(ws, 17);
    std::vector<float> y(reference(c, X, W1, nullptr).size());
    for (const Tensor* W : {&W1, &W2, &W1, &W2}) {
        // Every geometry, thin or not (the operator sends thin ones to its own path).
        const bool ran = dnnl_conv_f32(conv_dims(c), conv_act(c), X.data<float>(), *W, c.bias ? B.data<float>() : nullptr,
                                       y.data(), 2, 0.0);
        if (c.act == "HardSigmoid") {
            EXPECT_FALSE(ran) << "oneDNN 2.x has no HardSigmoid post-op: the operator's own path must run it";
            return;
        }
        ASSERT_TRUE(ran) << c.name << ": oneDNN refused the convolution";
        EXPECT_LT(rel_error(y.data(), reference(c, X, *W, c.bias ? &B : nullptr)), 1e-5) << c.name;
    }
}

// oneDNN's sgemm, which the products use when it is there: row-major, both transposes, leading
// dimensions wider than the rows, beta 0 and 1.
TEST(OneDnnSgemm, MatchesTheDefinition) {
    const std::string status = dnnl_status();
    if (status.rfind("oneDNN ", 0) != 0) GTEST_SKIP() << "oneDNN is not used here: " << status;
    const int64_t M = 7, N = 5, K = 9, pad = 3;
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (float beta : {0.0f, 1.0f}) {
                const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
                const Tensor A = random_tensor({(ta ? K : M) * lda}, 41), B = random_tensor({(tb ? N : K) * ldb}, 43);
                Tensor C = random_tensor({M * ldc}, 47);
                std::vector<double> want(static_cast<size_t>(M * N));
                for (int64_t i = 0; i < M; ++i)
                    for (int64_t j = 0; j < N; ++j) {
                        double acc = 0;
                        for (int64_t k = 0; k < K; ++k)
                            acc += static_cast<double>(ta ? A.data<float>()[k * lda + i] : A.data<float>()[i * lda + k]) *
                                   (tb ? B.data<float>()[j * ldb + k] : B.data<float>()[k * ldb + j]);
                        want[static_cast<size_t>(i * N + j)] = 0.5 * acc + beta * C.data<float>()[i * ldc + j];
                    }
                ASSERT_TRUE(dnnl_sgemm_f32(ta, tb, M, N, K, 0.5f, A.data<float>(), lda, B.data<float>(), ldb, beta,
                                           C.data<float>(), ldc, 2));
                std::vector<float> got;
                for (int64_t i = 0; i < M; ++i)
                    for (int64_t j = 0; j < N; ++j) got.push_back(C.data<float>()[i * ldc + j]);
                EXPECT_LT(rel_error(got.data(), want), 1e-5) << "ta " << ta << " tb " << tb << " beta " << beta;
            }
}

INSTANTIATE_TEST_SUITE_P(Conv, ConvPaths, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

}  // namespace
}  // namespace cpn::infer
