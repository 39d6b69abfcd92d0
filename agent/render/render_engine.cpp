// render_engine.cpp: device sessions (plugin -> device -> prepared scene), the pass loop, the
// band queue shared by the devices, accumulation, progress and cancellation.
#include "render/render_engine.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "blob_check.hpp"
#include "plugin/plugin_library.hpp"

namespace cpn::render {

namespace {

using Clock = std::chrono::steady_clock;

/* One device, opened through one plugin, with the scene prepared on it. */
class Session {
public:
    ~Session() {
        if (prepared_ != nullptr && lib_->backend().release != nullptr) lib_->backend().release(prepared_);
        if (handle_ != nullptr && lib_->backend().device_close != nullptr) lib_->backend().device_close(handle_);
    }

    static Result<std::unique_ptr<Session>> open(const RenderTarget::Path& p, const std::string& blob) {
        PluginLoadError le;
        auto s = std::unique_ptr<Session>(new Session);
        s->backend_ = p.backend;
        s->lib_ = PluginLibrary::open(p.plugin_path, le);
        if (!s->lib_) return Status(Code::unavailable, p.backend + ": " + le.stage + ": " + le.reason);
        const cpn_backend& b = s->lib_->backend();
        if (b.device_open == nullptr || b.prepare == nullptr || b.run == nullptr)
            return Status(Code::unsupported, p.backend + ": the backend has no execution functions");
        cpn_msg err{};
        cpn_probe_info pi{};
        pi.struct_size = sizeof pi;
        if (b.probe != nullptr && b.probe(&pi, &err) != CPN_OK) return Status(Code::unavailable, p.backend + ": probe: " + err.text);
        if (b.probe != nullptr && !pi.usable) return Status(Code::unavailable, p.backend + ": " + pi.reason);
        uint32_t count = 0;
        if (b.device_count != nullptr && b.device_count(&count, &err) != CPN_OK)
            return Status(Code::unavailable, p.backend + ": device_count: " + err.text);
        if (b.device_open(p.index, &s->handle_, &err) != CPN_OK)
            return Status(Code::unavailable, p.backend + ": device_open(" + std::to_string(p.index) + "): " + err.text);
        cpn_workload w{};
        w.struct_size = sizeof w;
        w.kind = kRenderPassKind;
        w.params_json = "{}";
        w.blob = blob.data();
        w.blob_size = blob.size();
        if (b.query != nullptr) {
            cpn_query_result q{};
            q.struct_size = sizeof q;
            if (b.query(s->handle_, &w, &q, &err) != CPN_OK) return Status(Code::unavailable, p.backend + ": query: " + err.text);
            if (!q.supported) return Status(Code::unsupported, p.backend + ": " + q.reason);
        }
        const cpn_status st = b.prepare(s->handle_, &w, &s->prepared_, &err);
        if (st != CPN_OK)
            return Status(st == CPN_E_UNSUPPORTED ? Code::unsupported : st == CPN_E_OUT_OF_MEMORY ? Code::out_of_memory : Code::unavailable,
                          p.backend + ": prepare: " + err.text);
        return s;
    }

    /* Renders one band; fills out (4 floats per pixel). */
    Status run(const cpn_render_pass& pass, std::vector<float>& out, const volatile int32_t* cancel, uint64_t& rays) {
        out.assign(size_t{pass.x1 - pass.x0} * (pass.y1 - pass.y0) * 4, 0.0f);
        char result[1024] = {};
        PassIo call(pass, out.data(), result, sizeof result);
        cpn_run_control ctl{};
        ctl.struct_size = sizeof ctl;
        ctl.cancel = cancel;
        cpn_msg err{};
        const cpn_status st = lib_->backend().run(prepared_, &call.io, &ctl, &err);
        if (st == CPN_E_CANCELLED) return Status(Code::cancelled, "cancelled");
        if (st == CPN_E_DEVICE_LOST) return Status(Code::device_lost, backend_ + ": " + err.text);
        if (st != CPN_OK) return Status(Code::unavailable, backend_ + ": run: " + err.text);
        rays = 0;
        for (size_t i = 3; i < out.size(); i += 4) rays += static_cast<uint64_t>(out[i]);
        return Status::Ok();
    }

