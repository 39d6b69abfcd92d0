// opencl_exec.cpp: the execution half of the OpenCL backend.
//
// device_open makes one context and one in-order queue per opened device; prepare builds (and
// caches on the device) the program a workload kind needs and makes a kernel of it; run moves
// the host's buffers to the device, launches, and reads the result back. Kinds: "selftest.saxpy"
// (y = a*x + y in fp32), which the host uses to prove a device executes correctly, and the
// "bench.*" kinds of cpn_bench.h, which query/prepare/run/release hand to opencl_bench.cpp
// (a Prepared then holds a bench::Bench; the device owns the bench programs it built).
//
// The opaque cpn_device_handle / cpn_prepared pointers the host holds are Device / Prepared
// objects of this file.

// clCreateCommandQueue is deprecated since 2.0 but is the only queue constructor an OpenCL 1.x
// platform has; it is used only for those.
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <vector>

#include "cpn_backend_util.hpp"
#include "opencl_bench.hpp"
#include "opencl_infer.hpp"
#include "opencl_internal.hpp"
#include "opencl_render.hpp"

namespace cpn::opencl {

using plugin::fail;
using plugin::find_buffer;

namespace {

constexpr const char* kSaxpyKind = "selftest.saxpy";
constexpr const char* kSupportedKinds = "selftest.saxpy, render.pass and the bench.* kinds of cpn_bench.h";
constexpr const char* kSaxpyKernelName = "cpn_saxpy";

/* fma(), not a*x+y: the result is then exactly the correctly rounded fused value on every
 * conforming device, instead of depending on whether the compiler contracts the expression. */
constexpr const char* kSaxpySource = R"CLC(
__kernel void cpn_saxpy(const float a, __global const float* restrict x,
                        __global float* restrict y, const ulong n) {
    const size_t i = get_global_id(0);
    if (i < n) y[i] = fma(a, x[i], y[i]);
}
)CLC";


/* One opened device: its context, queue and the programs built for it so far. */
struct Device {
    DeviceRef ref;
    uint32_t index = 0;
    std::string name;           // for messages: "device 0 (pthread-skylake...)"
    int platform_version = 0;   // 120, 300, ... from CL_PLATFORM_VERSION
    cl_ulong max_alloc = 0;     // CL_DEVICE_MAX_MEM_ALLOC_SIZE; 0 when unknown
    size_t max_item_size0 = 0;  // CL_DEVICE_MAX_WORK_ITEM_SIZES[0]; 0 when unknown
    bool profiling = false;     // the queue records event timestamps
    cl_context context = nullptr;
    cl_command_queue queue = nullptr;

