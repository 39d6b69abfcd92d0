// cpnctl_lib.cpp: see cpnctl_lib.hpp.
#include "cpnctl_lib.hpp"

#include "core/codec.hpp"
#include "core/task_id.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

namespace cpnctl {

using nlohmann::json;

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

namespace {

/* A value for a message: its text (shortened) and what it is. */
std::string describe_value(const json& v) {
    std::string kind;
    switch (v.type()) {
        case json::value_t::null: return "null";
        case json::value_t::boolean: kind = "a boolean"; break;
        case json::value_t::string: kind = "a string"; break;
        case json::value_t::number_integer:
        case json::value_t::number_unsigned: kind = "an integer"; break;
        case json::value_t::number_float: kind = "a number with a fraction"; break;
        case json::value_t::array: return "a list";
        case json::value_t::object: return "a mapping";
        default: return "a value of an unexpected type";
    }
    std::string text = v.dump();
    if (text.size() > 48) text = text.substr(0, 45) + "...";
    return text + " (" + kind + ")";
}

std::string escape_pointer_token(const std::string& key) {
    std::string out;
    for (char c : key) {
        if (c == '~') out += "~0";
        else if (c == '/') out += "~1";
        else out += c;
    }
    return out;
}

std::string shorten(const std::string& s, size_t n = 64) {
    return s.size() <= n ? s : s.substr(0, n - 3) + "...";
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

const std::vector<std::string>& device_classes() {
    static const std::vector<std::string> k = {"cpu", "gpu", "fpga", "npu", "other"};
    return k;
}
const std::vector<std::string>& precisions() {
    static const std::vector<std::string> k = {"fp64", "fp32", "fp16", "bf16", "int8"};
    return k;
}
std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
    std::string out;
    for (const std::string& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}
bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// ---- YAML to JSON ------------------------------------------------------------------------

std::string mark_text(const YAML::Mark& m) {
    return std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

/* A plain (unquoted) YAML scalar typed after the YAML 1.2 core schema. */
json plain_scalar(const std::string& s) {
    static const std::set<std::string> kTrue = {"true", "True", "TRUE"};
    static const std::set<std::string> kFalse = {"false", "False", "FALSE"};
    static const std::regex kInt("[-+]?[0-9]+");
    static const std::regex kHex("0x[0-9a-fA-F]+");
    static const std::regex kOct("0o[0-7]+");
    static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
    if (kTrue.count(s)) return true;
    if (kFalse.count(s)) return false;
    if (std::regex_match(s, kInt)) {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (errno == 0 && end && *end == '\0') return static_cast<int64_t>(v);
        if (s[0] != '-') {
            errno = 0;
            const unsigned long long u = std::strtoull(s.c_str(), &end, 10);
            if (errno == 0 && end && *end == '\0') return static_cast<uint64_t>(u);
        }
        return s;  // too large for any integer: kept as written
    }
    if (std::regex_match(s, kHex) || std::regex_match(s, kOct)) {
        errno = 0;
        char* end = nullptr;
        const unsigned long long u = std::strtoull(s.c_str() + 2, &end, s[1] == 'x' ? 16 : 8);
        if (errno == 0 && end && *end == '\0' && u <= static_cast<unsigned long long>(INT64_MAX))
            return static_cast<int64_t>(u);
        return s;
    }
    if (std::regex_match(s, kFloat)) {
        errno = 0;
        char* end = nullptr;
        const double d = std::strtod(s.c_str(), &end);
        if (errno == 0 && end && *end == '\0' && std::isfinite(d)) return d;
    }
    return s;
}

struct YamlConverter {
    TaskFile& tf;
    std::string error;

    void note(const std::string& ptr, const YAML::Mark& m) {
        if (m.line >= 0 && m.column >= 0) tf.where[ptr] = mark_text(m);
    }
    std::string at(const YAML::Mark& m) const {
        return m.line >= 0 ? tf.name + ":" + mark_text(m) : tf.name;
    }

    bool convert(const YAML::Node& n, const std::string& ptr, json& out) {
        note(ptr, n.Mark());
        switch (n.Type()) {
            case YAML::NodeType::Undefined:
            case YAML::NodeType::Null: out = nullptr; return true;
            case YAML::NodeType::Scalar: return scalar(n, out);
            case YAML::NodeType::Sequence: {
                out = json::array();
                size_t i = 0;
                for (const YAML::Node& item : n) {
                    json v;
                    if (!convert(item, ptr + "/" + std::to_string(i++), v)) return false;
                    out.push_back(std::move(v));
                }
                return true;
            }
            case YAML::NodeType::Map: {
                out = json::object();
                for (const auto& kv : n) {
                    if (!kv.first.IsScalar()) {
                        error = at(kv.first.Mark()) + ": a key must be a plain name, not a list or mapping";
                        return false;
                    }
                    const std::string key = kv.first.Scalar();
                    if (out.contains(key)) {
                        error = at(kv.first.Mark()) + ": duplicate key '" + shorten(key) + "'";
                        return false;
                    }
                    json v;
                    if (!convert(kv.second, ptr + "/" + escape_pointer_token(key), v)) return false;
                    // A key with no value ("kind:") has no mark of its own: point at the key.
                    if (!tf.where.count(ptr + "/" + escape_pointer_token(key)))
                        note(ptr + "/" + escape_pointer_token(key), kv.first.Mark());
                    out[key] = std::move(v);
                }
                return true;
            }
        }
        out = nullptr;
        return true;
    }

    bool scalar(const YAML::Node& n, json& out) {
        const std::string& s = n.Scalar();
        const std::string& tag = n.Tag();
        if (tag == "!" ) {  // quoted or block scalar: always a string
            out = s;
            return true;
        }
        if (tag.empty() || tag == "?") {
            out = plain_scalar(s);
            return true;
        }
        const std::string core = "tag:yaml.org,2002:";
        if (tag == core + "str") {
            out = s;
            return true;
        }
        if (tag == core + "null") {
            out = nullptr;
            return true;
        }
        json v = plain_scalar(s);
        if ((tag == core + "int" && v.is_number_integer()) || (tag == core + "bool" && v.is_boolean()) ||
            (tag == core + "float" && v.is_number())) {
            if (tag == core + "float") v = v.get<double>();
            out = v;
            return true;
        }
        error = at(n.Mark()) + ": '" + shorten(s) + "' is not a valid " + tag.substr(tag.rfind(':') + 1) +
                (tag.rfind(core, 0) == 0 ? "" : " (unsupported tag " + tag + ")");
        return false;
    }
};

/* line:column (1-based) of byte offset `pos` in `text`. */
std::string line_col(const std::string& text, size_t pos) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < text.size(); ++i) {
        if (text[i] == '\n') {
            ++line;
            col = 1;
        } else {
            ++col;
        }
    }
    return std::to_string(line) + ":" + std::to_string(col);
}

}  // namespace

// ---- ids and topics ------------------------------------------------------------------------

bool valid_task_id(const std::string& id) { return cpn::is_valid_task_id(id); }

std::string generate_task_id() {
    std::random_device rd;
    std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    uint64_t hi = gen(), lo = gen();
    hi = (hi & 0xffffffffffff0fffull) | 0x0000000000004000ull;  // version 4
    lo = (lo & 0x3fffffffffffffffull) | 0x8000000000000000ull;  // variant 10
    char buf[40];
    std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                  static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                  static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xffffffffffffull));
    return buf;
}

