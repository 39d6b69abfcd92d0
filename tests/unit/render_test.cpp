// render_test.cpp: the render workload: the scene format's errors, the BVH against brute force,
// the physics (white furnace, energy conservation), tiles against the full frame, the backends
// against each other, the Cornell box against its reference image, cancellation and device
// fallback, and the task params.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <random>

#include "bvh.hpp"
#include "image.hpp"
#include "kernel/path.h"
#include "reference.hpp"
#include "render/render_engine.hpp"
#include "render/render_task.hpp"
#include "scene.hpp"
#include "test_support.hpp"

namespace cpn::render {
namespace {

std::string plugin(const std::string& backend) { return std::string(CPN_PLUGIN_DIR) + "/libcpn-backend-" + backend + ".so"; }

RenderTarget target(const std::string& backend, uint32_t index = 0) {
    RenderTarget t;
    t.device_id = backend + std::to_string(index);
    t.paths.push_back({backend, index, plugin(backend)});
    return t;
}

SceneLimits limits_in(const std::string& dir) {
    SceneLimits l;
    l.base_dir = dir;
    l.allowed_dirs = {dir};
    return l;
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/* Renders scene text on one backend; the status when the backend cannot render here. */
Result<RenderJobOutput> render_text(const std::string& text, const std::string& backend, RenderParams params = {},
                                    const std::string& dir = "") {
    RenderJobLimits limits;
    limits.scene = limits_in(dir.empty() ? std::string(CPN_SOURCE_DIR) + "/workloads/render/scenes" : dir);
    params.format = "pfm";
    return run_render_job(text, "test.yaml", limits, params, {target(backend)}, {});
}

double mean(const Image& img) {
    double s = 0;
    for (float v : img.rgb) s += v;
    return s / static_cast<double>(img.rgb.size());
}

const char* kFurnace = R"(
render: {width: 32, height: 32, spp: 8, max_depth: 64}
camera: {position: [0, 0, 4], look_at: [0, 0, 0], fov: 40}
environment: {color: [1, 1, 1]}
materials:
  m: MATERIAL
objects:
  - {type: sphere, center: [0, 0, 0], radius: 1, material: m}
)";

std::string furnace(const std::string& material) {
    std::string s = kFurnace;
    s.replace(s.find("MATERIAL"), 8, material);
    return s;
}

// ---- the scene format ------------------------------------------------------------------------

struct BadScene {
    const char* name;
    std::string scene;
    std::vector<std::string> files;  // name=content pairs written beside the scene
    std::string expect;              // a part of the message
};

class SceneErrors : public ::testing::TestWithParam<BadScene> {};

const char* kHead = "camera: {position: [0, 0, 5], look_at: [0, 0, 0]}\nmaterials:\n  w: {type: diffuse}\nobjects:\n";

TEST_P(SceneErrors, AreReportedWithWhereAndWhat) {
    test::TempDir dir;
    const BadScene& b = GetParam();
    for (const std::string& f : b.files) dir.write(f.substr(0, f.find('=')), f.substr(f.find('=') + 1));
    dir.write("scene.yaml", b.scene);
    Result<Scene> s = load_scene_file(dir.file("scene.yaml"), limits_in(dir.path()));
    ASSERT_FALSE(s.ok()) << b.name;
    EXPECT_NE(s.status().message().find(b.expect), std::string::npos) << s.status().message();
    EXPECT_NE(s.status().message().find("scene.yaml"), std::string::npos) << s.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Render, SceneErrors,
    ::testing::Values(
        BadScene{"missing_mesh", std::string(kHead) + "  - {type: mesh, file: gone.obj, material: w}\n", {},
                 "scene.yaml:5:24: objects[0] (mesh).file: '"},
        BadScene{"nan_vertex", std::string(kHead) + "  - {type: mesh, file: m.obj, material: w}\n",
                 {"m.obj=v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n"}, "m.obj:3: vertex coordinate 'nan' is not a finite number"},
        BadScene{"nan_inline", std::string(kHead) + "  - {type: triangle, vertices: [[0, 0, 0], [1, .nan, 0], [0, 1, 0]], material: w}\n",
                 {}, "objects[0] (triangle).vertices[1][1]: must be finite"},
        BadScene{"declared_huge", std::string(kHead) + "  - {type: mesh, file: m.obj, material: w, triangles: 1000000000}\n",
                 {"m.obj=v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"}, "declares 1000000000 triangles, more than the scene's limit"},
        BadScene{"outside", std::string(kHead) + "  - {type: mesh, file: /etc/hostname, material: w}\n", {},
                 "is outside the allowed directories"},
        BadScene{"dotdot", std::string(kHead) + "  - {type: mesh, file: ../../../../etc/passwd, material: w}\n", {},
                 "is outside the allowed directories"},
        BadScene{"unknown_material", std::string(kHead) + "  - {type: sphere, center: [0, 0, 0], radius: 1, material: gold}\n", {},
                 "objects[0] (sphere).material: unknown material 'gold' (defined: w)"},
        BadScene{"unknown_material_type",
                 "camera: {position: [0, 0, 5], look_at: [0, 0, 0]}\nmaterials:\n  w: {type: velvet}\nobjects: []\n", {},
                 "materials.w.type: unknown material type 'velvet'"},
        BadScene{"albedo_above_one",
                 "camera: {position: [0, 0, 5], look_at: [0, 0, 0]}\nmaterials:\n  w: {type: diffuse, albedo: [1.2, 0, 0]}\nobjects: []\n",
                 {}, "materials.w.albedo[0]: must be from 0 to 1"},
        BadScene{"unknown_object", std::string(kHead) + "  - {type: teapot, material: w}\n", {},
                 "objects[0].type: unknown object type 'teapot'"},
        BadScene{"unknown_key", std::string(kHead) + "  - {type: sphere, centre: [0, 0, 0], radius: 1, material: w}\n", {},
                 "unknown key 'centre'"},
        BadScene{"bad_yaml", "camera: {position: [0, 0, 5]\n", {}, "not valid YAML or JSON"},
        BadScene{"no_camera", "materials:\n  w: {type: diffuse}\nobjects: []\n", {}, "has no camera"},
        BadScene{"camera_up_parallel", "camera: {position: [0, 0, 5], look_at: [0, 0, 0], up: [0, 0, 1]}\nmaterials:\n  w: {type: diffuse}\nobjects: []\n",
                 {}, "camera.up: is parallel to the view direction"},
        BadScene{"garbage_obj", std::string(kHead) + "  - {type: mesh, file: m.obj, material: w}\n", {"m.obj=f 1 2\n"},
                 "a face needs at least three vertices"},
        BadScene{"face_index", std::string(kHead) + "  - {type: mesh, file: m.obj, material: w}\n", {"m.obj=v 0 0 0\nf 1 2 3\n"},
                 "refers to vertex"}),
    [](const ::testing::TestParamInfo<BadScene>& p) { return std::string(p.param.name); });

TEST(RenderScene, JsonIsAcceptedToo) {
    Result<Scene> s = parse_scene(R"({"camera": {"position": [0, 0, 5], "look_at": [0, 0, 0]},
        "materials": {"w": {"type": "diffuse"}}, "objects": [{"type": "sphere", "center": [0, 0, 0], "radius": 1, "material": "w"}]})",
                                  "scene.json", {});
    ASSERT_TRUE(s.ok()) << s.status().message();
    EXPECT_EQ(s->spheres, 1u);
}

