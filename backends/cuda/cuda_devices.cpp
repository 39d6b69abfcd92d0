// cuda_devices.cpp: device_count and device_info: one CUdevice ordinal -> one cpn_device_desc,
// with NVIDIA GPU Feature Discovery label names for the attributes GFD defines.
#include "cuda_devices.hpp"

#include "cpn_backend_util.hpp"
#include "cuda_driver.hpp"
#include "cuda_errors.hpp"

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace cpn::cuda {
namespace {

using plugin::attr_bool;
using plugin::attr_int;
using plugin::attr_str;
using plugin::copy_str;
using plugin::fail;

/* One integer attribute; `ok` is cleared when the driver refuses it (an attribute the driver
 * is too old to know answers CUDA_ERROR_INVALID_VALUE), and `fallback` is returned then. */
int attribute(const DriverApi* api, CUdevice dev, CUdevice_attribute which, int fallback,
              bool* ok = nullptr) {
    int v = 0;
    if (api->device_get_attribute(&v, which, dev) != CUDA_SUCCESS) {
        if (ok != nullptr) *ok = false;
        return fallback;
    }
    if (ok != nullptr) *ok = true;
    return v;
}

/* The host NUMA node of a PCI device from sysfs, -1 when unknown (no NUMA, no such file). */
int sysfs_numa_node(const std::string& pci) {
    if (pci.empty()) return -1;
    std::ifstream in("/sys/bus/pci/devices/" + pci + "/numa_node");
    int node = -1;
    if (!(in >> node)) return -1;
    return node;
}

/* GFD's gpu.product: the name with spaces replaced by '-' ("NVIDIA-H100-80GB-HBM3"). */
std::string product_label(const std::string& name) {
    std::string out = name;
    for (char& c : out) {
        if (c == ' ') c = '-';
    }
    return out;
}

/* Splits "580.65.06" into its numeric parts; missing parts are -1. */
void split_version(const std::string& v, int* major, int* minor, int* rev) {
    *major = *minor = *rev = -1;
    std::istringstream in(v);
    std::string part;
    int* slots[3] = {major, minor, rev};
    for (int i = 0; i < 3 && std::getline(in, part, '.'); ++i) {
        if (part.empty() || part.size() > 9 ||
            part.find_first_not_of("0123456789") != std::string::npos) {
            return;
        }
        *slots[i] = std::stoi(part); /* at most 9 digits: cannot overflow, cannot throw */
    }
}

/* Fills the attribute list. GFD names where GFD has the label (note GFD's cuda.driver.* is the
 * kernel driver's version, 580.65.06, and cuda.runtime.* the CUDA version the driver supports,
 * 13.0); everything else under "cuda.". */
void add_attributes(const DriverApi* api, CUdevice dev, const DriverState& st,
                    const std::string& name, int cc_major, int cc_minor, uint64_t mem_bytes,
                    cpn_device_desc* out) {
    attr_str(out, "nvidia.com/gpu.product", product_label(name));
    attr_int(out, "nvidia.com/gpu.memory", static_cast<int64_t>(mem_bytes / (1024 * 1024)), "MiB");
    attr_int(out, "nvidia.com/gpu.compute.major", cc_major);
    attr_int(out, "nvidia.com/gpu.compute.minor", cc_minor);
    attr_str(out, "nvidia.com/gpu.family", gpu_family(cc_major, cc_minor));
    int dmaj = 0, dmin = 0, drev = 0;
    split_version(st.driver_version, &dmaj, &dmin, &drev);
    if (dmaj >= 0) attr_int(out, "nvidia.com/cuda.driver.major", dmaj);
    if (dmin >= 0) attr_int(out, "nvidia.com/cuda.driver.minor", dmin);
    if (drev >= 0) attr_int(out, "nvidia.com/cuda.driver.rev", drev);
    attr_int(out, "nvidia.com/cuda.runtime.major", st.driver_api_version / 1000);
    attr_int(out, "nvidia.com/cuda.runtime.minor", (st.driver_api_version % 1000) / 10);

    bool ok = false;
    int v = attribute(api, dev, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, 0, &ok);
    if (ok) attr_int(out, "cuda.l2_cache_bytes", v, "bytes");
    v = attribute(api, dev, CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, 0, &ok);
    if (ok) attr_int(out, "cuda.memory_bus_width_bits", v, "bits");
    v = attribute(api, dev, CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, 0, &ok);
    if (ok) attr_int(out, "cuda.memory_clock_mhz", v / 1000, "MHz");
    v = attribute(api, dev, CU_DEVICE_ATTRIBUTE_ECC_ENABLED, 0, &ok);
    if (ok) attr_bool(out, "cuda.ecc_enabled", v != 0);
    v = attribute(api, dev, CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD, 0, &ok);
    if (ok) attr_bool(out, "cuda.multi_gpu_board", v != 0);
    v = attribute(api, dev, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, 0, &ok);
    if (ok) attr_int(out, "cuda.max_threads_per_sm", v);
    v = attribute(api, dev, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR, 0, &ok);
    if (ok) attr_int(out, "cuda.shared_mem_per_sm_bytes", v, "bytes");
}

}  // namespace

const char* gpu_family(int major, int minor) {
    switch (major) {
        case 3: return "kepler";
        case 5: return "maxwell";
        case 6: return "pascal";
        case 7: return minor < 5 ? "volta" : "turing";
        case 8: return minor < 9 ? "ampere" : "ada-lovelace";
        case 9: return "hopper";
        case 10:
        case 11:
        case 12: return "blackwell";
        default: return "undefined"; /* GFD's word for a capability it does not know */
    }
}

uint32_t precisions_for(int major, int minor) {
    const int cc = major * 10 + minor;
    uint32_t p = CPN_PREC_FP64 | CPN_PREC_FP32;
    if (cc >= 53) p |= CPN_PREC_FP16;
    if (cc >= 61) p |= CPN_PREC_INT8;
    if (cc >= 80) p |= CPN_PREC_BF16;
    return p;
}

/* The number of devices the driver exposes. Without a driver or device that is a quiet 0
 * (CPN_OK); a driver that is present but failing gives 0 and CPN_E_UNAVAILABLE with its error. */
cpn_status device_count(uint32_t* count, cpn_msg* err) {
    if (count == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "device_count: count is NULL");
    *count = 0;
    DriverState st = driver_state();
    if (!st.usable) {
        if (st.broken) return fail(err, CPN_E_UNAVAILABLE, "%s", st.reason.c_str());
        return CPN_OK;
    }
    int n = 0;
    CUresult r = st.api->device_get_count(&n);
    if (r != CUDA_SUCCESS) {
        return fail(err, CPN_E_UNAVAILABLE, "cuDeviceGetCount failed: %s",
                    error_text(st.api, r).c_str());
    }
    *count = n > 0 ? static_cast<uint32_t>(n) : 0;
    return CPN_OK;
}

/* Describes CUDA device ordinal `index`. Name, memory and compute capability are required (an
 * error there fails the call, naming the entry point and the CUDA error); PCI address, UUID,
 * NUMA node and the extra attributes are best effort and left empty when the driver refuses. */
cpn_status device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "device_info: out is NULL");
    if (out->struct_size < sizeof(cpn_device_desc)) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "device_info: out->struct_size is %u, expected at least %zu", out->struct_size,
                    sizeof(cpn_device_desc));
    }
    DriverState st = driver_state();
    if (!st.usable) return fail(err, CPN_E_NOT_FOUND, "%s", st.reason.c_str());
    const DriverApi* api = st.api;

    CUdevice dev = 0;
    CUresult r = api->device_get(&dev, static_cast<int>(index));
    if (r != CUDA_SUCCESS) {
        return fail(err, r == CUDA_ERROR_INVALID_DEVICE ? CPN_E_NOT_FOUND : CPN_E_UNAVAILABLE,
                    "cuDeviceGet(%u) failed: %s", index, error_text(api, r).c_str());
    }
    char name[256] = {};
    r = api->device_get_name(name, sizeof name - 1, dev);
    if (r != CUDA_SUCCESS) {
        return fail(err, CPN_E_UNAVAILABLE, "cuDeviceGetName(device %u) failed: %s", index,
                    error_text(api, r).c_str());
    }
    size_t mem = 0;
    r = api->device_total_mem(&mem, dev);
    if (r != CUDA_SUCCESS) {
        return fail(err, CPN_E_UNAVAILABLE, "cuDeviceTotalMem_v2(device %u) failed: %s", index,
                    error_text(api, r).c_str());
    }
    int cc_major = 0, cc_minor = 0;
    r = api->device_get_attribute(&cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    if (r == CUDA_SUCCESS) {
        r = api->device_get_attribute(&cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    }
    if (r != CUDA_SUCCESS) {
        return fail(err, CPN_E_UNAVAILABLE,
                    "cuDeviceGetAttribute(COMPUTE_CAPABILITY, device %u) failed: %s", index,
                    error_text(api, r).c_str());
    }

    const uint32_t size = out->struct_size;
    std::memset(out, 0, sizeof *out);
    out->struct_size = size;
    out->device_class = CPN_CLASS_GPU;
    const std::string model = plugin::trim(name);
    copy_str(out->vendor, "NVIDIA");
    copy_str(out->model, model);
    copy_str(out->native_name, model);
    copy_str(out->driver_version, st.driver_version);
    out->memory_bytes = mem;

    char bus_id[64] = {};
    if (api->device_get_pci_bus_id(bus_id, sizeof bus_id - 1, dev) == CUDA_SUCCESS) {
        copy_str(out->pci_address, plugin::normalise_pci(bus_id));
    }
    CUuuid uuid{};
    if (api->device_get_uuid != nullptr && api->device_get_uuid(&uuid, dev) == CUDA_SUCCESS) {
        const auto* b = reinterpret_cast<const unsigned char*>(uuid.bytes);
        bool all_zero = true;
        for (size_t i = 0; i < sizeof uuid.bytes; ++i) all_zero = all_zero && b[i] == 0;
        if (!all_zero) copy_str(out->uuid, plugin::format_uuid(b));
    }
    out->compute_units =
        static_cast<uint32_t>(attribute(api, dev, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0));
    out->max_clock_mhz =
        static_cast<uint32_t>(attribute(api, dev, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, 0) / 1000);
    /* The host NUMA node nearest the GPU (driver >= 12.4), else sysfs. The plain NUMA_ID
     * attribute is the GPU memory's own node, set only where GPU memory is a NUMA node. */
    bool numa_ok = false;
    int numa = attribute(api, dev, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, -1, &numa_ok);
    out->numa_node = numa_ok ? (numa < 0 ? -1 : numa) : sysfs_numa_node(out->pci_address);
    out->precisions = precisions_for(cc_major, cc_minor);
    out->healthy = 1;

    add_attributes(api, dev, st, model, cc_major, cc_minor, mem, out);
    return CPN_OK;
}

}  // namespace cpn::cuda
