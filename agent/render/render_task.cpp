// render_task.cpp: the render job (shared by the task kind and the CLI) and the `render` kind.
#include "render/render_task.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>

#include "bench/suite.hpp"
#include "bvh.hpp"
#include "reference.hpp"

namespace cpn::render {

namespace {

std::string check_uint(const nlohmann::json& v, const char* name, uint64_t lo, uint64_t hi, uint32_t* out) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || static_cast<uint64_t>(v.get<int64_t>()) < lo ||
        static_cast<uint64_t>(v.get<int64_t>()) > hi)
        return std::string("params.") + name + " must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    *out = static_cast<uint32_t>(v.get<int64_t>());
    return {};
}

}  // namespace

std::string parse_render_params(const nlohmann::json& p, RenderParams* out) {
    RenderParams r;
    if (!p.is_object()) return "params must be an object";
    for (const auto& [k, v] : p.items()) {
        uint32_t u = 0;
        std::string e;
        if (k == "width" || k == "height") {
            e = check_uint(v, k.c_str(), 1, 16384, &u);
            (k == "width" ? r.width : r.height) = u;
        } else if (k == "spp") {
            e = check_uint(v, "spp", 1, 1u << 20, &u);
            r.spp = u;
        } else if (k == "seed") {
            e = check_uint(v, "seed", 0, UINT32_MAX, &u);
            r.seed = u;
        } else if (k == "max_depth") {
            e = check_uint(v, "max_depth", 0, 256, &u);
            r.max_depth = u;
        } else if (k == "tile") {
            if (!v.is_array() || v.size() != 4) return "params.tile must be [x0, y0, x1, y1] (x1 and y1 exclusive)";
            std::array<uint32_t, 4> t{};
            for (size_t i = 0; i < 4; ++i)
                if (!(e = check_uint(v[i], "tile[]", 0, 16384, &t[i])).empty()) return e;
            if (t[0] >= t[2] || t[1] >= t[3]) return "params.tile must have x0 < x1 and y0 < y1";
            r.tile = t;
        } else if (k == "format") {
            if (!v.is_string() || (v != "png" && v != "pfm")) return "params.format must be \"png\" or \"pfm\"";
            r.format = v.get<std::string>();
        } else if (k == "devices") {
            if (v.is_string() && v == "all") {
                r.devices = {"all"};
            } else if (v.is_array() && v.size() <= 64) {
                for (const auto& d : v) {
                    if (!d.is_string() || d.get_ref<const std::string&>().empty() || d.get_ref<const std::string&>().size() > 128)
                        return "params.devices must hold device ids (strings of 1 to 128 characters)";
                    r.devices.push_back(d.get<std::string>());
                }
            } else {
                return "params.devices must be \"all\" or a list of at most 64 device ids";
            }
        } else if (k == "backend") {
            if (!v.is_string() || v.get_ref<const std::string&>().empty() || v.get_ref<const std::string&>().size() > 32)
                return "params.backend must be a backend name (cpu, opencl, cuda, levelzero)";
            r.backend = v.get<std::string>();
        } else {
            return "unknown render parameter '" + k.substr(0, 64) +
                   "' (known: width, height, spp, seed, max_depth, tile, format, devices, backend)";
        }
        if (!e.empty()) return e;
    }
    if (out != nullptr) *out = std::move(r);
    return {};
}

bool restrict_to_backend(std::vector<RenderTarget>& targets, const std::string& backend, std::string* why) {
    if (backend.empty()) return true;
    for (RenderTarget& t : targets) {
        std::string have;
        for (const RenderTarget::Path& p : t.paths) have += (have.empty() ? "" : ", ") + p.backend;
        std::erase_if(t.paths, [&](const RenderTarget::Path& p) { return p.backend != backend; });
        if (t.paths.empty()) {
            if (why != nullptr)
                *why = "device " + t.device_id + " has no usable path through backend '" + backend + "' (it has: " +
                       (have.empty() ? std::string("none") : have) + ")";
            return false;
        }
    }
    return true;
}

