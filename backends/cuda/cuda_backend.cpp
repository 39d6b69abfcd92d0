// cuda_backend.cpp: the CUDA plugin's exported entry points, probe() and the function table.
//
// Every table function is wrapped so that no C++ exception crosses the C ABI: an exception
// (in practice only std::bad_alloc) becomes CPN_E_INTERNAL / CPN_E_OUT_OF_MEMORY with a message.
#include "cpn_backend.h"
#include "cpn_backend_util.hpp"
#include "cuda_devices.hpp"
#include "cuda_driver.hpp"
#include "cuda_exec.hpp"
#include "cuda_infer.hpp"
#include "cuda_log.hpp"
#include "cuda_telemetry.hpp"

#include <cstring>
#include <exception>
#include <new>

#ifndef CPN_PLUGIN_VERSION
#define CPN_PLUGIN_VERSION "0.0.0"
#endif

namespace cpn::cuda {
namespace {

using plugin::copy_str;
using plugin::fail;

/* Says whether the CUDA driver is usable here. A missing driver or the absence of any device
 * is usable=0 with CPN_OK (the backend is skipped, the reason shown); so is a driver that
 * fails, whose reason carries the CUDA error's name and text. */
cpn_status probe(cpn_probe_info* out, cpn_msg* err) {
    return plugin::guarded(err, "cuda probe", [&]() -> cpn_status {
        if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "probe: out is NULL");
        if (out->struct_size < sizeof(cpn_probe_info)) {
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "probe: out->struct_size is %u, expected at least %zu", out->struct_size,
                        sizeof(cpn_probe_info));
        }
        const uint32_t size = out->struct_size;
        std::memset(out, 0, sizeof *out);
        out->struct_size = size;
        copy_str(out->runtime_name, "CUDA driver API");

        DriverState st = driver_state();
        out->usable = st.usable ? 1 : 0;
        copy_str(out->reason, st.reason);
        if (st.driver_api_version > 0) {
            copy_str(out->runtime_version, format_api_version(st.driver_api_version));
        }
        copy_str(out->driver_version, st.driver_version);
        return CPN_OK;
    });
}

cpn_status t_device_count(uint32_t* count, cpn_msg* err) {
    return plugin::guarded(err, "cuda device_count", [&] { return device_count(count, err); });
}
cpn_status t_device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err) {
    return plugin::guarded(err, "cuda device_info", [&] { return device_info(index, out, err); });
}
cpn_status t_device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err) {
    return plugin::guarded(err, "cuda device_open", [&] { return device_open(index, out, err); });
}
void t_device_close(cpn_device_handle* device) {
    plugin::guarded(nullptr, "cuda device_close", [&] {
        device_close(device);
        return CPN_OK;
    });
}
cpn_status t_query(cpn_device_handle* device, const cpn_workload* workload, cpn_query_result* out,
                   cpn_msg* err) {
    return plugin::guarded(err, "cuda query", [&] { return query(device, workload, out, err); });
}
cpn_status t_prepare(cpn_device_handle* device, const cpn_workload* workload, cpn_prepared** out,
                     cpn_msg* err) {
    return plugin::guarded(err, "cuda prepare", [&] { return prepare(device, workload, out, err); });
}
cpn_status t_run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
                 cpn_msg* err) {
    return plugin::guarded(err, "cuda run", [&] { return run(prepared, io, control, err); });
}
void t_release(cpn_prepared* prepared) {
    plugin::guarded(nullptr, "cuda release", [&] {
        release(prepared);
        return CPN_OK;
    });
}
/* Named extras: CPN_DEVICE_TELEMETRY_PROC (NVML telemetry, see cuda_telemetry.hpp) and
 * CPN_INFER_PROC (the inference extension, see cuda_infer.hpp). Handing out a table loads
 * nothing; the inference functions work on a device the host opened, so only after probe found
 * the driver. */
void* t_get_proc(const char* name) {
    if (name == nullptr) return nullptr;
    if (std::strcmp(name, CPN_DEVICE_TELEMETRY_PROC) == 0) {
        cpn_device_telemetry_fn fn = device_telemetry;
        return reinterpret_cast<void*>(fn);
    }
    if (std::strcmp(name, CPN_INFER_PROC) == 0)
        return const_cast<void*>(static_cast<const void*>(infer_ext::api()));
    return nullptr;
}

/* Nothing to tear down: device handles and prepared workloads are the host's to close first,
 * and libcuda.so.1 stays loaded on purpose (the driver does not support being unloaded).
 * NVML, when telemetry initialised it, gets its matching nvmlShutdown. */
void t_shutdown() {
    log(1, "shutdown");
    telemetry_shutdown();
}

const cpn_backend kTable = {
    CPN_BACKEND_ABI_VERSION,
    sizeof(cpn_backend),
    "cuda",
    CPN_PLUGIN_VERSION,
    probe,
    t_device_count,
    t_device_info,
    t_device_open,
    t_device_close,
    t_query,
    t_prepare,
    t_run,
    t_release,
    t_get_proc,
    t_shutdown,
};

}  // namespace
}  // namespace cpn::cuda

extern "C" CPN_BACKEND_EXPORT uint32_t cpn_backend_abi_version() { return CPN_BACKEND_ABI_VERSION; }

/* Returns the static function table. Loads nothing: libcuda.so.1 is opened by probe(). */
extern "C" CPN_BACKEND_EXPORT const cpn_backend* cpn_backend_entry(const cpn_host* host) {
    cpn::cuda::set_host(host);
    return &cpn::cuda::kTable;
}
