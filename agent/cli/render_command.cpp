// render_command.cpp: `cpn-agent render SCENE -o out.png`: the render task kind run locally,
// on one device, several (--device repeated) or all (--device all).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "cli/commands.hpp"
#include "config/config.hpp"
#include "inventory/discovery.hpp"
#include "reference.hpp"
#include "render/render_task.hpp"

namespace cpn::cli {

namespace {

std::atomic<int> g_render_cancel{0};
extern "C" void on_render_interrupt(int) { g_render_cancel.store(1); }

struct RenderArgs {
    std::string scene, output, plugin_dir, tile, backend;
    std::vector<std::string> devices, allow;
    uint32_t width = 0, height = 0, spp = 0, seed = 0, max_depth = 0;
    bool json = false, quiet = false, reference = false;
    bool seed_set = false, depth_set = false;
};

bool parse_tile(const std::string& s, std::array<uint32_t, 4>& t) {
    unsigned a, b, c, d;
    char tail;
    if (std::sscanf(s.c_str(), "%u,%u,%u,%u%c", &a, &b, &c, &d, &tail) != 4) return false;
    t = {a, b, c, d};
    return a < c && b < d;
}

// The output is checked before any work (a long render must not end in "cannot write"), and
// written beside its final name then renamed, so an interrupted or failed run never leaves a
// half-written image where the last good one was.
std::string output_problem(const std::string& path) {
    std::error_code ec;
    const std::filesystem::path p(path);
    if (std::filesystem::is_directory(p, ec)) return path + ": cannot open for writing: it is a directory";
    std::filesystem::path dir = p.parent_path();
    if (dir.empty()) dir = ".";
    if (!std::filesystem::is_directory(dir, ec))
        return path + ": cannot open for writing: " + std::strerror(ENOENT) + " (no directory " + dir.string() + ")";
    if (::access(dir.c_str(), W_OK) != 0)
        return path + ": cannot open for writing: " + std::strerror(errno) + " (directory " + dir.string() + ")";
    return {};
}

bool write_file(const std::string& path, const std::string& bytes, std::string& err) {
    const std::string tmp = path + ".partial-" + std::to_string(::getpid());
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
        err = path + ": cannot open for writing: " + std::strerror(errno);
        return false;
    }
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    std::error_code ec;
    if (!out) {
        err = path + ": write failed: " + std::strerror(errno);
        std::filesystem::remove(tmp, ec);
        return false;
    }
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        err = path + ": cannot replace: " + ec.message();
        std::filesystem::remove(tmp, ec);
        return false;
    }
    return true;
}

}  // namespace

