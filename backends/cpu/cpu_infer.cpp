#include "cpu_infer.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cpn_backend_util.hpp"
#include "executor.hpp"
#include "onnx_import.hpp"
#include "plugin_status.hpp"
#include "ops.hpp"
#include "optimize.hpp"

using namespace cpn::plugin;
namespace inf = cpn::infer;

namespace cpn::cpuinfer {
namespace {

void set_msg(cpn_msg* e, const std::string& m) {
    if (e != nullptr) copy_str(e->text, m);
}

struct Prepared {
    inf::Model model;
    int threads = 0;
    int64_t max_elements = int64_t{1} << 30;
};

using inf::status_of;

int32_t supports(cpn_device_handle*, const char* op_type, int32_t opset, const int32_t*, uint32_t, char* reason,
                 uint32_t reason_len) {
    if (op_type == nullptr) return 0;
    if (inf::find_op(op_type, opset) != nullptr) return 1;
    if (reason != nullptr && reason_len > 0)
        std::snprintf(reason, reason_len, "operator %s (opset %d) is not implemented", op_type, opset);
    return 0;
}

cpn_status prepare(cpn_device_handle*, const void* model, uint64_t size, const char* options_json, cpn_prepared** out,
                   cpn_msg* err) {
    try {
        auto p = std::make_unique<Prepared>();
        inf::LoadOptions lo;
        lo.origin = "segment";
        p->model = inf::load_onnx(std::string(static_cast<const char*>(model), size), lo);
        if (options_json != nullptr && *options_json) {
            const nlohmann::json o = nlohmann::json::parse(options_json, nullptr, false);
            if (o.is_object()) {
                p->threads = o.value("threads", 0);
                p->max_elements = o.value("max_tensor_elements", p->max_elements);
            }
        }
        *out = reinterpret_cast<cpn_prepared*>(p.release());
        return CPN_OK;
    } catch (const inf::Error& e) {
        set_msg(err, e.what());
        return status_of(e);
    } catch (const std::bad_alloc&) {
        set_msg(err, "out of memory loading the model");
        return CPN_E_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_msg(err, e.what());
        return CPN_E_INTERNAL;
    }
}

cpn_status run(cpn_prepared* pp, const cpn_tensor* inputs, uint32_t input_count, cpn_tensor_alloc_fn alloc, void* user,
               const cpn_run_control* ctl, char* result_json, uint64_t result_cap, cpn_msg* err) {
    auto* p = reinterpret_cast<Prepared*>(pp);
    if (p == nullptr || alloc == nullptr) {
        set_msg(err, "run: no prepared model or no allocator");
        return CPN_E_INVALID_ARGUMENT;
    }
    try {
        // The host's input memory is used in place (no copy: it is host memory already).
        std::map<std::string, inf::Tensor> in;
        for (uint32_t i = 0; i < input_count; ++i) {
            const cpn_tensor& t = inputs[i];
            inf::Tensor x;
            x.dtype = static_cast<inf::DType>(t.dtype);
            x.shape.assign(t.dims, t.dims + t.rank);
            if (!inf::dtype_supported(x.dtype) || inf::checked_numel(x.shape) < 0 || x.bytes() != t.bytes) {
                set_msg(err, std::string("input '") + (t.name ? t.name : "?") + "': its type, shape and byte count disagree");
                return CPN_E_INVALID_ARGUMENT;
            }
            x.mem = std::shared_ptr<void>(t.data, [](void*) {});
            x.capacity = t.bytes;
            in[t.name ? t.name : ""] = std::move(x);
        }
        std::atomic<bool> cancel{false};
        inf::RunOptions ro;
        ro.threads = p->threads;
        ro.max_tensor_elements = p->max_elements;
        ro.allow_nonfinite_inputs = true;  // the host checked the task's inputs; segments pass on what they get
        ro.cancel = &cancel;
        if (ctl != nullptr && ctl->cancel != nullptr)
            ro.on_node = [&](size_t, size_t) {
                if (*ctl->cancel) cancel.store(true);
            };
        inf::RunStats st;
        std::map<std::string, inf::Tensor> out = inf::run_graph(p->model.graph, in, ro, &st);
        for (const inf::ValueInfo& o : p->model.graph.outputs) {
            const inf::Tensor& t = out.at(o.name);
            void* dst = alloc(user, o.name.c_str(), static_cast<int32_t>(t.dtype), static_cast<uint32_t>(t.rank()),
                              t.shape.data(), t.bytes());
            if (dst == nullptr && t.bytes() > 0) {
                set_msg(err, "the host gave no memory for output '" + o.name + "'");
                return CPN_E_OUT_OF_MEMORY;
            }
            if (t.bytes() > 0) std::memcpy(dst, t.raw(), t.bytes());
        }
        if (result_json != nullptr && result_cap > 0)
            std::snprintf(result_json, result_cap,
                          "{\"seconds\":%.6f,\"flops\":%.0f,\"peak_bytes\":%zu,\"nodes\":%zu,\"copies_in\":0,\"copies_out\":0}",
                          st.seconds, st.flops, st.peak_bytes, st.nodes);
        return CPN_OK;
    } catch (const inf::Error& e) {
        set_msg(err, e.what());
        return status_of(e);
    } catch (const std::bad_alloc&) {
        set_msg(err, "out of memory");
        return CPN_E_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_msg(err, e.what());
        return CPN_E_INTERNAL;
    }
}

void release(cpn_prepared* pp) { delete reinterpret_cast<Prepared*>(pp); }

const cpn_infer_api kApi = {sizeof(cpn_infer_api), supports, prepare, run, release};

}  // namespace

const cpn_infer_api* api() { return &kApi; }

struct Bench {
    inf::Model model;
    std::map<std::string, inf::Tensor> inputs;
    std::vector<float> first;  // the first repetition's outputs, what later ones must equal
    uint64_t reps = 1;
    int threads = 0;
    int64_t batch = 1;
};

bool is_bench_kind(const char* kind) { return kind != nullptr && std::strcmp(kind, "infer.bench") == 0; }

cpn_status bench_prepare(const cpn_workload* w, Bench** out, cpn_msg* err) {
    auto b = std::make_unique<Bench>();
    const nlohmann::json p = nlohmann::json::parse(w->params_json != nullptr ? w->params_json : "{}", nullptr, false);
    if (!p.is_object()) {
        set_msg(err, "infer.bench: params_json is not a JSON object");
        return CPN_E_INVALID_ARGUMENT;
    }
    try {
        for (const auto& [k, v] : p.items()) {
            if (k == "batch") b->batch = v.get<int64_t>();
            else if (k == "reps") b->reps = v.get<uint64_t>();
            else if (k == "threads") b->threads = v.get<int>();
            else if (k != "seed") throw std::invalid_argument("unknown parameter '" + k + "' (batch, reps, threads, seed)");
        }
        if (b->batch < 1 || b->batch > 1024) throw std::invalid_argument("batch must be 1 to 1024");
        if (b->reps < 1) throw std::invalid_argument("reps must be at least 1");
        if (w->blob == nullptr || w->blob_size == 0) throw std::invalid_argument("no model (the blob is empty)");
        inf::LoadOptions lo;
        lo.origin = "infer.bench model";
        b->model = inf::load_onnx(std::string(static_cast<const char*>(w->blob), w->blob_size), lo);
        inf::optimize(b->model.graph);
        uint32_t state = p.value("seed", 1u) | 1u;
        for (const inf::ValueInfo& vi : b->model.graph.inputs) {
            if (vi.dtype != inf::DType::f32 || !vi.has_shape)
                throw std::invalid_argument("input '" + vi.name + "' is not a float32 tensor of declared shape");
            inf::Shape s = vi.dims;
            for (size_t i = 0; i < s.size(); ++i)
                if (s[i] < 0) s[i] = i == 0 ? b->batch : 1;
            inf::Tensor t = inf::make_tensor(inf::DType::f32, s);
            for (int64_t i = 0; i < t.numel(); ++i) {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                t.data<float>()[i] = static_cast<float>(state >> 8) / 16777216.0f;
            }
            b->inputs[vi.name] = t;
        }
    } catch (const inf::Error& e) {
        set_msg(err, std::string("infer.bench: ") + e.what());
        return status_of(e);
    } catch (const std::exception& e) {
        set_msg(err, std::string("infer.bench: ") + e.what());
        return CPN_E_INVALID_ARGUMENT;
    }
    *out = b.release();
    return CPN_OK;
}

cpn_status bench_run(Bench* b, cpn_run_io* io, const cpn_run_control* ctl, cpn_msg* err) {
    uint64_t reps = b->reps;
    for (uint32_t i = 0; i < io->input_count; ++i)
        if (io->inputs[i].name != nullptr && std::strcmp(io->inputs[i].name, CPN_BENCH_REPS_INPUT) == 0 &&
            io->inputs[i].size == sizeof(uint64_t))
            std::memcpy(&reps, io->inputs[i].data, sizeof reps);
    if (reps < 1) reps = 1;
    try {
        inf::RunOptions ro;
        ro.threads = b->threads;
        const auto t0 = std::chrono::steady_clock::now();
        for (uint64_t r = 0; r < reps; ++r) {
            if (ctl != nullptr && ctl->cancel != nullptr && *ctl->cancel) {
                set_msg(err, "infer.bench: cancelled");
                return CPN_E_CANCELLED;
            }
            std::map<std::string, inf::Tensor> out = inf::run_graph(b->model.graph, b->inputs, ro);
            std::vector<float> all;
            for (const auto& [name, t] : out) {
                if (t.dtype != inf::DType::f32) continue;
                all.insert(all.end(), t.data<float>(), t.data<float>() + t.numel());
            }
            for (float v : all)
                if (!std::isfinite(v)) {
                    set_msg(err, "infer.bench: an output is not finite");
                    return CPN_E_INTERNAL;
                }
            if (b->first.empty()) b->first = all;
            else if (all != b->first) {
                set_msg(err, "infer.bench: a repetition's outputs differ from the first's (the same inputs must give the same outputs)");
                return CPN_E_INTERNAL;
            }
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (io->result_json != nullptr && io->result_json_capacity > 0)
            std::snprintf(io->result_json, io->result_json_capacity,
                          "{\"ops\":%.0f,\"seconds\":%.9f,\"verified\":true,\"check\":\"%llu repetitions: every output "
                          "finite and equal to the first repetition's\",\"threads\":%d}",
                          static_cast<double>(reps) * static_cast<double>(b->batch), s, static_cast<unsigned long long>(reps),
                          b->threads > 0 ? b->threads : static_cast<int>(std::thread::hardware_concurrency()));
        return CPN_OK;
    } catch (const inf::Error& e) {
        set_msg(err, std::string("infer.bench: ") + e.what());
        return status_of(e);
    } catch (const std::exception& e) {
        set_msg(err, std::string("infer.bench: ") + e.what());
        return CPN_E_INTERNAL;
    }
}

void bench_release(Bench* b) { delete b; }

}  // namespace cpn::cpuinfer
