// blob_check.hpp: the check every backend runs on a scene blob before it trusts it (header-only,
// so plugins use it without linking the host's render library).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "cpn_backend_util.hpp"
#include "kernel/types.h"

namespace cpn::render {

/* Checks a blob's header, that every array lies inside it, and that the BVH only refers
 * forward and inside the primitives (so traversal terminates and stays in bounds). Returns ""
 * when sound, else what is wrong. */
inline std::string check_scene_blob(const void* blob, uint64_t size) {
    if (blob == nullptr || size < sizeof(cpn_scene_header)) return "the scene blob is missing or shorter than its header";
    cpn_scene_header h;
    std::memcpy(&h, blob, sizeof h);
    if (h.magic != CPN_SCENE_MAGIC) return "the scene blob has the wrong magic (not a packed cpn scene)";
    if (h.version != CPN_SCENE_VERSION)
        return "the scene blob is version " + std::to_string(h.version) + "; this backend reads version " +
               std::to_string(CPN_SCENE_VERSION);
    if (h.header_bytes != sizeof h || h.total_bytes != size) return "the scene blob's sizes do not match its header";
    auto fits = [&](uint64_t off, uint64_t count, uint64_t each) { return off % 64 == 0 && off <= size && count * each <= size - off; };
    if (!fits(h.node_offset, h.node_count, sizeof(cpn_bvh4_node)) || !fits(h.prim_offset, h.prim_count, sizeof(cpn_prim)) ||
        !fits(h.material_offset, h.material_count, sizeof(cpn_material)) ||
        !fits(h.env_offset, uint64_t{h.env_width} * h.env_height, 3 * sizeof(float)) ||
        !fits(h.light_offset, h.light_count, sizeof(cpn_light)))
        return "an array of the scene blob lies outside it";
    if (h.material_count == 0) return "the scene blob has no materials";
    if ((h.prim_count == 0) != (h.node_count == 0)) return "the scene blob's BVH does not match its primitives";
    const auto* nodes = reinterpret_cast<const cpn_bvh4_node*>(static_cast<const char*>(blob) + h.node_offset);
    for (uint32_t i = 0; i < h.node_count; ++i)
        for (int c = 0; c < 4; ++c) {
            const uint32_t ch = nodes[i].child[c];
            if (ch == CPN_EMPTY_CHILD) continue;
            if (ch & CPN_LEAF_FLAG) {
                const uint32_t first = ch & CPN_LEAF_MAX_FIRST, count = ((ch >> 27) & 15u) + 1;
                if (uint64_t{first} + count > h.prim_count) return "a BVH leaf refers past the primitives";
            } else if (ch <= i || ch >= h.node_count) {
                return "a BVH node refers to a node that is not after it";
            }
        }
    const auto* prims = reinterpret_cast<const cpn_prim*>(static_cast<const char*>(blob) + h.prim_offset);
    for (uint32_t i = 0; i < h.prim_count; ++i) {
        if (prims[i].material >= h.material_count || prims[i].type > CPN_PRIM_SPHERE)
            return "primitive " + std::to_string(i) + " has an unknown type or material";
        if (prims[i].light != CPN_NO_LIGHT && prims[i].light >= h.light_count)
            return "primitive " + std::to_string(i) + " refers past the lights";
    }
    const auto* lights = reinterpret_cast<const cpn_light*>(static_cast<const char*>(blob) + h.light_offset);
    for (uint32_t i = 0; i < h.light_count; ++i) {
        if (lights[i].prim >= h.prim_count || prims[lights[i].prim].light != i)
            return "light " + std::to_string(i) + " does not match its primitive";
        if (!(lights[i].area > 0.0f) || !(lights[i].pmf > 0.0f) || !(lights[i].cdf > 0.0f && lights[i].cdf <= 1.0f))
            return "light " + std::to_string(i) + " has a bad area or probability";
    }
    if (h.light_count > 0 && lights[h.light_count - 1].cdf != 1.0f) return "the light list's cdf does not end at 1";
    return {};
}

/* Checks one pass against the output buffer the host gave for it. */
inline std::string check_render_pass(const cpn_render_pass& p, uint64_t output_bytes) {
    if (p.width == 0 || p.height == 0 || p.width > 65536 || p.height > 65536) return "the frame size is out of range";
    if (p.x0 >= p.x1 || p.y0 >= p.y1 || p.x1 > p.width || p.y1 > p.height) return "the tile is empty or outside the frame";
    if (p.sample_count == 0 || p.sample_count > (1u << 20)) return "sample_count must be from 1 to 1048576";
    if (p.max_depth > 256) return "max_depth must be at most 256";
    const uint64_t need = uint64_t{p.x1 - p.x0} * (p.y1 - p.y0) * 4 * sizeof(float);
    if (output_bytes != need)
        return "the output buffer holds " + std::to_string(output_bytes) + " bytes; the tile needs " + std::to_string(need);
    return {};
}

/* The workload kind every backend that renders implements (docs/render.md). */
constexpr const char* kRenderPassKind = "render.pass";
constexpr const char* kRenderPassInput = "pass";        // one cpn_render_pass
constexpr const char* kRenderOutput = "radiance";       // 4 floats per tile pixel

/* The cpn_run_io of one render.pass call: input `pass`, output `radiance` (4 floats per tile
 * pixel, `radiance` must hold them). Refers to its own members: not copyable. */
struct PassIo {
    cpn_buffer in, out;
    cpn_run_io io{};
    PassIo(const cpn_render_pass& pass, float* radiance, char* result = nullptr, uint64_t result_capacity = 0)
        : in{kRenderPassInput, const_cast<cpn_render_pass*>(&pass), sizeof pass},
          out{kRenderOutput, radiance, uint64_t{pass.x1 - pass.x0} * (pass.y1 - pass.y0) * 4 * sizeof(float)} {
        io.struct_size = sizeof io;
        io.inputs = &in;
        io.input_count = 1;
        io.outputs = &out;
        io.output_count = 1;
        io.result_json = result;
        io.result_json_capacity = result_capacity;
    }
    PassIo(const PassIo&) = delete;
    PassIo& operator=(const PassIo&) = delete;
};

/* The pass and the output buffer of a render.pass run, checked against each other: "" and both
 * filled when sound, else what is wrong (for a CPN_E_INVALID_ARGUMENT). */
inline std::string read_pass(const cpn_run_io* io, cpn_render_pass* pass, cpn_buffer** out) {
    const cpn_buffer* in = plugin::find_buffer(io->inputs, io->input_count, kRenderPassInput);
    *out = plugin::find_buffer(io->outputs, io->output_count, kRenderOutput);
    if (in == nullptr || in->data == nullptr || in->size != sizeof(cpn_render_pass))
        return "render.pass: input 'pass' must be one cpn_render_pass (" + std::to_string(sizeof(cpn_render_pass)) + " bytes)";
    if (*out == nullptr || (*out)->data == nullptr) return "render.pass: output buffer 'radiance' is missing";
    std::memcpy(pass, in->data, sizeof *pass);
    const std::string why = check_render_pass(*pass, (*out)->size);
    return why.empty() ? why : "render.pass: " + why;
}

}  // namespace cpn::render
