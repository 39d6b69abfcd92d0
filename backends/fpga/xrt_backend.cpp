// xrt_backend.cpp: the Xilinx XRT (FPGA) backend, libcpn-backend-xrt.so.
//
// Discovery uses XRT's native C++ API (libxrt_coreutil, XRT 2.13 as Debian 12 ships it):
// xrt::system::enumerate_devices() and xrt::device::get_info<>. That API throws, so every entry
// point below catches std::exception and everything else and turns it into a cpn_status plus a
// message; nothing escapes into the host.
//
// The execution half is a stub on purpose: running anything on an FPGA needs a bitstream
// (xclbin) built for that card's shell, and this version registers no workload kernels. device
// open/close are real (xrt::device); query says "unsupported", prepare/run return
// CPN_E_UNSUPPORTED.
#include "cpn_backend.h"
#include "cpn_backend_util.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <string>

// Paths relative to XRT's include root: /usr/include/xrt on Debian (libxrt-dev), or
// /opt/xilinx/xrt/include with Xilinx's packages; both lay out xrt/, experimental/, version.h.
#include <experimental/xrt_system.h>
#include <nlohmann/json.hpp>
#include <xrt/xrt_device.h>
#if __has_include(<version.h>)
#include <version.h>  // xrt_build_version
#define CPN_XRT_HEADER_VERSION xrt_build_version
#else
#define CPN_XRT_HEADER_VERSION "unknown"
#endif

#ifndef CPN_VERSION
#define CPN_VERSION "0.0.0"
#endif

using cpn::plugin::copy_str;
using cpn::plugin::fail;

/* The opaque handles of the C ABI, defined here. */
struct cpn_device_handle {
    xrt::device device;
    uint32_t index = 0;
};
struct cpn_prepared {};  // never created: prepare() is unsupported in this version

