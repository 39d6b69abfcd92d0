/*
 * types.h: the packed scene every device traverses, and one render pass's parameters. These
 * structs are the byte layout of the scene blob the host builds (workloads/render/pack.cpp) and
 * the backends read; only 32-bit scalars, so C++, OpenCL C and CUDA agree on every offset.
 *
 * Blob layout (all offsets in bytes from the blob start, each array 64-byte aligned):
 *   cpn_scene_header | cpn_bvh4_node[node_count] | cpn_prim[prim_count]
 *   | cpn_material[material_count] | float env[env_width * env_height * 3]
 *   | cpn_light[light_count]
 */
#ifndef CPN_RENDER_TYPES_H
#define CPN_RENDER_TYPES_H

#include "compat.h"

#define CPN_SCENE_MAGIC 0x4e504352u /* "RCPN" little-endian */
#define CPN_SCENE_VERSION 2u

/* BVH4 child encoding: an inner child is a node index; a leaf is CPN_LEAF_FLAG | (count-1)<<27
 * | first primitive (count 1..16, first < 2^27); an unused slot is CPN_EMPTY_CHILD. */
#define CPN_LEAF_FLAG 0x80000000u
#define CPN_LEAF_MAX_PRIMS 16u
#define CPN_LEAF_MAX_FIRST 0x07ffffffu
#define CPN_EMPTY_CHILD 0x7fffffffu
#define CPN_TRAVERSAL_STACK 128

#define CPN_PRIM_TRIANGLE 0u
#define CPN_PRIM_SPHERE 1u

#define CPN_MAT_DIFFUSE 0u
#define CPN_MAT_METAL 1u
#define CPN_MAT_DIELECTRIC 2u
#define CPN_MAT_EMISSIVE 3u

typedef struct cpn_scene_header {
    cpn_u32 magic, version, header_bytes, total_bytes;
    cpn_u32 node_count, node_offset, prim_count, prim_offset;
    cpn_u32 material_count, material_offset, env_width, env_height;
    cpn_u32 env_offset, light_count, light_offset, reserved0;
    /* camera: position, unit forward/right/up, tan(vertical fov / 2), thin lens */
    float cam_pos[4];
    float cam_forward[4];
    float cam_right[4];
    float cam_up[4];
    float tan_half_fov, lens_radius, focus_distance, reserved3;
    /* environment: constant colour, or an equirectangular image (env_width > 0) times intensity,
     * turned by rotation (radians about +y) */
    float env_color[4];
    float env_intensity, env_rotation, reserved4, reserved5;
} cpn_scene_header;

/* Four children's boxes in SoA layout, so one node test is four slab tests at once. 128 bytes. */
typedef struct cpn_bvh4_node {
    float bmin_x[4], bmin_y[4], bmin_z[4];
    float bmax_x[4], bmax_y[4], bmax_z[4];
    cpn_u32 child[4];
    cpn_u32 pad[4];
} cpn_bvh4_node;

/* A triangle (v0, edges e1 = v1 - v0 and e2 = v2 - v0, unit geometric normal n) or a sphere
 * (v0 = centre, e1[0] = radius); `light` is its index in the light list when its material is
 * emissive, else CPN_NO_LIGHT. 64 bytes. */
#define CPN_NO_LIGHT 0xffffffffu
typedef struct cpn_prim {
    float v0[3];
    cpn_u32 type;
    float e1[3];
    cpn_u32 material;
    float e2[3];
    cpn_u32 light;
    float n[3];
    cpn_u32 pad1;
} cpn_prim;

typedef struct cpn_material {
    float albedo[3];
    cpn_u32 type;
    float emission[3];
    float roughness;
    float ior;
    cpn_u32 pad[3];
} cpn_material;

/* An emissive primitive, for next-event estimation: chosen with probability `pmf` (its share of
 * the emitted power), by binary search over `cdf` (inclusive, the last is 1). 16 bytes. */
typedef struct cpn_light {
    cpn_u32 prim;
    float pmf;
    float cdf;
    float area;
} cpn_light;

/* One pass: samples [sample_begin, sample_begin + sample_count) of the pixels in the tile
 * [x0, x1) x [y0, y1) of a width x height frame. The output holds, per tile pixel in row-major
 * order, 4 floats: the sum of the samples' radiance (r, g, b) and the number of rays traced. */
typedef struct cpn_render_pass {
    cpn_u32 width, height;
    cpn_u32 x0, y0, x1, y1;
    cpn_u32 sample_begin, sample_count;
    cpn_u32 seed, max_depth;
    cpn_u32 reserved[2];
} cpn_render_pass;

#endif /* CPN_RENDER_TYPES_H */
