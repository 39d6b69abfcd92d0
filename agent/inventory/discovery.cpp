#include "inventory/discovery.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>

#include <spdlog/spdlog.h>

#include "core/paths.hpp"
#include "inventory/cpu_scan.hpp"
#include "inventory/merge.hpp"
#include "inventory/pci_scan.hpp"
#include "plugin/isolated_probe.hpp"
#include "plugin/plugin_library.hpp"

namespace cpn {

using Clock = std::chrono::steady_clock;

DiscoveryOptions discovery_options(const Config& cfg) {
    DiscoveryOptions o;
    o.plugin_dir = cfg.plugins.dir.empty() ? default_plugin_dir() : cfg.plugins.dir;
    o.enable = cfg.plugins.enable;
    o.disable = cfg.plugins.disable;
    o.probe_timeout_ms = cfg.discovery.probe_timeout_ms;
    o.sysfs_root = cfg.discovery.sysfs_root;
    o.pci_ids_path = CPN_PCI_IDS_PATH;
    o.helper = self_exec_path();
    o.node_id = cfg.node.id;
    o.site = cfg.node.site;
    return o;
}

Inventory discover(const DiscoveryOptions& opt, std::vector<std::string>* warnings) {
    Inventory inv;
    inv.agent_version = CPN_VERSION;
    inv.timestamp_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();

    // Which plugins to probe, and a report for each one we deliberately do not.
    std::vector<std::string> to_probe;
    std::vector<PluginReport> not_probed;
    std::error_code ec;
    if (!std::filesystem::is_directory(opt.plugin_dir, ec)) {
        PluginReport r;
        r.name = "(plugin directory)";
        r.path = opt.plugin_dir;
        r.status = "failed";
        r.stage = "dlopen";
        r.reason = "plugin directory does not exist; only the host CPU and PCI bus are scanned";
        not_probed.push_back(r);
    }
    std::vector<std::string> found;
    for (const std::string& path : list_plugin_files(opt.plugin_dir)) {
        std::string name = backend_name_from_file(std::filesystem::path(path).filename().string());
        found.push_back(name);
        bool disabled = std::find(opt.disable.begin(), opt.disable.end(), name) != opt.disable.end();
        bool not_enabled = !opt.enable.empty() &&
                           std::find(opt.enable.begin(), opt.enable.end(), name) == opt.enable.end();
        if (disabled || not_enabled) {
            PluginReport r;
            r.name = name;
            r.path = path;
            r.status = "skipped";
            r.stage = "config";
            r.reason = disabled ? "disabled in the configuration (plugins.disable)"
                                : "not listed in plugins.enable";
            not_probed.push_back(r);
        } else {
            to_probe.push_back(path);
        }
    }
    for (const std::string& want : opt.enable) {
        if (std::find(found.begin(), found.end(), want) == found.end()) {
            PluginReport r;
            r.name = want;
            r.path = opt.plugin_dir + "/libcpn-backend-" + want + ".so";
            r.status = "failed";
            r.stage = "dlopen";
            r.reason = "plugins.enable names '" + want + "' but no such plugin file exists";
            not_probed.push_back(r);
        }
    }

    // Vendor probes run in child processes while this thread scans the host and the bus.
    const auto tp = Clock::now();
    std::future<std::vector<PluginOutcome>> probes =
        std::async(std::launch::async, [&] {
            return probe_plugins_isolated(opt.helper, to_probe, opt.probe_timeout_ms);
        });

    const auto tc = Clock::now();
    HostScan host = scan_host(opt.sysfs_root);
    PciScanResult pci = scan_pci(opt.sysfs_root, opt.pci_ids_path);
    std::vector<Device> devices;
    devices.push_back(host.cpu);
    for (const PciDevice& p : pci.devices) devices.push_back(device_from_pci(p));
    inv.core_ms = std::chrono::duration<double, std::milli>(Clock::now() - tc).count();

    std::vector<PluginOutcome> outcomes = probes.get();
    inv.plugins_ms = std::chrono::duration<double, std::milli>(Clock::now() - tp).count();

    const auto tm = Clock::now();
    for (const PluginOutcome& o : outcomes) {
        // The verbose switch explains every loading decision (hwloc's HWLOC_COMPONENTS_VERBOSE).
        spdlog::debug("plugin {} ({}): {} at {}{}{}; {} device(s), {:.1f} ms", o.report.name,
                      o.report.path, o.report.status, o.report.stage,
                      o.report.reason.empty() ? "" : ": ", o.report.reason, o.devices.size(),
                      o.report.total_ms);
        merge_devices(devices, o.devices);
        inv.plugins.push_back(o.report);
    }
    if (outcomes.empty()) merge_devices(devices, {});
    for (PluginReport& r : not_probed) inv.plugins.push_back(std::move(r));
    inv.core_ms += std::chrono::duration<double, std::milli>(Clock::now() - tm).count();

    inv.devices = std::move(devices);
    inv.node = host.node;
    inv.node.id = opt.node_id;
    inv.node.site = opt.site;
    if (warnings != nullptr) {
        for (auto& w : host.warnings) warnings->push_back(w);
        for (auto& w : pci.warnings) warnings->push_back(w);
    }
    return inv;
}

}  // namespace cpn
