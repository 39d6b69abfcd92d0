// meminfo.cpp: MemTotal and MemAvailable out of /proc/meminfo.
#include "meminfo.hpp"

#include "file_values.hpp"

namespace cpn::telemetry {
namespace {

/* "   16318412 kB" -> bytes; nullopt unless exactly a number followed by "kB". */
std::optional<uint64_t> parse_kb_value(std::string_view rest) {
    std::optional<uint64_t> kb = parse_uint64(next_token(rest));
    if (!kb || next_token(rest) != "kB" || !next_token(rest).empty()) return std::nullopt;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(*kb, uint64_t{1024}, &bytes)) return std::nullopt;
    return bytes;
}

}  // namespace

MemInfo parse_meminfo(std::string_view text) {
    MemInfo m;
    bool seen_total = false, seen_available = false;
    while (!text.empty() && !(seen_total && seen_available)) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view key = line.substr(0, colon);
        std::string_view rest = line.substr(colon + 1);
        /* The first occurrence counts, so a malformed file repeating a key cannot override it. */
        if (key == "MemTotal" && !seen_total) {
            seen_total = true;
            m.total_bytes = parse_kb_value(rest);
        } else if (key == "MemAvailable" && !seen_available) {
            seen_available = true;
            m.available_bytes = parse_kb_value(rest);
        }
    }
    return m;
}

MemInfo read_meminfo(const std::string& meminfo_path) {
    /* MemTotal and MemAvailable are the first and third lines, well inside one buffer. */
    char buf[kReadBufferSize];
    std::optional<std::string_view> text = read_small_file(meminfo_path, buf, sizeof buf);
    if (!text) return {};
    return parse_meminfo(*text);
}

}  // namespace cpn::telemetry
