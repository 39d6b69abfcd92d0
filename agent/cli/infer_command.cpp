// infer_command.cpp: `cpn-agent infer`: run an ONNX model locally on one device through the
// same engine the infer task kind uses (docs/inference.md).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "cli/commands.hpp"
#include "config/config.hpp"
#include "infer/infer_engine.hpp"
#include "onnx_import.hpp"
#include "tensor_io.hpp"

namespace cpn::cli {
namespace {

namespace fs = std::filesystem;

struct InferArgs {
    std::string model, device, backend, out_dir, format = "npy", plugin_dir, precision = "fp32";
    std::vector<std::string> inputs;
    int threads = 0, repeat = 1;
    bool json = false, allow_nonfinite = false;
};

// An output name as a file name: anything but [A-Za-z0-9_.-] becomes '_'.
std::string file_name_for(const std::string& name) {
    std::string s = name.empty() ? "output" : name;
    for (char& c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') c = '_';
    if (s[0] == '.') s[0] = '_';
    return s;
}

}  // namespace

std::function<int()> add_infer_command(CLI::App& app, const GlobalOptions& g) {
    auto a = std::make_shared<InferArgs>();
    CLI::App* cmd = app.add_subcommand("infer", "Run an ONNX model locally with the engine the infer task kind uses");
    cmd->add_option("-m,--model", a->model, "The ONNX model file")->required();
    cmd->add_option("-i,--input", a->inputs, "An input as NAME=FILE (.npy, ONNX TensorProto .pb or .cpnt; repeatable)");
    cmd->add_option("--device", a->device, "Run on this device id (default: the CPU)");
    cmd->add_option("--backend", a->backend, "Reach the device only through this backend (cpu, opencl, cuda)");
    cmd->add_option("-o,--output-dir", a->out_dir, "Write each output here as NAME.<format> (default: print a summary only)");
    cmd->add_option("--format", a->format, "Output file format: npy, pb or cpnt")->check(CLI::IsMember({"npy", "pb", "cpnt"}));
    cmd->add_option("--threads", a->threads, "CPU threads (default: all)")->check(CLI::Range(0, 1024));
    cmd->add_option("--precision", a->precision,
                    "fp32 (default), or fp16: products in float16 where the device has float16 arithmetic (CUDA tensor cores), "
                    "float32 elsewhere; the metrics say which ran")
        ->check(CLI::IsMember({"fp32", "fp16"}));
    cmd->add_option("--repeat", a->repeat, "Run this many times and report the best (the first includes compilation)")
        ->check(CLI::Range(1, 100000));
    cmd->add_flag("--allow-nonfinite", a->allow_nonfinite, "Accept NaN and infinity in the inputs");
    cmd->add_option("--plugin-dir", a->plugin_dir, "Override plugins.dir")->check(CLI::ExistingDirectory);
    cmd->add_flag("--json", a->json, "Print the metrics as JSON on stdout");
    cmd->footer("Exit codes: 0 ok, 1 the model, an input or the run failed, 2 usage error, 3 configuration error.");
    return [a, &g]() -> int {
        Config c;
        if (int rc = load_command_config(g, c); rc != kExitOk) return rc;
        const uint64_t max_input = static_cast<uint64_t>(c.tasks.max_file_input_bytes);
        // Inputs first: a usage error must not wait for device discovery.
        std::map<std::string, infer::Tensor> inputs;
        for (const std::string& spec : a->inputs) {
            const auto eq = spec.find('=');
            if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
                std::fprintf(stderr, "cpn-agent infer: --input '%s': expected NAME=FILE\n", spec.c_str());
                return kExitUsage;
            }
            const std::string name = spec.substr(0, eq), file = spec.substr(eq + 1);
            std::string bytes;
            try {
                bytes = infer::read_file_bounded(file, max_input, "--input " + name);
            } catch (const infer::Error& e) {
                std::fprintf(stderr, "cpn-agent infer: %s\n", e.what());
                return kExitFailure;
            }
            try {
                inputs[name] = infer::read_tensor(bytes, file);
            } catch (const infer::Error& e) {
                std::fprintf(stderr, "cpn-agent infer: --input %s: %s\n", name.c_str(), e.what());
                return kExitFailure;
            }
        }
        if (!a->out_dir.empty() && !fs::is_directory(a->out_dir)) {
            std::fprintf(stderr, "cpn-agent infer: --output-dir %s: not a directory\n", a->out_dir.c_str());
            return kExitFailure;
        }
        std::string model_bytes;
        try {
            model_bytes = infer::read_file_bounded(a->model, uint64_t{2} << 30, "--model");
        } catch (const infer::Error& e) {
            std::fprintf(stderr, "cpn-agent infer: %s\n", e.what());
            return kExitFailure;
        }
        infer::LoadOptions lo;
        lo.origin = a->model;
        lo.base_dir = fs::absolute(a->model).parent_path().string();
        infer::ModelCache cache(1);
        Result<std::shared_ptr<const infer::LoadedModel>> m = cache.get(model_bytes, lo);
        if (!m.ok()) {
            std::fprintf(stderr, "cpn-agent infer: %s\n", m.status().message().c_str());
            return kExitFailure;
        }

        std::map<std::string, std::string> plugins;
        Inventory inv = discover_for_work(c, a->plugin_dir, plugins);
        auto plugin_path = [&](const std::string& b) {
            auto it = plugins.find(b);
            if (it == plugins.end() || (!a->backend.empty() && b != a->backend && b != "cpu")) return std::string();
            return it->second;
        };
        const Device* dev = nullptr;
        for (const Device& d : inv.devices)
            if (a->device.empty() ? d.device_class == DeviceClass::cpu : d.id == a->device) {
                dev = &d;
                break;
            }
        if (dev == nullptr) {
            std::string known;
            for (const Device& d : inv.devices) known += (known.empty() ? "" : ", ") + d.id;
            std::fprintf(stderr, "cpn-agent infer: --device %s: no such device (known: %s)\n", a->device.c_str(), known.c_str());
            return kExitUsage;
        }
        infer::InferTarget target = infer::infer_target_for(*dev, inv.devices, plugin_path);
        if (!a->backend.empty()) {
            std::erase_if(target.paths, [&](const infer::InferTarget::Path& p) { return p.backend != a->backend; });
            if (target.paths.empty()) {
                std::fprintf(stderr, "cpn-agent infer: --backend %s: device %s has no usable path through it\n", a->backend.c_str(),
                             dev->id.c_str());
                return kExitUsage;
            }
        }
        infer::InferEngine engine;
        infer::InferRunOptions ro;
        ro.threads = a->threads;
        ro.precision = a->precision;
        ro.allow_nonfinite_inputs = a->allow_nonfinite;
        Result<infer::InferResult> best = Status(Code::internal, "not run");
        double best_s = 1e300;
        nlohmann::json first;
        for (int i = 0; i < a->repeat; ++i) {
            Result<infer::InferResult> r = engine.run(m.value(), target, inputs, ro);
            if (!r.ok()) {
                std::fprintf(stderr, "cpn-agent infer: %s\n", r.status().message().c_str());
                return kExitFailure;
            }
            if (i == 0) first = r->metrics;
            const double s = r->metrics["run_s"].get<double>();
            if (s < best_s) {
                best_s = s;
                best = std::move(r);
            }
        }
        nlohmann::json metrics = best->metrics;
        metrics["compile_s"] = first["compile_s"];
        metrics["runs"] = a->repeat;
        metrics["model_cached"] = false;  // loaded for this command
        nlohmann::json outs = nlohmann::json::array();
        for (const auto& [name, t] : best->outputs) {
            nlohmann::json o = {{"name", name}, {"dtype", infer::dtype_name(t.dtype)}, {"shape", t.shape}};
            if (!a->out_dir.empty()) {
                const infer::TensorFormat f = a->format == "pb" ? infer::TensorFormat::pb
                                              : a->format == "cpnt" ? infer::TensorFormat::cpnt
                                                                    : infer::TensorFormat::npy;
                const std::string path = (fs::path(a->out_dir) / (file_name_for(name) + "." + a->format)).string();
                std::ofstream out(path, std::ios::binary | std::ios::trunc);
                const std::string bytes = infer::write_tensor(t, f, name);
                out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
                if (!out) {
                    std::fprintf(stderr, "cpn-agent infer: %s: cannot write: %s\n", path.c_str(), std::strerror(errno));
                    return kExitFailure;
                }
                o["file"] = path;
            }
            outs.push_back(o);
        }
        metrics["outputs"] = outs;
        if (a->json) {
            std::printf("%s\n", metrics.dump(2).c_str());
            return kExitOk;
        }
        std::printf("inferred %s on %s (%s): run %.3f ms, %.2f GFLOP/s; load %.1f ms, compile %.1f ms; %zu nodes (%zu in the model; %s); "
                    "%zu segment(s), %zu node(s) fell back to the CPU\n",
                    a->model.c_str(), metrics["device_id"].get<std::string>().c_str(), metrics["backend"].get<std::string>().c_str(),
                    best_s * 1e3, metrics["gflops_per_s"].get<double>(), metrics["load_s"].get<double>() * 1e3,
                    metrics["compile_s"].get<double>() * 1e3, metrics["nodes"].get<size_t>(), metrics["model_nodes"].get<size_t>(),
                    metrics["optimizations"].get<std::string>().c_str(), metrics["segments"].get<size_t>(),
                    metrics["fallback_nodes"].get<size_t>());
        if (a->precision != "fp32" || metrics["precision"] != "fp32")
            std::printf("  precision: %s%s\n", metrics["precision"].get<std::string>().c_str(),
                        metrics.contains("precision_note") ? (" (" + metrics["precision_note"].get<std::string>() + ")").c_str() : "");
        for (const auto& o : outs)
            std::printf("  %s: %s %s%s\n", o["name"].get<std::string>().c_str(), o["dtype"].get<std::string>().c_str(),
                        o["shape"].dump().c_str(), o.contains("file") ? (" -> " + o["file"].get<std::string>()).c_str() : "");
        return kExitOk;
    };
}

}  // namespace cpn::cli
