// metrics_test.cpp: the Prometheus exporter (agent/metrics): telemetry messages and agent state
// to metric families (names, labels, units, what is skipped), the families documented in
// docs/metrics.md, and, in a build with CPN_PROMETHEUS, the HTTP endpoint itself.
#include "metrics/prometheus_exporter.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "mqtt/messages.hpp"
#include "telemetry_sampler.hpp"

namespace cpn::metrics {
namespace {

using json = nlohmann::json;
using Labels = std::vector<std::pair<std::string, std::string>>;

const Family* find(const std::vector<Family>& fs, const std::string& name) {
    for (const Family& f : fs)
        if (f.name == name) return &f;
    return nullptr;
}

/* The value of `name` with exactly `labels`; NaN when there is no such sample. */
double value(const std::vector<Family>& fs, const std::string& name, const Labels& labels) {
    const Family* f = find(fs, name);
    if (f == nullptr) return std::numeric_limits<double>::quiet_NaN();
    for (const Sample& s : f->samples)
        if (s.labels == labels) return s.value;
    return std::numeric_limits<double>::quiet_NaN();
}

Labels node(const std::string& n = "edge-1") { return {{"node", n}}; }
Labels dev(const std::string& d, const std::string& n = "edge-1") { return {{"node", n}, {"device", d}}; }

/* A message as Daemon::produce_telemetry publishes it, with every figure present. */
json full_message() {
    return json::parse(R"({
      "schema_version": 1, "type": "telemetry", "node_id": "edge-1", "timestamp_ms": 1700000000123,
      "seq": 42, "bdseq": 7, "historical": false, "interval_s": 10,
      "node": {"cpu_utilization_pct": 37.5, "memory_total_bytes": 16709853184, "memory_used_bytes": 6596423680,
               "memory_utilization_pct": 39.48, "load1": 0.52, "load5": 0.58, "load15": 1.25},
      "devices": [
        {"id": "cpu", "utilization_pct": 37.5, "power_w": 80.0, "temperature_c": 51.0,
         "sources": {"utilization_pct": "procfs", "power_w": "rapl", "temperature_c": "hwmon"}},
        {"id": "pci-0000:03:00.0", "utilization_pct": 12.0, "memory_used_bytes": 1073741824,
         "memory_total_bytes": 17163091968, "temperature_c": -5.5, "power_w": 33.25,
         "sources": {"utilization_pct": "drm"}}
      ],
      "available_capacity": {"l2": 3.125,
                             "devices": {"cpu": {"l2": 0.625, "free_fraction": 0.625},
                                         "pci-0000:03:00.0": {"l2": 2.5}}}
    })");
}

TEST(Metrics, FullMessageEveryFigure) {
    const std::vector<Family> fs = telemetry_families(full_message());
    EXPECT_DOUBLE_EQ(value(fs, "cpn_telemetry_seq", node()), 42);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_telemetry_timestamp_seconds", node()), 1700000000.123);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_telemetry_interval_seconds", node()), 10);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_cpu_utilization_ratio", node()), 0.375);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_memory_total_bytes", node()), 16709853184.0);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_memory_used_bytes", node()), 6596423680.0);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_memory_utilization_ratio", node()), 0.3948);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_load1", node()), 0.52);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_load5", node()), 0.58);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_load15", node()), 1.25);

    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_utilization_ratio", dev("cpu")), 0.375);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_power_watts", dev("cpu")), 80.0);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_temperature_celsius", dev("cpu")), 51.0);
    const std::string gpu = "pci-0000:03:00.0";
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_utilization_ratio", dev(gpu)), 0.12);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_memory_used_bytes", dev(gpu)), 1073741824.0);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_memory_total_bytes", dev(gpu)), 17163091968.0);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_temperature_celsius", dev(gpu)), -5.5);  // below zero is a reading
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_power_watts", dev(gpu)), 33.25);
    // The CPU reports no memory of its own: no sample, not 0.
    EXPECT_EQ(find(fs, "cpn_device_memory_used_bytes")->samples.size(), 1u);

    EXPECT_DOUBLE_EQ(value(fs, "cpn_available_capacity_score", node()), 3.125);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_available_capacity_score", dev("cpu")), 0.625);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_available_capacity_score", dev(gpu)), 2.5);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_free_ratio", dev("cpu")), 0.625);
    EXPECT_EQ(find(fs, "cpn_device_free_ratio")->samples.size(), 1u);

    // Nothing else: bdseq and historical are the agent's state, sources are not figures.
    std::set<std::string> names;
    for (const Family& f : fs) names.insert(f.name);
    EXPECT_EQ(names, (std::set<std::string>{
                         "cpn_telemetry_seq", "cpn_telemetry_timestamp_seconds", "cpn_telemetry_interval_seconds",
                         "cpn_cpu_utilization_ratio", "cpn_memory_total_bytes", "cpn_memory_used_bytes",
                         "cpn_memory_utilization_ratio", "cpn_load1", "cpn_load5", "cpn_load15",
                         "cpn_device_utilization_ratio", "cpn_device_memory_used_bytes",
                         "cpn_device_memory_total_bytes", "cpn_device_temperature_celsius", "cpn_device_power_watts",
                         "cpn_available_capacity_score", "cpn_device_available_capacity_score",
                         "cpn_device_free_ratio"}));
    for (const Family& f : fs) {
        EXPECT_EQ(f.type, Family::Type::gauge) << f.name;
        EXPECT_FALSE(f.help.empty()) << f.name;
    }
}

