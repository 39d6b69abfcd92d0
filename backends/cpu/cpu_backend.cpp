// cpu_backend.cpp: the CPU backend plugin (kinds: selftest.saxpy, bench.*, render.pass, infer.bench; the
// inference extension cpn_infer_v1 through get_proc). Discovery of the CPU itself lives in the core (the
// agent must list the CPU with every plugin removed); this plugin is the CPU's execution path,
// so workloads reach the CPU through the same interface as every accelerator.
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "cpn_backend.h"
#include "cpn_backend_util.hpp"
#include "cpu_bench.hpp"
#include "cpu_infer.hpp"
#include "cpu_render.hpp"

using namespace cpn::plugin;

namespace {

struct CpuDevice {
    unsigned threads = 1;
};

struct Prepared {
    CpuDevice* device = nullptr;
    float a = 0.f;
    cpn::cpubench::Bench* bench = nullptr;  // set for the "bench.*" kinds (cpu_bench.cpp)
    cpn::cpurender::Render* render = nullptr;  // set for render.pass (cpu_render.cpp)
    cpn::cpuinfer::Bench* infer = nullptr;     // set for infer.bench (cpu_infer.cpp)
};

std::string cpuinfo_field(const std::string& key) {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        if (trim(line.substr(0, colon)) == key) return trim(line.substr(colon + 1));
    }
    return {};
}

uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

cpn_status probe(cpn_probe_info* out, cpn_msg*) {
    out->usable = 1;
    copy_str(out->runtime_name, "native");
    struct utsname u {};
    if (uname(&u) == 0) copy_str(out->runtime_version, std::string(u.sysname) + " " + u.release);
    return CPN_OK;
}

cpn_status device_count(uint32_t* count, cpn_msg*) {
    *count = 1;
    return CPN_OK;
}

cpn_status device_info(uint32_t index, cpn_device_desc* d, cpn_msg* err) {
    if (index != 0) return fail(err, CPN_E_INVALID_ARGUMENT, "cpu backend: no device %u", index);
    d->device_class = CPN_CLASS_CPU;
    std::string model = cpuinfo_field("model name");
    copy_str(d->model, model);
    copy_str(d->native_name, model);
    copy_str(d->vendor, cpuinfo_field("vendor_id"));
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    d->memory_bytes = pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * page : 0;
    d->compute_units = std::max(1u, std::thread::hardware_concurrency());
    d->precisions = CPN_PREC_FP64 | CPN_PREC_FP32;
    d->healthy = 1;
    attr_int(d, "cpu.worker_threads", d->compute_units);
    cpn::cpubench::describe_device(d);  // precisions the ISA has, and cpu.bench_isa
    return CPN_OK;
}

cpn_status device_open(uint32_t index, cpn_device_handle** out, cpn_msg* err) {
    if (index != 0) return fail(err, CPN_E_INVALID_ARGUMENT, "cpu backend: no device %u", index);
    auto* dev = new (std::nothrow) CpuDevice{std::max(1u, std::thread::hardware_concurrency())};
    if (dev == nullptr) return fail(err, CPN_E_OUT_OF_MEMORY, "cpu backend: out of memory");
    *out = reinterpret_cast<cpn_device_handle*>(dev);
    return CPN_OK;
}

void device_close(cpn_device_handle* h) { delete reinterpret_cast<CpuDevice*>(h); }

cpn_status query(cpn_device_handle*, const cpn_workload* w, cpn_query_result* out, cpn_msg* err) {
    if (cpn::cpubench::is_bench_kind(w->kind)) return cpn::cpubench::query(w, out, err);
    if (cpn::cpurender::is_render_kind(w->kind)) return cpn::cpurender::query(w, out, err);
    if (cpn::cpuinfer::is_bench_kind(w->kind)) {
        out->supported = 1;
        return CPN_OK;
    }
    if (std::strcmp(w->kind, "selftest.saxpy") == 0) {
        out->supported = 1;
        return CPN_OK;
    }
    out->supported = 0;
    copy_str(out->reason, std::string("cpu backend: workload kind '") + w->kind + "' is not supported");
    return CPN_OK;
}

/* Reads "a" from a JSON object like {"a": 2.5}; the only parameter selftest.saxpy takes. */
bool parse_a(const char* json, float& a) {
    const char* p = std::strstr(json, "\"a\"");
    if (p == nullptr) return false;
    p = std::strchr(p + 3, ':');
    if (p == nullptr) return false;
    char* end = nullptr;
    a = std::strtof(p + 1, &end);
    return end != p + 1;
}