std::string check_topic_level(const std::string& name, const std::string& what) {
    if (name.empty()) return what + ": must not be empty";
    if (name.size() > 128) return what + ": '" + shorten(name) + "' is longer than 128 characters";
    for (char c : name) {
        if (c == '/' || c == '+' || c == '#' || c == '\0')
            return what + ": '" + shorten(name) + "' must not contain '/', '+' or '#'";
    }
    return "";
}

std::string request_topic(bool queue, const std::string& name, const std::string& verb) {
    if (queue) return std::string(kTopicRoot) + "queues/" + name + "/" + verb;
    return std::string(kTopicRoot) + "nodes/" + name + "/task/" + verb;
}

std::string reply_topic(const std::string& client_id) {
    std::string id = client_id;
    for (char& c : id)
        if (c == '/' || c == '+' || c == '#' || c == '\0') c = '_';
    if (id.empty()) id = "cpnctl";
    return std::string(kReplyPrefix) + id;
}

std::pair<std::string, std::string> split_node_topic(const std::string& topic) {
    const std::string base = std::string(kTopicRoot) + "nodes/";
    if (topic.rfind(base, 0) != 0) return {"", ""};
    const size_t slash = topic.find('/', base.size());
    if (slash == std::string::npos) return {topic.substr(base.size()), ""};
    return {topic.substr(base.size(), slash - base.size()), topic.substr(slash + 1)};
}

// ---- task files ----------------------------------------------------------------------------

std::string TaskFile::locate(const std::string& pointer) const {
    std::string p = pointer;
    while (true) {
        auto it = where.find(p);
        if (it != where.end()) return name + ":" + it->second;
        if (p.empty()) return name;
        p = p.substr(0, p.rfind('/'));
    }
}

Result<TaskFile> parse_task_text(const std::string& text, const std::string& name, FileFormat format) {
    TaskFile tf;
    tf.name = name;
    if (format == FileFormat::automatic) {
        const std::string l = lower(name);
        if (ends_with(l, ".json")) format = FileFormat::json;
        else if (ends_with(l, ".yaml") || ends_with(l, ".yml")) format = FileFormat::yaml;
        else {
            const size_t first = text.find_first_not_of(" \t\r\n");
            format = (first != std::string::npos && (text[first] == '{' || text[first] == '['))
                         ? FileFormat::json
                         : FileFormat::yaml;
        }
    }
    if (text.find_first_not_of(" \t\r\n") == std::string::npos)
        return Result<TaskFile>::fail(name + ": the task file is empty");
    if (format == FileFormat::json) {
        try {
            tf.doc = json::parse(text);
        } catch (const json::parse_error& e) {
            std::string what = e.what();
            // "[json.exception.parse_error.101] parse error at line 3, column 5: syntax error ..."
            const size_t colon = what.find(": ", what.find("parse error"));
            std::string detail = colon == std::string::npos ? what : what.substr(colon + 2);
            const size_t pos = e.byte > 0 ? e.byte - 1 : 0;
            return Result<TaskFile>::fail(name + ":" + line_col(text, pos) + ": not valid JSON: " + detail);
        }
        // Positions for later messages: JSON is YAML, and yaml-cpp keeps marks (best effort).
        try {
            TaskFile located;
            located.name = name;
            YamlConverter conv{located, {}};
            json ignored;
            if (conv.convert(YAML::Load(text), "", ignored)) tf.where = std::move(located.where);
        } catch (const std::exception&) {
        }
    } else {
        YAML::Node root;
        try {
            root = YAML::Load(text);
        } catch (const YAML::ParserException& e) {
            return Result<TaskFile>::fail(name + ":" + mark_text(e.mark) + ": not valid YAML: " + e.msg);
        } catch (const YAML::Exception& e) {
            return Result<TaskFile>::fail(name + ":" + mark_text(e.mark) + ": not valid YAML: " + e.msg);
        }
        YamlConverter conv{tf, {}};
        try {
            if (!conv.convert(root, "", tf.doc)) return Result<TaskFile>::fail(conv.error);
        } catch (const YAML::Exception& e) {
            return Result<TaskFile>::fail(name + ":" + mark_text(e.mark) + ": " + e.msg);
        }
    }
    if (!tf.doc.is_object())
        return Result<TaskFile>::fail(tf.locate("") + ": a task file must be a mapping of fields (schema_version, "
                                                      "id, kind, params, ...), got " +
                                      describe_value(tf.doc));
    return Result<TaskFile>::ok(std::move(tf));
}

