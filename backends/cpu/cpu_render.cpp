// cpu_render.cpp: the render.pass kind on the CPU. The kernel headers are the same source the
// OpenCL and CUDA backends compile; here they are C++ (built with -ffp-contract=off, so no
// fused multiply-add changes a result), and the BVH4's four-box test is a fixed four-wide loop
// over SoA arrays that the compiler vectorises.
#include "cpu_render.hpp"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "blob_check.hpp"
#include "render_bench.hpp"
#include "cpn_backend_util.hpp"
#include "kernel/path.h"

namespace cpn::cpurender {

using plugin::fail;

struct AlignedFree {
    void operator()(char* p) const { std::free(p); }
};

struct Render {
    std::string params;  // the workload's params_json (the bench mode's region)
    /* A private copy (the host's buffer may go away) on a cache line, as the blob's arrays are
     * laid out (kernel/types.h). */
    std::unique_ptr<char, AlignedFree> blob;
    cpn_scene_view view{};
    unsigned threads = 1;
};

namespace {

uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

bool is_render_kind(const char* kind) { return kind != nullptr && std::strcmp(kind, render::kRenderPassKind) == 0; }

cpn_status query(const cpn_workload* w, cpn_query_result* out, cpn_msg*) {
    const std::string why = render::check_scene_blob(w->blob, w->blob_size);
    out->supported = why.empty() ? 1 : 0;
    if (!why.empty()) plugin::copy_str(out->reason, "render.pass: " + why);
    out->device_memory_bytes = w->blob_size;
    return CPN_OK;
}

cpn_status prepare(const cpn_workload* w, unsigned threads, Render** out, cpn_msg* err) {
    const std::string why = render::check_scene_blob(w->blob, w->blob_size);
    if (!why.empty()) return fail(err, CPN_E_INVALID_ARGUMENT, "render.pass: %s", why.c_str());
    auto* r = new (std::nothrow) Render;
    if (r == nullptr) return fail(err, CPN_E_OUT_OF_MEMORY, "render.pass: out of memory");
    r->blob.reset(static_cast<char*>(std::aligned_alloc(64, (w->blob_size + 63) & ~uint64_t{63})));
    if (!r->blob) {
        delete r;
        return fail(err, CPN_E_OUT_OF_MEMORY, "render.pass: out of memory copying a %llu-byte scene",
                    static_cast<unsigned long long>(w->blob_size));
    }
    std::memcpy(r->blob.get(), w->blob, w->blob_size);
    r->params = w->params_json != nullptr ? w->params_json : "{}";
    const char* base = r->blob.get();
    const auto* h = reinterpret_cast<const cpn_scene_header*>(base);
    r->view.header = h;
    r->view.nodes = reinterpret_cast<const cpn_bvh4_node*>(base + h->node_offset);
    r->view.prims = reinterpret_cast<const cpn_prim*>(base + h->prim_offset);
    r->view.materials = reinterpret_cast<const cpn_material*>(base + h->material_offset);
    r->view.env = reinterpret_cast<const float*>(base + h->env_offset);
    r->view.lights = reinterpret_cast<const cpn_light*>(base + h->light_offset);
    r->threads = std::max(1u, threads);
    *out = r;
    return CPN_OK;
}

cpn_status run(Render* r, cpn_run_io* io, const cpn_run_control* ctl, cpn_msg* err) {
    if (const cpn_buffer* reps = render::bench_reps_input(io); reps != nullptr)
        return render::run_render_bench(r->params.c_str(), reps, io, [&](cpn_run_io* inner) { return run(r, inner, ctl, err); }, err);
    cpn_render_pass pass;
    cpn_buffer* out = nullptr;
    if (const std::string why = render::read_pass(io, &pass, &out); !why.empty())
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s", why.c_str());
    const volatile int32_t* cancel = ctl != nullptr ? ctl->cancel : nullptr;
    const uint64_t deadline = ctl != nullptr ? ctl->deadline_ns : 0;
    const uint32_t tw = pass.x1 - pass.x0, th = pass.y1 - pass.y0;
    float* dst = static_cast<float*>(out->data);
    std::atomic<uint32_t> next_row{0};
    std::atomic<int> stop{0};  // 1 cancelled, 2 deadline
    std::atomic<uint64_t> rays{0};
    const auto t0 = std::chrono::steady_clock::now();
    auto worker = [&] {
        uint64_t my_rays = 0;
        for (;;) {
            if (stop.load(std::memory_order_relaxed) != 0) break;
            if (cancel != nullptr && *cancel != 0) {
                stop.store(1);
                break;
            }
            if (deadline != 0 && now_ns() > deadline) {
                stop.store(2);
                break;
            }
            const uint32_t row = next_row.fetch_add(1, std::memory_order_relaxed);
            if (row >= th) break;
            for (uint32_t x = 0; x < tw; ++x) {
                float* px = dst + (size_t{row} * tw + x) * 4;
                cpn_render_pixel(&r->view, &pass, pass.x0 + x, pass.y0 + row, px);
                my_rays += static_cast<uint64_t>(px[3]);
            }
        }
        rays.fetch_add(my_rays);
    };
    const unsigned nt = std::min<unsigned>(r->threads, th);
    std::vector<std::thread> pool;
    try {
        for (unsigned t = 1; t < nt; ++t) pool.emplace_back(worker);
    } catch (const std::system_error&) {
        // fewer threads than asked: the ones that started (and this one) share the rows
    }
    worker();
    for (std::thread& t : pool) t.join();
    if (stop.load() == 1) return fail(err, CPN_E_CANCELLED, "render.pass: cancelled");
    if (stop.load() == 2) return fail(err, CPN_E_DEADLINE_EXCEEDED, "render.pass: deadline passed");
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (io->result_json != nullptr && io->result_json_capacity > 0)
        std::snprintf(io->result_json, io->result_json_capacity,
                      "{\"pixels\":%llu,\"samples\":%u,\"rays\":%llu,\"device_ms\":%.3f,\"threads\":%u}",
                      static_cast<unsigned long long>(tw) * th, pass.sample_count,
                      static_cast<unsigned long long>(rays.load()), ms, nt);
    return CPN_OK;
}

void release(Render* r) { delete r; }

}  // namespace cpn::cpurender
