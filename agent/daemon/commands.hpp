// commands.hpp: reading a command from the brain. Pure (no side effects), so every malformed
// input has a unit test; the daemon acts on what it returns and publishes the ack.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mqtt/messages.hpp"

namespace cpn {

enum class CommandKind { invalid, rebirth, rebenchmark, set_telemetry_interval, set_normalization };

struct ParsedCommand {
    CommandKind kind = CommandKind::invalid;
    int interval_s = 0;  // set_telemetry_interval
    std::string bench_mode;            // rebenchmark: "quick", "full", or "" for the configured mode
    std::vector<std::string> devices;  // rebenchmark: only these device ids (empty: all)
    nlohmann::json normalization;      // set_normalization: the validated params object
    mqtt::Ack ack;       // id and command filled in as far as they could be read; code != "ok"
                         // (with its message) when kind is invalid
};

/* Commands larger than this are refused unread (a payload is never an unchecked allocation). */
inline constexpr size_t kMaxCommandBytes = 64 * 1024;

ParsedCommand parse_command(const std::string& payload);

}  // namespace cpn
