#include "plugin/plugin_library.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>

#include "cpn_backend_util.hpp"

namespace cpn {

PluginLibrary::~PluginLibrary() {
    if (backend_ != nullptr && backend_->shutdown != nullptr) backend_->shutdown();
    // The library itself stays mapped: vendor runtimes register atexit handlers and threads
    // that must not outlive their code (ggml and OpenVINO both learned this the hard way).
}

std::string backend_name_from_file(const std::string& filename) {
    static const std::string prefix = "libcpn-backend-", suffix = ".so";
    if (filename.size() <= prefix.size() + suffix.size()) return {};
    if (filename.compare(0, prefix.size(), prefix) != 0) return {};
    if (filename.compare(filename.size() - suffix.size(), suffix.size(), suffix) != 0) return {};
    return filename.substr(prefix.size(), filename.size() - prefix.size() - suffix.size());
}

std::vector<std::string> list_plugin_files(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        if (!backend_name_from_file(e.path().filename().string()).empty()) out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

namespace {

const cpn_host* host_services() {
    static const cpn_host host = {
        CPN_BACKEND_ABI_VERSION, sizeof(cpn_host),
        [](int level, const char* backend, const char* message) {
            // In the probe child stderr is captured by the agent; keep it one line per message.
            static const char* names[] = {"trace", "debug", "info", "warn", "error"};
            std::fprintf(stderr, "[%s] %s: %s\n", names[std::clamp(level, 0, 4)],
                         backend ? backend : "?", message ? message : "");
        }};
    return &host;
}

/* A dlopen error caused by a missing dependency (the vendor runtime) rather than by the plugin
 * file itself: "libOpenCL.so.1: cannot open shared object file: No such file or directory". */
bool missing_dependency(const std::string& err, const std::string& path) {
    const std::string marker = ": cannot open shared object file";
    auto pos = err.find(marker);
    if (pos == std::string::npos) return false;
    std::string lib = err.substr(0, pos);
    return lib != path && lib.find('/') == std::string::npos;
}

}  // namespace

std::shared_ptr<PluginLibrary> PluginLibrary::open(const std::string& path, PluginLoadError& error) {
    ::dlerror();
    void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
        const char* e = ::dlerror();
        std::string msg = e ? e : "unknown dlopen error";
        if (missing_dependency(msg, path))
            error = {"skipped", "dlopen", "runtime library missing: " + msg};
        else
            error = {"failed", "dlopen", msg};
        return nullptr;
    }
    auto lib = std::shared_ptr<PluginLibrary>(new PluginLibrary());
    lib->handle_ = h;
    lib->path_ = path;

    auto abi_fn = reinterpret_cast<cpn_backend_abi_version_fn>(::dlsym(h, CPN_BACKEND_ABI_VERSION_SYMBOL));
    auto entry_fn = reinterpret_cast<cpn_backend_entry_fn>(::dlsym(h, CPN_BACKEND_ENTRY_SYMBOL));
    if (abi_fn == nullptr || entry_fn == nullptr) {
        error = {"failed", "symbol",
                 std::string("not a cpn-agent backend: missing symbol ") +
                     (abi_fn == nullptr ? CPN_BACKEND_ABI_VERSION_SYMBOL : CPN_BACKEND_ENTRY_SYMBOL)};
        return nullptr;
    }
    lib->abi_version_ = abi_fn();
    if (lib->abi_version_ != CPN_BACKEND_ABI_VERSION) {
        error = {"refused", "abi",
                 "plugin ABI version " + std::to_string(lib->abi_version_) +
                     " does not match the agent's ABI version " +
                     std::to_string(CPN_BACKEND_ABI_VERSION) + "; rebuild the plugin"};
        return nullptr;
    }
    const cpn_backend* b = entry_fn(host_services());
    if (b == nullptr) {
        error = {"failed", "init", "cpn_backend_entry returned no function table"};
        return nullptr;
    }
    if (b->abi_version != CPN_BACKEND_ABI_VERSION || b->struct_size < sizeof(cpn_backend)) {
        error = {"refused", "abi",
                 "plugin function table has ABI version " + std::to_string(b->abi_version) +
                     " and size " + std::to_string(b->struct_size) + "; the agent expects version " +
                     std::to_string(CPN_BACKEND_ABI_VERSION) + " and size " +
                     std::to_string(sizeof(cpn_backend))};
        return nullptr;
    }
    if (b->name == nullptr || b->probe == nullptr || b->device_count == nullptr ||
        b->device_info == nullptr) {
        error = {"failed", "init", "plugin function table lacks name, probe, device_count or device_info"};
        return nullptr;
    }
    lib->backend_ = b;
    return lib;
}

Device device_from_desc(const cpn_device_desc& desc, const std::string& backend, uint32_t index,
                        const cpn_probe_info& probe) {
    auto str = [](const char* s, size_t n) { return plugin::trim(std::string(s, strnlen(s, n))); };
    Device d;
    switch (desc.device_class) {
        case CPN_CLASS_CPU: d.device_class = DeviceClass::cpu; break;
        case CPN_CLASS_GPU: d.device_class = DeviceClass::gpu; break;
        case CPN_CLASS_FPGA: d.device_class = DeviceClass::fpga; break;
        case CPN_CLASS_NPU: d.device_class = DeviceClass::npu; break;
        default: d.device_class = DeviceClass::other; break;
    }
    d.vendor = str(desc.vendor, sizeof desc.vendor);
    d.model = str(desc.model, sizeof desc.model);
    d.pci_address = plugin::normalise_pci(str(desc.pci_address, sizeof desc.pci_address));
    d.uuid = lower(str(desc.uuid, sizeof desc.uuid));
    d.memory_bytes = desc.memory_bytes;
    d.compute_units = desc.compute_units;
    d.max_clock_mhz = desc.max_clock_mhz;
    d.numa_node = desc.numa_node;
    static const std::pair<uint32_t, Precision> kPrec[] = {
        {CPN_PREC_FP64, Precision::fp64}, {CPN_PREC_FP32, Precision::fp32},
        {CPN_PREC_FP16, Precision::fp16}, {CPN_PREC_BF16, Precision::bf16},
        {CPN_PREC_INT8, Precision::int8}};
    for (const auto& [bit, p] : kPrec)
        if (desc.precisions & bit) d.precisions.push_back(p);
    d.health.healthy = desc.healthy != 0;
    d.health.reason = str(desc.health_reason, sizeof desc.health_reason);

    RuntimePath rp;
    rp.backend = backend;
    rp.index = index;
    rp.native_name = str(desc.native_name, sizeof desc.native_name);
    rp.runtime_name = str(probe.runtime_name, sizeof probe.runtime_name);
    rp.runtime_version = str(probe.runtime_version, sizeof probe.runtime_version);
    std::string drv = str(desc.driver_version, sizeof desc.driver_version);
    rp.driver_version = drv.empty() ? str(probe.driver_version, sizeof probe.driver_version) : drv;
    uint32_t n = std::min<uint32_t>(desc.attr_count, CPN_MAX_ATTRS);
    for (uint32_t i = 0; i < n; ++i) {
        const cpn_attr& a = desc.attrs[i];
        std::string key = str(a.key, sizeof a.key);
        if (key.empty()) continue;
        Attribute v;
        switch (a.type) {
            case CPN_ATTR_INT: v.value = static_cast<int64_t>(a.i); break;
            case CPN_ATTR_FLOAT: v.value = a.f; break;
            case CPN_ATTR_BOOL: v.value = a.i != 0; break;
            default: v.value = str(a.s, sizeof a.s); break;
        }
        v.unit = str(a.unit, sizeof a.unit);
        rp.attributes[key] = v;
    }
    d.runtimes.push_back(std::move(rp));
    d.id = make_device_id(d);
    return d;
}

}  // namespace cpn
