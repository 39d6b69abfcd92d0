// render.hpp: the three forms `discover` prints: a table for people, JSON and YAML for programs.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "inventory/device.hpp"

namespace cpn {

/* A size for people: "512 B", "1.5 GiB" (binary units, one decimal). */
std::string human_bytes(double bytes);

/* A readable table of devices and plugin outcomes. */
std::string render_table(const Inventory& inv);

/* YAML text of any JSON document (same structure, same keys). */
std::string json_to_yaml(const nlohmann::json& j);

/* JSON text; invalid UTF-8 from a vendor string is replaced, never an exception. */
std::string dump_json(const nlohmann::json& j, int indent = 2);

}  // namespace cpn
