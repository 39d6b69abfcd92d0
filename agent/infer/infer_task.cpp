#include "infer/infer_task.hpp"

#include <filesystem>
#include <fstream>
#include <mutex>

#include "bench/suite.hpp"
#include "infer/infer_engine.hpp"
#include "reference_model.hpp"
#include "tasks/task_spec.hpp"
#include "tensor_io.hpp"

namespace cpn::infer {
namespace {

namespace fs = std::filesystem;

// Outputs this small are also returned inline in the result's data (a classifier's scores).
constexpr int64_t kInlineValues = 1024;

struct Shared {
    InferWorkloadDeps deps;
    ModelCache cache;
    InferEngine engine;
    explicit Shared(InferWorkloadDeps d) : deps(std::move(d)), cache(deps.model_cache_entries) {}
};

}  // namespace

std::string parse_infer_params(const nlohmann::json& p, InferParams* out) {
    InferParams r;
    if (!p.is_object()) return "params: expected an object";
    for (const auto& [k, v] : p.items()) {
        if (k == "inputs") {
            if (!v.is_object()) return "params.inputs: expected an object of name -> {\"base64\": ...} or {\"path\": ...}";
            for (const auto& [name, t] : v.items()) {
                const std::string where = "params.inputs." + name;
                if (name.empty()) return "params.inputs: an input name is empty";
                if (!t.is_object() || t.size() != 1 || (!t.contains("base64") && !t.contains("path")))
                    return where + ": expected {\"base64\": \"...\"} or {\"path\": \"...\"}";
                InferParams::TensorRef ref;
                if (t.contains("base64")) {
                    if (!t["base64"].is_string()) return where + ".base64: expected a string";
                    ref.base64 = t["base64"].get<std::string>();
                } else {
                    if (!t["path"].is_string() || t["path"].get<std::string>().empty()) return where + ".path: expected a file path";
                    ref.path = t["path"].get<std::string>();
                }
                r.inputs[name] = ref;
            }
        } else if (k == "output") {
            if (!v.is_string()) return "params.output: expected the name of a model output";
            r.output = v.get<std::string>();
        } else if (k == "output_format") {
            if (!v.is_string() || (v != "npy" && v != "pb" && v != "cpnt")) return "params.output_format: expected npy, pb or cpnt";
            r.output_format = v.get<std::string>();
        } else if (k == "threads") {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1024)
                return "params.threads: expected an integer from 0 (all) to 1024";
            r.threads = v.get<int>();
        } else if (k == "precision") {
            if (!v.is_string() || (v != "fp32" && v != "fp16")) return "params.precision: expected fp32 or fp16";
            r.precision = v.get<std::string>();
        } else if (k == "allow_nonfinite") {
            if (!v.is_boolean()) return "params.allow_nonfinite: expected true or false";
            r.allow_nonfinite = v.get<bool>();
        } else {
            return "params." + k + ": unknown parameter (known: inputs, output, output_format, threads, precision, allow_nonfinite)";
        }
    }
    if (out != nullptr) *out = std::move(r);
    return "";
}

