// task_spec_test.cpp: admission of submitted tasks: a table of bad submits, each with its code
// and message; inline and file inputs (allowed directories, symbolic links and ".." escapes,
// sizes checked before allocation); requirements matched against an inventory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tasks/task_spec.hpp"
#include "tasks/workload.hpp"
#include "test_support.hpp"

namespace cpn::tasks {
namespace {

const TaskSpec& ok(const std::variant<TaskSpec, Rejection>& r) {
    if (const auto* rej = std::get_if<Rejection>(&r)) ADD_FAILURE() << rej->code << ": " << rej->message;
    static TaskSpec empty;
    const auto* s = std::get_if<TaskSpec>(&r);
    return s ? *s : empty;
}

/* The id rule (the submit's idempotency key, also a topic level): 1 to 128 of letters, digits,
 * '.', '_', ':', '-', the first a letter or digit. */
TEST(TaskSpec, TaskIdRule) {
    for (const std::string& ok : std::vector<std::string>{"a", "Z9", "t-42", "job.1_2:3-x", "0", std::string(128, 'a'), "a" + std::string(127, '-')})
        EXPECT_TRUE(is_valid_task_id(ok)) << ok;
    for (const std::string& bad : std::vector<std::string>{"", std::string(129, 'a'), ".a", "-a", "_a", ":a", "a/b", "a b", "a+", "a#", "../etc",
                                  std::string("a\0b", 3), "\xc3\xa9t\xc3\xa9", "a\n"})
        EXPECT_FALSE(is_valid_task_id(bad)) << bad;
}

TEST(TaskSpec, MinimalAndFullSubmits) {
    AdmissionLimits lim;
    const auto parsed = parse_submit(R"({"schema_version":1,"id":"t-1","kind":"echo"})", lim);
    const TaskSpec& a = ok(parsed);
    EXPECT_EQ(a.id, "t-1");
    EXPECT_EQ(a.kind, "echo");
    EXPECT_EQ(a.priority, 0);
    EXPECT_EQ(a.timeout_s, 300);
    EXPECT_FALSE(a.input.present);

    auto full = parse_submit(R"({"schema_version":1,"id":"job:42.a","kind":"bench","params":{"mode":"quick"},
        "priority":7,"timeout_s":60,"requirements":{"device_class":"gpu","backend":"cuda",
        "min_memory_bytes":1073741824,"precision":"fp16","device_id":"PCI-0000:19:00.0"},
        "input":{"base64":"aGVsbG8AIHdvcmxk"}})",
                             lim);
    const TaskSpec& b = ok(full);
    EXPECT_EQ(b.priority, 7);
    EXPECT_EQ(b.timeout_s, 60);
    EXPECT_EQ(b.params["mode"], "quick");
    EXPECT_EQ(b.requirements.device_class, DeviceClass::gpu);
    EXPECT_EQ(b.requirements.backend, "cuda");
    EXPECT_EQ(b.requirements.min_memory_bytes, 1073741824u);
    EXPECT_EQ(b.requirements.precision, Precision::fp16);
    EXPECT_EQ(b.requirements.device_id, "pci-0000:19:00.0");
    ASSERT_TRUE(b.input.inline_data);
    EXPECT_EQ(b.input.data, std::string("hello\0 world", 12));  // binary-safe
}

struct Bad {
    const char* name;
    std::string payload;
    const char* code;
    const char* message;  // a substring of the message
    const char* id;       // the id the rejection carries
};
void PrintTo(const Bad& b, std::ostream* os) { *os << b.name; }

class TaskSpecBad : public ::testing::TestWithParam<Bad> {};

TEST_P(TaskSpecBad, RejectedWithItsOwnReason) {
    AdmissionLimits lim;
    lim.max_submit_bytes = 4096;
    lim.max_inline_input_bytes = 16;
    auto r = parse_submit(GetParam().payload, lim);
    ASSERT_TRUE(std::holds_alternative<Rejection>(r)) << "accepted: " << GetParam().payload;
    const Rejection& rej = std::get<Rejection>(r);
    EXPECT_EQ(rej.code, GetParam().code);
    EXPECT_NE(rej.message.find(GetParam().message), std::string::npos) << rej.message;
    EXPECT_EQ(rej.id, GetParam().id);
}

