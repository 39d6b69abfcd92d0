// reference.hpp: the reference scene of the render capacity figure and the benchmarks: the
// Cornell box of scenes/cornell.yaml holding a torus knot of about 100k triangles, built in code
// so no file has to ship with the agent.
#pragma once

#include <cstdint>

#include "scene.hpp"

namespace cpn::render {

/* The Cornell box with a (3,2) torus knot mesh of 2 * segments * sides triangles (default
 * 400 * 125 * 2 = 100,000) in diffuse white, plus the box's 12 triangles. 1920x1080 by default. */
Scene reference_scene(uint32_t segments = 400, uint32_t sides = 125);

}  // namespace cpn::render
