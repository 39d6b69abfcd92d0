// meminfo.hpp: node memory from /proc/meminfo.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cpn::telemetry {

struct MemInfo {
    std::optional<uint64_t> total_bytes;     /* MemTotal */
    std::optional<uint64_t> available_bytes; /* MemAvailable (kernels >= 3.14) */
};

/* Picks MemTotal and MemAvailable ("MemTotal:  16318412 kB") out of /proc/meminfo text. A line
 * whose value is not a number, lacks the "kB" unit, or overflows in bytes leaves that member
 * empty. MemAvailable is used rather than MemFree because it counts reclaimable page cache as
 * available, which is what a scheduler placing work wants to know. */
MemInfo parse_meminfo(std::string_view text);

/* Reads the file at `meminfo_path` and parses it; both members empty when unreadable. */
MemInfo read_meminfo(const std::string& meminfo_path);

}  // namespace cpn::telemetry
