// hwmon.hpp: temperatures and power from the kernel's hwmon sensors.
//
// Two uses: the CPU package temperature (the hwmon chips the CPU drivers register, found under
// <sysfs>/class/hwmon) and a PCI device's own sensors (<sysfs>/bus/pci/devices/<addr>/hwmon/).
// Paths are worked out once; each sample only reads the few files they name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cpn::telemetry {

/* The temp*_input files of every hwmon chip under <sysfs_root>/class/hwmon whose `name` is a
 * CPU temperature driver: coretemp (Intel), k10temp (AMD), zenpower (AMD, out of tree).
 * Several chips on multi-socket machines; none in most VMs. */
std::vector<std::string> find_cpu_temp_inputs(const std::string& sysfs_root);

/* The hottest of the given temp*_input files, in degrees Celsius; nullopt when none of them
 * holds a plausible reading. The maximum, because throttling follows the hottest core. */
std::optional<double> read_max_temperature_c(const std::vector<std::string>& inputs);

/* The sensor files of one hwmon chip belonging to a PCI device. */
struct DeviceHwmon {
    std::string temp_input;    /* temp1_input, millidegrees C */
    std::string power_average; /* power1_average, microwatts (amdgpu up to RDNA2, most others) */
    std::string power_input;   /* power1_input, microwatts (amdgpu RDNA3 and later) */
};

/* The hwmon chips under <device_dir>/hwmon/hwmon*, in name order. */
std::vector<DeviceHwmon> find_device_hwmon(const std::string& device_dir);

struct HwmonReading {
    std::optional<double> temperature_c;
    std::optional<double> power_w;
};

/* Reads the device's chips; for each figure the first chip with a plausible reading wins.
 * Power prefers power1_average (smoothed by the driver) over the instantaneous power1_input. */
HwmonReading read_device_hwmon(const std::vector<DeviceHwmon>& chips);

/* Millidegrees as read from a temp*_input file -> degrees C; nullopt outside -100..200 C,
 * which no working sensor reports (drivers print absurd values for a disconnected probe). */
std::optional<double> millidegrees_to_c(int64_t milli);

/* Microwatts from a power*_ file -> watts; nullopt when negative or above 10 kW. */
std::optional<double> microwatts_to_w(int64_t micro);

}  // namespace cpn::telemetry