namespace {

constexpr const char* kNoKernels =
    "xrt backend: no workload kernels (xclbin) are registered in this version";

void (*g_log)(int, const char*, const char*) = nullptr;

void log(int level, const std::string& msg) {
    if (g_log != nullptr) g_log(level, "xrt", msg.c_str());
}

/* A small text file (sysfs attribute), trimmed; "" when absent. */
std::string read_text(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "";
    char buf[256];
    ssize_t n;
    do {
        n = ::read(fd, buf, sizeof buf - 1);
    } while (n < 0 && errno == EINTR);
    ::close(fd);
    return n > 0 ? cpn::plugin::trim(std::string(buf, static_cast<size_t>(n))) : "";
}

bool path_exists(const char* path) { return ::access(path, F_OK) == 0; }

/* Where the libxrt_coreutil this plugin runs against was loaded from ("" if unknown). */
std::string coreutil_path() {
    Dl_info info{};
    auto fn = &xrt::system::enumerate_devices;
    if (dladdr(reinterpret_cast<void*>(fn), &info) == 0 || info.dli_fname == nullptr) return "";
    return info.dli_fname;
}

/* The runtime version from the real file name of libxrt_coreutil ("...so.2.13.0" -> "2.13.0"),
 * falling back to the version of the headers this plugin was built with. */
std::string runtime_version(const std::string& coreutil) {
    if (!coreutil.empty()) {
        char real[PATH_MAX];
        if (::realpath(coreutil.c_str(), real) != nullptr) {
            std::string r(real);
            size_t p = r.rfind(".so.");
            if (p != std::string::npos && r.find('.', p + 4) != std::string::npos)
                return r.substr(p + 4);
        }
    }
    return std::string(CPN_XRT_HEADER_VERSION) + " (headers)";
}

/* XRT 2.13's libxrt_coreutil loads its hardware shim from $XILINX_XRT/lib/libxrt_core.so.2 and
 * throws "XILINX_XRT not set" when the variable is unset. Xilinx's own packages install under
 * /opt/xilinx/xrt and a setup.sh sets it; Debian's libxrt1 puts libxrt_core.so.2 in the multiarch
 * directory, where no XILINX_XRT value can point (it appends "lib/"). So, when neither
 * XILINX_XRT nor XCL_EMULATION_MODE is set, load the shim that sits beside the libxrt_coreutil in
 * use, RTLD_GLOBAL as XRT's loader does; coreutil then finds it already registered. It is never
 * unloaded (XRT does not support that). Returns "" or a note for the probe reason. */
std::string preload_shim(const std::string& coreutil) {
    if (std::getenv("XILINX_XRT") != nullptr || std::getenv("XCL_EMULATION_MODE") != nullptr)
        return "";
    std::string candidates[2];
    if (size_t slash = coreutil.rfind('/'); slash != std::string::npos) {
        std::string base = coreutil.substr(slash + 1);  // libxrt_coreutil.so.2
        const std::string util = "libxrt_coreutil";
        if (base.compare(0, util.size(), util) == 0)
            candidates[0] = coreutil.substr(0, slash + 1) + "libxrt_core" + base.substr(util.size());
    }
    candidates[1] = "libxrt_core.so.2";
    std::string errors;
    for (const auto& c : candidates) {
        if (c.empty()) continue;
        if (dlopen(c.c_str(), RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE) != nullptr) {
            log(1, "XILINX_XRT not set: loaded the XRT shim " + c + " beside " + coreutil);
            return "";
        }
        const char* e = dlerror();
        errors += std::string(errors.empty() ? "" : "; ") + (e ? e : c + ": dlopen failed");
    }
    return " (XILINX_XRT is not set and the XRT shim could not be loaded: " + errors + ")";
}

struct State {
    std::mutex mu;
    bool probed = false;
    bool usable = false;
    bool runtime_error = false;  // XRT itself failed (as opposed to "no device")
    std::string reason;
    std::string runtime_version, driver_version;
    uint32_t count = 0;
};

State& state() {
    static State s;
    return s;
}

/* Runs the probe once (until shutdown). Caller holds the lock. May throw (bad_alloc only). */
void probe_locked(State& s) {
    if (s.probed) return;
    s.probed = true;
    const std::string coreutil = coreutil_path();
    s.runtime_version = runtime_version(coreutil);
    s.driver_version = read_text("/sys/module/xocl/version");
    if (s.driver_version.empty()) s.driver_version = read_text("/sys/module/xclmgmt/version");
    const std::string note = preload_shim(coreutil);
    try {
        s.count = xrt::system::enumerate_devices();
        s.runtime_error = false;
        s.usable = s.count > 0;
        if (s.count == 0) {
            s.reason = path_exists("/sys/bus/pci/drivers/xocl")
                           ? "no XRT device found (the xocl driver is loaded but bound to no device)"
                           : "no XRT device found (xocl/xclmgmt driver not loaded?)";
        } else {
            s.reason.clear();
        }
    } catch (const std::exception& e) {
        s.count = 0;
        s.usable = false;
        s.runtime_error = true;
        s.reason = std::string("xrt::system::enumerate_devices(): ") + e.what() + note;
    } catch (...) {
        s.count = 0;
        s.usable = false;
        s.runtime_error = true;
        s.reason = "xrt::system::enumerate_devices(): unknown exception" + note;
    }
    log(1, "probe: " + std::to_string(s.count) + " device(s), runtime " + s.runtime_version +
               (s.reason.empty() ? "" : ", " + s.reason));
}

/* get_info<P> with every failure (unsupported key, XRT error, any_cast) turned into false. */
template <xrt::info::device P>
bool info(const xrt::device& d, typename xrt::info::param_traits<xrt::info::device, P>::return_type& out,
          const char* key, std::string& skipped) {
    try {
        out = d.template get_info<P>();
        return true;
    } catch (const std::exception& e) {
        skipped += std::string(skipped.empty() ? "" : "; ") + key + ": " + e.what();
    } catch (...) {
        skipped += std::string(skipped.empty() ? "" : "; ") + key + ": unknown exception";
    }
    return false;
}

using nlohmann::json;

/* j[k0][k1]..., nullptr when any step is missing. */
const json* at(const json& j, std::initializer_list<const char*> path) {
    const json* cur = &j;
    for (const char* k : path) {
        if (!cur->is_object()) return nullptr;
        auto it = cur->find(k);
        if (it == cur->end()) return nullptr;
        cur = &*it;
    }
    return cur;
}

/* XRT writes its info JSON through boost::property_tree, where every value is a string:
 * "0x400000000", "68719476736", "true". */
bool json_u64(const json* v, uint64_t& out) {
    if (v == nullptr) return false;
    if (v->is_number_unsigned()) {
        out = v->get<uint64_t>();
        return true;
    }
    if (!v->is_string()) return false;
    const std::string& s = v->get_ref<const std::string&>();
    if (s.empty()) return false;
    errno = 0;
    char* end = nullptr;
    unsigned long long x = std::strtoull(s.c_str(), &end, 0);  // base 0: "0x.." or decimal
    if (errno != 0 || end == s.c_str() || *end != '\0') return false;
    out = x;
    return true;
}

bool json_true(const json* v) {
    if (v == nullptr) return false;
    if (v->is_boolean()) return v->get<bool>();
    return v->is_string() && v->get_ref<const std::string&>() == "true";
}

std::string json_str(const json* v) { return v != nullptr && v->is_string() ? v->get<std::string>() : ""; }

void fill_device(uint32_t index, const State& s, cpn_device_desc* out) {
    using namespace cpn::plugin;
    namespace xi = xrt::info;
    xrt::device dev(index);  // throws when it cannot be opened; the caller reports it
    std::string skipped;

    out->device_class = CPN_CLASS_FPGA;
    copy_str(out->vendor, "Xilinx");
    copy_str(out->driver_version, s.driver_version);

    std::string name;
    if (info<xi::device::name>(dev, name, "name", skipped)) {
        copy_str(out->native_name, name);  // the VBNV, e.g. xilinx_u250_gen3x16_xdma_shell_4_1
        copy_str(out->model, name);
    } else {
        copy_str(out->model, "Xilinx FPGA");
    }

    std::string bdf;
    if (info<xi::device::bdf>(dev, bdf, "bdf", skipped)) {
        std::string addr = normalise_pci(bdf);
        copy_str(out->pci_address, addr);
        if (!addr.empty()) {
            std::string numa = read_text("/sys/bus/pci/devices/" + addr + "/numa_node");
            out->numa_node = numa.empty() ? -1 : std::atoi(numa.c_str());
        }
    }

    unsigned long mhz = 0;
    if (info<xi::device::max_clock_frequency_mhz>(dev, mhz, "max_clock_frequency_mhz", skipped))
        out->max_clock_mhz = mhz > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(mhz);

    // No precisions claimed: what an FPGA computes, and in which number formats, is decided by
    // the bitstream loaded into it, not by the card. Reporting fp32/int8 here would promise
    // something no xclbin may provide.
    out->precisions = 0;

    // Platform (shell) name and the card's DDR size from the platform JSON.
    uint64_t board_ddr = 0;
    std::string platform_json;
    if (info<xi::device::platform>(dev, platform_json, "platform", skipped)) {
        json pj = json::parse(platform_json, nullptr, false);
        const json* plats = pj.is_discarded() ? nullptr : at(pj, {"platforms"});
        if (plats != nullptr && plats->is_array() && !plats->empty()) {
            const json& p0 = plats->front();
            std::string vbnv = json_str(at(p0, {"static_region", "vbnv"}));
            if (!vbnv.empty()) attr_str(out, "xrt.platform", vbnv);
            json_u64(at(p0, {"off_chip_board_info", "ddr_size_bytes"}), board_ddr);
        }
    }

    // Memory banks of the loaded xclbin's memory topology. memory_bytes sums the enabled device
    // memories (DDR, HBM, on-card DRAM), not PLRAM/BRAM/URAM, not streams, not the host-memory
    // bank ("HOST[0]", a window onto host RAM). Without an xclbin there is no topology: fall
    // back to the board's DDR size from the platform ROM.
    uint64_t bank_bytes = 0;
    std::string memory_json;
    if (info<xi::device::memory>(dev, memory_json, "memory", skipped)) {
        json mj = json::parse(memory_json, nullptr, false);
        const json* mems = mj.is_discarded() ? nullptr : at(mj, {"board", "memory", "memories"});
        if (mems != nullptr && mems->is_array()) {
            attr_int(out, "xrt.memory_banks", static_cast<int64_t>(mems->size()));
            for (const json& m : *mems) {
                std::string type = json_str(at(m, {"type"}));
                std::string tag = json_str(at(m, {"tag"}));
                uint64_t range = 0;
                if (!json_true(at(m, {"enabled"})) || tag.rfind("HOST", 0) == 0) continue;
                if (type != "MEM_DDR3" && type != "MEM_DDR4" && type != "MEM_DRAM" && type != "MEM_HBM")
                    continue;
                if (json_u64(at(m, {"range_bytes"}), range)) bank_bytes += range;
            }
        }
    }
    out->memory_bytes = bank_bytes != 0 ? bank_bytes : board_ddr;

    try {
        xrt::uuid x = dev.get_xclbin_uuid();
        if (x) attr_str(out, "xrt.xclbin_uuid", x.to_string());
    } catch (const std::exception& e) {
        skipped += std::string(skipped.empty() ? "" : "; ") + "xclbin_uuid: " + e.what();
    }
    xrt::uuid iface;
    if (info<xi::device::interface_uuid>(dev, iface, "interface_uuid", skipped) && iface)
        attr_str(out, "xrt.interface_uuid", iface.to_string());

    uint32_t kdma = 0;
    if (info<xi::device::kdma>(dev, kdma, "kdma", skipped)) attr_int(out, "xrt.kdma", kdma);
    bool flag = false;
    if (info<xi::device::m2m>(dev, flag, "m2m", skipped)) attr_bool(out, "xrt.m2m", flag);
    if (info<xi::device::nodma>(dev, flag, "nodma", skipped)) attr_bool(out, "xrt.nodma", flag);
    out->healthy = 1;
    if (info<xi::device::offline>(dev, flag, "offline", skipped)) {
        attr_bool(out, "xrt.offline", flag);
        if (flag) {
            out->healthy = 0;
            copy_str(out->health_reason, "XRT reports the device offline (being reset)");
        }
    }
    if (!skipped.empty())
        log(1, "device " + std::to_string(index) + ": info not available: " + skipped);
}

// ---- the function table -----------------------------------------------------------------------

cpn_status xrt_probe(cpn_probe_info* out, cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "xrt probe: out is NULL");
    if (out->struct_size < sizeof(cpn_probe_info))
        return fail(err, CPN_E_INVALID_ARGUMENT, "xrt probe: cpn_probe_info.struct_size %u < %zu",
                    out->struct_size, sizeof(cpn_probe_info));
    try {
        State& s = state();
        std::lock_guard<std::mutex> lock(s.mu);
        probe_locked(s);
        const uint32_t size = out->struct_size;
        std::memset(out, 0, sizeof *out);
        out->struct_size = size;
        out->usable = s.usable ? 1 : 0;
        copy_str(out->reason, s.reason);
        copy_str(out->runtime_name, "Xilinx XRT");
        copy_str(out->runtime_version, s.runtime_version);
        copy_str(out->driver_version, s.driver_version);
        if (!s.usable && err != nullptr) copy_str(err->text, s.reason);
        return CPN_OK;
    } catch (const std::exception& e) {
        return fail(err, CPN_E_INTERNAL, "xrt probe: %s", e.what());
    } catch (...) {
        return fail(err, CPN_E_INTERNAL, "xrt probe: unknown exception");
    }
}