std::function<int()> add_render_command(CLI::App& app, const GlobalOptions& g) {
    auto args = std::make_shared<RenderArgs>();
    CLI::App* cmd = app.add_subcommand("render", "Render a scene locally with the path tracer the render task kind uses");
    auto* scene_opt = cmd->add_option("scene", args->scene, "Scene file (YAML or JSON; docs/render.md)");
    auto* ref_opt = cmd->add_flag("--reference", args->reference,
                                  "Render the capacity reference scene (the Cornell box with a 100k-triangle torus knot, "
                                  "1920x1080) instead of a file");
    scene_opt->excludes(ref_opt);
    cmd->add_option("-o,--output", args->output, "Write the image here: PNG (8-bit sRGB), or PFM when it ends in .pfm")->required();
    cmd->add_option("--device", args->devices,
                    "Render on this device id (repeatable; 'all' = every device that renders; default: the CPU)");
    cmd->add_option("--backend", args->backend, "Reach the devices only through this backend (cpu, opencl, cuda, levelzero)");
    cmd->add_option("--spp", args->spp, "Samples per pixel (default: the scene's render.spp)")->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--width", args->width, "Frame width (default: the scene's)")->check(CLI::Range(1, 16384));
    cmd->add_option("--height", args->height, "Frame height (default: the scene's)")->check(CLI::Range(1, 16384));
    cmd->add_option("--seed", args->seed, "Random seed: the same seed gives the same image");
    cmd->add_option("--max-depth", args->max_depth, "Bounces per path at most")->check(CLI::Range(0, 256));
    cmd->add_option("--tile", args->tile, "Render only x0,y0,x1,y1 of the frame (x1, y1 exclusive)");
    cmd->add_option("--allow", args->allow,
                    "A further directory scene files (meshes, images) may come from (repeatable; the scene's own "
                    "directory is always allowed)");
    cmd->add_option("--plugin-dir", args->plugin_dir, "Override plugins.dir")->check(CLI::ExistingDirectory);
    cmd->add_flag("--json", args->json, "Print the metrics as JSON on stdout");
    cmd->add_flag("-q,--quiet", args->quiet, "No progress on stderr");
    cmd->footer("Exit codes: 0 ok, 1 the scene or the render failed, 2 usage error, 3 configuration error, "
                "130 interrupted.");
    return [args, cmd, &g]() -> int {
        args->seed_set = cmd->count("--seed") > 0;
        args->depth_set = cmd->count("--max-depth") > 0;
        Config c;
        if (int rc = load_command_config(g, c); rc != kExitOk) return rc;
        render::RenderParams params;
        if (args->spp) params.spp = args->spp;
        if (args->width) params.width = args->width;
        if (args->height) params.height = args->height;
        if (args->seed_set) params.seed = args->seed;
        if (args->depth_set) params.max_depth = args->max_depth;
        if (!args->tile.empty()) {
            std::array<uint32_t, 4> t{};
            if (!parse_tile(args->tile, t)) {
                std::fprintf(stderr, "cpn-agent render: --tile '%s': expected x0,y0,x1,y1 with x0 < x1 and y0 < y1\n",
                             args->tile.c_str());
                return kExitUsage;
            }
            params.tile = t;
        }
        const std::string out = args->output;
        params.format = out.size() > 4 && out.compare(out.size() - 4, 4, ".pfm") == 0 ? "pfm" : "png";

        if (args->scene.empty() && !args->reference) {
            std::fprintf(stderr, "cpn-agent render: name a scene file, or --reference\n");
            return kExitUsage;
        }
        if (std::string why = output_problem(out); !why.empty()) {
            std::fprintf(stderr, "cpn-agent render: %s\n", why.c_str());
            return kExitFailure;
        }
        std::string text;
        std::error_code ec;
        if (!args->reference) {
            std::ifstream in(args->scene, std::ios::binary);
            if (!in || std::filesystem::is_directory(args->scene, ec)) {
                std::fprintf(stderr, "cpn-agent render: %s: cannot read the scene file\n", args->scene.c_str());
                return kExitFailure;
            }
            text.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        }
        render::RenderJobLimits limits;
        const std::filesystem::path scene_dir =
            std::filesystem::absolute(args->reference ? std::string(".") : args->scene, ec).parent_path();
        limits.scene.base_dir = scene_dir.string();
        limits.scene.allowed_dirs = {scene_dir.string()};
        for (const std::string& a : args->allow) limits.scene.allowed_dirs.push_back(a);
        limits.scene.max_triangles = static_cast<uint64_t>(c.tasks.render_max_triangles);
        limits.max_pixels = static_cast<uint64_t>(c.tasks.render_max_pixels);

        std::map<std::string, std::string> plugins;
        Inventory inv = discover_for_work(c, args->plugin_dir, plugins);
        auto plugin_path = [&](const std::string& b) {
            auto it = plugins.find(b);
            return it == plugins.end() ? std::string() : it->second;
        };
        std::vector<render::RenderTarget> targets;
        std::vector<std::string> ids = args->devices;
        if (ids.empty())
            for (const Device& d : inv.devices)
                if (d.device_class == DeviceClass::cpu) {
                    ids.push_back(d.id);
                    break;
                }
        const bool all = std::find(ids.begin(), ids.end(), "all") != ids.end();
        for (const Device& d : inv.devices) {
            const bool wanted = std::any_of(ids.begin(), ids.end(), [&](const std::string& i) { return lower(i) == lower(d.id); });
            if (!wanted && !(all && !d.runtimes.empty())) continue;
            targets.push_back(render::render_target_for(d, plugin_path));
        }
        for (const std::string& i : ids) {
            if (i == "all") continue;
            if (std::none_of(inv.devices.begin(), inv.devices.end(), [&](const Device& d) { return lower(i) == lower(d.id); })) {
                std::string known;
                for (const Device& d : inv.devices) known += (known.empty() ? "" : ", ") + d.id;
                std::fprintf(stderr, "cpn-agent render: --device %s: no such device (known: %s)\n", i.c_str(), known.c_str());
                return kExitUsage;
            }
        }
        if (std::string why; !render::restrict_to_backend(targets, args->backend, &why)) {
            std::fprintf(stderr, "cpn-agent render: --backend %s: %s\n", args->backend.c_str(), why.c_str());
            return kExitUsage;
        }
        if (targets.empty()) {
            std::fprintf(stderr, "cpn-agent render: no device to render on\n");
            return kExitFailure;
        }

        g_render_cancel.store(0);
        struct sigaction sa {};
        sa.sa_handler = on_render_interrupt;
        sigemptyset(&sa.sa_mask);
        struct sigaction old_int {}, old_term {};
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        const bool tty = ::isatty(STDERR_FILENO) != 0;
        render::RenderControl control;
        control.cancelled = [] { return g_render_cancel.load() != 0; };
        if (!args->quiet)
            control.progress = [tty, last = -1](double f, uint32_t done, double eta) mutable {
                const int pct = static_cast<int>(f * 100);
                if (pct == last) return;
                last = pct;
                if (tty) std::fprintf(stderr, "\rrender: %3d%%  %u spp done  %.1f s left   ", pct, done, eta);
                else if (pct % 10 == 0) std::fprintf(stderr, "render: %d%% (%u spp done, %.1f s left)\n", pct, done, eta);
            };
        Result<render::RenderJobOutput> job =
            args->reference ? render::render_scene_job(render::reference_scene(), 0, "reference scene", limits, params, targets, control)
                            : render::run_render_job(text, args->scene, limits, params, targets, control);
        sigaction(SIGINT, &old_int, nullptr);
        sigaction(SIGTERM, &old_term, nullptr);
        if (tty && !args->quiet) std::fputc('\n', stderr);
        if (!job.ok()) {
            if (job.status().code() == Code::cancelled) {
                std::fprintf(stderr, "cpn-agent render: interrupted; nothing written\n");
                return 130;
            }
            std::fprintf(stderr, "cpn-agent render: %s\n", job.status().message().c_str());
            return kExitFailure;
        }
        std::string err;
        if (!write_file(out, job->bytes, err)) {
            std::fprintf(stderr, "cpn-agent render: %s\n", err.c_str());
            return kExitFailure;
        }
        const nlohmann::json& m = job->metrics;
        if (args->json) {
            std::printf("%s\n", m.dump(2).c_str());
        } else {
            std::string devs;
            for (const auto& d : m["devices"])
                devs += (devs.empty() ? "" : ", ") + d["device_id"].get<std::string>() + " (" + d["backend"].get<std::string>() + ")";
            std::printf("rendered %s: %ux%u at %u spp on %s in %.2f s (+%.2f s to prepare): %.2f M samples/s, %.2f M rays/s "
                        "(%.2f M primary, %.2f M secondary rays)\n",
                        out.c_str(), job->image.width, job->image.height, m["spp"].get<uint32_t>(), devs.c_str(),
                        m["render_s"].get<double>(), m["prepare_s"].get<double>(), m["samples_per_s"].get<double>() / 1e6,
                        m["rays_per_s"].get<double>() / 1e6, m["primary_rays"].get<double>() / 1e6,
                        m["secondary_rays"].get<double>() / 1e6);
        }
        return kExitOk;
    };
}

}  // namespace cpn::cli
