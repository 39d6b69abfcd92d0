// rapl.cpp: finding RAPL package zones and turning energy counter deltas into watts.
#include "rapl.hpp"

#include "file_values.hpp"

#include <cmath>

namespace cpn::telemetry {
namespace {

/* "intel-rapl:0" but not "intel-rapl:0:1" nor "intel-rapl-mmio:0". */
bool is_top_level_zone(const std::string& name) {
    constexpr std::string_view prefix = "intel-rapl:";
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
    return name.find_first_not_of("0123456789", prefix.size()) == std::string::npos;
}

/* Above this a reading is a counter glitch (a reset, a wrap missed), not a CPU. */
constexpr double kMaxPlausibleWatts = 10000.0;

}  // namespace

std::vector<RaplZone> find_rapl_packages(const std::string& sysfs_root) {
    std::vector<RaplZone> zones;
    const std::string base = sysfs_root + "/class/powercap";
    for (const std::string& entry : list_dir(base)) {
        if (!is_top_level_zone(entry)) continue;
        const std::string dir = base + "/" + entry;
        if (read_line_file(dir + "/name").rfind("package", 0) != 0) continue;
        RaplZone z;
        z.energy_path = dir + "/energy_uj";
        z.max_range_uj = read_uint_file(dir + "/max_energy_range_uj").value_or(0);
        zones.push_back(std::move(z));
    }
    return zones;
}

RaplMeter::RaplMeter(std::vector<RaplZone> zones)
    : zones_(std::move(zones)), last_uj_(zones_.size()) {}

std::optional<double> RaplMeter::read_watts(std::chrono::nanoseconds now) {
    if (zones_.empty()) return std::nullopt;
    bool complete = last_time_.has_value() && now > *last_time_;
    uint64_t total_uj = 0;
    for (size_t i = 0; i < zones_.size(); ++i) {
        std::optional<uint64_t> cur = read_uint_file(zones_[i].energy_path);
        std::optional<uint64_t> prev = last_uj_[i];
        last_uj_[i] = cur;
        if (!cur || !prev) {
            complete = false;
            continue;
        }
        uint64_t delta = 0;
        if (*cur >= *prev) {
            delta = *cur - *prev;
        } else if (zones_[i].max_range_uj > 0 && *prev <= zones_[i].max_range_uj) {
            /* Wrapped once: from prev up to the top of the range, then from 0 to cur. */
            delta = (zones_[i].max_range_uj - *prev) + *cur;
        } else {
            complete = false;
            continue;
        }
        /* A package that used no energy at all is a counter that is not counting (some
         * hypervisors pass a frozen powercap tree through), not a CPU drawing 0 W. */
        if (delta == 0) complete = false;
        if (__builtin_add_overflow(total_uj, delta, &total_uj)) complete = false;
    }
    const std::optional<std::chrono::nanoseconds> before = last_time_;
    last_time_ = now;
    if (!complete) return std::nullopt;
    const double seconds = std::chrono::duration<double>(now - *before).count();
    const double watts = static_cast<double>(total_uj) / 1e6 / seconds;
    if (!std::isfinite(watts) || watts < 0 || watts > kMaxPlausibleWatts) return std::nullopt;
    return watts;
}

}  // namespace cpn::telemetry
