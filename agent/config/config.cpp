#include "config/config.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "core/log.hpp"

namespace cpn {
namespace {

struct Ctx {
    std::string file;
    std::vector<std::string> errors;
    std::vector<std::string> sections;
    void error(const YAML::Mark& m, const std::string& key, const std::string& what) {
        std::ostringstream s;
        s << file << ":" << (m.line + 1) << ":" << (m.column + 1) << ": " << key << ": " << what;
        errors.push_back(s.str());
        sections.push_back(key.substr(0, key.find_first_of(".[")));
    }
};

std::string describe(const YAML::Node& n) {
    switch (n.Type()) {
        case YAML::NodeType::Scalar: return "'" + n.Scalar() + "'";
        case YAML::NodeType::Sequence: return "a list";
        case YAML::NodeType::Map: return "a mapping";
        case YAML::NodeType::Null: return "nothing";
        default: return "an undefined value";
    }
}

/* Each setter validates one key and stores it; it reports its own errors. A null value keeps
 * the default (so "site:" with nothing after it means "no site"). */
using Setter = std::function<void(const YAML::Node&, const std::string&, Ctx&, Config&)>;


Setter string_key(std::function<std::string&(Config&)> field,
                  std::function<std::string(const std::string&)> check = nullptr) {
    return [=](const YAML::Node& n, const std::string& key, Ctx& ctx, Config& c) {
        if (n.IsNull()) return;
        if (!n.IsScalar()) return ctx.error(n.Mark(), key, "expected a string, got " + describe(n));
        if (check) {
            std::string why = check(n.Scalar());
            if (!why.empty()) return ctx.error(n.Mark(), key, why);
        }
        field(c) = n.Scalar();
    };
}

/* An integer key in [lo, hi], for an int or an int64_t field: decimal digits only, the whole
 * scalar (no "12abc", no "1e3"). */
template <typename T>
Setter integer_key(std::function<T&(Config&)> field, int64_t lo, int64_t hi) {
    return [=](const YAML::Node& n, const std::string& key, Ctx& ctx, Config& c) {
        if (n.IsNull()) return;
        long long v = 0;
        bool ok = n.IsScalar();
        if (ok) {
            const std::string& s = n.Scalar();
            size_t used = 0;
            try {
                v = std::stoll(s, &used, 10);
            } catch (...) {
                ok = false;
            }
            ok = ok && used == s.size() && !s.empty();
        }
        if (!ok) return ctx.error(n.Mark(), key, "expected an integer, got " + describe(n));
        if (v < lo || v > hi)
            return ctx.error(n.Mark(), key,
                             "must be between " + std::to_string(lo) + " and " +
                                 std::to_string(hi) + ", got " + std::to_string(v));
        field(c) = static_cast<T>(v);
    };
}

Setter int_key(std::function<int&(Config&)> field, long lo, long hi) {
    return integer_key<int>(std::move(field), lo, hi);
}

Setter int64_key(std::function<int64_t&(Config&)> field, int64_t lo, int64_t hi) {
    return integer_key<int64_t>(std::move(field), lo, hi);
}

Setter double_key(std::function<double&(Config&)> field, double lo, double hi) {
    return [=](const YAML::Node& n, const std::string& key, Ctx& ctx, Config& c) {
        if (n.IsNull()) return;
        double v = 0;
        bool ok = n.IsScalar();
        if (ok) {
            const std::string& s = n.Scalar();
            size_t used = 0;
            try {
                v = std::stod(s, &used);
            } catch (...) {
                ok = false;
            }
            ok = ok && used == s.size() && !s.empty() && std::isfinite(v);
        }
        if (!ok) return ctx.error(n.Mark(), key, "expected a number, got " + describe(n));
        if (v < lo || v > hi) {
            std::ostringstream m;
            m << "must be between " << lo << " and " << hi << ", got " << v;
            return ctx.error(n.Mark(), key, m.str());
        }
        field(c) = v;
    };
}

Setter bool_key(std::function<bool&(Config&)> field) {
    return [=](const YAML::Node& n, const std::string& key, Ctx& ctx, Config& c) {
        if (n.IsNull()) return;
        if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false")) {
            field(c) = n.Scalar() == "true";
            return;
        }
        ctx.error(n.Mark(), key, "expected true or false, got " + describe(n));
    };
}

Setter list_key(std::function<std::vector<std::string>&(Config&)> field,
                std::function<std::string(const std::string&)> check, bool allow_empty) {
    return [=](const YAML::Node& n, const std::string& key, Ctx& ctx, Config& c) {
        if (n.IsNull()) return;
        if (!n.IsSequence())
            return ctx.error(n.Mark(), key, "expected a list of strings, got " + describe(n));
        std::vector<std::string> out;
        size_t i = 0;
        for (const YAML::Node& e : n) {
            std::string k = key + "[" + std::to_string(i++) + "]";
            if (!e.IsScalar()) {
                ctx.error(e.Mark(), k, "expected a string, got " + describe(e));
                continue;
            }
            std::string why = check ? check(e.Scalar()) : std::string();
            if (!why.empty()) {
                ctx.error(e.Mark(), k, why);
                continue;
            }
            out.push_back(e.Scalar());
        }
        if (out.empty() && !allow_empty && i == 0)
            return ctx.error(n.Mark(), key, "must not be empty");
        field(c) = out;
    };
}

std::string check_node_id(const std::string& s) {
    static const std::regex re("[a-z0-9][a-z0-9._-]{0,63}");
    if (!std::regex_match(s, re))
        return "'" + s +
               "' is not a valid node id (1-64 characters: lower-case letters, digits, '.', '_', "
               "'-'; it becomes part of MQTT topics)";
    return {};
}
std::string check_site(const std::string& s) {
    if (s.size() > 128) return "longer than 128 characters";
    if (s.find_first_of("/+#") != std::string::npos)
        return "'" + s + "' must not contain '/', '+' or '#' (it becomes part of MQTT topics)";
    return {};
}
std::string check_uri(const std::string& s) {
    static const std::regex re("(tcp|ssl|mqtt|mqtts|ws|wss)://[^/:\\s]+(:[0-9]{1,5})?/?");
    if (!std::regex_match(s, re))
        return "'" + s +
               "' is not a broker URI (expected scheme://host[:port] with scheme tcp, ssl, mqtt, "
               "mqtts, ws or wss)";
    return {};
}
std::string check_backend_name(const std::string& s) {
    static const std::regex re("[a-z0-9_-]{1,32}");
    if (!std::regex_match(s, re))
        return "'" + s + "' is not a backend name (lower-case letters, digits, '_', '-')";
    return {};
}
std::string check_abs_path(const std::string& s) {
    if (s.empty() || s[0] != '/') return "'" + s + "' must be an absolute path";
    return {};
}
std::string check_abs_path_or_empty(const std::string& s) {
    return s.empty() ? std::string() : check_abs_path(s);
}
std::string check_protocol(const std::string& s) {
    if (s != "5" && s != "3.1.1") return "'" + s + "' is not an MQTT version (expected 5 or 3.1.1)";
    return {};
}
std::string check_queue_name(const std::string& s) {
    static const std::regex re("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
    if (!std::regex_match(s, re))
        return "'" + s + "' is not a queue name (1-64 letters, digits, '.', '_', '-'; it becomes part of MQTT topics)";
    return {};
}
std::string check_journal_sync(const std::string& s) {
    if (s != "full" && s != "normal") return "'" + s + "' is not a journal sync mode (expected full or normal)";
    return {};
}
std::string check_reply_prefix(const std::string& s) {
    if (s.empty() || s.back() != '/' || s.find_first_of("+#") != std::string::npos || s[0] == '/' || s[0] == '$')
        return "'" + s + "' is not a topic prefix (non-empty, ends with '/', no '+', '#', leading '/' or '$')";
    return {};
}
/* metrics.prometheus.listen: "host:port". The HTTP server (Debian's civetweb, built without
 * IPv6) binds an IPv4 address and does not resolve names, so the host is an IPv4 address. */
std::string check_listen(const std::string& s) {
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0)
        return "'" + s + "' is not a listen address (expected host:port, e.g. 127.0.0.1:9464)";
    const std::string host = s.substr(0, colon), port = s.substr(colon + 1);
    const bool digits = !port.empty() && port.size() <= 5 &&
                        std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (!digits || std::stoi(port) < 1 || std::stoi(port) > 65535)
        return "'" + s + "': port '" + port + "' is not a number between 1 and 65535";
    in_addr v4{};
    if (::inet_pton(AF_INET, host.c_str(), &v4) != 1)
        return "'" + s + "': host '" + host +
               "' is not an IPv4 address (the metrics server binds IPv4 addresses only and resolves no names; "
               "e.g. 127.0.0.1, or 0.0.0.0 for every interface)";
    return {};
}
/* metrics.prometheus.enabled: in a binary built without the exporter, true is an error rather
 * than a setting silently ignored. */
Setter prometheus_enabled_key() {
    Setter set = bool_key([](Config& c) -> bool& { return c.metrics.prometheus.enabled; });
    return [=](const YAML::Node& n, const std::string& key, Ctx& ctx, Config& c) {
#if !CPN_WITH_PROMETHEUS
        if (n.IsScalar() && n.Scalar() == "true")
            return ctx.error(n.Mark(), key,
                             "this cpn-agent was built without Prometheus support (CPN_PROMETHEUS=OFF or "
                             "prometheus-cpp-dev missing at build time); set it to false or rebuild");
#endif
        set(n, key, ctx, c);
    };
}
std::string check_capacity_mode(const std::string& s) {
    if (s != "quick" && s != "full" && s != "off")
        return "'" + s + "' is not a benchmark mode (expected quick, full or off)";
    return {};
}
/* "name:precision:intensity", e.g. "cnn-inference:int8:40". */
std::string check_task_class(const std::string& s) {
    static const std::regex re("([a-z0-9][a-z0-9._-]{0,63}):(fp64|fp32|fp16|bf16|int8):([0-9]+(\\.[0-9]+)?)");
    std::smatch m;
    if (!std::regex_match(s, m, re))
        return "'" + s + "' is not a task class (expected name:precision:intensity, precision one of fp64, "
               "fp32, fp16, bf16, int8, intensity in operations per byte, e.g. cnn-inference:int8:40)";
    if (std::stod(m[3].str()) <= 0) return "'" + s + "': the intensity must be above 0";
    return {};
}
std::string check_level(const std::string& s) {
    if (!is_log_level(s))
        return "'" + s + "' is not a log level (expected trace, debug, info, warn, error or off)";
    return {};
}

struct KeyDef {
    ConfigKey doc;
    Setter set;
};

const std::vector<KeyDef>& key_defs() {
    static const std::vector<KeyDef> defs = {
        {{"node.id", "string", "\"\"",
          "Node id, unique in the fleet; empty: the host name, lower-cased"},
         string_key([](Config& c) -> std::string& { return c.node.id; },
                    [](const std::string& s) { return s.empty() ? std::string() : check_node_id(s); })},
        {{"node.site", "string", "\"\"", "Site (edge room, base station) this node belongs to"},
         string_key([](Config& c) -> std::string& { return c.node.site; }, check_site)},
        {{"broker.uris", "string-list", "[\"tcp://127.0.0.1:1883\"]",
          "Broker URIs, tried in order for fail-over"},
         list_key([](Config& c) -> std::vector<std::string>& { return c.broker.uris; }, check_uri,
                  false)},
        {{"broker.keepalive_s", "int", "30", "MQTT keepalive in seconds (5-3600)"},
         int_key([](Config& c) -> int& { return c.broker.keepalive_s; }, 5, 3600)},
        {{"broker.protocol", "enum", "\"5\"", "MQTT protocol version: \"5\" or \"3.1.1\""},
         string_key([](Config& c) -> std::string& { return c.broker.protocol; }, check_protocol)},
        {{"broker.connect_timeout_s", "int", "10", "Seconds to wait for a connection to be accepted (1-300)"},
         int_key([](Config& c) -> int& { return c.broker.connect_timeout_s; }, 1, 300)},
        {{"broker.username", "string", "\"\"", "User name for the broker; empty: none"},
         string_key([](Config& c) -> std::string& { return c.broker.username; })},
        {{"broker.password_file", "string", "\"\"",
          "File holding the password (mode 0600 or stricter); never put it on the command line"},
         string_key([](Config& c) -> std::string& { return c.broker.password_file; }, check_abs_path_or_empty)},
        {{"broker.tls.ca_file", "string", "\"\"",
          "CA bundle to verify the broker with (ssl://, mqtts://); empty: the system trust store"},
         string_key([](Config& c) -> std::string& { return c.broker.tls.ca_file; }, check_abs_path_or_empty)},
        {{"broker.tls.cert_file", "string", "\"\"", "Client certificate for mutual TLS; empty: none"},
         string_key([](Config& c) -> std::string& { return c.broker.tls.cert_file; }, check_abs_path_or_empty)},
        {{"broker.tls.key_file", "string", "\"\"",
          "Client private key for mutual TLS (mode 0600 or stricter)"},
         string_key([](Config& c) -> std::string& { return c.broker.tls.key_file; }, check_abs_path_or_empty)},
        {{"broker.tls.verify", "bool", "true",
          "Verify the broker's certificate and host name; false only for a lab broker"},
         bool_key([](Config& c) -> bool& { return c.broker.tls.verify; })},
        {{"broker.reconnect_min_ms", "int", "1000", "First reconnect delay; doubles per failure, with jitter (100-60000)"},
         int_key([](Config& c) -> int& { return c.broker.reconnect_min_ms; }, 100, 60000)},
        {{"broker.reconnect_max_ms", "int", "60000", "Longest reconnect delay (1000-3600000)"},
         int_key([](Config& c) -> int& { return c.broker.reconnect_max_ms; }, 1000, 3600000)},
        {{"telemetry.interval_s", "int", "10", "Seconds between telemetry messages (1-3600)"},
         int_key([](Config& c) -> int& { return c.telemetry.interval_s; }, 1, 3600)},
        {{"metrics.prometheus.enabled", "bool", "false",
          "Serve the telemetry as Prometheus metrics on GET /metrics (docs/metrics.md); needs a build with CPN_PROMETHEUS"},
         prometheus_enabled_key()},
        {{"metrics.prometheus.listen", "string", "\"127.0.0.1:9464\"",
          "Address of the metrics endpoint, IPv4-address:port; 0.0.0.0 opens it to the network"},
         string_key([](Config& c) -> std::string& { return c.metrics.prometheus.listen; }, check_listen)},
        {{"store.max_bytes", "int", "67108864",
          "Cap of the on-disk store-and-forward buffer in bytes; when full the oldest telemetry is dropped"},
         int64_key([](Config& c) -> int64_t& { return c.store.max_bytes; }, 65536, 1ll << 40)},
        {{"store.max_age_s", "int", "604800", "Telemetry older than this is dropped from the buffer (60-31536000)"},
         int64_key([](Config& c) -> int64_t& { return c.store.max_age_s; }, 60, 31536000)},
        {{"plugins.dir", "string", "\"\"",
          "Backend plugin directory; empty: <libdir>/cpn-agent/backends beside the binary"},
         string_key([](Config& c) -> std::string& { return c.plugins.dir; },
                    [](const std::string& s) { return s.empty() ? std::string() : check_abs_path(s); })},
        {{"plugins.enable", "string-list", "[]",
          "Backends to load (cpu, opencl, cuda, levelzero, xrt); empty: every plugin found"},
         list_key([](Config& c) -> std::vector<std::string>& { return c.plugins.enable; },
                  check_backend_name, true)},
        {{"plugins.disable", "string-list", "[]", "Backends never to load, even when found"},
         list_key([](Config& c) -> std::vector<std::string>& { return c.plugins.disable; },
                  check_backend_name, true)},
        {{"discovery.probe_timeout_ms", "int", "5000",
          "Time box for one backend's probe and enumeration (100-600000 ms)"},
         int_key([](Config& c) -> int& { return c.discovery.probe_timeout_ms; }, 100, 600000)},
        {{"discovery.sysfs_root", "string", "\"/sys\"",
          "Where sysfs is mounted (tests point it at recorded trees)"},
         string_key([](Config& c) -> std::string& { return c.discovery.sysfs_root; }, check_abs_path)},
        {{"capacity.mode", "enum", "quick",
          "Benchmark run when the stored capacity is missing or stale: quick, full or off"},
         string_key([](Config& c) -> std::string& { return c.capacity.mode; }, check_capacity_mode)},
        {{"capacity.reference.compute", "float", "1.0e+12", "Reference node's fp32 rate, FLOP/s (L1 compute = 1.0)"},
         double_key([](Config& c) -> double& { return c.capacity.ref_compute; }, 1, 1e18)},
        {{"capacity.reference.memory", "float", "1.0e+11", "Reference node's triad bandwidth, B/s (L1 memory = 1.0)"},
         double_key([](Config& c) -> double& { return c.capacity.ref_memory; }, 1, 1e18)},
        {{"capacity.reference.ai", "float", "4.0e+12",
          "Reference node's best int8/fp16/bf16 rate, op/s (L1 ai = 1.0)"},
         double_key([](Config& c) -> double& { return c.capacity.ref_ai; }, 1, 1e18)},
        {{"capacity.reference.render", "float", "10.0", "Reference node's rate on the render reference job (L1 render = 1.0)"},
         double_key([](Config& c) -> double& { return c.capacity.ref_render; }, 1e-9, 1e18)},
        {{"capacity.weights.compute", "float", "0.35", "Weight of L1 compute in the L2 score"},
         double_key([](Config& c) -> double& { return c.capacity.w_compute; }, 0, 1000)},
        {{"capacity.weights.memory", "float", "0.25", "Weight of L1 memory in the L2 score"},
         double_key([](Config& c) -> double& { return c.capacity.w_memory; }, 0, 1000)},
        {{"capacity.weights.ai", "float", "0.30", "Weight of L1 ai in the L2 score"},
         double_key([](Config& c) -> double& { return c.capacity.w_ai; }, 0, 1000)},
        {{"capacity.weights.render", "float", "0.10", "Weight of L1 render in the L2 score"},
         double_key([](Config& c) -> double& { return c.capacity.w_render; }, 0, 1000)},
        {{"capacity.task_classes", "string-list",
          "[\"dense-linear-algebra:fp64:16\", \"cnn-inference:int8:40\", \"cnn-inference-fp16:fp16:40\", "
          "\"transformer-decode:bf16:1\", \"stencil:fp32:0.5\", \"rendering:fp32:4\"]",
          "Roofline task classes, name:precision:operations-per-byte"},
         list_key([](Config& c) -> std::vector<std::string>& { return c.capacity.task_classes; },
                  check_task_class, false)},
        {{"tasks.queues", "string-list", "[]", "Shared task queues this node consumes besides its own topic"},
         list_key([](Config& c) -> std::vector<std::string>& { return c.tasks.queues; }, check_queue_name, true)},
        {{"tasks.share_group", "string", "\"cpn-agents\"", "MQTT shared-subscription group of the queues"},
         string_key([](Config& c) -> std::string& { return c.tasks.share_group; }, check_queue_name)},
        {{"tasks.max_queued", "int", "10000", "Waiting tasks at most; more are REJECTED (queue_full)"},
         int_key([](Config& c) -> int& { return c.tasks.max_queued; }, 1, 10000000)},
        {{"tasks.max_submit_bytes", "int", "4194304", "Largest submit payload, bytes"},
         int64_key([](Config& c) -> int64_t& { return c.tasks.max_submit_bytes; }, 1024, 256ll << 20)},
        {{"tasks.max_inline_input_bytes", "int", "1048576", "Largest inline input once decoded, bytes"},
         int64_key([](Config& c) -> int64_t& { return c.tasks.max_inline_input_bytes; }, 0, 192ll << 20)},
        {{"tasks.max_file_input_bytes", "int", "1073741824", "Largest input file by reference, bytes"},
         int64_key([](Config& c) -> int64_t& { return c.tasks.max_file_input_bytes; }, 0, 1ll << 40)},
        {{"tasks.allowed_input_dirs", "string-list", "[]",
          "Directories input files may be read from (absolute; empty: inline input only)"},
         list_key([](Config& c) -> std::vector<std::string>& { return c.tasks.allowed_input_dirs; }, check_abs_path,
                  true)},
        {{"tasks.max_timeout_s", "int", "86400", "Largest timeout_s a task may ask for"},
         int_key([](Config& c) -> int& { return c.tasks.max_timeout_s; }, 1, 30 * 86400)},
        {{"tasks.inline_result_bytes", "int", "65536",
          "Larger task outputs go to state_dir/results/ (path and sha256 in the result)"},
         int64_key([](Config& c) -> int64_t& { return c.tasks.inline_result_bytes; }, 0, 64ll << 20)},
        {{"tasks.slots.cpu", "int", "4", "Tasks a CPU device runs at once"},
         int_key([](Config& c) -> int& { return c.tasks.slots_cpu; }, 0, 1024)},
        {{"tasks.slots.gpu", "int", "4", "Tasks a GPU runs at once (memory is accounted too)"},
         int_key([](Config& c) -> int& { return c.tasks.slots_gpu; }, 0, 1024)},
        {{"tasks.slots.fpga", "int", "1", "Tasks an FPGA runs at once"},
         int_key([](Config& c) -> int& { return c.tasks.slots_fpga; }, 0, 1024)},
        {{"tasks.slots.npu", "int", "2", "Tasks an NPU runs at once"},
         int_key([](Config& c) -> int& { return c.tasks.slots_npu; }, 0, 1024)},
        {{"tasks.slots.other", "int", "1", "Tasks any other device runs at once"},
         int_key([](Config& c) -> int& { return c.tasks.slots_other; }, 0, 1024)},
        {{"tasks.retention_s", "int", "604800",
          "How long an ended task (and its id as idempotency key) is kept after its last state was delivered"},
         int64_key([](Config& c) -> int64_t& { return c.tasks.retention_s; }, 60, 10ll * 365 * 86400)},
        {{"tasks.max_attempts", "int", "3",
          "Times an idempotent task may be started across agent restarts; one still running at the last is failed"},
         int_key([](Config& c) -> int& { return c.tasks.max_attempts; }, 1, 100)},
        {{"tasks.journal_sync", "enum", "full",
          "full: fsync every journal commit (survives power loss); normal: survives a crash or kill -9 only"},
         string_key([](Config& c) -> std::string& { return c.tasks.journal_sync; }, check_journal_sync)},
        {{"tasks.reply_prefix", "string", "\"cpn/v1/replies/\"", "Reply topics of submitters must lie under this prefix"},
         string_key([](Config& c) -> std::string& { return c.tasks.reply_prefix; }, check_reply_prefix)},
        {{"tasks.render.max_triangles", "int", "20000000",
          "Triangles a render scene may hold at most (over all its meshes)"},
         int64_key([](Config& c) -> int64_t& { return c.tasks.render_max_triangles; }, 1, 1ll << 27)},
        {{"tasks.render.max_pixels", "int", "33177600", "Largest render frame, width x height pixels"},
         int64_key([](Config& c) -> int64_t& { return c.tasks.render_max_pixels; }, 1, 1ll << 28)},
        {{"tasks.infer.max_tensor_elements", "int", "1073741824",
          "Elements any one tensor of an infer task may have (model weights, inputs, intermediates)"},
         int64_key([](Config& c) -> int64_t& { return c.tasks.infer_max_tensor_elements; }, 1, 1ll << 36)},
        {{"tasks.infer.model_cache_entries", "int", "8",
          "Models kept loaded and prepared between infer tasks (by the SHA-256 of the model)"},
         int_key([](Config& c) -> int& { return c.tasks.infer_model_cache_entries; }, 1, 1024)},
        {{"state_dir", "string", "\"/var/lib/cpn-agent\"",
          "State directory: journal, capacity cache, session counter"},
         string_key([](Config& c) -> std::string& { return c.state_dir; }, check_abs_path)},
        {{"log.level", "enum", "info", "Log level: trace, debug, info, warn, error or off"},
         string_key([](Config& c) -> std::string& { return c.log.level; }, check_level)},
    };
    return defs;
}

/* Walks a mapping, reporting unknown and duplicate keys, and descending into sections. */
void walk(const YAML::Node& map, const std::string& prefix, Ctx& ctx, Config& c) {
    std::map<std::string, YAML::Mark> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
        // Copies (YAML::Node is a handle): `it->` returns a proxy that dies at the end of the
        // statement, so references into it dangle (AddressSanitizer: stack-use-after-scope,
        // found by tests/fuzz).
        const YAML::Node k = it->first;
        const YAML::Node v = it->second;
        if (!k.IsScalar()) {
            ctx.error(k.Mark(), prefix.empty() ? "(top level)" : prefix,
                      "keys must be plain names, got " + describe(k));
            continue;
        }
        const std::string path = prefix.empty() ? k.Scalar() : prefix + "." + k.Scalar();
        if (auto d = seen.find(k.Scalar()); d != seen.end()) {
            ctx.error(k.Mark(), path,
                      "duplicate key (first set at line " + std::to_string(d->second.line + 1) + ")");
            continue;
        }
        seen.emplace(k.Scalar(), k.Mark());

        const KeyDef* def = nullptr;
        bool is_section = false;
        for (const KeyDef& kd : key_defs()) {
            std::string p = kd.doc.path;
            if (p == path) def = &kd;
            else if (p.rfind(path + ".", 0) == 0) is_section = true;
        }
        if (def != nullptr) {
            def->set(v, path, ctx, c);
        } else if (is_section) {
            if (v.IsNull()) continue;
            if (!v.IsMap()) {
                ctx.error(v.Mark(), path, "expected a mapping (a section), got " + describe(v));
                continue;
            }
            walk(v, path, ctx, c);
        } else {
            // Suggest the closest known key at this level, the usual cause being a typo.
            std::string hint;
            for (const KeyDef& kd : key_defs()) {
                std::string p = kd.doc.path;
                std::string parent = prefix.empty() ? "" : prefix + ".";
                if (p.rfind(parent, 0) != 0) continue;
                std::string rest = p.substr(parent.size());
                std::string name = rest.substr(0, rest.find('.'));
                const std::string& got = k.Scalar();
                if (name.size() > 0 && (name.find(got) == 0 || got.find(name) == 0 ||
                                        (name.size() > 3 && got.size() > 3 &&
                                         name.substr(0, 3) == got.substr(0, 3)))) {
                    hint = " (did you mean '" + parent + name + "'?)";
                    break;
                }
            }
            ctx.error(k.Mark(), path, "unknown key" + hint);
        }
    }
}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
    static const std::vector<ConfigKey> keys = [] {
        std::vector<ConfigKey> out;
        for (const KeyDef& d : key_defs()) out.push_back(d.doc);
        return out;
    }();
    return keys;
}

