// device.hpp: the one device model every backend reports into (Nomad-style: class, vendor,
// model, typed attributes, health, locality), plus the node inventory that holds them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cpn {

enum class DeviceClass { cpu, gpu, fpga, npu, other };
const char* to_string(DeviceClass c);
std::optional<DeviceClass> device_class_from_string(const std::string& s);

enum class Precision { fp64, fp32, fp16, bf16, int8 };
const char* to_string(Precision p);

/* A typed attribute value; a unit travels beside it ("bytes", "MHz"). */
struct Attribute {
    std::variant<std::string, int64_t, double, bool> value;
    std::string unit;
    bool operator==(const Attribute&) const = default;
};
using Attributes = std::map<std::string, Attribute>;

/* One way to reach a device: a backend plugin and the runtime behind it. */
struct RuntimePath {
    std::string backend;          // "cpu", "opencl", "cuda", "levelzero", "xrt"
    uint32_t index = 0;           // the device's index within that backend
    std::string native_name;      // name as that runtime reports it
    std::string runtime_name;     // "OpenCL ICD loader", "CUDA driver API"
    std::string runtime_version;
    std::string driver_version;
    Attributes attributes;        // backend-specific, typed
};

struct Health {
    bool healthy = true;
    std::string reason;           // why it is unhealthy, or why it has no runtime
};

/* CPU-only details: topology, ISA features, caches, frequencies. */
struct CpuDetails {
    std::string arch;             // "x86_64", "aarch64", "riscv64"
    int sockets = 0;
    int cores = 0;                // physical cores, all sockets
    int threads = 0;              // logical processors (PUs)
    std::vector<std::string> isa; // lower-case feature names that matter for compute
    uint64_t l1d_bytes = 0, l2_bytes = 0, l3_bytes = 0;  // per instance, as hwloc reports
    uint32_t base_mhz = 0, max_mhz = 0;
    std::vector<int> numa_nodes;
};

struct Device {
    std::string id;               // stable, lower-case, generated (see make_device_id)
    DeviceClass device_class = DeviceClass::other;
    std::string vendor;
    std::string model;
    std::string pci_address;      // "dddd:bb:dd.f" or ""
    std::string uuid;             // lower-case or ""
    uint64_t memory_bytes = 0;
    uint32_t compute_units = 0;
    uint32_t max_clock_mhz = 0;
    int numa_node = -1;
    std::vector<Precision> precisions;
    Health health;
    std::vector<RuntimePath> runtimes;  // empty: present on the bus, no runtime claimed it
    Attributes attributes;              // device-level (PCI ids, NFD/GFD names)
    std::optional<CpuDetails> cpu;
};

/* What happened to one plugin during discovery. */
struct PluginReport {
    std::string name;             // backend name, or the file stem when it never loaded
    std::string path;
    std::string status;           // "ok", "skipped", "failed", "refused", "timeout"
    std::string stage;            // "dlopen", "symbol", "abi", "init", "probe", "enumerate", "done"
    std::string reason;           // verbatim cause (dlerror, vendor error string, signal)
    uint32_t abi_version = 0;
    std::string runtime_name, runtime_version, driver_version;
    uint32_t device_count = 0;
    double load_ms = 0, probe_ms = 0, enumerate_ms = 0, total_ms = 0;
};

struct NodeInfo {
    std::string id;
    std::string site;
    std::string hostname;
    std::string os;               // "Linux 6.1.0-..."
    std::string arch;
    uint64_t memory_bytes = 0;
    int numa_nodes = 0;
};

struct Inventory {
    static constexpr int kSchemaVersion = 1;
    NodeInfo node;
    std::vector<Device> devices;
    std::vector<PluginReport> plugins;
    std::string agent_version;
    int64_t timestamp_ms = 0;     // wall clock, Unix epoch
    double core_ms = 0;           // CPU/memory/PCI scan and merge, without vendor runtimes
    double plugins_ms = 0;        // wall time of the (parallel) plugin probes
};

/* Stable id: "pci-<address>" when on PCI, else "uuid-<uuid>", else "<backend>-<hash>"; the CPU
 * complex is "cpu". Always lower-case. */
std::string make_device_id(const Device& d);

/* Lower-case copy, for case-insensitive id matching. */
std::string lower(std::string s);

void to_json(nlohmann::json& j, const Attribute& a);
void to_json(nlohmann::json& j, const Device& d);
void to_json(nlohmann::json& j, const PluginReport& p);
void to_json(nlohmann::json& j, const Inventory& inv);
void from_json(const nlohmann::json& j, Attribute& a);
void from_json(const nlohmann::json& j, Device& d);

}  // namespace cpn
