// plugin_source.cpp: cpn_device_telemetry (C ABI) -> telemetry JSON fields.
#include "plugin_source.hpp"

#include <algorithm>
#include <cmath>

namespace cpn::telemetry {

PluginSource make_plugin_source(cpn_device_telemetry_fn fn, std::string source_name) {
    return [fn, name = std::move(source_name)](const std::string& pci_address,
                                               nlohmann::json& fields) -> bool {
        if (fn == nullptr) return false;
        cpn_device_telemetry t{};
        t.struct_size = sizeof t;
        cpn_msg err{};
        if (fn(pci_address.c_str(), &t, &err) != CPN_OK) return false;
        nlohmann::json sources = nlohmann::json::object();
        if ((t.valid & CPN_TELEM_UTILIZATION) && std::isfinite(t.utilization_pct)) {
            fields["utilization_pct"] = std::clamp(t.utilization_pct, 0.0, 100.0);
            sources["utilization_pct"] = name;
        }
        if (t.valid & CPN_TELEM_MEMORY) {
            fields["memory_used_bytes"] = t.memory_used_bytes;
            fields["memory_total_bytes"] = t.memory_total_bytes;
            sources["memory_used_bytes"] = name;
            sources["memory_total_bytes"] = name;
        }
        if ((t.valid & CPN_TELEM_TEMPERATURE) && std::isfinite(t.temperature_c)) {
            fields["temperature_c"] = t.temperature_c;
            sources["temperature_c"] = name;
        }
        if ((t.valid & CPN_TELEM_POWER) && std::isfinite(t.power_w) && t.power_w >= 0) {
            fields["power_w"] = t.power_w;
            sources["power_w"] = name;
        }
        if (sources.empty()) return false;
        fields["sources"] = std::move(sources);
        return true;
    };
}

}  // namespace cpn::telemetry
