// fuzz_task_submit: a task submit payload from the brain (MQTT cpn/v1/<node>/tasks/submit)
// through admission and, when admitted as a render or infer task, that workload's params reader.
// Contract: a TaskSpec or a Rejection with a stable code and a message; a params error string;
// never an exception, a crash, or a file read outside the allowed directory.
#include <set>
#include <string>
#include <variant>

#include "fuzz_support.hpp"
#include "infer/infer_task.hpp"
#include "render/render_task.hpp"
#include "tasks/task_spec.hpp"

using namespace cpn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool registered = [] {
        tasks::register_kind({"render", true, "fuzz"});
        tasks::register_kind({"infer", true, "fuzz"});
        tasks::register_kind({"bench", true, "fuzz"});
        return true;
    }();
    (void)registered;
    static const std::set<std::string> codes = {"malformed",     "unsupported_schema_version", "invalid_field",
                                                "unknown_kind",  "oversize",                   "path_not_allowed",
                                                "input_unreadable", "unsatisfiable"};
    cpn::fuzz::expect_no_escape("task_submit", [&] {
        tasks::AdmissionLimits lim;
        lim.max_submit_bytes = 64u << 10;
        lim.max_inline_input_bytes = 16u << 10;
        lim.allowed_input_dirs = {"/nonexistent-fuzz-inputs"};
        auto r = tasks::parse_submit(cpn::fuzz::as_string(data, size), lim);
        if (auto* rej = std::get_if<tasks::Rejection>(&r)) {
            if (!codes.count(rej->code)) cpn::fuzz::broken("task_submit", "rejection with an undocumented code '" + rej->code + "'");
            if (rej->message.empty()) cpn::fuzz::broken("task_submit", "rejection '" + rej->code + "' without a message");
            return;
        }
        const tasks::TaskSpec& spec = std::get<tasks::TaskSpec>(r);
        if (spec.id.empty() || spec.kind.empty()) cpn::fuzz::broken("task_submit", "admitted a task without an id or kind");
        if (spec.input.present && !spec.input.inline_data && spec.input.path.rfind("/nonexistent-fuzz-inputs/", 0) != 0)
            cpn::fuzz::broken("task_submit", "admitted an input path outside the allowed directory: " + spec.input.path);
        if (spec.kind == "render") {
            render::RenderParams p;
            (void)render::parse_render_params(spec.params, &p);
        } else if (spec.kind == "infer") {
            infer::InferParams p;
            (void)infer::parse_infer_params(spec.params, &p);
        }
    });
    return 0;
}
