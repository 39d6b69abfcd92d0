// reference.cpp: see reference.hpp.
#include "reference.hpp"

#include <cmath>

namespace cpn::render {

namespace {

const char* const kBox = R"YAML(
render: {width: 1920, height: 1080, spp: 16, max_depth: 8, seed: 1}
camera: {position: [278, 278, -800], look_at: [278, 278, 0], up: [0, 1, 0], fov: 40}
environment: {color: [0, 0, 0]}
materials:
  white: {type: diffuse, albedo: [0.73, 0.73, 0.73]}
  red: {type: diffuse, albedo: [0.65, 0.05, 0.05]}
  green: {type: diffuse, albedo: [0.12, 0.45, 0.15]}
  light: {type: emissive, emission: [15, 15, 15]}
  knot: {type: diffuse, albedo: [0.8, 0.7, 0.5]}
objects:
  - {type: quad, corner: [555, 0, 0], u: [0, 555, 0], v: [0, 0, 555], material: green}
  - {type: quad, corner: [0, 0, 0], u: [0, 555, 0], v: [0, 0, 555], material: red}
  - {type: quad, corner: [213, 554, 227], u: [130, 0, 0], v: [0, 0, 105], material: light}
  - {type: quad, corner: [0, 0, 0], u: [555, 0, 0], v: [0, 0, 555], material: white}
  - {type: quad, corner: [555, 555, 555], u: [-555, 0, 0], v: [0, 0, -555], material: white}
  - {type: quad, corner: [0, 0, 555], u: [555, 0, 0], v: [0, 555, 0], material: white}
)YAML";

struct P {
    double x, y, z;
};
P sub(P a, P b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
P cross(P a, P b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
P norm(P a) {
    const double l = std::sqrt(a.x * a.x + a.y * a.y + a.z * a.z);
    return {a.x / l, a.y / l, a.z / l};
}

/* The (3,2) torus knot's centre line, in the box's middle, about 330 units across. */
P knot(double t) {
    const double r = 2 + std::cos(3 * t);
    return {278 + 55 * r * std::cos(2 * t), 250 + 55 * r * std::sin(2 * t), 300 + 55 * std::sin(3 * t)};
}

}  // namespace

Scene reference_scene(uint32_t segments, uint32_t sides) {
    SceneLimits limits;  // the box text names no file
    Result<Scene> parsed = parse_scene(kBox, "reference scene", limits);
    Scene s = std::move(parsed.value());
    uint32_t knot_material = 0;
    for (uint32_t i = 0; i < s.materials.size(); ++i)
        if (s.materials[i].name == "knot") knot_material = i;
    // A tube of radius 22 swept along the knot, with a parallel-transport-free frame (the
    // curve's tangent and the direction to the next point's second derivative are enough for a
    // smooth closed knot).
    std::vector<P> ring(size_t{segments} * sides);
    const double tube = 22;
    for (uint32_t i = 0; i < segments; ++i) {
        const double t = 2 * M_PI * i / segments, dt = 1e-4;
        const P c = knot(t);
        const P tangent = norm(sub(knot(t + dt), knot(t - dt)));
        const P accel = sub(sub(knot(t + dt), c), sub(c, knot(t - dt)));
        const P b = norm(cross(tangent, accel));
        const P n = cross(b, tangent);
        for (uint32_t j = 0; j < sides; ++j) {
            const double a = 2 * M_PI * j / sides;
            const double ca = std::cos(a) * tube, sa = std::sin(a) * tube;
            ring[size_t{i} * sides + j] = {c.x + n.x * ca + b.x * sa, c.y + n.y * ca + b.y * sa, c.z + n.z * ca + b.z * sa};
        }
    }
    auto add = [&](const P& a, const P& b, const P& c) {
        cpn_prim p{};
        p.type = CPN_PRIM_TRIANGLE;
        p.material = knot_material;
        const P e1 = sub(b, a), e2 = sub(c, a);
        const P n = cross(e1, e2);
        const double len = std::sqrt(n.x * n.x + n.y * n.y + n.z * n.z);
        if (!(len > 1e-30)) return;
        p.v0[0] = static_cast<float>(a.x), p.v0[1] = static_cast<float>(a.y), p.v0[2] = static_cast<float>(a.z);
        p.e1[0] = static_cast<float>(e1.x), p.e1[1] = static_cast<float>(e1.y), p.e1[2] = static_cast<float>(e1.z);
        p.e2[0] = static_cast<float>(e2.x), p.e2[1] = static_cast<float>(e2.y), p.e2[2] = static_cast<float>(e2.z);
        p.n[0] = static_cast<float>(n.x / len), p.n[1] = static_cast<float>(n.y / len), p.n[2] = static_cast<float>(n.z / len);
        s.prims.push_back(p);
        ++s.triangles;
    };
    for (uint32_t i = 0; i < segments; ++i)
        for (uint32_t j = 0; j < sides; ++j) {
            const uint32_t i1 = (i + 1) % segments, j1 = (j + 1) % sides;
            const P& a = ring[size_t{i} * sides + j];
            const P& b = ring[size_t{i1} * sides + j];
            const P& c = ring[size_t{i1} * sides + j1];
            const P& d = ring[size_t{i} * sides + j1];
            add(a, b, c);
            add(a, c, d);
        }
    return s;
}

}  // namespace cpn::render
