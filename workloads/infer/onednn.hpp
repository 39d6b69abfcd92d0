// onednn.hpp: the CPU operators' float32 convolutions and matrix products through oneDNN
// (libdnnl.so.2, Debian's libdnnl2), opened on first use like OpenBLAS (ops_nn.cpp says why).
// One thread team, OpenMP's, then runs every heavy operator: mixed with OpenBLAS's, whose
// threads spin for a while after each call, the two teams fought over the cores (ResNet-18 on
// two cores: 28 ms instead of 20 when its convolutions alternated between them). Where oneDNN
// is absent, or has no implementation for a convolution, the operators run their own im2col +
// OpenBLAS path, with the same results within float rounding.
#pragma once

#include <cstdint>
#include <string>

#include "tensor.hpp"

namespace cpn::infer {

// An activation fused into a product's output (Node::fused_activation, parsed).
struct Act {
    enum K { none, relu, leaky, clip, sigmoid, hardsigmoid, tanh_, hardswish } k = none;
    float a = 0, b = 0;
};

// A convolution over [N, C, spatial...] with `r` (1..3) spatial dims, each array in the order of
// the spatial axes (the first r entries are used). Dilations as in ONNX (1 = none).
struct ConvDims {
    int r = 2;
    int64_t N = 0, C = 0, M = 0, G = 1;
    int64_t in[3] = {1, 1, 1}, out[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, d[3] = {1, 1, 1};
    int64_t pb[3] = {0, 0, 0}, pe[3] = {0, 0, 0};
};

// oneDNN's convolutions run on its own layouts: each call reorders the NCHW input in and the
// output back, reading and writing every element. A thin layer (1x1 and depthwise convolutions,
// few channels) does too little arithmetic per byte moved for oneDNN's faster kernel to repay
// that, and runs the operator's own path (im2col or a direct GEMM on oneDNN's sgemm, or the
// depthwise loop). The bound: ResNet-18's 3x3 layers (72 FLOP per byte and more) gain a fifth
// on oneDNN here, MobileNetV2's and SqueezeNet's 1x1 and depthwise layers (1 to 35) lose
// (bench/results/infer-cpu-2026-12-07-epyc-vm.md).
constexpr double kDnnlMinFlopsPerByteMoved = 64;

// Y = act(conv(X, W) + B) through oneDNN with `threads` threads. X is [N, C, in...], W is
// [M, C/G, k...] (a graph constant in practice: its reordered copy is cached while W's memory
// lives), B is [M] or null, Y is [N, M, out...], all dense float32. Returns false when oneDNN is
// not available, has no implementation for the convolution, or the convolution does less than
// `min_flops_per_byte_moved`; Y's contents are then undefined and the caller computes it
// another way.
bool dnnl_conv_f32(const ConvDims& c, const Act& act, const float* x, const Tensor& W, const float* bias, float* y,
                   int threads, double min_flops_per_byte_moved = kDnnlMinFlopsPerByteMoved);

// Row-major C[M, N] = alpha * op(A) op(B) + beta * C through oneDNN's sgemm on `threads`
// threads; false when oneDNN is not available (nothing written).
bool dnnl_sgemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc, int threads);

// Switches oneDNN off (false) or back on for this process; off, the operators run their other
// path (im2col + OpenBLAS sgemm, OpenBLAS for the products). For tests and benchmarks that
// compare the two.
void set_dnnl(bool on);

// "oneDNN 2.6.3 (libdnnl.so.2)", or why it is not used ("libdnnl.so.2 not found: ..."). Opens
// the library if that has not happened yet.
std::string dnnl_status();

}  // namespace cpn::infer