Result<RenderJobOutput> run_render_job(const std::string& scene_text, const std::string& source,
                                       const RenderJobLimits& limits, const RenderParams& params,
                                       const std::vector<RenderTarget>& targets, const RenderControl& control) {
    const auto t0 = std::chrono::steady_clock::now();
    Result<Scene> scene = parse_scene(scene_text, source, limits.scene);
    if (!scene.ok()) return scene.status();
    const double parse_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return render_scene_job(scene.value(), parse_ms, source, limits, params, targets, control);
}

Result<RenderJobOutput> render_scene_job(const Scene& scene, double scene_ms, const std::string& source,
                                         const RenderJobLimits& limits, const RenderParams& params,
                                         const std::vector<RenderTarget>& targets, const RenderControl& control) {
    RenderRequest req;
    const RenderSettings& s = scene.settings;
    req.width = params.width.value_or(s.width);
    req.height = params.height.value_or(s.height);
    req.spp = params.spp.value_or(s.spp);
    req.seed = params.seed.value_or(s.seed);
    req.max_depth = params.max_depth.value_or(s.max_depth);
    if (uint64_t{req.width} * req.height > limits.max_pixels)
        return Status(Code::invalid_argument, "a " + std::to_string(req.width) + "x" + std::to_string(req.height) +
                                                  " frame is more than this node's limit of " +
                                                  std::to_string(limits.max_pixels) + " pixels (tasks.render.max_pixels)");
    if (params.tile) {
        const auto& t = *params.tile;
        if (t[2] > req.width || t[3] > req.height)
            return Status(Code::invalid_argument, "params.tile [" + std::to_string(t[0]) + ", " + std::to_string(t[1]) + ", " +
                                                      std::to_string(t[2]) + ", " + std::to_string(t[3]) + "] reaches outside the " +
                                                      std::to_string(req.width) + "x" + std::to_string(req.height) + " frame");
        req.x0 = t[0], req.y0 = t[1], req.x1 = t[2], req.y1 = t[3];
    } else {
        req.x1 = req.width, req.y1 = req.height;
    }
    Result<PackedScene> packed = pack_scene(scene);
    if (!packed.ok()) return Status(packed.status().code(), source + ": " + packed.status().message());
    req.blob = &packed->blob;
    Result<RenderOutput> out = render_frame(req, targets, control);
    if (!out.ok()) return out.status();
    RenderJobOutput job;
    job.image = std::move(out->image);
    if (params.format == "pfm") {
        job.bytes = encode_pfm(job.image);
    } else {
        Result<std::string> png = encode_png(job.image);
        if (!png.ok()) return png.status();
        job.bytes = std::move(png.value());
    }
    const double secs = std::max(1e-9, out->seconds);
    const uint64_t samples = uint64_t{req.x1 - req.x0} * (req.y1 - req.y0) * req.spp;
    nlohmann::json devs = nlohmann::json::array();
    for (const DeviceShare& d : out->devices) {
        nlohmann::json j = {{"device_id", d.device_id}, {"backend", d.backend}, {"bands", d.bands},
                            {"rays", d.rays}, {"busy_s", d.busy_s}};
        if (!d.error.empty()) j["error"] = d.error;
        devs.push_back(std::move(j));
    }
    job.metrics = {{"width", req.width},
                   {"height", req.height},
                   {"tile", {req.x0, req.y0, req.x1, req.y1}},
                   {"spp", req.spp},
                   {"seed", req.seed},
                   {"max_depth", req.max_depth},
                   {"format", params.format},
                   {"triangles", scene.triangles},
                   {"spheres", scene.spheres},
                   {"bvh_nodes", packed->node_count},
                   {"bvh_depth", packed->depth},
                   {"scene_ms", scene_ms},
                   {"bvh_build_ms", packed->build_ms},
                   {"prepare_s", out->prepare_seconds},
                   {"render_s", out->seconds},
                   {"samples", samples},
                   {"samples_per_s", static_cast<double>(samples) / secs},
                   {"primary_rays", out->primary_rays},
                   {"secondary_rays", out->secondary_rays},
                   {"rays_per_s", static_cast<double>(out->primary_rays + out->secondary_rays) / secs},
                   {"devices", devs}};
    return job;
}

