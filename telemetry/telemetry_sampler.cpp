// telemetry_sampler.cpp: assembles one telemetry sample from the individual readers.
#include "telemetry_sampler.hpp"

#include "cpn_backend_util.hpp"
#include "drm.hpp"
#include "hwmon.hpp"
#include "loadavg.hpp"
#include "meminfo.hpp"
#include "proc_stat.hpp"
#include "rapl.hpp"
#include "runtime_pm.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

namespace cpn::telemetry {
namespace {

/* Two decimals are more than any of these sensors resolve, and keep the message short. Values
 * too large to scale are left as they are rather than turned into infinity. */
double round2(double v) {
    if (std::fabs(v) >= 1e12) return v;
    return std::round(v * 100.0) / 100.0;
}

double clamp_pct(double v) { return std::clamp(v, 0.0, 100.0); }

/* The sysfs side of one PCI device, resolved at construction. */
struct PciSysfs {
    std::string runtime_status; /* power/runtime_status */
    DrmFiles drm;
    std::vector<DeviceHwmon> hwmon;
};

struct Tracked {
    DeviceRef ref;
    std::string pci;                /* normalised "dddd:bb:dd.f", or the given text, or "" */
    std::optional<PciSysfs> sysfs;  /* absent when the device has no sysfs directory */
};

/* A figure in a plugin's fields, checked against what the schema allows; nullopt drops it. */
std::optional<nlohmann::json> sanitise_plugin_value(const std::string& key,
                                                    const nlohmann::json& v) {
    if (!v.is_number()) return std::nullopt;
    if (key == "memory_used_bytes" || key == "memory_total_bytes") {
        if (v.is_number_unsigned()) return v;
        if (v.is_number_integer()) {
            if (v.get<int64_t>() < 0) return std::nullopt;
            return v;
        }
        const double d = v.get<double>();
        if (!std::isfinite(d) || d < 0 || d >= 18446744073709551616.0) return std::nullopt;
        return nlohmann::json(static_cast<uint64_t>(d));
    }
    const double d = v.get<double>();
    if (!std::isfinite(d)) return std::nullopt;
    if (key == "utilization_pct") return nlohmann::json(round2(clamp_pct(d)));
    if (key == "temperature_c") return nlohmann::json(round2(d));
    if (key == "power_w") {
        if (d < 0) return std::nullopt;
        return nlohmann::json(round2(d));
    }
    return std::nullopt; /* not a device figure of the schema (additionalProperties: false) */
}

/* Copies a plugin's figures into the device entry, overriding what sysfs gave, and records
 * their source: the plugin's own "sources" entry when it names one, else `plugin_name`. */
void merge_plugin_fields(const nlohmann::json& fields, const std::string& plugin_name,
                         nlohmann::json& device, nlohmann::json& sources) {
    if (!fields.is_object()) return;
    const nlohmann::json* named = nullptr;
    auto s = fields.find("sources");
    if (s != fields.end() && s->is_object()) named = &*s;
    for (auto it = fields.begin(); it != fields.end(); ++it) {
        if (it.key() == "sources" || it.key() == "id") continue;
        std::optional<nlohmann::json> v = sanitise_plugin_value(it.key(), it.value());
        if (!v) continue;
        device[it.key()] = std::move(*v);
        std::string source = plugin_name;
        if (named != nullptr) {
            auto n = named->find(it.key());
            if (n != named->end() && n->is_string()) source = n->get<std::string>();
        }
        sources[it.key()] = std::move(source);
    }
}

std::chrono::nanoseconds steady_now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch());
}

}  // namespace

struct TelemetrySampler::Impl {
    std::string stat_path, meminfo_path, loadavg_path;
    std::vector<Tracked> devices;
    bool has_cpu = false;
    std::vector<std::string> cpu_temp_inputs;
    RaplMeter rapl{{}};
    MonotonicClock clock;
    std::optional<CpuTimes> last_cpu;
    std::vector<std::pair<std::string, PluginSource>> plugins;