tasks::Workload infer_workload(InferWorkloadDeps deps) {
    tasks::Workload w;
    w.info = {"infer", true, "runs an ONNX model (input: the model; params.inputs: the tensors) and returns an output tensor"};
    w.validate = [](const nlohmann::json& p) { return parse_infer_params(p, nullptr); };
    w.runs_inline = [](const tasks::TaskSpec&) { return false; };
    auto shared = std::make_shared<Shared>(std::move(deps));
    w.run = [shared](tasks::WorkContext& ctx) {
        tasks::WorkResult r;
        auto failed = [&](const std::string& why) {
            r.outcome = tasks::WorkResult::Outcome::failed;
            r.reason = why;
            return r;
        };
        InferParams params;
        if (std::string e = parse_infer_params(ctx.spec.params, &params); !e.empty()) return failed(e);
        if (!ctx.spec.input.present) return failed("an infer task needs its ONNX model as input (inline or by path)");
        Result<std::string> model = ctx.read_input();
        if (!model.ok()) return failed(model.status().message());
        LoadOptions lo;
        lo.max_tensor_elements = shared->deps.max_tensor_elements;
        lo.origin = ctx.spec.input.inline_data ? "model (inline input)" : ctx.spec.input.path;
        if (!ctx.spec.input.inline_data) {
            lo.base_dir = fs::path(ctx.spec.input.path).parent_path().string();
            lo.allowed_dirs = shared->deps.allowed_dirs;
        }
        ctx.progress(0.05, "loading the model");
        bool hit = false;
        Result<std::shared_ptr<const LoadedModel>> m = shared->cache.get(model.value(), lo, &hit);
        if (!m.ok()) return failed(m.status().message());

        std::map<std::string, Tensor> inputs;
        for (const auto& [name, ref] : params.inputs) {
            const std::string where = "params.inputs." + name;
            std::string bytes;
            if (!ref.base64.empty()) {
                if (!tasks::decode_base64(ref.base64, bytes)) return failed(where + ".base64: not valid base64");
            } else {
                if (shared->deps.allowed_dirs.empty() || !path_inside(ref.path, shared->deps.allowed_dirs))
                    return failed(where + ".path: " + ref.path + " is outside the allowed input directories (tasks.allowed_input_dirs)");
            }
            try {
                if (!ref.path.empty()) bytes = read_file_bounded(ref.path, shared->deps.max_file_bytes, where);
                inputs[name] = read_tensor(bytes, where, shared->deps.max_tensor_elements);
            } catch (const Error& e) {
                return failed(e.what());
            }
        }
        InferTarget target = infer_target_for(ctx.device, shared->deps.devices, shared->deps.plugin_path);
        InferRunOptions ro;
        ro.threads = params.threads;
        ro.precision = params.precision;
        ro.max_tensor_elements = shared->deps.max_tensor_elements;
        ro.allow_nonfinite_inputs = params.allow_nonfinite;
        ro.cancelled = [&ctx] { return ctx.cancel.stop_requested(); };
        ctx.progress(0.2, "running");
        Result<InferResult> res = shared->engine.run(m.value(), target, inputs, ro);
        if (!res.ok()) {
            if (res.status().code() == Code::cancelled) {
                r.outcome = tasks::WorkResult::Outcome::stopped;
                return r;
            }
            if (res.status().code() == Code::device_lost) {
                r.outcome = tasks::WorkResult::Outcome::device_fault;
                r.reason = res.status().message();
                return r;
            }
            return failed(res.status().message());
        }
        const Graph& g = m.value()->model.graph;
        std::string chosen = params.output.empty() ? g.outputs.front().name : params.output;
        if (!res->outputs.count(chosen)) {
            std::string names;
            for (const ValueInfo& o : g.outputs) names += (names.empty() ? "" : ", ") + o.name;
            return failed("params.output: the model has no output '" + chosen + "' (its outputs: " + names + ")");
        }
        const TensorFormat f = params.output_format == "pb"   ? TensorFormat::pb
                               : params.output_format == "cpnt" ? TensorFormat::cpnt
                                                                : TensorFormat::npy;
        r.output = write_tensor(res->outputs.at(chosen), f, chosen);
        nlohmann::json outs = nlohmann::json::array();
        for (const ValueInfo& o : g.outputs) {
            const Tensor& t = res->outputs.at(o.name);
            nlohmann::json j = {{"name", o.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"in_output", o.name == chosen}};
            if (t.numel() <= kInlineValues) {
                nlohmann::json vals = nlohmann::json::array();
                for (int64_t i = 0; i < t.numel(); ++i) vals.push_back(number_at(t, i));
                j["values"] = vals;
            }
            outs.push_back(j);
        }
        r.data = res->metrics;
        r.data["model_cached"] = hit;
        r.data["output_format"] = params.output_format;
        r.data["outputs"] = outs;
        return r;
    };
    return w;
}

void register_infer_reference() {
    static std::once_flag once;
    std::call_once(once, [] {
        bench::TaskReference ref;
        ref.task_kind = "infer";
        ref.workload_kind = "infer.bench";
        ref.params_json = "{\"batch\":" + std::to_string(kReferenceBatch) + ",\"seed\":1}";
        ref.unit = "inferences/s";
        ref.scale = 1.0;
        ref.description = std::string(kReferenceModelName) + ": a 96x96 image CNN (conv, batch norm, depthwise, 1x1, pooling, "
                          "1000-way softmax; 0.18 GFLOP per image), float32, batch " + std::to_string(kReferenceBatch);
        ref.make_blob = []() -> std::shared_ptr<const std::string> {
            return std::make_shared<const std::string>(reference_model_onnx());
        };
        bench::register_task_reference(std::move(ref));
    });
}

}  // namespace cpn::infer