void register_render_reference() {
    static std::once_flag once;
    std::call_once(once, [] {
        bench::TaskReference ref;
        ref.task_kind = "render";
        ref.workload_kind = kRenderPassKind;
        // The middle eighth of a 1920x1080 frame: rays through the knot, the walls and the light.
        ref.params_json = R"({"width":1920,"height":1080,"x0":0,"y0":472,"x1":1920,"y1":607,"max_depth":8,"seed":1})";
        ref.unit = "Mrays/s";
        ref.scale = 1e-6;
        ref.description = "Cornell box with a 100k-triangle torus knot, 1920x1080 (rows 472-606), up to 8 bounces with light sampling";
        ref.make_blob = []() -> std::shared_ptr<const std::string> {
            Result<PackedScene> p = pack_scene(reference_scene());
            if (!p.ok()) return nullptr;
            return std::make_shared<const std::string>(std::move(p->blob));
        };
        bench::register_task_reference(std::move(ref));
    });
}

tasks::Workload render_workload(RenderWorkloadDeps deps) {
    tasks::Workload w;
    w.info = {"render", true, "path-traces a scene (input: YAML or JSON scene) into a PNG or PFM image"};
    w.validate = [](const nlohmann::json& p) { return parse_render_params(p, nullptr); };
    w.runs_inline = [](const tasks::TaskSpec&) { return false; };
    auto shared = std::make_shared<RenderWorkloadDeps>(std::move(deps));
    w.run = [shared](tasks::WorkContext& ctx) {
        tasks::WorkResult r;
        auto failed = [&](const std::string& why) {
            r.outcome = tasks::WorkResult::Outcome::failed;
            r.reason = why;
            return r;
        };
        RenderParams params;
        if (std::string e = parse_render_params(ctx.spec.params, &params); !e.empty()) return failed(e);
        if (!ctx.spec.input.present) return failed("a render task needs its scene as input (YAML or JSON; inline or by path)");
        Result<std::string> text = ctx.read_input();
        if (!text.ok()) return failed(text.status().message());
        RenderJobLimits limits = shared->limits;
        std::string source = "scene (inline input)";
        if (!ctx.spec.input.inline_data) {
            source = ctx.spec.input.path;
            limits.scene.base_dir = std::filesystem::path(ctx.spec.input.path).parent_path().string();
        }
        // The device the scheduler placed the task on first, then the extra ones asked for.
        std::vector<RenderTarget> targets{render_target_for(ctx.device, shared->plugin_path)};
        for (const Device& d : shared->devices) {
            if (d.id == ctx.device.id || !d.health.healthy) continue;
            const bool all = !params.devices.empty() && params.devices[0] == "all";
            if (all || std::find(params.devices.begin(), params.devices.end(), d.id) != params.devices.end())
                targets.push_back(render_target_for(d, shared->plugin_path));
        }
        for (const std::string& id : params.devices) {
            if (id == "all") continue;
            if (std::none_of(shared->devices.begin(), shared->devices.end(), [&](const Device& d) { return d.id == id; }))
                return failed("params.devices: no device '" + id + "' on this node");
        }
        if (std::string why; !restrict_to_backend(targets, params.backend, &why)) return failed("params.backend: " + why);
        RenderControl control;
        control.cancelled = [&ctx] { return ctx.cancel.stop_requested(); };
        control.progress = [&ctx](double f, uint32_t done, double eta) {
            char msg[128];
            std::snprintf(msg, sizeof msg, "%u samples per pixel done, about %.1f s left", done, eta);
            ctx.progress(f, msg);
        };
        Result<RenderJobOutput> job = run_render_job(text.value(), source, limits, params, targets, control);
        if (!job.ok()) {
            if (job.status().code() == Code::cancelled) {
                r.outcome = tasks::WorkResult::Outcome::stopped;
                return r;
            }
            if (job.status().code() == Code::device_lost) {
                r.outcome = tasks::WorkResult::Outcome::device_fault;
                r.reason = job.status().message();
                return r;
            }
            return failed(job.status().message());
        }
        r.output = std::move(job->bytes);
        r.data = std::move(job->metrics);
        return r;
    };
    return w;
}

}  // namespace cpn::render
