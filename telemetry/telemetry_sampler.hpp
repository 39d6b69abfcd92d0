// telemetry_sampler.hpp: the node and device figures of one telemetry message.
//
// The sampler reads the kernel's own accounting (/proc/stat, /proc/meminfo, /proc/loadavg),
// its sensors (hwmon, RAPL powercap, amdgpu DRM attributes) and any plugin-provided sources
// (NVML through the CUDA plugin), and shapes them as the "node" and "devices" members of
// docs/schemas/telemetry.schema.json. Every figure is optional: one the platform lacks, or one
// that could not be read or made sense of, is absent, never zero.
#pragma once

#include "plugin_source.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cpn::telemetry {

/* A device to report on: its inventory id ("cpu", "pci-0000:03:00.0"), its PCI address
 * ("dddd:bb:dd.f", "" when not on PCI) and whether it is the host CPU complex. */
struct DeviceRef {
    std::string id;
    std::string pci_address;
    bool is_cpu = false;
};

/* A monotonic clock, as a duration since an arbitrary epoch. Rates (CPU utilisation, RAPL
 * power) divide by the time between readings, so tests substitute a fake one to get exact
 * figures; production uses std::chrono::steady_clock. */
using MonotonicClock = std::function<std::chrono::nanoseconds()>;

class TelemetrySampler {
public:
    /* proc_root "/proc" and sysfs_root "/sys" in production; tests pass recorded trees. Takes
     * a first reading so that the first sample() already has rates (CPU utilisation, RAPL
     * power). Which sensor files exist (hwmon chips, RAPL zones, DRM attributes) is worked out
     * here, once, so that sample() only reads; a driver loaded later is seen by a new sampler.
     * An empty `clock` means std::chrono::steady_clock. */
    TelemetrySampler(std::string proc_root, std::string sysfs_root, std::vector<DeviceRef> devices,
                     MonotonicClock clock = {});
    ~TelemetrySampler();
    TelemetrySampler(TelemetrySampler&&) noexcept;
    TelemetrySampler& operator=(TelemetrySampler&&) noexcept;
    TelemetrySampler(const TelemetrySampler&) = delete;
    TelemetrySampler& operator=(const TelemetrySampler&) = delete;

    /* Adds a plugin-provided source, consulted for every non-CPU device with a PCI address
     * after the sysfs sensors: its figures override theirs (a vendor library knows its own
     * device better than a generic driver attribute) and complete what they lack. Sources
     * added later override earlier ones. `name` is the default for "sources" when the plugin
     * does not name its own. */
    void add_plugin_source(std::string name, PluginSource source);

    /* {"node": {...}, "devices": [ {"id": ..., ...}, ... ]} per telemetry.schema.json: node
     * cpu_utilization_pct, memory_total_bytes, memory_used_bytes, memory_utilization_pct,
     * load1/5/15; one device entry per DeviceRef with at least one figure, with "sources"
     * naming where each came from (procfs, rapl, hwmon, drm, or the plugin's name). Cheap: a
     * few file reads, no allocation storms; it runs every 10 s on an idle edge node whose CPU
     * budget is 0.2 % of a core. Never throws. Not thread-safe: one caller at a time. */
    nlohmann::json sample();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cpn::telemetry
