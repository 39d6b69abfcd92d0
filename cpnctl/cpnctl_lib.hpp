// cpnctl_lib.hpp: the pure parts of `cpnctl` (no network): task files and flags to a submit
// document, parameter typing, task ids, following a task's state messages (de-duplication by
// version), the `nodes` table and `watch` lines. Everything here has unit tests
// (cpnctl/tests/cpnctl_lib_test.cpp). The protocol is docs/protocol.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace cpnctl {

/* Exit codes, documented in docs/cli.md ("cpnctl"). */
enum ExitCode : int {
    kExitOk = 0,          // the task SUCCEEDED, or the command was answered
    kExitTaskFailed = 1,  // the task ended FAILED, TIMED_OUT or CANCELED (or -o could not be written)
    kExitUsage = 2,       // bad command line or bad input file
    kExitBroker = 3,      // the broker is unreachable or refused us
    kExitRejected = 4,    // the task was REJECTED at admission
    kExitNoAnswer = 5,    // no (final) answer within --timeout
    kExitUnknown = 6,     // status/cancel answered UNKNOWN
};

/* A value or the message that says what is wrong and where. */
template <class T>
struct Result {
    std::optional<T> value;
    std::string error;

    static Result ok(T v) { return Result{std::move(v), {}}; }
    static Result fail(std::string e) { return Result{std::nullopt, std::move(e)}; }
    explicit operator bool() const { return value.has_value(); }
    T& operator*() { return *value; }
    const T& operator*() const { return *value; }
    T* operator->() { return &*value; }
    const T* operator->() const { return &*value; }
};

inline constexpr const char* kTopicRoot = "cpn/v1/";
inline constexpr const char* kReplyPrefix = "cpn/v1/replies/";

// ---------------------------------------------------------------------------------------------
// Ids, topics

/* True when `id` matches the protocol's task id pattern ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$. */
bool valid_task_id(const std::string& id);
/* A random UUID (version 4, lower case): always a valid task id. */
std::string generate_task_id();
/* "" when `name` can be one level of a topic (a node or queue name), else why not. */
std::string check_topic_level(const std::string& name, const std::string& what);
/* Where a request goes: cpn/v1/nodes/{node}/task/{verb} or cpn/v1/queues/{queue}/{verb}. */
std::string request_topic(bool queue, const std::string& name, const std::string& verb);
/* cpn/v1/replies/<client id>, the client id's characters that cannot be in a topic replaced. */
std::string reply_topic(const std::string& client_id);
/* The node of a topic under cpn/v1/nodes/ ("" when it is not one), and what follows it. */
std::pair<std::string, std::string> split_node_topic(const std::string& topic);

// ---------------------------------------------------------------------------------------------
// Task files and flags

/* A task file parsed to JSON, with where each value was (JSON pointer -> "line:column", 1-based)
 * when the parser could tell. */
struct TaskFile {
    std::string name;  // the file as the user named it
    nlohmann::json doc;
    std::map<std::string, std::string> where;
    /* "name:line:col" for the value at `pointer` (or its closest located parent), else "name". */
    std::string locate(const std::string& pointer) const;
};

enum class FileFormat { automatic, json, yaml };

/* Parses a task document from text: JSON or YAML (automatic: by the name's extension, else by
 * the first character). Syntax errors name the file, line and column. */
Result<TaskFile> parse_task_text(const std::string& text, const std::string& name,
                                 FileFormat format = FileFormat::automatic);
/* Reads and parses a task file ("-": standard input). */
Result<TaskFile> load_task_file(const std::string& path);

/* Checks a submit document against docs/schemas/task-submit.schema.json (and the limits
 * admission applies that cpnctl can know). `complete`: id and kind must be present too.
 * `where(pointer)` names the place of a value for the message. Returns "" or the first problem
 * as "<where>: <field>: <problem>". */
std::string validate_submit(const nlohmann::json& doc, bool complete,
                            const std::function<std::string(const std::string&)>& where);

/* A --param value typed: true/false -> bool, an integer -> int, a decimal or exponent number ->
 * float, anything else (or a value in single or double quotes, quotes removed) -> string. */
nlohmann::json typed_param_value(const std::string& text);
/* Parses one --param "key=value". */
Result<std::pair<std::string, nlohmann::json>> parse_param(const std::string& kv);

/* The submit flags; each set one overrides the task file's field. */
struct SubmitFlags {
    std::optional<std::string> id;
    std::optional<std::string> kind;
    std::vector<std::string> params;           // key=value, applied after params_json
    std::optional<std::string> params_json;    // a JSON object merged into params
    std::optional<std::string> input_file;     // a local file, sent inline as base64
    std::optional<std::string> input_path;     // a path on the node, sent by reference
    std::optional<int64_t> priority;
    std::optional<int64_t> timeout_s;
    std::optional<std::string> device_class;
    std::optional<std::string> backend;
    std::optional<int64_t> min_memory_bytes;
    std::optional<std::string> precision;
    std::optional<std::string> device_id;
};

/* Largest local file --input-file inlines (the node's own inline limit is usually far lower and
 * is checked by admission, which answers `oversize`). */
inline constexpr uint64_t kMaxInlineFileBytes = 256ull << 20;

/* The submit document: the task file (if any), the flags over it, schema_version 1 and a
 * generated id when none was given. Every error names the file (line:column) or the flag. */