cpn_status prepare(cpn_device_handle* h, const cpn_workload* w, cpn_prepared** out, cpn_msg* err) {
    if (cpn::cpubench::is_bench_kind(w->kind)) {
        cpn::cpubench::Bench* bench = nullptr;
        if (cpn_status st = cpn::cpubench::prepare(w, &bench, err); st != CPN_OK) return st;
        auto* p = new (std::nothrow) Prepared{reinterpret_cast<CpuDevice*>(h), 0.f, bench, nullptr};
        if (p == nullptr) {
            cpn::cpubench::release(bench);
            return fail(err, CPN_E_OUT_OF_MEMORY, "cpu backend: out of memory");
        }
        *out = reinterpret_cast<cpn_prepared*>(p);
        return CPN_OK;
    }
    if (cpn::cpurender::is_render_kind(w->kind)) {
        cpn::cpurender::Render* render = nullptr;
        if (cpn_status st = cpn::cpurender::prepare(w, reinterpret_cast<CpuDevice*>(h)->threads, &render, err); st != CPN_OK)
            return st;
        auto* p = new (std::nothrow) Prepared{reinterpret_cast<CpuDevice*>(h), 0.f, nullptr, render};
        if (p == nullptr) {
            cpn::cpurender::release(render);
            return fail(err, CPN_E_OUT_OF_MEMORY, "cpu backend: out of memory");
        }
        *out = reinterpret_cast<cpn_prepared*>(p);
        return CPN_OK;
    }
    if (cpn::cpuinfer::is_bench_kind(w->kind)) {
        cpn::cpuinfer::Bench* bench = nullptr;
        if (cpn_status st = cpn::cpuinfer::bench_prepare(w, &bench, err); st != CPN_OK) return st;
        auto* p = new (std::nothrow) Prepared{reinterpret_cast<CpuDevice*>(h), 0.f, nullptr, nullptr, bench};
        if (p == nullptr) {
            cpn::cpuinfer::bench_release(bench);
            return fail(err, CPN_E_OUT_OF_MEMORY, "cpu backend: out of memory");
        }
        *out = reinterpret_cast<cpn_prepared*>(p);
        return CPN_OK;
    }
    if (std::strcmp(w->kind, "selftest.saxpy") != 0)
        return fail(err, CPN_E_UNSUPPORTED, "cpu backend: workload kind '%s' is not supported", w->kind);
    float a = 0;
    if (!parse_a(w->params_json, a))
        return fail(err, CPN_E_INVALID_ARGUMENT, "selftest.saxpy: params must be {\"a\": <number>}, got %s",
                    w->params_json);
    auto* p = new (std::nothrow) Prepared{reinterpret_cast<CpuDevice*>(h), a, nullptr, nullptr};
    if (p == nullptr) return fail(err, CPN_E_OUT_OF_MEMORY, "cpu backend: out of memory");
    *out = reinterpret_cast<cpn_prepared*>(p);
    return CPN_OK;
}

cpn_status run(cpn_prepared* pp, cpn_run_io* io, const cpn_run_control* ctl, cpn_msg* err) {
    auto* p = reinterpret_cast<Prepared*>(pp);
    if (p->bench != nullptr) return cpn::cpubench::run(p->bench, io, ctl, err);
    if (p->render != nullptr) return cpn::cpurender::run(p->render, io, ctl, err);
    if (p->infer != nullptr) return cpn::cpuinfer::bench_run(p->infer, io, ctl, err);
    if (ctl != nullptr && ctl->cancel != nullptr && *ctl->cancel != 0)
        return fail(err, CPN_E_CANCELLED, "selftest.saxpy: cancelled before start");
    if (ctl != nullptr && ctl->deadline_ns != 0 && now_ns() > ctl->deadline_ns)
        return fail(err, CPN_E_DEADLINE_EXCEEDED, "selftest.saxpy: deadline passed before start");
    const cpn_buffer* x = find_buffer(io->inputs, io->input_count, "x");
    const cpn_buffer* y = find_buffer(io->inputs, io->input_count, "y");
    cpn_buffer* out = find_buffer(io->outputs, io->output_count, "y");
    if (x == nullptr || y == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "selftest.saxpy: input buffer '%s' is missing",
                    x == nullptr ? "x" : "y");
    if (out == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "selftest.saxpy: output buffer 'y' is missing");
    if (x->size != y->size || out->size != y->size || x->size % sizeof(float) != 0)
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "selftest.saxpy: buffers 'x' (%llu bytes), 'y' (%llu) and output 'y' (%llu) "
                    "must be the same multiple of 4 bytes",
                    static_cast<unsigned long long>(x->size), static_cast<unsigned long long>(y->size),
                    static_cast<unsigned long long>(out->size));
    const size_t n = x->size / sizeof(float);
    const float* xs = static_cast<const float*>(x->data);
    const float* ys = static_cast<const float*>(y->data);
    float* os = static_cast<float*>(out->data);
    const auto t0 = std::chrono::steady_clock::now();
    unsigned nt = n < 65536 ? 1 : p->device->threads;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < nt; ++t) {
        pool.emplace_back([=] {
            size_t lo = n * t / nt, hi = n * (t + 1) / nt;
            for (size_t i = lo; i < hi; ++i) os[i] = p->a * xs[i] + ys[i];
        });
    }
    for (auto& th : pool) th.join();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (ctl != nullptr && ctl->progress != nullptr) ctl->progress(ctl->user, 1.0, "done");
    if (io->result_json != nullptr && io->result_json_capacity > 0)
        std::snprintf(io->result_json, io->result_json_capacity, "{\"elements\":%zu,\"device_ms\":%.3f}", n, ms);
    return CPN_OK;
}

void release(cpn_prepared* pp) {
    auto* p = reinterpret_cast<Prepared*>(pp);
    if (p == nullptr) return;
    if (p->bench != nullptr) cpn::cpubench::release(p->bench);
    if (p->render != nullptr) cpn::cpurender::release(p->render);
    if (p->infer != nullptr) cpn::cpuinfer::bench_release(p->infer);
    delete p;
}

void* get_proc(const char* name) {
    if (name != nullptr && std::strcmp(name, CPN_INFER_PROC) == 0)
        return const_cast<cpn_infer_api*>(cpn::cpuinfer::api());
    return nullptr;
}

const cpn_backend kBackend = {
    CPN_BACKEND_ABI_VERSION, sizeof(cpn_backend), "cpu", "0.1.0",
    probe, device_count, device_info,
    device_open, device_close, query, prepare, run, release,
    get_proc, nullptr};

}  // namespace

extern "C" CPN_BACKEND_EXPORT uint32_t cpn_backend_abi_version(void) { return CPN_BACKEND_ABI_VERSION; }
extern "C" CPN_BACKEND_EXPORT const cpn_backend* cpn_backend_entry(const cpn_host*) { return &kBackend; }
