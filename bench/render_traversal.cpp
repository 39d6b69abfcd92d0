// render_traversal.cpp: BVH traversal throughput of the render kernel against Intel Embree 3,
// both casting the very same rays in the same run, on the reference scene (Cornell box and a
// ~100k-triangle torus knot, reference.hpp).
//
// What it measures:
//   - BVH build: our binned-SAH BVH4 (build_bvh4, all threads) and Embree's default-quality
//     build (rtcCommitScene, its TBB threads) over the same triangles: the packed primitives,
//     in packed order, each as vertices v0, v0 + e1, v0 + e2. Median of --reps builds.
//   - Closest-hit traversal, on two ray sets of one ray per pixel, made once and stored in plain
//     arrays before anything is timed:
//       primary    the camera rays (cpn_camera_ray, the same jitter as a render's sample 0);
//       secondary  for each primary ray that hits (by our traversal), a ray from the hit point,
//                  offset along the geometric normal facing the ray by 1e-4 * scale, in a
//                  cosine-weighted direction about that normal: the bounce path.h casts at a
//                  diffuse vertex, from the same numbers of the pixel's counter-based RNG
//                  (deterministic). Its next-event shadow rays are not cast here.
//     Each set is cast with (i) our cpn_intersect_scene (kernel/intersect.h compiled as the CPU
//     backend compiles it: -O3 -ffp-contract=off, baseline x86-64), (ii) Embree rtcIntersect1,
//     one ray per call (the like-for-like comparison), and (iii) Embree rtcIntersect16 on packets
//     of 16 consecutive rays (for information). Every tracer runs on --threads std::threads
//     pulling chunks of rays from an atomic counter and writes each ray's t and primitive. One
//     untimed warm-up round, then --reps timed rounds, the tracers interleaved within a round;
//     the figure is the median rays/s.
//   - Agreement: the fraction of rays where ours and rtcIntersect1 both miss, or both hit with
//     |t_ours - t_embree| <= 1e-3 * max(1, t). Tiny differences at shared triangle edges are
//     expected (two watertightness rules); below 99 % the program exits 1.
//
// Usage: cpn-bench-render-traversal [--reps N] [--threads N] [--width W] [--height H]
//                                   [--markdown FILE]
#include <embree3/rtcore.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bvh.hpp"
#include "kernel/path.h"
#include "reference.hpp"

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kChunk = 1024;  // rays per work item; a multiple of 16 for the packets
constexpr uint32_t kNoPrim = 0xffffffffu;
constexpr float kInf = std::numeric_limits<float>::infinity();

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Ray {
    float o[3];
    float d[3];  // unit length; every ray is cast over (0, inf)
};

struct Hits {
    std::vector<float> t;        // kInf for a miss
    std::vector<uint32_t> prim;  // index into the packed primitives; kNoPrim for a miss
    void resize(size_t n) {
        t.assign(n, kInf);
        prim.assign(n, kNoPrim);
    }
};

// ---- the machine --------------------------------------------------------------------------

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) {
            const size_t c = line.find(':');
            return c == std::string::npos ? line : line.substr(line.find_first_not_of(" \t", c + 1));
        }
    return "unknown CPU";
}

bool cpu_flag(const std::string& flag) {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("flags", 0) == 0) return (line + " ").find(" " + flag + " ") != std::string::npos;
    return false;
}

double mem_gib() {
    std::ifstream f("/proc/meminfo");
    std::string key;
    double kib = 0;
    while (f >> key >> kib)
        if (key == "MemTotal:") return kib / (1024.0 * 1024.0);
    return 0;
}

// ---- running a tracer over a ray set on all threads ----------------------------------------

/* Runs fn(begin, end) over [0, n) in chunks pulled from an atomic counter by `threads` threads
 * (this one included); returns the wall time in seconds. */
double run_parallel(size_t n, unsigned threads, const std::function<void(size_t, size_t)>& fn) {
    std::atomic<size_t> next{0};
    auto worker = [&] {
        for (;;) {
            const size_t b = next.fetch_add(kChunk, std::memory_order_relaxed);
            if (b >= n) break;
            fn(b, std::min(n, b + kChunk));
        }
    };
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
    return ms_since(t0) / 1000.0;
}

struct Ours {
    const cpn_bvh4_node* nodes;
    uint32_t node_count;
    const cpn_prim* prims;