Result<nlohmann::json> build_submit(const std::optional<TaskFile>& file, const SubmitFlags& flags);

// ---------------------------------------------------------------------------------------------
// Encoding

std::string base64_encode(const std::string& bytes);
/* Standard base64 with padding; false on anything else. */
bool base64_decode(const std::string& in, std::string& out);
/* Lower-case hex SHA-256 (OpenSSL EVP). */
std::string sha256_hex(const std::string& bytes);

/* Reads a whole file; the error names the file and the errno text. */
Result<std::string> read_file(const std::string& path, uint64_t max_bytes = UINT64_MAX);
/* Reads a secret (password) file, refusing one that its group or others can read or write, as
 * the agent does; trailing newlines are removed. */
Result<std::string> read_secret_file(const std::string& path, const std::string& what);

// ---------------------------------------------------------------------------------------------
// Following one task

bool is_terminal_state(const std::string& state);
/* The exit code a task's state means for `submit`: SUCCEEDED 0; FAILED, TIMED_OUT, CANCELED 1;
 * REJECTED 4; UNKNOWN 6; a state that is not final 0. */
int exit_code_for_state(const std::string& state);

/* Follows one task through its task_state and task_progress messages, whichever topic they came
 * on (reply topic and event topic both deliver them): de-duplicates by (task_id, version) and
 * keeps the highest version; progress counts only for the current version. */
class TaskTracker {
public:
    enum class Update { ignored, duplicate, stale, state, progress };

    explicit TaskTracker(std::string task_id) : id_(std::move(task_id)) {}

    /* A parsed message (any JSON); says what it changed. */
    Update offer(const nlohmann::json& msg);

    const std::string& id() const { return id_; }
    bool has_state() const { return !state_.is_null(); }
    const nlohmann::json& state_message() const { return state_; }
    std::string state() const;
    int64_t version() const { return version_; }
    bool terminal() const { return has_state() && is_terminal_state(state()); }
    std::optional<double> progress() const { return progress_; }
    const std::string& progress_message() const { return progress_message_; }
    /* States seen, in order (each version once). */
    const std::vector<std::string>& history() const { return history_; }

private:
    bool mine(const nlohmann::json& msg) const;

    std::string id_;
    nlohmann::json state_;
    int64_t version_ = -1;
    std::optional<double> progress_;
    std::string progress_message_;
    std::vector<std::string> history_;
};

/* The human summary of a task_state message: aligned "key  value" lines (task, state, node,
 * device, queue_ms, run_ms, attempts, code, reason, output), each only when known. */
std::string format_state_summary(const nlohmann::json& state_msg);
/* One line for a state change: "QUEUED  t-1 on n1 (version 1)" and the reason/code if any. */
std::string format_state_line(const nlohmann::json& state_msg);

// ---------------------------------------------------------------------------------------------
// `nodes`

struct NodeRow {
    std::string node;
    std::string state;            // online, offline, or "-" (no state message)
    std::string site;             // "" unknown
    std::map<std::string, int> device_counts;  // by class; empty: no inventory
    bool has_inventory = false;
    std::string capacity_status;  // measured, not_measured, "" (no capacity message)
    std::optional<double> l2;     // capacity.l2.node when measured
    std::optional<int64_t> state_timestamp_ms;  // the birth's (online) or the death's (offline)
    std::optional<int64_t> bdseq;
    std::string agent_version;
    std::string death_reason;
};

/* Collects the retained state, inventory and capacity messages of many nodes. */
class NodeTable {
public:
    /* A message on cpn/v1/nodes/{node}/{state|inventory|capacity}; an empty payload (a cleared
     * retained message) forgets that part. Returns false when the topic or payload is not one
     * of these (the message is then ignored). */
    bool add(const std::string& topic, const std::string& payload);
    /* One row per node, sorted by node id. */
    std::vector<NodeRow> rows() const;
    size_t size() const { return nodes_.size(); }

private:
    struct Parts {
        nlohmann::json state, inventory, capacity;
    };
    std::map<std::string, Parts> nodes_;
};

/* "cpu, 2 gpu" (classes in the order cpu, gpu, fpga, npu, other, then any other), "-" when none. */
std::string device_summary(const std::map<std::string, int>& counts);
/* "45s", "12m", "3h", "2d" ("-" for a negative or unknown age). */
std::string format_age(std::optional<int64_t> ms);
/* The table: NODE, STATE, SITE, DEVICES, L2, AGE. */
std::string render_nodes_table(const std::vector<NodeRow>& rows, int64_t now_ms);
/* The --json form: an array of objects. */
nlohmann::json nodes_json(const std::vector<NodeRow>& rows, int64_t now_ms);

// ---------------------------------------------------------------------------------------------
// `watch`

/* One human line for a message on a node's state or task event topic:
 * "HH:MM:SS.mmm  NODE  TASK  STATE vN [code: reason]", "... TASK  progress 45% message",
 * "... NODE  online (bdseq 3)" / "offline (shutdown)". */
std::string format_watch_line(const std::string& topic, const std::string& payload, bool retained,
                              int64_t now_ms);
/* The --json line: {"received_ms", "topic", "retained", "message"} (message: the parsed payload,
 * or the raw text when it is not JSON). */
nlohmann::json watch_json(const std::string& topic, const std::string& payload, bool retained,
                          int64_t now_ms);

/* Wall clock, ms since the Unix epoch. */
int64_t now_ms();

}  // namespace cpnctl
