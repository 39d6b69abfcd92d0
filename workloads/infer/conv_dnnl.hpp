// conv_dnnl.hpp: float32 convolution through oneDNN (libdnnl.so.2, Debian's libdnnl2), the CPU's
// other path for Conv besides its own im2col + sgemm (chosen per geometry by measuring both). oneDNN is opened on first use, like OpenBLAS (ops_nn.cpp says why); where
// it is absent, or has no implementation for a convolution, the caller runs its own im2col +
// sgemm path, with the same results within float rounding.
#pragma once

#include <cstdint>
#include <functional>
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

// Y = act(conv(X, W) + B) through oneDNN with `threads` threads. X is [N, C, in...], W is
// [M, C/G, k...] (a graph constant in practice: its reordered copy is cached while W's memory
// lives), B is [M] or null, Y is [N, M, out...], all dense float32. Returns false when oneDNN is
// not available or refuses the convolution (Y's contents are then undefined: the caller
// computes it another way).
bool dnnl_conv_f32(const ConvDims& c, const Act& act, const float* x, const Tensor& W, const float* bias, float* y,
                   int threads);

// Y = act(conv(X, W) + B) on the faster of oneDNN and `own` (the caller's path computing the
// same Y), measured per geometry: oneDNN's kernels are the faster ones, but each call pays two
// layout reorders (NCHW to its blocked layout and back), which on thin layers (MobileNet's 1x1
// and depthwise convolutions, small batches) can cost more than they gain. The first calls of
// each geometry alternate the two paths and time them (set-up calls are not counted); the
// faster one then runs for the life of the process. Either way the result is the convolution.
void conv_f32(const ConvDims& c, const Act& act, const float* x, const Tensor& W, const float* bias, float* y, int threads,
              const std::function<void()>& own);

// Switches the oneDNN path off (false) or back on for this process; off, every convolution runs
// the operator's own path. For tests and benchmarks that compare the two.
void set_dnnl_conv(bool on);

// "oneDNN 2.6.3 (libdnnl.so.2)", or why it is not used ("libdnnl.so.2 not found: ..."). Opens
// the library if that has not happened yet.
std::string dnnl_status();

}  // namespace cpn::infer
