// opencl_internal.hpp: declarations shared by the OpenCL backend's source files.
//
// The plugin is split by concern: discovery (platforms, devices, the uniform device shape),
// execution (contexts, programs, runs), error naming, and the entry point that builds the C
// function table and keeps exceptions from crossing the ABI. Nothing here is visible outside
// the shared library (visibility is hidden by default).
#pragma once

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 300
#endif
#include <CL/cl.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "cpn_backend.h"

namespace cpn::opencl {

/* ---- errors (opencl_errors.cpp) ---------------------------------------------------------- */

/* "CL_DEVICE_NOT_FOUND" for -1; "CL_UNKNOWN_ERROR" for a code no header names. */
const char* cl_error_name(cl_int code);

/* The cpn_status a failed OpenCL call maps to (allocation failures to CPN_E_OUT_OF_MEMORY...). */
cpn_status status_from_cl(cl_int code);

/* Writes "<what> failed: CL_NAME (code)" into err and returns status_from_cl(code). */
cpn_status cl_fail(cpn_msg* err, cl_int code, const std::string& what);

/* ---- programs built once per opened device (opencl_errors.cpp) --------------------------- */

/* What a workload (render.pass, the inference extension) needs of an opened device. Its
 * program is built once per device and kept in *program, guarded by *mu. */
struct DeviceView {
    cl_device_id device = nullptr;
    cl_context context = nullptr;
    cl_command_queue queue = nullptr;
    cl_ulong max_alloc = 0;  // CL_DEVICE_MAX_MEM_ALLOC_SIZE; 0 when unknown
    std::string label;
    std::mutex* mu = nullptr;
    cl_program* program = nullptr;
};

/* Returns the device's program in *out, building it from `source` with `options` the first
 * time; a failed build says "clBuildProgram(<what>) failed on <device>: ...; build log: ...". */
cpn_status build_cached_program(const DeviceView& d, const char* source, const char* options, const char* what,
                                cl_program* out, cpn_msg* err);

/* ---- logging (opencl_backend.cpp) -------------------------------------------------------- */

/* Forwards to the host's log callback when there is one; level as in cpn_host::log. */
void log(int level, const std::string& message);

/* ---- discovery (opencl_discovery.cpp) ---------------------------------------------------- */

/* One device in the flat, platform-ordered index the host sees. */
struct DeviceRef {
    cl_platform_id platform = nullptr;
    cl_device_id device = nullptr;
    uint32_t platform_index = 0;
};

cpn_status probe(cpn_probe_info* out, cpn_msg* err);
cpn_status device_count(uint32_t* count, cpn_msg* err);
cpn_status device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err);

/* Resolves a flat device index (enumerating first when nothing is cached yet). */
cpn_status lookup_device(uint32_t index, DeviceRef* out, cpn_msg* err);

/* Drops the cached device list (shutdown). */
void reset_discovery();

/* Typed clGetDeviceInfo helpers: false (and the output untouched) when the query fails. */
bool device_string(cl_device_id d, cl_device_info what, std::string* out);
bool platform_string(cl_platform_id p, cl_platform_info what, std::string* out);

/* "OpenCL 3.0 <vendor text>" (platform and device versions) -> 300; 0 when unparsable. */
int parse_cl_version(const std::string& s);

/* True when `name` is one of the space-separated tokens of an extension string. */
bool has_extension(const std::string& extensions, const char* name);

/* ---- execution (opencl_exec.cpp) --------------------------------------------------------- */

cpn_status device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err);
void device_close(cpn_device_handle* device);
cpn_status query(cpn_device_handle* device, const cpn_workload* workload, cpn_query_result* out,
                 cpn_msg* err);
cpn_status prepare(cpn_device_handle* device, const cpn_workload* workload, cpn_prepared** out,
                   cpn_msg* err);
cpn_status run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
               cpn_msg* err);
void release(cpn_prepared* prepared);

/* Owns one OpenCL object and releases it on scope exit, so every early return cleans up. */
template <typename T, cl_int(CL_API_CALL* Release)(T)>
class ClRef {
public:
    ClRef() = default;
    explicit ClRef(T h) : h_(h) {}
    ClRef(const ClRef&) = delete;
    ClRef& operator=(const ClRef&) = delete;
    ~ClRef() { reset(); }
    void reset(T h = nullptr) {
        if (h_ != nullptr) Release(h_);
        h_ = h;
    }
    T get() const { return h_; }
    T* out() {
        reset();
        return &h_;
    }
    T release() {
        T h = h_;
        h_ = nullptr;
        return h;
    }

private:
    T h_ = nullptr;
};
using MemRef = ClRef<cl_mem, clReleaseMemObject>;
using EventRef = ClRef<cl_event, clReleaseEvent>;

}  // namespace cpn::opencl
