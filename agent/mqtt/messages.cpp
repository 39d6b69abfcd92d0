#include "mqtt/messages.hpp"

#include <chrono>

namespace cpn::mqtt {

Topics::Topics(const std::string& node_id)
    : prefix("cpn/v1/nodes/" + node_id),
      state(prefix + "/state"),
      inventory(prefix + "/inventory"),
      capacity(prefix + "/capacity"),
      telemetry(prefix + "/telemetry"),
      cmd(prefix + "/cmd"),
      cmd_ack(prefix + "/cmd/ack") {}

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

namespace {
nlohmann::json envelope(const char* type, const std::string& node_id) {
    return nlohmann::json{{"schema_version", kSchemaVersion},
                          {"type", type},
                          {"node_id", node_id},
                          {"timestamp_ms", now_ms()}};
}
}  // namespace

nlohmann::json birth(const BirthInfo& b) {
    nlohmann::json j = envelope("birth", b.node_id);
    j["state"] = "online";
    j["bdseq"] = b.bdseq;
    j["site"] = b.site;
    j["agent_version"] = b.agent_version;
    j["protocol"] = b.protocol;
    j["broker"] = b.broker;
    j["telemetry_interval_s"] = b.telemetry_interval_s;
    if (b.store)
        j["store"] = {{"buffered", b.store->buffered},
                      {"dropped_since_last_birth", b.store->dropped_since_last_birth},
                      {"dropped_total", b.store->dropped_total}};
    else
        j["store"] = nullptr;
    j["commands"] = {"rebirth", "rebenchmark", "set_telemetry_interval", "set_normalization"};
    return j;
}

nlohmann::json death(const std::string& node_id, int64_t bdseq, const std::string& reason) {
    nlohmann::json j = envelope("death", node_id);
    j["state"] = "offline";
    j["bdseq"] = bdseq;
    j["reason"] = reason;
    return j;
}

nlohmann::json inventory(const std::string& node_id, int64_t bdseq, const Inventory& inv) {
    nlohmann::json j = envelope("inventory", node_id);
    j["bdseq"] = bdseq;
    j["inventory"] = inv;
    return j;
}

nlohmann::json capacity_not_measured(const std::string& node_id, int64_t bdseq) {
    nlohmann::json j = envelope("capacity", node_id);
    j["bdseq"] = bdseq;
    j["status"] = "not_measured";
    j["reason"] = "no benchmark has run on this node yet";
    j["capacity"] = nullptr;
    return j;
}

nlohmann::json capacity_measured(const std::string& node_id, int64_t bdseq, const nlohmann::json& record) {
    nlohmann::json j = envelope("capacity", node_id);
    j["bdseq"] = bdseq;
    j["status"] = "measured";
    j["reason"] = "";
    j["capacity"] = record;
    return j;
}

nlohmann::json telemetry(const std::string& node_id, int64_t seq, int64_t bdseq, int interval_s,
                         const nlohmann::json& sample) {
    nlohmann::json j = envelope("telemetry", node_id);
    j["seq"] = seq;
    j["bdseq"] = bdseq;
    j["historical"] = false;
    j["interval_s"] = interval_s;
    j["node"] = sample.contains("node") ? sample["node"] : nlohmann::json::object();
    j["devices"] = sample.contains("devices") ? sample["devices"] : nlohmann::json::array();
    return j;
}

nlohmann::json command_ack(const std::string& node_id, const Ack& a) {
    nlohmann::json j = envelope("command_ack", node_id);
    j["id"] = a.id ? nlohmann::json(*a.id) : nlohmann::json(nullptr);
    j["command"] = a.command ? nlohmann::json(*a.command) : nlohmann::json(nullptr);
    j["result"] = a.code == "ok" ? "ok" : "error";
    j["code"] = a.code;
    j["message"] = a.message;
    if (!a.data.is_null()) j["data"] = a.data;
    return j;
}

}  // namespace cpn::mqtt
