// nvml_api.hpp: the few NVML types and entry points the telemetry extra uses, declared here.
//
// No nvml.h is installed with the toolkit on the build machines (it ships with the driver's
// development package, when at all), and the plugin must not depend on it: libnvidia-ml.so.1
// is dlopened at the first telemetry call. These declarations follow NVML's documented,
// long-stable C ABI (the calls below have been unchanged since the _v2 names of CUDA 5-7).
#pragma once

namespace cpn::cuda::nvml {

using Return = int; /* nvmlReturn_t */
constexpr Return kSuccess = 0;
constexpr Return kErrorUninitialized = 1;
constexpr Return kErrorInvalidArgument = 2;
constexpr Return kErrorNotSupported = 3;
constexpr Return kErrorNoPermission = 4;
constexpr Return kErrorNotFound = 6;
constexpr Return kErrorDriverNotLoaded = 9;
constexpr Return kErrorLibraryNotFound = 12;
constexpr Return kErrorGpuIsLost = 15;

struct DeviceSt;
using Device = DeviceSt*; /* nvmlDevice_t: an opaque handle */

/* nvmlUtilization_t: percent of the last sample period the GPU / memory was busy. */
struct Utilization {
    unsigned int gpu;
    unsigned int memory;
};

/* nvmlMemory_t (version 1): bytes. */
struct Memory {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
};

constexpr int kTemperatureGpu = 0; /* NVML_TEMPERATURE_GPU */

using InitFn = Return (*)();                                             /* nvmlInit_v2 */
using ShutdownFn = Return (*)();                                         /* nvmlShutdown */
using ErrorStringFn = const char* (*)(Return);                           /* nvmlErrorString */
using GetHandleByPciBusIdFn = Return (*)(const char*, Device*);          /* ..._v2 */
using GetUtilizationRatesFn = Return (*)(Device, Utilization*);          /* nvmlDeviceGetUtilizationRates */
using GetMemoryInfoFn = Return (*)(Device, Memory*);                     /* nvmlDeviceGetMemoryInfo */
using GetTemperatureFn = Return (*)(Device, int, unsigned int*);         /* nvmlDeviceGetTemperature */
using GetPowerUsageFn = Return (*)(Device, unsigned int*);               /* nvmlDeviceGetPowerUsage, mW */
using GetClockInfoFn = Return (*)(Device, int, unsigned int*);           /* nvmlDeviceGetClockInfo, MHz */
/* nvmlDeviceGetCurrentClocksEventReasons (driver >= 535), or its older name
 * nvmlDeviceGetCurrentClocksThrottleReasons: a bit mask of the reasons below. */
using GetClocksReasonsFn = Return (*)(Device, unsigned long long*);

constexpr int kClockSm = 1; /* NVML_CLOCK_SM */

/* nvmlClocksEventReason* / nvmlClocksThrottleReason* bits. */
constexpr unsigned long long kReasonGpuIdle = 0x1ull;
constexpr unsigned long long kReasonApplicationsClocksSetting = 0x2ull;
constexpr unsigned long long kReasonSwPowerCap = 0x4ull;
constexpr unsigned long long kReasonHwSlowdown = 0x8ull;
constexpr unsigned long long kReasonSyncBoost = 0x10ull;
constexpr unsigned long long kReasonSwThermalSlowdown = 0x20ull;
constexpr unsigned long long kReasonHwThermalSlowdown = 0x40ull;
constexpr unsigned long long kReasonHwPowerBrakeSlowdown = 0x80ull;
constexpr unsigned long long kReasonDisplayClockSetting = 0x100ull;

}  // namespace cpn::cuda::nvml