    std::mutex mu;  // guards saxpy_program, render_program and infer_program
    cl_program saxpy_program = nullptr;
    cl_program render_program = nullptr;
    cl_program infer_program = nullptr;  // the inference kernels (opencl_infer.cpp)
    bench::ProgramCache* bench_programs = nullptr;  // bench.* programs (own lock)
};

/* One prepared workload. The kernel's arguments are per-kernel state, so runs of the same
 * Prepared are serialised by its mutex; different Prepared objects run concurrently. */
struct Prepared {
    Device* device = nullptr;
    bench::Bench* bench = nullptr;  // set for bench.* kinds; then kernel is NULL
    render::Render* render = nullptr;  // set for render.pass; then kernel is NULL
    cl_kernel kernel = nullptr;
    float a = 1.0f;
    uint64_t n = 0;  // 0: any length; otherwise the element count params_json promised
    std::mutex mu;
};

struct SaxpyParams {
    float a = 1.0f;
    uint64_t n = 0;
};

Device* as_device(cpn_device_handle* h) { return reinterpret_cast<Device*>(h); }
Prepared* as_prepared(cpn_prepared* p) { return reinterpret_cast<Prepared*>(p); }

std::string describe(const Device& d) {
    return "device " + std::to_string(d.index) + " (" + d.name + ")";
}

bench::DeviceView bench_view(const Device& d) {
    bench::DeviceView v;
    v.device = d.ref.device;
    v.context = d.context;
    v.platform_version = d.platform_version;
    v.label = describe(d);
    return v;
}

render::DeviceView render_view(Device& d) {
    render::DeviceView v;
    v.device = d.ref.device;
    v.context = d.context;
    v.queue = d.queue;
    v.max_alloc = d.max_alloc;
    v.label = describe(d);
    v.mu = &d.mu;
    v.program = &d.render_program;
    return v;
}

uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

/* The cancel and deadline checks a run makes before each step that queues device work. */
cpn_status check_control(const cpn_run_control* control, const char* before, cpn_msg* err) {
    if (control == nullptr) return CPN_OK;
    if (control->cancel != nullptr && *control->cancel != 0)
        return fail(err, CPN_E_CANCELLED, "opencl run: cancelled before %s", before);
    if (control->deadline_ns != 0 && monotonic_ns() >= control->deadline_ns)
        return fail(err, CPN_E_DEADLINE_EXCEEDED, "opencl run: deadline passed before %s", before);
    return CPN_OK;
}

/* Called by the driver, possibly from its own threads, for asynchronous context errors. */
void CL_CALLBACK context_notify(const char* errinfo, const void*, size_t, void*) {
    log(3, std::string("OpenCL context error: ") + (errinfo != nullptr ? errinfo : "(no text)"));
}

/* Checks the parts of a cpn_workload every entry point relies on. */
cpn_status check_workload(const cpn_workload* w, const char* where, cpn_msg* err) {
    if (w == nullptr || w->struct_size < sizeof(cpn_workload))
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "opencl %s: cpn_workload is NULL or smaller than this plugin's (%zu bytes)",
                    where, sizeof(cpn_workload));
    if (w->kind == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "opencl %s: workload kind is NULL", where);
    return CPN_OK;
}

/*
 * params_json for selftest.saxpy: {"a": <number>, "n": <element count, optional>}. "a" defaults
 * to 1 so that a bare "{}" selftest still runs; "n" lets query size the job before buffers
 * exist. Unknown keys are ignored so the host may add its own bookkeeping.
 */
cpn_status parse_saxpy(const char* text, SaxpyParams* out, cpn_msg* err) {
    const nlohmann::json j =
        nlohmann::json::parse(text != nullptr ? text : "{}", nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: params_json is not a JSON object: %.200s",
                    kSaxpyKind, text != nullptr ? text : "(null)");
    if (auto it = j.find("a"); it != j.end()) {
        if (!it->is_number())
            return fail(err, CPN_E_INVALID_ARGUMENT, "%s: param \"a\" must be a number, got %s",
                        kSaxpyKind, it->type_name());
        out->a = it->get<float>();
    }
    if (auto it = j.find("n"); it != j.end()) {
        if (!it->is_number_integer() || (!it->is_number_unsigned() && it->get<int64_t>() < 0))
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: param \"n\" must be a non-negative integer (element count)",
                        kSaxpyKind);
        out->n = it->get<uint64_t>();
    }
    return CPN_OK;
}

/* Whether one float32 array of n elements fits a single allocation on this device; the reason
 * names the limit when it does not. */
bool fits_allocation(const Device& d, uint64_t n, std::string* reason) {
    if (d.max_alloc == 0 || n <= d.max_alloc / sizeof(float)) return true;
    *reason = "a float32 array of " + std::to_string(n) + " elements (" +
              std::to_string(n * sizeof(float)) + " bytes) exceeds CL_DEVICE_MAX_MEM_ALLOC_SIZE (" +
              std::to_string(d.max_alloc) + " bytes) of " + describe(d);
    return false;
}

std::string unsupported_kind(const char* kind) {
    return std::string("workload kind \"") + kind +
           "\" is not supported by the opencl backend (supported: " + kSupportedKinds + ")";
}

/*
 * Builds the saxpy program once per device and caches it there; later prepares only make a
 * kernel. A build failure returns the compiler's log (truncated to the message size), which is
 * the only place the reason appears.
 */
