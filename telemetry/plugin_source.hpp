// plugin_source.hpp: telemetry that a backend plugin provides (NVML through the CUDA plugin),
// as a source the TelemetrySampler consults by PCI address.
#pragma once

#include "cpn_backend.h"

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace cpn::telemetry {

/* A plugin-provided source (e.g. NVML through the CUDA plugin), looked up by PCI address.
 * Returns true and fills `device_fields` with telemetry.schema.json device members
 * (utilization_pct, memory_used_bytes, memory_total_bytes, temperature_c, power_w) and,
 * optionally, a "sources" object naming where each came from; false when it knows nothing of
 * the device. Must not throw (the sampler catches anyway). */
using PluginSource =
    std::function<bool(const std::string& pci_address, nlohmann::json& device_fields)>;

/* Wraps a backend's cpn_device_telemetry_fn (from get_proc(CPN_DEVICE_TELEMETRY_PROC)) as a
 * PluginSource: only the figures whose CPN_TELEM_* bit is set become fields, each finite
 * (utilisation clamped into 0..100, a negative power dropped), and each is attributed to
 * `source_name` in "sources". Any status other than CPN_OK, or a NULL `fn`, is "nothing
 * known" (false); the plugin's message is not kept, since this runs every interval and the
 * daemon already reported the backend's state at discovery. The library that `fn` lives in
 * must stay loaded for as long as the returned source is used. */
PluginSource make_plugin_source(cpn_device_telemetry_fn fn, std::string source_name = "nvml");

}  // namespace cpn::telemetry