TEST(RenderScene, MeshWithTransformLoads) {
    test::TempDir dir;
    dir.write("m.obj", "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n");
    dir.write("s.yaml", std::string(kHead) + "  - {type: mesh, file: m.obj, material: w, transform: {scale: 2, rotate: [0, 90, 0], translate: [1, 0, 0]}}\n");
    Result<Scene> s = load_scene_file(dir.file("s.yaml"), limits_in(dir.path()));
    ASSERT_TRUE(s.ok()) << s.status().message();
    ASSERT_EQ(s->triangles, 2u);  // the quad face is triangulated
    // scale 2, then 90 degrees about y: (1, 0, 0) -> (0, 0, -2), then +1 in x
    const cpn_prim& p = s->prims[0];
    EXPECT_NEAR(p.v0[0] + p.e1[0], 1.0f, 1e-5f);
    EXPECT_NEAR(p.v0[2] + p.e1[2], -2.0f, 1e-5f);
}

TEST(RenderScene, TriangleLimitStopsAMeshBeforeItIsRead) {
    test::TempDir dir;
    std::string obj;
    for (int i = 0; i < 10; ++i) obj += "v " + std::to_string(i) + " 0 0\nv " + std::to_string(i) + " 1 0\nv " + std::to_string(i) + " 0 1\n";
    for (int i = 0; i < 10; ++i) obj += "f " + std::to_string(3 * i + 1) + " " + std::to_string(3 * i + 2) + " " + std::to_string(3 * i + 3) + "\n";
    dir.write("m.obj", obj);
    dir.write("s.yaml", std::string(kHead) + "  - {type: mesh, file: m.obj, material: w}\n");
    SceneLimits l = limits_in(dir.path());
    l.max_triangles = 5;
    Result<Scene> s = load_scene_file(dir.file("s.yaml"), l);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("the scene's limit is 5"), std::string::npos) << s.status().message();
}

