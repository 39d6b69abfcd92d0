// render_task.hpp: the `render` task kind and the job both it and `cpn-agent render` run: scene
// text -> validated scene -> BVH and packed blob -> frame (or tile range) on one or more
// devices -> PNG or PFM bytes and the metrics (docs/render.md, docs/protocol.md "Kinds").
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "render/render_engine.hpp"
#include "scene.hpp"
#include "tasks/workload.hpp"

namespace cpn::render {

struct RenderParams {
    std::optional<uint32_t> width, height, spp, seed, max_depth;
    std::optional<std::array<uint32_t, 4>> tile;  // x0, y0, x1, y1 (x1, y1 exclusive)
    std::string format = "png";                   // "png" or "pfm"
    std::vector<std::string> devices;             // extra devices ("all": every device that renders)
    std::string backend;                          // only this runtime path ("" = the best one per device)
};

/* Keeps only the paths through `backend` ("" keeps all); false when a target has none left. */
bool restrict_to_backend(std::vector<RenderTarget>& targets, const std::string& backend, std::string* why);

/* Parses task params; "" and fills `out` when valid, else what is wrong ("params.spp must ..."). */
std::string parse_render_params(const nlohmann::json& p, RenderParams* out);

struct RenderJobOutput {
    std::string bytes;           // PNG or PFM of the rendered region
    Image image;                 // the same, as floats
    nlohmann::json metrics;      // what the task result's data and the CLI's --json carry
};

struct RenderJobLimits {
    SceneLimits scene;
    uint64_t max_pixels = 7680ull * 4320;
};

/* Parses the scene, builds its BVH, renders on `targets` and encodes the output. */
Result<RenderJobOutput> run_render_job(const std::string& scene_text, const std::string& source,
                                       const RenderJobLimits& limits, const RenderParams& params,
                                       const std::vector<RenderTarget>& targets, const RenderControl& control);
/* The same for a scene already in memory (the reference scene); `scene_ms` is reported as the
 * time it took to read. */
Result<RenderJobOutput> render_scene_job(const Scene& scene, double scene_ms, const std::string& source,
                                         const RenderJobLimits& limits, const RenderParams& params,
                                         const std::vector<RenderTarget>& targets, const RenderControl& control);

struct RenderWorkloadDeps {
    std::vector<Device> devices;                                  // the node's devices
    std::function<std::string(const std::string&)> plugin_path;  // backend -> plugin file ("" none)
    RenderJobLimits limits;                                       // allowed_dirs: tasks.allowed_input_dirs
};

/* Registers the render reference job (the in-code reference scene, reference.hpp) with the
 * capacity suite, so `cpn-agent bench` and the daemon's benchmark measure "task.render" in
 * Mrays/s per device (docs/capacity.md). Idempotent. */
void register_render_reference();

/* The `render` task kind: input = the scene (YAML or JSON; inline, or a file whose directory
 * relative mesh paths resolve against); params as RenderParams. */
tasks::Workload render_workload(RenderWorkloadDeps deps);

}  // namespace cpn::render