Result<TaskFile> load_task_file(const std::string& path) {
    std::string text;
    std::string name = path;
    if (path == "-") {
        name = "<stdin>";
        text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else {
        Result<std::string> r = read_file(path, 64ull << 20);
        if (!r) return Result<TaskFile>::fail(r.error);
        text = std::move(*r);
    }
    return parse_task_text(text, name);
}

std::string validate_submit(const json& doc, bool complete,
                            const std::function<std::string(const std::string&)>& where) {
    if (!doc.is_object())
        return where("") + ": a task must be a mapping of fields, got " + describe_value(doc);
    auto bad = [&](const std::string& ptr, const std::string& field, const std::string& problem) {
        return where(ptr) + ": " + field + ": " + problem;
    };
    static const std::vector<std::string> kKnown = {"schema_version", "id",       "kind",      "params",
                                                    "requirements",   "priority", "timeout_s", "input"};
    for (const auto& [k, v] : doc.items()) {
        (void)v;
        if (contains(kKnown, k)) continue;
        const std::string ptr = "/" + escape_pointer_token(k);
        if (k == "reply_to" || k == "correlation")
            return bad(ptr, k, "is set by cpnctl (its reply topic, and the task id as correlation); remove it");
        return bad(ptr, shorten(k), "unknown field (known: " + join(kKnown) + ")");
    }
    if (doc.contains("schema_version")) {
        const json& v = doc["schema_version"];
        if (!v.is_number_integer() || v.get<int64_t>() != 1)
            return bad("/schema_version", "schema_version", "must be 1 (the protocol version cpnctl speaks), got " +
                                                                describe_value(v));
    }
    if (doc.contains("id")) {
        const json& v = doc["id"];
        if (!v.is_string()) return bad("/id", "id", "must be a string, got " + describe_value(v));
        if (!valid_task_id(v.get<std::string>()))
            return bad("/id", "id",
                       "'" + shorten(v.get<std::string>()) +
                           "' is not a task id (1 to 128 letters, digits, '.', '_', ':' or '-', starting with a "
                           "letter or digit)");
    }
    if (doc.contains("kind")) {
        const json& v = doc["kind"];
        if (!v.is_string()) return bad("/kind", "kind", "must be a string, got " + describe_value(v));
        if (v.get<std::string>().empty()) return bad("/kind", "kind", "must not be empty");
    } else if (complete) {
        return where("") + ": kind: missing (give --kind KIND or a 'kind' field in the task file)";
    }
    if (complete && !doc.contains("id")) return where("") + ": id: missing";
    if (doc.contains("params") && !doc["params"].is_object())
        return bad("/params", "params", "must be a mapping of parameters, got " + describe_value(doc["params"]));
    if (doc.contains("priority")) {
        const json& v = doc["priority"];
        if (!v.is_number_integer()) return bad("/priority", "priority", "must be an integer, got " + describe_value(v));
        const int64_t p = v.get<int64_t>();
        if (v.is_number_unsigned() && v.get<uint64_t>() > 100) return bad("/priority", "priority", "must be between -100 and 100, got " + v.dump());
        if (p < -100 || p > 100)
            return bad("/priority", "priority", "must be between -100 and 100, got " + std::to_string(p));
    }
    if (doc.contains("timeout_s")) {
        const json& v = doc["timeout_s"];
        if (!v.is_number_integer())
            return bad("/timeout_s", "timeout_s", "must be an integer number of seconds, got " + describe_value(v));
        if ((v.is_number_unsigned() && v.get<uint64_t>() > 86400) || v.get<int64_t>() < 1 || v.get<int64_t>() > 86400)
            return bad("/timeout_s", "timeout_s", "must be between 1 and 86400 seconds, got " + v.dump());
    }
    if (doc.contains("requirements")) {
        const json& r = doc["requirements"];
        if (!r.is_object())
            return bad("/requirements", "requirements", "must be a mapping, got " + describe_value(r));
        for (const auto& [k, v] : r.items()) {
            const std::string ptr = "/requirements/" + escape_pointer_token(k);
            const std::string field = "requirements." + shorten(k);
            if (k == "device_class") {
                if (!v.is_string() || !contains(device_classes(), v.get<std::string>()))
                    return bad(ptr, field, "must be one of " + join(device_classes()) + ", got " + describe_value(v));
            } else if (k == "backend") {
                if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > 32)
                    return bad(ptr, field, "must be a backend name (1 to 32 characters), got " + describe_value(v));
            } else if (k == "min_memory_bytes") {
                if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
                    return bad(ptr, field, "must be a non-negative integer (bytes), got " + describe_value(v));
            } else if (k == "precision") {
                if (!v.is_string() || !contains(precisions(), v.get<std::string>()))
                    return bad(ptr, field, "must be one of " + join(precisions()) + ", got " + describe_value(v));
            } else if (k == "device_id") {
                if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > 128)
                    return bad(ptr, field, "must be a device id (1 to 128 characters), got " + describe_value(v));
            } else {
                return bad(ptr, field, "unknown requirement (known: device_class, backend, min_memory_bytes, "
                                       "precision, device_id)");
            }
        }
    }
    if (doc.contains("input")) {
        const json& in = doc["input"];
        if (!in.is_object()) return bad("/input", "input", "must be a mapping with base64 or path, got " + describe_value(in));
        for (const auto& [k, v] : in.items()) {
            (void)v;
            if (k != "base64" && k != "path")
                return bad("/input/" + escape_pointer_token(k), "input." + shorten(k),
                           "unknown field (known: base64, path)");
        }
        if (in.contains("base64") == in.contains("path"))
            return bad("/input", "input", "takes exactly one of base64 (inline data) or path (a file on the node)");
        if (in.contains("base64")) {
            const json& b = in["base64"];
            std::string decoded;
            if (!b.is_string()) return bad("/input/base64", "input.base64", "must be a string, got " + describe_value(b));
            if (!base64_decode(b.get<std::string>(), decoded))
                return bad("/input/base64", "input.base64", "is not valid base64 (RFC 4648, with padding)");
        } else {
            const json& p = in["path"];
            if (!p.is_string()) return bad("/input/path", "input.path", "must be a string, got " + describe_value(p));
            if (p.get<std::string>().empty() || p.get<std::string>()[0] != '/')
                return bad("/input/path", "input.path",
                           "'" + shorten(p.get<std::string>()) + "' must be an absolute path on the node");
        }
    }
    return "";
}