// ---- the BVH --------------------------------------------------------------------------------

TEST(RenderBvh, TraversalFindsWhatBruteForceFinds) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-10, 10), small(-1, 1);
    std::vector<cpn_prim> prims;
    for (int i = 0; i < 3000; ++i) {
        cpn_prim p{};
        p.type = CPN_PRIM_TRIANGLE;
        for (int a = 0; a < 3; ++a) p.v0[a] = u(rng), p.e1[a] = small(rng), p.e2[a] = small(rng);
        prims.push_back(p);
    }
    for (int i = 0; i < 50; ++i) {  // spheres among them
        cpn_prim p{};
        p.type = CPN_PRIM_SPHERE;
        for (int a = 0; a < 3; ++a) p.v0[a] = u(rng);
        p.e1[0] = 0.5f;
        prims.push_back(p);
    }
    Bvh4 bvh = build_bvh4(prims, 2);
    ASSERT_FALSE(bvh.nodes.empty());
    ASSERT_EQ(bvh.prim_order.size(), prims.size());
    std::vector<cpn_prim> ordered;
    for (uint32_t i : bvh.prim_order) ordered.push_back(prims[i]);
    int hits = 0;
    for (int r = 0; r < 3000; ++r) {
        const cpn_vec3 o = v3(u(rng) * 1.5f, u(rng) * 1.5f, u(rng) * 1.5f);
        const cpn_vec3 d = v3_normalize(v3(small(rng), small(rng), small(rng)));
        float best = CPN_INF;
        for (const cpn_prim& p : ordered) best = std::min(best, cpn_intersect_prim(&p, o, d, 1e-4f));
        cpn_hit hit;
        const int got = cpn_intersect_scene(bvh.nodes.data(), static_cast<cpn_u32>(bvh.nodes.size()), ordered.data(), o, d, 1e-4f,
                                            CPN_INF, &hit);
        ASSERT_EQ(got != 0, best < CPN_INF) << "ray " << r;
        if (got) {
            EXPECT_EQ(hit.t, best) << "ray " << r;
            ++hits;
        }
    }
    EXPECT_GT(hits, 300);
}

TEST(RenderBvh, ReferenceSceneBuildsAShallowTree) {
    Scene s = reference_scene();
    EXPECT_GE(s.triangles, 100000u);
    Result<PackedScene> p = pack_scene(s);
    ASSERT_TRUE(p.ok()) << p.status().message();
    EXPECT_EQ(check_scene_blob(p->blob.data(), p->blob.size()), "");
    EXPECT_LT(p->depth, 20u);
    EXPECT_GT(p->node_count, s.triangles / 16);
}

TEST(RenderBvh, CorruptBlobsAreRefused) {
    Result<Scene> s = parse_scene(furnace("{type: diffuse}"), "f.yaml", {});
    ASSERT_TRUE(s.ok());
    Result<PackedScene> p = pack_scene(s.value());
    ASSERT_TRUE(p.ok());
    std::string b = p->blob;
    EXPECT_NE(check_scene_blob(b.data(), b.size() - 16), "");
    b[0] ^= 1;
    EXPECT_NE(check_scene_blob(b.data(), b.size()).find("magic"), std::string::npos);
    b = p->blob;
    auto* h = reinterpret_cast<cpn_scene_header*>(b.data());
    h->prim_count = 1000;
    EXPECT_NE(check_scene_blob(b.data(), b.size()), "");
    // A plugin refuses it at prepare with the reason.
    test::LoadedPlugin lp = test::load_plugin(plugin("cpu"));
    ASSERT_NE(lp.table, nullptr) << lp.error;
    cpn_device_handle* dev = nullptr;
    cpn_msg err{};
    ASSERT_EQ(lp.table->device_open(0, &dev, &err), CPN_OK);
    cpn_workload w{sizeof(cpn_workload), kRenderPassKind, "{}", b.data(), b.size()};
    cpn_prepared* prep = nullptr;
    EXPECT_EQ(lp.table->prepare(dev, &w, &prep, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.text).find("render.pass: "), std::string::npos) << err.text;
    lp.table->device_close(dev);
}

