// scene.hpp: the render scene format (docs/render.md) as the host reads it: YAML or JSON text ->
// a validated Scene of materials and flat primitives (triangles and spheres). Every error names
// the file, line and column, and the element ("objects[3] (mesh)") that is wrong.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.hpp"
#include "kernel/types.h"

namespace cpn::render {

struct Vec3 {
    float x = 0, y = 0, z = 0;
};

struct Camera {
    Vec3 position{0, 0, 5};
    Vec3 look_at{0, 0, 0};
    Vec3 up{0, 1, 0};
    float fov_deg = 40;         // vertical field of view
    float aperture = 0;         // lens diameter; 0 = pinhole
    float focus_distance = 0;   // 0 = the distance to look_at
};

struct Material {
    std::string name;
    cpn_material m{};
};

struct Environment {
    Vec3 color{0, 0, 0};
    float intensity = 1;
    float rotation_deg = 0;
    uint32_t width = 0, height = 0;  // an equirectangular image when width > 0
    std::vector<float> image;        // linear RGB, row-major, top row first
};

/* What a scene may ask of this node: where its files may come from and how big it may be. */
struct SceneLimits {
    std::string base_dir;                   // relative paths resolve against it ("" = none allowed)
    std::vector<std::string> allowed_dirs;  // every referenced file must be inside one of these
    uint64_t max_triangles = 20'000'000;    // over all meshes
    uint64_t max_file_bytes = 2ull << 30;   // per mesh or image file
    uint64_t max_image_pixels = 64ull << 20;
    uint32_t max_objects = 1'000'000;
};

/* Defaults a scene file may carry; task params and the CLI override them. */
struct RenderSettings {
    uint32_t width = 640, height = 480;
    uint32_t spp = 64;
    uint32_t max_depth = 8;
    uint32_t seed = 1;
};

struct Scene {
    Camera camera;
    Environment environment;
    std::vector<Material> materials;
    std::vector<cpn_prim> prims;  // before the BVH orders them
    RenderSettings settings;
    uint64_t triangles = 0, spheres = 0;
};

/* Parses scene text. `source` names it in messages ("scene.yaml", "task input"). */
Result<Scene> parse_scene(const std::string& text, const std::string& source, const SceneLimits& limits);
/* Reads and parses a scene file; its directory becomes limits.base_dir when that is empty. */
Result<Scene> load_scene_file(const std::string& path, SceneLimits limits);

/* Resolves `path` against base_dir and checks it is a regular file inside an allowed
 * directory (after symlinks); returns the canonical path. */
Result<std::string> resolve_scene_path(const std::string& path, const SceneLimits& limits);

}  // namespace cpn::render
