// task_service.hpp: the remote-task path of the daemon: admission, the durable journal, the
// scheduler (per-device slots and memory, priorities, timeouts, cancel, device health) and the
// publication of every state change (docs/protocol.md, Tasks).
//
// Threading: the methods are called by one thread at a time, the holder of the daemon's round
// lock: its event-loop thread, or the MQTT receive thread running a round while the loop sleeps
// (daemon.cpp, follow()); nothing here is tied to a thread. Workloads run on their
// own threads (or inline, for pure in-memory kinds) and hand their outcome back through `wake`,
// which makes the daemon call flush() again. Requests that arrive together (submits, cancels,
// status queries, workload outcomes) are handled by one flush() with one journal commit (group
// commit); nothing is published before that commit returned.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.hpp"
#include "inventory/device.hpp"
#include "mqtt/mqtt_session.hpp"
#include "tasks/task_journal.hpp"
#include "tasks/task_spec.hpp"
#include "tasks/workload.hpp"

namespace cpn::tasks {

struct TaskServiceConfig {
    std::string node_id;
    std::string state_dir;
    AdmissionLimits limits;
    int max_queued = 10000;
    int64_t inline_result_bytes = 64 * 1024;
    std::map<DeviceClass, int> slots{{DeviceClass::cpu, 4}, {DeviceClass::gpu, 4}, {DeviceClass::fpga, 1},
                                     {DeviceClass::npu, 2}, {DeviceClass::other, 1}};
    int64_t retention_s = 7 * 24 * 3600;
    bool full_sync = true;
    int max_attempts = 3;  // starts of an idempotent task across agent restarts (recover())
    std::string sysfs_root = "/sys";  // for the CPU energy counter (powercap)
};

/* The daemon's side of the service. */
struct TaskHooks {
    /* Publishes without waiting; `tag` (< 0) comes back through on_delivered(). Returns false
     * when it could not be handed to the client (offline). */
    std::function<bool(const mqtt::OutgoingMessage& m, int64_t tag)> publish;
    /* Called from any thread when flush() has work (a workload ended, progress, a probe). */
    std::function<void()> wake;
    /* The device's measured capacity for the task kind (higher is better); 1 when unmeasured. */
    std::function<double(const std::string& device_id, const std::string& kind)> capacity_score;
    /* Re-probes an unhealthy device (runs on a background thread; may take seconds): true when
     * the device is back. */
    std::function<bool(const Device& d)> reprobe;
};

/* Where a task message came from. */
struct TaskRequest {
    enum class Type { submit, cancel, status } type = Type::submit;
    std::string payload;
    std::string response_topic, correlation;  // MQTT 5 properties ("" when absent)
    std::string queue;                        // "" = the node's own topic
};

class TaskService {
public:
    /* Opens the journal (state_dir/tasks.db), recovers after a crash (tasks cut off while
     * RUNNING are re-queued when their kind is idempotent, else FAILED "agent restarted"), and
     * loads the queue. `inv` is the node's inventory (devices the scheduler places tasks on). */
    static Result<std::unique_ptr<TaskService>> open(TaskServiceConfig cfg, const Inventory& inv, TaskHooks hooks,
                                                     std::vector<Workload> workloads);
    ~TaskService();
    TaskService(const TaskService&) = delete;
    TaskService& operator=(const TaskService&) = delete;

    /* Queues a request for the next flush(). */
    void add(TaskRequest r);
    /* Handles what is queued and what workloads reported: one journal commit, then starts
     * tasks and publishes. Cheap when there is nothing to do. */
    void flush();
    /* When flush() must run next at the latest (a timeout, a re-probe, retention). */
    std::chrono::steady_clock::time_point next_deadline() const;

    /* The broker connection came up: re-publishes every state change it has not acknowledged. */
    void on_online();
    void on_offline();
    /* A publication (tag < 0) was acknowledged (ok) or failed. */
    void on_delivered(int64_t tag, bool ok);
    /* True while some published state awaits its acknowledgement from the broker (the daemon
     * then wakes at least every 100 ms instead of being woken by each acknowledgement). */
    bool awaiting_deliveries() const;
    /* Stops: running workloads are asked to stop (their tasks stay RUNNING in the journal and
     * are recovered at the next start) and given up to `grace_ms` to return. */
    void shutdown(int grace_ms);

    /* For telemetry and logs. */
    struct Counts {
        int64_t queued = 0, running = 0;
        int unhealthy_devices = 0;
    };
    Counts counts() const;
    /* What recovery did at open (for the log). */
    std::string recovery_summary() const;

    /* The topics the daemon subscribes to for this service, and how to classify a topic. */
    std::vector<std::string> subscriptions(const std::vector<std::string>& queues, const std::string& share_group) const;
    /* Fills r.type and r.queue from `topic`; false when the topic is not a task topic. */
    bool classify(const std::string& topic, TaskRequest& r) const;

private:
    struct Impl;
    explicit TaskService(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace cpn::tasks
