// task_spec.cpp: submit parsing, validation and requirement matching.
#include "tasks/task_spec.hpp"

#include "core/codec.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

namespace cpn::tasks {

namespace {

std::mutex g_kinds_mutex;
std::vector<KindInfo>& kinds_storage() {
    static std::vector<KindInfo> k = {
        {"echo", true, "returns its input and params unchanged: tests the task path itself"},
        {"bench", true, "re-measures this node's capacity (all devices or params.devices)"},
    };
    return k;
}

Rejection reject(std::string code, std::string message, std::string id = "") {
    return Rejection{std::move(code), std::move(message), std::move(id)};
}

const std::set<std::string>& top_level_keys() {
    static const std::set<std::string> k = {"schema_version", "id",       "kind",      "params",
                                            "requirements",   "priority", "timeout_s", "input",
                                            "reply_to",       "correlation"};
    return k;
}

/* Resolves `path` and checks it lies inside one of `dirs` (both canonical, so neither "..",
 * nor a symbolic link, nor a bind of the same inode under another name leads outside). */
std::optional<Rejection> check_path(const std::string& path, const AdmissionLimits& limits, const std::string& id,
                                    InputRef& out) {
    if (limits.allowed_input_dirs.empty())
        return reject("path_not_allowed", "input.path: this node accepts no file inputs (no allowed input directories "
                                          "are configured); send the input inline",
                      id);
    if (path.empty() || path[0] != '/')
        return reject("path_not_allowed", "input.path: '" + path + "' must be an absolute path", id);
    if (path.size() > 4096 || path.find('\0') != std::string::npos)
        return reject("path_not_allowed", "input.path: not a usable path", id);
    char resolved[PATH_MAX];
    if (::realpath(path.c_str(), resolved) == nullptr)
        return reject("input_unreadable", "input.path: '" + path + "': " + std::strerror(errno), id);
    const std::string real = resolved;
    bool inside = false;
    for (const std::string& dir : limits.allowed_input_dirs) {
        char rd[PATH_MAX];
        if (::realpath(dir.c_str(), rd) == nullptr) continue;
        std::string base = rd;
        if (base != "/" && !base.empty()) base += "/";
        if (real.rfind(base, 0) == 0 && real.size() > base.size()) inside = true;
    }
    if (!inside) {
        std::string dirs;
        for (const std::string& d : limits.allowed_input_dirs) dirs += (dirs.empty() ? "" : ", ") + d;
        return reject("path_not_allowed",
                      "input.path: '" + path + "' is outside the allowed input directories (" + dirs + ")", id);
    }
    struct stat st {};
    if (::stat(real.c_str(), &st) != 0)
        return reject("input_unreadable", "input.path: '" + path + "': " + std::strerror(errno), id);
    if (!S_ISREG(st.st_mode))
        return reject("input_unreadable", "input.path: '" + path + "' is not a regular file", id);
    if (static_cast<uint64_t>(st.st_size) > limits.max_file_input_bytes)
        return reject("oversize", "input.path: '" + path + "' is " + std::to_string(st.st_size) +
                                      " bytes; the limit is " + std::to_string(limits.max_file_input_bytes),
                      id);
    out.present = true;
    out.inline_data = false;
    out.path = real;
    out.size = static_cast<uint64_t>(st.st_size);
    return std::nullopt;
}

}  // namespace

std::string check_reply_topic(const std::string& topic, const std::string& prefix) {
    if (topic.size() > 256) return "is longer than 256 bytes";
    if (topic.find_first_of(std::string("+#\0", 3)) != std::string::npos) return "must not contain '+', '#' or NUL";
    if (topic.size() <= prefix.size() || topic.compare(0, prefix.size(), prefix) != 0)
        return "'" + topic.substr(0, 64) + "' is not under this node's reply prefix '" + prefix + "'";
    return {};
}

std::vector<KindInfo> registered_kinds() {
    std::lock_guard<std::mutex> l(g_kinds_mutex);
    return kinds_storage();
}

void register_kind(KindInfo k) {
    std::lock_guard<std::mutex> l(g_kinds_mutex);
    auto& v = kinds_storage();
    auto it = std::find_if(v.begin(), v.end(), [&](const KindInfo& x) { return x.name == k.name; });
    if (it != v.end()) *it = std::move(k);
    else v.push_back(std::move(k));
}

std::optional<KindInfo> find_kind(const std::string& name) {
    std::lock_guard<std::mutex> l(g_kinds_mutex);
    for (const KindInfo& k : kinds_storage())
        if (k.name == name) return k;
    return std::nullopt;
}

bool decode_base64(const std::string& in, std::string& out) { return base64_decode(in, out); }

std::variant<TaskSpec, Rejection> parse_submit(const std::string& payload, const AdmissionLimits& limits) {
    if (payload.size() > limits.max_submit_bytes)
        return reject("oversize", "submit is " + std::to_string(payload.size()) + " bytes; the limit is " +
                                      std::to_string(limits.max_submit_bytes));
    nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
    if (j.is_discarded()) return reject("malformed", "submit is not valid JSON");
    if (!j.is_object()) return reject("malformed", std::string("submit must be a JSON object, got ") + j.type_name());
    TaskSpec s;
    // The id first, so that even a refused submit can be answered by id.
    if (!j.contains("id") || !j["id"].is_string())
        return reject("malformed", "id (a string of 1 to 128 letters, digits, '.', '_', ':', '-') is missing");
    s.id = j["id"].get<std::string>();
    if (!is_valid_task_id(s.id))
        return reject("invalid_field",
                      "id: '" + s.id.substr(0, 64) + "' is not 1 to 128 letters, digits, '.', '_', ':', '-'");
    const std::string& id = s.id;
    if (!j.contains("schema_version") || !j["schema_version"].is_number_integer())
        return reject("malformed", "schema_version (an integer) is missing", id);
    if (j["schema_version"].get<int64_t>() != 1)
        return reject("unsupported_schema_version",
                      "schema_version " + j["schema_version"].dump() + " is not supported; this agent speaks 1", id);
    for (const auto& [k, v] : j.items()) {
        (void)v;
        if (!top_level_keys().count(k)) return reject("invalid_field", "unknown field '" + k + "'", id);
    }
    if (!j.contains("kind") || !j["kind"].is_string()) return reject("malformed", "kind (a string) is missing", id);
    s.kind = j["kind"].get<std::string>();
    if (!find_kind(s.kind)) {
        std::string known;
        for (const KindInfo& k : registered_kinds()) known += (known.empty() ? "" : ", ") + k.name;
        return reject("unknown_kind", "kind '" + s.kind.substr(0, 64) + "' is not available on this node (known: " +
                                          known + ")",
                      id);
    }
    if (j.contains("reply_to")) {
        if (!j["reply_to"].is_string()) return reject("invalid_field", "reply_to must be a string (a topic)", id);
        s.reply_to = j["reply_to"].get<std::string>();
        if (std::string why = check_reply_topic(s.reply_to, limits.reply_prefix); !why.empty())
            return reject("invalid_field", "reply_to " + why, id);
    }
    if (j.contains("correlation")) {
        if (!j["correlation"].is_string() || j["correlation"].get_ref<const std::string&>().size() > 256)
            return reject("invalid_field", "correlation must be a string of at most 256 bytes", id);
        s.correlation = j["correlation"].get<std::string>();
    }
    if (j.contains("params")) {
        if (!j["params"].is_object()) return reject("invalid_field", "params must be an object", id);
        s.params = j["params"];
    }
    if (j.contains("priority")) {
        if (!j["priority"].is_number_integer()) return reject("invalid_field", "priority must be an integer", id);
        const int64_t p = j["priority"].get<int64_t>();
        if (p < -100 || p > 100)
            return reject("invalid_field", "priority must be between -100 and 100, got " + std::to_string(p), id);
        s.priority = static_cast<int>(p);
    }
    if (j.contains("timeout_s")) {
        if (!j["timeout_s"].is_number_integer()) return reject("invalid_field", "timeout_s must be an integer", id);
        const int64_t t = j["timeout_s"].get<int64_t>();
        if (t < 1 || t > limits.max_timeout_s)
            return reject("invalid_field", "timeout_s must be between 1 and " + std::to_string(limits.max_timeout_s) +
                                               ", got " + std::to_string(t),
                          id);
        s.timeout_s = static_cast<int>(t);
    }
    if (j.contains("requirements")) {
        const nlohmann::json& r = j["requirements"];
        if (!r.is_object()) return reject("invalid_field", "requirements must be an object", id);
        for (const auto& [k, v] : r.items()) {
            if (k == "device_class") {
                if (!v.is_string()) return reject("invalid_field", "requirements.device_class must be a string", id);
                s.requirements.device_class = device_class_from_string(v.get<std::string>());
                if (!s.requirements.device_class)
                    return reject("invalid_field", "requirements.device_class: '" + v.get<std::string>().substr(0, 32) +
                                                       "' is not one of cpu, gpu, fpga, npu, other",
                                  id);
            } else if (k == "backend") {
                if (!v.is_string() || v.get<std::string>().size() > 32)
                    return reject("invalid_field", "requirements.backend must be a backend name", id);
                s.requirements.backend = v.get<std::string>();
            } else if (k == "min_memory_bytes") {
                if (!v.is_number_unsigned())
                    return reject("invalid_field", "requirements.min_memory_bytes must be a non-negative integer", id);
                s.requirements.min_memory_bytes = v.get<uint64_t>();
            } else if (k == "precision") {
                static const std::vector<std::pair<std::string, Precision>> kP = {
                    {"fp64", Precision::fp64}, {"fp32", Precision::fp32}, {"fp16", Precision::fp16},
                    {"bf16", Precision::bf16}, {"int8", Precision::int8}};
                if (!v.is_string()) return reject("invalid_field", "requirements.precision must be a string", id);
                for (const auto& [n, p] : kP)
                    if (n == v.get<std::string>()) s.requirements.precision = p;
                if (!s.requirements.precision)
                    return reject("invalid_field", "requirements.precision: '" + v.get<std::string>().substr(0, 32) +
                                                       "' is not one of fp64, fp32, fp16, bf16, int8",
                                  id);
            } else if (k == "device_id") {
                if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > 128)
                    return reject("invalid_field", "requirements.device_id must be a device id", id);
                s.requirements.device_id = lower(v.get<std::string>());
            } else {
                return reject("invalid_field", "unknown requirement '" + k + "' (known: device_class, backend, "
                                                                          "min_memory_bytes, precision, device_id)",
                              id);
            }
        }
    }
    if (j.contains("input")) {
        const nlohmann::json& in = j["input"];
        if (!in.is_object()) return reject("invalid_field", "input must be an object", id);
        const bool has_inline = in.contains("base64"), has_path = in.contains("path");
        for (const auto& [k, v] : in.items()) {
            (void)v;
            if (k != "base64" && k != "path")
                return reject("invalid_field", "unknown input field '" + k + "' (known: base64, path)", id);
        }
        if (has_inline == has_path)
            return reject("invalid_field", "input takes exactly one of base64 (inline data) or path (a file)", id);
        if (has_inline) {
            if (!in["base64"].is_string()) return reject("invalid_field", "input.base64 must be a string", id);
            const std::string& b64 = in["base64"].get_ref<const std::string&>();
            // Checked before decoding: the size bound holds for the allocation too.
            if (b64.size() / 4 * 3 > limits.max_inline_input_bytes + 2)
                return reject("oversize", "input.base64 decodes to about " + std::to_string(b64.size() / 4 * 3) +
                                              " bytes; the inline limit is " +
                                              std::to_string(limits.max_inline_input_bytes) +
                                              " (larger inputs go by path)",
                              id);
            if (!decode_base64(b64, s.input.data))
                return reject("invalid_field", "input.base64 is not valid base64 (RFC 4648, with padding)", id);
            if (s.input.data.size() > limits.max_inline_input_bytes)
                return reject("oversize", "input.base64 decodes to " + std::to_string(s.input.data.size()) +
                                              " bytes; the inline limit is " +
                                              std::to_string(limits.max_inline_input_bytes),
                              id);
            s.input.present = true;
            s.input.inline_data = true;
            s.input.size = s.input.data.size();
        } else {
            if (!in["path"].is_string()) return reject("invalid_field", "input.path must be a string", id);
            if (auto r = check_path(in["path"].get<std::string>(), limits, id, s.input)) return *r;
        }
    }
    return s;
}

