// bvh.hpp: the acceleration structure. A binned SAH binary BVH built on the host (large
// subtrees in parallel), collapsed into the BVH4 of kernel/types.h that every device traverses,
// and the scene blob (header, nodes, primitives, materials, environment) the backends receive.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.hpp"
#include "kernel/types.h"
#include "blob_check.hpp"
#include "scene.hpp"

namespace cpn::render {

struct Bvh4 {
    std::vector<cpn_bvh4_node> nodes;   // nodes[0] is the root; empty for no primitives
    std::vector<uint32_t> prim_order;   // leaf slot -> index into the input primitives
    uint32_t depth = 0;                 // BVH4 levels
    uint32_t leaves = 0;
};

/* Builds the BVH4 over `prims` with up to `threads` threads (0 = all cores). */
Bvh4 build_bvh4(const std::vector<cpn_prim>& prims, unsigned threads = 0);

struct PackedScene {
    std::string blob;            // the bytes backends receive as the workload blob
    uint32_t node_count = 0, prim_count = 0, depth = 0;
    double build_ms = 0;         // BVH build time
};

/* Builds the BVH and packs the scene into one blob (kernel/types.h describes its layout). */
Result<PackedScene> pack_scene(const Scene& scene, unsigned threads = 0);

}  // namespace cpn::render
