// ze_devices.cpp: device_count and device_info: one Level Zero root device -> one
// cpn_device_desc, with the "levelzero." attributes.
#include "ze_devices.hpp"

#include "cpn_backend_util.hpp"
#include "ze_driver.hpp"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace cpn::levelzero {
namespace {

using plugin::attr_bool;
using plugin::attr_int;
using plugin::attr_str;
using plugin::copy_str;
using plugin::fail;

cpn_device_class class_for(ze_device_type_t t) {
    switch (t) {
        case ZE_DEVICE_TYPE_GPU: return CPN_CLASS_GPU;
        case ZE_DEVICE_TYPE_VPU: return CPN_CLASS_NPU;
        case ZE_DEVICE_TYPE_FPGA: return CPN_CLASS_FPGA;
        default: return CPN_CLASS_OTHER;
    }
}

const char* type_name(ze_device_type_t t) {
    switch (t) {
        case ZE_DEVICE_TYPE_GPU: return "gpu";
        case ZE_DEVICE_TYPE_CPU: return "cpu";
        case ZE_DEVICE_TYPE_FPGA: return "fpga";
        case ZE_DEVICE_TYPE_MCA: return "mca";
        case ZE_DEVICE_TYPE_VPU: return "vpu";
        default: return "unknown";
    }
}

std::string hex(uint32_t v, int width) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%0*x", width, v);
    return buf;
}

/* The host NUMA node of a PCI device from sysfs, -1 when unknown. */
int sysfs_numa_node(const std::string& pci) {
    if (pci.empty()) return -1;
    std::ifstream in("/sys/bus/pci/devices/" + pci + "/numa_node");
    int node = -1;
    if (!(in >> node)) return -1;
    return node;
}

/* The device's PCI address through zeDevicePciGetPropertiesExt, "" when the driver lacks the
 * extension or refuses (integrated and VPU devices may have none to give). */
std::string pci_address(const ZeDevice& d) {
    if (!d.pci_ext) return "";
    ze_pci_ext_properties_t pci{};
    pci.stype = ZE_STRUCTURE_TYPE_PCI_EXT_PROPERTIES;
    if (zeDevicePciGetPropertiesExt(d.device, &pci) != ZE_RESULT_SUCCESS) return "";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%x:%x:%x.%x", pci.address.domain, pci.address.bus,
                  pci.address.device, pci.address.function);
    return plugin::normalise_pci(buf);
}

/* Sum of totalSize over the device's memory modules (HBM and/or device-local memory); 0 when
 * it has none of its own (an integrated GPU reports shared system memory here, if anything). */
uint64_t total_memory(ze_device_handle_t dev) {
    uint32_t n = 0;
    if (zeDeviceGetMemoryProperties(dev, &n, nullptr) != ZE_RESULT_SUCCESS || n == 0) return 0;
    std::vector<ze_device_memory_properties_t> mem(n);
    for (auto& m : mem) m.stype = ZE_STRUCTURE_TYPE_DEVICE_MEMORY_PROPERTIES;
    if (zeDeviceGetMemoryProperties(dev, &n, mem.data()) != ZE_RESULT_SUCCESS) return 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n && i < mem.size(); ++i) total += mem[i].totalSize;
    return total;
}

/* fp32 always; fp16/fp64 when the module properties report any capability for them; int8
 * when the device has DP4A. bf16 is not claimed: Level Zero core has no flag for it. */
uint32_t precisions(ze_device_handle_t dev) {
    uint32_t p = CPN_PREC_FP32;
    ze_device_module_properties_t mod{};
    mod.stype = ZE_STRUCTURE_TYPE_DEVICE_MODULE_PROPERTIES;
    if (zeDeviceGetModuleProperties(dev, &mod) == ZE_RESULT_SUCCESS) {
        if (mod.fp16flags != 0) p |= CPN_PREC_FP16;
        if (mod.fp64flags != 0) p |= CPN_PREC_FP64;
        if ((mod.flags & ZE_DEVICE_MODULE_FLAG_DP4A) != 0) p |= CPN_PREC_INT8;
    }
    return p;
}

}  // namespace

