// prometheus_exporter.cpp: telemetry and agent state as Prometheus metric families, and the
// HTTP endpoint serving them (prometheus-cpp's Exposer over civetweb) when built with it.
#include "metrics/prometheus_exporter.hpp"

#include <cmath>
#include <mutex>
#include <set>
#include <sstream>

#if CPN_WITH_PROMETHEUS
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#endif

#if CPN_WITH_PROMETHEUS
#include <CivetServer.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#endif

namespace cpn::metrics {
namespace {

/* What a figure may be, from telemetry.schema.json: out of range means the reading is wrong,
 * so it is skipped like a missing one. */
enum class Range { any, non_negative, percent, fraction };

/* One figure of the message: its JSON key, the family it feeds, and what to divide it by for the
 * unit the name states (100: percent to ratio, 1000: milliseconds to seconds). A division, not a
 * multiplication by 0.01, so a ratio is the nearest double to what a scraper computes from the
 * MQTT message itself. */
struct Field {
    const char* key;
    const char* name;
    const char* help;
    Range range;
    double divisor;
};

constexpr Field kEnvelopeFields[] = {
    {"seq", "cpn_telemetry_seq", "seq of the latest telemetry message (the MQTT message of the same sample has it)",
     Range::non_negative, 1},
    {"timestamp_ms", "cpn_telemetry_timestamp_seconds", "When the latest telemetry sample was taken, Unix time",
     Range::non_negative, 1000},
    {"interval_s", "cpn_telemetry_interval_seconds", "Seconds between telemetry samples (telemetry.interval_s)",
     Range::non_negative, 1},
};

constexpr Field kNodeFields[] = {
    {"cpu_utilization_pct", "cpn_cpu_utilization_ratio",
     "CPU utilisation of the node over the last interval, all cores (0-1, from /proc/stat)", Range::percent, 100},
    {"memory_total_bytes", "cpn_memory_total_bytes", "Memory of the node (MemTotal)", Range::non_negative, 1},
    {"memory_used_bytes", "cpn_memory_used_bytes", "Memory in use (MemTotal - MemAvailable)", Range::non_negative, 1},
    {"memory_utilization_pct", "cpn_memory_utilization_ratio", "Memory in use as a share of the total (0-1)",
     Range::percent, 100},
    {"load1", "cpn_load1", "Load average over 1 minute", Range::any, 1},
    {"load5", "cpn_load5", "Load average over 5 minutes", Range::any, 1},
    {"load15", "cpn_load15", "Load average over 15 minutes", Range::any, 1},
};

constexpr Field kDeviceFields[] = {
    {"utilization_pct", "cpn_device_utilization_ratio", "Utilisation of the device (0-1)", Range::percent, 100},
    {"memory_used_bytes", "cpn_device_memory_used_bytes", "Device memory in use", Range::non_negative, 1},
    {"memory_total_bytes", "cpn_device_memory_total_bytes", "Device memory", Range::non_negative, 1},
    {"temperature_c", "cpn_device_temperature_celsius", "Temperature of the device", Range::any, 1},
    {"power_w", "cpn_device_power_watts", "Power drawn by the device", Range::non_negative, 1},
};

constexpr Field kCapacityDeviceFields[] = {
    {"l2", "cpn_device_available_capacity_score",
     "L2 capacity score of the device scaled by its free share (docs/capacity.md)", Range::non_negative, 1},
    {"free_fraction", "cpn_device_free_ratio",
     "Free share of the device (1 - utilisation) used to scale its capacity score; absent when unknown",
     Range::fraction, 1},
};

std::optional<double> figure(const nlohmann::json& object, const char* key, Range range, double divisor) {
    if (!object.is_object()) return std::nullopt;
    auto it = object.find(key);
    if (it == object.end() || !it->is_number()) return std::nullopt;  // null, strings, booleans
    const double v = it->get<double>();
    if (!std::isfinite(v)) return std::nullopt;
    switch (range) {
        case Range::any: break;
        case Range::non_negative:
            if (v < 0) return std::nullopt;
            break;
        case Range::percent:
            if (v < 0 || v > 100) return std::nullopt;
            break;
        case Range::fraction:
            if (v < 0 || v > 1) return std::nullopt;
            break;
    }
    return v / divisor;
}

std::string string_member(const nlohmann::json& object, const char* key) {
    if (!object.is_object()) return {};
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const nlohmann::json& member(const nlohmann::json& object, const char* key) {
    static const nlohmann::json kNull;
    if (!object.is_object()) return kNull;
    auto it = object.find(key);
    return it != object.end() ? *it : kNull;
}

Family make_family(const Field& f) { return Family{f.name, f.help, Family::Type::gauge, {}}; }

/* The families of `fields` for one object, each with `labels`, appended to `families` (which
 * holds one family per field, in the same order). */
template <size_t N>
void add_samples(const Field (&fields)[N], std::vector<Family>& families, const nlohmann::json& object,
                 const std::vector<std::pair<std::string, std::string>>& labels) {
    for (size_t i = 0; i < N; ++i)
        if (std::optional<double> v = figure(object, fields[i].key, fields[i].range, fields[i].divisor))
            families[i].samples.push_back(Sample{labels, *v});
}

template <size_t N>
std::vector<Family> families_of(const Field (&fields)[N]) {
    std::vector<Family> out;
    for (const Field& f : fields) out.push_back(make_family(f));
    return out;
}

void append_nonempty(std::vector<Family>& out, std::vector<Family>&& more) {
    for (Family& f : more)
        if (!f.samples.empty()) out.push_back(std::move(f));
}

}  // namespace

std::vector<Family> telemetry_families(const nlohmann::json& message) {
    std::vector<Family> out;
    if (!message.is_object()) return out;
    const std::pair<std::string, std::string> node{"node", string_member(message, "node_id")};

    std::vector<Family> envelope = families_of(kEnvelopeFields);
    add_samples(kEnvelopeFields, envelope, message, {node});
    append_nonempty(out, std::move(envelope));

    std::vector<Family> node_families = families_of(kNodeFields);
    add_samples(kNodeFields, node_families, member(message, "node"), {node});
    append_nonempty(out, std::move(node_families));

    std::vector<Family> device_families = families_of(kDeviceFields);
    const nlohmann::json& devices = member(message, "devices");
    if (devices.is_array()) {
        std::set<std::string> seen;
        for (const nlohmann::json& d : devices) {
            const std::string id = string_member(d, "id");
            if (id.empty() || !seen.insert(id).second) continue;
            add_samples(kDeviceFields, device_families, d, {node, {"device", id}});
        }
    }
    append_nonempty(out, std::move(device_families));

    const nlohmann::json& capacity = member(message, "available_capacity");
    Family total{"cpn_available_capacity_score",
                 "L2 capacity score of the node scaled by what is free now, the sum over its devices (docs/capacity.md)",
                 Family::Type::gauge, {}};
    if (std::optional<double> v = figure(capacity, "l2", Range::non_negative, 1)) total.samples.push_back({{node}, *v});
    std::vector<Family> capacity_families;
    capacity_families.push_back(std::move(total));
    std::vector<Family> per_device = families_of(kCapacityDeviceFields);
    const nlohmann::json& cap_devices = member(capacity, "devices");
    if (cap_devices.is_object())
        for (auto it = cap_devices.begin(); it != cap_devices.end(); ++it)
            if (!it.key().empty()) add_samples(kCapacityDeviceFields, per_device, it.value(), {node, {"device", it.key()}});
    for (Family& f : per_device) capacity_families.push_back(std::move(f));
    append_nonempty(out, std::move(capacity_families));
    return out;
}

std::vector<Family> agent_families(const AgentState& s) {
    using Type = Family::Type;
    const std::pair<std::string, std::string> node{"node", s.node_id};
    std::vector<Family> out;
    auto add = [&](const char* name, const char* help, Type type, double value) {
        out.push_back(Family{name, help, type, {Sample{{node}, value}}});
    };
    out.push_back(Family{"cpn_build_info", "Always 1; the agent's version and git revision as labels", Type::gauge,
                         {Sample{{node, {"version", s.version}, {"revision", s.revision}}, 1}}});
    add("cpn_mqtt_connected", "1 while the MQTT session to the broker is online (birth published), else 0",
        Type::gauge, s.mqtt_connected ? 1 : 0);
    add("cpn_bdseq", "Session counter of the current or latest connect attempt (the birth's bdseq)", Type::gauge,
        static_cast<double>(s.bdseq));
    if (s.outbox_buffered)
        add("cpn_outbox_buffered_messages", "Messages in the store-and-forward buffer waiting for the broker",
            Type::gauge, static_cast<double>(*s.outbox_buffered));
    if (s.outbox_dropped_total)
        add("cpn_outbox_dropped_total",
            "Telemetry messages dropped from the store-and-forward buffer by its caps since it was created",
            Type::counter, static_cast<double>(*s.outbox_dropped_total));
    if (s.tasks_queued)
        add("cpn_tasks_queued", "Tasks admitted and waiting for a device slot", Type::gauge,
            static_cast<double>(*s.tasks_queued));
    if (s.tasks_running)
        add("cpn_tasks_running", "Tasks running now", Type::gauge, static_cast<double>(*s.tasks_running));
    if (s.tasks_unhealthy_devices)
        add("cpn_tasks_unhealthy_devices", "Devices the task path has taken out of service after a fault",
            Type::gauge, static_cast<double>(*s.tasks_unhealthy_devices));
    return out;
}

#if CPN_WITH_PROMETHEUS

namespace {

prometheus::MetricFamily to_prometheus(const Family& f) {
    prometheus::MetricFamily out;
    out.name = f.name;
    out.help = f.help;
    out.type = f.type == Family::Type::counter ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge;
    for (const Sample& s : f.samples) {
        prometheus::ClientMetric m;
        for (const auto& [k, v] : s.labels) m.label.push_back({k, v});
        if (f.type == Family::Type::counter) m.counter.value = s.value;
        else m.gauge.value = s.value;
        out.metric.push_back(std::move(m));
    }
    return out;
}

std::vector<prometheus::MetricFamily> to_prometheus(const std::vector<Family>& families) {
    std::vector<prometheus::MetricFamily> out;
    out.reserve(families.size());
    for (const Family& f : families) out.push_back(to_prometheus(f));
    return out;
}

/* Holds the latest families; Collect() runs on the HTTP server's threads. */
class Collector : public prometheus::Collectable {
public:
    std::vector<prometheus::MetricFamily> Collect() const override {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<prometheus::MetricFamily> out = state_;
        out.insert(out.end(), telemetry_.begin(), telemetry_.end());
        return out;
    }
    void set_state(std::vector<prometheus::MetricFamily> f) {
        std::lock_guard<std::mutex> g(mu_);
        state_.swap(f);
    }
    void set_telemetry(std::vector<prometheus::MetricFamily> f) {
        std::lock_guard<std::mutex> g(mu_);
        telemetry_.swap(f);
    }

private:
    mutable std::mutex mu_;
    std::vector<prometheus::MetricFamily> state_, telemetry_;
};

/* civetweb's messages. While the server starts (on the caller's thread) they are kept, so a
 * bind failure is reported with civetweb's own reason ("cannot bind to 127.0.0.1:9464: 98
 * (Address already in use)") instead of the wrapper's generic exception; afterwards they go to
 * the debug log. Returning 1 keeps civetweb from printing them itself. */
thread_local std::string* t_start_log = nullptr;

int civet_log(const struct mg_connection*, const char* message) {
    if (t_start_log != nullptr) {
        if (!t_start_log->empty()) *t_start_log += "; ";
        *t_start_log += message ? message : "";
    } else {
        spdlog::debug("metrics: http server: {}", message ? message : "");
    }
    return 1;
}

/* One connection to the listener, closed at once: wakes civetweb's accept loop. */
void knock(const sockaddr_in& where) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    (void)::connect(fd, reinterpret_cast<const sockaddr*>(&where), sizeof where);
    ::close(fd);
}

}  // namespace

struct PrometheusExporter::Impl {
    std::shared_ptr<Collector> collector = std::make_shared<Collector>();
    std::unique_ptr<prometheus::Exposer> exposer;
    sockaddr_in listener{};  // where to knock at stop (the loopback address for 0.0.0.0)

