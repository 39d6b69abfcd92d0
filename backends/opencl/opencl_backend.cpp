// opencl_backend.cpp: the plugin's entry point and the cpn_backend function table.
//
// This file is the ABI boundary. Every table entry is a thin wrapper that calls the
// implementation inside a try/catch: an exception (std::bad_alloc from a std::string, say)
// must never unwind into the host's C frames, so it becomes a status and a message instead.
#include <cstring>
#include <exception>
#include <new>

#include "cpn_backend_util.hpp"
#include "opencl_internal.hpp"
#ifdef CPN_OPENCL_INFER
#include "opencl_infer.hpp"
#endif

#ifndef CPN_OPENCL_PLUGIN_VERSION
#define CPN_OPENCL_PLUGIN_VERSION "0.0.0"
#endif

namespace cpn::opencl {

namespace {

/* The host's services, copied at entry; log is NULL until then (or when the host has none). */
cpn_host g_host{};

/* The same for the entries that return nothing: the failure can only be logged. */
template <typename F>
void guarded_void(const char* where, F&& f) noexcept {
    try {
        f();
    } catch (...) {
        try {
            log(4, std::string("exception swallowed in ") + where);
        } catch (...) {
        }
    }
}

cpn_status t_probe(cpn_probe_info* out, cpn_msg* err) {
    return plugin::guarded(err, "opencl probe", [&] { return probe(out, err); });
}
cpn_status t_device_count(uint32_t* count, cpn_msg* err) {
    return plugin::guarded(err, "opencl device_count", [&] { return device_count(count, err); });
}
cpn_status t_device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err) {
    return plugin::guarded(err, "opencl device_info", [&] { return device_info(index, out, err); });
}
cpn_status t_device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err) {
    return plugin::guarded(err, "opencl device_open", [&] { return device_open(index, out, err); });
}
void t_device_close(cpn_device_handle* device) {
    guarded_void("device_close", [&] { device_close(device); });
}
cpn_status t_query(cpn_device_handle* device, const cpn_workload* w, cpn_query_result* out,
                   cpn_msg* err) {
    return plugin::guarded(err, "opencl query", [&] { return query(device, w, out, err); });
}
cpn_status t_prepare(cpn_device_handle* device, const cpn_workload* w, cpn_prepared** out,
                     cpn_msg* err) {
    return plugin::guarded(err, "opencl prepare", [&] { return prepare(device, w, out, err); });
}
cpn_status t_run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
                 cpn_msg* err) {
    return plugin::guarded(err, "opencl run", [&] { return run(prepared, io, control, err); });
}
void t_release(cpn_prepared* prepared) {
    guarded_void("release", [&] { release(prepared); });
}
/* Named extras: the inference extension (cpn_infer.h) when built with CLBlast. Telemetry for
 * OpenCL devices would come from the vendor backends. */
void* t_get_proc(const char* name) {
#ifdef CPN_OPENCL_INFER
    if (name != nullptr && std::strcmp(name, CPN_INFER_PROC) == 0)
        return const_cast<void*>(static_cast<const void*>(infer_ext::api()));
#else
    (void)name;
#endif
    return nullptr;
}
/* Drops the cached device list. Opened devices are the host's to close before this. */
void t_shutdown() {
    guarded_void("shutdown", [] { reset_discovery(); });
}

constexpr cpn_backend kTable = {
    CPN_BACKEND_ABI_VERSION,
    sizeof(cpn_backend),
    "opencl",
    CPN_OPENCL_PLUGIN_VERSION,
    t_probe,
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

void log(int level, const std::string& message) {
    if (g_host.log != nullptr) g_host.log(level, "opencl", message.c_str());
}

}  // namespace cpn::opencl

extern "C" CPN_BACKEND_EXPORT uint32_t cpn_backend_abi_version(void) {
    return CPN_BACKEND_ABI_VERSION;
}

/*
 * Keeps a copy of the host's services and returns the static function table. A cpn_host
 * smaller than this plugin's is not read at all (no logging then) rather than read past its end.
 */
extern "C" CPN_BACKEND_EXPORT const cpn_backend* cpn_backend_entry(const cpn_host* host) {
    using cpn::opencl::g_host;
    g_host = cpn_host{};
    if (host != nullptr && host->struct_size >= sizeof(cpn_host)) g_host = *host;
    return &cpn::opencl::kTable;
}
