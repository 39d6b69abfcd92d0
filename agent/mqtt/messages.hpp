// messages.hpp: the MQTT topics and JSON payloads of docs/protocol.md. Every payload carries
// schema_version, type, node_id and timestamp_ms and validates against docs/schemas/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "inventory/device.hpp"

namespace cpn::mqtt {

inline constexpr int kSchemaVersion = 1;

/* The topics of one node: everything it publishes is under cpn/v1/nodes/<node>/, so a broker
 * ACL of `pattern write cpn/v1/nodes/%c/#` confines a node to its own prefix. */
struct Topics {
    explicit Topics(const std::string& node_id);
    std::string prefix;     // cpn/v1/nodes/<node>
    std::string state;      // retained: birth / death certificates
    std::string inventory;  // retained
    std::string capacity;   // retained
    std::string telemetry;
    std::string cmd;        // subscribed
    std::string cmd_ack;
};

int64_t now_ms();

struct StoreSummary {
    uint64_t buffered = 0, dropped_since_last_birth = 0, dropped_total = 0;
};

struct BirthInfo {
    std::string node_id, site, agent_version, protocol, broker;
    int64_t bdseq = 0;
    int telemetry_interval_s = 10;
    std::optional<StoreSummary> store;  // nullopt: store-and-forward disabled
};

nlohmann::json birth(const BirthInfo& b);
/* reason: "connection_lost" (the MQTT Will) or "shutdown". */
nlohmann::json death(const std::string& node_id, int64_t bdseq, const std::string& reason);
nlohmann::json inventory(const std::string& node_id, int64_t bdseq, const Inventory& inv);
/* Until the benchmark issue lands there is no capacity record: status not_measured. */
nlohmann::json capacity_not_measured(const std::string& node_id, int64_t bdseq);
/* status "measured": the capacity record (L0, L1, L2, rooflines; docs/capacity.md). */
nlohmann::json capacity_measured(const std::string& node_id, int64_t bdseq, const nlohmann::json& record);
/* `sample` holds the "node" and "devices" members from the telemetry sampler. */
nlohmann::json telemetry(const std::string& node_id, int64_t seq, int64_t bdseq, int interval_s,
                         const nlohmann::json& sample);

/* Command acknowledgement codes (docs/schemas/command-ack.schema.json). */
struct Ack {
    std::optional<std::string> id, command;
    std::string code = "ok";  // ok, malformed, unsupported_schema_version, unknown_command,
                              // invalid_params, unavailable, internal
    std::string message;
    nlohmann::json data;      // null: omitted
};
nlohmann::json command_ack(const std::string& node_id, const Ack& a);

}  // namespace cpn::mqtt