json typed_param_value(const std::string& text) {
    if (text.size() >= 2 && (text.front() == '"' || text.front() == '\'') && text.back() == text.front())
        return text.substr(1, text.size() - 2);
    if (text == "true") return true;
    if (text == "false") return false;
    static const std::regex kInt("[-+]?[0-9]+");
    static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
    if (std::regex_match(text, kInt)) {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (errno == 0 && *end == '\0') return static_cast<int64_t>(v);
        if (text[0] != '-') {
            errno = 0;
            const unsigned long long u = std::strtoull(text.c_str(), &end, 10);
            if (errno == 0 && *end == '\0') return static_cast<uint64_t>(u);
        }
        return text;
    }
    if (std::regex_match(text, kFloat)) {
        errno = 0;
        char* end = nullptr;
        const double d = std::strtod(text.c_str(), &end);
        if (errno == 0 && *end == '\0' && std::isfinite(d)) return d;
    }
    return text;
}

Result<std::pair<std::string, json>> parse_param(const std::string& kv) {
    using R = Result<std::pair<std::string, json>>;
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) return R::fail("--param '" + shorten(kv) + "': expected key=value");
    const std::string key = kv.substr(0, eq);
    if (key.empty()) return R::fail("--param '" + shorten(kv) + "': the key before '=' is empty");
    if (key.find_first_of(" \t\r\n") != std::string::npos)
        return R::fail("--param '" + shorten(kv) + "': the key must not contain spaces");
    return R::ok({key, typed_param_value(kv.substr(eq + 1))});
}