TEST(Metrics, MissingFiguresGiveNoFamily) {
    // What a VM without sensors sends before capacity is measured: memory and load only.
    json m = json::parse(R"({"node_id": "vm-3", "seq": 1, "interval_s": 10,
                             "node": {"memory_total_bytes": 2147483648, "load1": 0.0}, "devices": []})");
    std::vector<Family> fs = telemetry_families(m);
    std::set<std::string> names;
    for (const Family& f : fs) names.insert(f.name);
    EXPECT_EQ(names, (std::set<std::string>{"cpn_telemetry_seq", "cpn_telemetry_interval_seconds",
                                            "cpn_memory_total_bytes", "cpn_load1"}));
    EXPECT_DOUBLE_EQ(value(fs, "cpn_load1", node("vm-3")), 0.0);  // a real 0 stays

    // No node, no devices, no envelope at all.
    EXPECT_TRUE(telemetry_families(json::object()).empty());
    EXPECT_TRUE(telemetry_families(json::parse(R"({"node": {}, "devices": [{"id": "cpu"}]})")).empty());
    // Not a message.
    EXPECT_TRUE(telemetry_families(json()).empty());
    EXPECT_TRUE(telemetry_families(json::array({1, 2})).empty());
    EXPECT_TRUE(telemetry_families(json("telemetry")).empty());
}

TEST(Metrics, OddValuesAreSkippedNotExported) {
    json m = full_message();
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    m["seq"] = "42";
    m["timestamp_ms"] = -1;
    m["node"]["cpu_utilization_pct"] = nan;
    m["node"]["memory_total_bytes"] = nullptr;
    m["node"]["memory_used_bytes"] = -4096;
    m["node"]["memory_utilization_pct"] = 100.5;
    m["node"]["load1"] = inf;
    m["node"]["load5"] = true;
    m["node"]["load15"] = json::object();
    m["devices"][0]["utilization_pct"] = -inf;
    m["devices"][0]["power_w"] = -3.0;
    m["devices"][0]["temperature_c"] = "51";
    m["devices"][1]["memory_total_bytes"] = json::array({1});
    m["devices"].push_back({{"utilization_pct", 50.0}});                      // no id
    m["devices"].push_back({{"id", 7}, {"utilization_pct", 50.0}});           // id not a string
    m["devices"].push_back({{"id", ""}, {"utilization_pct", 50.0}});          // empty id
    m["devices"].push_back({{"id", "pci-0000:03:00.0"}, {"power_w", 999.0}}); // duplicate: first wins
    m["devices"].push_back("not an object");
    m["devices"].push_back(nullptr);
    m["available_capacity"]["l2"] = nan;
    m["available_capacity"]["devices"]["cpu"]["free_fraction"] = 1.5;
    m["available_capacity"]["devices"][""] = {{"l2", 1.0}};
    m["available_capacity"]["devices"]["odd"] = "not an object";
    std::vector<Family> fs;
    ASSERT_NO_THROW(fs = telemetry_families(m));

    for (const char* gone : {"cpn_telemetry_seq", "cpn_telemetry_timestamp_seconds", "cpn_cpu_utilization_ratio",
                             "cpn_memory_total_bytes", "cpn_memory_used_bytes", "cpn_memory_utilization_ratio",
                             "cpn_load1", "cpn_load5", "cpn_load15", "cpn_available_capacity_score",
                             "cpn_device_free_ratio"})
        EXPECT_EQ(find(fs, gone), nullptr) << gone;
    const std::string gpu = "pci-0000:03:00.0";
    // Each device keeps what was good about it.
    EXPECT_TRUE(std::isnan(value(fs, "cpn_device_utilization_ratio", dev("cpu"))));
    EXPECT_TRUE(std::isnan(value(fs, "cpn_device_power_watts", dev("cpu"))));
    EXPECT_TRUE(std::isnan(value(fs, "cpn_device_temperature_celsius", dev("cpu"))));
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_utilization_ratio", dev(gpu)), 0.12);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_power_watts", dev(gpu)), 33.25);
    EXPECT_EQ(find(fs, "cpn_device_power_watts")->samples.size(), 1u);
    EXPECT_EQ(find(fs, "cpn_device_memory_total_bytes"), nullptr);
    EXPECT_EQ(find(fs, "cpn_device_utilization_ratio")->samples.size(), 1u);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_device_available_capacity_score", dev("cpu")), 0.625);
    EXPECT_EQ(find(fs, "cpn_device_available_capacity_score")->samples.size(), 2u);
    for (const Family& f : fs)
        for (const Sample& s : f.samples) EXPECT_TRUE(std::isfinite(s.value)) << f.name;

    // Members of the wrong shape altogether.
    json w = json::parse(R"({"node_id": ["x"], "seq": 3, "node": [1, 2], "devices": {"id": "cpu"},
                             "available_capacity": {"l2": 1.0, "devices": [1]}})");
    ASSERT_NO_THROW(fs = telemetry_families(w));
    EXPECT_DOUBLE_EQ(value(fs, "cpn_telemetry_seq", {{"node", ""}}), 3);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_available_capacity_score", {{"node", ""}}), 1.0);
    EXPECT_EQ(fs.size(), 2u);
}

