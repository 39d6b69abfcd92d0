// drm.hpp: GPU busy and VRAM figures that the amdgpu DRM driver exposes on its PCI device.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace cpn::telemetry {

/* The amdgpu attribute files of one PCI device (<sysfs>/bus/pci/devices/<addr>/...). */
struct DrmFiles {
    std::string busy_percent;  /* gpu_busy_percent */
    std::string vram_used;     /* mem_info_vram_used, bytes */
    std::string vram_total;    /* mem_info_vram_total, bytes */
};

/* The attribute paths under one PCI device's sysfs directory; whether they exist is found out
 * by reading them (non-amdgpu devices simply have none). */
DrmFiles drm_files(const std::string& device_dir);

struct DrmReading {
    std::optional<double> busy_pct;
    std::optional<uint64_t> vram_used_bytes;
    std::optional<uint64_t> vram_total_bytes;
};

/* Reads the three files; a missing file (not an amdgpu device) or one whose content is not a
 * plausible number leaves its member empty. A busy percentage outside 0..100 is a bad read,
 * not a saturated GPU, so it is dropped; VRAM above 1 PiB likewise. */
DrmReading read_drm(const DrmFiles& files);

}  // namespace cpn::telemetry