    /* Node figures; returns the CPU utilisation for the CPU device entry as well. */
    std::optional<double> sample_node(nlohmann::json& node);
    void sample_cpu_device(std::chrono::nanoseconds now, std::optional<double> cpu_util,
                           nlohmann::json& dev, nlohmann::json& sources);
    void sample_pci_device(const Tracked& t, nlohmann::json& dev, nlohmann::json& sources);
    nlohmann::json sample();
};

std::optional<double> TelemetrySampler::Impl::sample_node(nlohmann::json& node) {
    std::optional<double> util;
    if (std::optional<CpuTimes> cur = read_cpu_times(stat_path)) {
        if (last_cpu) util = cpu_utilization_pct(*last_cpu, *cur);
        last_cpu = cur;
    }
    /* A failed read keeps the previous reading, so the next good one averages over both
     * intervals instead of losing a sample. */
    if (util) node["cpu_utilization_pct"] = round2(*util);

    const MemInfo mem = read_meminfo(meminfo_path);
    if (mem.total_bytes) node["memory_total_bytes"] = *mem.total_bytes;
    if (mem.total_bytes && mem.available_bytes && *mem.total_bytes > 0 &&
        *mem.available_bytes <= *mem.total_bytes) {
        const uint64_t used = *mem.total_bytes - *mem.available_bytes;
        node["memory_used_bytes"] = used;
        node["memory_utilization_pct"] = round2(
            clamp_pct(100.0 * static_cast<double>(used) / static_cast<double>(*mem.total_bytes)));
    }

    const LoadAvg load = read_loadavg(loadavg_path);
    if (load.load1) node["load1"] = *load.load1;
    if (load.load5) node["load5"] = *load.load5;
    if (load.load15) node["load15"] = *load.load15;
    return util;
}

void TelemetrySampler::Impl::sample_cpu_device(std::chrono::nanoseconds now,
                                               std::optional<double> cpu_util,
                                               nlohmann::json& dev, nlohmann::json& sources) {
    if (cpu_util) {
        dev["utilization_pct"] = round2(*cpu_util);
        sources["utilization_pct"] = "procfs";
    }
    if (std::optional<double> w = rapl.read_watts(now)) {
        dev["power_w"] = round2(*w);
        sources["power_w"] = "rapl";
    }
    if (std::optional<double> c = read_max_temperature_c(cpu_temp_inputs)) {
        dev["temperature_c"] = round2(*c);
        sources["temperature_c"] = "hwmon";
    }
}

void TelemetrySampler::Impl::sample_pci_device(const Tracked& t, nlohmann::json& dev,
                                               nlohmann::json& sources) {
    if (t.sysfs) {
        const HwmonReading hw = read_device_hwmon(t.sysfs->hwmon);
        if (hw.temperature_c) {
            dev["temperature_c"] = round2(*hw.temperature_c);
            sources["temperature_c"] = "hwmon";
        }
        if (hw.power_w) {
            dev["power_w"] = round2(*hw.power_w);
            sources["power_w"] = "hwmon";
        }
        const DrmReading drm = read_drm(t.sysfs->drm);
        if (drm.busy_pct) {
            dev["utilization_pct"] = round2(*drm.busy_pct);
            sources["utilization_pct"] = "drm";
        }
        if (drm.vram_used_bytes) {
            dev["memory_used_bytes"] = *drm.vram_used_bytes;
            sources["memory_used_bytes"] = "drm";
        }
        if (drm.vram_total_bytes) {
            dev["memory_total_bytes"] = *drm.vram_total_bytes;
            sources["memory_total_bytes"] = "drm";
        }
    }
    for (const auto& [name, source] : plugins) {
        nlohmann::json fields = nlohmann::json::object();
        bool ok = false;
        try {
            ok = source && source(t.pci, fields);
        } catch (...) {
            ok = false; /* a misbehaving source loses its figures, not the sample */
        }
        if (ok) merge_plugin_fields(fields, name, dev, sources);
    }
}

