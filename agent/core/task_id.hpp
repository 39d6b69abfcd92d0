// task_id.hpp: the protocol's task id rule (docs/protocol.md), one definition for the agent's
// admission and for cpnctl.
#pragma once

#include <string>

namespace cpn {

/* A task id: 1 to 128 of letters, digits, '.', '_', ':', '-', the first a letter or digit
 * (^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$), checked without a regex: admission runs it per submit. */
bool is_valid_task_id(const std::string& id);

}  // namespace cpn
