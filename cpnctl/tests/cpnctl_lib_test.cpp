// Unit tests of cpnctl's pure parts (cpnctl/cpnctl_lib.*): task files, flags, parameter typing,
// task ids, de-duplication by version, the nodes table and watch lines. No broker, no agent.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cpnctl_lib.hpp"

using nlohmann::json;
using namespace cpnctl;

namespace {

/* A temporary file that removes itself. */
struct TempFile {
    std::string path;
    explicit TempFile(const std::string& content, const std::string& suffix = ".txt", mode_t mode = 0600) {
        char tmpl[] = "/tmp/cpnctl-test-XXXXXX";
        const int fd = ::mkstemp(tmpl);
        EXPECT_GE(fd, 0);
        ::close(fd);
        path = std::string(tmpl) + suffix;
        std::rename(tmpl, path.c_str());
        std::ofstream(path, std::ios::binary) << content;
        ::chmod(path.c_str(), mode);
    }
    ~TempFile() { std::remove(path.c_str()); }
};

TaskFile parse_ok(const std::string& text, const std::string& name) {
    Result<TaskFile> r = parse_task_text(text, name);
    EXPECT_TRUE(r) << r.error;
    return r ? *r : TaskFile{};
}

std::string build_error(const std::string& text, const std::string& name, const SubmitFlags& f = {}) {
    Result<TaskFile> tf = parse_task_text(text, name);
    if (!tf) return tf.error;
    Result<json> r = build_submit(*tf, f);
    EXPECT_FALSE(r) << "expected an error, got " << (r ? r->dump() : "");
    return r.error;
}

// ---- the generated id, and what every "birth"/"inventory"/"capacity" looks like -----------------

json birth_msg(const std::string& node, const std::string& site, int64_t ts, int64_t bdseq = 3) {
    // As agent/mqtt/messages.cpp builds it.
    return json{{"schema_version", 1}, {"type", "birth"},      {"node_id", node},
                {"timestamp_ms", ts},  {"state", "online"},    {"bdseq", bdseq},
                {"site", site},        {"agent_version", "0.1.0"}, {"protocol", "5"},
                {"broker", "tcp://127.0.0.1:1883"}, {"telemetry_interval_s", 10},
                {"store", {{"buffered", 0}, {"dropped_since_last_birth", 0}, {"dropped_total", 0}}},
                {"commands", {"rebirth", "rebenchmark", "set_telemetry_interval", "set_normalization"}}};
}

json death_msg(const std::string& node, int64_t ts, const std::string& reason) {
    return json{{"schema_version", 1}, {"type", "death"}, {"node_id", node}, {"timestamp_ms", ts},
                {"state", "offline"},  {"bdseq", 4},      {"reason", reason}};
}

json device(const std::string& id, const std::string& cls) {
    return json{{"id", id},           {"class", cls},      {"vendor", "v"},     {"model", "m"},
                {"pci_address", ""},  {"uuid", ""},        {"memory_bytes", 1}, {"compute_units", 1},
                {"max_clock_mhz", 1}, {"numa_node", 0},    {"precisions", json::array()},
                {"health", {{"healthy", true}}}, {"runtimes", json::array()}, {"attributes", json::object()}};
}

json inventory_msg(const std::string& node, const std::string& site, const std::vector<json>& devices) {
    json inv = {{"schema_version", 1},
                {"agent_version", "0.1.0"},
                {"timestamp_ms", 1},
                {"node", {{"id", node}, {"site", site}, {"hostname", "h"}, {"os", "linux"}, {"arch", "x86_64"},
                          {"memory_bytes", 1}, {"numa_nodes", 1}}},
                {"devices", devices},
                {"plugins", json::array()},
                {"discovery_ms", {{"core", 1.0}, {"plugins", 2.0}}}};
    return json{{"schema_version", 1}, {"type", "inventory"}, {"node_id", node},
                {"timestamp_ms", 1},   {"bdseq", 3},          {"inventory", inv}};
}

json capacity_not_measured(const std::string& node) {
    return json{{"schema_version", 1}, {"type", "capacity"}, {"node_id", node}, {"timestamp_ms", 1}, {"bdseq", 3},
                {"status", "not_measured"}, {"reason", "no benchmark has run on this node yet"},
                {"capacity", nullptr}};
}

json capacity_measured(const std::string& node, double l2) {
    json record = {{"l0", json::object()}, {"l1", {{"node", {{"compute", 1.0}}}}}, {"l2", {{"node", l2}}},
                   {"devices", json::array()}, {"roofline", json::object()}, {"normalization", json::object()}};
    return json{{"schema_version", 1}, {"type", "capacity"}, {"node_id", node}, {"timestamp_ms", 1}, {"bdseq", 3},
                {"status", "measured"}, {"reason", ""}, {"capacity", record}};
}

json state(const std::string& id, const std::string& st, int64_t version, json extra = json::object()) {
    json m = {{"schema_version", 1}, {"type", "task_state"}, {"node_id", "n1"}, {"timestamp_ms", 1},
              {"task_id", id},       {"state", st},          {"version", version}};
    for (auto& [k, v] : extra.items()) m[k] = v;
    return m;
}

json progress(const std::string& id, int64_t version, double p) {
    return json{{"schema_version", 1}, {"type", "task_progress"}, {"node_id", "n1"}, {"timestamp_ms", 1},
                {"task_id", id},       {"version", version},      {"progress", p}};
}

}  // namespace

