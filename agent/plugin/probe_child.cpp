#include "plugin/probe_child.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "plugin/plugin_library.hpp"

namespace cpn {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

nlohmann::json probe_plugin_in_process(const std::string& plugin_path) {
    const auto t0 = Clock::now();
    PluginReport rep;
    rep.path = plugin_path;
    rep.name = backend_name_from_file(std::filesystem::path(plugin_path).filename().string());
    nlohmann::json devices = nlohmann::json::array();
    auto finish = [&]() {
        rep.total_ms = ms_since(t0);
        return nlohmann::json{{"report", rep}, {"devices", devices}};
    };

    PluginLoadError lerr;
    std::shared_ptr<PluginLibrary> lib = PluginLibrary::open(plugin_path, lerr);
    rep.load_ms = ms_since(t0);
    if (!lib) {
        rep.status = lerr.status;
        rep.stage = lerr.stage;
        rep.reason = lerr.reason;
        return finish();
    }
    const cpn_backend& b = lib->backend();
    rep.name = b.name;
    rep.abi_version = lib->abi_version();

    try {
        cpn_probe_info probe{};
        probe.struct_size = sizeof probe;
        cpn_msg msg{};
        const auto tp = Clock::now();
        cpn_status st = b.probe(&probe, &msg);
        rep.probe_ms = ms_since(tp);
        rep.runtime_name = probe.runtime_name;
        rep.runtime_version = probe.runtime_version;
        rep.driver_version = probe.driver_version;
        if (st != CPN_OK) {
            rep.status = "failed";
            rep.stage = "probe";
            rep.reason = msg.text[0] ? msg.text : "probe failed with status " + std::to_string(st);
            return finish();
        }
        if (!probe.usable) {
            rep.status = "skipped";
            rep.stage = "probe";
            rep.reason = probe.reason[0] ? probe.reason : "the backend reported itself unusable";
            return finish();
        }

        const auto te = Clock::now();
        uint32_t count = 0;
        st = b.device_count(&count, &msg);
        if (st != CPN_OK) {
            rep.status = "failed";
            rep.stage = "enumerate";
            rep.reason = std::string("device_count: ") + msg.text;
            rep.enumerate_ms = ms_since(te);
            return finish();
        }
        auto desc = std::make_unique<cpn_device_desc>();
        std::string partial;
        for (uint32_t i = 0; i < count; ++i) {
            *desc = cpn_device_desc{};
            desc->struct_size = sizeof(cpn_device_desc);
            desc->numa_node = -1;
            desc->healthy = 1;
            cpn_msg dmsg{};
            st = b.device_info(i, desc.get(), &dmsg);
            if (st != CPN_OK) {
                // One bad device does not hide the others.
                partial += (partial.empty() ? "" : "; ") + std::string("device ") +
                           std::to_string(i) + ": " + dmsg.text;
                continue;
            }
            devices.push_back(device_from_desc(*desc, rep.name, i, probe));
        }
        rep.enumerate_ms = ms_since(te);
        rep.device_count = static_cast<uint32_t>(devices.size());
        rep.status = "ok";
        rep.stage = "done";
        rep.reason = partial.empty() ? "" : "some devices could not be described: " + partial;
    } catch (const std::exception& e) {
        rep.status = "failed";
        rep.stage = rep.stage.empty() ? "probe" : rep.stage;
        rep.reason = std::string("exception escaped the plugin: ") + e.what();
    } catch (...) {
        rep.status = "failed";
        rep.stage = rep.stage.empty() ? "probe" : rep.stage;
        rep.reason = "an unknown exception escaped the plugin";
    }
    return finish();
}

int run_probe_child(const std::string& plugin_path) {
    nlohmann::json j = probe_plugin_in_process(plugin_path);
    std::string out = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    // Leave without running vendor runtimes' static destructors: some hang or crash at exit,
    // and everything the parent needs has been written.
    std::_Exit(0);
}

}  // namespace cpn
