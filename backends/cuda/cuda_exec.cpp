// cuda_exec.cpp: device_open / query / prepare / run / release / device_close for the CUDA
// backend, with the "selftest.saxpy" workload.
#include "cuda_exec.hpp"

#include "cpn_backend_util.hpp"
#include "cuda_bench.hpp"
#include "cuda_errors.hpp"
#include "cuda_log.hpp"
#include "cuda_render.hpp"
#include "embedded_fatbin.hpp"
#include "params_json.hpp"

#include <time.h>

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#ifndef CPN_CUDA_MIN_ARCH
#define CPN_CUDA_MIN_ARCH 75
#endif
#ifndef CPN_CUDA_KERNEL_TARGETS
#define CPN_CUDA_KERNEL_TARGETS "sm_75 sm_80 sm_90 compute_90"
#endif

namespace cpn::cuda {
namespace {

using plugin::copy_str;
using plugin::fail;

constexpr const char* kKernelName = "cpn_selftest_saxpy";
constexpr unsigned kBlockSize = 256;
constexpr unsigned long long kMaxBlocks = 65535;

/* Device memory freed on scope exit (declared after the ScopedContext, so freed first). */
struct DeviceBuffer {
    const DriverApi* api;
    CUdeviceptr ptr = 0;
    explicit DeviceBuffer(const DriverApi* a) : api(a) {}
    ~DeviceBuffer() {
        if (ptr != 0) api->mem_free(ptr);
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

/* The status for a CUDA error met while executing: sticky errors mean the device faulted
 * (the host marks it unhealthy and re-probes); out of memory is its own status; anything else
 * is an internal error. */
cpn_status status_for(CUresult r) {
    if (is_sticky(r)) return CPN_E_DEVICE_LOST;
    if (r == CUDA_ERROR_OUT_OF_MEMORY) return CPN_E_OUT_OF_MEMORY;
    return CPN_E_INTERNAL;
}

/* Formats "<what> failed: <CUDA error>" into err and returns the matching status; logs sticky
 * errors at error level since they take the device out of service. */
cpn_status cuda_fail(const DriverApi* api, cpn_msg* err, CUresult r, const std::string& what) {
    const cpn_status st = status_for(r);
    const std::string text = what + " failed: " + error_text(api, r);
    if (st == CPN_E_DEVICE_LOST) log(4, text + "; the device needs a reset");
    return fail(err, st, "%s", text.c_str());
}

uint64_t now_monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

/* CPN_E_CANCELLED when the host raised the cancel flag, CPN_E_DEADLINE_EXCEEDED when its
 * deadline has passed, else CPN_OK. `stage` names where the run was when it stopped. */
cpn_status check_control(const cpn_run_control* control, const char* stage, cpn_msg* err) {
    if (control == nullptr) return CPN_OK;
    if (control->cancel != nullptr && *control->cancel != 0) {
        return fail(err, CPN_E_CANCELLED, "selftest.saxpy cancelled %s", stage);
    }
    if (control->deadline_ns != 0) {
        const uint64_t now = now_monotonic_ns();
        if (now >= control->deadline_ns) {
            return fail(err, CPN_E_DEADLINE_EXCEEDED,
                        "selftest.saxpy deadline exceeded %s (%.3f ms past it)", stage,
                        static_cast<double>(now - control->deadline_ns) / 1e6);
        }
    }
    return CPN_OK;
}

/* Checks a workload argument: non-null, a struct_size the plugin understands, a kind. */
cpn_status check_workload(const cpn_workload* w, const char* fn, cpn_msg* err) {
    if (w == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "%s: workload is NULL", fn);
    if (w->struct_size < sizeof(cpn_workload)) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "%s: workload->struct_size is %u, expected at least %zu", fn, w->struct_size,
                    sizeof(cpn_workload));
    }
    if (w->kind == nullptr || *w->kind == '\0') {
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: workload->kind is empty", fn);
    }
    return CPN_OK;
}

/* Reads selftest.saxpy's parameter "a" from params_json. */
bool saxpy_param(const cpn_workload* w, float* a, std::string* error) {
    double v = 0.0;
    bool found = false;
    if (!json_number_member(w->params_json, "a", &v, &found, error)) return false;
    if (!found) {
        *error = "selftest.saxpy needs params_json {\"a\": <number>}; \"a\" is missing";
        return false;
    }
    if (!std::isfinite(static_cast<float>(v))) {
        *error =
            "selftest.saxpy: params_json \"a\" = " + std::to_string(v) + " is not a finite float32";
        return false;
    }
    *a = static_cast<float>(v);
    return true;
}

/* Why this device cannot run the embedded kernel, or "" when it can. */
std::string arch_problem(const cpn_device_handle* d) {
    const int cc = d->cc_major * 10 + d->cc_minor;
    if (cc >= CPN_CUDA_MIN_ARCH) return "";
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "selftest.saxpy needs compute capability >= %d.%d; this device is %d.%d "
                  "(kernel built for " CPN_CUDA_KERNEL_TARGETS ")",
                  CPN_CUDA_MIN_ARCH / 10, CPN_CUDA_MIN_ARCH % 10, d->cc_major, d->cc_minor);
    return buf;
}

/* Finds the named buffer in a list; CPN_E_INVALID_ARGUMENT when it is missing, listed twice,
 * or when the list holds a buffer the workload does not know (a misspelt name). */
cpn_status find_buffers(const cpn_buffer* list, uint32_t count, const char* role,
                        const char* const* names, size_t name_count, const cpn_buffer** found,
                        cpn_msg* err) {
    if (count > 0 && list == nullptr) {
        return fail(err, CPN_E_INVALID_ARGUMENT, "selftest.saxpy: %s list is NULL", role);
    }
    for (size_t k = 0; k < name_count; ++k) found[k] = nullptr;
    for (uint32_t i = 0; i < count; ++i) {
        const char* name = list[i].name;
        if (name == nullptr) {
            return fail(err, CPN_E_INVALID_ARGUMENT, "selftest.saxpy: %s buffer #%u has no name",
                        role, i);
        }
        size_t k = 0;
        while (k < name_count && std::strcmp(name, names[k]) != 0) ++k;
        if (k == name_count) {
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "selftest.saxpy: unknown %s buffer \"%s\" (expected %s)", role, name,
                        name_count == 2 ? "\"x\" and \"y\"" : "\"y\"");
        }
        if (found[k] != nullptr) {
            return fail(err, CPN_E_INVALID_ARGUMENT, "selftest.saxpy: %s buffer \"%s\" given twice",
                        role, name);
        }
        found[k] = &list[i];
    }
    for (size_t k = 0; k < name_count; ++k) {
        if (found[k] == nullptr) {
            return fail(err, CPN_E_INVALID_ARGUMENT, "selftest.saxpy: %s buffer \"%s\" is missing",
                        role, names[k]);
        }
    }
    return CPN_OK;
}

