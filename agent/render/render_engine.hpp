// render_engine.hpp: runs one frame (or a tile range of it) on one or more devices through the
// backend plugins' render.pass kind. Progressive: the samples are split into passes of 1, 1, 2,
// 4, ... (at most 32) samples; each pass covers the region in row bands that the devices pull
// from a shared queue, so a node with several devices uses them all. The pass schedule depends
// only on spp, and every pixel's samples depend only on (seed, pixel, sample): a tile of a
// frame is bit-for-bit the same pixels as in the full frame on the same backend.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.hpp"
#include "image.hpp"
#include "inventory/device.hpp"

namespace cpn::render {

struct RenderRequest {
    const std::string* blob = nullptr;  // a packed scene (bvh.hpp)
    uint32_t width = 0, height = 0;     // the full frame
    uint32_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // the region to render; x1 == 0: the whole frame
    uint32_t spp = 1, seed = 1, max_depth = 8;
};

/* A device and the runtime paths it can be reached by, best first. */
struct RenderTarget {
    std::string device_id;
    DeviceClass device_class = DeviceClass::other;
    struct Path {
        std::string backend;
        uint32_t index = 0;
        std::string plugin_path;
    };
    std::vector<Path> paths;
};

struct DeviceShare {
    std::string device_id, backend;
    uint64_t bands = 0, rays = 0;
    double busy_s = 0;
    std::string error;  // set when the device failed and its work went to the others
};

struct RenderOutput {
    Image image;  // the region, mean radiance per pixel
    uint64_t primary_rays = 0, secondary_rays = 0;
    double prepare_seconds = 0;  // opening the devices and preparing the scene on them
    double seconds = 0;          // the passes (what the ray rates are over)
    std::vector<DeviceShare> devices;
};

struct RenderControl {
    std::function<bool()> cancelled;  // polled often; true stops at the next band
    /* Called after each band: fraction done (0..1), samples per pixel completed so far (whole
     * passes), and the estimated seconds left. */
    std::function<void(double fraction, uint32_t samples_done, double eta_s)> progress;
};

/* The passes `spp` samples are split into. */
std::vector<uint32_t> pass_schedule(uint32_t spp);

/* The runtime paths to reach `d` by for rendering, best first: the native path of a CPU, then a
 * GPU's vendor runtime, then OpenCL; plugin files from `plugin_paths` (backend -> path). */
RenderTarget render_target_for(const Device& d, const std::function<std::string(const std::string&)>& plugin_path);

Result<RenderOutput> render_frame(const RenderRequest& req, const std::vector<RenderTarget>& targets,
                                  const RenderControl& control);

}  // namespace cpn::render
