// opencl_discovery.cpp: probe, device enumeration and the uniform device shape.
//
// Every device of every platform the ICD loader knows is one entry of a flat index, in
// platform order then device order, which is the order the loader itself reports. The list is
// cached between calls (device_info would otherwise re-walk every platform per device) and
// refreshed by probe() and device_count(), the two calls the host makes when it (re)discovers.
#include <CL/cl_ext.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>

#include "cpn_backend_util.hpp"
#include "opencl_internal.hpp"

namespace cpn::opencl {

using plugin::copy_str;
using plugin::fail;

namespace {

/* Vendor query tokens, defined here rather than taken from the headers: older header packages
 * lack some of them, and the header macros named after extensions (cl_khr_pci_bus_info...)
 * would collide with any identifier spelled the same. */
constexpr cl_device_info kDeviceUuidKhr = 0x106A;
constexpr cl_device_info kPciBusInfoKhr = 0x410F;
constexpr cl_device_info kPciBusIdNv = 0x4008;
constexpr cl_device_info kPciSlotIdNv = 0x4009;
constexpr cl_device_info kPciDomainIdNv = 0x400A;
constexpr cl_device_info kTopologyAmd = 0x4037;
constexpr cl_device_info kBoardNameAmd = 0x4038;
constexpr cl_uint kTopologyTypePcieAmd = 1;

/* Layouts as the extension specifications define them. */
struct PciBusInfoKhr {
    cl_uint domain, bus, device, function;
};
union TopologyAmd {
    struct {
        cl_uint type;
        cl_uint data[5];
    } raw;
    struct {
        cl_uint type;
        cl_char unused[17];
        cl_char bus;
        cl_char device;
        cl_char function;
    } pcie;
};

constexpr const char* kNoPlatformReason =
    "no OpenCL platform installed (no ICD found under /etc/OpenCL/vendors)";

std::mutex g_mu;                   // guards g_devices and g_enumerated
std::vector<DeviceRef> g_devices;  // the flat index
bool g_enumerated = false;

/* A fixed-size clGetDeviceInfo; false when the driver refuses the query (old device, missing
 * extension), in which case the caller leaves its field at "unknown". */
template <typename T>
bool device_value(cl_device_id d, cl_device_info what, T* out) {
    T v{};
    if (clGetDeviceInfo(d, what, sizeof v, &v, nullptr) != CL_SUCCESS) return false;
    *out = v;
    return true;
}

/*
 * Lists the platforms. The ICD loader answers CL_PLATFORM_NOT_FOUND_KHR when no vendor ICD is
 * registered; that, like an empty list, is "nothing here" and yields an empty vector with
 * CL_SUCCESS so callers need only one branch for it.
 */
cl_int list_platforms(std::vector<cl_platform_id>* out) {
    out->clear();
    cl_uint n = 0;
    cl_int rc = clGetPlatformIDs(0, nullptr, &n);
    if (rc == CL_PLATFORM_NOT_FOUND_KHR || (rc == CL_SUCCESS && n == 0)) return CL_SUCCESS;
    if (rc != CL_SUCCESS) return rc;
    out->resize(n);
    rc = clGetPlatformIDs(n, out->data(), &n);
    if (rc == CL_PLATFORM_NOT_FOUND_KHR) {
        out->clear();
        return CL_SUCCESS;
    }
    if (rc != CL_SUCCESS) return rc;
    out->resize(n);  // a platform may have vanished between the two calls
    return CL_SUCCESS;
}

/*
 * Rebuilds the flat device list; the caller holds g_mu. A platform whose device query fails is
 * skipped with a warning rather than failing the whole backend: one broken vendor ICD must not
 * hide the devices of the others.
 */
cpn_status enumerate_locked(cpn_msg* err) {
    std::vector<cl_platform_id> platforms;
    cl_int rc = list_platforms(&platforms);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, "clGetPlatformIDs");

