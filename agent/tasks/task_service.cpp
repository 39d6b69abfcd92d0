// task_service.cpp: admission, scheduling, execution and publication of remote tasks.
#include "tasks/task_service.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <tuple>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "core/codec.hpp"
#include "mqtt/messages.hpp"

namespace cpn::tasks {

namespace {

using Clock = std::chrono::steady_clock;

// How long a delivered result may wait to be marked published in the journal when no group
// commit comes to carry the mark (a lost mark only means one more publication after a crash).
constexpr auto kMarkDelay = std::chrono::milliseconds(100);
constexpr size_t kMarkBatch = 4096;  // marks written at once, whatever the delay

/* Journal reasons are stored as "<code>: <message>"; the published message splits them. */
const std::set<std::string>& reason_codes() {
    static const std::set<std::string> c = {"malformed",        "unsupported_schema_version", "invalid_field",
                                            "unknown_kind",     "oversize",                   "path_not_allowed",
                                            "input_unreadable", "unsatisfiable",              "queue_full",
                                            "failed",           "device_fault",               "agent_restarted",
                                            "timed_out",        "canceled"};
    return c;
}

std::pair<std::string, std::string> split_reason(const std::string& r) {
    if (r == kReasonAgentRestarted) return {"agent_restarted", r};
    const size_t colon = r.find(": ");
    if (colon != std::string::npos && reason_codes().count(r.substr(0, colon))) return {r.substr(0, colon), r.substr(colon + 2)};
    return {"", r};
}

/* Writes `data` to `path` durably (temporary file, fsync, rename). */
Status write_file_durably(const std::string& path, const std::string& data) {
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return {Code::unavailable, tmp + ": " + std::strerror(errno)};
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            std::string e = std::strerror(errno);
            ::close(fd);
            return {Code::unavailable, tmp + ": " + e};
        }
        off += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) {
        std::string e = std::strerror(errno);
        ::close(fd);
        return {Code::unavailable, tmp + ": fsync: " + e};
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) return {Code::unavailable, path + ": " + std::strerror(errno)};
    return {};
}

/* The CPU package energy counter (powercap, microjoules), or -1 where it is not readable. */
double read_energy_uj(const std::string& sysfs_root) {
    std::ifstream in(sysfs_root + "/class/powercap/intel-rapl:0/energy_uj");
    double v = -1;
    if (!(in >> v)) return -1;
    return v;
}

}  // namespace

struct TaskService::Impl {
    TaskServiceConfig cfg;
    Inventory inv;
    TaskHooks hooks;
    std::map<std::string, Workload> workloads;
    std::unique_ptr<TaskJournal> journal;
    std::string recovery_summary;
    std::string event_prefix;  // cpn/v1/nodes/<node>/task/

    struct Dev {
        const Device* dev = nullptr;
        std::string backend;
        int slots = 0;
        int used = 0;
        uint64_t mem_used = 0;
        bool healthy = true;
        bool probing = false;
        int backoff_ms = 1000;
        Clock::time_point next_probe{};
    };
    std::map<std::string, Dev> devs;

    // Shared with workload and probe threads (outlives the service if a thread is stuck).
    struct Mailbox {
        std::mutex mu;
        std::vector<std::string> finished;
        std::map<std::string, std::pair<double, std::string>> progress;
        std::vector<std::pair<std::string, bool>> probes;
        std::function<void()> wake;  // cleared at shutdown
        void notify() {
            std::function<void()> w;
            {
                std::lock_guard<std::mutex> g(mu);
                w = wake;
            }
            if (w) w();
        }
    };
    std::shared_ptr<Mailbox> mail = std::make_shared<Mailbox>();

    struct Run {
        CancelToken cancel;
        std::mutex mu;
        WorkResult result;
        std::string result_json;
        std::thread thread;
    };
    struct Live {
        TaskRecord rec;
        TaskSpec spec;
        std::string queue;
        bool running = false;
        std::string device_id;
        uint64_t mem = 0;
        std::shared_ptr<Run> run;
        Clock::time_point deadline{};
        bool cancel_requested = false;
        bool warned_stuck = false;
    };
    std::unordered_map<std::string, Live> live;
    using QKey = std::tuple<int, int64_t, std::string>;  // -priority, seq, id
    std::set<QKey> queue;

    std::vector<TaskRequest> pending;
    std::vector<Transition> retry_transitions;  // workload outcomes whose commit failed
    std::vector<std::string> retry_finished;

    // Publication tracking: tag -> (id, version); (id, version) -> outstanding publications.
    bool online = false;
    int64_t next_tag = -1;
    std::unordered_map<int64_t, std::pair<std::string, int64_t>> tags;
    std::map<std::pair<std::string, int64_t>, int> outstanding;
    std::set<std::pair<std::string, int64_t>> failed_pubs;
    // Delivered (id, version) pairs not yet journaled as published: they ride in the next group
    // commit, or get one of their own once kMarkDelay has passed without one.
    std::vector<std::pair<std::string, int64_t>> marks;
    Clock::time_point marks_due{};
    bool republish = false;
    bool republish_after_failure = false;  // logged once per episode
    Clock::time_point next_purge = Clock::now() + std::chrono::minutes(1);
    bool stopping = false;
    bool dirty = true;  // flush() has something to look at (set by add(), open, threads)

    // --- helpers ---------------------------------------------------------------------------
    /* Journals the pending marks in a commit of their own (not fsynced); on failure they are
     * dropped: those changes are then published once more after a restart. */
    void write_marks() {
        if (marks.empty()) return;
        if (Status s = journal->mark_published_batch(marks); !s.ok()) spdlog::warn("tasks: {}", s.message());
        marks.clear();
    }

    QKey qkey(const TaskRecord& r) const { return {-r.priority, r.seq, r.id}; }

