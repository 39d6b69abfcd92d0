// proc_stat.hpp: CPU utilisation from the aggregate "cpu" line of /proc/stat.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cpn::telemetry {

/* Cumulative CPU time of all CPUs, in USER_HZ ticks, split into busy and idle. */
struct CpuTimes {
    uint64_t busy = 0; /* user + nice + system + irq + softirq + steal */
    uint64_t idle = 0; /* idle + iowait */
};

/* Parses the "cpu  ..." line at the head of /proc/stat text. guest and guest_nice are left
 * out because the kernel already counts them in user and nice. Kernels that print fewer than
 * the eight fields used (pre-2.6.11 has no steal) count the missing ones as zero; fewer than
 * four, a non-numeric field, or a sum that overflows gives nullopt. */
std::optional<CpuTimes> parse_cpu_times(std::string_view stat_text);

/* Reads <proc_root>/stat (the path is given whole) and parses it. */
std::optional<CpuTimes> read_cpu_times(const std::string& stat_path);

/* Busy share of the time that passed between two readings, in percent, clamped into
 * [0, 100]. nullopt when no tick passed (two samples within one tick) or a counter went
 * backwards (CPU hot-unplug, a container's /proc view being swapped), since no rate can be
 * told from those. */
std::optional<double> cpu_utilization_pct(const CpuTimes& before, const CpuTimes& after);

}  // namespace cpn::telemetry