ConfigReport check_config(const std::string& yaml_text, const std::string& name) {
    ConfigReport rep;
    Ctx ctx{name, {}, {}};
    Config& c = rep.config;
    c.source = name;
    YAML::Node root;
    try {
        root = YAML::Load(yaml_text);
    } catch (const YAML::ParserException& e) {
        std::ostringstream s;
        s << name << ":" << (e.mark.line + 1) << ":" << (e.mark.column + 1)
          << ": YAML syntax error: " << e.msg;
        rep.errors.push_back(s.str());
        rep.sections.push_back("(file)");
        return rep;
    } catch (const std::exception& e) {
        rep.errors.push_back(name + ": cannot parse YAML: " + e.what());
        rep.sections.push_back("(file)");
        return rep;
    }
    if (root.IsNull()) return rep;  // an empty file: all defaults
    if (!root.IsMap()) {
        ctx.error(root.Mark(), "(top level)", "expected a mapping of sections, got " + describe(root));
        ctx.sections.back() = "(file)";
    } else {
        walk(root, "", ctx, c);
    }
    for (const std::string& e : c.plugins.enable) {
        if (std::find(c.plugins.disable.begin(), c.plugins.disable.end(), e) != c.plugins.disable.end()) {
            ctx.errors.push_back(name + ": plugins: backend '" + e +
                                 "' is listed in both plugins.enable and plugins.disable");
            ctx.sections.push_back("plugins");
        }
    }
    if (c.broker.reconnect_min_ms > c.broker.reconnect_max_ms) {
        ctx.errors.push_back(name + ": broker: reconnect_min_ms (" + std::to_string(c.broker.reconnect_min_ms) +
                             ") is larger than reconnect_max_ms (" + std::to_string(c.broker.reconnect_max_ms) + ")");
        ctx.sections.push_back("broker");
    }
    if (c.broker.tls.cert_file.empty() != c.broker.tls.key_file.empty()) {
        ctx.errors.push_back(name + ": broker.tls: cert_file and key_file go together (mutual TLS needs both)");
        ctx.sections.push_back("broker");
    }
    rep.errors = std::move(ctx.errors);
    rep.sections = std::move(ctx.sections);
    return rep;
}

