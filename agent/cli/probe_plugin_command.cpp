// probe_plugin_command.cpp: the hidden `probe-plugin` subcommand, run by the agent itself in a
// child process for each backend (see plugin/probe_child.hpp).
#include <memory>

#include "cli/commands.hpp"
#include "plugin/probe_child.hpp"

namespace cpn::cli {

std::function<int()> add_probe_plugin_command(CLI::App& app) {
    auto path = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand("probe-plugin", "Internal: probe one backend plugin, print JSON");
    cmd->group("");  // hidden from --help: operators never call it
    cmd->add_option("--plugin", *path, "Plugin file")->required();
    return [path]() -> int { return run_probe_child(*path); };
}

}  // namespace cpn::cli
