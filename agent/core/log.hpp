// log.hpp: the agent's logger (spdlog to stderr; journald picks stderr up under systemd).
#pragma once

#include <string>

#include "core/status.hpp"

namespace cpn {

/* Sets the global log level from "trace", "debug", "info", "warn", "error" or "off". */
Status set_log_level(const std::string& level);

/* True when `level` is one of the names set_log_level accepts. */
bool is_log_level(const std::string& level);

/* Sends logs to stderr with a compact pattern; call once at start. */
void init_logging(const std::string& level);

}  // namespace cpn