// ---- ids and topics ----------------------------------------------------------------------------

TEST(TaskId, GeneratedIdsAreValidUuidsAndDistinct) {
    static const std::regex kUuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
    std::set<std::string> seen;
    for (int i = 0; i < 200; ++i) {
        const std::string id = generate_task_id();
        EXPECT_TRUE(std::regex_match(id, kUuid)) << id;
        EXPECT_TRUE(valid_task_id(id)) << id;
        seen.insert(id);
    }
    EXPECT_EQ(seen.size(), 200u);
}

TEST(TaskId, PatternOfTheSchema) {
    EXPECT_TRUE(valid_task_id("t-42"));
    EXPECT_TRUE(valid_task_id("A.b_c:d-1"));
    EXPECT_TRUE(valid_task_id(std::string(128, 'a')));
    EXPECT_FALSE(valid_task_id(std::string(129, 'a')));
    EXPECT_FALSE(valid_task_id(""));
    EXPECT_FALSE(valid_task_id("-starts-with-dash"));
    EXPECT_FALSE(valid_task_id("has space"));
    EXPECT_FALSE(valid_task_id("slash/in"));
}

TEST(Topics, RequestReplyAndNodeTopics) {
    EXPECT_EQ(request_topic(false, "edge-1", "submit"), "cpn/v1/nodes/edge-1/task/submit");
    EXPECT_EQ(request_topic(true, "render", "submit"), "cpn/v1/queues/render/submit");
    EXPECT_EQ(request_topic(true, "render", "status"), "cpn/v1/queues/render/status");
    EXPECT_EQ(reply_topic("cpnctl-host-12"), "cpn/v1/replies/cpnctl-host-12");
    EXPECT_EQ(reply_topic("a/b+c#"), "cpn/v1/replies/a_b_c_");
    EXPECT_EQ(split_node_topic("cpn/v1/nodes/n1/task/event/t-1"), std::make_pair(std::string("n1"), std::string("task/event/t-1")));
    EXPECT_EQ(split_node_topic("cpn/v1/queues/q/submit").first, "");
    EXPECT_EQ(check_topic_level("n1", "--node"), "");
    EXPECT_NE(check_topic_level("a/b", "--node").find("must not contain"), std::string::npos);
    EXPECT_NE(check_topic_level("+", "--queue").find("--queue"), std::string::npos);
    EXPECT_NE(check_topic_level("", "--node"), "");
}

// ---- parameter typing ------------------------------------------------------------------------

TEST(Params, ValuesAreTyped) {
    EXPECT_EQ(typed_param_value("42"), json(42));
    EXPECT_TRUE(typed_param_value("42").is_number_integer());
    EXPECT_EQ(typed_param_value("-7"), json(-7));
    EXPECT_TRUE(typed_param_value("2.5").is_number_float());
    EXPECT_DOUBLE_EQ(typed_param_value("2.5").get<double>(), 2.5);
    EXPECT_DOUBLE_EQ(typed_param_value("1e3").get<double>(), 1000.0);
    EXPECT_EQ(typed_param_value("true"), json(true));
    EXPECT_EQ(typed_param_value("false"), json(false));
    EXPECT_EQ(typed_param_value("hello"), json("hello"));
    EXPECT_EQ(typed_param_value(""), json(""));
    EXPECT_EQ(typed_param_value("True"), json("True"));  // only lower-case booleans
    EXPECT_EQ(typed_param_value("12abc"), json("12abc"));
    EXPECT_EQ(typed_param_value("nan"), json("nan"));
    EXPECT_EQ(typed_param_value("\"42\""), json("42"));  // quoted: kept a string
    EXPECT_EQ(typed_param_value("'true'"), json("true"));
    EXPECT_EQ(typed_param_value("18446744073709551615"), json(18446744073709551615ull));
    EXPECT_EQ(typed_param_value("99999999999999999999999"), json("99999999999999999999999"));
}

TEST(Params, KeyValueParsing) {
    auto r = parse_param("sleep_ms=250");
    ASSERT_TRUE(r) << r.error;
    EXPECT_EQ(r->first, "sleep_ms");
    EXPECT_EQ(r->second, json(250));
    r = parse_param("fail=disk full=yes");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->second, json("disk full=yes"));  // split at the first '='
    r = parse_param("novalue");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("--param 'novalue': expected key=value"), std::string::npos) << r.error;
    r = parse_param("=5");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("key"), std::string::npos);
}

// ---- task files ------------------------------------------------------------------------------

