#include "cpu_infer.hpp"

#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cpn_backend_util.hpp"
#include "executor.hpp"
#include "onnx_import.hpp"
#include "ops.hpp"

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

cpn_status status_of(const inf::Error& e) {
    switch (e.kind()) {
        case inf::Error::unsupported: return CPN_E_UNSUPPORTED;
        case inf::Error::cancelled: return CPN_E_CANCELLED;
        case inf::Error::out_of_memory: return CPN_E_OUT_OF_MEMORY;
        default: return CPN_E_INVALID_ARGUMENT;
    }
}

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

}  // namespace cpn::cpuinfer
