#include "inventory/merge.hpp"

#include <algorithm>
#include <set>

namespace cpn {
namespace {

bool same_hardware(const Device& a, const Device& b) {
    if (!a.pci_address.empty() && a.pci_address == b.pci_address) return true;
    if (!a.uuid.empty() && a.uuid == b.uuid) return true;
    // A CPU device from a runtime (PoCL, oneAPI CPU) is the host CPU complex.
    return a.device_class == DeviceClass::cpu && b.device_class == DeviceClass::cpu &&
           (a.cpu.has_value() || b.cpu.has_value());
}

void absorb(Device& into, const Device& from) {
    const bool bus_only = into.runtimes.empty();
    if (into.device_class != DeviceClass::cpu) {
        // A runtime names a device better than pci.ids does ("NVIDIA H100 80GB HBM3").
        if (bus_only || into.model.empty()) {
            if (!from.model.empty()) into.model = from.model;
            if (!from.vendor.empty()) into.vendor = from.vendor;
        }
        if (into.device_class == DeviceClass::other) into.device_class = from.device_class;
        if (bus_only) {
            into.memory_bytes = from.memory_bytes;
            into.compute_units = from.compute_units;
            into.max_clock_mhz = from.max_clock_mhz;
        }
    }
    if (into.memory_bytes == 0) into.memory_bytes = from.memory_bytes;
    if (into.compute_units == 0) into.compute_units = from.compute_units;
    if (into.max_clock_mhz == 0) into.max_clock_mhz = from.max_clock_mhz;
    if (into.numa_node < 0) into.numa_node = from.numa_node;
    if (into.uuid.empty()) into.uuid = from.uuid;
    if (into.pci_address.empty()) into.pci_address = from.pci_address;
    for (Precision p : from.precisions)
        if (std::find(into.precisions.begin(), into.precisions.end(), p) == into.precisions.end())
            into.precisions.push_back(p);
    std::sort(into.precisions.begin(), into.precisions.end());

    if (bus_only) into.health = {true, ""};  // a runtime claims it now
    if (!from.health.healthy) {
        std::string backend = from.runtimes.empty() ? "backend" : from.runtimes.front().backend;
        into.health.healthy = false;
        into.health.reason += (into.health.reason.empty() ? "" : "; ") + backend + ": " + from.health.reason;
    }
    for (const RuntimePath& r : from.runtimes) into.runtimes.push_back(r);
    for (const auto& [k, v] : from.attributes) into.attributes.emplace(k, v);
}

int class_rank(DeviceClass c) {
    switch (c) {
        case DeviceClass::cpu: return 0;
        case DeviceClass::gpu: return 1;
        case DeviceClass::npu: return 2;
        case DeviceClass::fpga: return 3;
        default: return 4;
    }
}

}  // namespace

void merge_devices(std::vector<Device>& devices, const std::vector<Device>& plugin_devices) {
    for (const Device& pd : plugin_devices) {
        auto it = std::find_if(devices.begin(), devices.end(),
                               [&](const Device& d) { return same_hardware(d, pd); });
        if (it != devices.end()) {
            absorb(*it, pd);
        } else {
            devices.push_back(pd);
        }
    }
    std::stable_sort(devices.begin(), devices.end(), [](const Device& a, const Device& b) {
        if (class_rank(a.device_class) != class_rank(b.device_class))
            return class_rank(a.device_class) < class_rank(b.device_class);
        return a.id < b.id;
    });
    std::set<std::string> seen;
    for (Device& d : devices) {
        d.id = make_device_id(d);
        std::string id = d.id;
        for (int n = 2; seen.count(id); ++n) id = d.id + "-" + std::to_string(n);
        d.id = id;
        seen.insert(id);
    }
}

}  // namespace cpn