    std::vector<DeviceRef> devices;
    for (uint32_t pi = 0; pi < platforms.size(); ++pi) {
        cl_uint n = 0;
        rc = clGetDeviceIDs(platforms[pi], CL_DEVICE_TYPE_ALL, 0, nullptr, &n);
        if (rc == CL_DEVICE_NOT_FOUND || (rc == CL_SUCCESS && n == 0)) continue;
        std::vector<cl_device_id> ids(n);
        if (rc == CL_SUCCESS)
            rc = clGetDeviceIDs(platforms[pi], CL_DEVICE_TYPE_ALL, n, ids.data(), &n);
        if (rc != CL_SUCCESS) {
            std::string name = "#" + std::to_string(pi);
            platform_string(platforms[pi], CL_PLATFORM_NAME, &name);
            log(3, "clGetDeviceIDs failed on platform " + name + ": " + cl_error_name(rc) + " (" +
                       std::to_string(rc) + "); its devices are skipped");
            continue;
        }
        ids.resize(n);
        for (cl_device_id d : ids) devices.push_back(DeviceRef{platforms[pi], d, pi});
    }
    g_devices = std::move(devices);
    g_enumerated = true;
    return CPN_OK;
}

std::string device_type_name(cl_device_type t) {
    std::string out;
    auto add = [&](cl_device_type bit, const char* name) {
        if ((t & bit) == 0) return;
        if (!out.empty()) out += ",";
        out += name;
    };
    add(CL_DEVICE_TYPE_GPU, "gpu");
    add(CL_DEVICE_TYPE_CPU, "cpu");
    add(CL_DEVICE_TYPE_ACCELERATOR, "accelerator");
    add(CL_DEVICE_TYPE_CUSTOM, "custom");
    add(CL_DEVICE_TYPE_DEFAULT, "default");
    return out;
}

/* GPU wins over the other bits: a device that says both GPU and something else is a GPU. */
cpn_device_class class_from_type(cl_device_type t) {
    if (t & CL_DEVICE_TYPE_GPU) return CPN_CLASS_GPU;
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return CPN_CLASS_NPU;
    if (t & CL_DEVICE_TYPE_CPU) return CPN_CLASS_CPU;
    return CPN_CLASS_OTHER;
}

std::string format_pci(unsigned domain, unsigned bus, unsigned dev, unsigned fn) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", domain, bus, dev, fn);
    return plugin::normalise_pci(buf);  // "" when a field is out of range
}

/*
 * The PCI address, from whichever vendor query the driver advertises: the Khronos
 * cl_khr_pci_bus_info first, then NVIDIA's bus/slot ids (slot = device << 3 | function, domain
 * from newer drivers only) and AMD's topology union. Only an advertised extension is queried:
 * an unknown token is undefined behaviour on some old drivers, not just CL_INVALID_VALUE.
 */
std::string pci_address(cl_device_id d, const std::string& ext) {
    if (has_extension(ext, "cl_khr_pci_bus_info")) {
        PciBusInfoKhr info{};
        if (device_value(d, kPciBusInfoKhr, &info))
            return format_pci(info.domain, info.bus, info.device, info.function);
    }
    if (has_extension(ext, "cl_nv_device_attribute_query")) {
        cl_uint bus = 0, slot = 0, domain = 0;
        if (device_value(d, kPciBusIdNv, &bus) && device_value(d, kPciSlotIdNv, &slot)) {
            device_value(d, kPciDomainIdNv, &domain);  // absent before driver 460 or so: 0
            return format_pci(domain, bus, (slot >> 3) & 0x1f, slot & 0x7);
        }
    }
    if (has_extension(ext, "cl_amd_device_attribute_query")) {
        TopologyAmd topo{};
        if (device_value(d, kTopologyAmd, &topo) && topo.raw.type == kTopologyTypePcieAmd) {
            // The fields are cl_char (signed): a bus above 0x7f would sign-extend.
            return format_pci(0, static_cast<unsigned char>(topo.pcie.bus),
                              static_cast<unsigned char>(topo.pcie.device),
                              static_cast<unsigned char>(topo.pcie.function));
        }
    }
    return "";
}

