// cuda_driver.hpp: the CUDA driver API as this plugin sees it, resolved at run time.
//
// The plugin never links libcuda or libcudart. cuda.h supplies only types and prototypes; the
// entry points are looked up with dlsym in "libcuda.so.1" the first time probe() runs, so the
// plugin loads (and reports "not usable" with the reason) on a machine without the driver.
#pragma once

#include <cuda.h>

#include <string>

namespace cpn::cuda {

/* The driver entry points the plugin uses. Each pointer type is taken from cuda.h's own
 * prototype (its `_v2` name where cuda.h maps the plain name to one), so a mismatch between
 * this table and the header fails to compile instead of misbehaving at run time. Member names
 * drop the "cu" prefix on purpose: cuda.h #defines several of the plain names. */
struct DriverApi {
    decltype(&::cuGetErrorName) get_error_name = nullptr;
    decltype(&::cuGetErrorString) get_error_string = nullptr;
    decltype(&::cuInit) init = nullptr;
    decltype(&::cuDriverGetVersion) driver_get_version = nullptr;
    decltype(&::cuDeviceGetCount) device_get_count = nullptr;
    decltype(&::cuDeviceGet) device_get = nullptr;
    decltype(&::cuDeviceGetName) device_get_name = nullptr;
    decltype(&::cuDeviceGetAttribute) device_get_attribute = nullptr;
    decltype(&::cuDeviceGetPCIBusId) device_get_pci_bus_id = nullptr;
    decltype(&::cuDeviceTotalMem_v2) device_total_mem = nullptr;
    /* cuDeviceGetUuid_v2 where the driver has it (>= 11.4), else the original cuDeviceGetUuid;
     * both share one signature. */
    decltype(&::cuDeviceGetUuid_v2) device_get_uuid = nullptr;

    decltype(&::cuDevicePrimaryCtxRetain) primary_ctx_retain = nullptr;
    decltype(&::cuDevicePrimaryCtxRelease_v2) primary_ctx_release = nullptr;
    decltype(&::cuCtxPushCurrent_v2) ctx_push_current = nullptr;
    decltype(&::cuCtxPopCurrent_v2) ctx_pop_current = nullptr;
    decltype(&::cuCtxSynchronize) ctx_synchronize = nullptr;
    decltype(&::cuModuleLoadData) module_load_data = nullptr;
    decltype(&::cuModuleUnload) module_unload = nullptr;
    decltype(&::cuModuleGetFunction) module_get_function = nullptr;
    decltype(&::cuMemAlloc_v2) mem_alloc = nullptr;
    decltype(&::cuMemFree_v2) mem_free = nullptr;
    decltype(&::cuMemcpyHtoD_v2) memcpy_htod = nullptr;
    decltype(&::cuMemcpyDtoH_v2) memcpy_dtoh = nullptr;
    decltype(&::cuLaunchKernel) launch_kernel = nullptr;

    /* Used by the bench.* workloads (cuda_bench.cpp). */
    decltype(&::cuMemGetInfo_v2) mem_get_info = nullptr;
    decltype(&::cuMemHostAlloc) mem_host_alloc = nullptr;
    decltype(&::cuMemFreeHost) mem_free_host = nullptr;
    decltype(&::cuMemcpyHtoDAsync_v2) memcpy_htod_async = nullptr;
    decltype(&::cuMemcpyDtoHAsync_v2) memcpy_dtoh_async = nullptr;
    decltype(&::cuMemsetD8_v2) memset_d8 = nullptr;
    decltype(&::cuStreamCreate) stream_create = nullptr;
    decltype(&::cuStreamDestroy_v2) stream_destroy = nullptr;
    decltype(&::cuStreamSynchronize) stream_synchronize = nullptr;
    decltype(&::cuEventCreate) event_create = nullptr;
    decltype(&::cuEventDestroy_v2) event_destroy = nullptr;
    decltype(&::cuEventRecord) event_record = nullptr;
    decltype(&::cuEventSynchronize) event_synchronize = nullptr;
    /* cuEventElapsedTime_v2 where the driver has it (>= 12.8), else the original; same
     * signature. */
    decltype(&::cuEventElapsedTime_v2) event_elapsed_time = nullptr;
    decltype(&::cuOccupancyMaxActiveBlocksPerMultiprocessor) occupancy_max_active_blocks = nullptr;

    /* Used by the inference extension (cuda_infer.cpp): zero-filling on its own stream. */
    decltype(&::cuMemsetD32Async) memset_d32_async = nullptr;
};

/* What probe() found out about the driver, cached by driver_state(). */
struct DriverState {
    const DriverApi* api = nullptr; /* non-null once libcuda.so.1 loaded and resolved */
    bool usable = false;            /* cuInit succeeded and at least one device is visible */
    bool broken = false;        /* the driver is there but failed (not a quiet "nothing here") */
    std::string reason;         /* why not usable */
    int driver_api_version = 0; /* cuDriverGetVersion, e.g. 13000 */
    std::string driver_version; /* kernel module version ("580.65.06") or "" */
};

/* Loads and initialises the driver on first use and returns the outcome; later calls return the
 * cached outcome once usable, and retry while not (a driver may appear after an install). */
DriverState driver_state();

/* "13.0" from 13000. */
std::string format_api_version(int v);

/* Makes a context current on the calling thread for the scope and restores the previous one
 * after, so the plugin leaves the host thread's CUDA state as it found it. */
class ScopedContext {
public:
    ScopedContext(const DriverApi* api, CUcontext ctx)
        : api_(api), result_(api->ctx_push_current(ctx)) {}
    ~ScopedContext() {
        if (result_ == CUDA_SUCCESS) {
            CUcontext popped = nullptr;
            api_->ctx_pop_current(&popped);
        }
    }
    ScopedContext(const ScopedContext&) = delete;
    ScopedContext& operator=(const ScopedContext&) = delete;
    CUresult result() const { return result_; }

private:
    const DriverApi* api_;
    CUresult result_;
};

}  // namespace cpn::cuda
