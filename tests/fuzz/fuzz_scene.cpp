// fuzz_scene: scene text from outside (a render task's input or a file) through the parser, the
// BVH build and packing every backend receives, and a few pixels of the shared kernel (the code
// the CPU backend runs). No file may be referenced (no allowed directory), so meshes and images
// are refused by path. Contract: a Result error, or a packed blob that passes the backends' own
// check and renders finite pixels; never an exception, a crash or an allocation past the limits.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "blob_check.hpp"
#include "bvh.hpp"
#include "fuzz_support.hpp"
#include "kernel/path.h"
#include "scene.hpp"

using namespace cpn::render;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    cpn::fuzz::expect_no_escape("scene", [&] {
        SceneLimits lim;
        lim.max_triangles = 100'000;
        lim.max_objects = 10'000;
        lim.max_file_bytes = 1u << 20;
        lim.max_image_pixels = 1u << 16;
        auto scene = parse_scene(cpn::fuzz::as_string(data, size), "fuzz scene", lim);
        if (!scene.ok()) return;
        auto packed = pack_scene(scene.value(), 1);
        if (!packed.ok()) return;
        const std::string& blob = packed.value().blob;
        if (const std::string why = check_scene_blob(blob.data(), blob.size()); !why.empty())
            cpn::fuzz::broken("scene", "a scene the parser accepted packs into a blob the backends refuse: " + why);
        std::unique_ptr<char, decltype(&std::free)> copy(
            static_cast<char*>(std::aligned_alloc(64, (blob.size() + 63) & ~size_t{63})), &std::free);
        std::memcpy(copy.get(), blob.data(), blob.size());
        const char* base = copy.get();
        const auto* h = reinterpret_cast<const cpn_scene_header*>(base);
        cpn_scene_view view{};
        view.header = h;
        view.nodes = reinterpret_cast<const cpn_bvh4_node*>(base + h->node_offset);
        view.prims = reinterpret_cast<const cpn_prim*>(base + h->prim_offset);
        view.materials = reinterpret_cast<const cpn_material*>(base + h->material_offset);
        view.env = reinterpret_cast<const float*>(base + h->env_offset);
        view.lights = reinterpret_cast<const cpn_light*>(base + h->light_offset);
        cpn_render_pass pass{};
        pass.width = pass.height = 4;
        pass.x1 = pass.y1 = 4;
        pass.sample_count = 1;
        pass.seed = 1;
        pass.max_depth = 4;
        for (uint32_t y = 0; y < 4; ++y)
            for (uint32_t x = 0; x < 4; ++x) {
                float px[4];
                cpn_render_pixel(&view, &pass, x, y, px);
                for (float v : px)
                    if (!std::isfinite(v)) cpn::fuzz::broken("scene", "the kernel rendered a pixel that is not finite");
            }
    });
    return 0;
}