Result<json> build_submit(const std::optional<TaskFile>& file, const SubmitFlags& f) {
    using R = Result<json>;
    json doc = file ? file->doc : json::object();
    if (file) {
        std::string e = validate_submit(doc, false, [&](const std::string& p) { return file->locate(p); });
        if (!e.empty()) return R::fail(e);
    }
    if (!doc.contains("schema_version")) doc["schema_version"] = 1;
    if (f.id) {
        if (!valid_task_id(*f.id))
            return R::fail("--id: '" + shorten(*f.id) +
                           "' is not a task id (1 to 128 letters, digits, '.', '_', ':' or '-', starting with a "
                           "letter or digit)");
        doc["id"] = *f.id;
    }
    if (f.kind) {
        if (f.kind->empty()) return R::fail("--kind: must not be empty");
        doc["kind"] = *f.kind;
    }
    if (f.params_json || !f.params.empty()) {
        if (!doc.contains("params")) doc["params"] = json::object();
    }
    if (f.params_json) {
        json p;
        try {
            p = json::parse(*f.params_json);
        } catch (const json::parse_error& e) {
            std::string what = e.what();
            const size_t colon = what.find(": ", what.find("parse error"));
            return R::fail("--params-json: not valid JSON: " + (colon == std::string::npos ? what : what.substr(colon + 2)));
        }
        if (!p.is_object()) return R::fail("--params-json: must be a JSON object, got " + describe_value(p));
        for (const auto& [k, v] : p.items()) doc["params"][k] = v;
    }
    for (const std::string& kv : f.params) {
        auto r = parse_param(kv);
        if (!r) return R::fail(r.error);
        doc["params"][r->first] = r->second;
    }
    if (f.input_file && f.input_path)
        return R::fail("--input-file and --input-path exclude each other: give the input inline or by path");
    if (f.input_file) {
        Result<std::string> bytes = read_file(*f.input_file, kMaxInlineFileBytes);
        if (!bytes) return R::fail("--input-file: " + bytes.error);
        doc["input"] = json{{"base64", base64_encode(*bytes)}};
    }
    if (f.input_path) {
        if (f.input_path->empty() || (*f.input_path)[0] != '/')
            return R::fail("--input-path: '" + shorten(*f.input_path) +
                           "' must be an absolute path on the node (use --input-file to send a local file)");
        doc["input"] = json{{"path", *f.input_path}};
    }
    if (f.priority) {
        if (*f.priority < -100 || *f.priority > 100)
            return R::fail("--priority: must be between -100 and 100, got " + std::to_string(*f.priority));
        doc["priority"] = *f.priority;
    }
    if (f.timeout_s) {
        if (*f.timeout_s < 1 || *f.timeout_s > 86400)
            return R::fail("--task-timeout: must be between 1 and 86400 seconds, got " + std::to_string(*f.timeout_s));
        doc["timeout_s"] = *f.timeout_s;
    }
    auto req = [&]() -> json& {
        if (!doc.contains("requirements")) doc["requirements"] = json::object();
        return doc["requirements"];
    };
    if (f.device_class) {
        if (!contains(device_classes(), *f.device_class))
            return R::fail("--device-class: '" + shorten(*f.device_class) + "' is not one of " + join(device_classes()));
        req()["device_class"] = *f.device_class;
    }
    if (f.backend) {
        if (f.backend->empty() || f.backend->size() > 32)
            return R::fail("--backend: must be a backend name of 1 to 32 characters");
        req()["backend"] = *f.backend;
    }
    if (f.min_memory_bytes) {
        if (*f.min_memory_bytes < 0)
            return R::fail("--min-memory: must be a non-negative number of bytes, got " +
                           std::to_string(*f.min_memory_bytes));
        req()["min_memory_bytes"] = static_cast<uint64_t>(*f.min_memory_bytes);
    }
    if (f.precision) {
        if (!contains(precisions(), *f.precision))
            return R::fail("--precision: '" + shorten(*f.precision) + "' is not one of " + join(precisions()));
        req()["precision"] = *f.precision;
    }
    if (f.device_id) {
        if (f.device_id->empty() || f.device_id->size() > 128)
            return R::fail("--device-id: must be a device id of 1 to 128 characters");
        req()["device_id"] = *f.device_id;
    }
    if (!doc.contains("kind"))
        return R::fail(std::string("no kind: give --kind KIND") +
                       (file ? " or a 'kind' field in " + file->name : " or a task file with a 'kind' field"));
    if (!doc.contains("id")) doc["id"] = generate_task_id();
    const std::string origin = file ? file->name + " with the command-line flags" : "the command-line flags";
    std::string e = validate_submit(doc, true, [&](const std::string&) { return origin; });
    if (!e.empty()) return R::fail(e);
    return R::ok(std::move(doc));
}

// ---- encoding ------------------------------------------------------------------------------

std::string base64_encode(const std::string& bytes) {
    return cpn::base64_encode(bytes);
}

bool base64_decode(const std::string& in, std::string& out) {
    return cpn::base64_decode(in, out);
}

std::string sha256_hex(const std::string& bytes) {
    return cpn::sha256_hex(bytes);
}

Result<std::string> read_file(const std::string& path, uint64_t max_bytes) {
    using R = Result<std::string>;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return R::fail(path + ": " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) return R::fail(path + ": is a directory, not a file");
    if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > max_bytes)
        return R::fail(path + ": is " + std::to_string(st.st_size) + " bytes, more than the " +
                       std::to_string(max_bytes) + " this accepts");
    std::ifstream in(path, std::ios::binary);
    if (!in) return R::fail(path + ": cannot be opened: " + std::strerror(errno));
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad()) return R::fail(path + ": read error");
    std::string data = s.str();
    if (data.size() > max_bytes) return R::fail(path + ": larger than the " + std::to_string(max_bytes) + " bytes this accepts");
    return R::ok(std::move(data));
}