Result<Config> parse_config(const std::string& yaml_text, const std::string& name) {
    ConfigReport rep = check_config(yaml_text, name);
    if (!rep.errors.empty()) {
        std::string msg;
        for (const std::string& e : rep.errors) msg += (msg.empty() ? "" : "\n") + e;
        return Status(Code::invalid_argument, msg);
    }
    return rep.config;
}

Result<Config> load_config(const std::string& path, bool explicit_path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
        if (!explicit_path) return Config{};
        return Status(Code::not_found, path + ": configuration file not found");
    }
    // An ifstream opens a directory and reads it as empty, which would pass for "all defaults".
    if (!std::filesystem::is_regular_file(path, ec))
        return Status(Code::invalid_argument, path + ": not a regular file (a directory?); name the configuration file");
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status(Code::permission_denied, path + ": cannot be read");
    std::ostringstream s;
    s << in.rdbuf();
    if (s.str().size() > (1u << 20))
        return Status(Code::invalid_argument, path + ": larger than 1 MiB, not a configuration file");
    return parse_config(s.str(), path);
}

void finalise_config(Config& c) {
    if (c.node.id.empty()) {
        char host[256] = {0};
        ::gethostname(host, sizeof host - 1);
        std::string id;
        for (char ch : std::string(host)) {
            char l = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            id += (std::isalnum(static_cast<unsigned char>(l)) || l == '.' || l == '_' || l == '-') ? l : '-';
        }
        c.node.id = id.empty() ? "node" : id.substr(0, 64);
    }
}

}  // namespace cpn