/* Checks one float32 buffer: a size that is a multiple of 4 bytes, equal to `expected`, and
 * data present when the size is not zero. */
cpn_status check_float_buffer(const cpn_buffer* b, const char* role, uint64_t expected,
                              cpn_msg* err) {
    if (b->size % sizeof(float) != 0) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "selftest.saxpy: %s buffer \"%s\" is %" PRIu64
                    " bytes, not a multiple of 4 (float32)",
                    role, b->name, b->size);
    }
    if (b->size != expected) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "selftest.saxpy: %s buffer \"%s\" is %" PRIu64 " bytes, expected %" PRIu64
                    " (the size of input \"x\")",
                    role, b->name, b->size, expected);
    }
    if (b->size > 0 && b->data == nullptr) {
        return fail(err, CPN_E_INVALID_ARGUMENT, "selftest.saxpy: %s buffer \"%s\" has no data",
                    role, b->name);
    }
    return CPN_OK;
}

/* Writes the metrics object when the host's buffer can hold it, else "{}" when that fits. */
void write_result(cpn_run_io* io, uint64_t elements, double device_ms, double total_ms) {
    if (io->result_json == nullptr || io->result_json_capacity == 0) return;
    char buf[160];
    int n = std::snprintf(buf, sizeof buf,
                          "{\"elements\":%" PRIu64 ",\"device_ms\":%.3f,\"total_ms\":%.3f}",
                          elements, device_ms, total_ms);
    const char* text = (n > 0 && static_cast<uint64_t>(n) < io->result_json_capacity) ? buf : "{}";
    if (std::strlen(text) < io->result_json_capacity) {
        std::memcpy(io->result_json, text, std::strlen(text) + 1);
    } else {
        io->result_json[0] = '\0';
    }
}

}  // namespace

