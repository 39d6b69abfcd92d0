// bvh.cpp: binned SAH build (16 bins per axis, surface-area cost), parallel over subtrees,
// collapsed into a BVH4 by opening the largest-area children first.
#include "bvh.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <memory>
#include <thread>

namespace cpn::render {

namespace {

struct Aabb {
    float lo[3] = {CPN_INF, CPN_INF, CPN_INF};
    float hi[3] = {-CPN_INF, -CPN_INF, -CPN_INF};
    void grow(const Aabb& b) {
        for (int a = 0; a < 3; ++a) lo[a] = std::min(lo[a], b.lo[a]), hi[a] = std::max(hi[a], b.hi[a]);
    }
    void grow(const float p[3]) {
        for (int a = 0; a < 3; ++a) lo[a] = std::min(lo[a], p[a]), hi[a] = std::max(hi[a], p[a]);
    }
    float area() const {
        if (lo[0] > hi[0]) return 0;
        const float dx = hi[0] - lo[0], dy = hi[1] - lo[1], dz = hi[2] - lo[2];
        return 2 * (dx * dy + dy * dz + dz * dx);
    }
};

struct BNode {
    Aabb box;
    std::unique_ptr<BNode> kid[2];
    uint32_t first = 0, count = 0;  // leaf: a range of the index array
    bool leaf() const { return !kid[0]; }
};

constexpr int kBins = 16;
constexpr uint32_t kMaxLeaf = 8;         // SAH leaves
constexpr int kMedianDepth = 48;         // past it, object-median splits bound the depth

class Builder {
public:
    Builder(const std::vector<cpn_prim>& prims, unsigned threads) : n_(prims.size()), threads_(threads) {
        boxes_.resize(n_);
        cent_.resize(n_ * 3);
        index_.resize(n_);
        for (size_t i = 0; i < n_; ++i) {
            const cpn_prim& p = prims[i];
            Aabb b;
            if (p.type == CPN_PRIM_SPHERE) {
                const float r = p.e1[0];
                for (int a = 0; a < 3; ++a) b.lo[a] = p.v0[a] - r, b.hi[a] = p.v0[a] + r;
            } else {
                float v1[3], v2[3];
                for (int a = 0; a < 3; ++a) v1[a] = p.v0[a] + p.e1[a], v2[a] = p.v0[a] + p.e2[a];
                b.grow(p.v0);
                b.grow(v1);
                b.grow(v2);
            }
            boxes_[i] = b;
            for (int a = 0; a < 3; ++a) cent_[i * 3 + a] = 0.5f * (b.lo[a] + b.hi[a]);
            index_[i] = static_cast<uint32_t>(i);
        }
    }

    std::unique_ptr<BNode> build() {
        int par = 0;
        for (unsigned t = threads_; t > 1; t >>= 1) ++par;
        return build(0, static_cast<uint32_t>(n_), 0, par + 1);
    }