std::variant<std::vector<const Device*>, Rejection> eligible_devices(const TaskSpec& spec, const Inventory& inv) {
    std::vector<const Device*> out;
    const Requirements& r = spec.requirements;
    for (const Device& d : inv.devices) {
        if (!d.health.healthy || d.runtimes.empty()) continue;
        if (!r.device_id.empty() && lower(d.id) != r.device_id) continue;
        if (r.device_class && d.device_class != *r.device_class) continue;
        if (!r.backend.empty() &&
            std::none_of(d.runtimes.begin(), d.runtimes.end(), [&](const RuntimePath& p) { return p.backend == r.backend; }))
            continue;
        if (r.min_memory_bytes > 0 && d.memory_bytes < r.min_memory_bytes) continue;
        if (r.precision && std::find(d.precisions.begin(), d.precisions.end(), *r.precision) == d.precisions.end())
            continue;
        out.push_back(&d);
    }
    if (!out.empty()) return out;
    // Say what the node has, so the submitter can act.
    std::string have;
    for (const Device& d : inv.devices) {
        std::string backends;
        // Appended piecewise: GCC 12 at -O3 warns (-Wrestrict, a false positive) on "..." + string&&.
        for (const RuntimePath& p : d.runtimes) {
            if (!backends.empty()) backends += '+';
            backends += p.backend;
        }
        std::string precs;
        for (Precision p : d.precisions) {
            if (!precs.empty()) precs += '/';
            precs += to_string(p);
        }
        have += (have.empty() ? "" : "; ") + d.id + " (" + to_string(d.device_class) + ", " +
                (backends.empty() ? "no runtime" : backends) + ", " + std::to_string(d.memory_bytes >> 20) + " MiB, " +
                (precs.empty() ? "-" : precs) + (d.health.healthy ? "" : ", unhealthy") + ")";
    }
    std::string want;
    if (!r.device_id.empty()) want += " device_id=" + r.device_id;
    if (r.device_class) want += std::string(" device_class=") + to_string(*r.device_class);
    if (!r.backend.empty()) want += " backend=" + r.backend;
    if (r.min_memory_bytes) want += " min_memory_bytes=" + std::to_string(r.min_memory_bytes);
    if (r.precision) want += std::string(" precision=") + to_string(*r.precision);
    return reject("unsatisfiable", "no healthy device on this node meets the requirements" + want + "; it has: " +
                                       (have.empty() ? "no devices" : have),
                  spec.id);
}

}  // namespace cpn::tasks
