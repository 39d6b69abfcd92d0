// pci_scan.hpp: reads the PCI bus and the accel class from sysfs (root injectable for tests), and
// keeps the devices that matter for compute: display/3D controllers, processing accelerators,
// co-processors, known FPGA/NPU vendors, and anything behind /sys/class/accel.
#pragma once

#include <string>
#include <vector>

#include "inventory/device.hpp"

namespace cpn {

struct PciDevice {
    std::string address;          // "dddd:bb:dd.f", lower-case
    uint16_t vendor_id = 0, device_id = 0;
    uint16_t subsystem_vendor_id = 0, subsystem_device_id = 0;
    uint32_t class_code = 0;      // 24-bit: base << 16 | sub << 8 | prog-if
    std::string driver;           // bound kernel driver, "" when none
    int numa_node = -1;
    std::string vendor_name;      // from pci.ids when available, else ""
    std::string device_name;
    std::vector<std::string> accel_nodes;  // "accel0" ...
    DeviceClass device_class = DeviceClass::other;  // our guess from class code and vendor
};

struct PciScanResult {
    std::vector<PciDevice> devices;       // the compute-relevant ones only
    std::vector<std::string> warnings;    // malformed entries, each naming the path and problem
};

/* Scans <sysfs_root>/bus/pci/devices and <sysfs_root>/class/accel. sysfs_root is "/sys" in
 * production. pci_ids_path names a pci.ids database for names ("" disables name lookup). Never
 * throws; a malformed entry is skipped with a warning. */
PciScanResult scan_pci(const std::string& sysfs_root, const std::string& pci_ids_path);

/* Builds a Device (no runtime yet) from a scanned PCI device. */
Device device_from_pci(const PciDevice& p);

}  // namespace cpn