// ---- physics ----------------------------------------------------------------------------------

TEST(RenderPhysics, WhiteFurnaceHidesAWhiteDiffuseSphere) {
    Result<RenderJobOutput> out = render_text(furnace("{type: diffuse, albedo: [1, 1, 1]}"), "cpu");
    ASSERT_TRUE(out.ok()) << out.status().message();
    for (float v : out->image.rgb) ASSERT_NEAR(v, 1.0f, 0.01f);
}

TEST(RenderPhysics, EveryMaterialConservesEnergy) {
    // In a uniform white environment no material may return more than 1; the lossless ones
    // (white diffuse, a perfect white mirror, clear glass) return 1 within 1 %.
    const std::vector<std::pair<std::string, bool>> materials = {
        {"{type: diffuse, albedo: [1, 1, 1]}", true},
        {"{type: metal, albedo: [1, 1, 1], roughness: 0}", true},
        {"{type: dielectric, ior: 1.5}", true},
        {"{type: dielectric, ior: 2.4}", true},
        {"{type: metal, albedo: [1, 1, 1], roughness: 0.7}", false},
        {"{type: diffuse, albedo: [0.5, 0.25, 0.75]}", false},
    };
    for (const auto& [m, lossless] : materials) {
        Result<RenderJobOutput> out = render_text(furnace(m), "cpu");
        ASSERT_TRUE(out.ok()) << m << ": " << out.status().message();
        const double avg = mean(out->image);
        float hi = 0;
        for (float v : out->image.rgb) hi = std::max(hi, v);
        EXPECT_LE(avg, 1.01) << m;
        if (lossless) EXPECT_NEAR(avg, 1.0, 0.01) << m;
        else EXPECT_LT(avg, 0.99) << m;
        // single pixels carry sampling noise, but none may be far above what comes in
        EXPECT_LE(hi, 1.6f) << m;
    }
}

TEST(RenderPhysics, SmallAreaLightGivesTheAnalyticRadiance) {
    // A white-ish plane (albedo 0.5) lit by a 0.5 x 0.5 light of radiance 100 at height 10,
    // seen straight down: L = albedo / pi * Le * A / h^2 (the light is small enough for the
    // point-light form to hold within 0.3 %). Light sampling (NEE) and the material's sample
    // both reach the light; with MIS their sum must be that value.
    const char* scene = R"(
render: {width: 16, height: 16, spp: 256, max_depth: 4}
camera: {position: [0, 5, 0], look_at: [0, 0, 0], up: [0, 0, 1], fov: 2}
materials:
  plane: {type: diffuse, albedo: [0.5, 0.5, 0.5]}
  light: {type: emissive, emission: [100, 100, 100]}
objects:
  - {type: quad, corner: [-50, 0, -50], u: [100, 0, 0], v: [0, 0, 100], material: plane}
  - {type: quad, corner: [-0.25, 10, -0.25], u: [0.5, 0, 0], v: [0, 0, 0.5], material: light}
)";
    Result<RenderJobOutput> out = render_text(scene, "cpu");
    ASSERT_TRUE(out.ok()) << out.status().message();
    const double expect = 0.5 / M_PI * 100 * 0.25 / 100;
    std::printf("plane under a small light: %.5f, analytic %.5f\n", mean(out->image), expect);
    EXPECT_NEAR(mean(out->image), expect, 0.02 * expect);
}

