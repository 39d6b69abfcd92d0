// fake_accel_backend.cpp: a backend for hardware no machine here has (FPGA, NPU), behind the same
// ABI as the real ones. What it reports comes from CPN_FAKE_ACCEL_DEVICES, a ';'-separated list
// of "class,pci_address,model[,unhealthy reason]" entries, so a test can pair it with a recorded
// sysfs tree and check that discovery joins both views of one device. A fifth field sets a
// behaviour for the execution half: "lost-after-N" makes run() report the device lost after N
// successful runs (a device that fails mid-benchmark); "slow-first-N" makes the first run of
// each prepared workload N ms slower (one-time costs: a thread pool, allocations, a JIT).
//
// Execution: bench.int8 and bench.fp16 (cpn_bench.h) are computed for real on the host (an int8
// dot product, an fp32 FMA recurrence standing in for the fake unit's fp16) and verified, so the
// core's benchmark suite can be driven end to end for hardware no machine here has.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cpn_backend.h"
#include "cpn_backend_util.hpp"

using namespace cpn::plugin;

namespace {

struct Fake {
    cpn_device_class cls = CPN_CLASS_OTHER;
    std::string pci, model, unhealthy, behaviour;
};

std::vector<Fake> devices() {
    std::vector<Fake> out;
    const char* env = std::getenv("CPN_FAKE_ACCEL_DEVICES");
    std::stringstream all(env ? env : "");
    std::string item;
    while (std::getline(all, item, ';')) {
        std::stringstream f(item);
        std::string cls;
        Fake d;
        std::getline(f, cls, ',');
        std::getline(f, d.pci, ',');
        std::getline(f, d.model, ',');
        std::getline(f, d.unhealthy, ',');
        std::getline(f, d.behaviour);
        d.cls = cls == "fpga" ? CPN_CLASS_FPGA : cls == "npu" ? CPN_CLASS_NPU : cls == "gpu" ? CPN_CLASS_GPU
                                                                                          : CPN_CLASS_OTHER;
        out.push_back(d);
    }
    return out;
}

cpn_status probe(cpn_probe_info* out, cpn_msg*) {
    out->usable = devices().empty() ? 0 : 1;
    copy_str(out->reason, "no fake accelerators configured (CPN_FAKE_ACCEL_DEVICES is empty)");
    copy_str(out->runtime_name, "fake accelerator runtime");
    copy_str(out->runtime_version, "1.0");
    return CPN_OK;
}
cpn_status device_count(uint32_t* n, cpn_msg*) {
    *n = static_cast<uint32_t>(devices().size());
    return CPN_OK;
}
cpn_status device_info(uint32_t i, cpn_device_desc* d, cpn_msg* err) {
    auto all = devices();
    if (i >= all.size()) return fail(err, CPN_E_INVALID_ARGUMENT, "fakeaccel: no device %u", i);
    const Fake& f = all[i];
    d->device_class = f.cls;
    copy_str(d->vendor, "Fake Vendor");
    copy_str(d->model, f.model);
    copy_str(d->native_name, f.model);
    copy_str(d->pci_address, f.pci);
    d->memory_bytes = 8ull << 30;
    d->compute_units = 16;
    d->precisions = CPN_PREC_INT8 | CPN_PREC_FP16;
    d->healthy = f.unhealthy.empty() ? 1 : 0;
    copy_str(d->health_reason, f.unhealthy);
    attr_str(d, "fake.firmware", "1.2.3");
    attr_int(d, "fake.tiles", 4);
    return CPN_OK;
}

struct Handle {
    uint32_t index = 0;
    int lost_after = -1;  // runs before the device is "lost"; -1 never
    int runs = 0;
    int slow_first_ms = 0;  // added to each prepared workload's first run
};
struct Prepared {
    Handle* dev = nullptr;
    std::string kind;
    uint64_t reps = 1;
    bool ran = false;
};

cpn_status device_open(uint32_t i, cpn_device_handle** out, cpn_msg* err) {
    auto all = devices();
    if (i >= all.size()) return fail(err, CPN_E_INVALID_ARGUMENT, "fakeaccel: no device %u", i);
    auto* h = new Handle{i, -1, 0, 0};
    const std::string& b = all[i].behaviour;
    if (b.rfind("lost-after-", 0) == 0) h->lost_after = std::atoi(b.c_str() + 11);
    if (b.rfind("slow-first-", 0) == 0) h->slow_first_ms = std::atoi(b.c_str() + 11);
    *out = reinterpret_cast<cpn_device_handle*>(h);
    return CPN_OK;
}
void device_close(cpn_device_handle* h) { delete reinterpret_cast<Handle*>(h); }

bool runs_kind(const char* kind) {
    return std::strcmp(kind, "bench.int8") == 0 || std::strcmp(kind, "bench.fp16") == 0;
}

cpn_status query(cpn_device_handle*, const cpn_workload* w, cpn_query_result* out, cpn_msg*) {
    out->supported = runs_kind(w->kind) ? 1 : 0;
    if (!out->supported) copy_str(out->reason, std::string("fakeaccel: no unit for ") + w->kind);
    return CPN_OK;
}

cpn_status prepare(cpn_device_handle* h, const cpn_workload* w, cpn_prepared** out, cpn_msg* err) {
    if (!runs_kind(w->kind)) return fail(err, CPN_E_UNSUPPORTED, "fakeaccel: no unit for %s", w->kind);
    auto* p = new Prepared{reinterpret_cast<Handle*>(h), w->kind, 1, false};
    if (const char* r = std::strstr(w->params_json, "\"reps\":")) p->reps = std::strtoull(r + 7, nullptr, 10);
    *out = reinterpret_cast<cpn_prepared*>(p);
    return CPN_OK;
}

cpn_status run(cpn_prepared* pp, cpn_run_io* io, const cpn_run_control* ctl, cpn_msg* err) {
    auto* p = reinterpret_cast<Prepared*>(pp);
    if (ctl != nullptr && ctl->cancel != nullptr && *ctl->cancel != 0)
        return fail(err, CPN_E_CANCELLED, "fakeaccel: cancelled");
    if (p->dev->lost_after >= 0 && p->dev->runs >= p->dev->lost_after)
        return fail(err, CPN_E_DEVICE_LOST, "fakeaccel: device %u fell off the bus (simulated, after %d runs)",
                    p->dev->index, p->dev->runs);
    ++p->dev->runs;
    uint64_t reps = p->reps;
    for (uint32_t i = 0; i < io->input_count; ++i)
        if (io->inputs[i].name != nullptr && std::strcmp(io->inputs[i].name, "reps") == 0 && io->inputs[i].size == 8)
            std::memcpy(&reps, io->inputs[i].data, 8);
    constexpr int kN = 4096;
    const auto t0 = std::chrono::steady_clock::now();
    if (!p->ran && p->dev->slow_first_ms > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(p->dev->slow_first_ms));
    p->ran = true;
    double ops = 0;
    bool ok = true;
    if (p->kind == "bench.int8") {
        std::vector<int8_t> a(kN), b(kN);
        for (int i = 0; i < kN; ++i) {
            a[i] = static_cast<int8_t>(i % 7 - 3);
            b[i] = static_cast<int8_t>(i % 5 - 2);
        }
        int64_t expect = 0;
        for (int i = 0; i < kN; ++i) expect += a[i] * b[i];
        for (uint64_t r = 0; r < reps; ++r) {
            volatile int64_t acc = 0;
            int64_t s = 0;
            for (int i = 0; i < kN; ++i) s += a[i] * b[i];
            acc = s;
            ok = ok && acc == expect;
        }
        ops = 2.0 * kN * static_cast<double>(reps);
    } else {
        float x = 1.0f;
        for (uint64_t r = 0; r < reps * kN; ++r) x = std::fma(x, 0.999f, 0.001f);
        ok = std::isfinite(x) && x > 0.0f && x <= 1.0f;
        ops = 2.0 * kN * static_cast<double>(reps);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!ok) return fail(err, CPN_E_INTERNAL, "fakeaccel: %s result check failed", p->kind.c_str());
    std::snprintf(io->result_json, io->result_json_capacity,
                  "{\"ops\":%.17g,\"seconds\":%.17g,\"verified\":true,\"check\":\"host reference\"}", ops,
                  secs > 0 ? secs : 1e-9);
    return CPN_OK;
}

void release(cpn_prepared* p) { delete reinterpret_cast<Prepared*>(p); }

const cpn_backend kBackend = {CPN_BACKEND_ABI_VERSION, sizeof(cpn_backend), "fakeaccel", "0",
                              probe, device_count, device_info, device_open, device_close, query,
                              prepare, run, release, nullptr, nullptr};

}  // namespace

extern "C" CPN_BACKEND_EXPORT uint32_t cpn_backend_abi_version(void) { return CPN_BACKEND_ABI_VERSION; }
extern "C" CPN_BACKEND_EXPORT const cpn_backend* cpn_backend_entry(const cpn_host*) { return &kBackend; }
