// cuda_telemetry.cpp: NVML loaded with dlopen, and one device's utilisation, memory,
// temperature and power read through it.
#include "cuda_telemetry.hpp"

#include "cpn_backend_util.hpp"
#include "cuda_log.hpp"
#include "nvml_api.hpp"

#include <dlfcn.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <string>

namespace cpn::cuda {
namespace {

using plugin::fail;

constexpr const char* kNvmlLibrary = "libnvidia-ml.so.1";
/* How long a failed load or nvmlInit_v2 is believed before trying again: long enough that a
 * GPU-less node does not retry every interval for every device, short enough that installing
 * the driver is noticed without restarting the agent. */
constexpr std::chrono::seconds kRetryAfter{60};

struct NvmlApi {
    nvml::InitFn init = nullptr;
    nvml::ShutdownFn shutdown = nullptr;
    nvml::ErrorStringFn error_string = nullptr;
    nvml::GetHandleByPciBusIdFn get_handle_by_pci_bus_id = nullptr;
    nvml::GetUtilizationRatesFn get_utilization_rates = nullptr;
    nvml::GetMemoryInfoFn get_memory_info = nullptr;
    nvml::GetTemperatureFn get_temperature = nullptr;
    nvml::GetPowerUsageFn get_power_usage = nullptr;
    /* Optional (bench clock readings): absent from an old NVML without failing telemetry. */
    nvml::GetClockInfoFn get_clock_info = nullptr;
    nvml::GetClocksReasonsFn get_clocks_reasons = nullptr;
};

/* Everything below is guarded by g_mutex: telemetry normally has one caller, but the ABI does
 * not promise that. */
std::mutex g_mutex;
void* g_lib = nullptr; /* never dlclose'd: NVML, like libcuda, is not meant to be unloaded */
NvmlApi g_api;
bool g_initialised = false; /* nvmlInit_v2 succeeded and no nvmlShutdown since */
/* The last failure to get NVML ready, replayed until kRetryAfter has passed. */
std::optional<std::chrono::steady_clock::time_point> g_failed_at;
cpn_status g_fail_status = CPN_E_NOT_FOUND;
std::string g_fail_reason;
/* Handles by NVML bus id; valid until nvmlShutdown. */
std::map<std::string, nvml::Device> g_handles;

std::string nvml_error(nvml::Return r) {
    const char* s = g_api.error_string != nullptr ? g_api.error_string(r) : nullptr;
    if (s != nullptr && *s != '\0') return s;
    return "NVML error " + std::to_string(r);
}

template <typename Fn>
void resolve(const char* name, Fn& slot, std::string& missing) {
    slot = reinterpret_cast<Fn>(dlsym(g_lib, name));
    if (slot == nullptr && missing.empty()) missing = name;
}

/* Loads libnvidia-ml.so.1, resolves the entry points and calls nvmlInit_v2, each once; on
 * failure sets status and reason. Called with g_mutex held. */
cpn_status load_and_init(std::string& reason) {
    if (g_lib == nullptr) {
        dlerror();
        void* lib = dlopen(kNvmlLibrary, RTLD_NOW | RTLD_LOCAL);
        if (lib == nullptr) {
            const char* e = dlerror();
            reason = std::string("NVML not available: ") + (e != nullptr ? e : kNvmlLibrary);
            return CPN_E_NOT_FOUND;
        }
        g_lib = lib;
        NvmlApi api;
        std::string missing;
        /* nvmlErrorString first, so later messages can use it even if something is missing. */
        resolve("nvmlErrorString", api.error_string, missing);
        resolve("nvmlInit_v2", api.init, missing);
        resolve("nvmlShutdown", api.shutdown, missing);
        resolve("nvmlDeviceGetHandleByPciBusId_v2", api.get_handle_by_pci_bus_id, missing);
        resolve("nvmlDeviceGetUtilizationRates", api.get_utilization_rates, missing);
        resolve("nvmlDeviceGetMemoryInfo", api.get_memory_info, missing);
        resolve("nvmlDeviceGetTemperature", api.get_temperature, missing);
        resolve("nvmlDeviceGetPowerUsage", api.get_power_usage, missing);
        std::string optional;
        resolve("nvmlDeviceGetClockInfo", api.get_clock_info, optional);
        resolve("nvmlDeviceGetCurrentClocksEventReasons", api.get_clocks_reasons, optional);
        if (api.get_clocks_reasons == nullptr) {
            resolve("nvmlDeviceGetCurrentClocksThrottleReasons", api.get_clocks_reasons, optional);
        }
        g_api = api;
        if (!missing.empty()) {
            reason = std::string("NVML too old or damaged: ") + kNvmlLibrary + " lacks " + missing;
            g_api = NvmlApi{};
            /* Never initialised, so unloading is safe; a later retry reopens and re-checks. */
            dlclose(g_lib);
            g_lib = nullptr;
            return CPN_E_UNAVAILABLE;
        }
    }
    const nvml::Return r = g_api.init();
    if (r == nvml::kSuccess) return CPN_OK;
    /* No kernel driver (a container without the device nodes, a driver not loaded yet): as
     * quiet a "nothing here" as the missing library. */
    const bool absent = r == nvml::kErrorDriverNotLoaded || r == nvml::kErrorLibraryNotFound;
    reason = std::string(absent ? "NVML not available: " : "NVML failed: ") +
             "nvmlInit_v2: " + nvml_error(r);
    return absent ? CPN_E_NOT_FOUND : CPN_E_UNAVAILABLE;
}

/* Makes sure NVML is initialised, replaying a recent failure instead of retrying it. Called
 * with g_mutex held. */
cpn_status ensure_ready(cpn_msg* err) {
    if (g_initialised) return CPN_OK;
    const auto now = std::chrono::steady_clock::now();
    if (g_failed_at && now - *g_failed_at < kRetryAfter) {
        return fail(err, g_fail_status, "%s", g_fail_reason.c_str());
    }
    std::string reason;
    const cpn_status st = load_and_init(reason);
    if (st == CPN_OK) {
        g_initialised = true;
        g_failed_at.reset();
        log(1, "NVML initialised for telemetry");
        return CPN_OK;
    }
    g_failed_at = now;
    g_fail_status = st;
    g_fail_reason = reason;
    log(1, reason);
    return fail(err, st, "%s", reason.c_str());
}

/* "0000:3b:00.0" -> "00000000:3B:00.0", the form nvmlPciInfo_t.busId uses; "" if malformed. */
std::string nvml_bus_id(const std::string& pci) {
    unsigned dom = 0, bus = 0, dev = 0, fn = 0;
    if (std::sscanf(pci.c_str(), "%x:%x:%x.%x", &dom, &bus, &dev, &fn) != 4) return "";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%08X:%02X:%02X.%X", dom, bus, dev, fn);
    return buf;
}

/* The NVML handle of the GPU at `bus_id`, cached. Called with g_mutex held. */
cpn_status device_handle(const std::string& pci, const std::string& bus_id, nvml::Device* out,
                         cpn_msg* err) {
    auto it = g_handles.find(bus_id);
    if (it != g_handles.end()) {
        *out = it->second;
        return CPN_OK;
    }
    nvml::Device h = nullptr;
    const nvml::Return r = g_api.get_handle_by_pci_bus_id(bus_id.c_str(), &h);
    if (r == nvml::kSuccess) {
        g_handles.emplace(bus_id, h);
        *out = h;
        return CPN_OK;
    }
    const std::string text = nvml_error(r);
    if (r == nvml::kErrorNotFound || r == nvml::kErrorInvalidArgument) {
        return fail(err, CPN_E_NOT_FOUND, "no NVIDIA GPU at %s (nvmlDeviceGetHandleByPciBusId_v2: %s)",
                    pci.c_str(), text.c_str());
    }
    if (r == nvml::kErrorGpuIsLost) {
        return fail(err, CPN_E_DEVICE_LOST, "GPU at %s is lost (nvmlDeviceGetHandleByPciBusId_v2: %s)",
                    pci.c_str(), text.c_str());
    }
    return fail(err, CPN_E_UNAVAILABLE, "GPU at %s: nvmlDeviceGetHandleByPciBusId_v2: %s",
                pci.c_str(), text.c_str());
}

/* Reads each figure; one the GPU does not support (NOT_SUPPORTED, NO_PERMISSION) just stays
 * out of `valid`. A lost GPU ends the sample and forgets the handle. Called with g_mutex held. */
cpn_status read_figures(const std::string& pci, const std::string& bus_id, nvml::Device h,
                        cpn_device_telemetry* out, cpn_msg* err) {
    auto lost = [&](const char* call, nvml::Return r) {
        g_handles.erase(bus_id);
        return fail(err, CPN_E_DEVICE_LOST, "GPU at %s is lost (%s: %s)", pci.c_str(), call,
                    nvml_error(r).c_str());
    };
    nvml::Utilization u{};
    nvml::Return r = g_api.get_utilization_rates(h, &u);
    if (r == nvml::kErrorGpuIsLost) return lost("nvmlDeviceGetUtilizationRates", r);
    if (r == nvml::kSuccess) {
        out->utilization_pct = u.gpu > 100 ? 100.0 : static_cast<double>(u.gpu);
        out->valid |= CPN_TELEM_UTILIZATION;
    }
    nvml::Memory m{};
    r = g_api.get_memory_info(h, &m);
    if (r == nvml::kErrorGpuIsLost) return lost("nvmlDeviceGetMemoryInfo", r);
    if (r == nvml::kSuccess) {
        out->memory_used_bytes = m.used;
        out->memory_total_bytes = m.total;
        out->valid |= CPN_TELEM_MEMORY;
    }
    unsigned int celsius = 0;
    r = g_api.get_temperature(h, nvml::kTemperatureGpu, &celsius);
    if (r == nvml::kErrorGpuIsLost) return lost("nvmlDeviceGetTemperature", r);
    if (r == nvml::kSuccess) {
        out->temperature_c = static_cast<double>(celsius);
        out->valid |= CPN_TELEM_TEMPERATURE;
    }
    unsigned int milliwatts = 0;
    r = g_api.get_power_usage(h, &milliwatts);
    if (r == nvml::kErrorGpuIsLost) return lost("nvmlDeviceGetPowerUsage", r);
    if (r == nvml::kSuccess) {
        out->power_w = static_cast<double>(milliwatts) / 1000.0;
        out->valid |= CPN_TELEM_POWER;
    }
    return CPN_OK;
}

cpn_status sample(const char* pci_address, cpn_device_telemetry* out, cpn_msg* err) {
    if (cpn_status st = plugin::begin_telemetry(pci_address, out, err); st != CPN_OK) return st;

    const std::string pci = plugin::normalise_pci(pci_address);
    const std::string bus_id = nvml_bus_id(pci);
    if (bus_id.empty()) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "device_telemetry: '%s' is not a PCI address (dddd:bb:dd.f)", pci_address);
    }
    std::lock_guard<std::mutex> lock(g_mutex);
    if (cpn_status st = ensure_ready(err); st != CPN_OK) return st;
    nvml::Device h = nullptr;
    if (cpn_status st = device_handle(pci, bus_id, &h, err); st != CPN_OK) return st;
    return read_figures(pci, bus_id, h, out, err);
}

