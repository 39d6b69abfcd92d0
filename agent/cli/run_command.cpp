// run_command.cpp: `cpn-agent run`, the daemon.
#include <memory>

#include "cli/commands.hpp"
#include "daemon/daemon.hpp"

namespace cpn::cli {

std::function<int()> add_run_command(CLI::App& app, const GlobalOptions& g) {
    auto opt = std::make_shared<DaemonOptions>();
    CLI::App* cmd = app.add_subcommand(
        "run", "Run the agent: hold an MQTT session to the brain, publish birth, inventory, capacity "
               "and telemetry, answer commands (see docs/protocol.md)");
    cmd->add_option("--plugin-dir", opt->plugin_dir, "Override plugins.dir")->check(CLI::ExistingDirectory);
    cmd->add_option("--sysfs-root", opt->sysfs_root, "Override discovery.sysfs_root")->check(CLI::ExistingDirectory);
    cmd->footer("Signals: SIGTERM/SIGINT publish the death certificate and exit; SIGHUP reloads "
                "telemetry.interval_s, log.level and the store caps.\n"
                "Exit codes: 0 stopped by a signal, 1 fatal error, 3 configuration error.");
    return [opt, &g]() -> int {
        opt->config_path = g.config_path;
        opt->config_explicit = g.config_explicit;
        opt->log_level_override = g.log_level;
        return run_daemon(*opt);
    };
}

}  // namespace cpn::cli
