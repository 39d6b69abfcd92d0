#include "core/paths.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace cpn {

std::string executable_path() {
    std::error_code ec;
    auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : p.string();
}

std::string self_exec_path() {
    const char* v = std::getenv("CPN_AGENT_SELF_EXEC");
    return v != nullptr && v[0] == '/' ? std::string(v) : executable_path();
}

std::string default_plugin_dir() {
    std::filesystem::path exe = executable_path();
    std::filesystem::path dir = exe.parent_path() / ".." / CPN_PLUGIN_REL_DIR;
    return dir.lexically_normal().string();
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::string s(max_bytes, '\0');
    in.read(s.data(), static_cast<std::streamsize>(max_bytes));
    s.resize(static_cast<size_t>(in.gcount()));
    return s;
}

}  // namespace cpn