TEST(RenderScene, EnvironmentImageIsLookedUpByDirectionAndTurnedByRotation) {
    // A 5x3 equirectangular image, every texel its own colour. Looking down -z is u = 0.5,
    // v = 0.5: texel (2, 1); a rotation of 72 degrees (a fifth of a turn) moves it one column.
    test::TempDir dir;
    Image env;
    env.width = 5, env.height = 3;
    for (uint32_t y = 0; y < 3; ++y)
        for (uint32_t x = 0; x < 5; ++x) env.rgb.insert(env.rgb.end(), {0.1f * x, 0.2f * y, 0.05f});
    dir.write("sky.pfm", encode_pfm(env));
    auto scene = [&](int rotation) {
        return "camera: {position: [0, 0, 0], look_at: [0, 0, -1], fov: 2}\n"
               "environment: {image: sky.pfm, intensity: 2, rotation: " + std::to_string(rotation) + "}\n"
               "materials:\n  w: {type: diffuse}\nobjects: []\n";
    };
    RenderParams p;
    p.width = 8, p.height = 8, p.spp = 2;
    for (const auto& [rotation, column] : std::vector<std::pair<int, int>>{{0, 2}, {72, 3}}) {
        Result<RenderJobOutput> out = render_text(scene(rotation), "cpu", p, dir.path());
        ASSERT_TRUE(out.ok()) << out.status().message();
        for (size_t i = 0; i < out->image.rgb.size(); i += 3) {
            ASSERT_NEAR(out->image.rgb[i], 2 * 0.1f * column, 1e-6f) << "rotation " << rotation;
            ASSERT_NEAR(out->image.rgb[i + 1], 2 * 0.2f, 1e-6f) << "rotation " << rotation;
        }
    }
}

TEST(RenderPhysics, CornellBoxMatchesItsReferenceImage) {
    // tests/fixtures/render/cornell-128.png: scenes/cornell.yaml at 128x128, 64 spp, seed 1,
    // rendered by this kernel and checked by eye; the render must reproduce it.
    const std::string text = read_all(std::string(CPN_SOURCE_DIR) + "/workloads/render/scenes/cornell.yaml");
    RenderParams p;
    p.width = 128, p.height = 128, p.spp = 64, p.seed = 1;
    Result<RenderJobOutput> out = render_text(text, "cpu", p);
    ASSERT_TRUE(out.ok()) << out.status().message();
    Result<Image> ref = decode_png(read_all(std::string(CPN_FIXTURES_DIR) + "/render/cornell-128.png"), "cornell-128.png", 1 << 20);
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    const double psnr = psnr_srgb(ref.value(), out->image);
    std::printf("Cornell box vs reference: PSNR %.1f dB\n", psnr);
    EXPECT_GE(psnr, 40.0);
}

// ---- tiles, determinism, backends ---------------------------------------------------------------

TEST(RenderTiles, AssembledTilesEqualTheFullFrameExactly) {
    const std::string text = read_all(std::string(CPN_SOURCE_DIR) + "/workloads/render/scenes/cornell.yaml");
    RenderParams p;
    p.width = 48, p.height = 40, p.spp = 11;  // passes 1, 1, 2, 4, 3
    Result<RenderJobOutput> full = render_text(text, "cpu", p);
    ASSERT_TRUE(full.ok()) << full.status().message();
    std::vector<float> assembled(full->image.rgb.size(), -1.0f);
    const std::vector<std::array<uint32_t, 4>> tiles = {{0, 0, 17, 13}, {17, 0, 48, 13}, {0, 13, 48, 29}, {0, 29, 30, 40}, {30, 29, 48, 40}};
    for (const auto& t : tiles) {
        RenderParams tp = p;
        tp.tile = t;
        Result<RenderJobOutput> part = render_text(text, "cpu", tp);
        ASSERT_TRUE(part.ok()) << part.status().message();
        ASSERT_EQ(part->image.width, t[2] - t[0]);
        for (uint32_t y = t[1]; y < t[3]; ++y)
            for (uint32_t x = t[0]; x < t[2]; ++x)
                for (int c = 0; c < 3; ++c)
                    assembled[(size_t{y} * 48 + x) * 3 + c] = part->image.rgb[(size_t{y - t[1]} * part->image.width + (x - t[0])) * 3 + c];
    }
    ASSERT_EQ(assembled, full->image.rgb);  // bit for bit
}