INSTANTIATE_TEST_SUITE_P(
    Table, TaskSpecBad,
    ::testing::Values(
        Bad{"NotJson", "{kind: echo", "malformed", "submit is not valid JSON", ""},
        Bad{"Array", "[1]", "malformed", "submit must be a JSON object, got array", ""},
        Bad{"NumberPastDoubleRange", R"({"schema_version":1,"id":"t","kind":"echo","priority":1e999})", "malformed",
            "submit is not valid JSON", ""},
        Bad{"NoId", R"({"schema_version":1,"kind":"echo"})", "malformed", "id (a string", ""},
        Bad{"BadId", R"({"schema_version":1,"id":"../etc","kind":"echo"})", "invalid_field", "id: '../etc' is not", ""},
        Bad{"NoVersion", R"({"id":"t","kind":"echo"})", "malformed", "schema_version (an integer) is missing", "t"},
        Bad{"FutureVersion", R"({"schema_version":2,"id":"t","kind":"echo"})", "unsupported_schema_version",
            "schema_version 2 is not supported", "t"},
        Bad{"UnknownField", R"({"schema_version":1,"id":"t","kind":"echo","shell":"rm -rf /"})", "invalid_field",
            "unknown field 'shell'", "t"},
        Bad{"NoKind", R"({"schema_version":1,"id":"t"})", "malformed", "kind (a string) is missing", "t"},
        Bad{"UnknownKind", R"({"schema_version":1,"id":"t","kind":"mine-coins"})", "unknown_kind",
            "kind 'mine-coins' is not available on this node (known: echo, bench", "t"},
        Bad{"ParamsNotObject", R"({"schema_version":1,"id":"t","kind":"echo","params":[]})", "invalid_field",
            "params must be an object", "t"},
        Bad{"PriorityRange", R"({"schema_version":1,"id":"t","kind":"echo","priority":1000})", "invalid_field",
            "priority must be between -100 and 100, got 1000", "t"},
        Bad{"TimeoutZero", R"({"schema_version":1,"id":"t","kind":"echo","timeout_s":0})", "invalid_field",
            "timeout_s must be between 1 and 86400, got 0", "t"},
        Bad{"BadClass", R"({"schema_version":1,"id":"t","kind":"echo","requirements":{"device_class":"tpu"}})",
            "invalid_field", "requirements.device_class: 'tpu' is not one of", "t"},
        Bad{"BadPrecision", R"({"schema_version":1,"id":"t","kind":"echo","requirements":{"precision":"fp8"}})",
            "invalid_field", "requirements.precision: 'fp8' is not one of", "t"},
        Bad{"NegativeMemory",
            R"({"schema_version":1,"id":"t","kind":"echo","requirements":{"min_memory_bytes":-1}})", "invalid_field",
            "requirements.min_memory_bytes must be a non-negative integer", "t"},
        Bad{"UnknownRequirement", R"({"schema_version":1,"id":"t","kind":"echo","requirements":{"gpus":2}})",
            "invalid_field", "unknown requirement 'gpus'", "t"},
        Bad{"BothInputs", R"({"schema_version":1,"id":"t","kind":"echo","input":{"base64":"","path":"/x"}})",
            "invalid_field", "input takes exactly one of base64", "t"},
        Bad{"BadBase64", R"({"schema_version":1,"id":"t","kind":"echo","input":{"base64":"a$=="}})", "invalid_field",
            "input.base64 is not valid base64", "t"},
        Bad{"InlineTooLarge",
            R"({"schema_version":1,"id":"t","kind":"echo","input":{"base64":"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"}})",
            "oversize", "the inline limit is 16", "t"},
        Bad{"PayloadTooLarge", std::string(5000, ' '), "oversize", "submit is 5000 bytes; the limit is 4096", ""},
        Bad{"ReplyToOutsidePrefix", R"({"schema_version":1,"id":"t","kind":"echo","reply_to":"cpn/v1/nodes/other/cmd"})",
            "invalid_field", "reply_to 'cpn/v1/nodes/other/cmd' is not under this node's reply prefix 'cpn/v1/replies/'", "t"},
        Bad{"ReplyToWildcard", R"({"schema_version":1,"id":"t","kind":"echo","reply_to":"cpn/v1/replies/#"})",
            "invalid_field", "reply_to must not contain '+', '#' or NUL", "t"},
        Bad{"CorrelationNotString", R"({"schema_version":1,"id":"t","kind":"echo","correlation":7})", "invalid_field",
            "correlation must be a string of at most 256 bytes", "t"},
        Bad{"PathWithoutAllowedDirs", R"({"schema_version":1,"id":"t","kind":"echo","input":{"path":"/etc/passwd"}})",
            "path_not_allowed", "this node accepts no file inputs", "t"}),
    [](const ::testing::TestParamInfo<Bad>& i) { return std::string(i.param.name); });