cpn_status saxpy_program(Device* d, cl_program* out, cpn_msg* err) {
    std::lock_guard<std::mutex> lock(d->mu);
    if (d->saxpy_program != nullptr) {
        *out = d->saxpy_program;
        return CPN_OK;
    }
    cl_int rc = CL_SUCCESS;
    const char* src = kSaxpySource;
    cl_program prog = clCreateProgramWithSource(d->context, 1, &src, nullptr, &rc);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, "clCreateProgramWithSource on " + describe(*d));
    rc = clBuildProgram(prog, 1, &d->ref.device, "", nullptr, nullptr);
    if (rc != CL_SUCCESS) {
        std::string build_log;
        size_t n = 0;
        if (clGetProgramBuildInfo(prog, d->ref.device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &n) ==
                CL_SUCCESS &&
            n > 0) {
            build_log.assign(n, '\0');
            if (clGetProgramBuildInfo(prog, d->ref.device, CL_PROGRAM_BUILD_LOG, n,
                                      build_log.data(), nullptr) != CL_SUCCESS)
                build_log.clear();
            build_log = plugin::trim(build_log);
        }
        clReleaseProgram(prog);
        log(4, "clBuildProgram failed on " + describe(*d) + ": " + build_log);
        const cpn_status st = rc == CL_BUILD_PROGRAM_FAILURE ? CPN_E_INTERNAL : status_from_cl(rc);
        return fail(err, st, "clBuildProgram failed on %s: %s (%d); build log: %s",
                    describe(*d).c_str(), cl_error_name(rc), static_cast<int>(rc),
                    build_log.empty() ? "(empty)" : build_log.c_str());
    }
    d->saxpy_program = prog;
    *out = prog;
    return CPN_OK;
}

/*
 * Checks the buffers of a saxpy run: exactly inputs "x" and "y" and output "y", all the same
 * byte size, a whole number of float32 elements, matching "n" when params gave one. Every
 * message names the offending buffer, because that is what the caller has to fix.
 */
cpn_status validate_saxpy_io(const Prepared& p, const cpn_run_io& io, uint64_t* n_out,
                             cpn_msg* err) {
    if (io.input_count > 0 && io.inputs == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: inputs is NULL", kSaxpyKind);
    if (io.output_count > 0 && io.outputs == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: outputs is NULL", kSaxpyKind);
    for (uint32_t i = 0; i < io.input_count; ++i) {
        const char* name = io.inputs[i].name;
        if (name == nullptr || (std::strcmp(name, "x") != 0 && std::strcmp(name, "y") != 0))
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: unexpected input buffer \"%s\" (the inputs are \"x\" and \"y\")",
                        kSaxpyKind, name != nullptr ? name : "(null)");
        if (find_buffer(io.inputs, i, name) != nullptr)
            return fail(err, CPN_E_INVALID_ARGUMENT, "%s: input buffer \"%s\" given twice",
                        kSaxpyKind, name);
    }
    for (uint32_t i = 0; i < io.output_count; ++i) {
        const char* name = io.outputs[i].name;
        if (name == nullptr || std::strcmp(name, "y") != 0)
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: unexpected output buffer \"%s\" (the output is \"y\")", kSaxpyKind,
                        name != nullptr ? name : "(null)");
        if (i > 0)
            return fail(err, CPN_E_INVALID_ARGUMENT, "%s: output buffer \"y\" given twice",
                        kSaxpyKind);
    }
    const cpn_buffer* x = find_buffer(io.inputs, io.input_count, "x");
    const cpn_buffer* y = find_buffer(io.inputs, io.input_count, "y");
    const cpn_buffer* out = find_buffer(io.outputs, io.output_count, "y");
    if (x == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: input buffer \"x\" is missing", kSaxpyKind);
    if (y == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: input buffer \"y\" is missing", kSaxpyKind);
    if (out == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: output buffer \"y\" is missing", kSaxpyKind);
    if (x->size % sizeof(float) != 0)
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "%s: input buffer \"x\" has %" PRIu64 " bytes, not a whole number of float32",
                    kSaxpyKind, x->size);
    if (y->size != x->size)
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "%s: input buffer \"y\" has %" PRIu64 " bytes but \"x\" has %" PRIu64,
                    kSaxpyKind, y->size, x->size);
    if (out->size != x->size)
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "%s: output buffer \"y\" has %" PRIu64 " bytes but input \"x\" has %" PRIu64,
                    kSaxpyKind, out->size, x->size);
    if (x->size > 0 && (x->data == nullptr || y->data == nullptr || out->data == nullptr))
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: buffer \"%s\" has no data", kSaxpyKind,
                    x->data == nullptr   ? "x"
                    : y->data == nullptr ? "y"
                                         : "y (output)");
    const uint64_t n = x->size / sizeof(float);
    if (p.n != 0 && n != p.n)
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "%s: input buffer \"x\" holds %" PRIu64 " elements but params say n=%" PRIu64,
                    kSaxpyKind, n, p.n);
    *n_out = n;
    return CPN_OK;
}

