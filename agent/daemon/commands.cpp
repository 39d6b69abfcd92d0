#include "daemon/commands.hpp"

#include <nlohmann/json.hpp>

#include "bench/capacity.hpp"

namespace cpn {

ParsedCommand parse_command(const std::string& payload) {
    ParsedCommand p;
    auto fail = [&](const std::string& code, const std::string& msg) {
        p.kind = CommandKind::invalid;
        p.ack.code = code;
        p.ack.message = msg;
        return p;
    };
    if (payload.size() > kMaxCommandBytes)
        return fail("malformed", "command is " + std::to_string(payload.size()) +
                                     " bytes; the limit is " + std::to_string(kMaxCommandBytes));
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(payload);
    } catch (const nlohmann::json::exception& e) {
        // parse_error, and out_of_range for a number past double's range ("1e999"): before
        // this caught only the first, such a command terminated the agent (found by tests/fuzz).
        return fail("malformed", std::string("command is not valid JSON: ") + e.what());
    }
    if (!j.is_object()) return fail("malformed", "command must be a JSON object, got " + std::string(j.type_name()));
    // Read the id first, so even a bad command's ack can be matched by the sender.
    if (j.contains("id")) {
        if (!j["id"].is_string() || j["id"].get<std::string>().empty() || j["id"].get<std::string>().size() > 128)
            return fail("malformed", "id must be a string of 1 to 128 characters");
        p.ack.id = j["id"].get<std::string>();
    }
    if (j.contains("command") && j["command"].is_string()) p.ack.command = j["command"].get<std::string>();
    if (!j.contains("schema_version") || !j["schema_version"].is_number_integer())
        return fail("malformed", "schema_version (an integer) is missing");
    if (j["schema_version"].get<int64_t>() != mqtt::kSchemaVersion)
        return fail("unsupported_schema_version",
                    "schema_version " + j["schema_version"].dump() + " is not supported; this agent speaks " +
                        std::to_string(mqtt::kSchemaVersion));
    if (!p.ack.id) return fail("malformed", "id is missing");
    if (!j.contains("command") || !j["command"].is_string()) return fail("malformed", "command (a string) is missing");
    for (const auto& [k, v] : j.items()) {
        (void)v;
        if (k != "schema_version" && k != "id" && k != "command" && k != "params")
            return fail("malformed", "unknown field '" + k + "'");
    }
    if (j.contains("params") && !j["params"].is_object()) return fail("invalid_params", "params must be an object");
    const nlohmann::json params = j.value("params", nlohmann::json::object());
    const std::string cmd = j["command"].get<std::string>();

    if (cmd == "rebirth") {
        if (!params.empty()) return fail("invalid_params", cmd + " takes no params");
        p.kind = CommandKind::rebirth;
        p.ack.code = "ok";
        return p;
    }
    if (cmd == "rebenchmark") {
        for (const auto& [k, v] : params.items()) {
            if (k == "mode") {
                if (!v.is_string() || (v.get<std::string>() != "quick" && v.get<std::string>() != "full"))
                    return fail("invalid_params", "params.mode must be \"quick\" or \"full\", got " + v.dump());
                p.bench_mode = v.get<std::string>();
            } else if (k == "devices") {
                if (!v.is_array() || v.size() > 256)
                    return fail("invalid_params", "params.devices must be a list of at most 256 device ids");
                for (const auto& d : v) {
                    if (!d.is_string() || d.get<std::string>().empty() || d.get<std::string>().size() > 128)
                        return fail("invalid_params", "params.devices: every entry must be a device id string, got " + d.dump());
                    p.devices.push_back(d.get<std::string>());
                }
            } else {
                return fail("invalid_params", "unknown parameter '" + k + "' (known: mode, devices)");
            }
        }
        p.kind = CommandKind::rebenchmark;
        p.ack.code = "ok";
        return p;
    }
    if (cmd == "set_normalization") {
        if (params.empty())
            return fail("invalid_params", "params must hold the normalisation: reference, weights, task_classes (docs/capacity.md)");
        Result<bench::Normalization> n = bench::normalization_from_json(params, bench::default_normalization());
        if (!n.ok()) return fail("invalid_params", n.status().message());
        p.kind = CommandKind::set_normalization;
        p.normalization = params;
        p.ack.code = "ok";
        return p;
    }
    if (cmd == "set_telemetry_interval") {
        if (!params.contains("interval_s") || !params["interval_s"].is_number_integer())
            return fail("invalid_params", "params.interval_s (an integer number of seconds) is required");
        for (const auto& [k, v] : params.items()) {
            (void)v;
            if (k != "interval_s") return fail("invalid_params", "unknown parameter '" + k + "'");
        }
        int64_t s = params["interval_s"].get<int64_t>();
        if (s < 1 || s > 3600)
            return fail("invalid_params", "params.interval_s must be between 1 and 3600, got " + std::to_string(s));
        p.kind = CommandKind::set_telemetry_interval;
        p.interval_s = static_cast<int>(s);
        p.ack.code = "ok";
        return p;
    }
    return fail("unknown_command", "unknown command '" + cmd + "' (known: rebirth, rebenchmark, set_telemetry_interval, set_normalization)");
}

}  // namespace cpn