TEST(TaskSpec, FileInputsStayInsideTheAllowedDirectories) {
    test::TempDir dir;
    namespace fs = std::filesystem;
    fs::create_directories(dir.file("allowed/sub"));
    fs::create_directories(dir.file("secret"));
    dir.write("allowed/sub/input.bin", "data");
    dir.write("secret/key", "k");
    fs::create_symlink(dir.file("secret/key"), dir.file("allowed/link-out"));
    fs::create_directories(dir.file("allowed-evil"));
    dir.write("allowed-evil/x", "x");
    AdmissionLimits lim;
    lim.allowed_input_dirs = {dir.file("allowed")};
    lim.max_file_input_bytes = 3;
    auto submit = [&](const std::string& path) {
        return parse_submit(R"({"schema_version":1,"id":"f","kind":"echo","input":{"path":")" + path + R"("}})", lim);
    };
    auto code = [](const std::variant<TaskSpec, Rejection>& r) {
        return std::holds_alternative<Rejection>(r) ? std::get<Rejection>(r).code + ": " + std::get<Rejection>(r).message
                                                    : std::string("accepted");
    };
    // Too big (4 bytes, limit 3), then fine once the limit allows it.
    EXPECT_EQ(code(submit(dir.file("allowed/sub/input.bin"))).rfind("oversize", 0), 0u);
    lim.max_file_input_bytes = 1 << 20;
    const auto accepted = submit(dir.file("allowed/sub/input.bin"));
    const TaskSpec& s = ok(accepted);
    EXPECT_EQ(s.input.size, 4u);
    EXPECT_EQ(s.input.path, fs::canonical(dir.file("allowed/sub/input.bin")).string());
    // Escapes: "..", a symbolic link pointing out, a sibling directory sharing the prefix, relative.
    EXPECT_EQ(code(submit(dir.file("allowed/../secret/key"))).rfind("path_not_allowed", 0), 0u);
    EXPECT_EQ(code(submit(dir.file("allowed/link-out"))).rfind("path_not_allowed", 0), 0u);
    EXPECT_EQ(code(submit(dir.file("allowed-evil/x"))).rfind("path_not_allowed", 0), 0u);
    EXPECT_EQ(code(submit("allowed/sub/input.bin")), "path_not_allowed: input.path: 'allowed/sub/input.bin' must be an absolute path");
    // Missing, or a directory.
    EXPECT_EQ(code(submit(dir.file("allowed/nope"))).rfind("input_unreadable", 0), 0u);
    EXPECT_NE(code(submit(dir.file("allowed/sub"))).find("is not a regular file"), std::string::npos);
}

TEST(TaskSpec, ReplyToAndCorrelationFor311) {
    AdmissionLimits lim;
    auto r = parse_submit(R"({"schema_version":1,"id":"t","kind":"echo","reply_to":"cpn/v1/replies/brain-1","correlation":"c-9"})", lim);
    ASSERT_TRUE(std::holds_alternative<TaskSpec>(r)) << std::get<Rejection>(r).message;
    EXPECT_EQ(std::get<TaskSpec>(r).reply_to, "cpn/v1/replies/brain-1");
    EXPECT_EQ(std::get<TaskSpec>(r).correlation, "c-9");
    EXPECT_EQ(check_reply_topic("cpn/v1/replies/x", "cpn/v1/replies/"), "");
    EXPECT_NE(check_reply_topic("cpn/v1/replies/", "cpn/v1/replies/"), "");  // the prefix alone is no topic
    EXPECT_NE(check_reply_topic(std::string("cpn/v1/replies/a\0b", 19), "cpn/v1/replies/"), "");
    EXPECT_NE(check_reply_topic("cpn/v1/replies/" + std::string(300, 'a'), "cpn/v1/replies/"), "");
}