/* Writes {"elements":N,"device_ms":X,"total_ms":Y} when it fits the host's buffer; otherwise
 * leaves an empty string, since a truncated object would not parse. */
void write_result(cpn_run_io* io, uint64_t n, double device_ms, double total_ms) {
    if (io->result_json == nullptr || io->result_json_capacity == 0) return;
    char buf[160];
    int len = std::snprintf(buf, sizeof buf,
                            "{\"elements\":%" PRIu64 ",\"device_ms\":%.6f,\"total_ms\":%.6f}", n,
                            device_ms, total_ms);
    if (len > 0 && static_cast<uint64_t>(len) < io->result_json_capacity)
        std::memcpy(io->result_json, buf, static_cast<size_t>(len) + 1);
    else
        io->result_json[0] = '\0';
}

/* The saxpy run proper; the caller holds p->mu and has checked buffers and controls. */
cpn_status run_saxpy(Prepared* p, cpn_run_io* io, const cpn_run_control* control, uint64_t n,
                     cpn_msg* err) {
    const uint64_t t0 = monotonic_ns();
    Device* d = p->device;
    const cpn_buffer* x = find_buffer(io->inputs, io->input_count, "x");
    const cpn_buffer* y = find_buffer(io->inputs, io->input_count, "y");
    cpn_buffer* out = find_buffer(io->outputs, io->output_count, "y");
    double device_ms = 0.0;

    if (n > 0) {  // OpenCL has no zero-sized buffers; an empty saxpy is trivially done
        std::string why;
        if (!fits_allocation(*d, n, &why))
            return fail(err, CPN_E_UNSUPPORTED, "%s: %s", kSaxpyKind, why.c_str());
        const size_t bytes = static_cast<size_t>(x->size);
        cl_int rc = CL_SUCCESS;
        // COPY_HOST_PTR reads the host array during the call and never writes it, so the
        // const_cast does not let the device modify the host's input.
        MemRef xb(clCreateBuffer(d->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes,
                                 const_cast<void*>(static_cast<const void*>(x->data)), &rc));
        if (rc != CL_SUCCESS) return cl_fail(err, rc, "clCreateBuffer(\"x\") on " + describe(*d));
        MemRef yb(clCreateBuffer(d->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                                 y->data, &rc));
        if (rc != CL_SUCCESS) return cl_fail(err, rc, "clCreateBuffer(\"y\") on " + describe(*d));

        cl_mem xm = xb.get(), ym = yb.get();
        const cl_float a = p->a;
        const cl_ulong count = n;
        if ((rc = clSetKernelArg(p->kernel, 0, sizeof a, &a)) != CL_SUCCESS ||
            (rc = clSetKernelArg(p->kernel, 1, sizeof xm, &xm)) != CL_SUCCESS ||
            (rc = clSetKernelArg(p->kernel, 2, sizeof ym, &ym)) != CL_SUCCESS ||
            (rc = clSetKernelArg(p->kernel, 3, sizeof count, &count)) != CL_SUCCESS)
            return cl_fail(err, rc, "clSetKernelArg(cpn_saxpy)");

        // A work-group size the kernel and device both accept; the global size is rounded up
        // to a multiple of it (the kernel ignores the tail) because OpenCL 1.x requires that.
        size_t local = 256;
        size_t kernel_wg = 0;
        if (clGetKernelWorkGroupInfo(p->kernel, d->ref.device, CL_KERNEL_WORK_GROUP_SIZE,
                                     sizeof kernel_wg, &kernel_wg, nullptr) == CL_SUCCESS &&
            kernel_wg > 0)
            local = std::min(local, kernel_wg);
        if (d->max_item_size0 > 0) local = std::min(local, d->max_item_size0);
        const size_t global = static_cast<size_t>((n + local - 1) / local * local);

        cpn_status st = check_control(control, "the kernel launch", err);
        if (st != CPN_OK) return st;
        EventRef ev;
        rc = clEnqueueNDRangeKernel(d->queue, p->kernel, 1, nullptr, &global, &local, 0, nullptr,
                                    ev.out());
        if (rc != CL_SUCCESS)
            return cl_fail(err, rc, "clEnqueueNDRangeKernel(cpn_saxpy) on " + describe(*d));
        // The blocking read waits for the kernel (the queue is in order) and surfaces its
        // failure as CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST.
        rc = clEnqueueReadBuffer(d->queue, ym, CL_TRUE, 0, bytes, out->data, 0, nullptr, nullptr);
        if (rc != CL_SUCCESS)
            return cl_fail(err, rc, "clEnqueueReadBuffer(\"y\") on " + describe(*d));

        cl_ulong start = 0, end = 0;
        if (d->profiling &&
            clGetEventProfilingInfo(ev.get(), CL_PROFILING_COMMAND_START, sizeof start, &start,
                                    nullptr) == CL_SUCCESS &&
            clGetEventProfilingInfo(ev.get(), CL_PROFILING_COMMAND_END, sizeof end, &end,
                                    nullptr) == CL_SUCCESS &&
            end >= start)
            device_ms = static_cast<double>(end - start) / 1e6;
    }

    if (control != nullptr && control->progress != nullptr)
        control->progress(control->user, 1.0, "done");
    write_result(io, n, device_ms, static_cast<double>(monotonic_ns() - t0) / 1e6);
    return CPN_OK;
}

}  // namespace

