// commands.hpp: the subcommands of `cpn-agent`, each registered on the CLI11 app.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

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

/* Each registrar adds its subcommand and returns the action to run when it was chosen. */
std::function<int()> add_discover_command(CLI::App& app, const GlobalOptions& g);
std::function<int()> add_probe_plugin_command(CLI::App& app);
std::function<int()> add_run_command(CLI::App& app, const GlobalOptions& g);
std::function<int()> add_bench_command(CLI::App& app, const GlobalOptions& g);

}  // namespace cpn::cli
