// ze_telemetry.hpp: live figures of Intel GPUs/NPUs through oneAPI Level Zero Sysman, the
// Level Zero plugin's telemetry extra (get_proc(CPN_DEVICE_TELEMETRY_PROC)).
#pragma once

#include "cpn_backend.h"

namespace cpn::levelzero {

/* cpn_device_telemetry_fn: samples the Level Zero device at `pci_address` ("dddd:bb:dd.f")
 * through Sysman (zes*): engine utilisation, device-local memory used/total, GPU temperature,
 * power.
 *
 * Sysman is initialised on the first call, once:
 *   - zesInit(0) + zesDriverGet/zesDeviceGet when the Level Zero loader has them (loader 1.9+,
 *     API 1.5; looked up at run time because the build headers/loader may predate them). This
 *     is independent of zeInit and creates no context.
 *   - otherwise (or when that finds no device) the legacy path, only when ZES_ENABLE_SYSMAN=1
 *     was already in the environment: then the core zeInit the plugin runs once per process
 *     (ze_state(), shared with probe) enabled Sysman, and core device handles are Sysman
 *     handles. The variable is never set from here: it is read by the driver at zeInit time
 *     only, and setenv in a running multi-threaded daemon is unsafe.
 * Devices are mapped by zesDevicePciGetProperties. A failed initialisation is remembered for a
 * minute, so a machine without an Intel GPU pays one attempt a minute, not one per device per
 * interval.
 *
 * Utilisation and power come from counter deltas between calls (the previous sample is kept
 * per device): the first call for a device has neither. CPN_E_NOT_FOUND: no Sysman here or no
 * Sysman device at that address. CPN_E_INVALID_ARGUMENT: NULL or malformed arguments.
 * CPN_E_DEVICE_LOST: the driver says the device is lost. CPN_OK: `out->valid` says which
 * figures were measured. Never throws. */
cpn_status device_telemetry(const char* pci_address, cpn_device_telemetry* out, cpn_msg* err);

/* Forgets the Sysman device map, the cached component handles, the previous samples and a
 * remembered failure; from shutdown(). Sysman has no teardown call; the loader stays loaded. */
void telemetry_shutdown();

}  // namespace cpn::levelzero