nlohmann::json TelemetrySampler::Impl::sample() {
    const std::chrono::nanoseconds now = clock();
    nlohmann::json node = nlohmann::json::object();
    const std::optional<double> cpu_util = sample_node(node);

    nlohmann::json out_devices = nlohmann::json::array();
    for (const Tracked& t : devices) {
        nlohmann::json dev = nlohmann::json::object();
        nlohmann::json sources = nlohmann::json::object();
        if (t.ref.is_cpu) {
            sample_cpu_device(now, cpu_util, dev, sources);
        } else if (!t.pci.empty()) {
            /* A runtime-suspended device is left asleep: reading it would wake it. */
            if (!t.sysfs || !runtime_suspended(t.sysfs->runtime_status)) {
                sample_pci_device(t, dev, sources);
            }
        }
        if (dev.empty()) continue; /* nothing known: no entry rather than an empty one */
        dev["id"] = t.ref.id;
        if (!sources.empty()) dev["sources"] = std::move(sources);
        out_devices.push_back(std::move(dev));
    }

    nlohmann::json out = nlohmann::json::object();
    out["node"] = std::move(node);
    out["devices"] = std::move(out_devices);
    return out;
}

TelemetrySampler::TelemetrySampler(std::string proc_root, std::string sysfs_root,
                                   std::vector<DeviceRef> devices, MonotonicClock clock)
    : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.stat_path = proc_root + "/stat";
    m.meminfo_path = proc_root + "/meminfo";
    m.loadavg_path = proc_root + "/loadavg";
    m.clock = clock ? std::move(clock) : MonotonicClock(steady_now);

    for (DeviceRef& ref : devices) {
        Tracked t;
        if (ref.is_cpu) {
            m.has_cpu = true;
        } else if (!ref.pci_address.empty()) {
            /* Only a well-formed address is used in a sysfs path (no "../" can slip in); a
             * malformed one still goes to the plugin sources as given. */
            const std::string norm = plugin::normalise_pci(ref.pci_address);
            t.pci = norm.empty() ? ref.pci_address : norm;
            const std::string dir = sysfs_root + "/bus/pci/devices/" + norm;
            if (!norm.empty() && ::access(dir.c_str(), F_OK) == 0) {
                t.sysfs = PciSysfs{dir + "/power/runtime_status", drm_files(dir),
                                   find_device_hwmon(dir)};
            }
        }
        t.ref = std::move(ref);
        m.devices.push_back(std::move(t));
    }
    if (m.has_cpu) {
        m.cpu_temp_inputs = find_cpu_temp_inputs(sysfs_root);
        m.rapl = RaplMeter(find_rapl_packages(sysfs_root));
    }

    /* The first readings, so the first sample() has a baseline for its rates. */
    const std::chrono::nanoseconds now = m.clock();
    m.last_cpu = read_cpu_times(m.stat_path);
    if (!m.rapl.empty()) m.rapl.read_watts(now);
}

TelemetrySampler::~TelemetrySampler() = default;
TelemetrySampler::TelemetrySampler(TelemetrySampler&&) noexcept = default;
TelemetrySampler& TelemetrySampler::operator=(TelemetrySampler&&) noexcept = default;

void TelemetrySampler::add_plugin_source(std::string name, PluginSource source) {
    impl_->plugins.emplace_back(std::move(name), std::move(source));
}

nlohmann::json TelemetrySampler::sample() {
    try {
        return impl_->sample();
    } catch (...) {
        /* Only std::bad_alloc can get here (the readers report by value, plugin sources are
         * caught one by one). Return the empty shape, or null if even that cannot be built:
         * the caller treats a missing member as empty. */
        try {
            return {{"node", nlohmann::json::object()}, {"devices", nlohmann::json::array()}};
        } catch (...) {
            return nlohmann::json();
        }
    }
}

}  // namespace cpn::telemetry