    nlohmann::json message(const TaskRecord& r, const std::string* correlation, const std::string& queue_name,
                           bool cancel_requested) const {
        nlohmann::json m = {{"schema_version", 1},      {"type", "task_state"}, {"node_id", cfg.node_id},
                            {"timestamp_ms", mqtt::now_ms()}, {"task_id", r.id},    {"state", to_string(r.state)},
                            {"version", r.version}};
        if (!r.kind.empty()) m["kind"] = r.kind;
        m["priority"] = std::clamp(r.priority, -100, 100);
        m["attempts"] = r.attempts;
        if (r.accepted_ms) m["accepted_ms"] = r.accepted_ms;
        if (r.started_ms) m["started_ms"] = r.started_ms;
        if (r.finished_ms) m["finished_ms"] = r.finished_ms;
        if (!r.device_id.empty()) m["device_id"] = r.device_id;
        if (!queue_name.empty()) m["queue"] = queue_name;
        if (!r.reason.empty()) {
            auto [code, text] = split_reason(r.reason);
            if (!code.empty()) m["code"] = code;
            m["reason"] = text;
        }
        if (cancel_requested) m["cancel_requested"] = true;
        const std::string& corr = correlation ? *correlation : r.correlation;
        if (!corr.empty()) m["correlation"] = corr;
        return m;
    }

    /* The task_state payload: message() with the result document, which is JSON already (the
     * journal's copy of what result_json() wrote), spliced in rather than parsed and dumped
     * again; a result that is not valid JSON (a damaged row) is left out. */
    std::string payload(const TaskRecord& r, const std::string* correlation, const std::string& queue_name,
                        bool cancel_requested) const {
        std::string s = message(r, correlation, queue_name, cancel_requested)
                            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        if (!r.result_json.empty() && nlohmann::json::accept(r.result_json)) {
            s.pop_back();  // the closing brace of a non-empty object
            s.reserve(s.size() + r.result_json.size() + 12);
            s += ",\"result\":";
            s += r.result_json;
            s += '}';
        }
        return s;
    }

    /* Publishes a state (tracked when `track`: its (id, version) is marked published once every
     * copy was acknowledged). Returns false when offline. */
    bool publish_state(const TaskRecord& r, bool track, const std::string* reply_topic = nullptr,
                       const std::string* correlation = nullptr, bool cancel_requested = false) {
        if (!online) return false;
        auto it = live.find(r.id);
        const std::string qname = it != live.end() ? it->second.queue : std::string();
        const std::string& reply = reply_topic ? *reply_topic : r.reply_topic;
        const std::string& corr = correlation ? *correlation : r.correlation;
        const std::string payload = this->payload(r, &corr, qname, cancel_requested);
        // The submitter's reply first: it is the one somebody waits on.
        std::vector<std::string> topics;
        if (!reply.empty()) topics.push_back(reply);
        if (!r.id.empty()) topics.push_back(event_prefix + "event/" + r.id);
        const auto key = std::make_pair(r.id, r.version);
        for (const std::string& t : topics) {
            int64_t tag = 0;
            if (track) {
                tag = next_tag--;
                if (next_tag < -(int64_t{1} << 60)) next_tag = -1;
                tags[tag] = key;
                ++outstanding[key];
            }
            if (!hooks.publish({t, payload, 1, false, t == reply ? corr : std::string()}, tag)) {
                if (track) {
                    tags.erase(tag);
                    if (--outstanding[key] <= 0) outstanding.erase(key);
                    // Refused by the client (offline, or its queue is full): the journal still has
                    // it as unpublished; the re-publication pass sends it (its latest version).
                    republish = true;
                    if (!republish_after_failure) {
                        republish_after_failure = true;
                        spdlog::warn("tasks: the MQTT client refused a state message; it is re-sent from the journal");
                    }
                }
                return false;
            }
        }
        return true;
    }

    void publish_progress(const std::string& id, double f, const std::string& text) {
        auto it = live.find(id);
        if (!online || it == live.end() || !it->second.running) return;
        const TaskRecord& r = it->second.rec;
        nlohmann::json m = {{"schema_version", 1}, {"type", "task_progress"}, {"node_id", cfg.node_id},
                            {"timestamp_ms", mqtt::now_ms()}, {"task_id", id}, {"version", r.version},
                            {"progress", std::clamp(f, 0.0, 1.0)}};
        if (!text.empty()) m["message"] = text;
        if (!r.correlation.empty()) m["correlation"] = r.correlation;
        const std::string payload = m.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        (void)hooks.publish({event_prefix + "event/" + id, payload, 0, false, {}}, 0);
        if (!r.reply_topic.empty()) (void)hooks.publish({r.reply_topic, payload, 0, false, r.correlation}, 0);
    }

    /* An answer to one request that is not itself a state change (a duplicate submit, a status
     * query, a refused submit without an id). */
    void answer(const TaskRecord& r, const std::string& reply, const std::string& corr, bool cancel_requested = false) {
        if (reply.empty()) {
            publish_state(r, false, &reply, &corr, cancel_requested);
            return;
        }
        if (!online) return;
        auto it = live.find(r.id);
        const std::string qname = it != live.end() ? it->second.queue : std::string();
        const std::string payload = this->payload(r, &corr, qname, cancel_requested);
        (void)hooks.publish({reply, payload, 1, false, corr}, 0);
    }

    static Result<std::string> read_input(const TaskServiceConfig& cfg, const TaskSpec& s) {
        if (s.input.inline_data) return s.input.data;
        std::ifstream in(s.input.path, std::ios::binary);
        if (!in) return Status(Code::not_found, "input.path '" + s.input.path + "' cannot be read now");
        std::string data;
        in.seekg(0, std::ios::end);
        const auto size = static_cast<uint64_t>(std::max<std::streamoff>(0, in.tellg()));
        if (size > cfg.limits.max_file_input_bytes)
            return Status(Code::invalid_argument, "input.path '" + s.input.path + "' grew to " + std::to_string(size) +
                                                  " bytes; the limit is " + std::to_string(cfg.limits.max_file_input_bytes));
        in.seekg(0);
        data.resize(size);
        in.read(data.data(), static_cast<std::streamsize>(size));
        data.resize(static_cast<size_t>(in.gcount()));
        return data;
    }