/* What opencl_infer.cpp needs of an opened device. */
bool infer_ext::device_view(cpn_device_handle* handle, infer_ext::DeviceView* out) {
    Device* d = as_device(handle);
    if (d == nullptr || out == nullptr) return false;
    out->device = d->ref.device;
    out->context = d->context;
    out->queue = d->queue;
    out->max_alloc = d->max_alloc;
    out->label = describe(*d);
    out->mu = &d->mu;
    out->program = &d->infer_program;
    return true;
}

/* ---- entry points ------------------------------------------------------------------------ */

/*
 * Opens device `index` of the flat list: a context holding only that device and an in-order
 * queue with profiling (for device_ms). Platforms before 2.0 lack
 * clCreateCommandQueueWithProperties, so the platform's version picks the constructor; a
 * device that refuses profiling gets a plain queue rather than failing.
 */
cpn_status device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl device_open: out is NULL");
    *out = nullptr;
    DeviceRef ref;
    cpn_status st = lookup_device(index, &ref, err);
    if (st != CPN_OK) return st;

    auto d = std::make_unique<Device>();
    d->ref = ref;
    d->index = index;
    if (!device_string(ref.device, CL_DEVICE_NAME, &d->name)) d->name = "unnamed";
    std::string pv;
    if (platform_string(ref.platform, CL_PLATFORM_VERSION, &pv))
        d->platform_version = parse_cl_version(pv);
    clGetDeviceInfo(ref.device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof d->max_alloc, &d->max_alloc,
                    nullptr);
    size_t dims_bytes = 0;
    if (clGetDeviceInfo(ref.device, CL_DEVICE_MAX_WORK_ITEM_SIZES, 0, nullptr, &dims_bytes) ==
            CL_SUCCESS &&
        dims_bytes >= sizeof(size_t)) {
        std::vector<size_t> dims(dims_bytes / sizeof(size_t));
        if (clGetDeviceInfo(ref.device, CL_DEVICE_MAX_WORK_ITEM_SIZES, dims.size() * sizeof(size_t),
                            dims.data(), nullptr) == CL_SUCCESS)
            d->max_item_size0 = dims[0];
    }

    cl_int rc = CL_SUCCESS;
    const cl_context_properties props[] = {
        CL_CONTEXT_PLATFORM, reinterpret_cast<cl_context_properties>(ref.platform), 0};
    d->context = clCreateContext(props, 1, &ref.device, context_notify, nullptr, &rc);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, "clCreateContext on " + describe(*d));

    auto make_queue = [&](bool profiling) -> cl_command_queue {
        const cl_command_queue_properties qp = profiling ? CL_QUEUE_PROFILING_ENABLE : 0;
        if (d->platform_version >= 200) {
            const cl_queue_properties qprops[] = {CL_QUEUE_PROPERTIES, qp, 0};
            return clCreateCommandQueueWithProperties(d->context, d->ref.device, qprops, &rc);
        }
        return clCreateCommandQueue(d->context, d->ref.device, qp, &rc);
    };
    d->queue = make_queue(true);
    d->profiling = rc == CL_SUCCESS;
    if (rc == CL_INVALID_QUEUE_PROPERTIES || rc == CL_INVALID_VALUE) d->queue = make_queue(false);
    if (rc != CL_SUCCESS) {
        clReleaseContext(d->context);
        return cl_fail(err, rc, "clCreateCommandQueue on " + describe(*d));
    }
    d->bench_programs = bench::new_program_cache();
    log(1, "opened " + describe(*d));
    *out = reinterpret_cast<cpn_device_handle*>(d.release());
    return CPN_OK;
}

