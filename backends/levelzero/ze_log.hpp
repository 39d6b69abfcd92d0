// ze_log.hpp: forwards the plugin's log lines to the host's log callback, when it gave one.
#pragma once

#include "cpn_backend.h"

#include <string>

namespace cpn::levelzero {

/* Remembers the host's log callback (from cpn_backend_entry); NULL or a short host is fine. */
void set_host(const cpn_host* host);

/* level: 0 trace, 1 debug, 2 info, 3 warn, 4 error. A no-op without a host callback. */
void log(int level, const std::string& message);

}  // namespace cpn::levelzero