    /* The result document of a finished workload (writes a large output to state_dir/results/). */
    static std::string result_json(const TaskServiceConfig& cfg, const std::string& id, WorkResult& w, int64_t queue_ms,
                                   int64_t run_ms, const std::string& device_id, const std::string& backend, int attempts,
                                   double energy_j) {
        nlohmann::json res = nlohmann::json::object();
        if (!w.output.empty()) {
            nlohmann::json out = {{"size", w.output.size()}, {"sha256", sha256_hex(w.output)}};
            if (static_cast<int64_t>(w.output.size()) <= cfg.inline_result_bytes) {
                out["base64"] = base64_encode(w.output);
            } else {
                const std::string dir = cfg.state_dir + "/results";
                std::error_code ec;
                std::filesystem::create_directories(dir, ec);
                const std::string path = dir + "/" + id + ".out";
                if (Status s = write_file_durably(path, w.output); !s.ok()) {
                    w.outcome = WorkResult::Outcome::failed;
                    w.reason = "the output (" + std::to_string(w.output.size()) + " bytes) could not be stored: " + s.message();
                } else {
                    out["path"] = std::filesystem::absolute(path).string();
                }
            }
            if (out.contains("base64") || out.contains("path")) res["output"] = out;
        }
        if (!w.data.is_null()) res["data"] = w.data;
        nlohmann::json metrics = {{"queue_ms", std::max<int64_t>(0, queue_ms)},
                                  {"run_ms", std::max<int64_t>(0, run_ms)},
                                  {"device_id", device_id},
                                  {"attempts", std::max(1, attempts)}};
        if (!backend.empty()) metrics["backend"] = backend;
        if (energy_j >= 0) metrics["energy_j"] = energy_j;
        res["metrics"] = metrics;
        return res.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }

    Transition terminal_for(const Live& l, WorkResult& w, const std::string& rj) const {
        Transition t;
        t.id = l.rec.id;
        t.device_id = l.device_id;
        switch (w.outcome) {
            case WorkResult::Outcome::succeeded:
                t.to = TaskState::succeeded;
                t.result_json = rj;
                break;
            case WorkResult::Outcome::failed:
                t.to = TaskState::failed;
                t.reason = "failed: " + (w.reason.empty() ? std::string("the workload failed") : w.reason);
                t.result_json = rj;
                break;
            case WorkResult::Outcome::device_fault:
                t.to = TaskState::failed;
                t.reason = "device_fault: " + (w.reason.empty() ? "device " + l.device_id + " faulted" : w.reason);
                break;
            case WorkResult::Outcome::stopped:
                if (l.run && l.run->cancel.reason() == StopReason::timed_out) {
                    t.to = TaskState::timed_out;
                    t.reason = "timed_out: did not finish within timeout_s = " + std::to_string(l.spec.timeout_s) + " s";
                } else {
                    t.to = TaskState::canceled;
                    t.reason = "canceled: canceled by request";
                }
                break;
        }
        return t;
    }

    /* Picks the device for a queued task, or nullptr when none can take it now. `busy` holds
     * the free capacity as this flush has committed to it so far. */
    Dev* place(const Live& l) {
        auto el = eligible_devices(l.spec, inv);
        if (!std::holds_alternative<std::vector<const Device*>>(el)) return nullptr;
        Dev* best = nullptr;
        double best_score = -1;
        for (const Device* d : std::get<std::vector<const Device*>>(el)) {
            auto it = devs.find(d->id);
            if (it == devs.end()) continue;
            Dev& dv = it->second;
            if (!dv.healthy || dv.used >= dv.slots) continue;
            const uint64_t need = l.spec.requirements.min_memory_bytes;
            if (need > 0 && d->memory_bytes > 0 && dv.mem_used + need > d->memory_bytes) continue;
            double cap = hooks.capacity_score ? hooks.capacity_score(d->id, l.spec.kind) : 1.0;
            if (!(cap > 0)) cap = 1e-9;
            const double score = cap * (1.0 - static_cast<double>(dv.used) / dv.slots);
            if (score > best_score) {
                best_score = score;
                best = &dv;
            }
        }
        return best;
    }

    int free_slots() const {
        int n = 0;
        for (const auto& [id, d] : devs)
            if (d.healthy) n += std::max(0, d.slots - d.used);
        return n;
    }

    void release(Live& l) {
        auto it = devs.find(l.device_id);
        if (it == devs.end() || !l.running) return;
        it->second.used = std::max(0, it->second.used - 1);
        it->second.mem_used -= std::min(it->second.mem_used, l.mem);
    }

    /* Rebuilds the queue from the journal after a failed commit: what this flush decided in
     * memory was not committed. Running tasks (with their threads) are kept. */
    void reload_queue() {
        queue.clear();
        for (auto it = live.begin(); it != live.end();) {
            if (it->second.running && it->second.run && it->second.run->thread.joinable()) ++it;
            else it = live.erase(it);
        }
        for (auto& [id, d] : devs) {
            d.used = 0;
            d.mem_used = 0;
        }
        for (auto& [id, l] : live) {
            auto d = devs.find(l.device_id);
            if (d != devs.end()) {
                ++d->second.used;
                d->second.mem_used += l.mem;
            }
        }
        Result<std::vector<TaskRecord>> q = journal->in_state(TaskState::queued);
        if (!q.ok()) {
            spdlog::error("tasks: {}", q.status().message());
            return;
        }
        for (TaskRecord& r : q.value()) add_queued(std::move(r), "");
    }

    /* Puts a journaled QUEUED task into the in-memory queue (its spec parsed again). Returns
     * false when the spec no longer parses (the caller fails it). */
    bool add_queued(TaskRecord r, const std::string& queue_name, std::string* why = nullptr) {
        auto parsed = parse_submit(r.spec_json, cfg.limits);
        if (std::holds_alternative<Rejection>(parsed)) {
            if (why) *why = std::get<Rejection>(parsed).message;
            return false;
        }
        Live l;
        l.spec = std::move(std::get<TaskSpec>(parsed));
        l.rec = std::move(r);
        l.queue = queue_name;
        queue.insert(qkey(l.rec));
        const std::string id = l.rec.id;
        live[id] = std::move(l);
        return true;
    }

