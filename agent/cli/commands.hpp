// commands.hpp: the subcommands of `cpn-agent`, each registered on the CLI11 app.
#pragma once

#include <functional>
#include <map>

#include <CLI/CLI.hpp>

#include "config/config.hpp"
#include "inventory/discovery.hpp"

namespace cpn::cli {

/* Exit codes, documented in docs/cli.md. */
enum ExitCode {
    kExitOk = 0,
    kExitFailure = 1,   // the command ran and failed (I/O, nothing could be done)
    kExitUsage = 2,     // bad command line
    kExitConfig = 3,    // the configuration file is invalid or unreadable
};

/* Options every command shares. */
struct GlobalOptions {
    std::string config_path;
    bool config_explicit = false;
    std::string log_level;
};

/* Loads the configuration the global options name into `out` (defaults resolved) and applies
 * its log level (info shows as warn: one-shot commands print results, not progress), unless
 * --log-level overrides it. Returns kExitOk, or kExitConfig after printing every problem. */
int load_command_config(const GlobalOptions& g, Config& out);

/* Discovers the node for a one-shot command that runs work (render, infer): logs discovery's
 * warnings and every plugin that failed or hung (a skipped one is normal), and fills
 * `plugins` with backend -> plugin file of those that loaded. */
Inventory discover_for_work(const Config& c, const std::string& plugin_dir_override, std::map<std::string, std::string>& plugins);

/* Each registrar adds its subcommand and returns the action to run when it was chosen. */
std::function<int()> add_discover_command(CLI::App& app, const GlobalOptions& g);
std::function<int()> add_probe_plugin_command(CLI::App& app);
std::function<int()> add_run_command(CLI::App& app, const GlobalOptions& g);
std::function<int()> add_bench_command(CLI::App& app, const GlobalOptions& g);
std::function<int()> add_check_command(CLI::App& app, const GlobalOptions& g);
std::function<int()> add_render_command(CLI::App& app, const GlobalOptions& g);
std::function<int()> add_infer_command(CLI::App& app, const GlobalOptions& g);

}  // namespace cpn::cli
