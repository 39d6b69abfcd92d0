// cuda_render.cpp: see cuda_render.hpp.
#include "cuda_render.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "blob_check.hpp"
#include "render_bench.hpp"
#include "cpn_backend_util.hpp"
#include "cuda_errors.hpp"
#include "cuda_log.hpp"
#include "embedded_fatbin.hpp"
#include "kernel/types.h"

namespace cpn::cuda {

using plugin::fail;

struct RenderState {
    std::string params;         // the workload's params_json (the bench mode's region)
    CUdeviceptr scene = 0;
    CUdeviceptr out = 0;        // grown to the largest band so far
    uint64_t out_bytes = 0;
    std::mutex mu;              // one run at a time per prepared scene
};

namespace {

constexpr const char* kFunction = "cpn_render_pass_kernel";
constexpr unsigned kBlock = 128;

cpn_status fail_cuda(const DriverApi* api, cpn_msg* err, CUresult r, const std::string& what) {
    cpn_status st = is_sticky(r) ? CPN_E_DEVICE_LOST : r == CUDA_ERROR_OUT_OF_MEMORY ? CPN_E_OUT_OF_MEMORY : CPN_E_INTERNAL;
    const std::string text = what + " failed: " + error_text(api, r);
    if (st == CPN_E_DEVICE_LOST) log(4, text + "; the device needs a reset");
    return fail(err, st, "%s", text.c_str());
}

void free_state(const DriverApi* api, CUcontext ctx, RenderState* r) {
    if (r == nullptr) return;
    ScopedContext scope(api, ctx);
    if (r->scene != 0) api->mem_free(r->scene);
    if (r->out != 0) api->mem_free(r->out);
    delete r;
}

}  // namespace

bool is_render_kind(const char* kind) { return kind != nullptr && std::strcmp(kind, render::kRenderPassKind) == 0; }

cpn_status render_query(cpn_device_handle* d, const cpn_workload* w, cpn_query_result* out, cpn_msg*) {
    (void)d;
    const std::string why = render::check_scene_blob(w->blob, w->blob_size);
    out->supported = why.empty() ? 1 : 0;
    if (!why.empty()) plugin::copy_str(out->reason, "render.pass: " + why);
    out->device_memory_bytes = w->blob_size;
    return CPN_OK;
}

cpn_status render_prepare(cpn_device_handle* d, const cpn_workload* w, cpn_prepared** out, cpn_msg* err) {
    const std::string why = render::check_scene_blob(w->blob, w->blob_size);
    if (!why.empty()) return fail(err, CPN_E_INVALID_ARGUMENT, "render.pass: %s", why.c_str());
    const DriverApi* api = d->api;
    ScopedContext scope(api, d->ctx);
    if (scope.result() != CUDA_SUCCESS) return fail_cuda(api, err, scope.result(), "cuCtxPushCurrent_v2");
    CUmodule module = nullptr;
    CUresult r = api->module_load_data(&module, embedded::render_fatbin);
    if (r != CUDA_SUCCESS) {
        if (r == CUDA_ERROR_NO_BINARY_FOR_GPU || r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION || r == CUDA_ERROR_INVALID_PTX)
            return fail(err, CPN_E_UNSUPPORTED, "cuModuleLoadData(render fatbin) failed on compute capability %d.%d: %s",
                        d->cc_major, d->cc_minor, error_text(api, r).c_str());
        return fail_cuda(api, err, r, "cuModuleLoadData(render fatbin)");
    }
    CUfunction fn = nullptr;
    r = api->module_get_function(&fn, module, kFunction);
    if (r != CUDA_SUCCESS) {
        api->module_unload(module);
        return fail_cuda(api, err, r, std::string("cuModuleGetFunction(") + kFunction + ")");
    }
    auto* state = new (std::nothrow) RenderState;
    auto* p = new (std::nothrow) cpn_prepared;
    if (state == nullptr || p == nullptr) {
        delete state;
        delete p;
        api->module_unload(module);
        return fail(err, CPN_E_OUT_OF_MEMORY, "render.pass: out of host memory");
    }
    r = api->mem_alloc(&state->scene, w->blob_size);
    if (r == CUDA_SUCCESS) r = api->memcpy_htod(state->scene, w->blob, w->blob_size);
    if (r != CUDA_SUCCESS) {
        if (state->scene != 0) api->mem_free(state->scene);
        delete state;
        delete p;
        api->module_unload(module);
        return fail_cuda(api, err, r, "uploading the scene (" + std::to_string(w->blob_size) + " bytes)");
    }
    state->params = w->params_json != nullptr ? w->params_json : "{}";
    p->device = d;
    p->module = module;
    p->function = fn;
    p->render = state;
    *out = p;
    return CPN_OK;
}

cpn_status render_run(cpn_prepared* p, cpn_run_io* io, const cpn_run_control* ctl, cpn_msg* err) {
    if (const cpn_buffer* reps = render::bench_reps_input(io); reps != nullptr)
        return render::run_render_bench(p->render->params.c_str(), reps, io,
                                        [&](cpn_run_io* inner) { return render_run(p, inner, ctl, err); }, err);
    cpn_render_pass pass;
    cpn_buffer* outb = nullptr;
    if (const std::string why = render::read_pass(io, &pass, &outb); !why.empty())
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s", why.c_str());
    if (ctl != nullptr && ctl->cancel != nullptr && *ctl->cancel != 0) return fail(err, CPN_E_CANCELLED, "render.pass: cancelled");
    RenderState* st = p->render;
    std::lock_guard<std::mutex> lock(st->mu);
    const DriverApi* api = p->device->api;
    ScopedContext scope(api, p->device->ctx);
    if (scope.result() != CUDA_SUCCESS) return fail_cuda(api, err, scope.result(), "cuCtxPushCurrent_v2");
    const auto t0 = std::chrono::steady_clock::now();
    if (st->out_bytes < outb->size) {
        if (st->out != 0) api->mem_free(st->out);
        st->out = 0;
        st->out_bytes = 0;
        CUresult r = api->mem_alloc(&st->out, outb->size);
        if (r != CUDA_SUCCESS) return fail_cuda(api, err, r, "cuMemAlloc_v2(radiance, " + std::to_string(outb->size) + " bytes)");
        st->out_bytes = outb->size;
    }
    const unsigned long long pixels = static_cast<unsigned long long>(pass.x1 - pass.x0) * (pass.y1 - pass.y0);
    const unsigned blocks = static_cast<unsigned>((pixels + kBlock - 1) / kBlock);
    CUdeviceptr scene = st->scene, out = st->out;
    void* args[] = {&scene, &pass, &out};
    CUresult r = api->launch_kernel(p->function, blocks, 1, 1, kBlock, 1, 1, 0, nullptr, args, nullptr);
    if (r != CUDA_SUCCESS) return fail_cuda(api, err, r, "cuLaunchKernel(cpn_render_pass_kernel)");
    r = api->ctx_synchronize();
    if (r != CUDA_SUCCESS) return fail_cuda(api, err, r, "cuCtxSynchronize after cpn_render_pass_kernel");
    r = api->memcpy_dtoh(outb->data, out, outb->size);
    if (r != CUDA_SUCCESS) return fail_cuda(api, err, r, "cuMemcpyDtoH_v2(radiance)");
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (io->result_json != nullptr && io->result_json_capacity > 0)
        std::snprintf(io->result_json, io->result_json_capacity, "{\"pixels\":%llu,\"samples\":%u,\"device_ms\":%.3f}", pixels,
                      pass.sample_count, ms);
    return CPN_OK;
}

void release_render_prepared(cpn_prepared* p) {
    const DriverApi* api = p->device->api;
    free_state(api, p->device->ctx, p->render);
    ScopedContext scope(api, p->device->ctx);
    if (p->module != nullptr) api->module_unload(p->module);
}

}  // namespace cpn::cuda