    void start_thread(Live& l) {
        auto run = l.run;
        auto mail_box = mail;
        const Workload* wl = &workloads.at(l.spec.kind);
        const Device* dev = devs.at(l.device_id).dev;
        const std::string backend = devs.at(l.device_id).backend;
        // The thread owns copies of what it reads; the service may be gone when it ends.
        auto spec = std::make_shared<TaskSpec>(l.spec);
        auto device = std::make_shared<Device>(*dev);
        auto fn = wl->run;
        const std::string id = l.rec.id;
        const int64_t queue_ms = l.rec.started_ms - l.rec.accepted_ms;
        const int attempts = l.rec.attempts;
        const std::string sysfs = cfg.sysfs_root;
        const bool cpu = dev->device_class == DeviceClass::cpu;
        auto conf = std::make_shared<const TaskServiceConfig>(cfg);
        run->thread = std::thread([=] {
            const auto t0 = Clock::now();
            const double e0 = cpu ? read_energy_uj(sysfs) : -1;
            WorkContext ctx{*spec, *device, run->cancel,
                            [mail_box, id](double f, const std::string& m) {
                                {
                                    std::lock_guard<std::mutex> g(mail_box->mu);
                                    mail_box->progress[id] = {f, m};
                                }
                                mail_box->notify();
                            },
                            [conf, spec]() { return read_input(*conf, *spec); }};
            WorkResult w;
            try {
                w = fn(ctx);
            } catch (const std::exception& e) {
                w.outcome = WorkResult::Outcome::failed;
                w.reason = std::string("the workload threw: ") + e.what();
            } catch (...) {
                w.outcome = WorkResult::Outcome::failed;
                w.reason = "the workload threw an unknown exception";
            }
            const int64_t run_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
            const double e1 = e0 >= 0 ? read_energy_uj(sysfs) : -1;
            const double energy = (e0 >= 0 && e1 >= e0) ? (e1 - e0) / 1e6 : -1;
            std::string rj;
            if (run->cancel.reason() != StopReason::shutdown)
                rj = result_json(*conf, id, w, queue_ms, run_ms, device->id, backend, attempts, energy);
            {
                std::lock_guard<std::mutex> g(run->mu);
                run->result = std::move(w);
                run->result_json = std::move(rj);
            }
            {
                std::lock_guard<std::mutex> g(mail_box->mu);
                mail_box->finished.push_back(id);
            }
            mail_box->notify();
        });
    }
};

TaskService::TaskService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TaskService::~TaskService() { shutdown(0); }

std::string TaskService::recovery_summary() const { return impl_->recovery_summary; }

Result<std::unique_ptr<TaskService>> TaskService::open(TaskServiceConfig cfg, const Inventory& inv, TaskHooks hooks,
                                                       std::vector<Workload> workloads) {
    auto im = std::make_unique<Impl>();
    im->cfg = std::move(cfg);
    im->inv = inv;
    im->hooks = std::move(hooks);
    im->mail->wake = im->hooks.wake;
    im->event_prefix = "cpn/v1/nodes/" + im->cfg.node_id + "/task/";
    for (Workload& w : workloads) {
        register_kind(w.info);
        const std::string name = w.info.name;
        im->workloads[name] = std::move(w);
    }
    for (const Device& d : im->inv.devices) {
        if (d.runtimes.empty()) continue;
        Impl::Dev dv;
        dv.dev = &d;
        dv.backend = d.runtimes.front().backend;
        auto s = im->cfg.slots.find(d.device_class);
        dv.slots = s != im->cfg.slots.end() ? s->second : 1;
        im->devs[d.id] = dv;
    }
    Result<std::unique_ptr<TaskJournal>> j = TaskJournal::open(im->cfg.state_dir + "/tasks.db");
    if (!j.ok()) return j.status();
    im->journal = std::move(j.value());
    if (im->journal->recovered_from_corruption())
        spdlog::error("tasks: {} was corrupt; it was moved aside to {} and a new journal started", im->journal->path(),
                      im->journal->moved_aside_to());
    if (Status s = im->journal->set_full_durability(im->cfg.full_sync); !s.ok()) return s;
    Impl* p = im.get();
    Result<std::vector<TaskRecord>> rec = im->journal->recover([p](const std::string& kind) {
        auto it = p->workloads.find(kind);
        return it != p->workloads.end() && it->second.info.idempotent;
    }, im->cfg.max_attempts);
    if (!rec.ok()) return rec.status();
    int requeued = 0, failed = 0;
    for (const TaskRecord& r : rec.value()) (r.state == TaskState::queued ? requeued : failed)++;
    Result<std::vector<TaskRecord>> q = im->journal->queued(static_cast<size_t>(im->cfg.max_queued) * 2 + 1000);
    if (!q.ok()) return q.status();
    std::vector<Transition> broken;
    for (TaskRecord& r : q.value()) {
        const std::string id = r.id;
        std::string why;
        if (!im->add_queued(std::move(r), "", &why))
            broken.push_back({id, TaskState::failed, "failed: cannot run after the restart: " + why, "", ""});
    }
    if (!broken.empty()) {
        Result<std::vector<Result<TaskRecord>>> b = im->journal->transition_batch(broken);
        if (!b.ok()) return b.status();
    }
    im->recovery_summary = std::to_string(im->queue.size()) + " queued task(s) to run (" + std::to_string(requeued) +
                           " re-queued after being cut off while running), " + std::to_string(failed) +
                           " failed with reason \"agent restarted\", " + std::to_string(broken.size()) +
                           " failed because they can no longer run";
    im->republish = true;
    return std::unique_ptr<TaskService>(new TaskService(std::move(im)));
}

void TaskService::add(TaskRequest r) {
    impl_->pending.push_back(std::move(r));
    impl_->dirty = true;
}

std::vector<std::string> TaskService::subscriptions(const std::vector<std::string>& queues,
                                                    const std::string& share_group) const {
    std::vector<std::string> t = {impl_->event_prefix + "submit", impl_->event_prefix + "cancel",
                                  impl_->event_prefix + "status"};
    for (const std::string& q : queues) {
        t.push_back("$share/" + share_group + "/cpn/v1/queues/" + q + "/submit");
        t.push_back("cpn/v1/queues/" + q + "/cancel");
        t.push_back("cpn/v1/queues/" + q + "/status");
    }
    return t;
}

