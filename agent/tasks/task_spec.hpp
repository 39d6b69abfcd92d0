// task_spec.hpp: admission of a task submitted from outside (MQTT payload or cpnctl file). Pure:
// it parses and validates, and never touches the scheduler, so every way a submit can be wrong
// has a unit test. Nothing from a payload reaches a shell, a path outside the allowed
// directories, or an unchecked allocation size.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.hpp"
#include "core/task_id.hpp"
#include "inventory/device.hpp"

namespace cpn::tasks {

/* What the node accepts (from the config): sizes and where input files may be read from. */
struct AdmissionLimits {
    size_t max_submit_bytes = 4u << 20;          // the whole submit payload
    size_t max_inline_input_bytes = 1u << 20;    // decoded inline input
    uint64_t max_file_input_bytes = 1ull << 30;  // an input file by reference
    std::vector<std::string> allowed_input_dirs; // absolute; empty: no file inputs at all
    int max_timeout_s = 24 * 3600;
    std::string reply_prefix = "cpn/v1/replies/";  // reply topics must lie under it
};

/* Checks a reply topic (MQTT 5 Response Topic or the payload's reply_to): under `prefix`, at
 * most 256 bytes, no wildcard or NUL. Returns "" when it is fine, else what is wrong. */
std::string check_reply_topic(const std::string& topic, const std::string& prefix);

/* A task kind the node can run (the registry the workloads add to). */
struct KindInfo {
    std::string name;        // "echo", "bench", "render", "infer"
    bool idempotent = true;  // re-run after an agent restart instead of failing it
    std::string description;
};
/* Kinds available on this node, in registration order. */
std::vector<KindInfo> registered_kinds();
void register_kind(KindInfo k);
std::optional<KindInfo> find_kind(const std::string& name);

struct Requirements {
    std::optional<DeviceClass> device_class;
    std::string backend;             // "" = any
    uint64_t min_memory_bytes = 0;
    std::optional<Precision> precision;
    std::string device_id;           // "" = any; a specific device of this node
};

struct InputRef {
    bool present = false;
    bool inline_data = false;
    std::string data;                // inline: the decoded bytes (binary-safe)
    std::string path;                // by reference: the canonical path, inside an allowed directory
    uint64_t size = 0;
};

struct TaskSpec {
    std::string id;
    std::string kind;
    nlohmann::json params = nlohmann::json::object();
    Requirements requirements;
    int priority = 0;                // -100..100, higher first
    int timeout_s = 300;
    InputRef input;
    std::string reply_to;     // MQTT 3.1.1 form of the Response Topic ("" = none)
    std::string correlation;  // MQTT 3.1.1 form of the Correlation Data
};

/* Why a submit is refused; `code` is stable for machines, `message` says what and where for a
 * person. Codes: malformed, unsupported_schema_version, invalid_field, unknown_kind, oversize,
 * path_not_allowed, input_unreadable, unsatisfiable. */
struct Rejection {
    std::string code;
    std::string message;
    std::string id;  // the task id when it could be read ("" otherwise)
};

/* Parses and validates a submit payload. On failure returns the rejection (with the id when it
 * was readable, so the submitter can match the answer). */
std::variant<TaskSpec, Rejection> parse_submit(const std::string& payload, const AdmissionLimits& limits);

/* The devices of `inv` that meet the requirements (healthy ones with a runtime path), or a
 * rejection "unsatisfiable" that says, per requirement, what the node has instead. */
std::variant<std::vector<const Device*>, Rejection> eligible_devices(const TaskSpec& spec, const Inventory& inv);

/* Decodes standard base64 (RFC 4648, padding required); false on any other character. */
bool decode_base64(const std::string& in, std::string& out);

}  // namespace cpn::tasks
