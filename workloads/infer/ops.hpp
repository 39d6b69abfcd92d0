// ops.hpp: the operator registry. Every operator is a function over host tensors, registered
// once with the opset range and the attribute check it supports; the importer asks the registry
// at load time, so a model with an unsupported operator or attribute is refused before it runs
// (naming the node), never halfway through a task.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "graph.hpp"

namespace cpn::infer {

class Pool;  // executor.hpp

struct OpContext {
    const Node& node;
    std::vector<const Tensor*> in;  // null for an omitted optional input
    std::vector<Tensor>& out;       // sized to node.outputs; the op fills the ones it produces
    Pool* pool = nullptr;           // null: plain allocations
    int threads = 1;                // worker threads the op may use (parallel_for)
    int64_t max_elements = int64_t{1} << 30;  // alloc_output refuses a larger tensor

    size_t n_in() const { return in.size(); }
    bool has_in(size_t i) const { return i < in.size() && in[i] != nullptr; }
    const Tensor& input(size_t i) const;  // throws naming the node when absent
    // Allocates output i with this type and shape (contents undefined) and returns it.
    Tensor& alloc_output(size_t i, DType t, const Shape& s);
    // Output i is input j unchanged (Identity, Reshape, Dropout...): shares the memory.
    Tensor& alias_output(size_t i, const Tensor& src, const Shape& s);
    bool wants_output(size_t i) const { return i < node.outputs.size() && !node.outputs[i].empty(); }
};

struct OpDef {
    std::string op_type;
    int since = 1;      // first opset the implementation follows
    int until = 1000;   // last opset it follows
    // Called at load time: throws Error::unsupported for an attribute value or a type the
    // implementation lacks, Error::invalid for a malformed node. May be empty.
    std::function<void(const Node&)> check;
    std::function<void(OpContext&)> run;
};

// The registry (built on first use from every ops_*.cpp's register function).
const OpDef* find_op(const std::string& op_type, int opset);
std::vector<std::string> supported_ops();  // sorted op_type names
void register_op(OpDef def);

// Runs f(begin, end) over [0, n) split across up to `threads` threads (inline when 1 or when
// n is below `grain`).
void parallel_for(int threads, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f);

// Each operator file registers its operators here (called once, from the registry).
void register_elementwise_ops();  // ops_elementwise.cpp
void register_nn_ops();           // ops_nn.cpp
void register_tensor_ops();       // ops_tensor.cpp

// The geometry of a convolution or pooling window, padded to three spatial dimensions (a 1-D or
// 2-D operator gets leading dimensions of size 1; `r` is the real spatial rank).
struct Geo {
    int r = 0;
    int64_t in[3] = {1, 1, 1}, out[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, d[3] = {1, 1, 1};
    int64_t pb[3] = {0, 0, 0}, pe[3] = {0, 0, 0};  // pads at the beginning and at the end
    int64_t in_size() const { return in[0] * in[1] * in[2]; }
    int64_t out_size() const { return out[0] * out[1] * out[2]; }
    int64_t k_size() const { return k[0] * k[1] * k[2]; }
};

// The geometry of Conv / ConvTranspose-style or pooling node `n` over input shape `xs` ([N, C,
// spatial...], 1 to 3 spatial dims) with `kernel`: strides, dilations (when `use_dilations`),
// pads and auto_pad from its attributes, output sizes rounded up when `ceil_mode`. Throws
// naming the node when they do not fit the input (ops_nn.cpp).
Geo make_geo(const Node& n, const Shape& xs, const std::vector<int64_t>& kernel, bool ceil_mode, bool use_dilations);

// Shared helpers for the operator files.
Shape broadcast_shapes(const Shape& a, const Shape& b, const Node& n);  // numpy rules
int64_t normalize_axis(int64_t axis, int64_t rank, const Node& n);      // [-r, r-1] -> [0, r-1]

}  // namespace cpn::infer