TEST(TaskFileParse, JsonAndYamlGiveTheSameDocument) {
    const TaskFile j = parse_ok(R"({"kind": "echo", "id": "t-1", "priority": 5, "params": {"sleep_ms": 10,
        "fail": "no", "ratio": 0.5, "on": true}})", "task.json");
    const TaskFile y = parse_ok("kind: echo\nid: t-1\npriority: 5\nparams:\n  sleep_ms: 10\n  fail: \"no\"\n"
                                "  ratio: 0.5\n  on: true\n",
                                "task.yaml");
    EXPECT_EQ(j.doc, y.doc);
    EXPECT_TRUE(y.doc["priority"].is_number_integer());
    EXPECT_TRUE(y.doc["params"]["ratio"].is_number_float());
    EXPECT_TRUE(y.doc["params"]["on"].is_boolean());
}

TEST(TaskFileParse, YamlQuotedScalarsStayStrings) {
    const TaskFile y = parse_ok("kind: echo\nparams:\n  a: '5'\n  b: \"true\"\n  c: 5\n  d: ~\n  e: |\n    text\n",
                                "t.yml");
    EXPECT_EQ(y.doc["params"]["a"], json("5"));
    EXPECT_EQ(y.doc["params"]["b"], json("true"));
    EXPECT_EQ(y.doc["params"]["c"], json(5));
    EXPECT_TRUE(y.doc["params"]["d"].is_null());
    EXPECT_EQ(y.doc["params"]["e"], json("text\n"));
}

TEST(TaskFileParse, FormatIsSniffedWithoutExtension) {
    EXPECT_EQ(parse_ok("{\"kind\":\"echo\"}", "task").doc["kind"], "echo");
    EXPECT_EQ(parse_ok("kind: echo\n", "task").doc["kind"], "echo");
}

TEST(TaskFileParse, BadJsonNamesFileLineAndColumn) {
    Result<TaskFile> r = parse_task_text("{\n  \"kind\": \"echo\",\n  \"id\": \n}\n", "bad.json");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error.rfind("bad.json:4:1: not valid JSON: ", 0), 0u) << r.error;
    EXPECT_NE(r.error.find("syntax error"), std::string::npos) << r.error;
}

TEST(TaskFileParse, BadYamlNamesFileLineAndColumn) {
    Result<TaskFile> r = parse_task_text("kind: echo\nparams:\n  a: [1, 2\n  b: 3\n", "bad.yaml");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("bad.yaml:"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("not valid YAML"), std::string::npos) << r.error;
    r = parse_task_text("kind: echo\n  id: x\n", "indent.yaml");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error.rfind("indent.yaml:2:", 0), 0u) << r.error;
}

TEST(TaskFileParse, EmptyOrNotAMapping) {
    Result<TaskFile> r = parse_task_text("  \n", "empty.yaml");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("empty.yaml: the task file is empty"), std::string::npos) << r.error;
    r = parse_task_text("- a\n- b\n", "list.yaml");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("must be a mapping"), std::string::npos) << r.error;
    r = parse_task_text("[1]", "list.json");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("list.json"), std::string::npos) << r.error;
}

TEST(TaskFileParse, DuplicateYamlKeyIsAnError) {
    Result<TaskFile> r = parse_task_text("kind: echo\nkind: bench\n", "dup.yaml");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("dup.yaml:2:1: duplicate key 'kind'"), std::string::npos) << r.error;
}

TEST(TaskFileParse, LoadFileReportsMissingFile) {
    Result<TaskFile> r = load_task_file("/nonexistent/dir/task.yaml");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("/nonexistent/dir/task.yaml: No such file or directory"), std::string::npos) << r.error;
    TempFile f("kind: echo\nid: from-file\n", ".yaml");
    r = load_task_file(f.path);
    ASSERT_TRUE(r) << r.error;
    EXPECT_EQ(r->doc["id"], "from-file");
}

// ---- validation: wrong types and unknown fields, with where they are ---------------------------

TEST(Validation, UnknownFieldIsNamedWithItsLine) {
    const std::string e = build_error("kind: echo\nid: t-1\nprioriti: 3\n", "typo.yaml");
    EXPECT_NE(e.find("typo.yaml:3:11: prioriti: unknown field"), std::string::npos) << e;
    EXPECT_NE(e.find("priority"), std::string::npos) << e;  // the known ones are listed
}

TEST(Validation, UnknownFieldInJsonFileIsNamed) {
    const std::string e = build_error("{\"kind\": \"echo\",\n \"colour\": \"red\"}", "t.json");
    EXPECT_NE(e.find("t.json:2:"), std::string::npos) << e;
    EXPECT_NE(e.find("colour: unknown field"), std::string::npos) << e;
}

