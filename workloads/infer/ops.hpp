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

// Shared helpers for the operator files.
Shape broadcast_shapes(const Shape& a, const Shape& b, const Node& n);  // numpy rules
int64_t normalize_axis(int64_t axis, int64_t rank, const Node& n);      // [-r, r-1] -> [0, r-1]

}  // namespace cpn::infer