/* Opens CUDA device `index`: resolves the ordinal, reads its compute capability and retains
 * its primary context (shared with any other user of the device in this process, as the
 * runtime API would). */
cpn_status device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "device_open: out is NULL");
    *out = nullptr;
    DriverState st = driver_state();
    if (!st.usable) {
        return fail(err, st.broken ? CPN_E_UNAVAILABLE : CPN_E_NOT_FOUND, "%s", st.reason.c_str());
    }
    const DriverApi* api = st.api;
    CUdevice dev = 0;
    CUresult r = api->device_get(&dev, static_cast<int>(index));
    if (r != CUDA_SUCCESS) {
        return fail(err, r == CUDA_ERROR_INVALID_DEVICE ? CPN_E_NOT_FOUND : CPN_E_UNAVAILABLE,
                    "cuDeviceGet(%u) failed: %s", index, error_text(api, r).c_str());
    }
    int major = 0, minor = 0;
    r = api->device_get_attribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    if (r == CUDA_SUCCESS) {
        r = api->device_get_attribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    }
    if (r != CUDA_SUCCESS) {
        return fail(err, CPN_E_UNAVAILABLE,
                    "cuDeviceGetAttribute(COMPUTE_CAPABILITY, device %u) failed: %s", index,
                    error_text(api, r).c_str());
    }
    CUcontext ctx = nullptr;
    r = api->primary_ctx_retain(&ctx, dev);
    if (r != CUDA_SUCCESS) {
        /* Exclusive-process mode held by another process, a device being reset, ... */
        return fail(err, is_sticky(r) ? CPN_E_DEVICE_LOST : CPN_E_UNAVAILABLE,
                    "cuDevicePrimaryCtxRetain(device %u) failed: %s", index,
                    error_text(api, r).c_str());
    }
    auto* h = new (std::nothrow) cpn_device_handle;
    if (h == nullptr) {
        api->primary_ctx_release(dev);
        return fail(err, CPN_E_OUT_OF_MEMORY, "device_open: out of host memory");
    }
    h->api = api;
    h->index = index;
    h->dev = dev;
    h->ctx = ctx;
    h->cc_major = major;
    h->cc_minor = minor;
    *out = h;
    return CPN_OK;
}

/* Releases the primary context retained by device_open. NULL is a no-op. */
void device_close(cpn_device_handle* device) {
    if (device == nullptr) return;
    device->api->primary_ctx_release(device->dev);
    delete device;
}

/* Pure check: can this device run the workload as given? CPN_OK either way; `supported` and
 * `reason` carry the answer. */
cpn_status query(cpn_device_handle* device, const cpn_workload* workload, cpn_query_result* out,
                 cpn_msg* err) {
    if (device == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "query: device is NULL");
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "query: out is NULL");
    if (out->struct_size < sizeof(cpn_query_result)) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "query: out->struct_size is %u, expected at least %zu", out->struct_size,
                    sizeof(cpn_query_result));
    }
    if (cpn_status s = check_workload(workload, "query", err); s != CPN_OK) return s;
    const uint32_t size = out->struct_size;
    std::memset(out, 0, sizeof *out);
    out->struct_size = size;

    if (is_bench_kind(workload->kind)) return bench_query(device, workload, out, err);
    if (is_render_kind(workload->kind)) {
        if (std::string problem = arch_problem(device); !problem.empty()) {
            copy_str(out->reason, problem);
            return CPN_OK;
        }
        return render_query(device, workload, out, err);
    }
    if (std::strcmp(workload->kind, kSaxpyKind) != 0) {
        copy_str(out->reason, std::string("cuda backend does not support workload kind \"") +
                                  workload->kind + "\" (supported: " + kSaxpyKind + " render.pass " +
                                  bench_kinds_text() + ")");
        return CPN_OK;
    }
    float a = 0.0f;
    std::string problem;
    if (!saxpy_param(workload, &a, &problem)) {
        copy_str(out->reason, problem);
        return CPN_OK;
    }
    problem = arch_problem(device);
    if (!problem.empty()) {
        copy_str(out->reason, problem);
        return CPN_OK;
    }
    out->supported = 1;
    /* Two device arrays the size of the inputs, which the workload description does not say;
     * 0 means "unknown here". */
    out->device_memory_bytes = 0;
    return CPN_OK;
}