cpn_status xrt_device_count(uint32_t* count, cpn_msg* err) {
    if (count == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "xrt device_count: count is NULL");
    *count = 0;
    try {
        State& s = state();
        std::lock_guard<std::mutex> lock(s.mu);
        probe_locked(s);
        if (s.runtime_error) return fail(err, CPN_E_UNAVAILABLE, "%s", s.reason.c_str());
        *count = s.count;
        return CPN_OK;
    } catch (const std::exception& e) {
        return fail(err, CPN_E_INTERNAL, "xrt device_count: %s", e.what());
    } catch (...) {
        return fail(err, CPN_E_INTERNAL, "xrt device_count: unknown exception");
    }
}

cpn_status xrt_device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "xrt device_info: out is NULL");
    if (out->struct_size < sizeof(cpn_device_desc))
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "xrt device_info: cpn_device_desc.struct_size %u < %zu", out->struct_size,
                    sizeof(cpn_device_desc));
    try {
        State& s = state();
        std::lock_guard<std::mutex> lock(s.mu);
        probe_locked(s);
        if (s.runtime_error) return fail(err, CPN_E_UNAVAILABLE, "%s", s.reason.c_str());
        if (index >= s.count)
            return fail(err, CPN_E_NOT_FOUND, "xrt device_info: index %u out of range (%u device(s))",
                        index, s.count);
        const uint32_t size = out->struct_size;
        std::memset(out, 0, sizeof *out);
        out->struct_size = size;
        out->numa_node = -1;
        fill_device(index, s, out);
        return CPN_OK;
    } catch (const std::exception& e) {
        return fail(err, CPN_E_UNAVAILABLE, "xrt::device(%u): %s", index, e.what());
    } catch (...) {
        return fail(err, CPN_E_UNAVAILABLE, "xrt::device(%u): unknown exception", index);
    }
}