TEST(Validation, WrongTypesAreNamed) {
    std::string e = build_error("kind: echo\npriority: high\n", "p.yaml");
    EXPECT_NE(e.find("p.yaml:2:11: priority: must be an integer, got \"high\" (a string)"), std::string::npos) << e;
    e = build_error("kind: echo\npriority: 2.5\n", "p.yaml");
    EXPECT_NE(e.find("priority: must be an integer"), std::string::npos) << e;
    e = build_error("kind: echo\npriority: 101\n", "p.yaml");
    EXPECT_NE(e.find("priority: must be between -100 and 100, got 101"), std::string::npos) << e;
    e = build_error("kind: 5\n", "k.yaml");
    EXPECT_NE(e.find("k.yaml:1:7: kind: must be a string"), std::string::npos) << e;
    e = build_error("kind: echo\nparams: [1, 2]\n", "pa.yaml");
    EXPECT_NE(e.find("pa.yaml:2:9: params: must be a mapping"), std::string::npos) << e;
    e = build_error("kind: echo\ntimeout_s: 0\n", "t.yaml");
    EXPECT_NE(e.find("timeout_s: must be between 1 and 86400"), std::string::npos) << e;
    e = build_error("kind: echo\nid: 'bad id'\n", "i.yaml");
    EXPECT_NE(e.find("i.yaml:2:5: id: 'bad id' is not a task id"), std::string::npos) << e;
    e = build_error("{\"kind\":\"echo\",\"schema_version\":2}", "v.json");
    EXPECT_NE(e.find("schema_version: must be 1"), std::string::npos) << e;
}

TEST(Validation, RequirementsAndInput) {
    std::string e = build_error("kind: echo\nrequirements:\n  device_class: tpu\n", "r.yaml");
    EXPECT_NE(e.find("r.yaml:3:17: requirements.device_class: must be one of cpu, gpu, fpga, npu, other"),
              std::string::npos)
        << e;
    e = build_error("kind: echo\nrequirements:\n  cores: 4\n", "r.yaml");
    EXPECT_NE(e.find("requirements.cores: unknown requirement"), std::string::npos) << e;
    e = build_error("kind: echo\nrequirements:\n  min_memory_bytes: -1\n", "r.yaml");
    EXPECT_NE(e.find("requirements.min_memory_bytes: must be a non-negative integer"), std::string::npos) << e;
    e = build_error("kind: echo\nrequirements:\n  precision: fp8\n", "r.yaml");
    EXPECT_NE(e.find("requirements.precision: must be one of fp64"), std::string::npos) << e;
    e = build_error("kind: echo\ninput:\n  base64: '***'\n", "in.yaml");
    EXPECT_NE(e.find("in.yaml:3:11: input.base64: is not valid base64"), std::string::npos) << e;
    e = build_error("kind: echo\ninput:\n  path: relative/file\n", "in.yaml");
    EXPECT_NE(e.find("input.path: 'relative/file' must be an absolute path"), std::string::npos) << e;
    e = build_error("kind: echo\ninput:\n  path: /a\n  base64: aGk=\n", "in.yaml");
    EXPECT_NE(e.find("input: takes exactly one of base64"), std::string::npos) << e;
    e = build_error("kind: echo\ninput:\n  url: http://x\n", "in.yaml");
    EXPECT_NE(e.find("input.url: unknown field"), std::string::npos) << e;
}

TEST(Validation, ReplyFieldsAreCpnctlsOwn) {
    const std::string e = build_error("kind: echo\nreply_to: cpn/v1/replies/x\n", "r.yaml");
    EXPECT_NE(e.find("reply_to: is set by cpnctl"), std::string::npos) << e;
}

TEST(Validation, AValidFileBuildsTheSubmit) {
    const TaskFile tf = parse_ok("schema_version: 1\nid: t-9\nkind: echo\npriority: -3\ntimeout_s: 60\n"
                                 "params: {sleep_ms: 5}\nrequirements: {device_class: cpu, min_memory_bytes: 1024}\n"
                                 "input: {base64: aGVsbG8=}\n",
                                 "ok.yaml");
    Result<json> r = build_submit(tf, {});
    ASSERT_TRUE(r) << r.error;
    EXPECT_EQ((*r)["id"], "t-9");
    EXPECT_EQ((*r)["priority"], -3);
    EXPECT_EQ((*r)["requirements"]["min_memory_bytes"], 1024);
    EXPECT_EQ((*r)["input"]["base64"], "aGVsbG8=");
}

// ---- flags over the file ---------------------------------------------------------------------

