// daemon.hpp: `cpn-agent run`, the long-running agent. It holds an MQTT session to the brain's
// broker, publishes birth/death, inventory, capacity and telemetry, answers commands, and keeps
// everything that is not retained state in a durable outbox while the broker is unreachable.
#pragma once

#include <string>

namespace cpn {

struct DaemonOptions {
    std::string config_path;
    bool config_explicit = false;
    std::string log_level_override;
    std::string plugin_dir;   // "" -> from the config
    std::string sysfs_root;   // "" -> from the config
    std::string proc_root = "/proc";
};

/* Runs until SIGTERM/SIGINT; returns the process exit code (0 clean stop, 1 fatal error,
 * 3 configuration error that leaves nothing useful to do). */
int run_daemon(const DaemonOptions& opt);

}  // namespace cpn
