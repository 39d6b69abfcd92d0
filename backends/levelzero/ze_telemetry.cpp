// ze_telemetry.cpp: Level Zero Sysman initialised once, devices mapped by PCI address, and one
// device's utilisation, memory, temperature and power read through it.
#include "ze_telemetry.hpp"

#include "cpn_backend_util.hpp"
#include "ze_driver.hpp"
#include "ze_log.hpp"

#include <dlfcn.h>
#include <level_zero/ze_api.h>
#include <level_zero/zes_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <vector>

namespace cpn::levelzero {
namespace {

using plugin::fail;

/* How long a failed Sysman initialisation is believed before trying again: long enough that a
 * node without an Intel GPU does not retry every interval for every device, short enough that
 * installing a driver is noticed without restarting the agent. */
constexpr std::chrono::seconds kRetryAfter{60};
/* Counter deltas over a shorter window than this (microseconds) are too coarse to report (the
 * energy counter, for one, ticks in steps of a millisecond or so); the previous reading is
 * kept so that the next call has a long enough window. */
constexpr uint64_t kMinWindowUs = 10000;

constexpr const char* kLoaderSoname = "libze_loader.so.1";

/* zesInit, zesDriverGet and zesDeviceGet (API 1.5, loader 1.9+): not in the 1.4 headers or the
 * 1.8 loader this is built against, so declared here and looked up at run time. zes_init_flags_t
 * is a uint32_t; ZE_APICALL is empty on Linux. */
using ZesInitFn = ze_result_t (*)(uint32_t flags);
using ZesDriverGetFn = ze_result_t (*)(uint32_t* count, zes_driver_handle_t* drivers);
using ZesDeviceGetFn = ze_result_t (*)(zes_driver_handle_t driver, uint32_t* count,
                                       zes_device_handle_t* devices);

/* A monotonic counter reading (engine active time or energy) and when it was taken. */
struct Counter {
    uint64_t value = 0;
    uint64_t timestamp_us = 0;
    bool have = false;
};

struct EngineSource {
    zes_engine_handle_t handle = nullptr;
    Counter prev;
};

struct PowerSource {
    zes_pwr_handle_t handle = nullptr;
    Counter prev;
};

/* One Sysman device and the component handles chosen for its figures (found on its first
 * sample, kept until shutdown or until the device is reported lost). */
struct SysmanDevice {
    zes_device_handle_t handle = nullptr;
    bool enumerated = false;
    std::vector<EngineSource> engines;      /* one group type, averaged */
    std::vector<zes_mem_handle_t> memories; /* device-local modules, summed */
    std::vector<zes_temp_handle_t> temps;   /* GLOBAL and GPU sensors, max */
    std::vector<PowerSource> power;         /* one card/package domain, or sub-device ones summed */
};

/* Everything below is guarded by g_mutex: telemetry normally has one caller, but the ABI does
 * not promise that. */
std::mutex g_mutex;
bool g_ready = false;
std::string g_path; /* how Sysman was reached, for the log */
std::map<std::string, SysmanDevice> g_devices; /* by "dddd:bb:dd.f" */
std::optional<std::chrono::steady_clock::time_point> g_failed_at;
cpn_status g_fail_status = CPN_E_NOT_FOUND;
std::string g_fail_reason;

/* The Level Zero loader the plugin is linked against, for dlsym; never dlclose'd. */
void* loader_handle(std::string& why) {
    dlerror();
    void* lib = dlopen(kLoaderSoname, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (lib != nullptr) return lib;
    /* Installed under another name: find the object that provides a zes entry point we link. */
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&zesDevicePciGetProperties), &info) != 0 &&
        info.dli_fname != nullptr) {
        lib = dlopen(info.dli_fname, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
        if (lib != nullptr) return lib;
    }
    const char* e = dlerror();
    why = std::string("cannot look up zesInit in the Level Zero loader: ") +
          (e != nullptr ? e : kLoaderSoname);
    return nullptr;
}

/* The two-call enumeration pattern of every zesDeviceEnum* function. */
template <typename Handle, typename Parent, typename EnumFn>
ze_result_t enum_handles(EnumFn fn, Parent parent, std::vector<Handle>& out) {
    out.clear();
    uint32_t n = 0;
    ze_result_t r = fn(parent, &n, nullptr);
    if (r != ZE_RESULT_SUCCESS || n == 0) return r;
    std::vector<Handle> v(n);
    r = fn(parent, &n, v.data());
    if (r != ZE_RESULT_SUCCESS) return r;
    v.resize(std::min<size_t>(n, v.size()));
    out = std::move(v);
    return ZE_RESULT_SUCCESS;
}

/* Sysman device handles from one initialisation path; empty with `reason` when none. */
struct Found {
    std::vector<zes_device_handle_t> devices;
    std::string reason;
};

/* zesInit(0), then every Sysman driver's devices. Independent of zeInit: no compute context. */
Found via_zes_init() {
    Found f;
    void* lib = loader_handle(f.reason);
    if (lib == nullptr) return f;
    auto init = reinterpret_cast<ZesInitFn>(dlsym(lib, "zesInit"));
    auto driver_get = reinterpret_cast<ZesDriverGetFn>(dlsym(lib, "zesDriverGet"));
    auto device_get = reinterpret_cast<ZesDeviceGetFn>(dlsym(lib, "zesDeviceGet"));
    if (init == nullptr || driver_get == nullptr || device_get == nullptr) {
        f.reason = std::string(kLoaderSoname) +
                   " has no zesInit/zesDriverGet/zesDeviceGet (a loader older than 1.9, API 1.5)";
        return f;
    }
    ze_result_t r = init(0);
    if (r != ZE_RESULT_SUCCESS) {
        f.reason = r == ZE_RESULT_ERROR_UNINITIALIZED
                       ? "no Level Zero Sysman driver (zesInit: " + result_name(r) + ")"
                       : "zesInit failed: " + result_name(r);
        return f;
    }
    uint32_t ndrv = 0;
    r = driver_get(&ndrv, nullptr);
    if (r != ZE_RESULT_SUCCESS || ndrv == 0) {
        f.reason = r != ZE_RESULT_SUCCESS ? "zesDriverGet failed: " + result_name(r)
                                          : "no Level Zero Sysman driver (zesDriverGet found 0)";
        return f;
    }
    std::vector<zes_driver_handle_t> drivers(ndrv);
    r = driver_get(&ndrv, drivers.data());
    if (r != ZE_RESULT_SUCCESS) {
        f.reason = "zesDriverGet failed: " + result_name(r);
        return f;
    }
    drivers.resize(std::min<size_t>(ndrv, drivers.size()));
    std::string notes;
    for (size_t di = 0; di < drivers.size(); ++di) {
        std::vector<zes_device_handle_t> devs;
        r = enum_handles<zes_device_handle_t>(device_get, drivers[di], devs);
        if (r != ZE_RESULT_SUCCESS) {
            notes += "; zesDeviceGet(driver " + std::to_string(di) + "): " + result_name(r);
            continue;
        }
        f.devices.insert(f.devices.end(), devs.begin(), devs.end());
    }
    if (f.devices.empty()) {
        f.reason = "no Level Zero Sysman device (" + std::to_string(drivers.size()) +
                   " driver(s) found, none with a device" + notes + ")";
    }
    return f;
}

/* Legacy Sysman: core device handles double as Sysman handles when ZES_ENABLE_SYSMAN=1 was in
 * the environment when zeInit ran. Only taken when the variable is already set (the core
 * zeInit, once per process, is shared with probe); never sets it. */
Found via_legacy() {
    Found f;
    const char* env = std::getenv("ZES_ENABLE_SYSMAN");
    if (env == nullptr || std::strcmp(env, "1") != 0) {
        f.reason = "ZES_ENABLE_SYSMAN=1 is not set in the agent's environment, so the legacy "
                   "path (Sysman through zeInit) is off";
        return f;
    }
    const ZeState& st = ze_state();
    if (!st.usable) {
        f.reason = "legacy path (ZES_ENABLE_SYSMAN=1): " + st.reason;
        return f;
    }
    for (const ZeDevice& d : st.devices) {
        f.devices.push_back(reinterpret_cast<zes_device_handle_t>(d.device));
    }
    return f;
}

std::string format_pci(const zes_pci_address_t& a) {
    if (a.domain > 0xffff || a.bus > 0xff || a.device > 0x1f || a.function > 0x7) return "";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", a.domain, a.bus, a.device, a.function);
    return buf;
}

/* Fills g_devices from `devs` by PCI address; returns how many were mapped, and why others
 * were not in `notes`. Called with g_mutex held. */
size_t map_devices(const std::vector<zes_device_handle_t>& devs, std::string& notes) {
    size_t mapped = 0;
    for (zes_device_handle_t h : devs) {
        zes_pci_properties_t p{};
        p.stype = ZES_STRUCTURE_TYPE_PCI_PROPERTIES;
        const ze_result_t r = zesDevicePciGetProperties(h, &p);
        if (r != ZE_RESULT_SUCCESS) {
            notes += "; zesDevicePciGetProperties: " + result_name(r);
            continue;
        }
        const std::string pci = format_pci(p.address);
        if (pci.empty()) {
            notes += "; a device reported an out-of-range PCI address";
            continue;
        }
        SysmanDevice d;
        d.handle = h;
        if (g_devices.emplace(pci, std::move(d)).second) ++mapped;
    }
    return mapped;
}

/* Makes sure Sysman is initialised and the devices mapped, replaying a recent failure instead
 * of retrying it. Called with g_mutex held. */
cpn_status ensure_ready(cpn_msg* err) {
    if (g_ready) return CPN_OK;
    const auto now = std::chrono::steady_clock::now();
    if (g_failed_at && now - *g_failed_at < kRetryAfter) {
        return fail(err, g_fail_status, "%s", g_fail_reason.c_str());
    }
    g_devices.clear();
    g_path.clear();
    std::string why;
    Found a = via_zes_init();
    if (!a.devices.empty()) {
        std::string notes;
        if (map_devices(a.devices, notes) > 0) {
            g_path = "zesInit";
        } else {
            a.reason = "zesInit found " + std::to_string(a.devices.size()) +
                       " device(s) but none with a PCI address" + notes;
        }
    }
    if (g_path.empty()) {
        Found b = via_legacy();
        if (!b.devices.empty()) {
            std::string notes;
            if (map_devices(b.devices, notes) > 0) {
                g_path = "ZES_ENABLE_SYSMAN=1 and zeInit";
            } else {
                b.reason = "legacy path (ZES_ENABLE_SYSMAN=1): " +
                           std::to_string(b.devices.size()) +
                           " device(s) but none answered with a PCI address" + notes;
            }
        }
        if (g_path.empty()) why = a.reason + "; " + b.reason;
    }
    if (!g_path.empty()) {
        g_ready = true;
        g_failed_at.reset();
        log(1, "Level Zero Sysman initialised for telemetry through " + g_path + ", " +
                   std::to_string(g_devices.size()) + " device(s)");
        return CPN_OK;
    }
    g_devices.clear();
    g_failed_at = now;
    g_fail_status = CPN_E_NOT_FOUND;
    g_fail_reason = "Level Zero Sysman not available: " + why;
    log(1, g_fail_reason);
    return fail(err, g_fail_status, "%s", g_fail_reason.c_str());
}

/* Rate of change of a monotonic counter per microsecond since the previous reading, which the
 * new one then replaces. nullopt on the first reading, after a counter went backwards (wrap or
 * reset: that reading starts afresh), or over a window under kMinWindowUs (the previous
 * reading is kept then). */
std::optional<double> rate(Counter& prev, uint64_t value, uint64_t timestamp_us) {
    if (!prev.have || timestamp_us < prev.timestamp_us || value < prev.value) {
        prev = {value, timestamp_us, true};
        return std::nullopt;
    }
    const uint64_t dt = timestamp_us - prev.timestamp_us;
    if (dt < kMinWindowUs) return std::nullopt;
    const double r = static_cast<double>(value - prev.value) / static_cast<double>(dt);
    prev = {value, timestamp_us, true};
    if (!std::isfinite(r) || r < 0.0) return std::nullopt;
    return r;
}

/* Set by a sampling step when the driver says the device is lost: the call that said so. */
struct LostAt {
    const char* call = nullptr;
    bool check(ze_result_t r, const char* name) {
        if (r == ZE_RESULT_ERROR_DEVICE_LOST && call == nullptr) call = name;
        return call != nullptr;
    }
};

/* Engine groups: the device-level ALL group, else device-level COMPUTE_ALL, else the same per
 * sub-device (averaged over the sub-devices). */
void choose_engines(SysmanDevice& d, LostAt& lost) {
    std::vector<zes_engine_handle_t> all;
    ze_result_t r = enum_handles<zes_engine_handle_t>(zesDeviceEnumEngineGroups, d.handle, all);
    if (lost.check(r, "zesDeviceEnumEngineGroups") || r != ZE_RESULT_SUCCESS) return;
    std::vector<zes_engine_handle_t> tiers[4]; /* ALL, COMPUTE_ALL; device, then sub-device */
    for (zes_engine_handle_t h : all) {
        zes_engine_properties_t p{};
        p.stype = ZES_STRUCTURE_TYPE_ENGINE_PROPERTIES;
        r = zesEngineGetProperties(h, &p);
        if (lost.check(r, "zesEngineGetProperties")) return;
        if (r != ZE_RESULT_SUCCESS) continue;
        const int sub = p.onSubdevice ? 2 : 0;
        if (p.type == ZES_ENGINE_GROUP_ALL) tiers[sub].push_back(h);
        if (p.type == ZES_ENGINE_GROUP_COMPUTE_ALL) tiers[sub + 1].push_back(h);
    }
    for (const auto& tier : tiers) {
        if (tier.empty()) continue;
        for (zes_engine_handle_t h : tier) d.engines.push_back({h, {}});
        return;
    }
}

/* Memory modules in device-local memory: the device-level ones, else the sub-devices' (summed).
 * System-memory modules (integrated GPUs) are left out: their "used" is the host's. */
void choose_memories(SysmanDevice& d, LostAt& lost) {
    std::vector<zes_mem_handle_t> all;
    ze_result_t r = enum_handles<zes_mem_handle_t>(zesDeviceEnumMemoryModules, d.handle, all);
    if (lost.check(r, "zesDeviceEnumMemoryModules") || r != ZE_RESULT_SUCCESS) return;
    std::vector<zes_mem_handle_t> device_level, sub_level;
    for (zes_mem_handle_t h : all) {
        zes_mem_properties_t p{};
        p.stype = ZES_STRUCTURE_TYPE_MEM_PROPERTIES;
        r = zesMemoryGetProperties(h, &p);
        if (lost.check(r, "zesMemoryGetProperties")) return;
        if (r != ZE_RESULT_SUCCESS || p.location != ZES_MEM_LOC_DEVICE) continue;
        (p.onSubdevice ? sub_level : device_level).push_back(h);
    }
    d.memories = device_level.empty() ? sub_level : device_level;
}

/* Temperature sensors of type GLOBAL or GPU (device or sub-device: the maximum is taken). */
void choose_temps(SysmanDevice& d, LostAt& lost) {
    std::vector<zes_temp_handle_t> all;
    ze_result_t r =
        enum_handles<zes_temp_handle_t>(zesDeviceEnumTemperatureSensors, d.handle, all);
    if (lost.check(r, "zesDeviceEnumTemperatureSensors") || r != ZE_RESULT_SUCCESS) return;
    for (zes_temp_handle_t h : all) {
        zes_temp_properties_t p{};
        p.stype = ZES_STRUCTURE_TYPE_TEMP_PROPERTIES;
        r = zesTemperatureGetProperties(h, &p);
        if (lost.check(r, "zesTemperatureGetProperties")) return;
        if (r != ZE_RESULT_SUCCESS) continue;
        if (p.type == ZES_TEMP_SENSORS_GLOBAL || p.type == ZES_TEMP_SENSORS_GPU) {
            d.temps.push_back(h);
        }
    }
}

/* Power: the card domain, else the first device-level domain, else the sub-device domains
 * (summed). */
void choose_power(SysmanDevice& d, LostAt& lost) {
    zes_pwr_handle_t card = nullptr;
    ze_result_t r = zesDeviceGetCardPowerDomain(d.handle, &card);
    if (lost.check(r, "zesDeviceGetCardPowerDomain")) return;
    if (r == ZE_RESULT_SUCCESS && card != nullptr) {
        d.power.push_back({card, {}});
        return;
    }
    std::vector<zes_pwr_handle_t> all;
    r = enum_handles<zes_pwr_handle_t>(zesDeviceEnumPowerDomains, d.handle, all);
    if (lost.check(r, "zesDeviceEnumPowerDomains") || r != ZE_RESULT_SUCCESS) return;
    std::vector<zes_pwr_handle_t> sub_level;
    for (zes_pwr_handle_t h : all) {
        zes_power_properties_t p{};
        p.stype = ZES_STRUCTURE_TYPE_POWER_PROPERTIES;
        r = zesPowerGetProperties(h, &p);
        if (lost.check(r, "zesPowerGetProperties")) return;
        if (r != ZE_RESULT_SUCCESS) continue;
        if (!p.onSubdevice) {
            d.power.push_back({h, {}});
            return;
        }
        sub_level.push_back(h);
    }
    for (zes_pwr_handle_t h : sub_level) d.power.push_back({h, {}});
}

void forget_components(SysmanDevice& d) {
    d.enumerated = false;
    d.engines.clear();
    d.memories.clear();
    d.temps.clear();
    d.power.clear();
}

/* Finds the component handles of a device on its first sample. Called with g_mutex held. */
void enumerate(const std::string& pci, SysmanDevice& d, LostAt& lost) {
    forget_components(d);
    choose_engines(d, lost);
    if (lost.call == nullptr) choose_memories(d, lost);
    if (lost.call == nullptr) choose_temps(d, lost);
    if (lost.call == nullptr) choose_power(d, lost);
    if (lost.call != nullptr) {
        forget_components(d);
        return;
    }
    d.enumerated = true;
    log(1, "Sysman telemetry for " + pci + ": " + std::to_string(d.engines.size()) +
               " engine group(s), " + std::to_string(d.memories.size()) +
               " device memory module(s), " + std::to_string(d.temps.size()) +
               " temperature sensor(s), " + std::to_string(d.power.size()) +
               " power domain(s)");
}

/* Mean busy percentage of the chosen engine groups since the previous call; nullopt unless
 * every group gave a delta. */
std::optional<double> read_utilization(SysmanDevice& d, LostAt& lost) {
    if (d.engines.empty()) return std::nullopt;
    double sum = 0.0;
    bool complete = true;
    for (EngineSource& e : d.engines) {
        zes_engine_stats_t s{};
        const ze_result_t r = zesEngineGetActivity(e.handle, &s);
        if (lost.check(r, "zesEngineGetActivity")) return std::nullopt;
        if (r != ZE_RESULT_SUCCESS) {
            complete = false;
            continue;
        }
        const std::optional<double> busy = rate(e.prev, s.activeTime, s.timestamp);
        if (busy) {
            sum += *busy;
        } else {
            complete = false;
        }
    }
    if (!complete) return std::nullopt;
    const double pct = 100.0 * sum / static_cast<double>(d.engines.size());
    if (!std::isfinite(pct)) return std::nullopt;
    return std::clamp(pct, 0.0, 100.0);
}

/* Used and total bytes over the chosen memory modules; false unless every module answered. */
bool read_memory(SysmanDevice& d, LostAt& lost, uint64_t* used, uint64_t* total) {
    if (d.memories.empty()) return false;
    uint64_t u = 0, t = 0;
    for (zes_mem_handle_t h : d.memories) {
        zes_mem_state_t s{};
        s.stype = ZES_STRUCTURE_TYPE_MEM_STATE;
        const ze_result_t r = zesMemoryGetState(h, &s);
        if (lost.check(r, "zesMemoryGetState")) return false;
        if (r != ZE_RESULT_SUCCESS || s.free > s.size) return false;
        u += s.size - s.free;
        t += s.size;
    }
    if (t == 0) return false;
    *used = u;
    *total = t;
    return true;
}

/* Hottest GLOBAL/GPU sensor, in degrees Celsius; sensors that fail or give nonsense are
 * skipped. */
std::optional<double> read_temperature(SysmanDevice& d, LostAt& lost) {
    std::optional<double> hottest;
    for (zes_temp_handle_t h : d.temps) {
        double c = 0.0;
        const ze_result_t r = zesTemperatureGetState(h, &c);
        if (lost.check(r, "zesTemperatureGetState")) return std::nullopt;
        if (r != ZE_RESULT_SUCCESS || !std::isfinite(c) || c <= -100.0 || c >= 300.0) continue;
        if (!hottest || c > *hottest) hottest = c;
    }
    return hottest;
}

/* Watts since the previous call over the chosen power domains (energy in microjoules over
 * microseconds); nullopt unless every domain gave a delta. */
std::optional<double> read_power(SysmanDevice& d, LostAt& lost) {
    if (d.power.empty()) return std::nullopt;
    double watts = 0.0;
    bool complete = true;
    for (PowerSource& p : d.power) {
        zes_power_energy_counter_t e{};
        const ze_result_t r = zesPowerGetEnergyCounter(p.handle, &e);
        if (lost.check(r, "zesPowerGetEnergyCounter")) return std::nullopt;
        if (r != ZE_RESULT_SUCCESS) {
            complete = false;
            continue;
        }
        const std::optional<double> w = rate(p.prev, e.energy, e.timestamp);
        if (w) {
            watts += *w;
        } else {
            complete = false;
        }
    }
    if (!complete || !std::isfinite(watts)) return std::nullopt;
    return watts;
}

/* Reads each figure into `out`; one the device or driver cannot give stays out of `valid`.
 * A lost device ends the sample with no figures. Called with g_mutex held. */
cpn_status read_figures(const std::string& pci, SysmanDevice& d, cpn_device_telemetry* out,
                        cpn_msg* err) {
    LostAt lost;
    if (!d.enumerated) enumerate(pci, d, lost);
    if (lost.call == nullptr) {
        if (auto u = read_utilization(d, lost)) {
            out->utilization_pct = *u;
            out->valid |= CPN_TELEM_UTILIZATION;
        }
    }
    if (lost.call == nullptr) {
        uint64_t used = 0, total = 0;
        if (read_memory(d, lost, &used, &total)) {
            out->memory_used_bytes = used;
            out->memory_total_bytes = total;
            out->valid |= CPN_TELEM_MEMORY;
        }
    }
    if (lost.call == nullptr) {
        if (auto c = read_temperature(d, lost)) {
            out->temperature_c = *c;
            out->valid |= CPN_TELEM_TEMPERATURE;
        }
    }
    if (lost.call == nullptr) {
        if (auto w = read_power(d, lost)) {
            out->power_w = *w;
            out->valid |= CPN_TELEM_POWER;
        }
    }
    if (lost.call != nullptr) {
        /* Re-enumerate on the next call, in case the driver brings the device back. */
        forget_components(d);
        const uint32_t size = out->struct_size;
        std::memset(out, 0, sizeof *out);
        out->struct_size = size;
        return fail(err, CPN_E_DEVICE_LOST, "Level Zero device at %s is lost (%s: %s)",
                    pci.c_str(), lost.call, result_name(ZE_RESULT_ERROR_DEVICE_LOST).c_str());
    }
    return CPN_OK;
}

cpn_status sample(const char* pci_address, cpn_device_telemetry* out, cpn_msg* err) {
    if (cpn_status st = plugin::begin_telemetry(pci_address, out, err); st != CPN_OK) return st;

    const std::string pci = plugin::normalise_pci(pci_address);
    if (pci.empty()) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "device_telemetry: '%.200s' is not a PCI address (dddd:bb:dd.f)", pci_address);
    }
    std::lock_guard<std::mutex> lock(g_mutex);
    if (cpn_status st = ensure_ready(err); st != CPN_OK) return st;
    auto it = g_devices.find(pci);
    if (it == g_devices.end()) {
        return fail(err, CPN_E_NOT_FOUND,
                    "no Level Zero Sysman device at %s (%zu Sysman device(s) known)", pci.c_str(),
                    g_devices.size());
    }
    return read_figures(pci, it->second, out, err);
}

}  // namespace

cpn_status device_telemetry(const char* pci_address, cpn_device_telemetry* out, cpn_msg* err) {
    try {
        return sample(pci_address, out, err);
    } catch (const std::bad_alloc&) {
        return fail(err, CPN_E_OUT_OF_MEMORY, "levelzero device_telemetry: out of host memory");
    } catch (const std::exception& e) {
        return fail(err, CPN_E_INTERNAL, "levelzero device_telemetry: %s", e.what());
    } catch (...) {
        return fail(err, CPN_E_INTERNAL, "levelzero device_telemetry: unknown exception");
    }
}

void telemetry_shutdown() {
    try {
        std::lock_guard<std::mutex> lock(g_mutex);
        g_devices.clear();
        g_ready = false;
        g_path.clear();
        g_failed_at.reset();
        g_fail_status = CPN_E_NOT_FOUND;
        g_fail_reason.clear();
    } catch (...) {
        /* std::mutex::lock can throw system_error; nothing to undo then. */
    }
}

}  // namespace cpn::levelzero
