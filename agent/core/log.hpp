// log.hpp: the agent's logger: spdlog to stderr, or straight to the journal (with each line's
// level as its syslog priority) when systemd connected stderr to journald.
#pragma once

#include <string>

#include "core/status.hpp"

namespace cpn {

/* Sets the global log level from "trace", "debug", "info", "warn", "error" or "off". */
Status set_log_level(const std::string& level);

/* True when `level` is one of the names set_log_level accepts. */
bool is_log_level(const std::string& level);

/* True when stderr is the journal stream systemd set up for this service (JOURNAL_STREAM). */
bool stderr_is_journal();

/* Sends logs to the journal when stderr_is_journal(), else to stderr with a compact pattern;
 * call once at start. */
void init_logging(const std::string& level);

}  // namespace cpn