bool sample_clock(const char* pci_address, unsigned* sm_mhz, bool* have_mhz,
                  unsigned long long* reasons, bool* have_reasons) {
    *have_mhz = false;
    *have_reasons = false;
    if (pci_address == nullptr) return false;
    const std::string pci = plugin::normalise_pci(pci_address);
    const std::string bus_id = nvml_bus_id(pci);
    if (bus_id.empty()) return false;
    std::lock_guard<std::mutex> lock(g_mutex);
    cpn_msg err{};
    if (ensure_ready(&err) != CPN_OK) return false;
    nvml::Device h = nullptr;
    if (device_handle(pci, bus_id, &h, &err) != CPN_OK) return false;
    if (g_api.get_clock_info != nullptr) {
        unsigned mhz = 0;
        if (g_api.get_clock_info(h, nvml::kClockSm, &mhz) == nvml::kSuccess) {
            *sm_mhz = mhz;
            *have_mhz = true;
        }
    }
    if (g_api.get_clocks_reasons != nullptr) {
        unsigned long long r = 0;
        if (g_api.get_clocks_reasons(h, &r) == nvml::kSuccess) {
            *reasons = r;
            *have_reasons = true;
        }
    }
    return true;
}

}  // namespace

bool clock_sample(const char* pci_address, unsigned* sm_mhz, bool* have_mhz,
                  unsigned long long* reasons, bool* have_reasons) {
    try {
        return sample_clock(pci_address, sm_mhz, have_mhz, reasons, have_reasons);
    } catch (...) {
        *have_mhz = false;
        *have_reasons = false;
        return false;
    }
}

cpn_status device_telemetry(const char* pci_address, cpn_device_telemetry* out, cpn_msg* err) {
    try {
        return sample(pci_address, out, err);
    } catch (const std::bad_alloc&) {
        return fail(err, CPN_E_OUT_OF_MEMORY, "cuda device_telemetry: out of host memory");
    } catch (const std::exception& e) {
        return fail(err, CPN_E_INTERNAL, "cuda device_telemetry: %s", e.what());
    } catch (...) {
        return fail(err, CPN_E_INTERNAL, "cuda device_telemetry: unknown exception");
    }
}

void telemetry_shutdown() {
    try {
        std::lock_guard<std::mutex> lock(g_mutex);
        if (g_initialised && g_api.shutdown != nullptr) g_api.shutdown();
        g_initialised = false;
        g_handles.clear();
    } catch (...) {
        /* std::mutex::lock can throw system_error; nothing to undo then. */
    }
}

}  // namespace cpn::cuda