TEST(TaskSpec, EchoParamsAreChecked) {
    Workload w = echo_workload();
    EXPECT_EQ(w.validate(nlohmann::json::object()), "");
    EXPECT_EQ(w.validate({{"sleep_ms", 10}, {"progress_steps", 2}, {"fail", "x"}, {"device_fault", false}}), "");
    EXPECT_NE(w.validate({{"sleep_ms", -1}}).find("params.sleep_ms must be an integer from 0 to 3600000"), std::string::npos);
    EXPECT_NE(w.validate({{"sleep_ms", "5"}}).find("params.sleep_ms"), std::string::npos);
    EXPECT_NE(w.validate({{"progress_steps", 5000}}).find("params.progress_steps"), std::string::npos);
    EXPECT_NE(w.validate({{"fail", ""}}).find("params.fail"), std::string::npos);
    EXPECT_NE(w.validate({{"device_fault", 1}}).find("params.device_fault"), std::string::npos);
    EXPECT_NE(w.validate({{"cmd", "ls"}}).find("unknown echo parameter 'cmd'"), std::string::npos);
    // Inline only when it is pure and instant.
    TaskSpec s;
    s.kind = "echo";
    EXPECT_TRUE(w.runs_inline(s));
    s.params = {{"sleep_ms", 5}};
    EXPECT_FALSE(w.runs_inline(s));
}

TEST(TaskSpec, Base64) {
    std::string out;
    EXPECT_TRUE(decode_base64("", out));
    EXPECT_EQ(out, "");
    EXPECT_TRUE(decode_base64("TWE=", out));
    EXPECT_EQ(out, "Ma");
    EXPECT_TRUE(decode_base64("TQ==", out));
    EXPECT_EQ(out, "M");
    EXPECT_FALSE(decode_base64("TQ=", out));
    EXPECT_FALSE(decode_base64("T=Q=", out));
    EXPECT_FALSE(decode_base64("TQ==TWE=", out));
}

Inventory two_devices() {
    Inventory inv;
    Device cpu;
    cpu.id = "cpu";
    cpu.device_class = DeviceClass::cpu;
    cpu.memory_bytes = 24ull << 30;
    cpu.precisions = {Precision::fp64, Precision::fp32};
    cpu.runtimes.push_back(RuntimePath{"cpu", 0, "", "", "", "", {}});
    Device gpu;
    gpu.id = "pci-0000:19:00.0";
    gpu.device_class = DeviceClass::gpu;
    gpu.memory_bytes = 80ull << 30;
    gpu.precisions = {Precision::fp32, Precision::fp16};
    gpu.runtimes.push_back(RuntimePath{"cuda", 0, "", "", "", "", {}});
    inv.devices = {cpu, gpu};
    return inv;
}

TEST(TaskSpec, RequirementsMatchedAgainstTheInventory) {
    AdmissionLimits lim;
    Inventory inv = two_devices();
    auto devices = [&](const std::string& req) {
        const auto parsed = parse_submit(R"({"schema_version":1,"id":"r","kind":"echo","requirements":)" + req + "}", lim);
        return eligible_devices(ok(parsed), inv);
    };
    auto any = devices("{}");
    ASSERT_TRUE(std::holds_alternative<std::vector<const Device*>>(any));
    EXPECT_EQ(std::get<std::vector<const Device*>>(any).size(), 2u);
    auto fp16 = devices(R"({"precision":"fp16"})");
    ASSERT_TRUE(std::holds_alternative<std::vector<const Device*>>(fp16));
    EXPECT_EQ(std::get<std::vector<const Device*>>(fp16).front()->id, "pci-0000:19:00.0");
    auto none = devices(R"({"device_class":"gpu","min_memory_bytes":100000000000})");
    ASSERT_TRUE(std::holds_alternative<Rejection>(none));
    const Rejection& r = std::get<Rejection>(none);
    EXPECT_EQ(r.code, "unsatisfiable");
    EXPECT_EQ(r.id, "r");
    EXPECT_NE(r.message.find("device_class=gpu min_memory_bytes=100000000000"), std::string::npos) << r.message;
    EXPECT_NE(r.message.find("pci-0000:19:00.0 (gpu, cuda, 81920 MiB, fp32/fp16)"), std::string::npos) << r.message;
    // An unhealthy device is never eligible.
    inv.devices[1].health = Health{false, "Xid 79: fell off the bus"};
    auto sick = devices(R"({"backend":"cuda"})");
    ASSERT_TRUE(std::holds_alternative<Rejection>(sick));
    EXPECT_NE(std::get<Rejection>(sick).message.find("unhealthy"), std::string::npos);
}

TEST(TaskSpec, KindRegistry) {
    EXPECT_TRUE(find_kind("echo").has_value());
    EXPECT_TRUE(find_kind("echo")->idempotent);
    EXPECT_FALSE(find_kind("render").has_value());  // registered by the render workload once it exists
    register_kind({"test-kind", false, "a test"});
    ASSERT_TRUE(find_kind("test-kind").has_value());
    EXPECT_FALSE(find_kind("test-kind")->idempotent);
}

}  // namespace
}  // namespace cpn::tasks
