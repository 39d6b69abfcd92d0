// infer_engine.hpp: runs ONNX models on a device through the backend plugins' inference
// extension (cpn_infer.h). A model is imported and optimised once (ModelCache, keyed by the
// SHA-256 of its bytes); for each device the graph is split into segments: the runs of nodes
// the device's backend supports go to it, the rest fall back to the CPU backend, and the copies
// at the boundaries are counted (docs/inference.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.hpp"
#include "graph.hpp"
#include "inventory/device.hpp"
#include "onnx_import.hpp"
#include "optimize.hpp"

namespace cpn::infer {

struct LoadedModel {
    Model model;               // optimised
    std::string sha256;        // of the model bytes
    OptimizeReport report;
    size_t original_nodes = 0;
    double load_seconds = 0;   // import + optimisation
    uint64_t bytes = 0;
};

class ModelCache {
public:
    explicit ModelCache(size_t max_entries = 8) : max_(max_entries) {}
    // The cached model for these bytes, or loads it. `hit` says which.
    Result<std::shared_ptr<const LoadedModel>> get(const std::string& bytes, const LoadOptions& opt, bool* hit = nullptr);
    size_t size() const;

private:
    mutable std::mutex mu_;
    size_t max_;
    std::list<std::pair<std::string, std::shared_ptr<const LoadedModel>>> lru_;  // front = newest
};

/* A device and its runtime paths (best first), with the CPU plugin for the fallback. */
struct InferTarget {
    std::string device_id;
    struct Path {
        std::string backend;
        uint32_t index = 0;
        std::string plugin_path;
    };
    std::vector<Path> paths;
    Path cpu;  // the CPU backend: nodes the device cannot run go here
};

InferTarget infer_target_for(const Device& d, const std::vector<Device>& all,
                             const std::function<std::string(const std::string&)>& plugin_path);

struct InferRunOptions {
    int threads = 0;  // CPU threads (0: all)
    // "fp32", or "fp16": products in float16 where the device has float16 arithmetic (the
    // CUDA backend's tensor cores), float32 elsewhere; the metrics say which ran and why.
    std::string precision = "fp32";
    int64_t max_tensor_elements = int64_t{1} << 30;
    std::function<bool()> cancelled;
    bool allow_nonfinite_inputs = false;
    bool check_declared_shapes = true;  // off only for ONNX's test data (executor.hpp)
};

struct InferResult {
    std::map<std::string, Tensor> outputs;
    nlohmann::json metrics;  // load_s, compile_s, run_s, gflops, device, backend, segments, fallback...
};

/* Prepared segments per (model, device), the 32 most recent kept while the engine lives. Runs
 * of different models or devices go on concurrently; runs of one (model, device) in turn. */
class InferEngine {
public:
    InferEngine();
    ~InferEngine();
    Result<InferResult> run(const std::shared_ptr<const LoadedModel>& m, const InferTarget& target,
                            const std::map<std::string, Tensor>& inputs, const InferRunOptions& opt);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cpn::infer