    const std::vector<uint32_t>& index() const { return index_; }

private:
    std::unique_ptr<BNode> build(uint32_t begin, uint32_t end, int depth, int par_levels) {
        auto node = std::make_unique<BNode>();
        Aabb cb;
        for (uint32_t i = begin; i < end; ++i) {
            node->box.grow(boxes_[index_[i]]);
            cb.grow(&cent_[index_[i] * 3]);
        }
        const uint32_t n = end - begin;
        if (n <= 2) return leaf(std::move(node), begin, n);
        // Best SAH split over the three axes.
        float best_cost = CPN_INF;
        int best_axis = -1, best_split = 0;
        if (depth < kMedianDepth) {
            for (int a = 0; a < 3; ++a) {
                const float ext = cb.hi[a] - cb.lo[a];
                if (!(ext > 1e-12f * std::max(1.0f, std::fabs(cb.hi[a])))) continue;
                const float k = kBins * (1 - 1e-6f) / ext;
                Aabb bb[kBins];
                uint32_t bc[kBins] = {};
                for (uint32_t i = begin; i < end; ++i) {
                    const uint32_t p = index_[i];
                    const int b = std::min(kBins - 1, static_cast<int>((cent_[p * 3 + a] - cb.lo[a]) * k));
                    bb[b].grow(boxes_[p]);
                    ++bc[b];
                }
                float right_area[kBins];
                uint32_t right_count[kBins];
                Aabb acc;
                uint32_t cnt = 0;
                for (int b = kBins - 1; b > 0; --b) {
                    acc.grow(bb[b]);
                    cnt += bc[b];
                    right_area[b] = acc.area();
                    right_count[b] = cnt;
                }
                Aabb left;
                uint32_t lc = 0;
                for (int b = 0; b < kBins - 1; ++b) {
                    left.grow(bb[b]);
                    lc += bc[b];
                    if (lc == 0 || right_count[b + 1] == 0) continue;
                    const float cost = left.area() * lc + right_area[b + 1] * right_count[b + 1];
                    if (cost < best_cost) best_cost = cost, best_axis = a, best_split = b;
                }
            }
        }
        const float area = node->box.area();
        if (best_axis >= 0) {
            const float split_cost = 1.0f + (area > 0 ? best_cost / area : static_cast<float>(n));
            if (n <= kMaxLeaf && static_cast<float>(n) <= split_cost) return leaf(std::move(node), begin, n);
        } else if (n <= CPN_LEAF_MAX_PRIMS && depth < kMedianDepth) {
            return leaf(std::move(node), begin, n);  // all centroids in one point: nothing to gain
        }
        uint32_t mid;
        if (best_axis >= 0) {
            const int a = best_axis;
            const float k = kBins * (1 - 1e-6f) / (cb.hi[a] - cb.lo[a]);
            uint32_t* m = std::partition(index_.data() + begin, index_.data() + end, [&](uint32_t p) {
                return std::min(kBins - 1, static_cast<int>((cent_[p * 3 + a] - cb.lo[a]) * k)) <= best_split;
            });
            mid = static_cast<uint32_t>(m - index_.data());
        } else {
            // object median on the widest centroid axis
            int a = 0;
            for (int b = 1; b < 3; ++b)
                if (cb.hi[b] - cb.lo[b] > cb.hi[a] - cb.lo[a]) a = b;
            mid = begin + n / 2;
            std::nth_element(index_.data() + begin, index_.data() + mid, index_.data() + end,
                             [&](uint32_t x, uint32_t y) { return cent_[x * 3 + a] < cent_[y * 3 + a]; });
        }
        if (mid == begin || mid == end) mid = begin + n / 2;
        if (par_levels > 0 && n > 32768) {
            auto left = std::async(std::launch::async, [&, begin, mid, depth, par_levels] {
                return build(begin, mid, depth + 1, par_levels - 1);
            });
            node->kid[1] = build(mid, end, depth + 1, par_levels - 1);
            node->kid[0] = left.get();
        } else {
            node->kid[0] = build(begin, mid, depth + 1, 0);
            node->kid[1] = build(mid, end, depth + 1, 0);
        }
        return node;
    }

    static std::unique_ptr<BNode> leaf(std::unique_ptr<BNode> node, uint32_t begin, uint32_t n) {
        node->first = begin;
        node->count = n;
        return node;
    }

    size_t n_;
    unsigned threads_;
    std::vector<Aabb> boxes_;
    std::vector<float> cent_;
    std::vector<uint32_t> index_;
};

class Collapser {
public:
    Collapser(Bvh4& out, const std::vector<uint32_t>& index) : out_(out), index_(index) {}

    void root(const BNode& r) {
        if (r.leaf()) {
            // one node holding one leaf
            const BNode* kids[1] = {&r};
            emit(kids, 1, 1);
        } else {
            const BNode* kids[2] = {r.kid[0].get(), r.kid[1].get()};
            emit(kids, 2, 1);
        }
    }

private:
    uint32_t emit(const BNode* const* start, int start_count, uint32_t depth) {
        out_.depth = std::max(out_.depth, depth);
        const BNode* kids[4];
        int k = 0;
        for (int i = 0; i < start_count; ++i) kids[k++] = start[i];
        while (k < 4) {
            int open = -1;
            float best = -1;
            for (int i = 0; i < k; ++i)
                if (!kids[i]->leaf() && kids[i]->box.area() > best) best = kids[i]->box.area(), open = i;
            if (open < 0) break;
            const BNode* o = kids[open];
            kids[open] = o->kid[0].get();
            kids[k++] = o->kid[1].get();
        }
        const uint32_t idx = static_cast<uint32_t>(out_.nodes.size());
        out_.nodes.emplace_back();
        uint32_t child[4] = {CPN_EMPTY_CHILD, CPN_EMPTY_CHILD, CPN_EMPTY_CHILD, CPN_EMPTY_CHILD};
        for (int i = 0; i < k; ++i) {
            const BNode* c = kids[i];
            if (c->leaf()) {
                const uint32_t first = static_cast<uint32_t>(out_.prim_order.size());
                for (uint32_t j = 0; j < c->count; ++j) out_.prim_order.push_back(index_[c->first + j]);
                child[i] = CPN_LEAF_FLAG | ((c->count - 1) << 27) | first;
                ++out_.leaves;
            } else {
                const BNode* gk[2] = {c->kid[0].get(), c->kid[1].get()};
                child[i] = emit(gk, 2, depth + 1);
            }
        }
        cpn_bvh4_node& n = out_.nodes[idx];
        std::memset(&n, 0, sizeof n);
        for (int i = 0; i < 4; ++i) {
            n.child[i] = child[i];
            if (i >= k) continue;
            const Aabb& b = kids[i]->box;
            n.bmin_x[i] = b.lo[0], n.bmin_y[i] = b.lo[1], n.bmin_z[i] = b.lo[2];
            n.bmax_x[i] = b.hi[0], n.bmax_y[i] = b.hi[1], n.bmax_z[i] = b.hi[2];
        }
        return idx;
    }

