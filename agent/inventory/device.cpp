#include "inventory/device.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>

#include <nlohmann/json.hpp>

namespace cpn {

const char* to_string(DeviceClass c) {
    switch (c) {
        case DeviceClass::cpu: return "cpu";
        case DeviceClass::gpu: return "gpu";
        case DeviceClass::fpga: return "fpga";
        case DeviceClass::npu: return "npu";
        case DeviceClass::other: return "other";
    }
    return "other";
}

std::optional<DeviceClass> device_class_from_string(const std::string& s) {
    const std::string l = lower(s);
    for (DeviceClass c : {DeviceClass::cpu, DeviceClass::gpu, DeviceClass::fpga, DeviceClass::npu,
                          DeviceClass::other})
        if (l == to_string(c)) return c;
    return std::nullopt;
}

const char* to_string(Precision p) {
    switch (p) {
        case Precision::fp64: return "fp64";
        case Precision::fp32: return "fp32";
        case Precision::fp16: return "fp16";
        case Precision::bf16: return "bf16";
        case Precision::int8: return "int8";
    }
    return "fp32";
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    return s;
}

/* FNV-1a, 64 bit: stable across runs and builds, unlike std::hash. */
static uint64_t fnv1a(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : s) {
        h ^= ch;
        h *= 1099511628211ull;
    }
    return h;
}

std::string make_device_id(const Device& d) {
    if (d.device_class == DeviceClass::cpu && d.cpu) return "cpu";
    if (!d.pci_address.empty()) return "pci-" + lower(d.pci_address);
    if (!d.uuid.empty()) return "uuid-" + lower(d.uuid);
    // Neither bus address nor UUID: derive from what the runtime says about it, which is stable
    // across reboots as long as the runtime and its enumeration order are.
    std::string backend = d.runtimes.empty() ? std::string("dev") : d.runtimes.front().backend;
    std::string key = backend + "|" + d.vendor + "|" + d.model;
    if (!d.runtimes.empty()) {
        const RuntimePath& r = d.runtimes.front();
        key += "|" + r.native_name + "|" + std::to_string(r.index);
        auto it = r.attributes.find("opencl.platform");
        if (it != r.attributes.end() && std::holds_alternative<std::string>(it->second.value))
            key += "|" + std::get<std::string>(it->second.value);
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%012llx",
                  static_cast<unsigned long long>(fnv1a(key) & 0xffffffffffffull));
    return lower(backend) + "-" + buf;
}

void to_json(nlohmann::json& j, const Attribute& a) {
    j = nlohmann::json::object();
    std::visit(
        [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::string>) j["type"] = "string";
            else if constexpr (std::is_same_v<T, int64_t>) j["type"] = "int";
            else if constexpr (std::is_same_v<T, double>) j["type"] = "float";
            else j["type"] = "bool";
            j["value"] = v;
        },
        a.value);
    if (!a.unit.empty()) j["unit"] = a.unit;
}

void from_json(const nlohmann::json& j, Attribute& a) {
    const std::string type = j.at("type").get<std::string>();
    const nlohmann::json& v = j.at("value");
    if (type == "string") a.value = v.get<std::string>();
    else if (type == "int") a.value = v.get<int64_t>();
    else if (type == "float") a.value = v.get<double>();
    else if (type == "bool") a.value = v.get<bool>();
    else throw nlohmann::json::other_error::create(501, "unknown attribute type '" + type + "'", &j);
    a.unit = j.value("unit", std::string());
}

static nlohmann::json attrs_json(const Attributes& attrs) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : attrs) j[k] = v;
    return j;
}

void to_json(nlohmann::json& j, const Device& d) {
    j = nlohmann::json{{"id", d.id},
                       {"class", to_string(d.device_class)},
                       {"vendor", d.vendor},
                       {"model", d.model},
                       {"memory_bytes", d.memory_bytes},
                       {"compute_units", d.compute_units},
                       {"max_clock_mhz", d.max_clock_mhz},
                       {"numa_node", d.numa_node}};
    j["pci_address"] = d.pci_address.empty() ? nlohmann::json(nullptr) : nlohmann::json(d.pci_address);
    j["uuid"] = d.uuid.empty() ? nlohmann::json(nullptr) : nlohmann::json(d.uuid);
    nlohmann::json prec = nlohmann::json::array();
    for (Precision p : d.precisions) prec.push_back(to_string(p));
    j["precisions"] = prec;
    j["health"] = {{"healthy", d.health.healthy}, {"reason", d.health.reason}};
    nlohmann::json rts = nlohmann::json::array();
    for (const RuntimePath& r : d.runtimes)
        rts.push_back({{"backend", r.backend},
                       {"index", r.index},
                       {"native_name", r.native_name},
                       {"runtime_name", r.runtime_name},
                       {"runtime_version", r.runtime_version},
                       {"driver_version", r.driver_version},
                       {"attributes", attrs_json(r.attributes)}});
    j["runtimes"] = rts;
    j["attributes"] = attrs_json(d.attributes);
    if (d.cpu) {
        const CpuDetails& c = *d.cpu;
        j["cpu"] = {{"arch", c.arch},           {"sockets", c.sockets},
                    {"cores", c.cores},         {"threads", c.threads},
                    {"isa", c.isa},             {"l1d_bytes", c.l1d_bytes},
                    {"l2_bytes", c.l2_bytes},   {"l3_bytes", c.l3_bytes},
                    {"base_mhz", c.base_mhz},   {"max_mhz", c.max_mhz},
                    {"numa_nodes", c.numa_nodes}};
    }
}

