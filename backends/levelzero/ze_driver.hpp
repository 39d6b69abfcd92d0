// ze_driver.hpp: zeInit and the flat list of Level Zero devices across all drivers.
#pragma once

#include <level_zero/ze_api.h>

#include <string>
#include <vector>

namespace cpn::levelzero {

/* One root device with the driver it belongs to; index in ZeState::devices is the plugin's
 * flat device index. */
struct ZeDevice {
    ze_driver_handle_t driver = nullptr;
    ze_device_handle_t device = nullptr;
    std::string driver_version; /* that driver's ze_driver_properties_t.driverVersion, formatted */
    bool pci_ext = false;       /* the driver advertises ZE_extension_pci_properties */
};

/* What zeInit and the enumeration found, computed once (zeInit is once per process). */
struct ZeState {
    bool usable = false;
    bool broken = false;           /* drivers are there but failed (not a quiet "nothing here") */
    std::string reason;            /* why not usable */
    std::string api_version;       /* "1.3", zeDriverGetApiVersion of the first driver */
    std::string driver_version;    /* first driver's version */
    std::vector<ZeDevice> devices; /* all drivers' root devices, in driver order */
};

/* Runs zeInit(0) and the enumeration on first use; returns the cached outcome after. The
 * reference stays valid for the life of the plugin. */
const ZeState& ze_state();

/* "ZE_RESULT_ERROR_UNINITIALIZED", or "ZE_RESULT 0x..." for a code this header does not know. */
std::string result_name(ze_result_t r);

}  // namespace cpn::levelzero
