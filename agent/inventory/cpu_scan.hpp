// cpu_scan.hpp: the host's CPU complex and memory (hwloc for topology, /proc/cpuinfo for the ISA
// features that matter for compute, sysfs cpufreq for clocks).
#pragma once

#include <string>
#include <vector>

#include "inventory/device.hpp"

namespace cpn {

struct HostScan {
    Device cpu;                          // class cpu, id "cpu", with CpuDetails
    NodeInfo node;                       // hostname, os, arch, memory, numa (no id/site)
    std::vector<std::string> warnings;
};

/* Scans this host. Never throws; what cannot be read is left unknown with a warning. */
HostScan scan_host(const std::string& sysfs_root = "/sys");

/* The compute-relevant ISA features named in /proc/cpuinfo text for an architecture
 * ("x86_64", "aarch64", "riscv64"), lower-case, in a fixed order. Pure, for tests. */
std::vector<std::string> parse_isa_features(const std::string& cpuinfo, const std::string& arch);

/* Native precisions implied by those features (fp64 and fp32 always). */
std::vector<Precision> cpu_precisions(const std::vector<std::string>& isa);

/* Model name, vendor, family and model number from /proc/cpuinfo text. */
struct CpuIdentity {
    std::string vendor, model;
    int family = -1, model_id = -1;      // x86: family and model; arm64: model_id is the CPU part
    double mhz = 0;                      // "cpu MHz" of the first processor, 0 if absent
    int hypervisor = -1;                 // x86: 1 under a hypervisor (the "hypervisor" flag), else
                                         // 0; -1 where cpuinfo cannot tell (other architectures)
};
CpuIdentity parse_cpu_identity(const std::string& cpuinfo, const std::string& arch);

}  // namespace cpn