    const std::string& backend() const { return backend_; }

private:
    Session() = default;
    std::shared_ptr<PluginLibrary> lib_;
    std::string backend_;
    cpn_device_handle* handle_ = nullptr;
    cpn_prepared* prepared_ = nullptr;
};

struct Band {
    uint32_t y0, y1;
};

}  // namespace

std::vector<uint32_t> pass_schedule(uint32_t spp) {
    std::vector<uint32_t> passes;
    uint32_t done = 0, next = 1;
    while (done < spp) {
        const uint32_t n = std::min(next, spp - done);
        passes.push_back(n);
        done += n;
        if (passes.size() >= 2) next = std::min<uint32_t>(next * 2, 32);
    }
    return passes;
}

RenderTarget render_target_for(const Device& d, const std::function<std::string(const std::string&)>& plugin_path) {
    RenderTarget t;
    t.device_id = d.id;
    t.device_class = d.device_class;
    auto rank = [](const std::string& b) {
        if (b == "cpu" || b == "cuda") return 0;
        if (b == "levelzero") return 1;
        if (b == "opencl") return 2;
        return 3;
    };
    std::vector<RuntimePath> rts = d.runtimes;
    std::stable_sort(rts.begin(), rts.end(), [&](const RuntimePath& a, const RuntimePath& b) { return rank(a.backend) < rank(b.backend); });
    for (const RuntimePath& rp : rts) {
        const std::string p = plugin_path(rp.backend);
        if (!p.empty()) t.paths.push_back({rp.backend, rp.index, p});
    }
    return t;
}

Result<RenderOutput> render_frame(const RenderRequest& req, const std::vector<RenderTarget>& targets,
                                  const RenderControl& control) {
    if (req.blob == nullptr) return Status(Code::invalid_argument, "render: no scene");
    if (const std::string why = check_scene_blob(req.blob->data(), req.blob->size()); !why.empty())
        return Status(Code::invalid_argument, "render: " + why);
    RenderRequest r = req;
    if (r.x1 == 0 && r.y1 == 0) r.x1 = r.width, r.y1 = r.height;
    if (r.width == 0 || r.height == 0 || r.x0 >= r.x1 || r.y0 >= r.y1 || r.x1 > r.width || r.y1 > r.height)
        return Status(Code::invalid_argument, "render: the tile [" + std::to_string(r.x0) + ", " + std::to_string(r.y0) + ", " +
                                                  std::to_string(r.x1) + ", " + std::to_string(r.y1) + ") is empty or outside the " +
                                                  std::to_string(r.width) + "x" + std::to_string(r.height) + " frame");
    if (r.spp == 0) return Status(Code::invalid_argument, "render: spp must be at least 1");
    if (targets.empty()) return Status(Code::invalid_argument, "render: no device to render on");
    const auto t0 = Clock::now();

    // Open every device by its best working path.
    std::vector<std::unique_ptr<Session>> sessions;
    std::vector<DeviceShare> shares;
    std::string why_none;
    for (const RenderTarget& t : targets) {
        std::string reasons;
        for (const RenderTarget::Path& p : t.paths) {
            Result<std::unique_ptr<Session>> s = Session::open(p, *r.blob);
            if (s.ok()) {
                sessions.push_back(std::move(s.value()));
                shares.push_back({t.device_id, p.backend, 0, 0, 0, {}});
                reasons.clear();
                break;
            }
            if (s.status().code() == Code::out_of_memory) return Status(Code::out_of_memory, t.device_id + ": " + s.status().message());
            reasons += (reasons.empty() ? "" : "; ") + s.status().message();
        }
        if (t.paths.empty()) reasons = "no runtime path with a plugin";
        if (!reasons.empty()) {
            spdlog::warn("render: device {} not used: {}", t.device_id, reasons);
            why_none += (why_none.empty() ? "" : "; ") + t.device_id + ": " + reasons;
        }
    }
    if (sessions.empty()) return Status(Code::unavailable, "render: no device could render: " + why_none);
    const auto t_passes = Clock::now();

    const uint32_t tw = r.x1 - r.x0, th = r.y1 - r.y0;
    // The running sum per pixel. Float (not double) halves the memory of a large frame (an 8K
    // frame: 400 MB); it is a sum of at most a few thousand pass sums, and the order of the
    // additions is fixed, so the result stays deterministic.
    std::vector<float> accum(size_t{tw} * th * 3, 0.0f);
    // Bands of whole rows, sized so every device gets several per pass (at least 8 rows).
    const uint64_t target_px = std::max<uint64_t>(16384, uint64_t{tw} * th / (4 * sessions.size()));
    const uint32_t band_rows = static_cast<uint32_t>(std::clamp<uint64_t>(target_px / tw, 8, th));
    const std::vector<uint32_t> passes = pass_schedule(r.spp);
    volatile int32_t cancel_flag = 0;
    std::vector<bool> alive(sessions.size(), true);
    RenderOutput out;
    uint64_t total_rays = 0;
    uint32_t samples_done = 0;
    const double total_work = static_cast<double>(tw) * th * r.spp;
    double work_done = 0;
    std::mutex mu;  // the queue, progress and the results below
    for (const uint32_t pass_samples : passes) {
        std::deque<Band> queue;
        for (uint32_t y = 0; y < th; y += band_rows) queue.push_back({y, std::min(th, y + band_rows)});
        Status failure;
        std::atomic<int> running{0};
        auto worker = [&](size_t di) {
            std::vector<float> buf;
            for (;;) {
                Band b;
                {
                    std::lock_guard<std::mutex> g(mu);
                    if (queue.empty() || !failure.ok() || cancel_flag != 0) break;
                    b = queue.front();
                    queue.pop_front();
                }
                cpn_render_pass p{};
                p.width = r.width;
                p.height = r.height;
                p.x0 = r.x0;
                p.x1 = r.x1;
                p.y0 = r.y0 + b.y0;
                p.y1 = r.y0 + b.y1;
                p.sample_begin = samples_done;
                p.sample_count = pass_samples;
                p.seed = r.seed;
                p.max_depth = r.max_depth;
                uint64_t rays = 0;
                const auto b0 = Clock::now();
                Status s = sessions[di]->run(p, buf, &cancel_flag, rays);
                const double secs = std::chrono::duration<double>(Clock::now() - b0).count();
                std::lock_guard<std::mutex> g(mu);
                if (s.code() == Code::cancelled) break;
                if (!s.ok()) {
                    // This device is out; its band goes back for the others.
                    spdlog::warn("render: device {} failed, its work moves to the other devices: {}", shares[di].device_id, s.message());
                    shares[di].error = s.message();
                    alive[di] = false;
                    queue.push_front(b);
                    if (std::none_of(alive.begin(), alive.end(), [](bool a) { return a; })) failure = s;
                    break;
                }
                for (uint32_t y = b.y0; y < b.y1; ++y)
                    for (uint32_t x = 0; x < tw; ++x) {
                        const float* src = &buf[(size_t{y - b.y0} * tw + x) * 4];
                        float* dst = &accum[(size_t{y} * tw + x) * 3];
                        dst[0] += src[0], dst[1] += src[1], dst[2] += src[2];
                    }
                shares[di].bands++;
                shares[di].rays += rays;
                shares[di].busy_s += secs;
                total_rays += rays;
                work_done += static_cast<double>(tw) * (b.y1 - b.y0) * pass_samples;
                if (control.progress) {
                    const double f = work_done / total_work;
                    const double el = std::chrono::duration<double>(Clock::now() - t_passes).count();
                    // samples per pixel done: whole passes, plus this pass once all its bands are in
                    const uint32_t spp_done = static_cast<uint32_t>(std::min<double>(r.spp, std::floor(f * r.spp + 1e-9)));
                    control.progress(f, std::max(samples_done, spp_done), f > 0 ? el * (1 - f) / f : 0);
                }
            }
            running.fetch_sub(1);
        };
        // A band a failing device gave back may be left after the others finished: go again
        // with the devices still alive until the queue is empty.
        while (!queue.empty() && failure.ok() && cancel_flag == 0) {
            std::vector<std::thread> threads;
            for (size_t i = 0; i < sessions.size(); ++i)
                if (alive[i]) {
                    running.fetch_add(1);
                    threads.emplace_back(worker, i);
                }
            if (threads.empty()) break;
            while (running.load() > 0) {
                if (control.cancelled && control.cancelled()) cancel_flag = 1;
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            for (std::thread& t : threads) t.join();
        }
        if (cancel_flag != 0 || (control.cancelled && control.cancelled())) return Status(Code::cancelled, "render: cancelled");
        if (!failure.ok()) return Status(failure.code(), "render: every device failed; the last: " + failure.message());
        if (!queue.empty()) return Status(Code::unavailable, "render: the devices stopped with work left");
        samples_done += pass_samples;
    }
    out.image.width = tw;
    out.image.height = th;
    const float n = static_cast<float>(r.spp);
    for (float& v : accum) v /= n;
    out.image.rgb = std::move(accum);
    out.primary_rays = uint64_t{tw} * th * r.spp;
    out.secondary_rays = total_rays > out.primary_rays ? total_rays - out.primary_rays : 0;
    out.prepare_seconds = std::chrono::duration<double>(t_passes - t0).count();
    out.seconds = std::chrono::duration<double>(Clock::now() - t_passes).count();
    out.devices = std::move(shares);
    return out;
}

}  // namespace cpn::render