Result<std::string> read_secret_file(const std::string& path, const std::string& what) {
    using R = Result<std::string>;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return R::fail(what + " " + path + ": " + std::strerror(errno));
    if ((st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return R::fail(what + " " + path + " is readable or writable by group or others (mode " + mode +
                       "); refusing to use it: run 'chmod 600 " + path + "'");
    }
    Result<std::string> r = read_file(path, 1 << 20);
    if (!r) return R::fail(what + " " + r.error);
    std::string v = std::move(*r);
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
    if (v.empty()) return R::fail(what + " " + path + " is empty");
    return R::ok(std::move(v));
}

// ---- following a task ----------------------------------------------------------------------

bool is_terminal_state(const std::string& s) {
    return s == "SUCCEEDED" || s == "FAILED" || s == "TIMED_OUT" || s == "CANCELED" || s == "REJECTED";
}

int exit_code_for_state(const std::string& s) {
    if (s == "FAILED" || s == "TIMED_OUT" || s == "CANCELED") return kExitTaskFailed;
    if (s == "REJECTED") return kExitRejected;
    if (s == "UNKNOWN") return kExitUnknown;
    return kExitOk;
}

bool TaskTracker::mine(const json& msg) const {
    const auto it = msg.find("task_id");
    if (it == msg.end() || !it->is_string()) return false;
    if (it->get<std::string>() == id_) return true;
    // A rejected submit whose id the node could not read carries task_id "" and our correlation.
    const auto c = msg.find("correlation");
    return it->get<std::string>().empty() && c != msg.end() && c->is_string() && c->get<std::string>() == id_;
}

std::string TaskTracker::state() const {
    if (state_.is_null()) return "";
    return state_.value("state", std::string());
}

TaskTracker::Update TaskTracker::offer(const json& msg) {
    if (!msg.is_object() || !mine(msg)) return Update::ignored;
    const std::string type = msg.value("type", std::string());
    const auto v = msg.find("version");
    if (v == msg.end() || !v->is_number_integer()) return Update::ignored;
    const int64_t version = v->get<int64_t>();
    if (type == "task_state") {
        const auto s = msg.find("state");
        if (s == msg.end() || !s->is_string()) return Update::ignored;
        if (version < version_) return Update::stale;
        if (version == version_) {
            // The same version again (a re-send, a status answer, or a cancel answered while
            // running: same state with cancel_requested): keep what it adds.
            if (msg.value("cancel_requested", false) && !state_.value("cancel_requested", false)) state_ = msg;
            return Update::duplicate;
        }
        version_ = version;
        state_ = msg;
        history_.push_back(s->get<std::string>());
        progress_.reset();
        progress_message_.clear();
        return Update::state;
    }
    if (type == "task_progress") {
        const auto p = msg.find("progress");
        if (p == msg.end() || !p->is_number()) return Update::ignored;
        if (version < version_ || terminal()) return Update::stale;
        progress_ = std::clamp(p->get<double>(), 0.0, 1.0);
        progress_message_ = msg.value("message", std::string());
        return Update::progress;
    }
    return Update::ignored;
}

namespace {
std::optional<int64_t> int_field(const json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int64_t>();
}
std::string str_field(const json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return "";
    return it->get<std::string>();
}
}  // namespace

std::string format_state_summary(const json& m) {
    std::vector<std::pair<std::string, std::string>> rows;
    auto add = [&](const std::string& k, const std::string& v) {
        if (!v.empty()) rows.emplace_back(k, v);
    };
    add("task", str_field(m, "task_id"));
    add("state", str_field(m, "state") + (m.value("cancel_requested", false) ? " (cancel requested)" : ""));
    add("node", str_field(m, "node_id"));
    add("kind", str_field(m, "kind"));
    add("queue", str_field(m, "queue"));
    const json result = m.contains("result") && m["result"].is_object() ? m["result"] : json::object();
    const json metrics =
        result.contains("metrics") && result["metrics"].is_object() ? result["metrics"] : json::object();
    std::string device = str_field(m, "device_id");
    if (device.empty()) device = str_field(metrics, "device_id");
    const std::string backend = str_field(metrics, "backend");
    add("device", device.empty() ? "" : device + (backend.empty() ? "" : " (" + backend + ")"));
    std::optional<int64_t> queue_ms = int_field(metrics, "queue_ms"), run_ms = int_field(metrics, "run_ms");
    const auto accepted = int_field(m, "accepted_ms"), started = int_field(m, "started_ms"),
               finished = int_field(m, "finished_ms");
    if (!queue_ms && accepted && started && *started >= *accepted) queue_ms = *started - *accepted;
    if (!run_ms && started && finished && *finished >= *started) run_ms = *finished - *started;
    if (queue_ms) add("queue_ms", std::to_string(*queue_ms));
    if (run_ms) add("run_ms", std::to_string(*run_ms));
    if (auto a = int_field(m, "attempts")) add("attempts", std::to_string(*a));
    if (metrics.contains("energy_j") && metrics["energy_j"].is_number()) {
        char b[32];
        std::snprintf(b, sizeof b, "%.3f", metrics["energy_j"].get<double>());
        add("energy_j", b);
    }
    add("code", str_field(m, "code"));
    add("reason", str_field(m, "reason"));
    if (result.contains("output") && result["output"].is_object()) {
        const json& o = result["output"];
        std::string out = std::to_string(o.value("size", int64_t{0})) + " bytes, sha256 " + str_field(o, "sha256");
        if (o.contains("path")) out += ", on the node at " + str_field(o, "path");
        add("output", out);
    }
    if (result.contains("data") && !result["data"].is_null() && !result["data"].empty()) add("data", shorten(result["data"].dump(), 200));
    size_t w = 0;
    for (const auto& r : rows) w = std::max(w, r.first.size());
    std::string out;
    for (const auto& r : rows) out += r.first + std::string(w + 2 - r.first.size(), ' ') + r.second + "\n";
    return out;
}

std::string format_state_line(const json& m) {
    std::string line = str_field(m, "task_id") + ": " + str_field(m, "state");
    const std::string node = str_field(m, "node_id");
    if (!node.empty()) line += " on " + node;
    if (auto v = int_field(m, "version")) line += " (version " + std::to_string(*v) + ")";
    if (m.value("cancel_requested", false)) line += ", cancel requested";
    const std::string code = str_field(m, "code"), reason = str_field(m, "reason");
    if (!code.empty() || !reason.empty()) line += ": " + code + (code.empty() || reason.empty() ? "" : ": ") + reason;
    return line;
}

// ---- nodes ---------------------------------------------------------------------------------

bool NodeTable::add(const std::string& topic, const std::string& payload) {
    const auto [node, rest] = split_node_topic(topic);
    if (node.empty() || (rest != "state" && rest != "inventory" && rest != "capacity")) return false;
    json doc;
    if (!payload.empty()) {
        doc = json::parse(payload, nullptr, false);
        if (doc.is_discarded() || !doc.is_object()) return false;
    }
    auto it = nodes_.find(node);
    if (doc.is_null() && it == nodes_.end()) return true;
    Parts& p = nodes_[node];
    if (rest == "state") p.state = doc;
    else if (rest == "inventory") p.inventory = doc;
    else p.capacity = doc;
    if (p.state.is_null() && p.inventory.is_null() && p.capacity.is_null()) nodes_.erase(node);
    return true;
}

std::vector<NodeRow> NodeTable::rows() const {
    std::vector<NodeRow> out;
    for (const auto& [node, p] : nodes_) {
        NodeRow r;
        r.node = node;
        r.state = "-";
        if (p.state.is_object()) {
            const std::string type = str_field(p.state, "type");
            std::string st = str_field(p.state, "state");
            if (st.empty()) st = type == "birth" ? "online" : type == "death" ? "offline" : "-";
            r.state = st;
            r.site = str_field(p.state, "site");
            r.state_timestamp_ms = int_field(p.state, "timestamp_ms");
            r.bdseq = int_field(p.state, "bdseq");
            r.agent_version = str_field(p.state, "agent_version");
            if (type == "death") r.death_reason = str_field(p.state, "reason");
        }
        if (p.inventory.is_object() && p.inventory.contains("inventory") && p.inventory["inventory"].is_object()) {
            const json& inv = p.inventory["inventory"];
            r.has_inventory = true;
            if (r.site.empty() && inv.contains("node") && inv["node"].is_object()) r.site = str_field(inv["node"], "site");
            if (r.agent_version.empty()) r.agent_version = str_field(inv, "agent_version");
            if (inv.contains("devices") && inv["devices"].is_array()) {
                for (const json& d : inv["devices"]) {
                    if (!d.is_object()) continue;
                    std::string cls = str_field(d, "class");
                    if (cls.empty()) cls = str_field(d, "device_class");
                    if (cls.empty()) cls = "other";
                    r.device_counts[cls]++;
                }
            }
        }
        if (p.capacity.is_object()) {
            r.capacity_status = str_field(p.capacity, "status");
            if (r.capacity_status == "measured") {
                const json& c = p.capacity.contains("capacity") ? p.capacity["capacity"] : json();
                if (c.is_object() && c.contains("l2") && c["l2"].is_object() && c["l2"].contains("node") &&
                    c["l2"]["node"].is_number())
                    r.l2 = c["l2"]["node"].get<double>();
            }
        }
        out.push_back(std::move(r));
    }
    return out;
}

std::string device_summary(const std::map<std::string, int>& counts) {
    std::vector<std::string> order = device_classes();
    for (const auto& [cls, n] : counts) {
        (void)n;
        if (!contains(order, cls)) order.push_back(cls);
    }
    std::string out;
    for (const std::string& cls : order) {
        const auto it = counts.find(cls);
        if (it == counts.end() || it->second <= 0) continue;
        out += (out.empty() ? "" : ", ") + (it->second == 1 ? cls : std::to_string(it->second) + " " + cls);
    }
    return out.empty() ? "-" : out;
}

std::string format_age(std::optional<int64_t> ms) {
    if (!ms || *ms < 0) return "-";
    const int64_t s = *ms / 1000;
    if (s < 120) return std::to_string(s) + "s";
    if (s < 120 * 60) return std::to_string(s / 60) + "m";
    if (s < 48 * 3600) return std::to_string(s / 3600) + "h";
    return std::to_string(s / 86400) + "d";
}

namespace {
std::string format_l2(std::optional<double> l2) {
    if (!l2) return "-";
    char b[32];
    if (*l2 >= 100) std::snprintf(b, sizeof b, "%.0f", *l2);
    else if (*l2 >= 10) std::snprintf(b, sizeof b, "%.1f", *l2);
    else if (*l2 >= 1) std::snprintf(b, sizeof b, "%.2f", *l2);
    else std::snprintf(b, sizeof b, "%.3f", *l2);
    return b;
}
std::optional<int64_t> age_of(const NodeRow& r, int64_t now) {
    if (!r.state_timestamp_ms) return std::nullopt;
    return std::max<int64_t>(0, now - *r.state_timestamp_ms);
}
}  // namespace

std::string render_nodes_table(const std::vector<NodeRow>& rows, int64_t now) {
    std::vector<std::vector<std::string>> cells = {{"NODE", "STATE", "SITE", "DEVICES", "L2", "AGE"}};
    for (const NodeRow& r : rows)
        cells.push_back({r.node, r.state, r.site.empty() ? "-" : r.site,
                         r.has_inventory ? device_summary(r.device_counts) : "-", format_l2(r.l2),
                         format_age(age_of(r, now))});
    std::vector<size_t> w(6, 0);
    for (const auto& row : cells)
        for (size_t i = 0; i < row.size(); ++i) w[i] = std::max(w[i], row[i].size());
    std::string out;
    for (const auto& row : cells) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) line += std::string(w[i] + 2 - row[i].size(), ' ');
        }
        out += line + "\n";
    }
    return out;
}

