// ze_backend.cpp: the Level Zero plugin's exported entry points, probe() and the function table.
//
// Every table function is wrapped so that no C++ exception crosses the C ABI: an exception
// (in practice only std::bad_alloc) becomes CPN_E_INTERNAL / CPN_E_OUT_OF_MEMORY with a message.
#include "cpn_backend.h"
#include "cpn_backend_util.hpp"
#include "ze_devices.hpp"
#include "ze_driver.hpp"
#include "ze_exec.hpp"
#include "ze_log.hpp"
#include "ze_telemetry.hpp"

#include <cstring>
#include <exception>
#include <new>

#ifndef CPN_PLUGIN_VERSION
#define CPN_PLUGIN_VERSION "0.0.0"
#endif

namespace cpn::levelzero {
namespace {

using plugin::copy_str;
using plugin::fail;

/* Says whether a Level Zero driver is usable here: zeInit(0) for all device types, then at
 * least one device on some driver. Not usable is CPN_OK with usable=0 and the reason, naming
 * the ze_result_t code verbatim. */
cpn_status probe(cpn_probe_info* out, cpn_msg* err) {
    return plugin::guarded(err, "levelzero probe", [&]() -> cpn_status {
        if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "probe: out is NULL");
        if (out->struct_size < sizeof(cpn_probe_info)) {
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "probe: out->struct_size is %u, expected at least %zu", out->struct_size,
                        sizeof(cpn_probe_info));
        }
        const uint32_t size = out->struct_size;
        std::memset(out, 0, sizeof *out);
        out->struct_size = size;
        copy_str(out->runtime_name, "oneAPI Level Zero");

        const ZeState& st = ze_state();
        out->usable = st.usable ? 1 : 0;
        copy_str(out->reason, st.reason);
        copy_str(out->runtime_version, st.api_version);
        copy_str(out->driver_version, st.driver_version);
        return CPN_OK;
    });
}

cpn_status t_device_count(uint32_t* count, cpn_msg* err) {
    return plugin::guarded(err, "levelzero device_count", [&] { return device_count(count, err); });
}
cpn_status t_device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err) {
    return plugin::guarded(err, "levelzero device_info", [&] { return device_info(index, out, err); });
}
cpn_status t_device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err) {
    return plugin::guarded(err, "levelzero device_open", [&] { return device_open(index, out, err); });
}
void t_device_close(cpn_device_handle* device) { device_close(device); }
cpn_status t_query(cpn_device_handle* device, const cpn_workload* workload, cpn_query_result* out,
                   cpn_msg* err) {
    return plugin::guarded(err, "levelzero query", [&] { return query(device, workload, out, err); });
}
cpn_status t_prepare(cpn_device_handle* device, const cpn_workload* workload, cpn_prepared** out,
                     cpn_msg* err) {
    return plugin::guarded(err, "levelzero prepare", [&] { return prepare(device, workload, out, err); });
}
cpn_status t_run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
                 cpn_msg* err) {
    return plugin::guarded(err, "levelzero run", [&] { return run(prepared, io, control, err); });
}
void t_release(cpn_prepared* prepared) { release(prepared); }
/* Named extras: CPN_DEVICE_TELEMETRY_PROC (Sysman telemetry, see ze_telemetry.hpp). */
void* t_get_proc(const char* name) {
    if (name != nullptr && std::strcmp(name, CPN_DEVICE_TELEMETRY_PROC) == 0) {
        cpn_device_telemetry_fn fn = device_telemetry;
        return reinterpret_cast<void*>(fn);
    }
    return nullptr;
}

/* Level Zero has no global teardown call (nor has Sysman); the loader cleans up at process
 * exit. Telemetry's device map and previous samples are dropped. */
void t_shutdown() {
    log(1, "shutdown");
    telemetry_shutdown();
}

const cpn_backend kTable = {
    CPN_BACKEND_ABI_VERSION,
    sizeof(cpn_backend),
    "levelzero",
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
}  // namespace cpn::levelzero

extern "C" CPN_BACKEND_EXPORT uint32_t cpn_backend_abi_version() { return CPN_BACKEND_ABI_VERSION; }

/* Returns the static function table. Initialises nothing: zeInit runs in probe(). */
extern "C" CPN_BACKEND_EXPORT const cpn_backend* cpn_backend_entry(const cpn_host* host) {
    cpn::levelzero::set_host(host);
    return &cpn::levelzero::kTable;
}
