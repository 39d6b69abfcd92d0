#include "plugin/isolated_probe.hpp"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/subprocess.hpp"
#include "plugin/plugin_library.hpp"

namespace cpn {

PluginOutcome parse_probe_output(const std::string& path, const std::string& stdout_text) {
    PluginOutcome o;
    o.report.path = path;
    o.report.name = backend_name_from_file(std::filesystem::path(path).filename().string());
    try {
        nlohmann::json j = nlohmann::json::parse(stdout_text);
        const nlohmann::json& r = j.at("report");
        PluginReport& p = o.report;
        p.name = r.value("name", p.name);
        p.status = r.at("status").get<std::string>();
        p.stage = r.value("stage", std::string());
        p.reason = r.value("reason", std::string());
        p.abi_version = r.value("abi_version", 0u);
        p.runtime_name = r.value("runtime_name", std::string());
        p.runtime_version = r.value("runtime_version", std::string());
        p.driver_version = r.value("driver_version", std::string());
        p.device_count = r.value("device_count", 0u);
        if (r.contains("timing_ms")) {
            const auto& t = r["timing_ms"];
            p.load_ms = t.value("load", 0.0);
            p.probe_ms = t.value("probe", 0.0);
            p.enumerate_ms = t.value("enumerate", 0.0);
            p.total_ms = t.value("total", 0.0);
        }
        for (const auto& d : j.at("devices")) o.devices.push_back(d.get<Device>());
    } catch (const std::exception& e) {
        o.devices.clear();
        o.report.status = "failed";
        o.report.stage = "probe";
        o.report.reason = std::string("probe process wrote malformed output: ") + e.what();
    }
    return o;
}

std::vector<PluginOutcome> probe_plugins_isolated(const std::string& helper,
                                                  const std::vector<std::string>& plugin_paths,
                                                  int timeout_ms) {
    std::vector<std::vector<std::string>> argvs;
    for (const std::string& p : plugin_paths) argvs.push_back({helper, "probe-plugin", "--plugin", p});
    std::vector<ProcessResult> results = run_processes(argvs, timeout_ms);

    std::vector<PluginOutcome> out;
    for (size_t i = 0; i < plugin_paths.size(); ++i) {
        const ProcessResult& r = results[i];
        PluginOutcome o;
        if (r.started && !r.timed_out && r.term_signal == 0 && r.exit_code == 0) {
            o = parse_probe_output(plugin_paths[i], r.out);
        } else {
            o.report.path = plugin_paths[i];
            o.report.name =
                backend_name_from_file(std::filesystem::path(plugin_paths[i]).filename().string());
            o.report.status = r.timed_out ? "timeout" : "failed";
            o.report.stage = "probe";
            o.report.reason = "probe process " + describe_exit(r, timeout_ms);
            // The last line the plugin or its runtime printed usually says why.
            std::string err = r.err;
            while (!err.empty() && (err.back() == '\n' || err.back() == '\r')) err.pop_back();
            if (!err.empty()) {
                auto nl = err.rfind('\n');
                o.report.reason += "; last message: " + err.substr(nl == std::string::npos ? 0 : nl + 1);
            }
        }
        o.report.total_ms = r.wall_ms;
        out.push_back(std::move(o));
    }
    return out;
}

}  // namespace cpn
