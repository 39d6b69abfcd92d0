// cuda_driver.cpp: dlopen of libcuda.so.1, dlsym of the entry points, cuInit and the driver
// versions.
#include "cuda_driver.hpp"

#include "cpn_backend_util.hpp"
#include "cuda_errors.hpp"
#include "cuda_log.hpp"

#include <dlfcn.h>

#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>

namespace cpn::cuda {
namespace {

constexpr const char* kDriverLibrary = "libcuda.so.1";

std::mutex g_mutex;
DriverApi g_api; /* filled once; never cleared (libcuda.so.1 is never unloaded) */
bool g_api_loaded = false;
DriverState g_state; /* cached once usable */

/* Resolves one symbol into `slot`; records the first missing name in `missing`. */
template <typename Fn>
void resolve(void* lib, const char* name, Fn& slot, std::string& missing) {
    slot = reinterpret_cast<Fn>(dlsym(lib, name));
    if (slot == nullptr && missing.empty()) missing = name;
}

/* Opens libcuda.so.1 and fills g_api. libcuda is opened RTLD_LOCAL so none of its symbols leak
 * into the host's namespace, and it is deliberately never dlclose'd: the driver registers
 * process-exit handlers and does not support being unloaded. On failure returns false and says
 * why in `reason`, with dlerror's text verbatim. */
bool load_api(std::string& reason) {
    if (g_api_loaded) return true;
    dlerror();
    void* lib = dlopen(kDriverLibrary, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        const char* e = dlerror();
        reason = std::string("NVIDIA driver not installed: ") + kDriverLibrary + " not found (" +
                 (e != nullptr ? e : "dlopen failed") + ")";
        return false;
    }
    DriverApi api;
    std::string missing;
    resolve(lib, "cuGetErrorName", api.get_error_name, missing);
    resolve(lib, "cuGetErrorString", api.get_error_string, missing);
    resolve(lib, "cuInit", api.init, missing);
    resolve(lib, "cuDriverGetVersion", api.driver_get_version, missing);
    resolve(lib, "cuDeviceGetCount", api.device_get_count, missing);
    resolve(lib, "cuDeviceGet", api.device_get, missing);
    resolve(lib, "cuDeviceGetName", api.device_get_name, missing);
    resolve(lib, "cuDeviceGetAttribute", api.device_get_attribute, missing);
    resolve(lib, "cuDeviceGetPCIBusId", api.device_get_pci_bus_id, missing);
    resolve(lib, "cuDeviceTotalMem_v2", api.device_total_mem, missing);
    resolve(lib, "cuDevicePrimaryCtxRetain", api.primary_ctx_retain, missing);
    resolve(lib, "cuDevicePrimaryCtxRelease_v2", api.primary_ctx_release, missing);
    resolve(lib, "cuCtxPushCurrent_v2", api.ctx_push_current, missing);
    resolve(lib, "cuCtxPopCurrent_v2", api.ctx_pop_current, missing);
    resolve(lib, "cuCtxSynchronize", api.ctx_synchronize, missing);
    resolve(lib, "cuModuleLoadData", api.module_load_data, missing);
    resolve(lib, "cuModuleUnload", api.module_unload, missing);
    resolve(lib, "cuModuleGetFunction", api.module_get_function, missing);
    resolve(lib, "cuMemAlloc_v2", api.mem_alloc, missing);
    resolve(lib, "cuMemFree_v2", api.mem_free, missing);
    resolve(lib, "cuMemcpyHtoD_v2", api.memcpy_htod, missing);
    resolve(lib, "cuMemcpyDtoH_v2", api.memcpy_dtoh, missing);
    resolve(lib, "cuLaunchKernel", api.launch_kernel, missing);
    resolve(lib, "cuMemGetInfo_v2", api.mem_get_info, missing);
    resolve(lib, "cuMemHostAlloc", api.mem_host_alloc, missing);
    resolve(lib, "cuMemFreeHost", api.mem_free_host, missing);
    resolve(lib, "cuMemcpyHtoDAsync_v2", api.memcpy_htod_async, missing);
    resolve(lib, "cuMemcpyDtoHAsync_v2", api.memcpy_dtoh_async, missing);
    resolve(lib, "cuMemsetD8_v2", api.memset_d8, missing);
    resolve(lib, "cuStreamCreate", api.stream_create, missing);
    resolve(lib, "cuStreamDestroy_v2", api.stream_destroy, missing);
    resolve(lib, "cuStreamSynchronize", api.stream_synchronize, missing);
    resolve(lib, "cuEventCreate", api.event_create, missing);
    resolve(lib, "cuEventDestroy_v2", api.event_destroy, missing);
    resolve(lib, "cuEventRecord", api.event_record, missing);
    resolve(lib, "cuEventSynchronize", api.event_synchronize, missing);
    resolve(lib, "cuOccupancyMaxActiveBlocksPerMultiprocessor", api.occupancy_max_active_blocks,
            missing);
    resolve(lib, "cuMemsetD32Async", api.memset_d32_async, missing);
    {
        std::string no_v2;
        resolve(lib, "cuEventElapsedTime_v2", api.event_elapsed_time, no_v2);
        if (api.event_elapsed_time == nullptr) {
            resolve(lib, "cuEventElapsedTime", api.event_elapsed_time, missing);
        }
    }
    /* The UUID: _v2 since driver 11.4, the original before; same signature. Optional. */
    std::string no_uuid;
    resolve(lib, "cuDeviceGetUuid_v2", api.device_get_uuid, no_uuid);
    if (api.device_get_uuid == nullptr) {
        resolve(lib, "cuDeviceGetUuid", api.device_get_uuid, no_uuid);
    }
    if (!missing.empty()) {
        reason = std::string("NVIDIA driver too old or damaged: ") + kDriverLibrary + " lacks " +
                 missing;
        /* Leave it loaded: unloading libcuda is what we avoid everywhere else too. */
        return false;
    }
    g_api = api;
    g_api_loaded = true;
    return true;
}

/* The kernel module's version ("580.65.06") from /proc/driver/nvidia/version, whose first line
 * reads "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  <date>". "" when absent
 * (a container without /proc/driver/nvidia, a Tegra board). No NVML needed. */
std::string read_kernel_module_version() {
    std::ifstream in("/proc/driver/nvidia/version");
    std::string line;
    if (!in || !std::getline(in, line)) return "";
    const std::string marker = "Kernel Module";
    size_t at = line.find(marker);
    if (at == std::string::npos) return "";
    std::istringstream rest(line.substr(at + marker.size()));
    std::string token;
    rest >> token;
    /* Accept only something that looks like a version: digits and dots. */
    if (token.empty() || token.find_first_not_of("0123456789.") != std::string::npos) return "";
    return token;
}

/* Runs cuInit(0), cuDriverGetVersion and cuDeviceGetCount and classifies the outcome: no device
 * and the toolkit's stub library are a quiet "nothing here"; any other failure is a broken
 * driver, reported with the error's name and text. */
DriverState initialise() {
    DriverState st;
    std::string reason;
    if (!load_api(reason)) {
        st.reason = reason;
        return st;
    }
    st.api = &g_api;
    CUresult r = g_api.init(0);
    if (r == CUDA_ERROR_NO_DEVICE) {
        st.reason = "no CUDA-capable device (cuInit: " + error_text(&g_api, r) + ")";
        return st;
    }
    if (r == CUDA_ERROR_STUB_LIBRARY) {
        st.reason = std::string("NVIDIA driver not installed: ") + kDriverLibrary +
                    " is the CUDA toolkit's stub library (cuInit: " + error_text(&g_api, r) + ")";
        return st;
    }
    if (r != CUDA_SUCCESS) {
        st.broken = true;
        st.reason = "cuInit failed: " + error_text(&g_api, r);
        return st;
    }
    int version = 0;
    r = g_api.driver_get_version(&version);
    if (r != CUDA_SUCCESS) {
        st.broken = true;
        st.reason = "cuDriverGetVersion failed: " + error_text(&g_api, r);
        return st;
    }
    st.driver_api_version = version;
    st.driver_version = read_kernel_module_version();
    int count = 0;
    r = g_api.device_get_count(&count);
    if (r != CUDA_SUCCESS) {
        st.broken = true;
        st.reason = "cuDeviceGetCount failed: " + error_text(&g_api, r);
        return st;
    }
    if (count <= 0) {
        st.reason = "no CUDA-capable device (cuDeviceGetCount returned 0)";
        return st;
    }
    st.usable = true;
    return st;
}

}  // namespace

DriverState driver_state() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_state.usable) return g_state;
    g_state = initialise();
    log(1, g_state.usable
               ? "CUDA driver API " + format_api_version(g_state.driver_api_version) + " usable"
               : "CUDA not usable: " + g_state.reason);
    return g_state;
}

std::string format_api_version(int v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%d.%d", v / 1000, (v % 1000) / 10);
    return buf;
}

}  // namespace cpn::cuda