bool TaskService::classify(const std::string& topic, TaskRequest& r) const {
    auto type_of = [&](const std::string& leaf) -> bool {
        if (leaf == "submit") r.type = TaskRequest::Type::submit;
        else if (leaf == "cancel") r.type = TaskRequest::Type::cancel;
        else if (leaf == "status") r.type = TaskRequest::Type::status;
        else return false;
        return true;
    };
    const std::string& p = impl_->event_prefix;
    if (topic.compare(0, p.size(), p) == 0) {
        r.queue.clear();
        return type_of(topic.substr(p.size()));
    }
    static const std::string qp = "cpn/v1/queues/";
    if (topic.compare(0, qp.size(), qp) == 0) {
        const std::string rest = topic.substr(qp.size());
        const size_t slash = rest.find('/');
        if (slash == std::string::npos || slash == 0) return false;
        r.queue = rest.substr(0, slash);
        return type_of(rest.substr(slash + 1));
    }
    return false;
}

std::chrono::steady_clock::time_point TaskService::next_deadline() const {
    auto t = impl_->next_purge;
    for (const auto& [id, l] : impl_->live)
        if (l.running && l.run && !l.run->cancel.stop_requested()) t = std::min(t, l.deadline);
    for (const auto& [id, d] : impl_->devs)
        if (!d.healthy && !d.probing) t = std::min(t, d.next_probe);
    if (!impl_->marks.empty()) t = std::min(t, impl_->marks_due);
    if (impl_->dirty || !impl_->pending.empty()) t = Clock::now();
    if (!impl_->retry_transitions.empty()) t = std::min(t, Clock::now() + std::chrono::seconds(1));
    if (impl_->republish && impl_->online) t = std::min(t, Clock::now() + std::chrono::milliseconds(50));
    return t;
}

TaskService::Counts TaskService::counts() const {
    Counts c;
    for (const auto& [id, l] : impl_->live) (l.running ? c.running : c.queued)++;
    for (const auto& [id, d] : impl_->devs)
        if (!d.healthy) ++c.unhealthy_devices;
    return c;
}

void TaskService::on_online() {
    impl_->online = true;
    impl_->republish = true;
}

void TaskService::on_offline() {
    Impl& m = *impl_;
    m.online = false;
    // Paho fails what was in flight; it is all published again from the journal.
    m.tags.clear();
    m.outstanding.clear();
    m.failed_pubs.clear();
}

void TaskService::on_delivered(int64_t tag, bool ok) {
    Impl& m = *impl_;
    auto it = m.tags.find(tag);
    if (it == m.tags.end()) return;
    const auto key = it->second;
    m.tags.erase(it);
    if (!ok) m.failed_pubs.insert(key);
    auto o = m.outstanding.find(key);
    if (o == m.outstanding.end()) return;
    if (--o->second > 0) return;
    m.outstanding.erase(o);
    if (m.failed_pubs.erase(key)) {
        m.republish = true;
        return;
    }
    if (m.marks.empty()) m.marks_due = Clock::now() + kMarkDelay;
    m.marks.push_back(key);
}

bool TaskService::awaiting_deliveries() const { return !impl_->outstanding.empty(); }

