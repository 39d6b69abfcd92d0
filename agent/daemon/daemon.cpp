#include "daemon/daemon.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "bench/capacity.hpp"
#include "bench/capacity_cache.hpp"
#include "config/config.hpp"
#include "core/paths.hpp"
#include "core/subprocess.hpp"
#include "core/log.hpp"
#include "core/service_notify.hpp"
#include "daemon/commands.hpp"
#include "inventory/discovery.hpp"
#include "metrics/prometheus_exporter.hpp"
#include "mqtt/messages.hpp"
#include "mqtt/mqtt_session.hpp"
#include "plugin/isolated_probe.hpp"
#include "plugin/plugin_library.hpp"
#include "infer/infer_task.hpp"
#include "render/render_task.hpp"
#include "store/outbox.hpp"
#include "store/session_counter.hpp"
#include "tasks/task_service.hpp"
#include "telemetry_sampler.hpp"

namespace cpn {
namespace {

using Clock = std::chrono::steady_clock;

struct Event {
    enum Type { lost, message, delivered, terminate, reload, connect_done, bench_done, task_wake, bench_request } type;
    std::string a, b;  // lost: cause; message: topic, payload
    int64_t tag = 0;
    bool ok = false;
    std::string response_topic{}, correlation{};  // message: MQTT 5 request/response properties
};

/* Where a configuration error leaves the daemon: these sections make it useless (it cannot say
 * who it is or reach the brain); errors elsewhere disable one feature. */
bool fatal_section(const std::string& s) {
    return s == "(file)" || s == "node" || s == "broker" || s == "state_dir" || s == "(top level)";
}

Result<std::string> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status(Code::not_found, path + ": cannot be read");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

class Daemon {
public:
    explicit Daemon(DaemonOptions o) : opt_(std::move(o)) {}
    ~Daemon() {
        // The MQTT client first: its threads call push() and follow(), which use the members
        // below (Paho joins them when the client is destroyed).
        session_.reset();
        if (bench_thread_.joinable()) {
            bench_abort_.store(true);
            bench_thread_.join();
        }
    }
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
    int run();

private:
    // set-up
    int load_configuration();
    Status check_broker_files();
    void open_state();
    void discover_node();
    void start_signal_thread();
    // session
    void start_connect();
    void poll_connect();
    bool on_connected();
    void publish_retained_state();
    void schedule_reconnect();
    // work
    void produce_telemetry();
    // Prometheus endpoint (metrics.prometheus): started once, updated per sample and connection change
    void start_metrics();
    void update_metrics(const nlohmann::json* telemetry);
    void pump_outbox();
    void send_ack(const mqtt::Ack& ack);
    void handle_command(const std::string& payload);
    void reload();
    void shutdown();
    // capacity
    void after_discovery();
    void refresh_capacity();
    nlohmann::json capacity_message() const;
    nlohmann::json available_capacity(const nlohmann::json& telemetry) const;
    /* The capacity record of capacity_report_ under norm_, computed once per change of either
     * (telemetry reads it every interval); capacity_report_ must be set. */
    const nlohmann::json& capacity_record() const {
        if (!record_cache_) record_cache_ = bench::capacity_record(*capacity_report_, norm_);
        return *record_cache_;
    }
    void publish_capacity();
    void start_bench(const std::string& mode, const std::vector<std::string>& devices, std::optional<mqtt::Ack> ack);
    void finish_bench(bool ok, const std::string& detail);
    // tasks
    void open_tasks();
    tasks::Workload bench_workload();
    tasks::Workload render_workload();
    tasks::Workload infer_workload();
    /* backend -> the file of its plugin that loaded ("" none), for the workloads. */
    std::function<std::string(const std::string&)> plugin_paths() const;
    void take_bench_requests();
    Status load_normalization();
    // events
    void push(Event e);
    /* Handles one event; false when it was the order to stop (run() then returns). */
    bool handle(Event& e);
    /* The end of a round (the loop's or a follower's) that handled `messages` messages: the
     * task path commits and publishes what they brought; follow() reads when and how many. */
    void end_round(int messages);
    void follow();
    bool followable(const Event& e) const;
    std::optional<Event> wait_event(Clock::time_point until);
    std::optional<Event> poll_event();
    void drain_task_deliveries();

    DaemonOptions opt_;
    Config cfg_;
    bool telemetry_enabled_ = true;
    std::unique_ptr<mqtt::Topics> topics_;
    Inventory inv_;
    std::unique_ptr<Outbox> outbox_;
    std::optional<SessionCounter> counter_;
    std::unique_ptr<mqtt::Session> session_;
    std::unique_ptr<telemetry::TelemetrySampler> sampler_;
    std::future<void> discovery_;  // runs while the first connect is in progress
    std::vector<std::shared_ptr<PluginLibrary>> telemetry_plugins_;  // kept loaded for their sources

    enum class State { disconnected, connecting, online } state_ = State::disconnected;
    int64_t bdseq_ = 0;          // the session of the current (or latest) connect attempt
    int64_t online_bdseq_ = 0;   // the latest session that was online: telemetry is stamped with it
    int failures_ = 0;
    ServiceNotifier notify_;  // systemd: READY once the birth is out (or the broker is known down)
    Clock::time_point next_connect_{}, next_telemetry_{}, connect_started_{};
    int64_t highest_sent_ = 0;     // outbox ids up to this were published in this session
    std::set<int64_t> in_flight_;
    uint64_t dropped_without_store_ = 0;
    int64_t telemetry_seq_memory_ = 0;  // used only when the store is disabled
    bool stopping_ = false;

    // Capacity: the stored benchmark record, re-measured by a `cpn-agent bench` child process
    // (vendor runtimes never run inside the daemon) when it is missing, stale, or asked for.
    bench::Normalization norm_;
    std::optional<bench::BenchReport> capacity_report_;
    mutable std::optional<nlohmann::json> record_cache_;  // see capacity_record()
    std::string capacity_reason_ = "no benchmark has run on this node yet";
    bool capacity_checked_ = false;
    bool bench_running_ = false;
    std::vector<std::string> bench_devices_;
    std::vector<mqtt::Ack> bench_waiters_;   // rebenchmark commands acknowledged when it ends
    std::thread bench_thread_;
    std::atomic<bool> bench_abort_{false};  // set at shutdown: the child is killed

    // The remote-task path (opened once discovery has found the devices).
    std::unique_ptr<tasks::TaskService> tasks_;
    std::unique_ptr<metrics::PrometheusExporter> metrics_;  // null: metrics off or not serving
    struct BenchOutcome {
        bool ok = false;
        std::string message;
        nlohmann::json data;
    };
    struct BenchRequest {
        std::string mode;
        std::vector<std::string> devices;
        std::shared_ptr<std::promise<BenchOutcome>> done;
    };
    std::mutex bench_req_mu_;
    std::vector<BenchRequest> bench_requests_;                          // from bench task threads
    std::vector<std::shared_ptr<std::promise<BenchOutcome>>> bench_promises_;  // fulfilled by finish_bench