/* Every figure the sampler produces from a recorded machine reaches a family, with the value of
 * the MQTT message: a figure added to the sampler without a metric fails here. */
TEST(Metrics, EverySamplerFigureIsExported) {
    const std::string root = std::string(CPN_FIXTURES_DIR) + "/telemetry/workstation";
    telemetry::TelemetrySampler sampler(root + "/proc", root + "/sys",
                                        {{"cpu", "", true}, {"pci-0000:03:00.0", "0000:03:00.0", false},
                                         {"pci-0000:0a:00.0", "0000:0a:00.0", false}});
    const json msg = mqtt::telemetry("ws-1", 5, 2, 10, sampler.sample());
    const std::vector<Family> fs = telemetry_families(msg);
    const std::map<std::string, std::pair<std::string, double>> node_map = {
        {"cpu_utilization_pct", {"cpn_cpu_utilization_ratio", 100}},
        {"memory_total_bytes", {"cpn_memory_total_bytes", 1}},
        {"memory_used_bytes", {"cpn_memory_used_bytes", 1}},
        {"memory_utilization_pct", {"cpn_memory_utilization_ratio", 100}},
        {"load1", {"cpn_load1", 1}},
        {"load5", {"cpn_load5", 1}},
        {"load15", {"cpn_load15", 1}}};
    const std::map<std::string, std::pair<std::string, double>> device_map = {
        {"utilization_pct", {"cpn_device_utilization_ratio", 100}},
        {"memory_used_bytes", {"cpn_device_memory_used_bytes", 1}},
        {"memory_total_bytes", {"cpn_device_memory_total_bytes", 1}},
        {"temperature_c", {"cpn_device_temperature_celsius", 1}},
        {"power_w", {"cpn_device_power_watts", 1}}};
    size_t checked = 0;
    for (const auto& [k, v] : msg["node"].items()) {
        auto it = node_map.find(k);
        ASSERT_NE(it, node_map.end()) << "node figure " << k << " has no metric";
        EXPECT_DOUBLE_EQ(value(fs, it->second.first, node("ws-1")), v.get<double>() / it->second.second) << k;
        ++checked;
    }
    ASSERT_FALSE(msg["devices"].empty()) << msg.dump();
    for (const json& d : msg["devices"])
        for (const auto& [k, v] : d.items()) {
            if (k == "id" || k == "sources") continue;
            auto it = device_map.find(k);
            ASSERT_NE(it, device_map.end()) << "device figure " << k << " has no metric";
            EXPECT_DOUBLE_EQ(value(fs, it->second.first, dev(d["id"].get<std::string>(), "ws-1")),
                             v.get<double>() / it->second.second)
                << d["id"] << " " << k;
            ++checked;
        }
    EXPECT_GE(checked, 8u) << msg.dump();
}