/* Frees the cached programs, the queue and the context. The host releases every prepared
 * workload of a device before closing it. */
void device_close(cpn_device_handle* handle) {
    Device* d = as_device(handle);
    if (d == nullptr) return;
    if (d->queue != nullptr) {
        clFinish(d->queue);
        clReleaseCommandQueue(d->queue);
    }
    if (d->saxpy_program != nullptr) clReleaseProgram(d->saxpy_program);
    if (d->render_program != nullptr) clReleaseProgram(d->render_program);
    if (d->infer_program != nullptr) clReleaseProgram(d->infer_program);
    bench::free_program_cache(d->bench_programs);
    if (d->context != nullptr) clReleaseContext(d->context);
    delete d;
}

/*
 * Pure: says whether the device can run the workload, without allocating on it. An unknown
 * kind is a normal "no" (CPN_OK, supported=0); malformed params are the caller's error.
 */
cpn_status query(cpn_device_handle* handle, const cpn_workload* w, cpn_query_result* out,
                 cpn_msg* err) {
    Device* d = as_device(handle);
    if (d == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "opencl query: device handle is NULL");
    cpn_status st = check_workload(w, "query", err);
    if (st != CPN_OK) return st;
    if (out == nullptr || out->struct_size < sizeof(cpn_query_result))
        return fail(
            err, CPN_E_INVALID_ARGUMENT,
            "opencl query: cpn_query_result is NULL or smaller than this plugin's (%zu bytes)",
            sizeof(cpn_query_result));
    const uint32_t size = out->struct_size;
    std::memset(out, 0, sizeof *out);
    out->struct_size = size;

    if (bench::is_bench_kind(w->kind)) return bench::query(bench_view(*d), w, out, err);
    if (render::is_render_kind(w->kind)) return render::query(render_view(*d), w, out, err);
    if (std::strcmp(w->kind, kSaxpyKind) != 0) {
        plugin::copy_str(out->reason, unsupported_kind(w->kind));
        return CPN_OK;
    }
    SaxpyParams params;
    st = parse_saxpy(w->params_json, &params, err);
    if (st != CPN_OK) {
        plugin::copy_str(out->reason, err != nullptr ? err->text : "invalid params_json");
        return st;
    }
    std::string why;
    if (!fits_allocation(*d, params.n, &why)) {
        plugin::copy_str(out->reason, why);
        return CPN_OK;
    }
    out->supported = 1;
    out->device_memory_bytes = 2 * params.n * sizeof(float);  // x and y; 0 when n is unknown
    return CPN_OK;
}