/* Loads the embedded fatbin into the device's primary context and looks up the kernel. The
 * driver picks the SASS for this GPU or JIT-compiles the PTX; when it can do neither the
 * workload is CPN_E_UNSUPPORTED on this device, named with the CUDA error. */
cpn_status prepare(cpn_device_handle* device, const cpn_workload* workload, cpn_prepared** out,
                   cpn_msg* err) {
    if (device == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "prepare: device is NULL");
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "prepare: out is NULL");
    *out = nullptr;
    if (cpn_status s = check_workload(workload, "prepare", err); s != CPN_OK) return s;
    if (is_bench_kind(workload->kind)) return bench_prepare(device, workload, out, err);
    if (is_render_kind(workload->kind)) {
        if (std::string problem = arch_problem(device); !problem.empty())
            return fail(err, CPN_E_UNSUPPORTED, "%s", problem.c_str());
        return render_prepare(device, workload, out, err);
    }
    if (std::strcmp(workload->kind, kSaxpyKind) != 0) {
        return fail(err, CPN_E_UNSUPPORTED,
                    "cuda backend does not support workload kind \"%s\" (supported: %s render.pass %s)",
                    workload->kind, kSaxpyKind, bench_kinds_text());
    }
    float a = 0.0f;
    std::string problem;
    if (!saxpy_param(workload, &a, &problem)) {
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s", problem.c_str());
    }
    problem = arch_problem(device);
    if (!problem.empty()) return fail(err, CPN_E_UNSUPPORTED, "%s", problem.c_str());

    const DriverApi* api = device->api;
    ScopedContext scope(api, device->ctx);
    if (scope.result() != CUDA_SUCCESS) {
        return cuda_fail(api, err, scope.result(), "cuCtxPushCurrent_v2");
    }
    CUmodule module = nullptr;
    CUresult r = api->module_load_data(&module, embedded::selftest_fatbin);
    if (r != CUDA_SUCCESS) {
        switch (r) {
            case CUDA_ERROR_NO_BINARY_FOR_GPU:
            case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
            case CUDA_ERROR_INVALID_PTX:
            case CUDA_ERROR_JIT_COMPILER_NOT_FOUND:
            case CUDA_ERROR_JIT_COMPILATION_DISABLED:
                return fail(err, CPN_E_UNSUPPORTED,
                            "cuModuleLoadData(selftest fatbin: " CPN_CUDA_KERNEL_TARGETS
                            ") failed on compute capability %d.%d: %s",
                            device->cc_major, device->cc_minor, error_text(api, r).c_str());
            default: return cuda_fail(api, err, r, "cuModuleLoadData(selftest fatbin)");
        }
    }
    CUfunction fn = nullptr;
    r = api->module_get_function(&fn, module, kKernelName);
    if (r != CUDA_SUCCESS) {
        api->module_unload(module);
        return cuda_fail(api, err, r, std::string("cuModuleGetFunction(") + kKernelName + ")");
    }
    auto* p = new (std::nothrow) cpn_prepared;
    if (p == nullptr) {
        api->module_unload(module);
        return fail(err, CPN_E_OUT_OF_MEMORY, "prepare: out of host memory");
    }
    p->device = device;
    p->module = module;
    p->function = fn;
    p->a = a;
    *out = p;
    return CPN_OK;
}

/* Runs y = a*x + y: validates the buffers (inputs "x" and "y", output "y", float32, equal
 * sizes), copies the inputs to the device, launches, synchronises and copies "y" back. The
 * cancel flag and the deadline are checked before each stage. */
