// cuda_exec.hpp: the execution half of the CUDA backend (device_open ... device_close).
//
// Workload kinds: "selftest.saxpy" (y = a*x + y over float32), whose kernel is built by nvcc into
// a fatbin embedded in the plugin and loaded with cuModuleLoadData, and the "bench.*" kinds of
// cpn_bench.h, which this file dispatches to cuda_bench.cpp.
#pragma once

#include "cpn_backend.h"
#include "cuda_driver.hpp"

namespace cpn::cuda {
struct BenchState;
struct RenderState;
}

/* The opaque handles of cpn_backend.h, defined here for this plugin only. */
struct cpn_device_handle {
    const cpn::cuda::DriverApi* api = nullptr;
    uint32_t index = 0;
    CUdevice dev = 0;
    CUcontext ctx = nullptr; /* the device's primary context, retained while open */
    int cc_major = 0;
    int cc_minor = 0;
};

struct cpn_prepared {
    cpn_device_handle* device = nullptr;
    CUmodule module = nullptr;
    CUfunction function = nullptr;
    float a = 0.0f; /* selftest.saxpy's parameter */
    cpn::cuda::BenchState* bench = nullptr; /* a bench.* workload (cuda_bench.hpp), else NULL */
    cpn::cuda::RenderState* render = nullptr; /* a render.pass workload (cuda_render.hpp), else NULL */
};

namespace cpn::cuda {

inline constexpr const char* kSaxpyKind = "selftest.saxpy";

cpn_status device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err);
void device_close(cpn_device_handle* device);
cpn_status query(cpn_device_handle* device, const cpn_workload* workload, cpn_query_result* out,
                 cpn_msg* err);
cpn_status prepare(cpn_device_handle* device, const cpn_workload* workload, cpn_prepared** out,
                   cpn_msg* err);
cpn_status run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
               cpn_msg* err);
void release(cpn_prepared* prepared);

}  // namespace cpn::cuda
