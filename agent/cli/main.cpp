// main.cpp: `cpn-agent`, the edge agent's single binary.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cli/commands.hpp"
#include "core/log.hpp"
#include "core/revision.hpp"
#include "cpn_backend.h"

int main(int argc, char** argv) {
    // The CPU's convolutions and products run on oneDNN's OpenMP team (workloads/infer/onednn.hpp),
    // whose threads by default spin for a while after each call: on an edge node that is CPU
    // burnt after every inference, taken from the runtime's own worker threads (the operators in
    // between) and from everything else the node runs. Passive threads sleep at once. Set before
    // any thread exists (setenv is not thread-safe) and before libgomp, which reads it, is
    // loaded; a value in the environment wins.
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    // Without TZ, glibc's localtime() stats /etc/localtime on every call, and the MQTT client
    // library calls it for every packet it sends or receives (~10 us each on a VM, on the path
    // of every task). ":/etc/localtime" is the same zone, read once: a change of the host's
    // zone shows in log times after a restart. A TZ in the environment wins.
    ::setenv("TZ", ":/etc/localtime", 0);
    CLI::App app{"cpn-agent: computing-power-network edge agent (discovers, benchmarks and reports "
                 "this node's compute, and runs offloaded tasks)"};
    app.require_subcommand(0, 1);
    cpn::cli::GlobalOptions g;
    g.config_path = CPN_DEFAULT_CONFIG;
    auto* config_opt = app.add_option("-c,--config", g.config_path, "Configuration file")
                           ->default_str(CPN_DEFAULT_CONFIG);
    app.add_option("--log-level", g.log_level, "Override log.level: trace, debug, info, warn, error, off");
    bool version = false;
    app.add_flag("-V,--version", version, "Print version, git revision, plugin ABI and exit");
    app.footer("Exit codes: 0 ok, 1 failure, 2 usage error, 3 configuration error.\n"
               "Run 'cpn-agent COMMAND --help' for a command's options.");

    std::vector<std::pair<CLI::App*, std::function<int()>>> actions;
    auto reg = [&](std::function<int()> f) { actions.emplace_back(app.get_subcommands({}).back(), f); };
    reg(cpn::cli::add_discover_command(app, g));
    reg(cpn::cli::add_run_command(app, g));
    reg(cpn::cli::add_bench_command(app, g));
    reg(cpn::cli::add_check_command(app, g));
    reg(cpn::cli::add_render_command(app, g));
    reg(cpn::cli::add_infer_command(app, g));
    reg(cpn::cli::add_probe_plugin_command(app));

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return cpn::cli::kExitUsage;
    }
    g.config_explicit = config_opt->count() > 0;
    cpn::init_logging(!g.log_level.empty() ? g.log_level : app.got_subcommand("run") ? "info" : "warn");

    if (version) {
        std::printf("cpn-agent %s (git %s)\nplugin ABI %u\nbackends built: %s\n", CPN_VERSION,
                    cpn::git_revision(), CPN_BACKEND_ABI_VERSION, CPN_BACKENDS_BUILT);
        return cpn::cli::kExitOk;
    }
    for (auto& [cmd, action] : actions)
        if (cmd->parsed()) return action();
    std::fputs(app.help().c_str(), stdout);
    return cpn::cli::kExitUsage;
}