    void trace(const Ray* rays, size_t b, size_t e, Hits& out) const {
        for (size_t i = b; i < e; ++i) {
            const Ray& r = rays[i];
            cpn_hit h;
            if (cpn_intersect_scene(nodes, node_count, prims, v3(r.o[0], r.o[1], r.o[2]), v3(r.d[0], r.d[1], r.d[2]),
                                    0.0f, CPN_INF, &h)) {
                out.t[i] = h.t;
                out.prim[i] = h.prim;
            } else {
                out.t[i] = kInf;
                out.prim[i] = kNoPrim;
            }
        }
    }
};

void embree_trace1(RTCScene scene, const Ray* rays, size_t b, size_t e, Hits& out) {
    for (size_t i = b; i < e; ++i) {
        const Ray& r = rays[i];
        RTCRayHit rh;
        rh.ray.org_x = r.o[0], rh.ray.org_y = r.o[1], rh.ray.org_z = r.o[2];
        rh.ray.dir_x = r.d[0], rh.ray.dir_y = r.d[1], rh.ray.dir_z = r.d[2];
        rh.ray.tnear = 0.0f;
        rh.ray.tfar = kInf;
        rh.ray.time = 0.0f;
        rh.ray.mask = 0xffffffffu;
        rh.ray.id = 0;
        rh.ray.flags = 0;
        rh.hit.geomID = RTC_INVALID_GEOMETRY_ID;
        rh.hit.primID = RTC_INVALID_GEOMETRY_ID;
        RTCIntersectContext ctx;
        rtcInitIntersectContext(&ctx);
        rtcIntersect1(scene, &ctx, &rh);
        const bool hit = rh.hit.geomID != RTC_INVALID_GEOMETRY_ID;
        out.t[i] = hit ? rh.ray.tfar : kInf;
        out.prim[i] = hit ? rh.hit.primID : kNoPrim;
    }
}

void embree_trace16(RTCScene scene, const Ray* rays, size_t b, size_t e, Hits& out) {
    for (size_t p = b; p < e; p += 16) {
        RTCRayHit16 rh;  // 64-byte aligned by its declaration
        alignas(64) int valid[16];
        const size_t m = std::min<size_t>(16, e - p);
        for (size_t k = 0; k < 16; ++k) {
            const Ray& r = rays[p + std::min(k, m - 1)];  // lanes past the end: inactive copies
            valid[k] = k < m ? -1 : 0;
            rh.ray.org_x[k] = r.o[0], rh.ray.org_y[k] = r.o[1], rh.ray.org_z[k] = r.o[2];
            rh.ray.dir_x[k] = r.d[0], rh.ray.dir_y[k] = r.d[1], rh.ray.dir_z[k] = r.d[2];
            rh.ray.tnear[k] = 0.0f;
            rh.ray.tfar[k] = kInf;
            rh.ray.time[k] = 0.0f;
            rh.ray.mask[k] = 0xffffffffu;
            rh.ray.id[k] = 0;
            rh.ray.flags[k] = 0;
            rh.hit.geomID[k] = RTC_INVALID_GEOMETRY_ID;
            rh.hit.primID[k] = RTC_INVALID_GEOMETRY_ID;
        }
        RTCIntersectContext ctx;
        rtcInitIntersectContext(&ctx);
        rtcIntersect16(valid, scene, &ctx, &rh);
        for (size_t k = 0; k < m; ++k) {
            const bool hit = rh.hit.geomID[k] != RTC_INVALID_GEOMETRY_ID;
            out.t[p + k] = hit ? rh.ray.tfar[k] : kInf;
            out.prim[p + k] = hit ? rh.hit.primID[k] : kNoPrim;
        }
    }
}

// ---- agreement ------------------------------------------------------------------------------

struct Agreement {
    size_t rays = 0, both_miss = 0, both_hit_t_ok = 0, hit_miss = 0, t_differs = 0, prim_differs = 0;
    double fraction() const { return rays ? static_cast<double>(both_miss + both_hit_t_ok) / rays : 1.0; }
};

Agreement compare(const Hits& a, const Hits& b) {
    Agreement g;
    g.rays = a.t.size();
    for (size_t i = 0; i < g.rays; ++i) {
        const bool ha = a.prim[i] != kNoPrim, hb = b.prim[i] != kNoPrim;
        if (!ha && !hb) {
            ++g.both_miss;
        } else if (ha != hb) {
            ++g.hit_miss;
        } else {
            if (std::fabs(a.t[i] - b.t[i]) <= 1e-3f * std::max(1.0f, a.t[i]))
                ++g.both_hit_t_ok;
            else
                ++g.t_differs;
            if (a.prim[i] != b.prim[i]) ++g.prim_differs;
        }
    }
    return g;
}