TEST(RenderTiles, SameSeedSameImageOtherSeedOtherImage) {
    const std::string text = read_all(std::string(CPN_SOURCE_DIR) + "/workloads/render/scenes/cornell.yaml");
    RenderParams p;
    p.width = 32, p.height = 32, p.spp = 4;
    Result<RenderJobOutput> a = render_text(text, "cpu", p), b = render_text(text, "cpu", p);
    p.seed = 2;
    Result<RenderJobOutput> c = render_text(text, "cpu", p);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    EXPECT_EQ(a->image.rgb, b->image.rgb);
    EXPECT_NE(a->image.rgb, c->image.rgb);
}

/* The same scene and seed on another backend, against the CPU: PSNR >= 40 dB. */
void expect_backend_agrees(const std::string& backend) {
    const std::string text = read_all(std::string(CPN_SOURCE_DIR) + "/workloads/render/scenes/cornell.yaml");
    RenderParams p;
    p.width = 64, p.height = 64, p.spp = 16;
    Result<RenderJobOutput> other = render_text(text, backend, p);
    if (!other.ok() && other.status().code() == Code::unavailable)
        GTEST_SKIP() << backend << " cannot render on this machine: " << other.status().message();
    ASSERT_TRUE(other.ok()) << other.status().message();
    Result<RenderJobOutput> cpu = render_text(text, "cpu", p);
    ASSERT_TRUE(cpu.ok()) << cpu.status().message();
    const double psnr = psnr_srgb(cpu->image, other->image);
    size_t same = 0;
    for (size_t i = 0; i < cpu->image.rgb.size(); ++i) same += cpu->image.rgb[i] == other->image.rgb[i];
    std::printf("%s vs cpu: PSNR %.1f dB, %zu of %zu values identical\n", backend.c_str(), psnr, same, cpu->image.rgb.size());
    EXPECT_GE(psnr, 40.0);
}

TEST(RenderBackends, OpenClAgreesWithCpu) { expect_backend_agrees("opencl"); }
TEST(RenderBackends, CudaAgreesWithCpu) { expect_backend_agrees("cuda"); }

// ---- the engine --------------------------------------------------------------------------------

TEST(RenderEngine, PassScheduleDependsOnlyOnSpp) {
    EXPECT_EQ(pass_schedule(1), (std::vector<uint32_t>{1}));
    EXPECT_EQ(pass_schedule(11), (std::vector<uint32_t>{1, 1, 2, 4, 3}));
    uint32_t sum = 0;
    for (uint32_t n : pass_schedule(1000)) {
        sum += n;
        EXPECT_LE(n, 32u);
    }
    EXPECT_EQ(sum, 1000u);
}

TEST(RenderEngine, CancelStopsTheRenderPromptly) {
    Result<PackedScene> p = pack_scene(reference_scene(100, 40));
    ASSERT_TRUE(p.ok());
    RenderRequest req;
    req.blob = &p->blob;
    req.width = 640, req.height = 360, req.spp = 1000;
    std::atomic<int> progress{0};
    RenderControl c;
    c.progress = [&](double, uint32_t, double) { progress++; };
    c.cancelled = [&] { return progress.load() >= 2; };
    const auto t0 = std::chrono::steady_clock::now();
    Result<RenderOutput> out = render_frame(req, {target("cpu")}, c);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), Code::cancelled);
    EXPECT_LT(s, 30.0);
}

TEST(RenderEngine, ABrokenDeviceIsSkippedAndNamed) {
    const std::string text = furnace("{type: diffuse, albedo: [1, 1, 1]}");
    RenderTarget broken;
    broken.device_id = "gpu9";
    broken.paths.push_back({"cuda", 9, plugin("cuda")});
    broken.paths.push_back({"nonexistent", 0, "/nonexistent/libcpn-backend-x.so"});
    RenderJobLimits limits;
    RenderParams p;
    Result<RenderJobOutput> out = run_render_job(text, "f.yaml", limits, p, {broken, target("cpu")}, {});
    ASSERT_TRUE(out.ok()) << out.status().message();
    EXPECT_EQ(out->metrics["devices"].size(), 1u);
    Result<RenderJobOutput> none = run_render_job(text, "f.yaml", limits, p, {broken}, {});
    ASSERT_FALSE(none.ok());
    EXPECT_NE(none.status().message().find("no device could render: gpu9: "), std::string::npos) << none.status().message();
}