/* Builds (or reuses) the program for the workload's kind and makes a kernel of it. */
cpn_status prepare(cpn_device_handle* handle, const cpn_workload* w, cpn_prepared** out,
                   cpn_msg* err) {
    Device* d = as_device(handle);
    if (d == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "opencl prepare: device handle is NULL");
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl prepare: out is NULL");
    *out = nullptr;
    cpn_status st = check_workload(w, "prepare", err);
    if (st != CPN_OK) return st;
    if (bench::is_bench_kind(w->kind)) {
        bench::Bench* b = nullptr;
        st = bench::prepare(bench_view(*d), d->bench_programs, w, &b, err);
        if (st != CPN_OK) return st;
        auto p = std::make_unique<Prepared>();
        p->device = d;
        p->bench = b;
        *out = reinterpret_cast<cpn_prepared*>(p.release());
        return CPN_OK;
    }
    if (render::is_render_kind(w->kind)) {
        render::Render* r = nullptr;
        st = render::prepare(render_view(*d), w, &r, err);
        if (st != CPN_OK) return st;
        auto p = std::make_unique<Prepared>();
        p->device = d;
        p->render = r;
        *out = reinterpret_cast<cpn_prepared*>(p.release());
        return CPN_OK;
    }
    if (std::strcmp(w->kind, kSaxpyKind) != 0)
        return fail(err, CPN_E_UNSUPPORTED, "%s", unsupported_kind(w->kind).c_str());

    SaxpyParams params;
    st = parse_saxpy(w->params_json, &params, err);
    if (st != CPN_OK) return st;
    std::string why;
    if (!fits_allocation(*d, params.n, &why))
        return fail(err, CPN_E_UNSUPPORTED, "%s: %s", kSaxpyKind, why.c_str());

    cl_program prog = nullptr;
    st = saxpy_program(d, &prog, err);
    if (st != CPN_OK) return st;
    cl_int rc = CL_SUCCESS;
    cl_kernel kernel = clCreateKernel(prog, kSaxpyKernelName, &rc);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, "clCreateKernel(cpn_saxpy) on " + describe(*d));

    auto p = std::make_unique<Prepared>();
    p->device = d;
    p->kernel = kernel;
    p->a = params.a;
    p->n = params.n;
    *out = reinterpret_cast<cpn_prepared*>(p.release());
    return CPN_OK;
}

/* Validates the run's arguments and buffers, then runs the prepared workload. */
cpn_status run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
               cpn_msg* err) {
    Prepared* p = as_prepared(prepared);
    if (p == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl run: prepared is NULL");
    if (io == nullptr || io->struct_size < sizeof(cpn_run_io))
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "opencl run: cpn_run_io is NULL or smaller than this plugin's (%zu bytes)",
                    sizeof(cpn_run_io));
    if (control != nullptr && control->struct_size < sizeof(cpn_run_control))
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "opencl run: cpn_run_control is smaller than this plugin's (%zu bytes)",
                    sizeof(cpn_run_control));
    if (io->result_json != nullptr && io->result_json_capacity > 0) io->result_json[0] = '\0';

    cpn_status st = check_control(control, "the run started", err);
    if (st != CPN_OK) return st;
    if (p->bench != nullptr) {
        std::lock_guard<std::mutex> lock(p->mu);
        return bench::run(p->bench, io, control, err);
    }
    if (p->render != nullptr) return render::run(p->render, io, control, err);
    uint64_t n = 0;
    st = validate_saxpy_io(*p, *io, &n, err);
    if (st != CPN_OK) return st;
    std::lock_guard<std::mutex> lock(p->mu);
    st = check_control(control, "the upload", err);
    if (st != CPN_OK) return st;
    return run_saxpy(p, io, control, n, err);
}

void release(cpn_prepared* prepared) {
    Prepared* p = as_prepared(prepared);
    if (p == nullptr) return;
    if (p->bench != nullptr) bench::release(p->bench);
    if (p->render != nullptr) render::release(p->render);
    if (p->kernel != nullptr) clReleaseKernel(p->kernel);
    delete p;
}

}  // namespace cpn::opencl
