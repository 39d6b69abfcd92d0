// test_support.hpp: small helpers shared by the unit tests.
#pragma once

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cpn_backend.h"

namespace cpn::test {

/* A fresh temporary directory, removed with everything in it at scope exit. */
class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "cpn-test-XXXXXX").string();
        char* p = ::mkdtemp(tmpl.data());
        path_ = p ? p : "";
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    void write(const std::string& name, const std::string& text) const {
        std::ofstream(file(name), std::ios::binary) << text;
    }

private:
    std::string path_;
};

/* Copies one built plugin (libcpn-backend-NAME.so) from `from_dir` into `to_dir`. */
inline bool copy_plugin(const std::string& from_dir, const std::string& name, const std::string& to_dir) {
    std::error_code ec;
    std::filesystem::copy_file(from_dir + "/libcpn-backend-" + name + ".so",
                               to_dir + "/libcpn-backend-" + name + ".so",
                               std::filesystem::copy_options::overwrite_existing, ec);
    return !ec;
}

/* A backend plugin loaded directly (no agent code): dlopen, the ABI check, the entry table.
 * Loaded once per path and never unloaded (vendor runtimes keep threads of their own). */
struct LoadedPlugin {
    void* handle = nullptr;
    const cpn_backend* table = nullptr;
    std::string error;  // why it could not be used; "" when table is set
};

inline void quiet_plugin_log(int, const char*, const char*) {}

inline LoadedPlugin load_plugin(const std::string& path) {
    LoadedPlugin out;
    out.handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (out.handle == nullptr) {
        const char* e = ::dlerror();
        out.error = std::string("dlopen failed: ") + (e != nullptr ? e : "unknown error");
        return out;
    }
    auto abi = reinterpret_cast<cpn_backend_abi_version_fn>(::dlsym(out.handle, CPN_BACKEND_ABI_VERSION_SYMBOL));
    auto entry = reinterpret_cast<cpn_backend_entry_fn>(::dlsym(out.handle, CPN_BACKEND_ENTRY_SYMBOL));
    if (abi == nullptr || entry == nullptr || abi() != CPN_BACKEND_ABI_VERSION) {
        out.error = "plugin lacks the entry symbols or has another ABI version";
        return out;
    }
    static const cpn_host host{CPN_BACKEND_ABI_VERSION, sizeof(cpn_host), quiet_plugin_log};
    out.table = entry(&host);
    if (out.table == nullptr) out.error = "cpn_backend_entry returned NULL";
    return out;
}

struct CommandResult {
    int exit_code = -1;
    std::string out;
};

/* Runs a shell command line (test-controlled text only), capturing stdout. */
inline CommandResult run_command(const std::string& cmd) {
    CommandResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int st = ::pclose(p);
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

}  // namespace cpn::test
