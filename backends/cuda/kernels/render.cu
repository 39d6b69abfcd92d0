// render.cu: the CUDA entry of the render.pass kind. Everything it calls is the shared kernel
// under workloads/render/kernel (compat.h maps its qualifiers to CUDA); built with
// --fmad=false and IEEE division and square root, so it computes what the CPU and OpenCL builds
// compute. One thread per tile pixel.
#include "kernel/path.h"

extern "C" __global__ void cpn_render_pass_kernel(const unsigned char* __restrict__ blob, cpn_render_pass pass,
                                                  float* __restrict__ out) {
    const unsigned tw = pass.x1 - pass.x0;
    const unsigned th = pass.y1 - pass.y0;
    const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= static_cast<size_t>(tw) * th) return;
    const cpn_scene_header* h = reinterpret_cast<const cpn_scene_header*>(blob);
    cpn_scene_view s;
    s.header = h;
    s.nodes = reinterpret_cast<const cpn_bvh4_node*>(blob + h->node_offset);
    s.prims = reinterpret_cast<const cpn_prim*>(blob + h->prim_offset);
    s.materials = reinterpret_cast<const cpn_material*>(blob + h->material_offset);
    s.env = reinterpret_cast<const float*>(blob + h->env_offset);
    s.lights = reinterpret_cast<const cpn_light*>(blob + h->light_offset);
    cpn_render_pixel(&s, &pass, pass.x0 + static_cast<unsigned>(i % tw), pass.y0 + static_cast<unsigned>(i / tw), out + i * 4);
}