TEST(RenderEngine, TwoDevicesShareOneFrameAndGiveTheSameImage) {
    const std::string text = read_all(std::string(CPN_SOURCE_DIR) + "/workloads/render/scenes/cornell.yaml");
    RenderJobLimits limits;
    limits.scene = limits_in(std::string(CPN_SOURCE_DIR) + "/workloads/render/scenes");
    RenderParams p;
    p.width = 64, p.height = 256, p.spp = 2;
    RenderTarget a = target("cpu"), b = target("cpu");
    b.device_id = "cpu-again";
    Result<RenderJobOutput> two = run_render_job(text, "c.yaml", limits, p, {a, b}, {});
    Result<RenderJobOutput> one = run_render_job(text, "c.yaml", limits, p, {a}, {});
    ASSERT_TRUE(two.ok() && one.ok());
    EXPECT_EQ(two->metrics["devices"].size(), 2u);
    EXPECT_EQ(two->image.rgb, one->image.rgb);
}

// ---- task params and output ---------------------------------------------------------------------

TEST(RenderTask, ParamsAreCheckedWithTheirNames) {
    EXPECT_EQ(parse_render_params({{"width", 64}, {"spp", 4}, {"tile", {0, 0, 8, 8}}, {"format", "pfm"}}, nullptr), "");
    EXPECT_EQ(parse_render_params({{"spp", 0}}, nullptr), "params.spp must be an integer from 1 to 1048576");
    EXPECT_EQ(parse_render_params({{"tile", {8, 0, 8, 8}}}, nullptr), "params.tile must have x0 < x1 and y0 < y1");
    EXPECT_EQ(parse_render_params({{"format", "jpeg"}}, nullptr), "params.format must be \"png\" or \"pfm\"");
    EXPECT_NE(parse_render_params({{"colour", 1}}, nullptr).find("unknown render parameter 'colour'"), std::string::npos);
    EXPECT_EQ(parse_render_params({{"devices", 3}}, nullptr), "params.devices must be \"all\" or a list of at most 64 device ids");
}

TEST(RenderTask, FrameLimitAndTileOutsideAreErrors) {
    RenderJobLimits limits;
    limits.max_pixels = 1000;
    RenderParams p;
    p.width = 100, p.height = 100;
    Result<RenderJobOutput> big = run_render_job(furnace("{type: diffuse}"), "f.yaml", limits, p, {target("cpu")}, {});
    ASSERT_FALSE(big.ok());
    EXPECT_NE(big.status().message().find("tasks.render.max_pixels"), std::string::npos);
    limits.max_pixels = 1 << 20;
    p.tile = std::array<uint32_t, 4>{0, 0, 200, 10};
    Result<RenderJobOutput> tile = run_render_job(furnace("{type: diffuse}"), "f.yaml", limits, p, {target("cpu")}, {});
    ASSERT_FALSE(tile.ok());
    EXPECT_NE(tile.status().message().find("reaches outside the 100x100 frame"), std::string::npos);
}

TEST(RenderImage, PngAndPfmRoundTrip) {
    Image img;
    img.width = 3, img.height = 2;
    img.rgb = {0, 0.5f, 1, 0.25f, 0.75f, 2, 0, 0, 0, 1, 1, 1, 0.1f, 0.2f, 0.3f, 0.9f, 0.8f, 0.7f};
    Result<Image> pfm = decode_pfm(encode_pfm(img), "x.pfm", 100);
    ASSERT_TRUE(pfm.ok()) << pfm.status().message();
    EXPECT_EQ(pfm->rgb, img.rgb);
    Result<std::string> png = encode_png(img);
    ASSERT_TRUE(png.ok());
    Result<Image> back = decode_png(png.value(), "x.png", 100);
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_GT(psnr_srgb(img, back.value()), 45.0);
    EXPECT_FALSE(decode_png("not a png", "x.png", 100).ok());
    EXPECT_FALSE(decode_pfm("PF\n3 2\n-1\nshort", "x.pfm", 100).ok());
    EXPECT_NE(decode_pfm(encode_pfm(img), "x.pfm", 5).status().message().find("more than the limit"), std::string::npos);
}

}  // namespace
}  // namespace cpn::render

