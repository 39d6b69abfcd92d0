// capacity_cache.hpp: the stored benchmark result (state_dir/capacity.json) with a fingerprint
// of the hardware, drivers and suite version. The daemon re-benchmarks only when the fingerprint
// changes or when asked; the stored record is what the MQTT capacity message publishes.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "bench/suite.hpp"
#include "core/status.hpp"
#include "inventory/device.hpp"

namespace cpn::bench {

/* What the fingerprint covers: suite version, and per device its id, class, vendor, model,
 * memory, compute units and, per runtime path, backend, runtime and driver versions; for the
 * CPU its ISA list, cores and threads. Not clocks (they move under DVFS) and not health. */
nlohmann::json fingerprint_inputs(const Inventory& inv);

/* FNV-1a 64 of the canonical JSON of the inputs, as 16 lower-case hex digits. */
std::string fingerprint(const Inventory& inv);

struct CachedCapacity {
    std::string fingerprint;
    nlohmann::json fingerprint_inputs;
    BenchReport report;
};

/* Path of the cache in a state directory. */
std::string capacity_cache_path(const std::string& state_dir);

/* Writes atomically (temp file, fsync, rename, fsync of the directory). */
Status save_capacity(const std::string& path, const Inventory& inv, const BenchReport& report);

/* Reads the cache; not_found when absent, invalid_argument (with the path and what is wrong)
 * when unreadable or malformed. */
Result<CachedCapacity> load_capacity(const std::string& path);

/* "" when the cache is valid for this inventory; else why not ("driver of cuda on pci-...
 * changed from 550.54 to 560.28", "suite version 1 -> 2", "device pci-... is new"). */
std::string cache_invalid_reason(const CachedCapacity& cached, const Inventory& inv);

}  // namespace cpn::bench