cpn_status run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
               cpn_msg* err) {
    if (prepared == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "run: prepared is NULL");
    if (prepared->bench != nullptr) return bench_run(prepared, io, control, err);
    if (prepared->render != nullptr) {
        if (io == nullptr || io->struct_size < sizeof(cpn_run_io))
            return fail(err, CPN_E_INVALID_ARGUMENT, "run: io is NULL or smaller than this plugin's");
        return render_run(prepared, io, control, err);
    }
    if (io == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "run: io is NULL");
    if (io->struct_size < sizeof(cpn_run_io)) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "run: io->struct_size is %u, expected at least %zu", io->struct_size,
                    sizeof(cpn_run_io));
    }
    if (control != nullptr && control->struct_size < sizeof(cpn_run_control)) {
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "run: control->struct_size is %u, expected at least %zu", control->struct_size,
                    sizeof(cpn_run_control));
    }
    if (cpn_status s = check_control(control, "before it started", err); s != CPN_OK) return s;
    const auto t0 = std::chrono::steady_clock::now();

    static const char* const kInputs[] = {"x", "y"};
    static const char* const kOutputs[] = {"y"};
    const cpn_buffer* in[2] = {};
    const cpn_buffer* outb[1] = {};
    if (cpn_status s = find_buffers(io->inputs, io->input_count, "input", kInputs, 2, in, err);
        s != CPN_OK) {
        return s;
    }
    if (cpn_status s =
            find_buffers(io->outputs, io->output_count, "output", kOutputs, 1, outb, err);
        s != CPN_OK) {
        return s;
    }
    const uint64_t bytes = in[0]->size;
    if (cpn_status s = check_float_buffer(in[0], "input", bytes, err); s != CPN_OK) return s;
    if (cpn_status s = check_float_buffer(in[1], "input", bytes, err); s != CPN_OK) return s;
    if (cpn_status s = check_float_buffer(outb[0], "output", bytes, err); s != CPN_OK) return s;
    const unsigned long long n = bytes / sizeof(float);

    double device_ms = 0.0;
    if (n > 0) {
        const DriverApi* api = prepared->device->api;
        ScopedContext scope(api, prepared->device->ctx);
        if (scope.result() != CUDA_SUCCESS) {
            return cuda_fail(api, err, scope.result(), "cuCtxPushCurrent_v2");
        }
        DeviceBuffer dx(api), dy(api);
        CUresult r = api->mem_alloc(&dx.ptr, bytes);
        if (r != CUDA_SUCCESS) {
            return cuda_fail(api, err, r, "cuMemAlloc_v2(x, " + std::to_string(bytes) + " bytes)");
        }
        r = api->mem_alloc(&dy.ptr, bytes);
        if (r != CUDA_SUCCESS) {
            return cuda_fail(api, err, r, "cuMemAlloc_v2(y, " + std::to_string(bytes) + " bytes)");
        }
        r = api->memcpy_htod(dx.ptr, in[0]->data, bytes);
        if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, "cuMemcpyHtoD_v2(x)");
        r = api->memcpy_htod(dy.ptr, in[1]->data, bytes);
        if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, "cuMemcpyHtoD_v2(y)");
        if (cpn_status s = check_control(control, "after copying the inputs", err); s != CPN_OK) {
            return s;
        }

        unsigned long long blocks = (n + kBlockSize - 1) / kBlockSize;
        if (blocks > kMaxBlocks) blocks = kMaxBlocks;
        unsigned long long n_arg = n;
        float a_arg = prepared->a;
        void* args[] = {&n_arg, &a_arg, &dx.ptr, &dy.ptr};
        const auto k0 = std::chrono::steady_clock::now();
        r = api->launch_kernel(prepared->function, static_cast<unsigned>(blocks), 1, 1, kBlockSize,
                               1, 1, 0, nullptr, args, nullptr);
        if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, "cuLaunchKernel(cpn_selftest_saxpy)");
        r = api->ctx_synchronize();
        if (r != CUDA_SUCCESS) {
            return cuda_fail(api, err, r, "cuCtxSynchronize after cpn_selftest_saxpy");
        }
        device_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - k0)
                        .count();
        r = api->memcpy_dtoh(outb[0]->data, dy.ptr, bytes);
        if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, "cuMemcpyDtoH_v2(y)");
    }

    if (control != nullptr && control->progress != nullptr) {
        control->progress(control->user, 1.0, "done");
    }
    const double total_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    write_result(io, n, device_ms, total_ms);
    return CPN_OK;
}

/* Unloads the module prepare loaded (or frees a bench workload's state). NULL is a no-op. Must
 * come before device_close. */
void release(cpn_prepared* prepared) {
    if (prepared == nullptr) return;
    if (prepared->bench != nullptr) {
        bench_release(prepared->bench);
        delete prepared;
        return;
    }
    if (prepared->render != nullptr) {
        release_render_prepared(prepared);
        delete prepared;
        return;
    }
    const DriverApi* api = prepared->device->api;
    {
        ScopedContext scope(api, prepared->device->ctx);
        if (prepared->module != nullptr) api->module_unload(prepared->module);
    }
    delete prepared;
}

}  // namespace cpn::cuda