std::string agreement_line(const char* what, const Agreement& g) {
    char buf[400];
    std::snprintf(buf, sizeof buf,
                  "%s: %.5f %% of %zu rays agree (both miss %zu, both hit with equal t %zu; hit vs miss %zu, "
                  "t differs %zu; same t but another primitive %zu)",
                  what, 100.0 * g.fraction(), g.rays, g.both_miss, g.both_hit_t_ok, g.hit_miss, g.t_differs,
                  g.prim_differs);
    return buf;
}

// ---- Embree ---------------------------------------------------------------------------------

void embree_error(void*, RTCError code, const char* str) {
    std::fprintf(stderr, "embree error %d: %s\n", static_cast<int>(code), str != nullptr ? str : "");
}

/* A scene of one triangle mesh: primitive i of `prims` is Embree's primID i. Returns the
 * committed scene and the time rtcCommitScene took (the BVH build). */
RTCScene embree_scene(RTCDevice dev, const cpn_prim* prims, uint32_t count, double* commit_ms) {
    RTCScene scene = rtcNewScene(dev);
    RTCGeometry geom = rtcNewGeometry(dev, RTC_GEOMETRY_TYPE_TRIANGLE);
    auto* v = static_cast<float*>(
        rtcSetNewGeometryBuffer(geom, RTC_BUFFER_TYPE_VERTEX, 0, RTC_FORMAT_FLOAT3, 3 * sizeof(float), 3 * size_t{count}));
    auto* idx = static_cast<uint32_t*>(
        rtcSetNewGeometryBuffer(geom, RTC_BUFFER_TYPE_INDEX, 0, RTC_FORMAT_UINT3, 3 * sizeof(uint32_t), count));
    if (v == nullptr || idx == nullptr) {
        std::fprintf(stderr, "embree: could not allocate the geometry buffers\n");
        std::exit(2);
    }
    for (uint32_t i = 0; i < count; ++i) {
        const cpn_prim& p = prims[i];
        float* t = v + 9 * size_t{i};
        for (int a = 0; a < 3; ++a) {
            t[a] = p.v0[a];
            t[3 + a] = p.v0[a] + p.e1[a];
            t[6 + a] = p.v0[a] + p.e2[a];
        }
        idx[3 * size_t{i}] = 3 * i, idx[3 * size_t{i} + 1] = 3 * i + 1, idx[3 * size_t{i} + 2] = 3 * i + 2;
    }
    rtcCommitGeometry(geom);
    rtcAttachGeometry(scene, geom);
    rtcReleaseGeometry(geom);
    const auto t0 = Clock::now();
    rtcCommitScene(scene);
    *commit_ms = ms_since(t0);
    if (rtcGetDeviceError(dev) != RTC_ERROR_NONE) {
        std::fprintf(stderr, "embree: the scene build failed\n");
        std::exit(2);
    }
    return scene;
}

// ---- the ray sets -----------------------------------------------------------------------------

/* Primary rays: pixel (x, y) is ray y * width + x, with its render's sample-0 jitter. */
std::vector<Ray> primary_rays(const cpn_scene_view& view, uint32_t w, uint32_t h, uint32_t seed) {
    std::vector<Ray> rays(size_t{w} * h);
    for (uint32_t y = 0; y < h; ++y)
        for (uint32_t x = 0; x < w; ++x) {
            cpn_rng rng = cpn_rng_make(seed, y * w + x, 0u);
            cpn_vec3 o, d;
            cpn_camera_ray(&view, x, y, w, h, &rng, &o, &d);
            Ray& r = rays[size_t{y} * w + x];
            r.o[0] = o.x, r.o[1] = o.y, r.o[2] = o.z;
            r.d[0] = d.x, r.d[1] = d.y, r.d[2] = d.z;
        }
    return rays;
}

/* One diffuse bounce for each primary ray that hit (by `hits`), as cpn_trace_sample makes it at
 * a diffuse vertex: the pixel's RNG stream continued after the camera ray's four numbers and,
 * when the scene has lights, the three of next-event estimation (light, point on it). */
