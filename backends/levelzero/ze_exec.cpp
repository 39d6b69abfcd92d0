// ze_exec.cpp: device_open / device_close for real, and the workload calls answering "not
// implemented" (see ze_exec.hpp).
#include "ze_exec.hpp"

#include "cpn_backend_util.hpp"
#include "ze_driver.hpp"

#include <cstring>
#include <new>

namespace cpn::levelzero {

using plugin::copy_str;
using plugin::fail;

/* Resolves flat index `index` to its driver and device handles. Level Zero devices need no
 * opening of their own; a context and command queues would be created here once workloads run. */
cpn_status device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "device_open: out is NULL");
    *out = nullptr;
    const ZeState& st = ze_state();
    if (!st.usable) {
        return fail(err, st.broken ? CPN_E_UNAVAILABLE : CPN_E_NOT_FOUND, "%s", st.reason.c_str());
    }
    if (index >= st.devices.size()) {
        return fail(err, CPN_E_NOT_FOUND, "device_open: index %u out of range (%zu devices)", index,
                    st.devices.size());
    }
    auto* h = new (std::nothrow) cpn_device_handle;
    if (h == nullptr) return fail(err, CPN_E_OUT_OF_MEMORY, "device_open: out of host memory");
    h->index = index;
    h->driver = st.devices[index].driver;
    h->device = st.devices[index].device;
    *out = h;
    return CPN_OK;
}

void device_close(cpn_device_handle* device) { delete device; }

/* Always CPN_OK with supported=0: no workload kind runs on this backend yet. */
cpn_status query(cpn_device_handle* device, const cpn_workload* workload, cpn_query_result* out,
                 cpn_msg* err) {
    if (device == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "query: device is NULL");
    if (workload == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "query: workload is NULL");
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "query: out is NULL");
    if (out->struct_size < sizeof(cpn_query_result)) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "query: out->struct_size is %u, expected at least %zu", out->struct_size,
                    sizeof(cpn_query_result));
    }
    const uint32_t size = out->struct_size;
    std::memset(out, 0, sizeof *out);
    out->struct_size = size;
    out->supported = 0;
    copy_str(out->reason, std::string(kNotImplemented) + " (workload kind \"" +
                              (workload->kind != nullptr ? workload->kind : "") + "\")");
    return CPN_OK;
}

cpn_status prepare(cpn_device_handle*, const cpn_workload* workload, cpn_prepared** out,
                   cpn_msg* err) {
    if (out != nullptr) *out = nullptr;
    return fail(err, CPN_E_UNSUPPORTED, "%s (workload kind \"%s\")", kNotImplemented,
                workload != nullptr && workload->kind != nullptr ? workload->kind : "");
}

cpn_status run(cpn_prepared*, cpn_run_io*, const cpn_run_control*, cpn_msg* err) {
    return fail(err, CPN_E_UNSUPPORTED, "%s", kNotImplemented);
}

/* prepare never hands out a cpn_prepared, so there is nothing to release. */
void release(cpn_prepared*) {}

}  // namespace cpn::levelzero