cpn_status xrt_device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "xrt device_open: out is NULL");
    *out = nullptr;
    try {
        State& s = state();
        {
            std::lock_guard<std::mutex> lock(s.mu);
            probe_locked(s);
            if (s.runtime_error) return fail(err, CPN_E_UNAVAILABLE, "%s", s.reason.c_str());
            if (index >= s.count)
                return fail(err, CPN_E_NOT_FOUND, "xrt device_open: index %u out of range (%u device(s))",
                            index, s.count);
        }
        auto h = std::make_unique<cpn_device_handle>();
        h->device = xrt::device(index);
        h->index = index;
        *out = h.release();
        return CPN_OK;
    } catch (const std::bad_alloc&) {
        return fail(err, CPN_E_OUT_OF_MEMORY, "xrt device_open: out of memory");
    } catch (const std::exception& e) {
        return fail(err, CPN_E_UNAVAILABLE, "xrt::device(%u): %s", index, e.what());
    } catch (...) {
        return fail(err, CPN_E_UNAVAILABLE, "xrt::device(%u): unknown exception", index);
    }
}

void xrt_device_close(cpn_device_handle* device) {
    try {
        delete device;  // ~xrt::device closes it when it holds the last reference
    } catch (...) {
    }
}

cpn_status xrt_query(cpn_device_handle* device, const cpn_workload* workload, cpn_query_result* out,
                     cpn_msg* err) {
    if (device == nullptr || workload == nullptr || out == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "xrt query: NULL argument");
    if (out->struct_size < sizeof(cpn_query_result))
        return fail(err, CPN_E_INVALID_ARGUMENT, "xrt query: cpn_query_result.struct_size %u < %zu",
                    out->struct_size, sizeof(cpn_query_result));
    const uint32_t size = out->struct_size;
    std::memset(out, 0, sizeof *out);
    out->struct_size = size;
    out->supported = 0;
    std::snprintf(out->reason, sizeof out->reason, "%s (workload '%s')", kNoKernels,
                  workload->kind != nullptr ? workload->kind : "");
    return CPN_OK;
}