std::vector<Ray> secondary_rays(const cpn_scene_view& view, const std::vector<Ray>& primary, const Hits& hits,
                                uint32_t w, uint32_t seed) {
    std::vector<Ray> rays;
    rays.reserve(primary.size());
    for (size_t i = 0; i < primary.size(); ++i) {
        if (hits.prim[i] == kNoPrim) continue;
        const uint32_t x = static_cast<uint32_t>(i % w), y = static_cast<uint32_t>(i / w);
        cpn_rng rng = cpn_rng_make(seed, y * w + x, 0u);
        const int drawn = 4 + (view.header->light_count > 0u ? 3 : 0);  // camera ray, then NEE
        for (int k = 0; k < drawn; ++k) cpn_rng_next(&rng);
        const Ray& p = primary[i];
        const cpn_vec3 o = v3(p.o[0], p.o[1], p.o[2]), d = v3(p.d[0], p.d[1], p.d[2]);
        const cpn_vec3 pos = v3_add(o, v3_scale(d, hits.t[i]));
        const cpn_vec3 n = v3_load(view.prims[hits.prim[i]].n);
        const cpn_vec3 nf = v3_dot(d, n) < 0.0f ? n : v3_scale(n, -1.0f);
        const float r1 = cpn_rng_next(&rng), r2 = cpn_rng_next(&rng);
        const cpn_vec3 nd = cpn_cosine_direction(nf, r1, r2);
        const float scale = cpn_max(1.0f, cpn_max(cpn_fabsf(pos.x), cpn_max(cpn_fabsf(pos.y), cpn_fabsf(pos.z))));
        const float side = v3_dot(nd, nf) >= 0.0f ? 1.0f : -1.0f;
        const cpn_vec3 no = v3_add(pos, v3_scale(nf, side * 1e-4f * scale));
        rays.push_back(Ray{{no.x, no.y, no.z}, {nd.x, nd.y, nd.z}});
    }
    return rays;
}

// ---- main -------------------------------------------------------------------------------------

struct Options {
    int reps = 5;
    unsigned threads = 0;
    uint32_t width = 0, height = 0;  // 0: the scene's (1920 x 1080)
    std::string markdown;
};

[[noreturn]] void usage(const char* argv0) {
    std::fprintf(stderr, "usage: %s [--reps N] [--threads N] [--width W] [--height H] [--markdown FILE]\n", argv0);
    std::exit(2);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) usage(argv[0]);
        const char* v = argv[++i];
        if (a == "--reps")
            o.reps = std::atoi(v);
        else if (a == "--threads")
            o.threads = static_cast<unsigned>(std::atoi(v));
        else if (a == "--width")
            o.width = static_cast<uint32_t>(std::atoi(v));
        else if (a == "--height")
            o.height = static_cast<uint32_t>(std::atoi(v));
        else if (a == "--markdown")
            o.markdown = v;
        else
            usage(argv[0]);
    }
    if (o.reps < 1) usage(argv[0]);
    return o;
}

struct SetResult {
    const char* name;
    size_t rays = 0;
    double hit_fraction = 0;
    double ours = 0, emb1 = 0, emb16 = 0;  // median Mrays/s
    Agreement agree, agree16;
};

}  // namespace

