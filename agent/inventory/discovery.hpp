// discovery.hpp: one full discovery of the node: host CPU and memory, the PCI bus, and every
// backend plugin (each probed in an isolated, time-boxed child process), merged.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"
#include "inventory/device.hpp"

namespace cpn {

struct DiscoveryOptions {
    std::string plugin_dir;           // where libcpn-backend-*.so live
    std::vector<std::string> enable;  // empty: all
    std::vector<std::string> disable;
    int probe_timeout_ms = 5000;
    std::string sysfs_root = "/sys";
    std::string pci_ids_path;         // "" disables PCI name lookup
    std::string helper;               // the agent binary that runs `probe-plugin`
    std::string node_id, site;
};

/* Options from a loaded configuration, with defaults resolved (plugin dir beside the binary). */
DiscoveryOptions discovery_options(const Config& cfg);

/* Runs discovery. Never throws and never fails as a whole: what could not be discovered is said
 * in the plugin reports and warnings. */
Inventory discover(const DiscoveryOptions& opt, std::vector<std::string>* warnings = nullptr);

}  // namespace cpn
