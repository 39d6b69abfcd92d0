// params_json.cpp: a small strict scanner for JSON text, enough to read a flat parameter object
// ({"a": 2.5, "label": "x", "opts": {...}}) and skip whatever else it holds.
#include "params_json.hpp"

#include <charconv>
#include <cstring>
#include <system_error>

namespace cpn::cuda {
namespace {

struct Scanner {
    const char* p;
    std::string err;

    void ws() {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') ++p;
    }
    bool bad(const char* what) {
        if (err.empty()) err = what;
        return false;
    }
    /* A string literal; its raw (still escaped) contents go to `out` when given. */
    bool string(std::string* out) {
        if (*p != '"') return bad("expected a string");
        ++p;
        const char* start = p;
        while (*p != '"') {
            if (*p == '\0') return bad("unterminated string");
            if (static_cast<unsigned char>(*p) < 0x20) return bad("control character in string");
            if (*p == '\\') {
                ++p;
                if (*p == '\0') return bad("unterminated string");
            }
            ++p;
        }
        if (out != nullptr) out->assign(start, static_cast<size_t>(p - start));
        ++p;
        return true;
    }
    /* A number per the JSON grammar. */
    bool number(double* out) {
        const char* start = p;
        if (*p == '-') ++p;
        if (*p == '0') {
            ++p;
        } else if (*p >= '1' && *p <= '9') {
            while (*p >= '0' && *p <= '9') ++p;
        } else {
            return bad("expected a number");
        }
        if (*p == '.') {
            ++p;
            if (!(*p >= '0' && *p <= '9')) return bad("malformed number");
            while (*p >= '0' && *p <= '9') ++p;
        }
        if (*p == 'e' || *p == 'E') {
            ++p;
            if (*p == '+' || *p == '-') ++p;
            if (!(*p >= '0' && *p <= '9')) return bad("malformed number");
            while (*p >= '0' && *p <= '9') ++p;
        }
        if (out != nullptr) {
            /* from_chars, not strtod: independent of the host's LC_NUMERIC. */
            auto [end, ec] = std::from_chars(start, p, *out);
            if (ec == std::errc::result_out_of_range) return bad("number out of range");
            if (ec != std::errc() || end != p) return bad("malformed number");
        }
        return true;
    }
    bool literal(const char* word) {
        size_t n = std::strlen(word);
        if (std::strncmp(p, word, n) != 0) return bad("unexpected token");
        p += n;
        return true;
    }
    /* Any value, skipped; depth bounds nesting so hostile input cannot exhaust the stack. */
    bool skip(int depth) {
        if (depth > 64) return bad("nested too deeply");
        ws();
        switch (*p) {
            case '"': return string(nullptr);
            case '{': {
                ++p;
                ws();
                if (*p == '}') return ++p, true;
                for (;;) {
                    ws();
                    if (!string(nullptr)) return false;
                    ws();
                    if (*p != ':') return bad("expected ':'");
                    ++p;
                    if (!skip(depth + 1)) return false;
                    ws();
                    if (*p == ',') {
                        ++p;
                        continue;
                    }
                    if (*p == '}') return ++p, true;
                    return bad("expected ',' or '}'");
                }
            }
            case '[': {
                ++p;
                ws();
                if (*p == ']') return ++p, true;
                for (;;) {
                    if (!skip(depth + 1)) return false;
                    ws();
                    if (*p == ',') {
                        ++p;
                        continue;
                    }
                    if (*p == ']') return ++p, true;
                    return bad("expected ',' or ']'");
                }
            }
            case 't': return literal("true");
            case 'f': return literal("false");
            case 'n': return literal("null");
            default: return number(nullptr);
        }
    }
};

}  // namespace

bool json_number_member(const char* json, const char* key, double* value, bool* found,
                        std::string* error) noexcept {
    try {
        *found = false;
        std::vector<std::pair<std::string, std::string>> members;
        if (!json_object_members(json, &members, error)) return false;
        for (const auto& [name, raw] : members) {
            if (name != key) continue;
            Scanner s{raw.c_str(), {}};
            if (raw.empty() || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) || !s.number(value) ||
                *s.p != '\0') {
                *error = std::string("params_json member \"") + key + "\" is not a number";
                return false;
            }
            *found = true;  // a repeated key: the last one counts, as in most JSON readers
        }
        return true;
    } catch (...) {
        *error = "params_json: out of memory while parsing";
        return false;
    }
}

bool json_object_members(const char* json, std::vector<std::pair<std::string, std::string>>* out,
                         std::string* error) noexcept {
    try {
        out->clear();
        if (json == nullptr) json = "{}";
        Scanner s{json, {}};
        s.ws();
        if (*s.p != '{') {
            *error = "params_json is not a JSON object";
            return false;
        }
        ++s.p;
        s.ws();
        bool ok = true;
        if (*s.p == '}') {
            ++s.p;
        } else {
            for (;;) {
                s.ws();
                std::string name;
                if (!s.string(&name)) {
                    ok = false;
                    break;
                }
                s.ws();
                if (*s.p != ':') {
                    ok = s.bad("expected ':'");
                    break;
                }
                ++s.p;
                s.ws();
                const char* start = s.p;
                if (!s.skip(1)) {
                    ok = false;
                    break;
                }
                out->emplace_back(std::move(name), std::string(start, static_cast<size_t>(s.p - start)));
                s.ws();
                if (*s.p == ',') {
                    ++s.p;
                    continue;
                }
                if (*s.p == '}') {
                    ++s.p;
                    break;
                }
                ok = s.bad("expected ',' or '}'");
                break;
            }
        }
        if (ok) {
            s.ws();
            if (*s.p != '\0') ok = s.bad("trailing characters after the object");
        }
        if (!ok) {
            *error = "params_json is not valid JSON: " + s.err + " at offset " +
                     std::to_string(s.p - json);
            return false;
        }
        return true;
    } catch (...) {
        *error = "params_json: out of memory while parsing";
        return false;
    }
}

}  // namespace cpn::cuda
