// proc_stat.cpp: parsing the aggregate CPU line of /proc/stat and turning two readings into a
// utilisation.
#include "proc_stat.hpp"

#include "file_values.hpp"

#include <algorithm>

namespace cpn::telemetry {

std::optional<CpuTimes> parse_cpu_times(std::string_view text) {
    /* Only the first line: the per-CPU lines and the counters after them are not needed. */
    size_t nl = text.find('\n');
    std::string_view rest = nl == std::string_view::npos ? text : text.substr(0, nl);
    if (next_token(rest) != "cpu") return std::nullopt;
    /* user nice system idle iowait irq softirq steal (guest guest_nice ignored). */
    uint64_t f[8] = {};
    int n = 0;
    for (; n < 8; ++n) {
        std::string_view tok = next_token(rest);
        if (tok.empty()) break;
        std::optional<uint64_t> v = parse_uint64(tok);
        if (!v) return std::nullopt;
        f[n] = *v;
    }
    if (n < 4) return std::nullopt;
    CpuTimes t;
    const uint64_t busy_parts[] = {f[0], f[1], f[2], f[5], f[6], f[7]};
    for (uint64_t p : busy_parts) {
        if (__builtin_add_overflow(t.busy, p, &t.busy)) return std::nullopt;
    }
    if (__builtin_add_overflow(f[3], f[4], &t.idle)) return std::nullopt;
    return t;
}

std::optional<CpuTimes> read_cpu_times(const std::string& stat_path) {
    /* Only the head is needed; the kernel builds the whole file anyway, but copying out just
     * one buffer keeps this a single small read on machines with hundreds of CPUs. */
    char buf[kReadBufferSize];
    std::optional<std::string_view> text = read_small_file(stat_path, buf, sizeof buf);
    if (!text) return std::nullopt;
    return parse_cpu_times(*text);
}

std::optional<double> cpu_utilization_pct(const CpuTimes& before, const CpuTimes& after) {
    if (after.busy < before.busy || after.idle < before.idle) return std::nullopt;
    const uint64_t busy = after.busy - before.busy;
    const uint64_t idle = after.idle - before.idle;
    const uint64_t total = busy + idle;
    if (total == 0) return std::nullopt;
    double pct = 100.0 * static_cast<double>(busy) / static_cast<double>(total);
    return std::clamp(pct, 0.0, 100.0);
}

}  // namespace cpn::telemetry
