// params_json.hpp: reads one number out of a workload's params_json without a JSON library.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace cpn::cuda {

/* Looks up the top-level member `key` of the JSON object `json`. Returns false with `error` set
 * when `json` is not a well-formed object or the member is not a number; otherwise true, with
 * `*found` telling whether the member exists and `*value` its value when it does. Nested values
 * of other members are skipped, not interpreted. Never throws. */
bool json_number_member(const char* json, const char* key, double* value, bool* found,
                        std::string* error) noexcept;

/* Lists the top-level members of the JSON object `json` in order, each as its name (still
 * escaped, as written) and the raw text of its value ("12", "\"x\"", "{...}"). Returns false
 * with `error` set when `json` is not a well-formed object. Never throws. */
bool json_object_members(const char* json, std::vector<std::pair<std::string, std::string>>* out,
                         std::string* error) noexcept;

}  // namespace cpn::cuda