    Bvh4& out_;
    const std::vector<uint32_t>& index_;
};

void normalise(float v[4]) {
    const double l = std::sqrt(double{v[0]} * v[0] + double{v[1]} * v[1] + double{v[2]} * v[2]);
    for (int i = 0; i < 3; ++i) v[i] = static_cast<float>(v[i] / l);
    v[3] = 0;
}

/* Arrays start on a cache line: a node is 128 bytes, a primitive 64. */
size_t align64(size_t v) { return (v + 63) & ~size_t{63}; }

}  // namespace

Bvh4 build_bvh4(const std::vector<cpn_prim>& prims, unsigned threads) {
    Bvh4 out;
    if (prims.empty()) return out;
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    Builder b(prims, threads);
    std::unique_ptr<BNode> root = b.build();
    out.nodes.reserve(prims.size() / 2 + 1);
    out.prim_order.reserve(prims.size());
    Collapser(out, b.index()).root(*root);
    return out;
}

Result<PackedScene> pack_scene(const Scene& scene, unsigned threads) {
    PackedScene ps;
    if (scene.prims.size() > CPN_LEAF_MAX_FIRST)
        return Status(Code::invalid_argument, "the scene has " + std::to_string(scene.prims.size()) +
                                                  " primitives; the BVH holds at most " + std::to_string(CPN_LEAF_MAX_FIRST));
    if (scene.materials.empty()) return Status(Code::invalid_argument, "the scene has no materials");
    const auto t0 = std::chrono::steady_clock::now();
    const Bvh4 bvh = build_bvh4(scene.prims, threads);
    ps.build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (1 + 3 * static_cast<uint64_t>(bvh.depth) > CPN_TRAVERSAL_STACK)
        return Status(Code::invalid_argument, "the scene's BVH is " + std::to_string(bvh.depth) +
                                                  " levels deep, more than traversal allows (the geometry is degenerate)");
    const Environment& env = scene.environment;
    const size_t off_nodes = align64(sizeof(cpn_scene_header));
    const size_t off_prims = align64(off_nodes + bvh.nodes.size() * sizeof(cpn_bvh4_node));
    const size_t off_mats = align64(off_prims + scene.prims.size() * sizeof(cpn_prim));
    const size_t off_env = align64(off_mats + scene.materials.size() * sizeof(cpn_material));
    // The light list: every emissive primitive that emits, in BVH order, chosen by its power.
    std::vector<cpn_prim> ordered(scene.prims.size());
    for (size_t i = 0; i < bvh.prim_order.size(); ++i) {
        ordered[i] = scene.prims[bvh.prim_order[i]];
        ordered[i].light = CPN_NO_LIGHT;
    }
    std::vector<cpn_light> lights;
    double total_power = 0;
    std::vector<double> power;
    for (size_t i = 0; i < ordered.size(); ++i) {
        const cpn_prim& p = ordered[i];
        const cpn_material& m = scene.materials[p.material].m;
        if (m.type != CPN_MAT_EMISSIVE) continue;
        double area;
        if (p.type == CPN_PRIM_SPHERE) {
            area = 4 * M_PI * double{p.e1[0]} * p.e1[0];
        } else {
            const double cx = double{p.e1[1]} * p.e2[2] - double{p.e1[2]} * p.e2[1];
            const double cy = double{p.e1[2]} * p.e2[0] - double{p.e1[0]} * p.e2[2];
            const double cz = double{p.e1[0]} * p.e2[1] - double{p.e1[1]} * p.e2[0];
            area = 0.5 * std::sqrt(cx * cx + cy * cy + cz * cz);
        }
        const double w = area * (double{m.emission[0]} + m.emission[1] + m.emission[2]);
        if (!(w > 0) || !(area > 0)) continue;
        cpn_light l{};
        l.prim = static_cast<uint32_t>(i);
        l.area = static_cast<float>(area);
        ordered[i].light = static_cast<uint32_t>(lights.size());
        lights.push_back(l);
        power.push_back(w);
        total_power += w;
    }
    double acc = 0;
    for (size_t i = 0; i < lights.size(); ++i) {
        acc += power[i];
        lights[i].pmf = static_cast<float>(power[i] / total_power);
        lights[i].cdf = i + 1 == lights.size() ? 1.0f : static_cast<float>(acc / total_power);
    }
    const size_t off_lights = align64(off_env + env.image.size() * sizeof(float));
    const size_t total = align64(off_lights + lights.size() * sizeof(cpn_light));
    if (total > 0xffffffffull) return Status(Code::invalid_argument, "the packed scene is larger than 4 GiB");
    ps.blob.assign(total, '\0');
    char* base = ps.blob.data();
    cpn_scene_header h{};
    h.magic = CPN_SCENE_MAGIC;
    h.version = CPN_SCENE_VERSION;
    h.header_bytes = sizeof h;
    h.total_bytes = static_cast<uint32_t>(total);
    h.node_count = static_cast<uint32_t>(bvh.nodes.size());
    h.node_offset = static_cast<uint32_t>(off_nodes);
    h.prim_count = static_cast<uint32_t>(scene.prims.size());
    h.prim_offset = static_cast<uint32_t>(off_prims);
    h.material_count = static_cast<uint32_t>(scene.materials.size());
    h.material_offset = static_cast<uint32_t>(off_mats);
    h.env_width = env.width;
    h.env_height = env.height;
    h.env_offset = static_cast<uint32_t>(off_env);
    h.light_count = static_cast<uint32_t>(lights.size());
    h.light_offset = static_cast<uint32_t>(off_lights);
    const Camera& c = scene.camera;
    h.cam_pos[0] = c.position.x, h.cam_pos[1] = c.position.y, h.cam_pos[2] = c.position.z;
    float f[4] = {c.look_at.x - c.position.x, c.look_at.y - c.position.y, c.look_at.z - c.position.z, 0};
    const float dist = std::sqrt(f[0] * f[0] + f[1] * f[1] + f[2] * f[2]);
    normalise(f);
    float r[4] = {f[1] * c.up.z - f[2] * c.up.y, f[2] * c.up.x - f[0] * c.up.z, f[0] * c.up.y - f[1] * c.up.x, 0};
    normalise(r);
    float u[4] = {r[1] * f[2] - r[2] * f[1], r[2] * f[0] - r[0] * f[2], r[0] * f[1] - r[1] * f[0], 0};
    normalise(u);
    std::memcpy(h.cam_forward, f, sizeof f);
    std::memcpy(h.cam_right, r, sizeof r);
    std::memcpy(h.cam_up, u, sizeof u);
    h.tan_half_fov = static_cast<float>(std::tan(c.fov_deg * M_PI / 360.0));
    h.lens_radius = c.aperture * 0.5f;
    h.focus_distance = c.focus_distance > 0 ? c.focus_distance : dist;
    h.env_color[0] = env.color.x, h.env_color[1] = env.color.y, h.env_color[2] = env.color.z;
    h.env_intensity = env.intensity;
    h.env_rotation = static_cast<float>(env.rotation_deg * M_PI / 180.0);
    std::memcpy(base, &h, sizeof h);
    if (!bvh.nodes.empty()) std::memcpy(base + off_nodes, bvh.nodes.data(), bvh.nodes.size() * sizeof(cpn_bvh4_node));
    if (!ordered.empty()) std::memcpy(base + off_prims, ordered.data(), ordered.size() * sizeof(cpn_prim));
    if (!lights.empty()) std::memcpy(base + off_lights, lights.data(), lights.size() * sizeof(cpn_light));
    auto* mats = reinterpret_cast<cpn_material*>(base + off_mats);
    for (size_t i = 0; i < scene.materials.size(); ++i) mats[i] = scene.materials[i].m;
    if (!env.image.empty()) std::memcpy(base + off_env, env.image.data(), env.image.size() * sizeof(float));
    ps.node_count = h.node_count;
    ps.prim_count = h.prim_count;
    ps.depth = bvh.depth;
    return ps;
}

}  // namespace cpn::render