/* cl_khr_device_uuid; an all-zero UUID (some drivers' placeholder) counts as none. */
std::string device_uuid(cl_device_id d, const std::string& ext) {
    if (!has_extension(ext, "cl_khr_device_uuid")) return "";
    unsigned char uuid[16] = {};
    if (clGetDeviceInfo(d, kDeviceUuidKhr, sizeof uuid, uuid, nullptr) != CL_SUCCESS) return "";
    bool all_zero = true;
    for (unsigned char b : uuid) all_zero = all_zero && b == 0;
    return all_zero ? "" : plugin::format_uuid(uuid);
}

/*
 * Precisions the device executes natively. fp32 is required by every OpenCL device; fp64 is
 * core-optional (a non-zero CL_DEVICE_DOUBLE_FP_CONFIG) or the cl_khr_fp64 extension; fp16 and
 * int8 come from their extensions. bf16 is never claimed: the only shipping OpenCL bf16
 * extension (cl_intel_bfloat16_conversions) converts, it does not compute.
 */
uint32_t precisions(cl_device_id d, const std::string& ext) {
    uint32_t p = CPN_PREC_FP32;
    cl_device_fp_config fp64 = 0;
    if ((device_value(d, CL_DEVICE_DOUBLE_FP_CONFIG, &fp64) && fp64 != 0) ||
        has_extension(ext, "cl_khr_fp64"))
        p |= CPN_PREC_FP64;
    if (has_extension(ext, "cl_khr_fp16")) p |= CPN_PREC_FP16;
    if (has_extension(ext, "cl_khr_integer_dot_product")) p |= CPN_PREC_INT8;
    return p;
}

size_t count_extensions(const std::string& ext) {
    std::istringstream in(ext);
    std::string tok;
    size_t n = 0;
    while (in >> tok) ++n;
    return n;
}

}  // namespace

/* ---- shared helpers ---------------------------------------------------------------------- */

/* Variable-length string query: size first, then the bytes; trimmed of the NUL and of the
 * padding some vendors leave around names. */
bool device_string(cl_device_id d, cl_device_info what, std::string* out) {
    size_t n = 0;
    if (clGetDeviceInfo(d, what, 0, nullptr, &n) != CL_SUCCESS) return false;
    std::string s(n, '\0');
    if (n > 0 && clGetDeviceInfo(d, what, n, s.data(), nullptr) != CL_SUCCESS) return false;
    *out = plugin::trim(s);
    return true;
}

bool platform_string(cl_platform_id p, cl_platform_info what, std::string* out) {
    size_t n = 0;
    if (clGetPlatformInfo(p, what, 0, nullptr, &n) != CL_SUCCESS) return false;
    std::string s(n, '\0');
    if (n > 0 && clGetPlatformInfo(p, what, n, s.data(), nullptr) != CL_SUCCESS) return false;
    *out = plugin::trim(s);
    return true;
}

/* "OpenCL 3.0 PoCL ..." -> 300; 0 when the string is not in the specified form. */
int parse_cl_version(const std::string& s) {
    int major = 0, minor = 0;
    if (std::sscanf(s.c_str(), "OpenCL %d.%d", &major, &minor) != 2) return 0;
    return major * 100 + minor;
}

/* Whole-token match: "cl_khr_fp16" must not match inside a longer vendor extension name. */
bool has_extension(const std::string& extensions, const char* name) {
    const size_t len = std::strlen(name);
    size_t pos = 0;
    while ((pos = extensions.find(name, pos)) != std::string::npos) {
        bool starts = pos == 0 || extensions[pos - 1] == ' ';
        bool ends = pos + len == extensions.size() || extensions[pos + len] == ' ';
        if (starts && ends) return true;
        pos += len;
    }
    return false;
}

/* ---- probe / device_count / device_info -------------------------------------------------- */

