// config.hpp: the agent's configuration (YAML), validated against one table of keys. Every
// error names the file, line, column and key; unknown keys, wrong types and out-of-range values
// are errors, never silently ignored.
#pragma once

#include <cstdint>
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
        int connect_timeout_s = 10;
        std::string username;
        std::string password_file;   // read at connect time; never on the command line
        struct Tls {
            std::string ca_file;     // "" -> the system trust store
            std::string cert_file;   // client certificate (mutual TLS)
            std::string key_file;
            bool verify = true;      // verify the server certificate and host name
        } tls;
        int reconnect_min_ms = 1000;
        int reconnect_max_ms = 60000;
    } broker;
    struct Telemetry {
        int interval_s = 10;
    } telemetry;
    struct Metrics {
        struct Prometheus {
            bool enabled = false;                   // an open port is opt-in
            std::string listen = "127.0.0.1:9464";  // IPv4-address:port (no names, no IPv6)
        } prometheus;
    } metrics;
    struct Store {
        int64_t max_bytes = 64ll << 20;
        int64_t max_age_s = 7 * 24 * 3600;
    } store;
    struct Plugins {
        std::string dir;   // "" -> relative to the binary
        std::vector<std::string> enable;   // empty -> every plugin found
        std::vector<std::string> disable;
    } plugins;
    struct Discovery {
        int probe_timeout_ms = 5000;
        std::string sysfs_root = "/sys";
    } discovery;
    struct Capacity {
        std::string mode = "quick";  // "quick", "full" or "off": benchmark when the cache is stale
        double ref_compute = 1e12, ref_memory = 1e11, ref_ai = 4e12, ref_render = 10.0;
        double w_compute = 0.35, w_memory = 0.25, w_ai = 0.30, w_render = 0.10;
        std::vector<std::string> task_classes{"dense-linear-algebra:fp64:16", "cnn-inference:int8:40",
                                              "cnn-inference-fp16:fp16:40", "transformer-decode:bf16:1",
                                              "stencil:fp32:0.5", "rendering:fp32:4"};
    } capacity;
    struct Tasks {
        std::vector<std::string> queues;             // shared queues this node also consumes
        std::string share_group = "cpn-agents";      // the MQTT 5 shared-subscription group
        int max_queued = 10000;                      // more waiting tasks: REJECTED queue_full
        int64_t max_submit_bytes = 4ll << 20;
        int64_t max_inline_input_bytes = 1ll << 20;
        int64_t max_file_input_bytes = 1ll << 30;
        std::vector<std::string> allowed_input_dirs;  // empty: no input by path
        int max_timeout_s = 86400;
        int64_t inline_result_bytes = 64 * 1024;     // larger outputs go to state_dir/results/
        int slots_cpu = 4, slots_gpu = 4, slots_fpga = 1, slots_npu = 2, slots_other = 1;
        int64_t retention_s = 7 * 24 * 3600;
        int max_attempts = 3;                        // starts of an idempotent task across agent restarts
        std::string journal_sync = "full";           // "full" (fsync per commit) or "normal"
        std::string reply_prefix = "cpn/v1/replies/";
        int64_t render_max_triangles = 20'000'000;   // a render scene's triangles at most
        int64_t render_max_pixels = 7680ll * 4320;    // a render's width x height at most
        int64_t infer_max_tensor_elements = 1ll << 30;  // any one tensor of an infer task at most
        int infer_model_cache_entries = 8;           // models kept loaded and prepared between tasks
    } tasks;
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

/* Every problem found, and the top-level sections they are in ("broker", "telemetry"), so the
 * daemon can disable one feature rather than refuse to start. `config` holds the defaults for
 * every key that was wrong. */
struct ConfigReport {
    Config config;
    std::vector<std::string> errors;
    std::vector<std::string> sections;  // one per error, same order
};
ConfigReport check_config(const std::string& yaml_text, const std::string& name);

/* Parses YAML text; `name` is used in messages ("agent.yaml"). All problems are reported, one
 * per line, each as "<name>:<line>:<col>: <key>: <what is wrong>". */
Result<Config> parse_config(const std::string& yaml_text, const std::string& name);

/* Loads a file. When `explicit_path` is false and the file does not exist, the built-in
 * defaults are used (a fresh install without a config still runs). */
Result<Config> load_config(const std::string& path, bool explicit_path);

/* Fills derived defaults (node id from the host name). */
void finalise_config(Config& c);

}  // namespace cpn