TEST(Metrics, AgentState) {
    AgentState s;
    s.node_id = "edge-1";
    s.mqtt_connected = true;
    s.bdseq = 12;
    s.outbox_buffered = 3;
    s.outbox_dropped_total = 9;
    s.tasks_queued = 4;
    s.tasks_running = 2;
    s.tasks_unhealthy_devices = 0;
    s.version = "0.1.0";
    s.revision = "abc123";
    std::vector<Family> fs = agent_families(s);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_build_info", {{"node", "edge-1"}, {"version", "0.1.0"}, {"revision", "abc123"}}),
                     1);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_mqtt_connected", node()), 1);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_bdseq", node()), 12);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_outbox_buffered_messages", node()), 3);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_outbox_dropped_total", node()), 9);
    EXPECT_EQ(find(fs, "cpn_outbox_dropped_total")->type, Family::Type::counter);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_tasks_queued", node()), 4);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_tasks_running", node()), 2);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_tasks_unhealthy_devices", node()), 0);
    EXPECT_EQ(fs.size(), 8u);

    // Store disabled, task path not open, offline: those families are absent, not 0.
    AgentState bare;
    bare.node_id = "edge-1";
    fs = agent_families(bare);
    std::set<std::string> names;
    for (const Family& f : fs) names.insert(f.name);
    EXPECT_EQ(names, (std::set<std::string>{"cpn_build_info", "cpn_mqtt_connected", "cpn_bdseq"}));
    EXPECT_DOUBLE_EQ(value(fs, "cpn_mqtt_connected", node()), 0);
    EXPECT_DOUBLE_EQ(value(fs, "cpn_build_info", {{"node", "edge-1"}, {"version", CPN_VERSION},
                                                  {"revision", cpn::git_revision()}}),
                     1);
}

/* Names and labels Prometheus accepts, no family twice, no series twice within a family; and
 * every family is documented in docs/metrics.md. */
TEST(Metrics, NamesValidUniqueAndDocumented) {
    AgentState s;
    s.node_id = "edge-1";
    s.outbox_buffered = 0;
    s.outbox_dropped_total = 0;
    s.tasks_queued = s.tasks_running = s.tasks_unhealthy_devices = 0;
    std::vector<Family> fs = agent_families(s);
    for (Family& f : telemetry_families(full_message())) fs.push_back(std::move(f));

    std::ifstream in(std::string(CPN_SOURCE_DIR) + "/docs/metrics.md");
    ASSERT_TRUE(in) << "docs/metrics.md";
    std::stringstream doc;
    doc << in.rdbuf();

    const std::regex name_re("cpn_[a-z0-9_]*[a-z0-9]"), label_re("[a-zA-Z_][a-zA-Z0-9_]*");
    std::set<std::string> names;
    for (const Family& f : fs) {
        EXPECT_TRUE(std::regex_match(f.name, name_re)) << f.name;
        EXPECT_TRUE(names.insert(f.name).second) << "family twice: " << f.name;
        EXPECT_EQ(f.type == Family::Type::counter, f.name.ends_with("_total")) << f.name;
        EXPECT_NE(doc.str().find("`" + f.name + "`"), std::string::npos) << f.name << " is not in docs/metrics.md";
        std::set<Labels> series;
        for (const Sample& smp : f.samples) {
            EXPECT_TRUE(series.insert(smp.labels).second) << "series twice in " << f.name;
            ASSERT_FALSE(smp.labels.empty());
            EXPECT_EQ(smp.labels.front().first, "node") << f.name;
            for (const auto& [k, v] : smp.labels) EXPECT_TRUE(std::regex_match(k, label_re)) << k;
        }
    }
    EXPECT_EQ(names.size(), 26u);
}

#if CPN_WITH_PROMETHEUS

/* GET `path` from 127.0.0.1:port; the whole response, headers included ("" on failure). */
std::string http_get(int port, const std::string& path) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return {};
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string out;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
            // Up to the end of the body by its Content-Length: the server may linger before it
            // closes the connection.
            char buf[4096];
            for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) {
                out.append(buf, static_cast<size_t>(n));
                const size_t head = out.find("\r\n\r\n");
                const size_t cl = out.find("Content-Length: ");
                if (head != std::string::npos && cl != std::string::npos && cl < head &&
                    out.size() >= head + 4 + std::stoul(out.substr(cl + 16)))
                    break;
            }
        }
    }
    ::close(fd);
    return out;
}

