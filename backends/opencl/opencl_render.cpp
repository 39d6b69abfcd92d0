// opencl_render.cpp: see opencl_render.hpp.
#include "opencl_render.hpp"

#include <chrono>
#include <cstring>
#include <memory>

#include "blob_check.hpp"
#include "render_bench.hpp"
#include "cpn_backend_util.hpp"
#include "kernel/types.h"

namespace cpn::opencl::render_source {
extern const char* const kRenderSource;  // generated: the shared kernel + render_kernel.cl
}

namespace cpn::opencl::render {

using plugin::fail;

struct Render {
    DeviceView dev;
    std::string params;  // the workload's params_json (the bench mode's region)
    cl_kernel kernel = nullptr;
    cl_mem scene = nullptr;
    std::mutex mu;  // kernel arguments are per-kernel state: one run at a time
};

namespace {

/* -cl-fp32-correctly-rounded-divide-sqrt makes division and sqrt the IEEE results the CPU
 * computes; contraction is off in the source (compat.h). */
constexpr const char* kBuildOptions = "-cl-fp32-correctly-rounded-divide-sqrt";

cpn_status build_program(const DeviceView& d, cl_program* out, cpn_msg* err) {
    return build_cached_program(d, render_source::kRenderSource, kBuildOptions, "render", out, err);
}

}  // namespace

bool is_render_kind(const char* kind) { return kind != nullptr && std::strcmp(kind, cpn::render::kRenderPassKind) == 0; }

cpn_status query(const DeviceView& d, const cpn_workload* w, cpn_query_result* out, cpn_msg*) {
    std::string why = cpn::render::check_scene_blob(w->blob, w->blob_size);
    if (why.empty() && d.max_alloc != 0 && w->blob_size > d.max_alloc)
        why = "the scene (" + std::to_string(w->blob_size) + " bytes) exceeds CL_DEVICE_MAX_MEM_ALLOC_SIZE of " + d.label;
    out->supported = why.empty() ? 1 : 0;
    if (!why.empty()) plugin::copy_str(out->reason, "render.pass: " + why);
    out->device_memory_bytes = w->blob_size;
    return CPN_OK;
}

cpn_status prepare(const DeviceView& d, const cpn_workload* w, Render** out, cpn_msg* err) {
    const std::string why = cpn::render::check_scene_blob(w->blob, w->blob_size);
    if (!why.empty()) return fail(err, CPN_E_INVALID_ARGUMENT, "render.pass: %s", why.c_str());
    cl_program prog = nullptr;
    if (cpn_status st = build_program(d, &prog, err); st != CPN_OK) return st;
    auto r = std::make_unique<Render>();
    r->dev = d;
    r->params = w->params_json != nullptr ? w->params_json : "{}";
    cl_int rc = CL_SUCCESS;
    r->kernel = clCreateKernel(prog, "cpn_render_pass_kernel", &rc);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, "clCreateKernel(cpn_render_pass) on " + d.label);
    r->scene = clCreateBuffer(d.context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, static_cast<size_t>(w->blob_size),
                              const_cast<void*>(w->blob), &rc);
    if (rc != CL_SUCCESS) {
        clReleaseKernel(r->kernel);
        return cl_fail(err, rc, "clCreateBuffer(scene, " + std::to_string(w->blob_size) + " bytes) on " + d.label);
    }
    *out = r.release();
    return CPN_OK;
}

cpn_status run(Render* r, cpn_run_io* io, const cpn_run_control* ctl, cpn_msg* err) {
    if (const cpn_buffer* reps = cpn::render::bench_reps_input(io); reps != nullptr)
        return cpn::render::run_render_bench(r->params.c_str(), reps, io, [&](cpn_run_io* inner) { return run(r, inner, ctl, err); },
                                             err);
    cpn_render_pass pass;
    cpn_buffer* out = nullptr;
    if (const std::string why = cpn::render::read_pass(io, &pass, &out); !why.empty())
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s", why.c_str());
    if (ctl != nullptr && ctl->cancel != nullptr && *ctl->cancel != 0) return fail(err, CPN_E_CANCELLED, "render.pass: cancelled");
    const auto t0 = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(r->mu);
    const DeviceView& d = r->dev;
    cl_int rc = CL_SUCCESS;
    MemRef pb(clCreateBuffer(d.context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof pass, &pass, &rc));
    if (rc != CL_SUCCESS) return cl_fail(err, rc, "clCreateBuffer(pass) on " + d.label);
    MemRef ob(clCreateBuffer(d.context, CL_MEM_WRITE_ONLY, static_cast<size_t>(out->size), nullptr, &rc));
    if (rc != CL_SUCCESS) return cl_fail(err, rc, "clCreateBuffer(radiance, " + std::to_string(out->size) + " bytes) on " + d.label);
    cl_mem sm = r->scene, pm = pb.get(), om = ob.get();
    if ((rc = clSetKernelArg(r->kernel, 0, sizeof sm, &sm)) != CL_SUCCESS ||
        (rc = clSetKernelArg(r->kernel, 1, sizeof pm, &pm)) != CL_SUCCESS ||
        (rc = clSetKernelArg(r->kernel, 2, sizeof om, &om)) != CL_SUCCESS)
        return cl_fail(err, rc, "clSetKernelArg(cpn_render_pass)");
    const size_t global = static_cast<size_t>(pass.x1 - pass.x0) * (pass.y1 - pass.y0);
    rc = clEnqueueNDRangeKernel(d.queue, r->kernel, 1, nullptr, &global, nullptr, 0, nullptr, nullptr);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, "clEnqueueNDRangeKernel(cpn_render_pass) on " + d.label);
    rc = clEnqueueReadBuffer(d.queue, om, CL_TRUE, 0, static_cast<size_t>(out->size), out->data, 0, nullptr, nullptr);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, "clEnqueueReadBuffer(radiance) on " + d.label);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (io->result_json != nullptr && io->result_json_capacity > 0)
        std::snprintf(io->result_json, io->result_json_capacity, "{\"pixels\":%zu,\"samples\":%u,\"device_ms\":%.3f}", global,
                      pass.sample_count, ms);
    return CPN_OK;
}

void release(Render* r) {
    if (r == nullptr) return;
    if (r->kernel != nullptr) clReleaseKernel(r->kernel);
    if (r->scene != nullptr) clReleaseMemObject(r->scene);
    delete r;
}

}  // namespace cpn::opencl::render