    // The round lock: whoever handles events and runs the task path holds it, the loop thread
    // at all times except while it sleeps in wait_event(), or the MQTT receive thread for a
    // round of its own (follow()). Taken before mu_, never while holding it.
    std::mutex round_mu_;
    std::unique_lock<std::mutex> round_{round_mu_, std::defer_lock};  // the loop thread's hold
    bool follow_ok_ = false;              // under round_mu_: tasks open, commits not fsynced
    Clock::time_point last_round_end_{};  // under round_mu_: when the latest round ended
    int last_round_messages_ = 0;         // under round_mu_: and how many messages it handled
    // follow(): until when messages are taken to come back to back (see kFollowHold); atomic
    // although only the MQTT receive thread calls follow().
    std::atomic<Clock::rep> busy_until_{0};

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> events_;
    // The loop is in a wait longer than kQuietEventDelay: a quiet event must wake it.
    bool long_wait_ = false;
    bool waiting_ = false;            // the loop sleeps in wait_event(), until wait_until_
    bool rethink_ = false;            // a follower moved a deadline: the loop computes its wait again
    Clock::time_point wait_until_{};
    std::mt19937_64 rng_{std::random_device{}()};
};

/* The broker's acknowledgement of a task state: nothing waits on it (it only lets the journal
 * mark the state published), so it does not wake the loop, which takes it at its next round,
 * at most kQuietEventDelay later (the loop bounds its waits while such acknowledgements are due).
 * Under a stream of tasks this saves a wake-up, and a round, per message published. */
bool is_quiet(const Event& e) { return e.type == Event::delivered && e.tag < 0 && e.ok; }
constexpr auto kQuietEventDelay = std::chrono::milliseconds(100);

/* A follower round is skipped when the previous round (the loop's or a follower's) handled more
 * than one message, or ended less than kFollowGap before, or the loop was busy: messages then
 * come back to back (a burst, or a stream at the broker's pace), and the loop, woken, takes
 * them together in one round and one journal commit (group commit). After such a message
 * followers stay off for kFollowHold, renewed by each message that comes as fast, so a stream
 * is left to the loop whole rather than each lull starting a round of one on the receive thread
 * (which reads nothing meanwhile). A closed loop of requests leaves a whole network round trip
 * between two messages. */
constexpr auto kFollowGap = std::chrono::microseconds(50);
constexpr auto kFollowHold = std::chrono::milliseconds(2);

void Daemon::push(Event e) {
    const bool message = e.type == Event::message;
    bool wake;
    {
        std::lock_guard<std::mutex> g(mu_);
        wake = !message && (!is_quiet(e) || long_wait_);
        events_.push_back(std::move(e));
    }
    if (message) follow();  // runs the round here, or wakes the loop
    else if (wake) cv_.notify_one();
}

void Daemon::end_round(int messages) {
    if (tasks_) tasks_->flush();
    last_round_end_ = Clock::now();
    last_round_messages_ = messages;
}

/* What a follower round may handle: task requests and the broker's acknowledgements of task
 * states. Everything else (commands, the connection's events, the order to stop) is the
 * loop's. */
bool Daemon::followable(const Event& e) const {
    if (e.type == Event::delivered) return e.tag < 0;
    return e.type == Event::message && topics_ && e.a != topics_->cmd;
}

/* Called by the thread that queued a message (the MQTT client's receive thread). While the
 * loop sleeps, this thread runs the round itself (with tasks.journal_sync normal: see
 * follow_ok_): the task requests queued, one journal commit, the answers. Waking the loop
 * instead costs a futex wake and the scheduling of another CPU, ~30 us on a VM, a tenth of a
 * loopback request/response. Same lock, same code as the loop's round, so one thread at a time
 * handles events and the task path, in their order. Nothing here waits for the broker
 * (publications are asynchronous), so the receive thread is never stuck on itself. When the
 * loop is busy, or something else is queued, or messages come back to back (kFollowGap,
 * kFollowHold), the loop is woken as before. */
void Daemon::follow() {
    const Clock::time_point now = Clock::now();
    std::unique_lock<std::mutex> round(round_mu_, std::try_to_lock);
    bool take = round.owns_lock() && !stopping_ && tasks_ && follow_ok_;
    // Signs of a stream (they renew the hold); the hold alone only keeps followers off.
    const bool fast = !round.owns_lock() || last_round_messages_ > 1 || now - last_round_end_ < kFollowGap;
    if (fast) busy_until_.store((now + kFollowHold).time_since_epoch().count());
    if (fast || now.time_since_epoch().count() < busy_until_.load()) take = false;
    std::deque<Event> batch;
    if (take) {
        std::lock_guard<std::mutex> g(mu_);
        take = std::all_of(events_.begin(), events_.end(), [&](const Event& e) { return followable(e); });
        if (take) batch.swap(events_);
    }
    if (!take) {
        if (round.owns_lock()) round.unlock();
        cv_.notify_one();
        return;
    }
    int messages = 0;
    for (Event& e : batch) {
        messages += e.type == Event::message ? 1 : 0;
        (void)handle(e);  // followable events only: never the order to stop
    }
    end_round(messages);
    // The loop computed its wait before this round: wake it if the round brought a deadline
    // nearer (a task's timeout; acknowledgements to take within kQuietEventDelay).
    Clock::time_point need = tasks_->next_deadline();
    if (tasks_->awaiting_deliveries()) need = std::min(need, last_round_end_ + kQuietEventDelay);
    round.unlock();
    bool wake = false;
    {
        std::lock_guard<std::mutex> g(mu_);
        if (waiting_ && need < wait_until_) wake = rethink_ = true;
    }
    if (wake) cv_.notify_one();
}

/* The next event, waiting until `until` at most. The loop thread gives up the round lock while
 * it sleeps (a follower may take it), and has it again when this returns. */
std::optional<Event> Daemon::wait_event(Clock::time_point until) {
    std::unique_lock<std::mutex> l(mu_);
    if (events_.empty()) {
        long_wait_ = until - Clock::now() > kQuietEventDelay;
        waiting_ = true;
        wait_until_ = until;
        rethink_ = false;
        round_.unlock();
        cv_.wait_until(l, until, [&] { return !events_.empty() || rethink_; });
        waiting_ = long_wait_ = rethink_ = false;
        // A follower holds the round lock and takes mu_: mu_ is released before waiting for it.
        l.unlock();
        round_.lock();
        l.lock();
    }
    if (events_.empty()) return std::nullopt;
    Event e = std::move(events_.front());
    events_.pop_front();
    return e;
}

/* The next event if one is there, without waiting (nor a system call). */
std::optional<Event> Daemon::poll_event() {
    std::lock_guard<std::mutex> g(mu_);
    if (events_.empty()) return std::nullopt;
    Event e = std::move(events_.front());
    events_.pop_front();
    return e;
}

/* At shutdown: the task acknowledgements still queued reach the journal's marks, so a clean
 * restart does not publish those states again. */
void Daemon::drain_task_deliveries() {
    if (!tasks_) return;
    std::deque<Event> keep;
    std::vector<std::pair<int64_t, bool>> acks;
    {
        std::lock_guard<std::mutex> g(mu_);
        for (Event& e : events_) {
            if (e.type == Event::delivered && e.tag < 0) acks.emplace_back(e.tag, e.ok);
            else keep.push_back(std::move(e));
        }
        events_.swap(keep);
    }
    for (const auto& [tag, ok] : acks) tasks_->on_delivered(tag, ok);
}

int Daemon::load_configuration() {
    std::string text;
    std::string name = opt_.config_path;
    std::error_code ec;
    if (std::filesystem::exists(opt_.config_path, ec)) {
        Result<std::string> t = read_file(opt_.config_path);
        if (!t.ok()) {
            spdlog::error("configuration: {}", t.status().message());
            return 3;
        }
        text = t.value();
    } else if (opt_.config_explicit) {
        spdlog::error("configuration: {}: configuration file not found", opt_.config_path);
        return 3;
    } else {
        name = "(built-in defaults)";
    }
    ConfigReport rep = check_config(text, name);
    cfg_ = rep.config;
    bool fatal = false;
    std::set<std::string> disabled;
    for (size_t i = 0; i < rep.errors.size(); ++i) {
        const std::string& sec = rep.sections[i];
        if (fatal_section(sec)) {
            spdlog::error("configuration: {}", rep.errors[i]);
            fatal = true;
        } else {
            spdlog::error("configuration: {} (feature '{}' {})", rep.errors[i], sec,
                          sec == "telemetry" || sec == "store" || sec == "metrics" ? "disabled" : "uses its defaults");
            disabled.insert(sec);
        }
    }
    if (fatal) {
        spdlog::error("configuration: cannot run without a valid node, broker and state_dir; fix {} and restart",
                      name);
        return 3;
    }
    telemetry_enabled_ = disabled.count("telemetry") == 0;
    if (disabled.count("store")) cfg_.store.max_bytes = -1;  // marks the store disabled
    // A wrong metrics key turns the endpoint off, not on at the default address.
    if (disabled.count("metrics")) cfg_.metrics.prometheus.enabled = false;
    finalise_config(cfg_);
    if (!opt_.log_level_override.empty()) (void)set_log_level(opt_.log_level_override);
    else (void)set_log_level(cfg_.log.level);
    if (!opt_.plugin_dir.empty()) cfg_.plugins.dir = opt_.plugin_dir;
    if (!opt_.sysfs_root.empty()) cfg_.discovery.sysfs_root = opt_.sysfs_root;
    return 0;
}

Status Daemon::check_broker_files() {
    const auto& t = cfg_.broker.tls;
    for (const auto& [path, what] : {std::pair{t.ca_file, "broker.tls.ca_file"}, {t.cert_file, "broker.tls.cert_file"}}) {
        std::error_code ec;
        if (!path.empty() && !std::filesystem::is_regular_file(path, ec))
            return {Code::not_found, std::string(what) + " " + path + ": no such file"};
    }
    if (!t.key_file.empty()) {
        Status s = mqtt::check_private_file(t.key_file, "broker.tls.key_file");
        if (!s.ok()) return s;
    }
    return {};
}

void Daemon::open_state() {
    std::error_code ec;
    std::filesystem::create_directories(cfg_.state_dir, ec);
    ::chmod(cfg_.state_dir.c_str(), 0750);
    if (cfg_.store.max_bytes > 0) {
        Result<std::unique_ptr<Outbox>> ob =
            Outbox::open(cfg_.state_dir + "/outbox.db", OutboxLimits{cfg_.store.max_bytes, cfg_.store.max_age_s});
        if (ob.ok()) {
            outbox_ = std::move(ob.value());
            if (outbox_->recovered_from_corruption())
                spdlog::error("store: {}/outbox.db was corrupt; it was moved aside and a new store started",
                              cfg_.state_dir);
            spdlog::info("store: {} message(s) waiting from earlier sessions", outbox_->count());
        } else {
            spdlog::error("store: {}; store-and-forward disabled (telemetry produced while offline is lost)",
                          ob.status().message());
        }
    } else {
        spdlog::warn("store: disabled by a configuration error; telemetry produced while offline is lost");
    }
}

void Daemon::discover_node() {
    DiscoveryOptions d = discovery_options(cfg_);
    std::vector<std::string> warnings;
    inv_ = discover(d, &warnings);
    for (const std::string& w : warnings) spdlog::warn("discovery: {}", w);
    for (const PluginReport& p : inv_.plugins)
        spdlog::info("backend {}: {}{}{}", p.name, p.status, p.reason.empty() ? "" : ": ", p.reason);
    std::vector<telemetry::DeviceRef> refs;
    for (const Device& dev : inv_.devices)
        refs.push_back({dev.id, dev.pci_address, dev.device_class == DeviceClass::cpu && dev.cpu.has_value()});
    if (!telemetry_enabled_) return;
    auto sampler = std::make_unique<telemetry::TelemetrySampler>(opt_.proc_root, cfg_.discovery.sysfs_root, refs);
    // Device telemetry a backend offers (NVML through the CUDA plugin, Sysman through Level Zero). Only plugins whose
    // isolated probe succeeded and found devices are loaded here, and loading one initialises
    // no compute runtime: its telemetry extra must not (see cpn_backend.h).
    for (const PluginReport& p : inv_.plugins) {
        if (p.status != "ok" || p.device_count == 0 || p.name == "cpu") continue;
        PluginLoadError err;
        std::shared_ptr<PluginLibrary> lib = PluginLibrary::open(p.path, err);
        if (!lib) {
            spdlog::warn("telemetry: {}: {} at {}: {}", p.name, err.status, err.stage, err.reason);
            continue;
        }
        void* fn = lib->backend().get_proc ? lib->backend().get_proc(CPN_DEVICE_TELEMETRY_PROC) : nullptr;
        if (fn == nullptr) continue;
        // The figures are tagged with the library they come from: NVML for CUDA, Sysman for
        // Level Zero, else the plugin's own name.
        const std::string source = p.name == "cuda" ? "nvml" : p.name == "levelzero" ? "sysman" : p.name;
        sampler->add_plugin_source(p.name, telemetry::make_plugin_source(reinterpret_cast<cpn_device_telemetry_fn>(fn), source));
        telemetry_plugins_.push_back(std::move(lib));
        spdlog::info("telemetry: device figures from backend {}", p.name);
    }
    sampler_ = std::move(sampler);
}

void Daemon::start_signal_thread() {
    // Signals are taken synchronously by one thread, so no handler runs inside Paho or SQLite.
    std::thread([this] {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        for (;;) {
            int sig = 0;
            if (sigwait(&set, &sig) != 0) continue;
            push(Event{sig == SIGHUP ? Event::reload : Event::terminate, {}, {}, 0, false});
            if (sig != SIGHUP) return;
        }
    }).detach();
}

void Daemon::start_connect() {
    Result<int64_t> n = counter_->next();
    if (!n.ok()) {
        spdlog::error("session counter: {}; retrying", n.status().message());
        schedule_reconnect();
        return;
    }
    bdseq_ = n.value();
    mqtt::OutgoingMessage will{topics_->state,
                               mqtt::death(cfg_.node.id, bdseq_, "connection_lost").dump(), 1, true};
    Status s = session_->start_connect(will);
    if (!s.ok()) {
        ++failures_;
        spdlog::warn("mqtt: {}", s.message());
        schedule_reconnect();
        return;
    }
    connect_started_ = Clock::now();
    state_ = State::connecting;
}

void Daemon::schedule_reconnect() {
    // Exponential backoff with jitter: a fleet that lost its broker at once does not come back
    // at once.
    double base = cfg_.broker.reconnect_min_ms * std::pow(2.0, std::min(failures_ - 1, 20));
    double cap = std::min<double>(base, cfg_.broker.reconnect_max_ms);
    std::uniform_real_distribution<double> jitter(std::max<double>(cap / 2, cfg_.broker.reconnect_min_ms),
                                                  std::max<double>(cap, cfg_.broker.reconnect_min_ms));
    int delay = failures_ <= 0 ? 0 : static_cast<int>(jitter(rng_));
    next_connect_ = Clock::now() + std::chrono::milliseconds(delay);
    state_ = State::disconnected;
    if (failures_ > 0) {
        spdlog::info("mqtt: reconnecting in {} ms (attempt {})", delay, failures_ + 1);
        // The agent is up and doing its work offline (telemetry and task results are stored
        // for later), so a dead broker does not hold `systemctl start` until it times out.
        notify_.ready(fmt::format("offline: broker {} not reachable, attempt {} in {} ms; results are stored until it is",
                                  fmt::join(cfg_.broker.uris, ", "), failures_ + 1, delay));
    }
}

void Daemon::poll_connect() {
    Status s = session_->wait_connected(0);
    if (s.code() == Code::deadline_exceeded) {
        if (Clock::now() - connect_started_ > std::chrono::seconds(cfg_.broker.connect_timeout_s + 5)) {
            ++failures_;
            spdlog::warn("mqtt: connect attempt did not finish in {} s", cfg_.broker.connect_timeout_s + 5);
            session_->disconnect(100);
            schedule_reconnect();
        }
        return;
    }
    if (!s.ok()) {
        ++failures_;
        spdlog::warn("mqtt: connect to {} failed: {}", fmt::join(cfg_.broker.uris, ", "), s.message());
        schedule_reconnect();
        return;
    }
    if (on_connected()) {
        failures_ = 0;
        state_ = State::online;
        update_metrics(nullptr);
        notify_.ready(fmt::format("online: birth published to {} (session {})", session_->server_uri(), bdseq_));
    } else {
        ++failures_;
        session_->disconnect(200);
        schedule_reconnect();
    }
}

void Daemon::publish_retained_state() {
    mqtt::BirthInfo b;
    b.node_id = cfg_.node.id;
    b.site = cfg_.node.site;
    b.agent_version = CPN_VERSION;
    b.protocol = cfg_.broker.protocol;
    b.broker = session_->server_uri();
    b.bdseq = bdseq_;
    b.telemetry_interval_s = cfg_.telemetry.interval_s;
    if (outbox_) {
        mqtt::StoreSummary st;
        st.buffered = outbox_->count();
        st.dropped_since_last_birth = outbox_->take_dropped_since_report();
        st.dropped_total = outbox_->dropped_total();
        b.store = st;
    }
    const int t = 5000;
    for (const auto& [topic, doc] :
         {std::pair{topics_->state, mqtt::birth(b)}, {topics_->inventory, mqtt::inventory(cfg_.node.id, bdseq_, inv_)},
          {topics_->capacity, capacity_message()}}) {
        Status s = session_->publish_sync({topic, doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 1, true}, t);
        if (!s.ok()) throw std::runtime_error(s.message());
    }
}

bool Daemon::on_connected() {
    if (discovery_.valid()) {
        discovery_.get();  // the inventory goes right after the birth
        after_discovery();
    }
    try {
        publish_retained_state();
        Status s = session_->subscribe(topics_->cmd, 1, 5000);
        if (!s.ok()) throw std::runtime_error(s.message());
        if (tasks_)
            for (const std::string& t : tasks_->subscriptions(cfg_.tasks.queues, cfg_.tasks.share_group)) {
                s = session_->subscribe(t, 1, 5000);
                if (!s.ok()) throw std::runtime_error(s.message());
            }
    } catch (const std::exception& e) {
        spdlog::warn("mqtt: birth failed: {}", e.what());
        return false;
    }
    highest_sent_ = 0;
    in_flight_.clear();
    online_bdseq_ = bdseq_;
    if (tasks_) tasks_->on_online();
    spdlog::info("mqtt: online at {} as {} (bdseq {}), {} message(s) to replay", session_->server_uri(),
                 cfg_.node.id, bdseq_, outbox_ ? outbox_->count() : 0);
    return true;
}

nlohmann::json Daemon::available_capacity(const nlohmann::json& telemetry) const {
    // Each device's L2 score scaled by the share of it that is free now: the brain routes by
    // this. The CPU's share is the node's CPU utilisation; a device whose utilisation the
    // platform does not expose is counted whole and says so.
    const nlohmann::json& rec = capacity_record();
    nlohmann::json devices = nlohmann::json::object();
    double total = 0;
    for (const auto& d : rec["devices"]) {
        const std::string id = d.value("device_id", "");
        const double l2 = d.value("l2", 0.0);
        double util = -1;
        if (telemetry.contains("devices"))
            for (const auto& t : telemetry["devices"])
                if (t.value("id", "") == id && t.contains("utilization_pct")) util = t["utilization_pct"].get<double>();
        if (util < 0 && id == "cpu" && telemetry.contains("node") && telemetry["node"].contains("cpu_utilization_pct"))
            util = telemetry["node"]["cpu_utilization_pct"].get<double>();
        nlohmann::json e = {{"l2", l2}};
        if (util >= 0) {
            const double free = std::clamp(1.0 - util / 100.0, 0.0, 1.0);
            e["free_fraction"] = free;
            e["l2"] = l2 * free;
        }
        total += e["l2"].get<double>();
        devices[id] = std::move(e);
    }
    return {{"l2", total}, {"devices", devices}};
}

void Daemon::produce_telemetry() {
    nlohmann::json sample = sampler_->sample();
    int64_t seq = 0;
    if (outbox_) {
        Result<int64_t> s = outbox_->next_sequence("telemetry_seq");
        if (!s.ok()) {
            spdlog::error("store: {}", s.status().message());
            return;
        }
        seq = s.value();
    } else {
        seq = ++telemetry_seq_memory_;
    }
    // A sample taken while not online is stamped with the last session that was, so it is
    // marked historical when it is replayed after the next birth.
    const int64_t stamp = state_ == State::online ? bdseq_ : online_bdseq_;
    nlohmann::json msg = mqtt::telemetry(cfg_.node.id, seq, stamp, cfg_.telemetry.interval_s, sample);
    if (capacity_report_) msg["available_capacity"] = available_capacity(msg);
    std::string payload = msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (outbox_) {
        Result<int64_t> id = outbox_->append("telemetry", topics_->telemetry, payload, 1, mqtt::now_ms());
        if (!id.ok()) spdlog::error("store: {}", id.status().message());
    } else if (state_ == State::online) {
        (void)session_->publish_async({topics_->telemetry, payload, 1, false}, -1);
    } else {
        ++dropped_without_store_;
    }
    update_metrics(&msg);  // online or not: the endpoint matters most while the broker is down
}

void Daemon::start_metrics() {
    if (!cfg_.metrics.prometheus.enabled) return;
    const std::string& listen = cfg_.metrics.prometheus.listen;
    Result<std::unique_ptr<metrics::PrometheusExporter>> m = metrics::PrometheusExporter::start(listen);
    if (!m.ok()) {
        // Metrics are an extra: the agent's work (telemetry over MQTT, tasks) goes on without them.
        spdlog::error("metrics: {}; running without Prometheus metrics (fix metrics.prometheus.listen or free the "
                      "port, then restart)", m.status().message());
        return;
    }
    metrics_ = std::move(m.value());
    update_metrics(nullptr);
    spdlog::info("metrics: Prometheus endpoint at http://{}/metrics", listen);
}

void Daemon::update_metrics(const nlohmann::json* telemetry) {
    if (!metrics_) return;
    metrics::AgentState s;
    s.node_id = cfg_.node.id;
    s.mqtt_connected = state_ == State::online;
    s.bdseq = bdseq_;
    if (outbox_) {
        s.outbox_buffered = outbox_->count();
        s.outbox_dropped_total = outbox_->dropped_total();
    }
    if (tasks_) {
        const tasks::TaskService::Counts c = tasks_->counts();
        s.tasks_queued = c.queued;
        s.tasks_running = c.running;
        s.tasks_unhealthy_devices = c.unhealthy_devices;
    }
    if (telemetry) metrics_->update_telemetry(*telemetry);
    metrics_->update_state(s);
}

void Daemon::pump_outbox() {
    if (!outbox_ || state_ != State::online) return;
    constexpr size_t kWindow = 64;
    if (in_flight_.size() >= kWindow) return;
    Result<std::vector<OutboxMessage>> batch = outbox_->peek(kWindow - in_flight_.size(), highest_sent_);
    if (!batch.ok()) {
        spdlog::error("store: {}", batch.status().message());
        return;
    }
    for (OutboxMessage& m : batch.value()) {
        std::string payload = std::move(m.payload);
        if (m.kind == "telemetry") {
            // Produced in an earlier session: marked historical so it never overwrites live values.
            try {
                nlohmann::json j = nlohmann::json::parse(payload);
                if (j.value("bdseq", int64_t{-1}) != bdseq_) {
                    j["historical"] = true;
                    payload = j.dump();
                }
            } catch (...) {
            }
        }
        Status s = session_->publish_async({m.topic, payload, m.qos, false}, m.id);
        if (!s.ok()) {
            spdlog::warn("mqtt: {}", s.message());
            return;
        }
        in_flight_.insert(m.id);
        highest_sent_ = m.id;
    }
}

void Daemon::send_ack(const mqtt::Ack& ack) {
    std::string payload = mqtt::command_ack(cfg_.node.id, ack).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (outbox_) {
        Result<int64_t> id = outbox_->append("ack", topics_->cmd_ack, payload, 1, mqtt::now_ms());
        if (id.ok()) return;
        spdlog::error("store: {}; sending the ack directly", id.status().message());
    }
    if (state_ == State::online) (void)session_->publish_async({topics_->cmd_ack, payload, 1, false}, -1);
}

void Daemon::handle_command(const std::string& payload) {
    ParsedCommand c = parse_command(payload);
    mqtt::Ack ack = c.ack;
    switch (c.kind) {
        case CommandKind::invalid:
            spdlog::warn("command refused ({}): {}", ack.code, ack.message);
            break;
        case CommandKind::rebirth:
            try {
                publish_retained_state();
                ack.message = "birth, inventory and capacity re-published";
            } catch (const std::exception& e) {
                ack.code = "internal";
                ack.message = std::string("re-publishing failed: ") + e.what();
            }
            break;
        case CommandKind::rebenchmark:
            if (discovery_.valid()) {
                ack.code = "unavailable";
                ack.message = "discovery is still running; send rebenchmark again in a moment";
                break;
            }
            if (bench_running_) {
                ack.code = "busy";
                ack.message = "a benchmark is already running; its capacity will be published when it ends";
                break;
            }
            // Acknowledged when the run ends, with its outcome (see finish_bench).
            start_bench(c.bench_mode.empty() ? (cfg_.capacity.mode == "full" ? "full" : "quick") : c.bench_mode,
                        c.devices, ack);
            spdlog::info("command rebenchmark ({}): started", ack.id.value_or("no id"));
            return;
        case CommandKind::set_normalization: {
            Result<bench::Normalization> n = bench::normalization_from_json(c.normalization, norm_);
            if (!n.ok()) {
                ack.code = "invalid_params";
                ack.message = n.status().message();
                break;
            }
            bench::Normalization next = n.value();
            next.source = "brain (command set_normalization)";
            nlohmann::json stored = bench::to_json(next);
            const std::string path = cfg_.state_dir + "/normalization.json";
            const std::string tmp = path + ".tmp";
            {
                std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
                out << stored.dump(1) << "\n";
                out.flush();
                if (!out) {
                    ack.code = "internal";
                    ack.message = "cannot write " + tmp;
                    break;
                }
            }
            std::error_code ec;
            std::filesystem::rename(tmp, path, ec);
            if (ec) {
                ack.code = "internal";
                ack.message = "cannot store " + path + ": " + ec.message();
                break;
            }
            norm_ = next;
            record_cache_.reset();
            publish_capacity();
            ack.message = "normalisation replaced and stored; capacity re-published with the new L1/L2 scores";
            break;
        }
        case CommandKind::set_telemetry_interval:
            cfg_.telemetry.interval_s = c.interval_s;
            next_telemetry_ = Clock::now() + std::chrono::seconds(c.interval_s);
            ack.message = "telemetry interval set to " + std::to_string(c.interval_s) + " s until the next restart or reload";
            ack.data = {{"interval_s", c.interval_s}};
            break;
    }
    spdlog::info("command {} ({}): {}", ack.command.value_or("?"), ack.id.value_or("no id"), ack.code);
    send_ack(ack);
}

Status Daemon::load_normalization() {
    norm_ = bench::normalization_from_config(cfg_);
    record_cache_.reset();
    const std::string path = cfg_.state_dir + "/normalization.json";
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return Status::Ok();
    Result<std::string> text = read_file(path);
    if (!text.ok()) return text.status();
    nlohmann::json j = nlohmann::json::parse(text.value(), nullptr, false);
    if (j.is_discarded()) return Status(Code::invalid_argument, path + ": not valid JSON");
    Result<bench::Normalization> n = bench::normalization_from_json(j, norm_);
    if (!n.ok()) return Status(Code::invalid_argument, path + ": " + n.status().message());
    norm_ = n.value();
    record_cache_.reset();
    norm_.source = "brain (command set_normalization, stored in " + path + ")";
    return Status::Ok();
}

void Daemon::refresh_capacity() {
    const std::string path = bench::capacity_cache_path(cfg_.state_dir);
    Result<bench::CachedCapacity> c = bench::load_capacity(path);
    capacity_report_.reset();
    record_cache_.reset();
    if (!c.ok()) {
        capacity_reason_ = c.status().code() == Code::not_found ? "no benchmark has run on this node yet"
                                                                 : c.status().message();
        return;
    }
    const std::string why = bench::cache_invalid_reason(c.value(), inv_);
    if (!why.empty()) {
        capacity_reason_ = "the stored capacity is stale (" + why + "); re-measuring";
        return;
    }
    capacity_report_ = std::move(c.value().report);
    record_cache_.reset();
    capacity_reason_.clear();
}

nlohmann::json Daemon::capacity_message() const {
    if (!capacity_report_) {
        nlohmann::json j = mqtt::capacity_not_measured(cfg_.node.id, bdseq_);
        j["reason"] = capacity_reason_ + (bench_running_ ? " (a benchmark is running)" : "");
        return j;
    }
    return mqtt::capacity_measured(cfg_.node.id, bdseq_, capacity_record());
}

void Daemon::publish_capacity() {
    if (state_ != State::online) return;  // the next birth carries it
    const std::string payload = capacity_message().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    Status s = session_->publish_sync({topics_->capacity, payload, 1, true}, 5000);
    if (!s.ok()) spdlog::warn("mqtt: capacity not published: {} (the next birth carries it)", s.message());
}

void Daemon::after_discovery() {
    if (capacity_checked_) return;
    capacity_checked_ = true;
    open_tasks();
    if (Status s = load_normalization(); !s.ok())
        spdlog::error("capacity: {}; using the configured normalisation", s.message());
    refresh_capacity();
    if (capacity_report_) {
        spdlog::info("capacity: stored benchmark is valid for this hardware and drivers");
        return;
    }
    spdlog::info("capacity: {}", capacity_reason_);
    if (cfg_.capacity.mode == "off") {
        capacity_reason_ += " (capacity.mode is off: send the rebenchmark command to measure)";
        return;
    }
    start_bench(cfg_.capacity.mode, {}, std::nullopt);
}

void Daemon::start_bench(const std::string& mode, const std::vector<std::string>& devices,
                         std::optional<mqtt::Ack> ack) {
    if (ack) bench_waiters_.push_back(*ack);
    if (bench_running_) return;
    bench_running_ = true;
    bench_devices_ = devices;
    if (bench_thread_.joinable()) bench_thread_.join();
    std::vector<std::string> argv = {self_exec_path()};
    std::error_code ec;
    if (std::filesystem::exists(opt_.config_path, ec)) argv.insert(argv.end(), {"--config", opt_.config_path});
    argv.insert(argv.end(), {"--log-level", "warn", "bench", mode == "full" ? "--full" : "--quick", "--no-store",
                             "--output", cfg_.state_dir + "/bench-last.json"});
    if (!cfg_.plugins.dir.empty()) argv.insert(argv.end(), {"--plugin-dir", cfg_.plugins.dir});
    for (const std::string& d : devices) argv.insert(argv.end(), {"--device", d});
    spdlog::info("capacity: {} benchmark started in a child process", mode);
    const int timeout_ms = mode == "full" ? 15 * 60 * 1000 : 5 * 60 * 1000;
    bench_thread_ = std::thread([this, argv, timeout_ms] {
        std::vector<ProcessResult> r = run_processes({argv}, timeout_ms, &bench_abort_);
        const ProcessResult& p = r.front();
        const bool ok = p.started && !p.timed_out && p.term_signal == 0 && p.exit_code == 0;
        std::string detail = !p.started ? p.start_error : describe_exit(p, timeout_ms);
        std::string err = p.err;
        if (err.size() > 400) err = "..." + err.substr(err.size() - 400);
        if (!ok && !err.empty()) detail += ": " + err;
        push(Event{Event::bench_done, detail, {}, 0, ok});
    });
}

void Daemon::finish_bench(bool ok, const std::string& detail) {
    bench_running_ = false;
    if (bench_thread_.joinable()) bench_thread_.join();
    std::string code = "ok", message;
    nlohmann::json data;
    if (!ok) {
        code = "internal";
        message = "benchmark failed: " + detail;
    } else {
        Result<std::string> text = read_file(cfg_.state_dir + "/bench-last.json");
        nlohmann::json rec = text.ok() ? nlohmann::json::parse(text.value(), nullptr, false) : nlohmann::json();
        try {
            if (!rec.is_object() || !rec.contains("l0")) throw std::runtime_error("no l0 record in bench-last.json");
            bench::BenchReport report = rec["l0"].get<bench::BenchReport>();
            if (!bench_devices_.empty() && capacity_report_) {
                // Only some devices were re-measured: they replace their entries in the record.
                bench::BenchReport merged = *capacity_report_;
                for (const bench::DeviceResult& d : report.devices) {
                    auto it = std::find_if(merged.devices.begin(), merged.devices.end(),
                                           [&](const bench::DeviceResult& x) { return x.device_id == d.device_id; });
                    if (it != merged.devices.end()) *it = d;
                    else merged.devices.push_back(d);
                }
                merged.timestamp_ms = report.timestamp_ms;
                report = std::move(merged);
            }
            Status st = bench::save_capacity(bench::capacity_cache_path(cfg_.state_dir), inv_, report);
            if (!st.ok()) spdlog::error("capacity: {}", st.message());
            capacity_report_ = report;
            record_cache_.reset();
            capacity_reason_.clear();
            message = "benchmark finished in " + std::to_string(static_cast<int>(report.seconds * 1000)) +
                      " ms; capacity re-published";
            const nlohmann::json& cap = capacity_record();
            data = {{"mode", report.mode}, {"seconds", report.seconds}, {"l2", cap["l2"]["node"]}};
        } catch (const std::exception& e) {
            code = "internal";
            message = std::string("benchmark output unreadable: ") + e.what();
        }
    }
    if (code == "ok") spdlog::info("capacity: {}", message);
    else {
        spdlog::error("capacity: {}", message);
        if (!capacity_report_) capacity_reason_ = message;
    }
    publish_capacity();
    for (mqtt::Ack& a : bench_waiters_) {
        a.code = code;
        a.message = message;
        a.data = data;
        send_ack(a);
    }
    bench_waiters_.clear();
    for (auto& p : bench_promises_) p->set_value(BenchOutcome{code == "ok", message, data});
    bench_promises_.clear();
}

void Daemon::reload() {
    std::string text;
    Result<std::string> t = read_file(opt_.config_path);
    if (!t.ok()) {
        spdlog::error("reload: {}; keeping the running configuration", t.status().message());
        return;
    }
    ConfigReport rep = check_config(t.value(), opt_.config_path);
    bool interval_ok = true, level_ok = true, store_ok = true, capacity_ok = true;
    for (size_t i = 0; i < rep.errors.size(); ++i) {
        spdlog::error("reload: {}", rep.errors[i]);
        if (rep.sections[i] == "telemetry") interval_ok = false;
        if (rep.sections[i] == "log") level_ok = false;
        if (rep.sections[i] == "store") store_ok = false;
        if (rep.sections[i] == "capacity") capacity_ok = false;
        if (rep.sections[i] == "(file)") return;
    }
    const Config& n = rep.config;
    if (interval_ok && n.telemetry.interval_s != cfg_.telemetry.interval_s) {
        cfg_.telemetry.interval_s = n.telemetry.interval_s;
        next_telemetry_ = Clock::now() + std::chrono::seconds(n.telemetry.interval_s);
        spdlog::info("reload: telemetry.interval_s = {}", n.telemetry.interval_s);
    }
    if (level_ok && opt_.log_level_override.empty()) {
        cfg_.log.level = n.log.level;
        (void)set_log_level(n.log.level);
    }
    if (store_ok && outbox_) {
        cfg_.store = n.store;
        outbox_->set_limits(OutboxLimits{n.store.max_bytes, n.store.max_age_s});
    }
    if (capacity_ok) {
        cfg_.capacity = n.capacity;
        // A normalisation the brain set (state_dir/normalization.json) stays in force over the
        // file's; without one, the file's new reference, weights and classes apply at once.
        std::error_code ec;
        if (!std::filesystem::exists(cfg_.state_dir + "/normalization.json", ec)) {
            bench::Normalization next = bench::normalization_from_config(cfg_);
            if (bench::to_json(next) != bench::to_json(norm_)) {
                norm_ = next;
                record_cache_.reset();
                spdlog::info("reload: capacity normalisation from {}", opt_.config_path);
                publish_capacity();
            }
        }
    }
    Config probe = n;
    finalise_config(probe);
    if (probe.node.id != cfg_.node.id || probe.broker.uris != cfg_.broker.uris || n.state_dir != cfg_.state_dir)
        spdlog::warn("reload: node, broker and state_dir changes take effect at the next restart");
}

void Daemon::shutdown() {
    stopping_ = true;
    drain_task_deliveries();
    // Running tasks are asked to stop and stay RUNNING in the journal: the next start re-runs
    // them (idempotent kinds) or fails them "agent restarted".
    if (tasks_) tasks_->shutdown(700);
    if (bench_thread_.joinable()) {
        // A running benchmark child is killed (it holds nothing worth keeping: its result is
        // only taken when complete), so the stop stays within its 2 s.
        bench_abort_.store(true);
        bench_thread_.join();
    }
    if (state_ == State::online) {
        // Let the broker acknowledge what is in flight and drop it from the store, so a clean
        // restart does not send it again (bounded: the whole stop must fit in 2 s).
        const auto deadline = Clock::now() + std::chrono::milliseconds(500);
        while (!in_flight_.empty() && Clock::now() < deadline) {
            std::optional<Event> e = wait_event(deadline);
            if (!e) break;
            if (e->type == Event::delivered && e->tag > 0) {
                in_flight_.erase(e->tag);
                if (e->ok) (void)outbox_->remove(e->tag);
            }
        }
        Status s = session_->publish_sync(
            {topics_->state, mqtt::death(cfg_.node.id, bdseq_, "shutdown").dump(), 1, true}, 1000);
        if (!s.ok()) spdlog::warn("shutdown: death certificate not confirmed: {}", s.message());
        session_->disconnect(500);
    }
    spdlog::info("stopped");
}

tasks::Workload Daemon::bench_workload() {
    tasks::Workload w;
    w.info = {"bench", true, "re-measures this node's capacity (all devices or params.devices)"};
    w.validate = [](const nlohmann::json& p) -> std::string {
        for (const auto& [k, v] : p.items()) {
            if (k == "mode") {
                if (!v.is_string() || (v != "quick" && v != "full")) return "params.mode must be \"quick\" or \"full\"";
            } else if (k == "devices") {
                if (!v.is_array() || v.size() > 64) return "params.devices must be a list of at most 64 device ids";
                for (const auto& d : v)
                    if (!d.is_string() || d.get_ref<const std::string&>().empty() || d.get_ref<const std::string&>().size() > 128)
                        return "params.devices must hold device ids (strings of 1 to 128 characters)";
            } else {
                return "unknown bench parameter '" + k.substr(0, 64) + "' (known: mode, devices)";
            }
        }
        return {};
    };
    w.run = [this](tasks::WorkContext& ctx) {
        tasks::WorkResult r;
        BenchRequest req;
        req.mode = ctx.spec.params.value("mode", cfg_.capacity.mode == "full" ? std::string("full") : std::string("quick"));
        if (ctx.spec.params.contains("devices"))
            for (const auto& d : ctx.spec.params["devices"]) req.devices.push_back(d.get<std::string>());
        req.done = std::make_shared<std::promise<BenchOutcome>>();
        std::future<BenchOutcome> f = req.done->get_future();
        {
            std::lock_guard<std::mutex> g(bench_req_mu_);
            bench_requests_.push_back(std::move(req));
        }
        push(Event{Event::bench_request, {}, {}, 0, false});
        ctx.progress(0.0, "benchmark running");
        while (f.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready)
            if (ctx.cancel.stop_requested()) {
                r.outcome = tasks::WorkResult::Outcome::stopped;
                return r;
            }
        BenchOutcome o = f.get();
        if (!o.ok) {
            r.outcome = tasks::WorkResult::Outcome::failed;
            r.reason = o.message;
            return r;
        }
        r.data = o.data;
        return r;
    };
    return w;
}

std::function<std::string(const std::string&)> Daemon::plugin_paths() const {
    std::map<std::string, std::string> plugins;
    for (const PluginReport& p : inv_.plugins)
        if (p.status == "ok") plugins[p.name] = p.path;
    return [plugins](const std::string& backend) {
        auto it = plugins.find(backend);
        return it == plugins.end() ? std::string() : it->second;
    };
}

tasks::Workload Daemon::render_workload() {
    render::RenderWorkloadDeps deps;
    deps.devices = inv_.devices;
    deps.plugin_path = plugin_paths();
    deps.limits.scene.allowed_dirs = cfg_.tasks.allowed_input_dirs;
    deps.limits.scene.max_triangles = static_cast<uint64_t>(cfg_.tasks.render_max_triangles);
    deps.limits.scene.max_file_bytes = static_cast<uint64_t>(cfg_.tasks.max_file_input_bytes);
    deps.limits.max_pixels = static_cast<uint64_t>(cfg_.tasks.render_max_pixels);
    return render::render_workload(std::move(deps));
}

tasks::Workload Daemon::infer_workload() {
    infer::InferWorkloadDeps deps;
    deps.devices = inv_.devices;
    deps.plugin_path = plugin_paths();
    deps.allowed_dirs = cfg_.tasks.allowed_input_dirs;
    deps.max_file_bytes = static_cast<uint64_t>(cfg_.tasks.max_file_input_bytes);
    deps.max_tensor_elements = cfg_.tasks.infer_max_tensor_elements;
    deps.model_cache_entries = static_cast<size_t>(cfg_.tasks.infer_model_cache_entries);
    return infer::infer_workload(std::move(deps));
}

void Daemon::take_bench_requests() {
    std::vector<BenchRequest> reqs;
    {
        std::lock_guard<std::mutex> g(bench_req_mu_);
        reqs.swap(bench_requests_);
    }
    for (BenchRequest& r : reqs) {
        // A run already going (a rebenchmark command, or another bench task) serves this one too.
        bench_promises_.push_back(r.done);
        start_bench(r.mode, r.devices, std::nullopt);
    }
}

void Daemon::open_tasks() {
    tasks::TaskServiceConfig tc;
    tc.node_id = cfg_.node.id;
    tc.state_dir = cfg_.state_dir;
    const Config::Tasks& t = cfg_.tasks;
    tc.limits.max_submit_bytes = static_cast<size_t>(t.max_submit_bytes);
    tc.limits.max_inline_input_bytes = static_cast<size_t>(t.max_inline_input_bytes);
    tc.limits.max_file_input_bytes = static_cast<uint64_t>(t.max_file_input_bytes);
    tc.limits.allowed_input_dirs = t.allowed_input_dirs;
    tc.limits.max_timeout_s = t.max_timeout_s;
    tc.limits.reply_prefix = t.reply_prefix;
    tc.max_queued = t.max_queued;
    tc.inline_result_bytes = t.inline_result_bytes;
    tc.slots = {{DeviceClass::cpu, t.slots_cpu},
                {DeviceClass::gpu, t.slots_gpu},
                {DeviceClass::fpga, t.slots_fpga},
                {DeviceClass::npu, t.slots_npu},
                {DeviceClass::other, t.slots_other}};
    tc.retention_s = t.retention_s;
    tc.full_sync = t.journal_sync == "full";
    tc.max_attempts = t.max_attempts;
    // A follower round commits on the MQTT receive thread: not when each commit waits for the
    // disk (an fsync, 0.1-0.2 ms here and far more on an SD card), which would hold up every
    // message behind it and turn a burst into one fsync per task instead of one per group.
    follow_ok_ = !tc.full_sync;
    tc.sysfs_root = cfg_.discovery.sysfs_root;
    tasks::TaskHooks hooks;
    hooks.publish = [this](const mqtt::OutgoingMessage& m, int64_t tag) {
        if (state_ != State::online) return false;
        return session_->publish_async(m, tag).ok();
    };
    hooks.wake = [this] { push(Event{Event::task_wake, {}, {}, 0, false}); };
    hooks.capacity_score = [this](const std::string& device_id, const std::string& kind) -> double {
        if (!capacity_report_) return 1.0;
        for (const auto& d : capacity_record()["devices"]) {
            if (d.value("device_id", "") != device_id) continue;
            const char* cat = kind == "render" ? "render" : kind == "infer" ? "ai" : nullptr;
            if (cat && d.contains("l1") && d["l1"].contains(cat) && d["l1"][cat].is_number())
                return d["l1"][cat].get<double>();
            return d.value("l2", 1.0);
        }
        return 1.0;
    };
    std::map<std::string, std::string> plugin_paths;
    for (const PluginReport& p : inv_.plugins) plugin_paths[p.name] = p.path;
    const int probe_timeout = cfg_.discovery.probe_timeout_ms;
    hooks.reprobe = [plugin_paths, probe_timeout](const Device& d) {
        for (const RuntimePath& rp : d.runtimes) {
            auto it = plugin_paths.find(rp.backend);
            if (it == plugin_paths.end()) continue;
            // The plugin reports its own ids (the node-level id comes from the merge), so the
            // device is recognised by what identifies the hardware.
            for (const PluginOutcome& o : probe_plugins_isolated(self_exec_path(), {it->second}, probe_timeout))
                for (const Device& found : o.devices) {
                    if (found.device_class != d.device_class) continue;
                    if (!d.uuid.empty() && found.uuid == d.uuid) return true;
                    if (!d.pci_address.empty() && found.pci_address == d.pci_address) return true;
                    if (d.uuid.empty() && d.pci_address.empty() &&
                        (d.device_class == DeviceClass::cpu || found.model == d.model))
                        return true;
                }
        }
        return false;
    };
    Result<std::unique_ptr<tasks::TaskService>> ts =
        tasks::TaskService::open(tc, inv_, std::move(hooks),
                                 {tasks::echo_workload(), bench_workload(), render_workload(), infer_workload()});
    if (!ts.ok()) {
        spdlog::error("tasks: {}; this node accepts no tasks until the journal can be opened (restart after fixing it)",
                      ts.status().message());
        return;
    }
    tasks_ = std::move(ts.value());
    spdlog::info("tasks: {}", tasks_->recovery_summary());
}

bool Daemon::handle(Event& e) {
    switch (e.type) {
        case Event::lost:
            if (state_ == State::online) {
                spdlog::warn("mqtt: connection lost: {}", e.a);
                failures_ = 1;
                in_flight_.clear();
                if (tasks_) tasks_->on_offline();
                schedule_reconnect();
                update_metrics(nullptr);
            }
            break;
        case Event::message:
            if (e.a == topics_->cmd) {
                handle_command(e.b);
            } else if (tasks_) {
                tasks::TaskRequest r;
                if (tasks_->classify(e.a, r)) {
                    r.payload = std::move(e.b);
                    r.response_topic = std::move(e.response_topic);
                    r.correlation = std::move(e.correlation);
                    tasks_->add(std::move(r));
                }
            }
            break;
        case Event::task_wake:
            break;
        case Event::bench_request:
            take_bench_requests();
            break;
        case Event::delivered:
            if (e.tag < 0 && tasks_) tasks_->on_delivered(e.tag, e.ok);
            if (e.tag <= 0) break;
            in_flight_.erase(e.tag);
            if (e.ok) {
                if (Status s = outbox_->remove(e.tag); !s.ok()) spdlog::error("store: {}", s.message());
            } else {
                highest_sent_ = 0;  // re-send from the oldest undelivered
            }
            break;
        case Event::terminate:
            notify_.stopping("stopping: publishing the death certificate");
            shutdown();
            return false;
        case Event::reload:
            notify_.reloading();
            reload();
            notify_.ready(notify_.last_status());
            break;
        case Event::connect_done:
            if (state_ == State::connecting) poll_connect();
            break;
        case Event::bench_done:
            finish_bench(e.ok, e.a);
            break;
    }
    return true;
}

int Daemon::run() {
    // Block the signals before any thread exists, so only the signal thread receives them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    // Held from here on (given up only while the loop sleeps); never given back once run()
    // returns, so no follower round can start on what is being torn down.
    round_.lock();

    if (int rc = load_configuration(); rc != 0) return rc;
    render::register_render_reference();  // capacity measures task.render with the hardware figures
    infer::register_infer_reference();    // and task.infer
    if (Status s = check_broker_files(); !s.ok()) {
        spdlog::error("configuration: {}", s.message());
        return 3;
    }
    mqtt::SessionSettings ss;
    ss.uris = cfg_.broker.uris;
    ss.client_id = cfg_.node.id;
    ss.mqtt5 = cfg_.broker.protocol == "5";
    ss.keepalive_s = cfg_.broker.keepalive_s;
    ss.connect_timeout_s = cfg_.broker.connect_timeout_s;
    ss.username = cfg_.broker.username;
    ss.tls = {cfg_.broker.tls.ca_file, cfg_.broker.tls.cert_file, cfg_.broker.tls.key_file, cfg_.broker.tls.verify};
    if (!cfg_.broker.password_file.empty()) {
        Result<std::string> pw = mqtt::read_secret_file(cfg_.broker.password_file, "broker.password_file");
        if (!pw.ok()) {
            spdlog::error("configuration: {}", pw.status().message());
            return 3;
        }
        ss.password = pw.value();
    }
    if (!cfg_.broker.tls.verify)
        spdlog::warn("broker.tls.verify is false: the broker's identity is not checked (lab use only)");

    std::error_code ec;
    std::filesystem::create_directories(cfg_.state_dir, ec);
    if (ec) {
        spdlog::error("state_dir {}: {}", cfg_.state_dir, ec.message());
        return 1;
    }
    Result<SessionCounter> counter = SessionCounter::open(cfg_.state_dir + "/bdseq");
    if (!counter.ok()) {
        spdlog::error("{}", counter.status().message());
        return 1;
    }
    counter_ = std::move(counter.value());
    bdseq_ = counter_->current();
    online_bdseq_ = bdseq_;
    topics_ = std::make_unique<mqtt::Topics>(cfg_.node.id);
    open_state();
    start_metrics();  // after the signal mask above: its server threads inherit it
    start_signal_thread();
    // Discovery (vendor probes in child processes) overlaps the first connect; the birth waits
    // for it, so start-to-birth costs max(discovery, connect) rather than their sum.
    discovery_ = std::async(std::launch::async, [this] { discover_node(); });

    try {
        session_ = std::make_unique<mqtt::Session>(ss);
    } catch (const std::exception& e) {
        spdlog::error("mqtt: cannot create the client: {}", e.what());
        return 1;
    }
    session_->on_message([this](mqtt::IncomingMessage m) {
        Event e{Event::message, std::move(m.topic), std::move(m.payload), 0, false};
        e.response_topic = std::move(m.response_topic);
        e.correlation = std::move(m.correlation);
        push(std::move(e));
    });
    session_->on_connection_lost([this](const std::string& cause) { push(Event{Event::lost, cause, {}, 0, false}); });
    session_->on_delivery([this](int64_t tag, bool ok) { push(Event{Event::delivered, {}, {}, tag, ok}); });
    session_->on_connect_done([this] { push(Event{Event::connect_done, {}, {}, 0, false}); });

    spdlog::info("cpn-agent {} running as node '{}', broker {}", CPN_VERSION, cfg_.node.id,
                 fmt::join(cfg_.broker.uris, ", "));
    next_connect_ = Clock::now();
    next_telemetry_ = Clock::now() + std::chrono::seconds(cfg_.telemetry.interval_s);

    while (!stopping_) {
        auto now = Clock::now();
        notify_.keepalive(now);
        if (state_ == State::disconnected && now >= next_connect_) start_connect();
        if (state_ == State::connecting) poll_connect();
        if (discovery_.valid() && discovery_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
            discovery_.get();
            after_discovery();
        }
        const bool sampling = !discovery_.valid() && sampler_;  // sampler_ is set by discovery
        if (sampling && now >= next_telemetry_) {
            produce_telemetry();
            next_telemetry_ += std::chrono::seconds(cfg_.telemetry.interval_s);
            if (next_telemetry_ < now) next_telemetry_ = now + std::chrono::seconds(cfg_.telemetry.interval_s);
        }
        pump_outbox();

        Clock::time_point until = sampling ? next_telemetry_ : now + std::chrono::seconds(60);
        if (state_ == State::disconnected) until = std::min(until, next_connect_);
        // Connect completion arrives as an event; this only bounds a lost callback.
        if (state_ == State::connecting) until = std::min(until, now + std::chrono::milliseconds(500));
        if (discovery_.valid()) until = std::min(until, now + std::chrono::milliseconds(20));
        if (tasks_) until = std::min(until, tasks_->next_deadline());
        if (tasks_ && tasks_->awaiting_deliveries()) until = std::min(until, now + kQuietEventDelay);
        until = std::min(until, notify_.next_keepalive());
        // Up to 512 events per round, then the task path commits what they brought (group commit).
        int handled = 0, messages = 0;
        for (std::optional<Event> e = wait_event(until); e; e = ++handled < 512 ? poll_event() : std::nullopt) {
            messages += e->type == Event::message ? 1 : 0;
            if (!handle(*e)) return 0;
        }
        end_round(messages);
    }
    return 0;
}

}  // namespace

int run_daemon(const DaemonOptions& opt) {
    Daemon d(opt);
    return d.run();
}

}  // namespace cpn
