// cuda_telemetry.hpp: live GPU figures through NVML, the CUDA plugin's telemetry extra
// (get_proc(CPN_DEVICE_TELEMETRY_PROC)).
#pragma once

#include "cpn_backend.h"

namespace cpn::cuda {

/* cpn_device_telemetry_fn: samples the NVIDIA GPU at `pci_address` ("dddd:bb:dd.f") through
 * NVML: utilisation, memory used/total, GPU temperature, board power. Never touches the CUDA
 * driver API (no cuInit, no context): NVML is the driver's monitoring interface and costs the
 * idle daemon no GPU memory. libnvidia-ml.so.1 is dlopened and nvmlInit_v2 called on the first
 * call; a failure is remembered for a minute, so a machine without NVIDIA hardware pays one
 * failed dlopen a minute, not one per device per interval.
 *
 * CPN_E_NOT_FOUND: no NVML here ("NVML not available: <dlerror>"), no driver loaded, or no
 * NVIDIA GPU at that address. CPN_E_DEVICE_LOST: the GPU fell off the bus. CPN_E_UNAVAILABLE:
 * NVML present but failing. CPN_OK: `out->valid` says which figures the GPU could give (a
 * GeForce without power readout simply lacks CPN_TELEM_POWER). Never throws. */
cpn_status device_telemetry(const char* pci_address, cpn_device_telemetry* out, cpn_msg* err);

/* One clock reading of the GPU at `pci_address` for the bench.* workloads: the SM clock in MHz
 * and NVML's clock event (throttle) reasons mask. Loads and initialises NVML like
 * device_telemetry (and replays its remembered failure). Returns false when NVML is absent or
 * failing or knows no such GPU; otherwise true, with *have_mhz / *have_reasons saying which
 * readings the GPU gave. Never throws. */
bool clock_sample(const char* pci_address, unsigned* sm_mhz, bool* have_mhz,
                  unsigned long long* reasons, bool* have_reasons);

/* Balances nvmlInit_v2 with nvmlShutdown when telemetry initialised NVML; from shutdown().
 * The library itself stays loaded, like libcuda. */
void telemetry_shutdown();

}  // namespace cpn::cuda