TEST(Flags, OverrideTheFileAndFillDefaults) {
    const TaskFile tf = parse_ok("kind: bench\nid: from-file\npriority: 1\nparams: {mode: quick, keep: 1}\n", "f.yaml");
    SubmitFlags f;
    f.kind = "echo";
    f.priority = 7;
    f.params_json = R"({"mode": "full", "extra": [1, 2]})";
    f.params = {"sleep_ms=20", "fail=oops"};
    f.timeout_s = 90;
    f.device_class = "gpu";
    f.backend = "cuda";
    f.min_memory_bytes = 1 << 20;
    f.precision = "fp16";
    f.device_id = "gpu0";
    f.input_path = "/srv/in.bin";
    Result<json> r = build_submit(tf, f);
    ASSERT_TRUE(r) << r.error;
    const json& d = *r;
    EXPECT_EQ(d["schema_version"], 1);
    EXPECT_EQ(d["id"], "from-file");
    EXPECT_EQ(d["kind"], "echo");
    EXPECT_EQ(d["priority"], 7);
    EXPECT_EQ(d["timeout_s"], 90);
    EXPECT_EQ(d["params"]["mode"], "full");    // --params-json over the file
    EXPECT_EQ(d["params"]["keep"], 1);         // the file's other params stay
    EXPECT_EQ(d["params"]["extra"], json({1, 2}));
    EXPECT_EQ(d["params"]["sleep_ms"], 20);    // --param typed
    EXPECT_EQ(d["params"]["fail"], "oops");
    EXPECT_EQ(d["requirements"]["device_class"], "gpu");
    EXPECT_EQ(d["requirements"]["backend"], "cuda");
    EXPECT_EQ(d["requirements"]["min_memory_bytes"], 1 << 20);
    EXPECT_EQ(d["requirements"]["precision"], "fp16");
    EXPECT_EQ(d["requirements"]["device_id"], "gpu0");
    EXPECT_EQ(d["input"], json({{"path", "/srv/in.bin"}}));
}

TEST(Flags, ParamOverridesParamsJson) {
    SubmitFlags f;
    f.kind = "echo";
    f.params_json = R"({"sleep_ms": 1})";
    f.params = {"sleep_ms=2"};
    Result<json> r = build_submit(std::nullopt, f);
    ASSERT_TRUE(r) << r.error;
    EXPECT_EQ((*r)["params"]["sleep_ms"], 2);
}

TEST(Flags, IdIsGeneratedWhenMissing) {
    SubmitFlags f;
    f.kind = "echo";
    Result<json> r = build_submit(std::nullopt, f);
    ASSERT_TRUE(r) << r.error;
    EXPECT_TRUE(valid_task_id((*r)["id"].get<std::string>()));
    EXPECT_EQ((*r)["schema_version"], 1);
    EXPECT_FALSE(r->contains("params"));
    EXPECT_FALSE(r->contains("requirements"));
}

TEST(Flags, InputFileIsInlinedAsBase64) {
    const std::string bytes("bin\0ary\xff", 8);
    TempFile in(bytes, ".bin");
    SubmitFlags f;
    f.kind = "echo";
    f.input_file = in.path;
    Result<json> r = build_submit(std::nullopt, f);
    ASSERT_TRUE(r) << r.error;
    std::string decoded;
    ASSERT_TRUE(base64_decode((*r)["input"]["base64"].get<std::string>(), decoded));
    EXPECT_EQ(decoded, bytes);
}

TEST(Flags, BadFlagsAreNamed) {
    auto error_of = [](SubmitFlags f) {
        if (!f.kind) f.kind = "echo";
        Result<json> r = build_submit(std::nullopt, f);
        EXPECT_FALSE(r);
        return r.error;
    };
    SubmitFlags f;
    f.id = "no spaces allowed";
    EXPECT_NE(error_of(f).find("--id: 'no spaces allowed' is not a task id"), std::string::npos);
    f = {};
    f.priority = 500;
    EXPECT_NE(error_of(f).find("--priority: must be between -100 and 100, got 500"), std::string::npos);
    f = {};
    f.timeout_s = 0;
    EXPECT_NE(error_of(f).find("--task-timeout"), std::string::npos);
    f = {};
    f.device_class = "tpu";
    EXPECT_NE(error_of(f).find("--device-class: 'tpu' is not one of cpu, gpu"), std::string::npos);
    f = {};
    f.precision = "fp8";
    EXPECT_NE(error_of(f).find("--precision"), std::string::npos);
    f = {};
    f.min_memory_bytes = -5;
    EXPECT_NE(error_of(f).find("--min-memory"), std::string::npos);
    f = {};
    f.params_json = "{bad";
    EXPECT_NE(error_of(f).find("--params-json: not valid JSON"), std::string::npos);
    f = {};
    f.params_json = "[1]";
    EXPECT_NE(error_of(f).find("--params-json: must be a JSON object"), std::string::npos);
    f = {};
    f.params = {"oops"};
    EXPECT_NE(error_of(f).find("--param 'oops': expected key=value"), std::string::npos);
    f = {};
    f.input_path = "relative.bin";
    EXPECT_NE(error_of(f).find("--input-path: 'relative.bin' must be an absolute path"), std::string::npos);
    f = {};
    f.input_file = "/nonexistent/input.bin";
    EXPECT_NE(error_of(f).find("--input-file: /nonexistent/input.bin: No such file or directory"), std::string::npos);
    f = {};
    f.input_file = "/etc/hostname";
    f.input_path = "/x";
    EXPECT_NE(error_of(f).find("exclude each other"), std::string::npos);
}

