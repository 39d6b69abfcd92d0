// config.hpp: the agent's configuration (YAML), validated against one table of keys. Every
// error names the file, line, column and key; unknown keys, wrong types and out-of-range values
// are errors, never silently ignored.
#pragma once

#include <string>
#include <vector>

#include "core/status.hpp"

namespace cpn {

struct Config {
    std::string source = "(built-in defaults)";  // file it came from

    struct Node {
        std::string id;    // "" -> the host name, lower-cased
        std::string site;
    } node;
    struct Broker {
        std::vector<std::string> uris{"tcp://127.0.0.1:1883"};
        int keepalive_s = 30;
        std::string protocol = "5";  // "5" or "3.1.1"
    } broker;
    struct Plugins {
        std::string dir;   // "" -> relative to the binary
        std::vector<std::string> enable;   // empty -> every plugin found
        std::vector<std::string> disable;
    } plugins;
    struct Discovery {
        int probe_timeout_ms = 5000;
        std::string sysfs_root = "/sys";
    } discovery;
    std::string state_dir = "/var/lib/cpn-agent";
    struct Log {
        std::string level = "info";
    } log;
};

/* One configuration key: its dotted path, type, default (as YAML text) and a one-line comment.
 * The table is the single source for validation, `config/agent.yaml` and the docs. */
struct ConfigKey {
    const char* path;
    const char* type;        // "string", "int", "string-list", "enum"
    const char* default_yaml;
    const char* comment;
};
const std::vector<ConfigKey>& config_keys();

/* Parses YAML text; `name` is used in messages ("agent.yaml"). All problems are reported, one
 * per line, each as "<name>:<line>:<col>: <key>: <what is wrong>". */
Result<Config> parse_config(const std::string& yaml_text, const std::string& name);

/* Loads a file. When `explicit_path` is false and the file does not exist, the built-in
 * defaults are used (a fresh install without a config still runs). */
Result<Config> load_config(const std::string& path, bool explicit_path);

/* Fills derived defaults (node id from the host name). */
void finalise_config(Config& c);

}  // namespace cpn
