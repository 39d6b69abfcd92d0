// prometheus_exporter.hpp: the optional Prometheus scrape endpoint (docs/metrics.md). It serves
// the same figures as the MQTT telemetry, plus the agent's own state, so a node can be watched
// while its broker is down. Built only with CPN_PROMETHEUS (prometheus-cpp); the translation from
// a telemetry message to metric families is pure and always built, so it is tested everywhere.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/revision.hpp"
#include "core/status.hpp"

namespace cpn::metrics {

/* One metric family in the shape of Prometheus' data model (prometheus::MetricFamily without
 * the library): a name, its HELP text, its type and one sample per label set. */
struct Sample {
    std::vector<std::pair<std::string, std::string>> labels;  // in exposition order
    double value = 0;
};
struct Family {
    enum class Type { gauge, counter };
    std::string name;
    std::string help;
    Type type = Type::gauge;
    std::vector<Sample> samples;
};

/* The families of one telemetry message as the daemon publishes it (docs/schemas/
 * telemetry.schema.json, with available_capacity when capacity is measured). Every sample has
 * the label node (the message's node_id); per-device ones also device (the inventory id).
 * Percentages become ratios (0-1). A figure that is absent, not a number (null, a string),
 * not finite or outside the schema's range is skipped, never exported as 0; a family left
 * without samples is left out; a device id seen twice keeps its first entry (Prometheus
 * rejects duplicate series). Pure; never throws on a malformed message. */
std::vector<Family> telemetry_families(const nlohmann::json& message);

/* The agent's own state, taken by the daemon when it samples and when the connection changes. */
struct AgentState {
    std::string node_id;
    bool mqtt_connected = false;
    int64_t bdseq = 0;                            // the current (or latest) session
    std::optional<uint64_t> outbox_buffered;      // absent: store-and-forward disabled
    std::optional<uint64_t> outbox_dropped_total;
    std::optional<int64_t> tasks_queued;          // absent: the task path is not open
    std::optional<int64_t> tasks_running;
    std::optional<int64_t> tasks_unhealthy_devices;
    std::string version = CPN_VERSION;            // cpn_build_info labels
    std::string revision = cpn::git_revision();
};
std::vector<Family> agent_families(const AgentState& state);

/* Whether this binary was built with the exporter (CPN_PROMETHEUS). */
constexpr bool prometheus_built() { return CPN_WITH_PROMETHEUS != 0; }

/* The HTTP endpoint: GET /metrics on `listen` ("host:port", validated by the configuration).
 * Scrapes are served by the HTTP server's own threads; the update calls only swap the families
 * under a lock, so a scrape sees one whole sample, never half of two. */
class PrometheusExporter {
public:
    /* Binds and starts serving. Fails (naming the address and the reason, e.g. the port is in
     * use) rather than throwing; unsupported in a build without CPN_PROMETHEUS. */
    static Result<std::unique_ptr<PrometheusExporter>> start(const std::string& listen);
    ~PrometheusExporter();
    PrometheusExporter(const PrometheusExporter&) = delete;
    PrometheusExporter& operator=(const PrometheusExporter&) = delete;

    /* Replaces the telemetry families with those of `message` (see telemetry_families). */
    void update_telemetry(const nlohmann::json& message);
    /* Replaces the agent-state families. */
    void update_state(const AgentState& state);
    /* The port bound (useful when `listen` asked for port 0); 0 when unknown. */
    int port() const;

    /* The text exposition format of what a scrape returns now (tests, debugging). */
    std::string render() const;

private:
    struct Impl;
    explicit PrometheusExporter(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace cpn::metrics