cpn_status xrt_prepare(cpn_device_handle* device, const cpn_workload* workload, cpn_prepared** out,
                       cpn_msg* err) {
    if (out != nullptr) *out = nullptr;
    if (device == nullptr || workload == nullptr || out == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "xrt prepare: NULL argument");
    return fail(err, CPN_E_UNSUPPORTED, "%s", kNoKernels);
}

cpn_status xrt_run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
                   cpn_msg* err) {
    (void)prepared;
    (void)io;
    (void)control;
    return fail(err, CPN_E_UNSUPPORTED, "%s", kNoKernels);
}

void xrt_release(cpn_prepared* prepared) { delete prepared; }

void* xrt_get_proc(const char* name) {
    (void)name;
    return nullptr;
}

void xrt_shutdown() {
    try {
        State& s = state();
        std::lock_guard<std::mutex> lock(s.mu);
        s.probed = false;
        s.usable = false;
        s.runtime_error = false;
        s.count = 0;
        s.reason.clear();
    } catch (...) {
    }
    g_log = nullptr;
}

const cpn_backend kBackend = {
    CPN_BACKEND_ABI_VERSION,
    sizeof(cpn_backend),
    "xrt",
    CPN_VERSION,
    &xrt_probe,
    &xrt_device_count,
    &xrt_device_info,
    &xrt_device_open,
    &xrt_device_close,
    &xrt_query,
    &xrt_prepare,
    &xrt_run,
    &xrt_release,
    &xrt_get_proc,
    &xrt_shutdown,
};

}  // namespace

extern "C" CPN_BACKEND_EXPORT uint32_t cpn_backend_abi_version() { return CPN_BACKEND_ABI_VERSION; }

extern "C" CPN_BACKEND_EXPORT const cpn_backend* cpn_backend_entry(const cpn_host* host) {
    if (host != nullptr && host->struct_size >= offsetof(cpn_host, log) + sizeof host->log)
        g_log = host->log;
    return &kBackend;
}
