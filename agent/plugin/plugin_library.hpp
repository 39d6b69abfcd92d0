// plugin_library.hpp: loads one backend plugin in this process, checks its ABI, and keeps the
// library mapped for as long as any handle to it lives (never unloaded under live objects).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cpn_backend.h"
#include "inventory/device.hpp"

namespace cpn {

/* Why a plugin could not be used: the stage and the verbatim cause. */
struct PluginLoadError {
    std::string status;  // "skipped" (its runtime is missing), "failed", "refused" (ABI)
    std::string stage;   // "dlopen", "symbol", "abi", "init"
    std::string reason;
};

class PluginLibrary {
public:
    ~PluginLibrary();
    PluginLibrary(const PluginLibrary&) = delete;
    PluginLibrary& operator=(const PluginLibrary&) = delete;

    /* dlopen + ABI check + entry. On failure returns nullptr and fills `error`. */
    static std::shared_ptr<PluginLibrary> open(const std::string& path, PluginLoadError& error);

    const cpn_backend& backend() const { return *backend_; }
    const std::string& path() const { return path_; }
    uint32_t abi_version() const { return abi_version_; }

private:
    PluginLibrary() = default;
    void* handle_ = nullptr;
    const cpn_backend* backend_ = nullptr;
    std::string path_;
    uint32_t abi_version_ = 0;
};

/* "libcpn-backend-opencl.so" -> "opencl"; "" when the name does not follow the convention. */
std::string backend_name_from_file(const std::string& filename);

/* The plugin files in a directory (libcpn-backend-*.so), sorted by name. */
std::vector<std::string> list_plugin_files(const std::string& dir);

/* Converts what a plugin reported about one device into the uniform model, with the plugin's
 * backend as the device's single runtime path. */
Device device_from_desc(const cpn_device_desc& desc, const std::string& backend, uint32_t index,
                        const cpn_probe_info& probe);

}  // namespace cpn
