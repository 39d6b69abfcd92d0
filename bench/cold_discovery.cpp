// cold_discovery.cpp: how long a cold `cpn-agent discover` takes, as an operator's first run
// sees it: each sample is a fresh process. Two configurations side by side in one run:
//   core     no plugins: host CPU, memory and PCI scan, merge, output (the <= 100 ms goal)
//   full     every built plugin, each probed in its own child process; vendor runtime
//            initialisation (the probe stage) is reported per plugin, apart from the core.
// Usage: cpn-bench-cold-discovery [samples=30] [plugin_dir]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/subprocess.hpp"

namespace {

struct Stats {
    std::vector<double> v;
    void add(double x) { v.push_back(x); }
    double pct(double p) {
        if (v.empty()) return 0;
        std::sort(v.begin(), v.end());
        size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
        return v[i];
    }
};

void row(const char* what, Stats& s) {
    std::printf("| %-44s | %8.1f | %8.1f | %8.1f | %8.1f |\n", what, s.pct(0.0), s.pct(0.5),
                s.pct(0.9), s.pct(1.0));
}

int run(const std::string& label, const std::string& plugin_dir, int samples) {
    Stats wall, core, plugins;
    std::map<std::string, Stats> load, probe, enumerate, child;
    for (int i = 0; i < samples; ++i) {
        auto r = cpn::run_processes({{CPN_AGENT_BIN, "--config", "/dev/null", "discover", "--json",
                                      "--plugin-dir", plugin_dir}},
                                    60000);
        if (r[0].exit_code != 0) {
            std::fprintf(stderr, "discover failed: %s\n%s\n", cpn::describe_exit(r[0], 60000).c_str(),
                         r[0].err.c_str());
            return 1;
        }
        nlohmann::json j = nlohmann::json::parse(r[0].out);
        wall.add(r[0].wall_ms);
        core.add(j["discovery_ms"]["core"].get<double>());
        plugins.add(j["discovery_ms"]["plugins"].get<double>());
        for (const auto& p : j["plugins"]) {
            std::string n = p["name"];
            load[n].add(p["timing_ms"]["load"].get<double>());
            probe[n].add(p["timing_ms"]["probe"].get<double>());
            enumerate[n].add(p["timing_ms"]["enumerate"].get<double>());
            child[n].add(p["timing_ms"]["total"].get<double>());
        }
    }
    std::printf("\n### %s (%d cold runs, plugin dir %s)\n\n", label.c_str(), samples, plugin_dir.c_str());
    std::printf("| %-44s | %8s | %8s | %8s | %8s |\n", "milliseconds", "min", "median", "p90", "max");
    std::printf("|%s|%s|%s|%s|%s|\n", std::string(46, '-').c_str(), std::string(10, '-').c_str(),
                std::string(10, '-').c_str(), std::string(10, '-').c_str(), std::string(10, '-').c_str());
    row("whole process (exec to exit)", wall);
    row("core: host + PCI scan + merge", core);
    if (!load.empty()) row("plugin probes, parallel wall", plugins);
    for (auto& [n, s] : child) {
        row((n + ": dlopen plugin + runtime libs").c_str(), load[n]);
        row((n + ": probe (vendor runtime init)").c_str(), probe[n]);
        row((n + ": enumerate devices").c_str(), enumerate[n]);
        row((n + ": child process wall").c_str(), s);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    int samples = argc > 1 ? std::atoi(argv[1]) : 30;
    std::string plugin_dir = argc > 2 ? argv[2] : CPN_PLUGIN_DIR;
    std::string empty = (std::filesystem::temp_directory_path() / "cpn-bench-no-plugins").string();
    std::filesystem::create_directories(empty);
    if (samples < 1) samples = 1;
    // One warm-up run so the page cache holds the binary, as on a node that just booted the
    // agent's unit (the file was read by systemd's ExecStart check) - cold process, warm disk.
    (void)cpn::run_processes({{CPN_AGENT_BIN, "--version"}}, 10000);
    int rc = run("core (no plugins)", empty, samples);
    rc |= run("full (every built plugin)", plugin_dir, samples);
    return rc;
}
