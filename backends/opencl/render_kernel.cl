/* render_kernel.cl: the OpenCL entry of the render.pass kind. Everything it calls is the shared
 * kernel under workloads/render/kernel, prepended to this file at build time. One work item per
 * tile pixel. */
#include "path.h"

__kernel void cpn_render_pass_kernel(__global const uchar* blob, __global const cpn_render_pass* pass_in,
                              __global float* out) {
    const cpn_render_pass pass = *pass_in;
    const uint tw = pass.x1 - pass.x0;
    const uint th = pass.y1 - pass.y0;
    const size_t i = get_global_id(0);
    if (i >= (size_t)tw * th) return;
    __global const cpn_scene_header* h = (__global const cpn_scene_header*)blob;
    cpn_scene_view s;
    s.header = h;
    s.nodes = (__global const cpn_bvh4_node*)(blob + h->node_offset);
    s.prims = (__global const cpn_prim*)(blob + h->prim_offset);
    s.materials = (__global const cpn_material*)(blob + h->material_offset);
    s.env = (__global const float*)(blob + h->env_offset);
    s.lights = (__global const cpn_light*)(blob + h->light_offset);
    cpn_render_pixel(&s, &pass, pass.x0 + (uint)(i % tw), pass.y0 + (uint)(i / tw), out + i * 4);
}
