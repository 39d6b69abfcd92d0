// discover_command.cpp: `cpn-agent discover`, the node's hardware as a table, JSON or YAML.
#include <cstdio>
#include <fstream>
#include <memory>

#include <spdlog/spdlog.h>

#include "cli/commands.hpp"
#include "config/config.hpp"
#include "core/log.hpp"
#include "inventory/discovery.hpp"
#include "inventory/render.hpp"

namespace cpn::cli {

namespace {
struct DiscoverArgs {
    bool json = false, yaml = false;
    std::string plugin_dir, sysfs_root, output;
    int probe_timeout_ms = 0;
};
}  // namespace

Inventory discover_for_work(const Config& c, const std::string& plugin_dir_override, std::map<std::string, std::string>& plugins) {
    DiscoveryOptions opt = discovery_options(c);
    if (!plugin_dir_override.empty()) opt.plugin_dir = plugin_dir_override;
    std::vector<std::string> warnings;
    Inventory inv = discover(opt, &warnings);
    for (const std::string& w : warnings) spdlog::warn("discovery: {}", w);
    plugins.clear();
    for (const PluginReport& p : inv.plugins) {
        if (p.status == "ok") plugins[p.name] = p.path;
        // A merely skipped plugin (no driver) is normal; one that failed or hung is why a device
        // may have no way to run the work, so say so before the command says "none".
        else if (p.status != "skipped") spdlog::warn("plugin {}: {} at {}: {}", p.name, p.status, p.stage, p.reason);
    }
    return inv;
}

int load_command_config(const GlobalOptions& g, Config& out) {
    Result<Config> cfg = load_config(g.config_path, g.config_explicit);
    if (!cfg.ok()) {
        std::fprintf(stderr, "cpn-agent: configuration error:\n%s\n", cfg.status().message().c_str());
        return kExitConfig;
    }
    out = cfg.value();
    finalise_config(out);
    if (g.log_level.empty()) (void)set_log_level(out.log.level == "info" ? "warn" : out.log.level);
    return kExitOk;
}

std::function<int()> add_discover_command(CLI::App& app, const GlobalOptions& g) {
    auto args = std::make_shared<DiscoverArgs>();
    CLI::App* cmd = app.add_subcommand(
        "discover", "Discover this node's CPU, GPU, FPGA and NPU hardware and print it");
    auto* j = cmd->add_flag("--json", args->json, "Print JSON (schema: docs/schemas/inventory.schema.json)");
    auto* y = cmd->add_flag("--yaml", args->yaml, "Print YAML (same structure as --json)");
    j->excludes(y);
    cmd->add_option("--plugin-dir", args->plugin_dir, "Override plugins.dir")->check(CLI::ExistingDirectory);
    cmd->add_option("--sysfs-root", args->sysfs_root, "Override discovery.sysfs_root")->check(CLI::ExistingDirectory);
    cmd->add_option("--probe-timeout-ms", args->probe_timeout_ms, "Override discovery.probe_timeout_ms")
        ->check(CLI::Range(100, 600000));
    cmd->add_option("-o,--output", args->output, "Write to this file instead of standard output");
    cmd->footer("Exit codes: 0 ok (also when some backends were skipped: see the plugin table), "
                "1 output could not be written, 2 usage error, 3 configuration error.");

    return [args, &g]() -> int {
        Config c;
        if (int rc = load_command_config(g, c); rc != kExitOk) return rc;
        DiscoveryOptions opt = discovery_options(c);
        if (!args->plugin_dir.empty()) opt.plugin_dir = args->plugin_dir;
        if (!args->sysfs_root.empty()) opt.sysfs_root = args->sysfs_root;
        if (args->probe_timeout_ms > 0) opt.probe_timeout_ms = args->probe_timeout_ms;

        std::vector<std::string> warnings;
        Inventory inv = discover(opt, &warnings);
        for (const std::string& w : warnings) spdlog::warn("discovery: {}", w);

        std::string text;
        if (args->json) text = dump_json(nlohmann::json(inv)) + "\n";
        else if (args->yaml) text = json_to_yaml(nlohmann::json(inv));
        else text = render_table(inv);
        if (args->output.empty()) {
            std::fwrite(text.data(), 1, text.size(), stdout);
            return kExitOk;
        }
        std::ofstream out(args->output, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out) {
            std::fprintf(stderr, "cpn-agent: cannot write %s\n", args->output.c_str());
            return kExitFailure;
        }
        return kExitOk;
    };
}

}  // namespace cpn::cli
