// device_shapes.hpp: the host-side shape rules the device backends (OpenCL, CUDA) share: the
// geometry of a 1-D or 2-D convolution or pooling, and the output shapes of the view operators
// (Identity, Dropout, Flatten, Reshape, Squeeze, Unsqueeze) and of Concat. The rules follow the
// CPU operators'; a malformed node throws Error::invalid naming it, and nullopt means a case the
// device kernels do not cover (the backend leaves the node to the CPU).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "graph.hpp"

namespace cpn::infer {

// [N, C, H, W] in, [N, *, OH, OW] out; a 1-D input has H = OH = KH = 1.
struct Geo2d {
    int64_t N = 1, C = 1, H = 1, W = 1, OH = 1, OW = 1, KH = 1, KW = 1, sh = 1, sw = 1, dh = 1, dw = 1;
    int64_t phb = 0, pwb = 0, phe = 0, pwe = 0;  // pads at the beginning and at the end
};

// make_geo (ops.hpp) for a 1-D or 2-D input, within the device kernels' 32-bit limits; nullopt
// for other ranks.
std::optional<Geo2d> geo_2d(const Node& n, const Shape& xs, const std::vector<int64_t>& kernel, bool ceil_mode,
                            bool use_dilations);

// What the view rules read of a node's inputs besides X.
struct ViewInputs {
    std::function<bool(size_t)> has;                     // input i is present
    std::function<std::vector<int64_t>(size_t)> ints;    // input i's integer values (Reshape's shape, the axes)
    bool wants_mask = false;                             // Dropout's mask output is used
};

// The output shape of view node `n` (its data is X's, unchanged) for X of shape `x`; nullopt
// when `n` is not a view operator or is a Dropout with a mask or training inputs.
std::optional<Shape> view_shape(const Node& n, const Shape& x, const ViewInputs& in);

// Concat's output shape from its present inputs (input position, shape); `axis` gets the
// normalised axis.
Shape concat_shape(const Node& n, const std::vector<std::pair<size_t, Shape>>& inputs, int64_t& axis);

}  // namespace cpn::infer
