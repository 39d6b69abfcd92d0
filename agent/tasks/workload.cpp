// workload.cpp: the echo workload, which tests the task path itself.
#include "tasks/workload.hpp"

#include <chrono>
#include <thread>

namespace cpn::tasks {

namespace {

std::string validate_echo(const nlohmann::json& p) {
    for (const auto& [k, v] : p.items()) {
        if (k == "sleep_ms") {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 3600000)
                return "params.sleep_ms must be an integer from 0 to 3600000";
        } else if (k == "progress_steps") {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1000)
                return "params.progress_steps must be an integer from 0 to 1000";
        } else if (k == "fail") {
            if (!v.is_string() || v.get_ref<const std::string&>().empty() || v.get_ref<const std::string&>().size() > 512)
                return "params.fail must be a reason of 1 to 512 characters";
        } else if (k == "device_fault") {
            if (!v.is_boolean()) return "params.device_fault must be true or false";
        } else {
            return "unknown echo parameter '" + k.substr(0, 64) + "' (known: sleep_ms, progress_steps, fail, device_fault)";
        }
    }
    return {};
}

}  // namespace

Workload echo_workload() {
    Workload w;
    w.info = {"echo", true, "returns its input and params unchanged: tests the task path itself"};
    w.validate = validate_echo;
    w.runs_inline = [](const TaskSpec& s) {
        return s.params.value("sleep_ms", 0) == 0 && s.params.value("progress_steps", 0) == 0 &&
               !s.params.value("device_fault", false) && (!s.input.present || s.input.inline_data);
    };
    w.run = [](WorkContext& ctx) {
        WorkResult r;
        const int64_t sleep_ms = ctx.spec.params.value("sleep_ms", int64_t{0});
        const int steps = ctx.spec.params.value("progress_steps", 0);
        const auto start = std::chrono::steady_clock::now();
        const auto end = start + std::chrono::milliseconds(sleep_ms);
        int reported = 0;
        while (std::chrono::steady_clock::now() < end) {
            if (ctx.cancel.stop_requested()) {
                r.outcome = WorkResult::Outcome::stopped;
                return r;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(10, sleep_ms)));
            if (steps > 0) {
                const double f = std::min(1.0, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                                                   static_cast<double>(sleep_ms));
                const int step = static_cast<int>(f * steps);
                if (step > reported) {
                    reported = step;
                    ctx.progress(static_cast<double>(step) / steps, "step " + std::to_string(step) + "/" + std::to_string(steps));
                }
            }
        }
        if (ctx.cancel.stop_requested()) {
            r.outcome = WorkResult::Outcome::stopped;
            return r;
        }
        if (ctx.spec.params.value("device_fault", false)) {
            r.outcome = WorkResult::Outcome::device_fault;
            r.reason = "echo was asked to report a fault of device " + ctx.device.id;
            return r;
        }
        if (ctx.spec.params.contains("fail")) {
            r.outcome = WorkResult::Outcome::failed;
            r.reason = ctx.spec.params["fail"].get<std::string>();
            return r;
        }
        if (ctx.spec.input.present) {
            Result<std::string> in = ctx.read_input();
            if (!in.ok()) {
                r.outcome = WorkResult::Outcome::failed;
                r.reason = in.status().message();
                return r;
            }
            r.output = std::move(in.value());
        }
        r.data = ctx.spec.params;
        return r;
    };
    return w;
}

}  // namespace cpn::tasks