/* The member when present, else an empty value of that kind (iterating a reference, not a
 * temporary from json::value(), which GCC 12 misreads as uninitialised). */
static const nlohmann::json& member(const nlohmann::json& j, const char* key, bool array) {
    static const nlohmann::json empty_array = nlohmann::json::array();
    static const nlohmann::json empty_object = nlohmann::json::object();
    auto it = j.find(key);
    if (it != j.end() && (array ? it->is_array() : it->is_object())) return *it;
    return array ? empty_array : empty_object;
}

void from_json(const nlohmann::json& j, Device& d) {
    d.id = j.value("id", std::string());
    d.device_class = device_class_from_string(j.value("class", std::string("other")))
                         .value_or(DeviceClass::other);
    d.vendor = j.value("vendor", std::string());
    d.model = j.value("model", std::string());
    d.memory_bytes = j.value("memory_bytes", uint64_t{0});
    d.compute_units = j.value("compute_units", uint32_t{0});
    d.max_clock_mhz = j.value("max_clock_mhz", uint32_t{0});
    d.numa_node = j.value("numa_node", -1);
    if (j.contains("pci_address") && j["pci_address"].is_string()) d.pci_address = j["pci_address"];
    if (j.contains("uuid") && j["uuid"].is_string()) d.uuid = j["uuid"];
    d.precisions.clear();
    for (const auto& p : member(j, "precisions", true)) {
        for (Precision q : {Precision::fp64, Precision::fp32, Precision::fp16, Precision::bf16,
                            Precision::int8})
            if (p.get<std::string>() == to_string(q)) d.precisions.push_back(q);
    }
    if (j.contains("health")) {
        d.health.healthy = j["health"].value("healthy", true);
        d.health.reason = j["health"].value("reason", std::string());
    }
    d.runtimes.clear();
    for (const auto& r : member(j, "runtimes", true)) {
        RuntimePath rp;
        rp.backend = r.value("backend", std::string());
        rp.index = r.value("index", uint32_t{0});
        rp.native_name = r.value("native_name", std::string());
        rp.runtime_name = r.value("runtime_name", std::string());
        rp.runtime_version = r.value("runtime_version", std::string());
        rp.driver_version = r.value("driver_version", std::string());
        for (const auto& [k, v] : member(r, "attributes", false).items())
            rp.attributes[k] = v.get<Attribute>();
        d.runtimes.push_back(std::move(rp));
    }
    d.attributes.clear();
    for (const auto& [k, v] : member(j, "attributes", false).items())
        d.attributes[k] = v.get<Attribute>();
}

void to_json(nlohmann::json& j, const PluginReport& p) {
    j = nlohmann::json{{"name", p.name},
                       {"path", p.path},
                       {"status", p.status},
                       {"stage", p.stage},
                       {"reason", p.reason},
                       {"abi_version", p.abi_version},
                       {"runtime_name", p.runtime_name},
                       {"runtime_version", p.runtime_version},
                       {"driver_version", p.driver_version},
                       {"device_count", p.device_count},
                       {"timing_ms",
                        {{"load", p.load_ms},
                         {"probe", p.probe_ms},
                         {"enumerate", p.enumerate_ms},
                         {"total", p.total_ms}}}};
}

void to_json(nlohmann::json& j, const Inventory& inv) {
    j = nlohmann::json{
        {"schema_version", Inventory::kSchemaVersion},
        {"agent_version", inv.agent_version},
        {"timestamp_ms", inv.timestamp_ms},
        {"node",
         {{"id", inv.node.id},
          {"site", inv.node.site},
          {"hostname", inv.node.hostname},
          {"os", inv.node.os},
          {"arch", inv.node.arch},
          {"memory_bytes", inv.node.memory_bytes},
          {"numa_nodes", inv.node.numa_nodes}}},
        {"devices", inv.devices},
        {"plugins", inv.plugins},
        {"discovery_ms", {{"core", inv.core_ms}, {"plugins", inv.plugins_ms}}}};
}

}  // namespace cpn