TEST(Flags, KindIsRequiredSomewhere) {
    Result<json> r = build_submit(std::nullopt, {});
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("no kind: give --kind KIND"), std::string::npos) << r.error;
    const TaskFile tf = parse_ok("id: t-1\n", "nokind.yaml");
    r = build_submit(tf, {});
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("nokind.yaml"), std::string::npos) << r.error;
}

// ---- encoding and files ----------------------------------------------------------------------

TEST(Encoding, Base64RoundTripAndRejects) {
    for (const std::string& s : {std::string(""), std::string("f"), std::string("fo"), std::string("foo"),
                                std::string("hello"), std::string("\0\xff\x10", 3)}) {
        std::string back;
        ASSERT_TRUE(base64_decode(base64_encode(s), back)) << s;
        EXPECT_EQ(back, s);
    }
    EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
    std::string out;
    EXPECT_FALSE(base64_decode("aGVsbG8", out));   // no padding
    EXPECT_FALSE(base64_decode("aGV=bG8=", out));  // padding inside
    EXPECT_FALSE(base64_decode("a*Vs", out));
}

TEST(Encoding, Sha256) {
    EXPECT_EQ(sha256_hex("hello"), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(SecretFile, RefusesGroupReadableAndStripsNewline) {
    TempFile ok("s3cret\n", ".pw", 0600);
    Result<std::string> r = read_secret_file(ok.path, "--password-file");
    ASSERT_TRUE(r) << r.error;
    EXPECT_EQ(*r, "s3cret");
    TempFile open_file("s3cret\n", ".pw", 0644);
    r = read_secret_file(open_file.path, "--password-file");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error.find("mode 0644"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("chmod 600 " + open_file.path), std::string::npos) << r.error;
    TempFile empty("\n", ".pw", 0600);
    EXPECT_FALSE(read_secret_file(empty.path, "--password-file"));
}

// ---- following a task: de-duplication by version and terminal states ------------------------------

TEST(Tracker, DeduplicatesByVersionAndKeepsTheHighest) {
    TaskTracker t("t-1");
    EXPECT_EQ(t.offer(state("t-1", "QUEUED", 1)), TaskTracker::Update::state);
    EXPECT_EQ(t.offer(state("t-1", "QUEUED", 1)), TaskTracker::Update::duplicate);  // event + reply topic
    EXPECT_EQ(t.offer(state("t-1", "SUCCEEDED", 3)), TaskTracker::Update::state);    // version 2 never seen
    EXPECT_EQ(t.offer(state("t-1", "RUNNING", 2)), TaskTracker::Update::stale);      // late: never goes back
    EXPECT_EQ(t.state(), "SUCCEEDED");
    EXPECT_EQ(t.version(), 3);
    EXPECT_TRUE(t.terminal());
    EXPECT_EQ(t.history(), (std::vector<std::string>{"QUEUED", "SUCCEEDED"}));
}

TEST(Tracker, IgnoresOtherTasksAndJunk) {
    TaskTracker t("t-1");
    EXPECT_EQ(t.offer(state("t-2", "QUEUED", 1)), TaskTracker::Update::ignored);
    EXPECT_EQ(t.offer(json("text")), TaskTracker::Update::ignored);
    EXPECT_EQ(t.offer(json{{"task_id", "t-1"}, {"type", "task_state"}}), TaskTracker::Update::ignored);
    json no_state = state("t-1", "QUEUED", 1);
    no_state.erase("state");
    EXPECT_EQ(t.offer(no_state), TaskTracker::Update::ignored);
    EXPECT_FALSE(t.has_state());
}

TEST(Tracker, RejectionWithoutIdMatchesByCorrelation) {
    TaskTracker t("t-1");
    EXPECT_EQ(t.offer(state("", "REJECTED", 1, {{"correlation", "t-1"}, {"code", "malformed"}})),
              TaskTracker::Update::state);
    EXPECT_EQ(t.state(), "REJECTED");
    TaskTracker other("t-9");
    EXPECT_EQ(other.offer(state("", "REJECTED", 1, {{"correlation", "t-1"}})), TaskTracker::Update::ignored);
}

TEST(Tracker, ProgressBelongsToTheCurrentRun) {
    TaskTracker t("t-1");
    t.offer(state("t-1", "QUEUED", 1));
    EXPECT_EQ(t.offer(progress("t-1", 2, 0.25)), TaskTracker::Update::progress);  // before RUNNING arrives
    t.offer(state("t-1", "RUNNING", 2));
    EXPECT_FALSE(t.progress());  // a new version starts afresh
    EXPECT_EQ(t.offer(progress("t-1", 2, 0.5)), TaskTracker::Update::progress);
    ASSERT_TRUE(t.progress());
    EXPECT_DOUBLE_EQ(*t.progress(), 0.5);
    EXPECT_EQ(t.offer(progress("t-1", 1, 0.9)), TaskTracker::Update::stale);
    t.offer(state("t-1", "SUCCEEDED", 3));
    EXPECT_EQ(t.offer(progress("t-1", 3, 0.9)), TaskTracker::Update::stale);
}

TEST(Tracker, CancelAnswerOnTheSameVersionIsKept) {
    TaskTracker t("t-1");
    t.offer(state("t-1", "RUNNING", 2));
    EXPECT_EQ(t.offer(state("t-1", "RUNNING", 2, {{"cancel_requested", true}})), TaskTracker::Update::duplicate);
    EXPECT_TRUE(t.state_message().value("cancel_requested", false));
}

TEST(Tracker, TerminalStatesAndExitCodes) {
    for (const char* s : {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELED", "REJECTED"}) EXPECT_TRUE(is_terminal_state(s)) << s;
    for (const char* s : {"QUEUED", "RUNNING", "UNKNOWN"}) EXPECT_FALSE(is_terminal_state(s)) << s;
    EXPECT_EQ(exit_code_for_state("SUCCEEDED"), 0);
    EXPECT_EQ(exit_code_for_state("FAILED"), 1);
    EXPECT_EQ(exit_code_for_state("TIMED_OUT"), 1);
    EXPECT_EQ(exit_code_for_state("CANCELED"), 1);
    EXPECT_EQ(exit_code_for_state("REJECTED"), 4);
    EXPECT_EQ(exit_code_for_state("UNKNOWN"), 6);
    EXPECT_EQ(exit_code_for_state("QUEUED"), 0);
}

TEST(Summary, NamesStateNodeDeviceAndTimes) {
    const json m = state("t-42", "SUCCEEDED", 3,
                         {{"kind", "echo"},
                          {"device_id", "cpu"},
                          {"result",
                           {{"output", {{"size", 5}, {"sha256", sha256_hex("hello")}, {"base64", "aGVsbG8="}}},
                            {"metrics", {{"queue_ms", 1}, {"run_ms", 8}, {"device_id", "cpu"}, {"backend", "cpu"},
                                         {"attempts", 1}}}}}});
    const std::string s = format_state_summary(m);
    EXPECT_NE(s.find("state     SUCCEEDED"), std::string::npos) << s;
    EXPECT_NE(s.find("node      n1"), std::string::npos) << s;
    EXPECT_NE(s.find("device    cpu (cpu)"), std::string::npos) << s;
    EXPECT_NE(s.find("queue_ms  1\n"), std::string::npos) << s;
    EXPECT_NE(s.find("run_ms    8\n"), std::string::npos) << s;
    EXPECT_NE(s.find("output    5 bytes"), std::string::npos) << s;
    const json rej = state("t-1", "REJECTED", 1, {{"code", "unknown_kind"}, {"reason", "kind 'x' is not available"}});
    const std::string r = format_state_summary(rej);
    EXPECT_NE(r.find("code    unknown_kind"), std::string::npos) << r;
    EXPECT_NE(r.find("reason  kind 'x' is not available"), std::string::npos) << r;
    EXPECT_EQ(format_state_line(rej), "t-1: REJECTED on n1 (version 1): unknown_kind: kind 'x' is not available");
    // Times from the timestamps when there is no result.
    const std::string f = format_state_summary(
        state("t-2", "FAILED", 3, {{"accepted_ms", 100}, {"started_ms", 150}, {"finished_ms", 400}}));
    EXPECT_NE(f.find("queue_ms  50"), std::string::npos) << f;
    EXPECT_NE(f.find("run_ms    250"), std::string::npos) << f;
}

// ---- nodes table -------------------------------------------------------------------------------

TEST(Nodes, TableFromRetainedMessages) {
    NodeTable t;
    const int64_t now = 10'000'000;
    EXPECT_TRUE(t.add("cpn/v1/nodes/edge-2/state", birth_msg("edge-2", "room-b", now - 5'000).dump()));
    EXPECT_TRUE(t.add("cpn/v1/nodes/edge-2/inventory",
                      inventory_msg("edge-2", "room-b", {device("cpu", "cpu"), device("gpu0", "gpu"), device("gpu1", "gpu")}).dump()));
    EXPECT_TRUE(t.add("cpn/v1/nodes/edge-2/capacity", capacity_measured("edge-2", 1.234).dump()));
    EXPECT_TRUE(t.add("cpn/v1/nodes/edge-1/state", death_msg("edge-1", now - 3 * 3600 * 1000, "shutdown").dump()));
    EXPECT_TRUE(t.add("cpn/v1/nodes/edge-1/inventory", inventory_msg("edge-1", "room-a", {device("cpu", "cpu")}).dump()));
    EXPECT_TRUE(t.add("cpn/v1/nodes/edge-1/capacity", capacity_not_measured("edge-1").dump()));
    EXPECT_FALSE(t.add("cpn/v1/nodes/edge-1/telemetry", "{}"));  // not one of the retained topics
    EXPECT_FALSE(t.add("cpn/v1/nodes/edge-3/state", "not json"));

    const auto rows = t.rows();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].node, "edge-1");
    EXPECT_EQ(rows[0].state, "offline");
    EXPECT_EQ(rows[0].site, "room-a");  // from the inventory when the node is offline
    EXPECT_FALSE(rows[0].l2);
    EXPECT_EQ(rows[1].state, "online");
    EXPECT_EQ(rows[1].site, "room-b");
    ASSERT_TRUE(rows[1].l2);
    EXPECT_DOUBLE_EQ(*rows[1].l2, 1.234);

    const std::string table = render_nodes_table(rows, now);
    EXPECT_EQ(table,
              "NODE    STATE    SITE    DEVICES     L2    AGE\n"
              "edge-1  offline  room-a  cpu         -     3h\n"
              "edge-2  online   room-b  cpu, 2 gpu  1.23  5s\n");

    const json j = nodes_json(rows, now);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[1]["node"], "edge-2");
    EXPECT_EQ(j[1]["devices"], json({{"cpu", 1}, {"gpu", 2}}));
    EXPECT_EQ(j[1]["devices_summary"], "cpu, 2 gpu");
    EXPECT_EQ(j[1]["capacity_status"], "measured");
    EXPECT_DOUBLE_EQ(j[1]["age_s"].get<double>(), 5.0);
    EXPECT_TRUE(j[0]["l2"].is_null());
    EXPECT_EQ(j[0]["reason"], "shutdown");
}

TEST(Nodes, ClearedRetainedMessageForgetsThePart) {
    NodeTable t;
    t.add("cpn/v1/nodes/n1/state", birth_msg("n1", "s", 1).dump());
    t.add("cpn/v1/nodes/n1/state", "");
    EXPECT_EQ(t.size(), 0u);
    t.add("cpn/v1/nodes/n2/capacity", capacity_not_measured("n2").dump());
    const auto rows = t.rows();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].state, "-");
    EXPECT_EQ(render_nodes_table(rows, 0), "NODE  STATE  SITE  DEVICES  L2  AGE\nn2    -      -     -        -   -\n");
}

TEST(Nodes, DeviceSummaryAndAge) {
    EXPECT_EQ(device_summary({}), "-");
    EXPECT_EQ(device_summary({{"gpu", 4}, {"cpu", 1}, {"fpga", 1}, {"quantum", 2}}), "cpu, 4 gpu, fpga, 2 quantum");
    EXPECT_EQ(format_age(std::nullopt), "-");
    EXPECT_EQ(format_age(59'000), "59s");
    EXPECT_EQ(format_age(5 * 60'000), "5m");
    EXPECT_EQ(format_age(5 * 3'600'000), "5h");
    EXPECT_EQ(format_age(3 * 86'400'000), "3d");
}

// ---- watch lines -------------------------------------------------------------------------------

TEST(Watch, LinesForStatesProgressAndBirths) {
    const int64_t t = 1'764'547'200'123;
    std::string l = format_watch_line("cpn/v1/nodes/n1/task/event/t-1",
                                      state("t-1", "RUNNING", 2, {{"kind", "echo"}, {"device_id", "cpu"}}).dump(), false, t);
    EXPECT_NE(l.find(".123  n1  t-1  RUNNING v2 echo on cpu"), std::string::npos) << l;
    l = format_watch_line("cpn/v1/nodes/n1/task/event/t-1", progress("t-1", 2, 0.45).dump(), false, t);
    EXPECT_NE(l.find("n1  t-1  progress 45% (version 2)"), std::string::npos) << l;
    l = format_watch_line("cpn/v1/nodes/n1/task/event/t-1",
                          state("t-1", "REJECTED", 1, {{"code", "unknown_kind"}, {"reason", "no such kind"}}).dump(), false, t);
    EXPECT_NE(l.find("REJECTED v1  unknown_kind: no such kind"), std::string::npos) << l;
    l = format_watch_line("cpn/v1/nodes/n1/state", birth_msg("n1", "s1", t).dump(), true, t);
    EXPECT_NE(l.find("n1  -  online (bdseq 3, site s1)  [retained]"), std::string::npos) << l;
    l = format_watch_line("cpn/v1/nodes/n1/state", death_msg("n1", t, "connection_lost").dump(), false, t);
    EXPECT_NE(l.find("offline (bdseq 4, connection_lost)"), std::string::npos) << l;
    l = format_watch_line("cpn/v1/nodes/n1/task/event/t-1", "garbage", false, t);
    EXPECT_NE(l.find("not a JSON object: garbage"), std::string::npos) << l;
    const json j = watch_json("cpn/v1/nodes/n1/state", birth_msg("n1", "s1", t).dump(), true, t);
    EXPECT_EQ(j["topic"], "cpn/v1/nodes/n1/state");
    EXPECT_EQ(j["message"]["type"], "birth");
    EXPECT_EQ(j["retained"], true);
    EXPECT_EQ(watch_json("x", "raw", false, t)["message"], "raw");
}
