// ze_driver.cpp: zeInit(0), driver and device enumeration, and ze_result_t names.
#include "ze_driver.hpp"

#include "ze_log.hpp"

#include <cstdio>
#include <cstring>
#include <mutex>

namespace cpn::levelzero {
namespace {

/* Intel's compute runtime packs driverVersion as major<<24 | minor<<16 | build
 * ("1.3.27642"); other drivers only promise a monotonically increasing number, so it is shown
 * the same way, which still orders correctly. */
std::string format_driver_version(uint32_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%u.%u.%u", v >> 24, (v >> 16) & 0xffu, v & 0xffffu);
    return buf;
}

/* Whether driver `drv` lists extension `name`; false when it cannot be asked. */
bool has_extension(ze_driver_handle_t drv, const char* name) {
    uint32_t n = 0;
    if (zeDriverGetExtensionProperties(drv, &n, nullptr) != ZE_RESULT_SUCCESS || n == 0) {
        return false;
    }
    std::vector<ze_driver_extension_properties_t> ext(n);
    if (zeDriverGetExtensionProperties(drv, &n, ext.data()) != ZE_RESULT_SUCCESS) return false;
    for (uint32_t i = 0; i < n && i < ext.size(); ++i) {
        if (std::strncmp(ext[i].name, name, sizeof ext[i].name) == 0) return true;
    }
    return false;
}

/* zeInit(0) (GPU and VPU/NPU drivers alike), then every driver's root devices in order.
 * No driver at all (the loader alone: ZE_RESULT_ERROR_UNINITIALIZED) or no device is a quiet
 * "nothing here"; any other failure is reported with its ze_result_t name. */
ZeState initialise() {
    ZeState st;
    ze_result_t r = zeInit(0);
    if (r == ZE_RESULT_ERROR_UNINITIALIZED) {
        st.reason = "no Level Zero driver installed (zeInit: " + result_name(r) + ")";
        return st;
    }
    if (r != ZE_RESULT_SUCCESS) {
        st.broken = true;
        st.reason = "zeInit failed: " + result_name(r);
        return st;
    }
    uint32_t ndrv = 0;
    r = zeDriverGet(&ndrv, nullptr);
    if (r != ZE_RESULT_SUCCESS) {
        st.broken = r != ZE_RESULT_ERROR_UNINITIALIZED;
        st.reason = "zeDriverGet failed: " + result_name(r);
        return st;
    }
    if (ndrv == 0) {
        st.reason = "no Level Zero driver installed (zeDriverGet found 0 drivers)";
        return st;
    }
    std::vector<ze_driver_handle_t> drivers(ndrv);
    r = zeDriverGet(&ndrv, drivers.data());
    if (r != ZE_RESULT_SUCCESS) {
        st.broken = true;
        st.reason = "zeDriverGet failed: " + result_name(r);
        return st;
    }
    drivers.resize(ndrv);
    for (size_t di = 0; di < drivers.size(); ++di) {
        ze_driver_handle_t drv = drivers[di];
        ze_driver_properties_t props{};
        props.stype = ZE_STRUCTURE_TYPE_DRIVER_PROPERTIES;
        std::string version;
        if (zeDriverGetProperties(drv, &props) == ZE_RESULT_SUCCESS) {
            version = format_driver_version(props.driverVersion);
        }
        if (di == 0) {
            ze_api_version_t api{};
            if (zeDriverGetApiVersion(drv, &api) == ZE_RESULT_SUCCESS) {
                st.api_version = std::to_string(ZE_MAJOR_VERSION(api)) + "." +
                                 std::to_string(ZE_MINOR_VERSION(api));
            }
            st.driver_version = version;
        }
        const bool pci_ext = has_extension(drv, ZE_PCI_PROPERTIES_EXT_NAME);
        uint32_t ndev = 0;
        r = zeDeviceGet(drv, &ndev, nullptr);
        if (r != ZE_RESULT_SUCCESS) {
            log(3, "zeDeviceGet(driver " + std::to_string(di) + ") failed: " + result_name(r));
            continue;
        }
        std::vector<ze_device_handle_t> devs(ndev);
        if (ndev > 0 && (r = zeDeviceGet(drv, &ndev, devs.data())) != ZE_RESULT_SUCCESS) {
            log(3, "zeDeviceGet(driver " + std::to_string(di) + ") failed: " + result_name(r));
            continue;
        }
        devs.resize(ndev);
        for (ze_device_handle_t d : devs) st.devices.push_back({drv, d, version, pci_ext});
    }
    if (st.devices.empty()) {
        st.reason = "no Level Zero device (" + std::to_string(drivers.size()) +
                    " driver(s) found, none with a device)";
        return st;
    }
    st.usable = true;
    return st;
}

}  // namespace

const ZeState& ze_state() {
    static std::once_flag once;
    static ZeState state;
    std::call_once(once, [] {
        state = initialise();
        log(1, state.usable ? "Level Zero API " + state.api_version + ", " +
                                  std::to_string(state.devices.size()) + " device(s)"
                            : "Level Zero not usable: " + state.reason);
    });
    return state;
}

std::string result_name(ze_result_t r) {
    switch (r) {
        case ZE_RESULT_SUCCESS: return "ZE_RESULT_SUCCESS";
        case ZE_RESULT_NOT_READY: return "ZE_RESULT_NOT_READY";
        case ZE_RESULT_ERROR_DEVICE_LOST: return "ZE_RESULT_ERROR_DEVICE_LOST";
        case ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY: return "ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY";
        case ZE_RESULT_ERROR_OUT_OF_DEVICE_MEMORY: return "ZE_RESULT_ERROR_OUT_OF_DEVICE_MEMORY";
        case ZE_RESULT_ERROR_MODULE_BUILD_FAILURE: return "ZE_RESULT_ERROR_MODULE_BUILD_FAILURE";
        case ZE_RESULT_ERROR_MODULE_LINK_FAILURE: return "ZE_RESULT_ERROR_MODULE_LINK_FAILURE";
        case ZE_RESULT_ERROR_DEVICE_REQUIRES_RESET: return "ZE_RESULT_ERROR_DEVICE_REQUIRES_RESET";
        case ZE_RESULT_ERROR_DEVICE_IN_LOW_POWER_STATE:
            return "ZE_RESULT_ERROR_DEVICE_IN_LOW_POWER_STATE";
        case ZE_RESULT_EXP_ERROR_DEVICE_IS_NOT_VERTEX:
            return "ZE_RESULT_EXP_ERROR_DEVICE_IS_NOT_VERTEX";
        case ZE_RESULT_EXP_ERROR_VERTEX_IS_NOT_DEVICE:
            return "ZE_RESULT_EXP_ERROR_VERTEX_IS_NOT_DEVICE";
        case ZE_RESULT_EXP_ERROR_REMOTE_DEVICE: return "ZE_RESULT_EXP_ERROR_REMOTE_DEVICE";
        case ZE_RESULT_ERROR_INSUFFICIENT_PERMISSIONS:
            return "ZE_RESULT_ERROR_INSUFFICIENT_PERMISSIONS";
        case ZE_RESULT_ERROR_NOT_AVAILABLE: return "ZE_RESULT_ERROR_NOT_AVAILABLE";
        case ZE_RESULT_ERROR_DEPENDENCY_UNAVAILABLE:
            return "ZE_RESULT_ERROR_DEPENDENCY_UNAVAILABLE";
        case ZE_RESULT_WARNING_DROPPED_DATA: return "ZE_RESULT_WARNING_DROPPED_DATA";
        case ZE_RESULT_ERROR_UNINITIALIZED: return "ZE_RESULT_ERROR_UNINITIALIZED";
        case ZE_RESULT_ERROR_UNSUPPORTED_VERSION: return "ZE_RESULT_ERROR_UNSUPPORTED_VERSION";
        case ZE_RESULT_ERROR_UNSUPPORTED_FEATURE: return "ZE_RESULT_ERROR_UNSUPPORTED_FEATURE";
        case ZE_RESULT_ERROR_INVALID_ARGUMENT: return "ZE_RESULT_ERROR_INVALID_ARGUMENT";
        case ZE_RESULT_ERROR_INVALID_NULL_HANDLE: return "ZE_RESULT_ERROR_INVALID_NULL_HANDLE";
        case ZE_RESULT_ERROR_HANDLE_OBJECT_IN_USE: return "ZE_RESULT_ERROR_HANDLE_OBJECT_IN_USE";
        case ZE_RESULT_ERROR_INVALID_NULL_POINTER: return "ZE_RESULT_ERROR_INVALID_NULL_POINTER";
        case ZE_RESULT_ERROR_INVALID_SIZE: return "ZE_RESULT_ERROR_INVALID_SIZE";
        case ZE_RESULT_ERROR_UNSUPPORTED_SIZE: return "ZE_RESULT_ERROR_UNSUPPORTED_SIZE";
        case ZE_RESULT_ERROR_UNSUPPORTED_ALIGNMENT: return "ZE_RESULT_ERROR_UNSUPPORTED_ALIGNMENT";
        case ZE_RESULT_ERROR_INVALID_SYNCHRONIZATION_OBJECT:
            return "ZE_RESULT_ERROR_INVALID_SYNCHRONIZATION_OBJECT";
        case ZE_RESULT_ERROR_INVALID_ENUMERATION: return "ZE_RESULT_ERROR_INVALID_ENUMERATION";
        case ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION:
            return "ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION";
        case ZE_RESULT_ERROR_UNSUPPORTED_IMAGE_FORMAT:
            return "ZE_RESULT_ERROR_UNSUPPORTED_IMAGE_FORMAT";
        case ZE_RESULT_ERROR_INVALID_NATIVE_BINARY: return "ZE_RESULT_ERROR_INVALID_NATIVE_BINARY";
        case ZE_RESULT_ERROR_INVALID_GLOBAL_NAME: return "ZE_RESULT_ERROR_INVALID_GLOBAL_NAME";
        case ZE_RESULT_ERROR_INVALID_KERNEL_NAME: return "ZE_RESULT_ERROR_INVALID_KERNEL_NAME";
        case ZE_RESULT_ERROR_INVALID_FUNCTION_NAME: return "ZE_RESULT_ERROR_INVALID_FUNCTION_NAME";
        case ZE_RESULT_ERROR_INVALID_GROUP_SIZE_DIMENSION:
            return "ZE_RESULT_ERROR_INVALID_GROUP_SIZE_DIMENSION";
        case ZE_RESULT_ERROR_INVALID_GLOBAL_WIDTH_DIMENSION:
            return "ZE_RESULT_ERROR_INVALID_GLOBAL_WIDTH_DIMENSION";
        case ZE_RESULT_ERROR_INVALID_KERNEL_ARGUMENT_INDEX:
            return "ZE_RESULT_ERROR_INVALID_KERNEL_ARGUMENT_INDEX";
        case ZE_RESULT_ERROR_INVALID_KERNEL_ARGUMENT_SIZE:
            return "ZE_RESULT_ERROR_INVALID_KERNEL_ARGUMENT_SIZE";
        case ZE_RESULT_ERROR_INVALID_KERNEL_ATTRIBUTE_VALUE:
            return "ZE_RESULT_ERROR_INVALID_KERNEL_ATTRIBUTE_VALUE";
        case ZE_RESULT_ERROR_INVALID_MODULE_UNLINKED:
            return "ZE_RESULT_ERROR_INVALID_MODULE_UNLINKED";
        case ZE_RESULT_ERROR_INVALID_COMMAND_LIST_TYPE:
            return "ZE_RESULT_ERROR_INVALID_COMMAND_LIST_TYPE";
        case ZE_RESULT_ERROR_OVERLAPPING_REGIONS: return "ZE_RESULT_ERROR_OVERLAPPING_REGIONS";
        case ZE_RESULT_WARNING_ACTION_REQUIRED: return "ZE_RESULT_WARNING_ACTION_REQUIRED";
        case ZE_RESULT_ERROR_UNKNOWN: return "ZE_RESULT_ERROR_UNKNOWN";
        default: break;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "ZE_RESULT 0x%08x", static_cast<unsigned>(r));
    return buf;
}

}  // namespace cpn::levelzero