void TaskService::shutdown(int grace_ms) {
    Impl& m = *impl_;
    if (m.stopping) return;
    m.stopping = true;
    {
        std::lock_guard<std::mutex> g(m.mail->mu);
        m.mail->wake = nullptr;
    }
    for (auto& [id, l] : m.live)
        if (l.run) l.run->cancel.request(StopReason::shutdown);
    const auto deadline = Clock::now() + std::chrono::milliseconds(grace_ms);
    for (auto& [id, l] : m.live) {
        if (!l.run || !l.run->thread.joinable()) continue;
        // Join what returns in time; a workload that ignores its token is left to the exit.
        while (Clock::now() < deadline) {
            {
                std::lock_guard<std::mutex> g(m.mail->mu);
                if (std::find(m.mail->finished.begin(), m.mail->finished.end(), id) != m.mail->finished.end()) break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        bool done = false;
        {
            std::lock_guard<std::mutex> g(m.mail->mu);
            done = std::find(m.mail->finished.begin(), m.mail->finished.end(), id) != m.mail->finished.end();
        }
        if (done) l.run->thread.join();
        else l.run->thread.detach();
    }
    m.write_marks();
}

void TaskService::flush() {
    Impl& m = *impl_;
    if (m.stopping) return;
    m.dirty = false;
    const auto now = Clock::now();

    // What the threads reported.
    std::vector<std::string> finished;
    std::map<std::string, std::pair<double, std::string>> progress;
    std::vector<std::pair<std::string, bool>> probes;
    {
        std::lock_guard<std::mutex> g(m.mail->mu);
        finished.swap(m.mail->finished);
        progress.swap(m.mail->progress);
        probes.swap(m.mail->probes);
    }
    for (auto& [id, ok] : probes) {
        auto it = m.devs.find(id);
        if (it == m.devs.end()) continue;
        Impl::Dev& d = it->second;
        d.probing = false;
        if (ok) {
            d.healthy = true;
            d.backoff_ms = 1000;
            spdlog::info("tasks: device {} answered its re-probe; it takes tasks again", id);
        } else {
            d.backoff_ms = std::min(d.backoff_ms * 2, 300000);
            d.next_probe = Clock::now() + std::chrono::milliseconds(d.backoff_ms);
            spdlog::warn("tasks: device {} still fails its probe; next try in {} s", id, d.backoff_ms / 1000);
        }
    }
    for (auto& [id, d] : m.devs) {
        if (d.healthy || d.probing || now < d.next_probe || !m.hooks.reprobe) continue;
        d.probing = true;
        auto mail = m.mail;
        auto fn = m.hooks.reprobe;
        Device copy = *d.dev;
        std::thread([mail, fn, copy] {
            bool ok = false;
            try {
                ok = fn(copy);
            } catch (...) {
            }
            {
                std::lock_guard<std::mutex> g(mail->mu);
                mail->probes.emplace_back(copy.id, ok);
            }
            mail->notify();
        }).detach();
    }
    for (auto& [id, l] : m.live) {
        if (!l.running || !l.run) continue;
        if (now >= l.deadline && !l.run->cancel.stop_requested()) {
            l.run->cancel.request(StopReason::timed_out);
            spdlog::info("tasks: {} ran past its timeout of {} s; stopping it", id, l.spec.timeout_s);
        } else if (now >= l.deadline + std::chrono::seconds(30) && !l.warned_stuck) {
            l.warned_stuck = true;
            spdlog::warn("tasks: {} ({}) has not stopped 30 s after its deadline; device {} keeps its slot until it does",
                         id, l.spec.kind, l.device_id);
        }
    }
    for (auto& [id, pr] : progress) m.publish_progress(id, pr.first, pr.second);

    if (now >= m.next_purge) {
        m.next_purge = now + std::chrono::hours(1);
        Result<int64_t> n = m.journal->purge(mqtt::now_ms() - m.cfg.retention_s * 1000);
        if (!n.ok()) spdlog::warn("tasks: retention: {}", n.status().message());
        else if (n.value() > 0) spdlog::info("tasks: retention removed {} ended task(s)", n.value());
        std::error_code ec;
        const auto cutoff = std::filesystem::file_time_type::clock::now() - std::chrono::seconds(m.cfg.retention_s);
        for (const auto& e : std::filesystem::directory_iterator(m.cfg.state_dir + "/results", ec))
            if (e.is_regular_file(ec) && e.last_write_time(ec) < cutoff) std::filesystem::remove(e.path(), ec);
    }

    // Workload outcomes become terminal transitions.
    std::vector<Transition> transitions = std::move(m.retry_transitions);
    m.retry_transitions.clear();
    std::vector<std::string> done_ids = std::move(m.retry_finished);
    m.retry_finished.clear();
    for (const std::string& id : finished) {
        auto it = m.live.find(id);
        if (it == m.live.end() || !it->second.run) continue;
        Impl::Live& l = it->second;
        if (l.run->thread.joinable()) l.run->thread.join();
        WorkResult w;
        std::string rj;
        {
            std::lock_guard<std::mutex> g(l.run->mu);
            w = std::move(l.run->result);
            rj = std::move(l.run->result_json);
        }
        if (w.outcome == WorkResult::Outcome::device_fault) {
            auto d = m.devs.find(l.device_id);
            if (d != m.devs.end() && d->second.healthy) {
                d->second.healthy = false;
                d->second.next_probe = Clock::now() + std::chrono::milliseconds(d->second.backoff_ms);
                spdlog::error("tasks: device {} faulted running {} ({}); it takes no tasks until a re-probe finds it",
                              l.device_id, id, w.reason);
            }
        }
        transitions.push_back(m.terminal_for(l, w, rj));
        done_ids.push_back(id);
    }

    // Requests.
    std::vector<TaskRequest> reqs;
    reqs.swap(m.pending);
    struct SubmitSide {
        std::string reply, corr, queue;
        std::optional<TaskSpec> spec;
        std::string rejection_reply_error;  // the reply topic itself was refused
    };
    std::vector<TaskRecord> accepts;
    std::vector<SubmitSide> sides;
    std::vector<const TaskRequest*> queries;  // status and cancel, answered after the commit
    std::set<std::string> cancel_queued;
    int64_t queued_now = static_cast<int64_t>(m.queue.size());
    for (const TaskRequest& rq : reqs) {
        if (rq.type != TaskRequest::Type::submit) {
            queries.push_back(&rq);
            continue;
        }
        SubmitSide side;
        side.queue = rq.queue;
        auto parsed = parse_submit(rq.payload, m.cfg.limits);
        TaskRecord r;
        r.spec_json = rq.payload;
        r.accepted_ms = mqtt::now_ms();
        // Where to answer: the MQTT 5 Response Topic, else the payload's reply_to.
        std::string reply = rq.response_topic, corr = rq.correlation;
        if (reply.empty() && rq.payload.size() <= m.cfg.limits.max_submit_bytes) {
            nlohmann::json j = nlohmann::json::parse(rq.payload, nullptr, false);
            if (j.is_object() && j.contains("reply_to") && j["reply_to"].is_string()) {
                reply = j["reply_to"].get<std::string>();
                if (j.contains("correlation") && j["correlation"].is_string() &&
                    j["correlation"].get_ref<const std::string&>().size() <= 256)
                    corr = j["correlation"].get<std::string>();
            }
        }
        if (corr.size() > 256) corr.clear();
        std::string reply_error;
        if (!reply.empty()) {
            reply_error = check_reply_topic(reply, m.cfg.limits.reply_prefix);
            if (!reply_error.empty()) reply.clear();
        }
        std::optional<Rejection> rej;
        if (std::holds_alternative<Rejection>(parsed)) {
            rej = std::get<Rejection>(parsed);
        } else {
            TaskSpec& s = std::get<TaskSpec>(parsed);
            if (!reply_error.empty()) {
                rej = Rejection{"invalid_field", "response topic " + reply_error, s.id};
            } else if (auto w = m.workloads.find(s.kind); w == m.workloads.end()) {
                rej = Rejection{"unknown_kind", "kind '" + s.kind + "' has no workload on this node", s.id};
            } else if (std::string why = w->second.validate ? w->second.validate(s.params) : std::string(); !why.empty()) {
                rej = Rejection{"invalid_field", why, s.id};
            } else {
                auto el = eligible_devices(s, m.inv);
                if (std::holds_alternative<Rejection>(el)) {
                    rej = std::get<Rejection>(el);
                } else {
                    bool any_slot = false;
                    for (const Device* d : std::get<std::vector<const Device*>>(el)) {
                        auto dv = m.devs.find(d->id);
                        if (dv != m.devs.end() && dv->second.slots > 0) any_slot = true;
                    }
                    if (!any_slot)
                        rej = Rejection{"unsatisfiable",
                                        "the devices that meet the requirements have no task slots (tasks.slots is 0 for their class)",
                                        s.id};
                    else if (queued_now >= m.cfg.max_queued)
                        rej = Rejection{"queue_full",
                                        std::to_string(queued_now) + " tasks are already waiting (tasks.max_queued = " +
                                            std::to_string(m.cfg.max_queued) + "); send it again later or to another node",
                                        s.id};
                }
            }
            if (!rej) {
                r.id = s.id;
                r.kind = s.kind;
                r.priority = s.priority;
                side.spec = std::move(s);
            }
        }
        if (rej) {
            if (rej->id.empty()) {
                // No id: nothing can be journaled under it; answer where we can and log.
                spdlog::warn("tasks: submit refused ({}): {}", rej->code, rej->message);
                TaskRecord anon;
                anon.state = TaskState::rejected;
                anon.reason = rej->code + ": " + rej->message;
                anon.accepted_ms = anon.finished_ms = r.accepted_ms;
                if (!reply.empty()) m.answer(anon, reply, corr);
                continue;
            }
            r.id = rej->id;
            r.state = TaskState::rejected;
            r.reason = rej->code + ": " + rej->message;
            nlohmann::json j = nlohmann::json::parse(rq.payload, nullptr, false);
            r.kind = j.is_object() && j.contains("kind") && j["kind"].is_string() ? j["kind"].get<std::string>().substr(0, 64)
                                                                                   : std::string("unknown");
            if (r.kind.empty()) r.kind = "unknown";
            spdlog::info("tasks: {} refused ({}): {}", r.id, rej->code, rej->message);
        } else {
            ++queued_now;
        }
        r.reply_topic = reply;
        r.correlation = corr;
        side.reply = reply;
        side.corr = corr;
        accepts.push_back(std::move(r));
        sides.push_back(std::move(side));
    }
    for (const TaskRequest* q : queries) {
        if (q->type != TaskRequest::Type::cancel) continue;
        nlohmann::json j = nlohmann::json::parse(q->payload, nullptr, false);
        if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) continue;
        auto it = m.live.find(j["id"].get<std::string>());
        if (it != m.live.end() && !it->second.running && !cancel_queued.count(it->first)) {
            cancel_queued.insert(it->first);
            transitions.push_back({it->first, TaskState::canceled, "canceled: canceled by request while queued", "", ""});
            m.queue.erase(m.qkey(it->second.rec));
        }
    }

    // One commit: admissions, outcomes, cancels, and the starts they make possible.
    struct Start {
        std::string id, device;
        bool inline_run = false;
    };
    std::vector<Start> starts;
    std::vector<size_t> inline_terminal_index;  // into transitioned of the group (after the commit)
    const size_t fixed_transitions = transitions.size();
    // Release the slots of finished tasks before placing new ones.
    for (const std::string& id : done_ids) {
        auto it = m.live.find(id);
        if (it != m.live.end()) {
            m.release(it->second);
            it->second.running = false;
        }
    }
    auto then = [&](const std::vector<Result<std::pair<TaskRecord, bool>>>& acc) {
        std::vector<Transition> out;
        for (size_t i = 0; i < acc.size(); ++i) {
            if (!acc[i].ok() || !acc[i].value().second) continue;
            const TaskRecord& rec = acc[i].value().first;
            if (rec.state != TaskState::queued || !sides[i].spec) continue;
            Impl::Live l;
            l.rec = rec;
            l.spec = *sides[i].spec;
            l.queue = sides[i].queue;
            m.queue.insert(m.qkey(l.rec));
            m.live[rec.id] = std::move(l);
        }
        // Dispatch in priority order, FIFO within one.
        int free = m.free_slots();
        for (auto q = m.queue.begin(); q != m.queue.end() && free > 0;) {
            Impl::Live& l = m.live.at(std::get<2>(*q));
            Impl::Dev* d = m.place(l);
            if (d == nullptr) {
                ++q;
                continue;
            }
            const Workload& wl = m.workloads.at(l.spec.kind);
            const bool inl = wl.runs_inline && wl.runs_inline(l.spec) &&
                             static_cast<int64_t>(l.spec.input.size) <= m.cfg.inline_result_bytes;
            out.push_back({l.rec.id, TaskState::running, "", d->dev->id, ""});
            l.device_id = d->dev->id;
            if (inl) {
                // Pure and in memory: run now, inside this commit.
                CancelToken tok;
                WorkContext ctx{l.spec, *d->dev, tok, [](double, const std::string&) {},
                                [&]() -> Result<std::string> { return l.spec.input.data; }};
                const auto t0 = Clock::now();
                WorkResult w;
                try {
                    w = wl.run(ctx);
                } catch (const std::exception& e) {
                    w.outcome = WorkResult::Outcome::failed;
                    w.reason = std::string("the workload threw: ") + e.what();
                }
                const int64_t run_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
                const int64_t now_ms = mqtt::now_ms();
                const std::string rj = Impl::result_json(m.cfg, l.rec.id, w, now_ms - l.rec.accepted_ms, run_ms, d->dev->id,
                                                     d->backend, l.rec.attempts + 1, -1);
                Transition t = m.terminal_for(l, w, rj);
                t.device_id = d->dev->id;
                out.push_back(std::move(t));
                starts.push_back({l.rec.id, d->dev->id, true});
            } else {
                ++d->used;
                d->mem_used += l.spec.requirements.min_memory_bytes;
                l.mem = l.spec.requirements.min_memory_bytes;
                l.running = true;
                --free;
                starts.push_back({l.rec.id, d->dev->id, false});
            }
            q = m.queue.erase(q);
        }
        return out;
    };
    const bool work = !accepts.empty() || !transitions.empty() || !m.queue.empty();
    Result<TaskJournal::Group> g = work ? m.journal->commit_group(std::move(accepts), transitions, then, m.marks)
                                        : Result<TaskJournal::Group>(TaskJournal::Group{});
    if (work && g.ok()) {
        for (const Status& e : g.value().mark_errors) spdlog::warn("tasks: {}", e.message());
        m.marks.clear();
    } else if (!work && !m.marks.empty() && (now >= m.marks_due || m.marks.size() >= kMarkBatch || m.republish)) {
        m.write_marks();
    }
    if (!g.ok()) {
        spdlog::error("tasks: journal commit failed: {}; submits of this moment are not accepted (their senders "
                      "will re-send), outcomes are retried",
                      g.status().message());
        for (size_t i = 0; i < fixed_transitions; ++i)
            if (!cancel_queued.count(transitions[i].id)) m.retry_transitions.push_back(transitions[i]);
        m.retry_finished = done_ids;
        m.reload_queue();
        return;
    }
    TaskJournal::Group& grp = g.value();
    std::vector<size_t> duplicates;  // re-sent submits, answered once the changes are out

    // Committed: publish, in order, and start the threads. A task whose state changed more than
    // once in this commit (admitted and started; or admitted, run inline and ended) is published
    // once, at its latest version: the earlier ones are already superseded (protocol.md, "Task
    // states and versions"). This halves, or better, the messages of a burst of short tasks.
    std::map<std::string, size_t> latest;  // task id -> position of its last record in this commit
    size_t pos = 0;
    for (const auto& a : grp.accepted)
        if (a.ok() && a.value().second) latest[a.value().first.id] = pos++;
    for (const auto& t : grp.transitioned)
        if (t.ok()) latest[t.value().id] = pos++;
    pos = 0;
    for (size_t i = 0; i < grp.accepted.size(); ++i) {
        if (!grp.accepted[i].ok()) {
            spdlog::warn("tasks: {}", grp.accepted[i].status().message());
            continue;
        }
        auto& [rec, created] = grp.accepted[i].value();
        if (!created) {
            duplicates.push_back(i);
            continue;
        }
        if (latest[rec.id] == pos++) (void)m.publish_state(rec, true);
    }
    for (Result<TaskRecord>& t : grp.transitioned) {
        if (!t.ok()) {
            if (t.status().code() != Code::failed_precondition && t.status().code() != Code::not_found)
                spdlog::warn("tasks: {}", t.status().message());
            continue;
        }
        TaskRecord& rec = t.value();
        auto it = m.live.find(rec.id);
        if (it != m.live.end()) it->second.rec = rec;
        if (latest[rec.id] == pos++) (void)m.publish_state(rec, true);
        if (is_terminal(rec.state)) {
            if (rec.state != TaskState::succeeded)
                spdlog::info("tasks: {} {}{}{}", rec.id, to_string(rec.state), rec.reason.empty() ? "" : ": ", rec.reason);
            if (it != m.live.end()) {
                m.queue.erase(m.qkey(it->second.rec));
                m.live.erase(it);
            }
        }
    }
    for (size_t i : duplicates) {
        // A re-sent submit: the existing task as it is now, never a second run.
        const TaskRecord& rec = grp.accepted[i].value().first;
        auto it = m.live.find(rec.id);
        if (it != m.live.end()) {
            m.answer(it->second.rec, sides[i].reply, sides[i].corr, it->second.cancel_requested);
            continue;
        }
        Result<std::optional<TaskRecord>> cur = m.journal->get(rec.id);
        m.answer(cur.ok() && cur.value() ? *cur.value() : rec, sides[i].reply, sides[i].corr);
    }
    for (const Start& s : starts) {
        if (s.inline_run) continue;
        auto it = m.live.find(s.id);
        if (it == m.live.end()) continue;
        Impl::Live& l = it->second;
        l.run = std::make_shared<Impl::Run>();
        l.deadline = Clock::now() + std::chrono::seconds(l.spec.timeout_s);
        m.start_thread(l);
    }

    // Status queries, and cancels of running (or unknown, or ended) tasks.
    for (const TaskRequest* q : queries) {
        nlohmann::json j = nlohmann::json::parse(q->payload, nullptr, false);
        std::string reply = q->response_topic, corr = q->correlation;
        if (j.is_object() && reply.empty() && j.contains("reply_to") && j["reply_to"].is_string()) {
            reply = j["reply_to"].get<std::string>();
            if (j.contains("correlation") && j["correlation"].is_string()) corr = j["correlation"].get<std::string>();
        }
        if (!reply.empty() && !check_reply_topic(reply, m.cfg.limits.reply_prefix).empty()) {
            spdlog::warn("tasks: {} request refused: reply topic '{}' is not under {}",
                         q->type == TaskRequest::Type::cancel ? "cancel" : "status", reply.substr(0, 64),
                         m.cfg.limits.reply_prefix);
            continue;
        }
        if (corr.size() > 256) corr.clear();
        if (!j.is_object() || !j.contains("id") || !j["id"].is_string() ||
            !is_valid_task_id(j["id"].get_ref<const std::string&>()) ||
            !j.contains("schema_version") || j["schema_version"] != 1) {
            spdlog::warn("tasks: {} request refused: expected {{\"schema_version\": 1, \"id\": \"<task id>\"}}",
                         q->type == TaskRequest::Type::cancel ? "cancel" : "status");
            continue;
        }
        const std::string id = j["id"].get<std::string>();
        auto it = m.live.find(id);
        if (it != m.live.end()) {
            Impl::Live& l = it->second;
            if (q->type == TaskRequest::Type::cancel && l.running && l.run) {
                l.run->cancel.request(StopReason::canceled);
                l.cancel_requested = true;
                spdlog::info("tasks: {} cancel requested while running on {}", id, l.device_id);
            }
            m.answer(l.rec, reply, corr, l.cancel_requested);
            continue;
        }
        Result<std::optional<TaskRecord>> rec = m.journal->get(id);
        if (rec.ok() && rec.value()) {
            m.answer(*rec.value(), reply, corr);
        } else if (q->queue.empty()) {
            TaskRecord unknown;
            unknown.id = id;
            unknown.state = TaskState::rejected;  // replaced below
            nlohmann::json msg = m.message(unknown, &corr, "", false);
            msg["state"] = "UNKNOWN";
            msg["version"] = 0;
            msg.erase("priority");
            msg.erase("attempts");
            msg["reason"] = "no task with id '" + id + "' on node " + m.cfg.node_id;
            const std::string payload = msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            if (m.online)
                (void)m.hooks.publish({reply.empty() ? m.event_prefix + "event/" + id : reply, payload, 1, false, corr}, 0);
        }
    }

    // After a reconnect (or a failed publication): every change the broker has not acknowledged.
    if (m.republish && m.online) {
        constexpr size_t kPage = 512;
        m.write_marks();  // what was delivered is not sent again
        if (m.tags.size() < 4096) {
            Result<std::vector<TaskRecord>> un = m.journal->unpublished(kPage + m.outstanding.size());
            if (!un.ok()) {
                spdlog::warn("tasks: {}", un.status().message());
            } else {
                size_t sent = 0;
                for (const TaskRecord& r : un.value()) {
                    if (m.outstanding.count({r.id, r.version})) continue;
                    if (!m.publish_state(r, true)) break;
                    ++sent;
                }
                if (sent == 0 || un.value().size() < kPage) m.republish = sent > 0;
                if (!m.republish) m.republish_after_failure = false;
            }
        }
    }
    (void)m.journal->checkpoint_if_due();  // after the publications: off the tasks' way
}

}  // namespace cpn::tasks