/*
 * Usable when the ICD loader lists at least one platform. The runtime version is the highest
 * "OpenCL X.Y" any platform reports (the full platform strings run to 100+ characters and are
 * in each device's attributes anyway); the driver version is the first device's.
 */
cpn_status probe(cpn_probe_info* out, cpn_msg* err) {
    if (out == nullptr || out->struct_size < sizeof(cpn_probe_info))
        return fail(
            err, CPN_E_INVALID_ARGUMENT,
            "opencl probe: cpn_probe_info is NULL or smaller than this plugin's (%zu bytes)",
            sizeof(cpn_probe_info));
    const uint32_t size = out->struct_size;
    std::memset(out, 0, sizeof *out);
    out->struct_size = size;
    copy_str(out->runtime_name, "OpenCL ICD loader");

    std::vector<cl_platform_id> platforms;
    cl_int rc = list_platforms(&platforms);
    if (rc != CL_SUCCESS) {
        out->usable = 0;
        std::snprintf(out->reason, sizeof out->reason, "clGetPlatformIDs failed: %s (%d)",
                      cl_error_name(rc), static_cast<int>(rc));
        return CPN_OK;
    }
    if (platforms.empty()) {
        out->usable = 0;
        copy_str(out->reason, kNoPlatformReason);
        return CPN_OK;
    }

    int best = -1;
    std::string best_text;
    for (cl_platform_id p : platforms) {
        std::string v;
        if (!platform_string(p, CL_PLATFORM_VERSION, &v)) continue;
        const int parsed = parse_cl_version(v);  // 0 when unparsable: kept only if alone
        if (parsed <= best) continue;
        best = parsed;
        best_text = parsed > 0 ? "OpenCL " + std::to_string(parsed / 100) + "." +
                                     std::to_string(parsed % 100)
                               : v;
    }
    copy_str(out->runtime_version, best_text);
    out->usable = 1;

    std::lock_guard<std::mutex> lock(g_mu);
    cpn_msg ignored{};
    if (enumerate_locked(&ignored) == CPN_OK && !g_devices.empty()) {
        std::string drv;
        if (device_string(g_devices.front().device, CL_DRIVER_VERSION, &drv))
            copy_str(out->driver_version, drv);
    }
    return CPN_OK;
}

cpn_status device_count(uint32_t* count, cpn_msg* err) {
    if (count == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "opencl device_count: count is NULL");
    std::lock_guard<std::mutex> lock(g_mu);
    cpn_status st = enumerate_locked(err);
    if (st != CPN_OK) return st;
    *count = static_cast<uint32_t>(g_devices.size());
    return CPN_OK;
}

cpn_status lookup_device(uint32_t index, DeviceRef* out, cpn_msg* err) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_enumerated) {
        cpn_status st = enumerate_locked(err);
        if (st != CPN_OK) return st;
    }
    if (index >= g_devices.size())
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "opencl: device index %u out of range (%zu devices)", index, g_devices.size());
    *out = g_devices[index];
    return CPN_OK;
}

void reset_discovery() {
    std::lock_guard<std::mutex> lock(g_mu);
    g_devices.clear();
    g_enumerated = false;
}

/*
 * Fills the uniform device shape. Every query is guarded: a driver that refuses one leaves
 * that field at its "unknown" value instead of failing the device, because a partially
 * described device is still schedulable and a missing one is not.
 */
