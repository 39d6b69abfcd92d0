// loadavg.hpp: the 1, 5 and 15 minute load averages from /proc/loadavg.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cpn::telemetry {

struct LoadAvg {
    std::optional<double> load1, load5, load15;
};

/* Parses "0.52 0.58 0.59 1/85 20627": each of the first three fields independently, so one
 * damaged field loses only itself. A field that is not a finite, non-negative number is
 * left empty. */
LoadAvg parse_loadavg(std::string_view text);

/* Reads the file at `loadavg_path` and parses it; all empty when unreadable. */
LoadAvg read_loadavg(const std::string& loadavg_path);

}  // namespace cpn::telemetry
