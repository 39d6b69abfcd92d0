// runtime_pm.hpp: whether a PCI device is runtime-suspended, so that sampling leaves it asleep.
#pragma once

#include <string>

namespace cpn::telemetry {

/* True when <device_dir>/power/runtime_status reads "suspended". Reading amdgpu's
 * gpu_busy_percent or mem_info_* resumes a suspended GPU (the driver takes a runtime-PM
 * reference), so a telemetry loop that read them would keep an idle laptop or edge box's dGPU
 * powered up; a suspended device is reported without figures instead. False when the file is
 * absent or says anything else. */
bool runtime_suspended(const std::string& runtime_status_path);

}  // namespace cpn::telemetry
