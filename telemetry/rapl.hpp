// rapl.hpp: CPU package power from the RAPL energy counters (powercap sysfs).
//
// RAPL gives a cumulative energy counter per package, not a power; power is the energy used
// between two readings divided by the time between them, so the meter keeps the last reading.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cpn::telemetry {

/* One package zone: <sysfs>/class/powercap/intel-rapl:N whose name is "package-N". */
struct RaplZone {
    std::string energy_path;   /* energy_uj */
    uint64_t max_range_uj = 0; /* max_energy_range_uj: the counter wraps to 0 past it; 0 unknown */
};

/* The package zones under <sysfs_root>/class/powercap. Only top-level "intel-rapl:N" zones
 * named "package-*" count: the sub-zones (intel-rapl:N:M: core, uncore, dram) are parts of a
 * package, "psys" is the whole platform including the packages, and intel-rapl-mmio:N repeats
 * a package through another interface; any of them would count energy twice. AMD processors
 * report through the same driver and names. */
std::vector<RaplZone> find_rapl_packages(const std::string& sysfs_root);

/* Package power over the interval between successive readings, summed over packages. */
class RaplMeter {
public:
    /* A meter over the given zones, with no reading yet. */
    explicit RaplMeter(std::vector<RaplZone> zones);

    /* Takes a reading at `now` (a monotonic time) and returns the power since the previous
     * one in watts; nullopt on the first reading, when no zone exists, when any package could
     * not be read either time (a partial sum would under-report; energy_uj is root-only on
     * kernels patched for CVE-2020-8694), when a package's counter did not move (frozen
     * counters in some VMs), or when the result is implausible. A counter that
     * went backwards wrapped once at max_energy_range_uj; without a known range that reading
     * is dropped. */
    std::optional<double> read_watts(std::chrono::nanoseconds now);

    /* True when there is no package zone to read (VMs, non-x86, no powercap driver). */
    bool empty() const { return zones_.empty(); }

private:
    std::vector<RaplZone> zones_;
    std::vector<std::optional<uint64_t>> last_uj_; /* per zone, the previous reading */
    std::optional<std::chrono::nanoseconds> last_time_;
};

}  // namespace cpn::telemetry
