// executor.hpp: runs a graph on host tensors, node by node in topological order, with a buffer
// pool (an intermediate's memory goes back to the pool after its last reader, so a network
// needs a few activations' worth of memory, not all of them) and a cancel check between nodes.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "graph.hpp"
#include "ops.hpp"

namespace cpn::infer {

// Free blocks by size class; shared_ptr deleters hand blocks back.
class Pool : public std::enable_shared_from_this<Pool> {
public:
    std::shared_ptr<void> get(size_t bytes, size_t& capacity);
    size_t bytes_in_use() const { return in_use_; }
    size_t peak_bytes() const { return peak_; }
    size_t allocations() const { return allocations_; }  // fresh blocks (not reuses)
    ~Pool();

private:
    void put(void* p, size_t cap);
    std::mutex mu_;
    std::multimap<size_t, void*> free_;
    size_t in_use_ = 0, peak_ = 0, allocations_ = 0;
};

struct RunOptions {
    int threads = 0;                        // 0: the machine's hardware threads
    const std::atomic<bool>* cancel = nullptr;
    int64_t max_tensor_elements = int64_t{1} << 30;  // an intermediate larger than this fails
    // NaN or infinity in a floating-point input is almost always a fault upstream (a broken
    // sensor frame, an uninitialised buffer): refused naming the input and the element, unless
    // the caller says the model expects them.
    bool allow_nonfinite_inputs = false;
    // The inputs' shapes must match what the model declares (fixed dimensions, rank). Only
    // ONNX's own backend test data needs this off: a few of its data sets do not match their
    // model's declaration (the CastLike tests' "like" input).
    bool check_declared_shapes = true;
    // Called after each node (index, count): progress and per-node timing.
    std::function<void(size_t, size_t)> on_node;
};

struct RunStats {
    double seconds = 0;
    size_t peak_bytes = 0;
    size_t nodes = 0;
    double flops = 0;  // multiply-adds x 2 of Conv, ConvTranspose, Gemm and MatMul (what GFLOP/s is over)
};

// The floating-point operations one node did (2 per multiply-add of its main product), from the
// shapes it ran with; 0 for operators that are not products.
double node_flops(const Node& n, const std::vector<const Tensor*>& in, const std::vector<Tensor>& out);

// Runs `g` with the named inputs; returns the graph outputs by name. Throws Error naming the
// node that failed.
std::map<std::string, Tensor> run_graph(const Graph& g, const std::map<std::string, Tensor>& inputs,
                                        const RunOptions& opt = {}, RunStats* stats = nullptr);

// Runs one node on host tensors (constant folding, tests).
std::vector<Tensor> run_node(const Node& n, const std::vector<const Tensor*>& in, int threads = 1);

}  // namespace cpn::infer