    /* civetweb's accept loop sees its stop flag only between polls of 2 s, so stopping it
     * could take all of the daemon's 2 s budget for a clean stop. Knocking on the listener
     * while it stops wakes the loop at once: the stop takes milliseconds. */
    ~Impl() {
        if (!exposer) return;
        std::atomic<bool> stopped{false};
        std::thread knocker([&] {
            while (!stopped.load()) {
                knock(listener);
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        });
        exposer.reset();  // before the collector: no scrape outlives it
        stopped.store(true);
        knocker.join();
    }
};

Result<std::unique_ptr<PrometheusExporter>> PrometheusExporter::start(const std::string& listen) {
    auto impl = std::make_unique<Impl>();
    CivetCallbacks callbacks;  // zeroed by its constructor
    callbacks.log_message = civet_log;
    // Two threads serve scrapes; a client that stalls is cut off after 10 s rather than
    // holding one of them.
    std::vector<std::string> options = {"listening_ports", listen, "num_threads", "2", "request_timeout_ms", "10000"};
    std::string start_log;
    t_start_log = &start_log;
    try {
        impl->exposer = std::make_unique<prometheus::Exposer>(options, &callbacks);
    } catch (const std::exception& e) {
        t_start_log = nullptr;
        return Status(Code::unavailable,
                      "cannot serve metrics on " + listen + ": " + (start_log.empty() ? e.what() : start_log));
    }
    t_start_log = nullptr;
    impl->exposer->RegisterCollectable(impl->collector);
    const std::vector<int> ports = impl->exposer->GetListeningPorts();
    impl->listener.sin_family = AF_INET;
    impl->listener.sin_port = htons(static_cast<uint16_t>(ports.empty() ? 0 : ports.front()));
    const std::string host = listen.substr(0, listen.rfind(':'));
    if (::inet_pton(AF_INET, host.c_str(), &impl->listener.sin_addr) != 1 ||
        impl->listener.sin_addr.s_addr == htonl(INADDR_ANY))
        impl->listener.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return std::unique_ptr<PrometheusExporter>(new PrometheusExporter(std::move(impl)));
}

void PrometheusExporter::update_telemetry(const nlohmann::json& message) {
    impl_->collector->set_telemetry(to_prometheus(telemetry_families(message)));
}

void PrometheusExporter::update_state(const AgentState& state) {
    impl_->collector->set_state(to_prometheus(agent_families(state)));
}

int PrometheusExporter::port() const {
    std::vector<int> ports = impl_->exposer->GetListeningPorts();
    return ports.empty() ? 0 : ports.front();
}

std::string PrometheusExporter::render() const {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, impl_->collector->Collect());
    return out.str();
}

#else  // built without CPN_PROMETHEUS: nothing to serve; the configuration refuses enabling it

struct PrometheusExporter::Impl {};

Result<std::unique_ptr<PrometheusExporter>> PrometheusExporter::start(const std::string& listen) {
    return Status(Code::unsupported, "cannot serve metrics on " + listen +
                                         ": this cpn-agent was built without Prometheus support (CPN_PROMETHEUS)");
}
void PrometheusExporter::update_telemetry(const nlohmann::json&) {}
void PrometheusExporter::update_state(const AgentState&) {}
int PrometheusExporter::port() const { return 0; }
std::string PrometheusExporter::render() const { return {}; }

#endif

PrometheusExporter::PrometheusExporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PrometheusExporter::~PrometheusExporter() = default;

}  // namespace cpn::metrics