/* The number of root devices across all drivers. Without a driver that is a quiet 0 (CPN_OK);
 * drivers present but failing give 0 and CPN_E_UNAVAILABLE with the reason. */
cpn_status device_count(uint32_t* count, cpn_msg* err) {
    if (count == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "device_count: count is NULL");
    const ZeState& st = ze_state();
    *count = static_cast<uint32_t>(st.devices.size());
    if (!st.usable && st.broken) return fail(err, CPN_E_UNAVAILABLE, "%s", st.reason.c_str());
    return CPN_OK;
}

/* Describes flat device `index`. zeDeviceGetProperties is required (its failure fails the
 * call with the ze_result_t name); memory, module and PCI properties are best effort. */
cpn_status device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "device_info: out is NULL");
    if (out->struct_size < sizeof(cpn_device_desc)) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "device_info: out->struct_size is %u, expected at least %zu", out->struct_size,
                    sizeof(cpn_device_desc));
    }
    const ZeState& st = ze_state();
    if (!st.usable) return fail(err, CPN_E_NOT_FOUND, "%s", st.reason.c_str());
    if (index >= st.devices.size()) {
        return fail(err, CPN_E_NOT_FOUND, "device_info: index %u out of range (%zu devices)", index,
                    st.devices.size());
    }
    const ZeDevice& d = st.devices[index];
    ze_device_properties_t props{};
    props.stype = ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES;
    ze_result_t r = zeDeviceGetProperties(d.device, &props);
    if (r != ZE_RESULT_SUCCESS) {
        return fail(err, r == ZE_RESULT_ERROR_DEVICE_LOST ? CPN_E_DEVICE_LOST : CPN_E_UNAVAILABLE,
                    "zeDeviceGetProperties(device %u) failed: %s", index, result_name(r).c_str());
    }

    const uint32_t size = out->struct_size;
    std::memset(out, 0, sizeof *out);
    out->struct_size = size;
    out->device_class = class_for(props.type);
    copy_str(out->vendor, props.vendorId == 0x8086 ? std::string("Intel") : hex(props.vendorId, 4));
    const std::string name =
        plugin::trim(std::string(props.name, strnlen(props.name, sizeof props.name)));
    copy_str(out->model, name);
    copy_str(out->native_name, name);
    bool zero = true;
    for (uint8_t b : props.uuid.id) zero = zero && b == 0;
    if (!zero) copy_str(out->uuid, plugin::format_uuid(props.uuid.id));
    const std::string pci = pci_address(d);
    copy_str(out->pci_address, pci);
    copy_str(out->driver_version, d.driver_version);
    out->memory_bytes = total_memory(d.device);
    const uint32_t subslices = props.numSlices * props.numSubslicesPerSlice;
    const uint32_t eus = subslices * props.numEUsPerSubslice;
    out->compute_units = eus;
    out->max_clock_mhz = props.coreClockRate;
    out->numa_node = sysfs_numa_node(pci);
    out->precisions = precisions(d.device);
    out->healthy = 1;

    attr_str(out, "levelzero.device_type", type_name(props.type));
    attr_str(out, "levelzero.device_id", hex(props.deviceId, 4));
    attr_int(out, "levelzero.eu_count", eus);
    attr_int(out, "levelzero.threads_per_eu", props.numThreadsPerEU);
    attr_int(out, "levelzero.subslices", subslices);
    attr_int(out, "levelzero.slices", props.numSlices);
    attr_int(out, "levelzero.max_mem_alloc_bytes", static_cast<int64_t>(props.maxMemAllocSize),
             "bytes");
    attr_bool(out, "levelzero.integrated", (props.flags & ZE_DEVICE_PROPERTY_FLAG_INTEGRATED) != 0);
    return CPN_OK;
}

}  // namespace cpn::levelzero
