// infer_task.hpp: the `infer` task kind (docs/inference.md, docs/protocol.md "Kinds"): the task's
// input is the ONNX model (inline or by path), params.inputs the tensors, the output the chosen
// output tensor; models stay loaded and prepared between tasks (ModelCache, InferEngine).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "inventory/device.hpp"
#include "tasks/workload.hpp"
#include "tensor.hpp"

namespace cpn::infer {

struct InferParams {
    struct TensorRef {
        std::string base64;  // inline tensor bytes (.npy, TensorProto or .cpnt), or
        std::string path;    // a file inside tasks.allowed_input_dirs
    };
    std::map<std::string, TensorRef> inputs;
    std::string output;               // which output is the task's output bytes ("" = the first)
    std::string output_format = "npy";  // npy, pb, cpnt
    int threads = 0;
    std::string precision = "fp32";   // fp32 or fp16 (InferRunOptions::precision)
    bool allow_nonfinite = false;
};

/* "" and fills `out` when valid, else what is wrong ("params.inputs.x: ..."). */
std::string parse_infer_params(const nlohmann::json& p, InferParams* out);

struct InferWorkloadDeps {
    std::vector<Device> devices;
    std::function<std::string(const std::string&)> plugin_path;  // backend -> plugin file
    std::vector<std::string> allowed_dirs;                        // tasks.allowed_input_dirs
    uint64_t max_file_bytes = uint64_t{1} << 30;
    int64_t max_tensor_elements = int64_t{1} << 30;
    size_t model_cache_entries = 8;
};

tasks::Workload infer_workload(InferWorkloadDeps deps);

/* Registers the inference reference job (reference_model.hpp, batch 8) with the capacity suite:
 * "task.infer" in inferences/s per device, through the backends' infer.bench kind
 * (docs/capacity.md). Idempotent. */
void register_infer_reference();

}  // namespace cpn::infer