json nodes_json(const std::vector<NodeRow>& rows, int64_t now) {
    json out = json::array();
    for (const NodeRow& r : rows) {
        json j;
        j["node"] = r.node;
        j["state"] = r.state;
        j["site"] = r.site.empty() ? json(nullptr) : json(r.site);
        j["devices"] = r.has_inventory ? json(r.device_counts) : json(nullptr);
        j["devices_summary"] = r.has_inventory ? device_summary(r.device_counts) : "-";
        j["capacity_status"] = r.capacity_status.empty() ? json(nullptr) : json(r.capacity_status);
        j["l2"] = r.l2 ? json(*r.l2) : json(nullptr);
        j["state_timestamp_ms"] = r.state_timestamp_ms ? json(*r.state_timestamp_ms) : json(nullptr);
        const auto age = age_of(r, now);
        j["age_s"] = age ? json(static_cast<double>(*age) / 1000.0) : json(nullptr);
        j["bdseq"] = r.bdseq ? json(*r.bdseq) : json(nullptr);
        j["agent_version"] = r.agent_version.empty() ? json(nullptr) : json(r.agent_version);
        if (!r.death_reason.empty()) j["reason"] = r.death_reason;
        out.push_back(std::move(j));
    }
    return out;
}

// ---- watch ---------------------------------------------------------------------------------

