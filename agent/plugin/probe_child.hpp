// probe_child.hpp: the isolated side of discovery. `cpn-agent probe-plugin --plugin PATH` runs
// this in a child process: it loads one plugin, probes and enumerates it, and prints one JSON
// document on stdout. A vendor runtime that hangs or crashes takes only this child down.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace cpn {

/* Loads, probes and enumerates one plugin in this process; returns the JSON the parent reads:
 * {"report": PluginReport, "devices": [Device...]}. Never throws. */
nlohmann::json probe_plugin_in_process(const std::string& plugin_path);

/* Entry of the `probe-plugin` subcommand: prints the JSON and returns the exit code (0). */
int run_probe_child(const std::string& plugin_path);

}  // namespace cpn
