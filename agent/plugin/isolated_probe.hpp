// isolated_probe.hpp: probes every plugin in its own child process, all in parallel, each time-
// boxed, so a vendor runtime that hangs or crashes cannot stop discovery of the rest.
#pragma once

#include <string>
#include <vector>

#include "inventory/device.hpp"

namespace cpn {

struct PluginOutcome {
    PluginReport report;
    std::vector<Device> devices;
};

/* Runs `<helper...> probe-plugin --plugin <path>` for each path; `helper` is the agent binary
 * (or any program that speaks the same output). */
std::vector<PluginOutcome> probe_plugins_isolated(const std::string& helper,
                                                  const std::vector<std::string>& plugin_paths,
                                                  int timeout_ms);

/* Reads one child's output into an outcome; a malformed document is a failed probe that says
 * what was wrong. Exposed for tests. */
PluginOutcome parse_probe_output(const std::string& path, const std::string& stdout_text);

}  // namespace cpn
