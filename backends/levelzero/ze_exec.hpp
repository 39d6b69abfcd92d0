// ze_exec.hpp: the execution half of the Level Zero backend.
//
// NOT IMPLEMENTED in this version beyond opening and closing a device: running a workload would
// need SPIR-V kernels (and a device to test them on). query answers supported=0 with the reason;
// prepare and run return CPN_E_UNSUPPORTED with the same message.
#pragma once

#include "cpn_backend.h"

#include <level_zero/ze_api.h>

/* The opaque device handle of cpn_backend.h, defined here for this plugin only. */
struct cpn_device_handle {
    uint32_t index = 0;
    ze_driver_handle_t driver = nullptr;
    ze_device_handle_t device = nullptr;
};

namespace cpn::levelzero {

inline constexpr const char* kNotImplemented =
    "levelzero backend: workload execution is not implemented in this version";

cpn_status device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err);
void device_close(cpn_device_handle* device);
cpn_status query(cpn_device_handle* device, const cpn_workload* workload, cpn_query_result* out,
                 cpn_msg* err);
cpn_status prepare(cpn_device_handle* device, const cpn_workload* workload, cpn_prepared** out,
                   cpn_msg* err);
cpn_status run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
               cpn_msg* err);
void release(cpn_prepared* prepared);

}  // namespace cpn::levelzero