/* A loopback port some other socket is listening on, held while the object lives. */
class BusyPort {
public:
    BusyPort() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd_, 1) == 0 &&
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
            port_ = ntohs(a.sin_port);
    }
    ~BusyPort() { ::close(fd_); }
    BusyPort(const BusyPort&) = delete;
    BusyPort& operator=(const BusyPort&) = delete;
    int port() const { return port_; }

private:
    int fd_ = -1;
    int port_ = 0;
};

TEST(MetricsEndpoint, ServesTheLatestSample) {
    Result<std::unique_ptr<PrometheusExporter>> e = PrometheusExporter::start("127.0.0.1:0");
    ASSERT_TRUE(e.ok()) << e.status().message();
    PrometheusExporter& x = *e.value();
    ASSERT_GT(x.port(), 0);
    AgentState s;
    s.node_id = "edge-1";
    s.mqtt_connected = false;
    s.outbox_buffered = 17;
    x.update_state(s);
    x.update_telemetry(full_message());

    const std::string r = http_get(x.port(), "/metrics");
    ASSERT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r.substr(0, 200);
    for (const char* line : {"cpn_memory_total_bytes{node=\"edge-1\"} 16709853184\n",
                             "cpn_cpu_utilization_ratio{node=\"edge-1\"} 0.375\n",
                             "cpn_device_temperature_celsius{node=\"edge-1\",device=\"pci-0000:03:00.0\"} -5.5\n",
                             "cpn_mqtt_connected{node=\"edge-1\"} 0\n",
                             "cpn_outbox_buffered_messages{node=\"edge-1\"} 17\n",
                             "# TYPE cpn_device_power_watts gauge\n",
                             "# HELP cpn_memory_used_bytes Memory in use (MemTotal - MemAvailable)\n"})
        EXPECT_NE(r.find(line), std::string::npos) << "missing: " << line << "in\n" << r;
    EXPECT_NE(x.render().find("cpn_telemetry_seq{node=\"edge-1\"} 42\n"), std::string::npos) << x.render();

    // The next sample replaces the last one whole: a device that is gone is gone.
    json next = full_message();
    next["seq"] = 43;
    next["devices"].erase(1);
    x.update_telemetry(next);
    const std::string r2 = http_get(x.port(), "/metrics");
    EXPECT_NE(r2.find("cpn_telemetry_seq{node=\"edge-1\"} 43\n"), std::string::npos);
    EXPECT_EQ(r2.find("pci-0000:03:00.0\"} 33.25"), std::string::npos);
    EXPECT_EQ(r2.find("cpn_device_power_watts{node=\"edge-1\",device=\"pci-0000:03:00.0\"}"), std::string::npos) << r2;
}

/* The daemon has 2 s for a clean stop; civetweb alone may take 2 s to notice it should stop. */
TEST(MetricsEndpoint, StopsQuickly) {
    for (const char* listen : {"127.0.0.1:0", "0.0.0.0:0"}) {
        Result<std::unique_ptr<PrometheusExporter>> e = PrometheusExporter::start(listen);
        ASSERT_TRUE(e.ok()) << e.status().message();
        (void)http_get(e.value()->port(), "/metrics");
        const auto t0 = std::chrono::steady_clock::now();
        e.value().reset();
        EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500)) << listen;
    }
}

TEST(MetricsEndpoint, PortInUseIsAnErrorNamingTheAddress) {
    BusyPort busy;
    ASSERT_GT(busy.port(), 0);
    const std::string addr = "127.0.0.1:" + std::to_string(busy.port());
    Result<std::unique_ptr<PrometheusExporter>> e = PrometheusExporter::start(addr);
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.status().code(), Code::unavailable);
    EXPECT_NE(e.status().message().find("cannot serve metrics on " + addr + ": "), std::string::npos)
        << e.status().message();
    EXPECT_NE(e.status().message().find("in use"), std::string::npos) << e.status().message();
}

TEST(MetricsEndpoint, UnusableAddressIsAnError) {
    Result<std::unique_ptr<PrometheusExporter>> e = PrometheusExporter::start("192.0.2.1:9464");  // not ours
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.status().message().find("cannot serve metrics on 192.0.2.1:9464: "), std::string::npos)
        << e.status().message();
}

#else

TEST(MetricsEndpoint, NotBuilt) {
    Result<std::unique_ptr<PrometheusExporter>> e = PrometheusExporter::start("127.0.0.1:9464");
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.status().code(), Code::unsupported);
    EXPECT_NE(e.status().message().find("built without Prometheus support"), std::string::npos);
}

#endif

}  // namespace
}  // namespace cpn::metrics