std::string format_watch_line(const std::string& topic, const std::string& payload, bool retained, int64_t now) {
    char ts[32];
    {
        const std::time_t t = static_cast<std::time_t>(now / 1000);
        std::tm tm {};
        localtime_r(&t, &tm);
        std::snprintf(ts, sizeof ts, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                      static_cast<int>(now % 1000));
    }
    const auto [node, rest] = split_node_topic(topic);
    std::string line = std::string(ts) + "  " + (node.empty() ? topic : node) + "  ";
    const std::string suffix = retained ? "  [retained]" : "";
    const json m = json::parse(payload, nullptr, false);
    if (m.is_discarded() || !m.is_object()) {
        if (payload.empty()) return line + (rest.empty() ? topic : rest) + "  (empty: retained message cleared)" + suffix;
        return line + (rest.empty() ? topic : rest) + "  (not a JSON object: " + shorten(payload, 80) + ")" + suffix;
    }
    const std::string type = str_field(m, "type");
    if (rest == "state") {
        std::string st = str_field(m, "state");
        if (st.empty()) st = type;
        line += "-  " + st;
        std::vector<std::string> extra;
        if (auto b = int_field(m, "bdseq")) extra.push_back("bdseq " + std::to_string(*b));
        if (type == "death") extra.push_back(str_field(m, "reason"));
        if (!str_field(m, "site").empty()) extra.push_back("site " + str_field(m, "site"));
        if (!extra.empty()) line += " (" + join(extra) + ")";
        return line + suffix;
    }
    std::string task = str_field(m, "task_id");
    const std::string event_prefix = "task/event/";
    if (task.empty() && rest.rfind(event_prefix, 0) == 0) task = rest.substr(event_prefix.size());
    line += (task.empty() ? "-" : task) + "  ";
    if (type == "task_progress") {
        char pct[16];
        const double p = m.contains("progress") && m["progress"].is_number() ? m["progress"].get<double>() : 0.0;
        std::snprintf(pct, sizeof pct, "%.0f%%", p * 100.0);
        line += std::string("progress ") + pct;
        if (auto v = int_field(m, "version")) line += " (version " + std::to_string(*v) + ")";
        if (!str_field(m, "message").empty()) line += " " + str_field(m, "message");
        return line + suffix;
    }
    if (type == "task_state") {
        line += str_field(m, "state");
        if (auto v = int_field(m, "version")) line += " v" + std::to_string(*v);
        if (!str_field(m, "kind").empty()) line += " " + str_field(m, "kind");
        if (!str_field(m, "device_id").empty()) line += " on " + str_field(m, "device_id");
        if (m.value("cancel_requested", false)) line += ", cancel requested";
        const std::string code = str_field(m, "code"), reason = str_field(m, "reason");
        if (!code.empty() || !reason.empty())
            line += "  " + code + (code.empty() || reason.empty() ? "" : ": ") + reason;
        return line + suffix;
    }
    return line + (type.empty() ? rest : type) + suffix;
}

json watch_json(const std::string& topic, const std::string& payload, bool retained, int64_t now) {
    json m = json::parse(payload, nullptr, false);
    if (m.is_discarded()) m = payload;
    return json{{"received_ms", now}, {"topic", topic}, {"retained", retained}, {"message", m}};
}

}  // namespace cpnctl
