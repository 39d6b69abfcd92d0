// loadavg.cpp: the three load averages out of /proc/loadavg.
#include "loadavg.hpp"

#include "file_values.hpp"

namespace cpn::telemetry {
namespace {

std::optional<double> load_value(std::string_view token) {
    std::optional<double> v = parse_double(token);
    if (!v || *v < 0) return std::nullopt;
    return v;
}

}  // namespace

LoadAvg parse_loadavg(std::string_view text) {
    size_t nl = text.find('\n');
    std::string_view rest = nl == std::string_view::npos ? text : text.substr(0, nl);
    LoadAvg l;
    l.load1 = load_value(next_token(rest));
    l.load5 = load_value(next_token(rest));
    l.load15 = load_value(next_token(rest));
    return l;
}

LoadAvg read_loadavg(const std::string& loadavg_path) {
    char buf[256];
    std::optional<std::string_view> text = read_small_file(loadavg_path, buf, sizeof buf);
    if (!text) return {};
    return parse_loadavg(*text);
}

}  // namespace cpn::telemetry