cpn_status device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err) {
    if (out == nullptr || out->struct_size < sizeof(cpn_device_desc))
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "opencl device_info: cpn_device_desc is NULL or smaller than this plugin's "
                    "(%zu bytes)",
                    sizeof(cpn_device_desc));
    DeviceRef ref;
    cpn_status st = lookup_device(index, &ref, err);
    if (st != CPN_OK) return st;
    cl_device_id d = ref.device;

    const uint32_t size = out->struct_size;
    std::memset(out, 0, sizeof *out);
    out->struct_size = size;
    out->numa_node = -1;  // OpenCL has no NUMA query
    out->healthy = 1;

    std::string ext;
    device_string(d, CL_DEVICE_EXTENSIONS, &ext);

    cl_device_type type = 0;
    if (device_value(d, CL_DEVICE_TYPE, &type)) out->device_class = class_from_type(type);

    std::string s;
    if (device_string(d, CL_DEVICE_VENDOR, &s)) copy_str(out->vendor, s);
    std::string name;
    if (device_string(d, CL_DEVICE_NAME, &name)) {
        copy_str(out->native_name, name);
        copy_str(out->model, name);
    }
    // AMD reports the ISA ("gfx1030") as the name and the marketing name separately.
    std::string board;
    if (has_extension(ext, "cl_amd_device_attribute_query") &&
        device_string(d, kBoardNameAmd, &board) && !board.empty())
        copy_str(out->model, board);
    if (device_string(d, CL_DRIVER_VERSION, &s)) copy_str(out->driver_version, s);

    cl_ulong mem = 0;
    if (device_value(d, CL_DEVICE_GLOBAL_MEM_SIZE, &mem)) out->memory_bytes = mem;
    cl_uint u = 0;
    if (device_value(d, CL_DEVICE_MAX_COMPUTE_UNITS, &u)) out->compute_units = u;
    if (device_value(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, &u)) out->max_clock_mhz = u;
    out->precisions = precisions(d, ext);
    copy_str(out->pci_address, pci_address(d, ext));
    copy_str(out->uuid, device_uuid(d, ext));

    cl_bool available = CL_TRUE;
    if (device_value(d, CL_DEVICE_AVAILABLE, &available) && !available) {
        out->healthy = 0;
        copy_str(out->health_reason, "the driver reports CL_DEVICE_AVAILABLE = false");
    }

    // Attributes, in a stable order.
    if (platform_string(ref.platform, CL_PLATFORM_NAME, &s))
        plugin::attr_str(out, "opencl.platform", s);
    if (platform_string(ref.platform, CL_PLATFORM_VENDOR, &s))
        plugin::attr_str(out, "opencl.platform_vendor", s);
    if (platform_string(ref.platform, CL_PLATFORM_VERSION, &s))
        plugin::attr_str(out, "opencl.platform_version", s);
    if (device_string(d, CL_DEVICE_VERSION, &s)) plugin::attr_str(out, "opencl.device_version", s);
    if (device_string(d, CL_DEVICE_OPENCL_C_VERSION, &s))
        plugin::attr_str(out, "opencl.c_version", s);
    if (type != 0) plugin::attr_str(out, "opencl.device_type", device_type_name(type));
    size_t wg = 0;
    if (device_value(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, &wg))
        plugin::attr_int(out, "opencl.max_work_group_size", static_cast<int64_t>(wg));
    cl_ulong v = 0;
    if (device_value(d, CL_DEVICE_LOCAL_MEM_SIZE, &v))
        plugin::attr_int(out, "opencl.local_mem_bytes", static_cast<int64_t>(v), "bytes");
    if (device_value(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, &v))
        plugin::attr_int(out, "opencl.max_alloc_bytes", static_cast<int64_t>(v), "bytes");
    if (device_value(d, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, &v))
        plugin::attr_int(out, "opencl.global_mem_cache_bytes", static_cast<int64_t>(v), "bytes");
    if (device_value(d, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, &u))
        plugin::attr_int(out, "opencl.preferred_vector_width_float", u);
    if (device_value(d, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, &u))
        plugin::attr_int(out, "opencl.native_vector_width_float", u);
    cl_bool images = CL_FALSE;
    if (device_value(d, CL_DEVICE_IMAGE_SUPPORT, &images))
        plugin::attr_bool(out, "opencl.image_support", images != CL_FALSE);
    plugin::attr_int(out, "opencl.extensions_count", static_cast<int64_t>(count_extensions(ext)));
    return CPN_OK;
}

}  // namespace cpn::opencl
