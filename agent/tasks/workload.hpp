// workload.hpp: what a task kind implements to run on this node. A workload is written once
// against this interface (the device it got, its spec, a cancel token, a progress callback) and
// runs its per-backend kernels through the backend plugins; the scheduler (task_service.hpp)
// owns everything else: admission, placement, timeouts, the journal and publication.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.hpp"
#include "inventory/device.hpp"
#include "tasks/task_spec.hpp"

namespace cpn::tasks {

/* Why a running workload should stop. Workloads poll it between steps (tiles, layers,
 * iterations) and return promptly once it is not `none`. */
enum class StopReason : int { none = 0, canceled = 1, timed_out = 2, shutdown = 3 };

class CancelToken {
public:
    StopReason reason() const { return static_cast<StopReason>(v_.load(std::memory_order_acquire)); }
    bool stop_requested() const { return reason() != StopReason::none; }
    /* The first reason wins (a timeout after a cancel stays a cancel). */
    void request(StopReason r) {
        int expected = 0;
        v_.compare_exchange_strong(expected, static_cast<int>(r), std::memory_order_acq_rel);
    }

private:
    std::atomic<int> v_{0};
};

struct WorkContext {
    const TaskSpec& spec;
    const Device& device;
    const CancelToken& cancel;
    /* Reports progress (0..1) and an optional message; cheap, may be called often (the
     * scheduler publishes at most a few per second per task). */
    std::function<void(double fraction, const std::string& message)> progress;
    /* The input bytes: inline data, or the file the spec references (read on demand). */
    std::function<Result<std::string>()> read_input;
};

struct WorkResult {
    enum class Outcome { succeeded, failed, device_fault, stopped } outcome = Outcome::succeeded;
    std::string output;                       // the task's output bytes (binary-safe)
    nlohmann::json data = nlohmann::json();   // kind-specific result (null: none)
    std::string reason;                       // failed / device_fault: what went wrong
};

struct Workload {
    KindInfo info;
    /* Checks the kind's params at admission; "" when fine, else what is wrong (a REJECTED
     * invalid_field the submitter can act on). */
    std::function<std::string(const nlohmann::json& params)> validate;
    /* True when this spec can run inline on the scheduler thread: pure, in memory, microseconds,
     * no side effects (so it may run before its RUNNING state is committed). */
    std::function<bool(const TaskSpec&)> runs_inline;
    std::function<WorkResult(WorkContext&)> run;
};

/* The `echo` workload: returns its input; params sleep_ms, progress_steps, fail, device_fault
 * (docs/protocol.md, Kinds). */
Workload echo_workload();

}  // namespace cpn::tasks