namespace cpn::render {
namespace {

// ---- `cpn-agent render` ---------------------------------------------------------------------------

std::string agent_cmd(const test::TempDir& dir, const std::string& args) {
    // An empty configuration file: defaults, with the build tree's plugins.
    dir.write("agent.yaml", std::string("plugins:\n  dir: ") + CPN_PLUGIN_DIR + "\n");
    return std::string(CPN_AGENT_BIN) + " --config " + dir.file("agent.yaml") + " render " + args + " 2>&1";
}

TEST(RenderCli, RendersAFileAndSaysWhatItDid) {
    test::TempDir dir;
    dir.write("s.yaml", furnace("{type: diffuse, albedo: [1, 1, 1]}"));
    auto r = test::run_command(agent_cmd(dir, dir.file("s.yaml") + " --spp 2 -o " + dir.file("out.png")));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("32x32 at 2 spp on cpu (cpu)"), std::string::npos) << r.out;
    Result<Image> img = decode_png(read_all(dir.file("out.png")), "out.png", 1 << 20);
    ASSERT_TRUE(img.ok()) << img.status().message();
    EXPECT_EQ(img->width, 32u);
    auto j = test::run_command(agent_cmd(dir, dir.file("s.yaml") + " --spp 1 --json -q --tile 0,0,8,4 -o " + dir.file("t.pfm")));
    ASSERT_EQ(j.exit_code, 0) << j.out;
    auto m = nlohmann::json::parse(j.out.substr(j.out.find('{')));
    EXPECT_EQ(m["tile"], nlohmann::json({0, 0, 8, 4}));
    EXPECT_EQ(m["primary_rays"], 32);
    // The machine output is valid against its schema (python3-jsonschema, as the other schema tests).
    dir.write("m.json", m.dump());
    auto v = test::run_command("/usr/bin/python3 -c \"import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), "
                               "json.load(open(sys.argv[2])))\" " + dir.file("m.json") + " " + CPN_SOURCE_DIR +
                               "/docs/schemas/render-result.schema.json 2>&1");
    EXPECT_EQ(v.exit_code, 0) << v.out;
}

TEST(RenderCli, RendersTheReferenceScene) {
    test::TempDir dir;
    auto r = test::run_command(agent_cmd(dir, "--reference --width 64 --height 36 --spp 1 --json -q -o " + dir.file("r.png")));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto m = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    EXPECT_EQ(m["triangles"], 100012);
    EXPECT_EQ(m["primary_rays"], 64 * 36);
    EXPECT_GE(m["prepare_s"].get<double>(), 0.0);
    r = test::run_command(agent_cmd(dir, "-o " + dir.file("r.png")));
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("name a scene file, or --reference"), std::string::npos) << r.out;
}

TEST(RenderCli, ErrorsSayWhatIsWrong) {
    test::TempDir dir;
    dir.write("bad.yaml", std::string(kHead) + "  - {type: sphere, center: [0, 0, 0], radius: 1, material: gold}\n");
    auto r = test::run_command(agent_cmd(dir, dir.file("bad.yaml") + " -o " + dir.file("x.png")));
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("bad.yaml:5:60: objects[0] (sphere).material: unknown material 'gold'"), std::string::npos) << r.out;
    dir.write("s.yaml", furnace("{type: diffuse}"));
    r = test::run_command(agent_cmd(dir, dir.file("s.yaml") + " --device gpu7 -o " + dir.file("x.png")));
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("--device gpu7: no such device (known: cpu"), std::string::npos) << r.out;
    r = test::run_command(agent_cmd(dir, dir.file("s.yaml") + " --tile 5,5,2,2 -o " + dir.file("x.png")));
    EXPECT_EQ(r.exit_code, 2) << r.out;
    r = test::run_command(agent_cmd(dir, dir.file("s.yaml") + " --backend levelzero -o " + dir.file("x.png")));
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("has no usable path through backend 'levelzero'"), std::string::npos) << r.out;
    r = test::run_command(agent_cmd(dir, dir.file("missing.yaml") + " -o " + dir.file("x.png")));
    EXPECT_EQ(r.exit_code, 1) << r.out;
    r = test::run_command(agent_cmd(dir, dir.file("s.yaml") + " -o /nonexistent/dir/x.png"));
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("/nonexistent/dir/x.png: cannot open for writing"), std::string::npos) << r.out;
    // The output is checked before the devices are even looked at, and a directory is refused.
    r = test::run_command(agent_cmd(dir, dir.file("s.yaml") + " -o " + dir.path()));
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("cannot open for writing: it is a directory"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("discovery"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace cpn::render
