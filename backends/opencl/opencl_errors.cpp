// opencl_errors.cpp: OpenCL error codes as names and as cpn_status values.
//
// Operators read "CL_OUT_OF_RESOURCES (-5)" far more easily than "-5", and the vendor's own
// name is what they will search for, so every message carries the name and the number.
#include <CL/cl_ext.h>

#include "cpn_backend_util.hpp"
#include "opencl_internal.hpp"

namespace cpn::opencl {

/*
 * Names every error code of the OpenCL 3.0 core headers plus the ICD loader's
 * CL_PLATFORM_NOT_FOUND_KHR. The case labels use the headers' own macros, so a name can never
 * disagree with its value; codes from vendor extensions fall through to "CL_UNKNOWN_ERROR"
 * (the message still carries the number).
 */
const char* cl_error_name(cl_int code) {
#define CPN_CL_ERR(e) \
    case e:           \
        return #e;
    switch (code) {
        CPN_CL_ERR(CL_SUCCESS)
        CPN_CL_ERR(CL_DEVICE_NOT_FOUND)
        CPN_CL_ERR(CL_DEVICE_NOT_AVAILABLE)
        CPN_CL_ERR(CL_COMPILER_NOT_AVAILABLE)
        CPN_CL_ERR(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        CPN_CL_ERR(CL_OUT_OF_RESOURCES)
        CPN_CL_ERR(CL_OUT_OF_HOST_MEMORY)
        CPN_CL_ERR(CL_PROFILING_INFO_NOT_AVAILABLE)
        CPN_CL_ERR(CL_MEM_COPY_OVERLAP)
        CPN_CL_ERR(CL_IMAGE_FORMAT_MISMATCH)
        CPN_CL_ERR(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        CPN_CL_ERR(CL_BUILD_PROGRAM_FAILURE)
        CPN_CL_ERR(CL_MAP_FAILURE)
        CPN_CL_ERR(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        CPN_CL_ERR(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        CPN_CL_ERR(CL_COMPILE_PROGRAM_FAILURE)
        CPN_CL_ERR(CL_LINKER_NOT_AVAILABLE)
        CPN_CL_ERR(CL_LINK_PROGRAM_FAILURE)
        CPN_CL_ERR(CL_DEVICE_PARTITION_FAILED)
        CPN_CL_ERR(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        CPN_CL_ERR(CL_INVALID_VALUE)
        CPN_CL_ERR(CL_INVALID_DEVICE_TYPE)
        CPN_CL_ERR(CL_INVALID_PLATFORM)
        CPN_CL_ERR(CL_INVALID_DEVICE)
        CPN_CL_ERR(CL_INVALID_CONTEXT)
        CPN_CL_ERR(CL_INVALID_QUEUE_PROPERTIES)
        CPN_CL_ERR(CL_INVALID_COMMAND_QUEUE)
        CPN_CL_ERR(CL_INVALID_HOST_PTR)
        CPN_CL_ERR(CL_INVALID_MEM_OBJECT)
        CPN_CL_ERR(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        CPN_CL_ERR(CL_INVALID_IMAGE_SIZE)
        CPN_CL_ERR(CL_INVALID_SAMPLER)
        CPN_CL_ERR(CL_INVALID_BINARY)
        CPN_CL_ERR(CL_INVALID_BUILD_OPTIONS)
        CPN_CL_ERR(CL_INVALID_PROGRAM)
        CPN_CL_ERR(CL_INVALID_PROGRAM_EXECUTABLE)
        CPN_CL_ERR(CL_INVALID_KERNEL_NAME)
        CPN_CL_ERR(CL_INVALID_KERNEL_DEFINITION)
        CPN_CL_ERR(CL_INVALID_KERNEL)
        CPN_CL_ERR(CL_INVALID_ARG_INDEX)
        CPN_CL_ERR(CL_INVALID_ARG_VALUE)
        CPN_CL_ERR(CL_INVALID_ARG_SIZE)
        CPN_CL_ERR(CL_INVALID_KERNEL_ARGS)
        CPN_CL_ERR(CL_INVALID_WORK_DIMENSION)
        CPN_CL_ERR(CL_INVALID_WORK_GROUP_SIZE)
        CPN_CL_ERR(CL_INVALID_WORK_ITEM_SIZE)
        CPN_CL_ERR(CL_INVALID_GLOBAL_OFFSET)
        CPN_CL_ERR(CL_INVALID_EVENT_WAIT_LIST)
        CPN_CL_ERR(CL_INVALID_EVENT)
        CPN_CL_ERR(CL_INVALID_OPERATION)
        CPN_CL_ERR(CL_INVALID_GL_OBJECT)
        CPN_CL_ERR(CL_INVALID_BUFFER_SIZE)
        CPN_CL_ERR(CL_INVALID_MIP_LEVEL)
        CPN_CL_ERR(CL_INVALID_GLOBAL_WORK_SIZE)
        CPN_CL_ERR(CL_INVALID_PROPERTY)
        CPN_CL_ERR(CL_INVALID_IMAGE_DESCRIPTOR)
        CPN_CL_ERR(CL_INVALID_COMPILER_OPTIONS)
        CPN_CL_ERR(CL_INVALID_LINKER_OPTIONS)
        CPN_CL_ERR(CL_INVALID_DEVICE_PARTITION_COUNT)
        CPN_CL_ERR(CL_INVALID_PIPE_SIZE)
        CPN_CL_ERR(CL_INVALID_DEVICE_QUEUE)
        CPN_CL_ERR(CL_INVALID_SPEC_ID)
        CPN_CL_ERR(CL_MAX_SIZE_RESTRICTION_EXCEEDED)
        CPN_CL_ERR(CL_PLATFORM_NOT_FOUND_KHR)
        default:
            return "CL_UNKNOWN_ERROR";
    }
#undef CPN_CL_ERR
}

/*
 * Maps an OpenCL failure onto the host's status vocabulary. The host acts on the class of
 * failure (retry elsewhere, mark unhealthy, report "no memory"), so only the codes whose
 * meaning is unambiguous get a specific status; everything else is CPN_E_INTERNAL with the
 * vendor's name in the message. CL_OUT_OF_RESOURCES is deliberately not "out of memory":
 * several drivers (NVIDIA's among them) return it for a faulting kernel too.
 */
cpn_status status_from_cl(cl_int code) {
    switch (code) {
        case CL_SUCCESS:
            return CPN_OK;
        case CL_DEVICE_NOT_FOUND:
        case CL_PLATFORM_NOT_FOUND_KHR:
            return CPN_E_NOT_FOUND;
        case CL_DEVICE_NOT_AVAILABLE:
        case CL_COMPILER_NOT_AVAILABLE:
        case CL_LINKER_NOT_AVAILABLE:
        case CL_OUT_OF_RESOURCES:
            return CPN_E_UNAVAILABLE;
        case CL_MEM_OBJECT_ALLOCATION_FAILURE:
        case CL_OUT_OF_HOST_MEMORY:
            return CPN_E_OUT_OF_MEMORY;
        case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST:
            return CPN_E_DEVICE_LOST;
        default:
            return CPN_E_INTERNAL;
    }
}

cpn_status cl_fail(cpn_msg* err, cl_int code, const std::string& what) {
    return plugin::fail(err, status_from_cl(code), "%s failed: %s (%d)", what.c_str(),
                        cl_error_name(code), static_cast<int>(code));
}

cpn_status build_cached_program(const DeviceView& d, const char* source, const char* options, const char* what,
                                cl_program* out, cpn_msg* err) {
    std::lock_guard<std::mutex> lock(*d.mu);
    if (*d.program != nullptr) {
        *out = *d.program;
        return CPN_OK;
    }
    cl_int rc = CL_SUCCESS;
    cl_program prog = clCreateProgramWithSource(d.context, 1, &source, nullptr, &rc);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, std::string("clCreateProgramWithSource(") + what + ") on " + d.label);
    rc = clBuildProgram(prog, 1, &d.device, options, nullptr, nullptr);
    if (rc != CL_SUCCESS) {
        std::string build_log;
        size_t n = 0;
        if (clGetProgramBuildInfo(prog, d.device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &n) == CL_SUCCESS && n > 0) {
            build_log.assign(n, '\0');
            if (clGetProgramBuildInfo(prog, d.device, CL_PROGRAM_BUILD_LOG, n, build_log.data(), nullptr) != CL_SUCCESS)
                build_log.clear();
            build_log = plugin::trim(build_log);
        }
        clReleaseProgram(prog);
        log(4, std::string("clBuildProgram(") + what + ") failed on " + d.label + ": " + build_log);
        return plugin::fail(err, rc == CL_BUILD_PROGRAM_FAILURE ? CPN_E_INTERNAL : status_from_cl(rc),
                            "clBuildProgram(%s) failed on %s: %s (%d); build log: %.700s", what, d.label.c_str(),
                            cl_error_name(rc), static_cast<int>(rc), build_log.empty() ? "(empty)" : build_log.c_str());
    }
    *d.program = prog;
    *out = prog;
    return CPN_OK;
}

}  // namespace cpn::opencl
