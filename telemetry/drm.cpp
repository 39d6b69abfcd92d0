// drm.cpp: amdgpu's gpu_busy_percent and mem_info_vram_* attributes.
#include "drm.hpp"

#include "file_values.hpp"

namespace cpn::telemetry {
namespace {

constexpr uint64_t kMaxPlausibleVram = uint64_t{1} << 50; /* 1 PiB */

std::optional<uint64_t> read_vram(const std::string& path) {
    std::optional<uint64_t> v = read_uint_file(path);
    if (v && *v > kMaxPlausibleVram) return std::nullopt;
    return v;
}

}  // namespace

DrmFiles drm_files(const std::string& device_dir) {
    return {device_dir + "/gpu_busy_percent", device_dir + "/mem_info_vram_used",
            device_dir + "/mem_info_vram_total"};
}

DrmReading read_drm(const DrmFiles& files) {
    DrmReading r;
    if (std::optional<int64_t> busy = read_int_file(files.busy_percent)) {
        if (*busy >= 0 && *busy <= 100) r.busy_pct = static_cast<double>(*busy);
    }
    r.vram_used_bytes = read_vram(files.vram_used);
    r.vram_total_bytes = read_vram(files.vram_total);
    return r;
}

}  // namespace cpn::telemetry