int main(int argc, char** argv) {
    const Options opt = parse(argc, argv);
    const unsigned threads = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());

    // The scene, packed as every backend receives it.
    cpn::render::Scene scene = cpn::render::reference_scene();
    const uint32_t width = opt.width ? opt.width : scene.settings.width;
    const uint32_t height = opt.height ? opt.height : scene.settings.height;
    for (const cpn_prim& p : scene.prims)
        if (p.type != CPN_PRIM_TRIANGLE) {
            std::fprintf(stderr, "the reference scene holds a non-triangle primitive; Embree is fed triangles only\n");
            return 2;
        }
    auto packed = cpn::render::pack_scene(scene, threads);
    if (!packed.ok()) {
        std::fprintf(stderr, "pack_scene: %s\n", packed.status().message().c_str());
        return 2;
    }
    const std::string& blob = packed->blob;
    const auto* hdr = reinterpret_cast<const cpn_scene_header*>(blob.data());
    cpn_scene_view view{};
    view.header = hdr;
    view.nodes = reinterpret_cast<const cpn_bvh4_node*>(blob.data() + hdr->node_offset);
    view.prims = reinterpret_cast<const cpn_prim*>(blob.data() + hdr->prim_offset);
    view.materials = reinterpret_cast<const cpn_material*>(blob.data() + hdr->material_offset);
    view.env = reinterpret_cast<const float*>(blob.data() + hdr->env_offset);
    view.lights = reinterpret_cast<const cpn_light*>(blob.data() + hdr->light_offset);

    // BVH builds: ours (as pack_scene runs it) and Embree's over the packed triangles.
    std::vector<double> ours_build_ms;
    uint32_t leaves = 0;
    for (int r = 0; r < opt.reps; ++r) {
        const auto t0 = Clock::now();
        const cpn::render::Bvh4 b = cpn::render::build_bvh4(scene.prims, threads);
        ours_build_ms.push_back(ms_since(t0));
        leaves = b.leaves;
    }
    RTCDevice dev = rtcNewDevice(nullptr);
    if (dev == nullptr) {
        std::fprintf(stderr, "rtcNewDevice failed (error %d)\n", static_cast<int>(rtcGetDeviceError(nullptr)));
        return 2;
    }
    rtcSetDeviceErrorFunction(dev, embree_error, nullptr);
    const long embree_version = static_cast<long>(rtcGetDeviceProperty(dev, RTC_DEVICE_PROPERTY_VERSION));
    std::vector<double> emb_build_ms;
    RTCScene escene = nullptr;
    for (int r = 0; r < opt.reps; ++r) {
        if (escene != nullptr) rtcReleaseScene(escene);
        double ms = 0;
        escene = embree_scene(dev, view.prims, hdr->prim_count, &ms);
        emb_build_ms.push_back(ms);
    }

    const Ours ours{view.nodes, hdr->node_count, view.prims};
    const uint32_t seed = scene.settings.seed;

    // The ray sets, made before anything is timed.
    std::vector<Ray> primary = primary_rays(view, width, height, seed);
    Hits primary_hits;
    primary_hits.resize(primary.size());
    run_parallel(primary.size(), threads,
                 [&](size_t b, size_t e) { ours.trace(primary.data(), b, e, primary_hits); });
    std::vector<Ray> secondary = secondary_rays(view, primary, primary_hits, width, seed);

    const std::string cpu = cpu_model();
    const bool avx512 = cpu_flag("avx512f");
    const double gib = mem_gib();
    std::printf("machine: %s, %u threads used (%u hardware), %.1f GiB, AVX-512 %s\n", cpu.c_str(), threads,
                std::thread::hardware_concurrency(), gib, avx512 ? "yes" : "no");
    std::printf("embree %ld.%ld.%ld, g++ %s (ours: -O3 -ffp-contract=off, baseline x86-64)\n", embree_version / 10000,
                embree_version / 100 % 100, embree_version % 100, __VERSION__);
    std::printf("scene: %u triangles, %ux%u, one ray per pixel\n", hdr->prim_count, width, height);
    std::printf("BVH build (median of %d): ours %.1f ms (BVH4, %u nodes, %u leaves, depth %u; pack_scene's first "
                "build %.1f ms), Embree rtcCommitScene %.1f ms\n",
                opt.reps, median(ours_build_ms), hdr->node_count, leaves, packed->depth, packed->build_ms,
                median(emb_build_ms));

    // Cast each set with each tracer: a warm-up round (its results are the ones compared), then
    // the timed rounds, the three tracers interleaved in each.
    std::vector<SetResult> results;
    struct Set {
        const char* name;
        const std::vector<Ray>* rays;
    };
    for (const Set& set : {Set{"primary (coherent)", &primary}, Set{"secondary (incoherent)", &secondary}}) {
        const std::vector<Ray>& rays = *set.rays;
        const size_t n = rays.size();
        Hits h_ours, h_e1, h_e16;
        h_ours.resize(n), h_e1.resize(n), h_e16.resize(n);
        auto round = [&](std::vector<double>* s_ours, std::vector<double>* s_e1, std::vector<double>* s_e16) {
            const double a = run_parallel(n, threads, [&](size_t b, size_t e) { ours.trace(rays.data(), b, e, h_ours); });
            const double c = run_parallel(n, threads, [&](size_t b, size_t e) { embree_trace1(escene, rays.data(), b, e, h_e1); });
            const double d = run_parallel(n, threads, [&](size_t b, size_t e) { embree_trace16(escene, rays.data(), b, e, h_e16); });
            if (s_ours != nullptr) s_ours->push_back(n / a / 1e6), s_e1->push_back(n / c / 1e6), s_e16->push_back(n / d / 1e6);
        };
        round(nullptr, nullptr, nullptr);
        SetResult res;
        res.name = set.name;
        res.rays = n;
        res.agree = compare(h_ours, h_e1);
        res.agree16 = compare(h_e16, h_e1);
        size_t hit = 0;
        for (uint32_t p : h_ours.prim) hit += p != kNoPrim;
        res.hit_fraction = n ? static_cast<double>(hit) / n : 0;
        std::vector<double> s_ours, s_e1, s_e16;
        for (int r = 0; r < opt.reps; ++r) round(&s_ours, &s_e1, &s_e16);
        res.ours = median(s_ours), res.emb1 = median(s_e1), res.emb16 = median(s_e16);
        std::printf("%-24s %zu rays, %.1f %% hit; Mrays/s per round: ours", set.name, n, 100 * res.hit_fraction);
        for (double v : s_ours) std::printf(" %.2f", v);
        std::printf(" | rtcIntersect1");
        for (double v : s_e1) std::printf(" %.2f", v);
        std::printf(" | rtcIntersect16");
        for (double v : s_e16) std::printf(" %.2f", v);
        std::printf("\n");
        results.push_back(res);
    }

    // The table and the agreement.
    std::ostringstream table;
    table << "| ray set | rays | hit % | ours Mrays/s | Embree rtcIntersect1 Mrays/s | ours / rtcIntersect1 "
             "| Embree rtcIntersect16 Mrays/s | ours / rtcIntersect16 |\n"
          << "|---|---|---|---|---|---|---|---|\n";
    for (const SetResult& r : results) {
        char row[400];
        std::snprintf(row, sizeof row, "| %s | %zu | %.1f | %.2f | %.2f | %.2fx | %.2f | %.2fx |\n", r.name, r.rays,
                      100 * r.hit_fraction, r.ours, r.emb1, r.ours / r.emb1, r.emb16, r.ours / r.emb16);
        table << row;
    }
    std::printf("\n%s\n", table.str().c_str());
    bool ok = true;
    for (const SetResult& r : results) {
        std::printf("%s\n", agreement_line((std::string(r.name) + ", ours vs rtcIntersect1").c_str(), r.agree).c_str());
        std::printf("%s\n",
                    agreement_line((std::string(r.name) + ", rtcIntersect16 vs rtcIntersect1").c_str(), r.agree16).c_str());
        if (r.agree.fraction() < 0.99) ok = false;
    }
    if (!ok) std::printf("FAILED: ours and Embree agree on fewer than 99 %% of the rays of a set\n");

    if (!opt.markdown.empty()) {
        std::ofstream md(opt.markdown);
        char line[600];
        md << "# Render BVH traversal: ours vs Embree\n\nCommand: `";
        for (int i = 0; i < argc; ++i) md << (i ? " " : "") << argv[i];
        md << "`\n\n";
        std::snprintf(line, sizeof line,
                      "Machine: %s, %u threads used (%u hardware), %.1f GiB, AVX-512 %s. Embree %ld.%ld.%ld; ours "
                      "built by g++ %s with -O3 -ffp-contract=off for baseline x86-64 (as the CPU backend).\n\n",
                      cpu.c_str(), threads, std::thread::hardware_concurrency(), gib, avx512 ? "yes" : "no",
                      embree_version / 10000, embree_version / 100 % 100, embree_version % 100, __VERSION__);
        md << line;
        std::snprintf(line, sizeof line,
                      "Scene: the reference scene, %u triangles, %ux%u, one ray per pixel. Median of %d "
                      "repetitions.\n\n",
                      hdr->prim_count, width, height, opt.reps);
        md << line;
        std::snprintf(line, sizeof line,
                      "BVH build: ours %.1f ms (BVH4: %u nodes, %u leaves, depth %u), Embree rtcCommitScene "
                      "(default quality) %.1f ms.\n\n",
                      median(ours_build_ms), hdr->node_count, leaves, packed->depth, median(emb_build_ms));
        md << line << table.str() << "\n";
        for (const SetResult& r : results) {
            md << "- " << agreement_line((std::string(r.name) + ", ours vs rtcIntersect1").c_str(), r.agree) << "\n";
            md << "- " << agreement_line((std::string(r.name) + ", rtcIntersect16 vs rtcIntersect1").c_str(), r.agree16)
               << "\n";
        }
        if (!md) std::fprintf(stderr, "could not write %s\n", opt.markdown.c_str());
    }

    rtcReleaseScene(escene);
    rtcReleaseDevice(dev);
    return ok ? 0 : 1;
}
