// render_bench.hpp: the bench mode of the render.pass kind (header-only, for the plugins), which
// the capacity suite uses for the task-level figure "task.render" (docs/capacity.md): when run()
// gets the cpn_bench.h "reps" input instead of a "pass", it renders `reps` samples per pixel of
// the region the workload's params name and reports the rays traced as the sample's ops.
//
//   params_json: {"width": W, "height": H, "x0": .., "y0": .., "x1": .., "y1": .., "max_depth": D, "seed": S}
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "blob_check.hpp"
#include "cpn_backend.h"
#include "cpn_bench.h"
#include "kernel/types.h"

namespace cpn::render {

/* Reads one unsigned member "key": N of a flat JSON object; false when absent or malformed. */
inline bool json_uint(const char* json, const char* key, uint32_t* out) {
    const std::string k = std::string("\"") + key + "\"";
    const char* p = json != nullptr ? std::strstr(json, k.c_str()) : nullptr;
    if (p == nullptr) return false;
    p = std::strchr(p + k.size(), ':');
    if (p == nullptr) return false;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(p + 1, &end, 10);
    if (end == p + 1 || v > 0xffffffffull) return false;
    *out = static_cast<uint32_t>(v);
    return true;
}

/* The region a bench-mode run renders; "" when params_json names a sound one. */
inline std::string parse_bench_region(const char* params_json, cpn_render_pass* p) {
    *p = cpn_render_pass{};
    const char* keys[] = {"width", "height", "x0", "y0", "x1", "y1", "max_depth", "seed"};
    uint32_t* dst[] = {&p->width, &p->height, &p->x0, &p->y0, &p->x1, &p->y1, &p->max_depth, &p->seed};
    for (int i = 0; i < 8; ++i)
        if (!json_uint(params_json, keys[i], dst[i]))
            return std::string("render.pass bench mode: params need \"") + keys[i] + "\" (width, height, x0, y0, x1, y1, max_depth, seed)";
    p->sample_count = 1;
    const uint64_t bytes = uint64_t{p->x1 > p->x0 ? p->x1 - p->x0 : 0} * (p->y1 > p->y0 ? p->y1 - p->y0 : 0) * 16;
    const std::string why = check_render_pass(*p, bytes);
    return why.empty() ? why : "render.pass bench mode: " + why;
}

/* True when this run is a bench-mode one (no "pass" input, a "reps" input). */
inline const cpn_buffer* bench_reps_input(const cpn_run_io* io) {
    const cpn_buffer* reps = nullptr;
    for (uint32_t i = 0; i < io->input_count; ++i) {
        if (io->inputs[i].name == nullptr) continue;
        if (std::strcmp(io->inputs[i].name, kRenderPassInput) == 0) return nullptr;
        if (std::strcmp(io->inputs[i].name, CPN_BENCH_REPS_INPUT) == 0) reps = &io->inputs[i];
    }
    return reps;
}

/* Runs one bench sample through `run_pass` (the plugin's own run for a normal pass). */
template <typename RunPass>
cpn_status run_render_bench(const char* params_json, const cpn_buffer* reps_buf, cpn_run_io* io, RunPass run_pass,
                            cpn_msg* err) {
    auto fail = [err](cpn_status st, const std::string& m) {
        if (err != nullptr) std::snprintf(err->text, sizeof err->text, "%s", m.c_str());
        return st;
    };
    cpn_render_pass pass;
    if (std::string why = parse_bench_region(params_json, &pass); !why.empty()) return fail(CPN_E_INVALID_ARGUMENT, why);
    uint64_t reps = 0;
    if (reps_buf->size != sizeof reps || reps_buf->data == nullptr)
        return fail(CPN_E_INVALID_ARGUMENT, "render.pass bench mode: input 'reps' must be one uint64");
    std::memcpy(&reps, reps_buf->data, sizeof reps);
    pass.sample_count = static_cast<uint32_t>(reps < 1 ? 1 : reps > 4096 ? 4096 : reps);
    const uint64_t pixels = uint64_t{pass.x1 - pass.x0} * (pass.y1 - pass.y0);
    std::vector<float> out(pixels * 4);
    PassIo call(pass, out.data());
    const auto t0 = std::chrono::steady_clock::now();
    if (cpn_status st = run_pass(&call.io); st != CPN_OK) return st;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double rays = 0;
    bool finite = true;
    for (uint64_t i = 0; i < pixels; ++i) {
        for (int c = 0; c < 3; ++c) finite = finite && std::isfinite(out[i * 4 + c]) && out[i * 4 + c] >= 0;
        rays += out[i * 4 + 3];
    }
    const double min_rays = static_cast<double>(pixels) * pass.sample_count;
    if (!finite || rays < min_rays)
        return fail(CPN_E_INTERNAL, "render.pass bench mode: expected finite, non-negative radiance and at least " +
                                        std::to_string(static_cast<uint64_t>(min_rays)) + " rays (one per sample), got " +
                                        (finite ? std::to_string(static_cast<uint64_t>(rays)) + " rays" : std::string("a NaN or negative value")));
    if (io->result_json != nullptr && io->result_json_capacity > 0)
        std::snprintf(io->result_json, io->result_json_capacity,
                      "{\"ops\":%.0f,\"seconds\":%.9f,\"verified\":true,\"check\":\"%llu pixels x %u samples: radiance finite, "
                      "at least one ray per sample\",\"detail\":{\"samples_per_s\":%.6g}}",
                      rays, secs, static_cast<unsigned long long>(pixels), pass.sample_count,
                      static_cast<double>(pixels) * pass.sample_count / (secs > 0 ? secs : 1e-9));
    return CPN_OK;
}

}  // namespace cpn::render
