// runtime_pm.cpp: reading a device's runtime power-management status.
#include "runtime_pm.hpp"

#include "file_values.hpp"

namespace cpn::telemetry {

bool runtime_suspended(const std::string& runtime_status_path) {
    char buf[64];
    std::optional<std::string_view> text = read_small_file(runtime_status_path, buf, sizeof buf);
    return text && trim(*text) == "suspended";
}

}  // namespace cpn::telemetry
