// commands_test.cpp: every way a command from the brain can be wrong gets its own code and a
// message a person can act on; good commands are read exactly.
#include "daemon/commands.hpp"

#include <gtest/gtest.h>

namespace cpn {
namespace {

TEST(Commands, Rebirth) {
    ParsedCommand c = parse_command(R"({"schema_version":1,"id":"c1","command":"rebirth"})");
    EXPECT_EQ(c.kind, CommandKind::rebirth);
    EXPECT_EQ(c.ack.code, "ok");
    EXPECT_EQ(c.ack.id, "c1");
    EXPECT_EQ(c.ack.command, "rebirth");
}

TEST(Commands, SetTelemetryInterval) {
    ParsedCommand c = parse_command(
        R"({"schema_version":1,"id":"c2","command":"set_telemetry_interval","params":{"interval_s":5}})");
    EXPECT_EQ(c.kind, CommandKind::set_telemetry_interval);
    EXPECT_EQ(c.interval_s, 5);
}

TEST(Commands, Rebenchmark) {
    ParsedCommand plain = parse_command(R"({"schema_version":1,"id":"c3","command":"rebenchmark"})");
    EXPECT_EQ(plain.kind, CommandKind::rebenchmark);
    EXPECT_EQ(plain.bench_mode, "");
    EXPECT_TRUE(plain.devices.empty());
    ParsedCommand c = parse_command(
        R"({"schema_version":1,"id":"c4","command":"rebenchmark","params":{"mode":"full","devices":["cpu","pci-0000:19:00.0"]}})");
    EXPECT_EQ(c.kind, CommandKind::rebenchmark);
    EXPECT_EQ(c.bench_mode, "full");
    EXPECT_EQ(c.devices, (std::vector<std::string>{"cpu", "pci-0000:19:00.0"}));
}

TEST(Commands, SetNormalization) {
    ParsedCommand c = parse_command(
        R"({"schema_version":1,"id":"c5","command":"set_normalization","params":{"weights":{"ai":0.5},"reference":{"memory":2e11}}})");
    EXPECT_EQ(c.kind, CommandKind::set_normalization);
    EXPECT_EQ(c.ack.code, "ok");
    EXPECT_DOUBLE_EQ(c.normalization["weights"]["ai"].get<double>(), 0.5);
}

struct Bad {
    const char* name;
    std::string payload;
    const char* code;
    const char* message;  // exact
    bool has_id;
};
void PrintTo(const Bad& b, std::ostream* os) { *os << b.name; }

class CommandsBad : public ::testing::TestWithParam<Bad> {};

TEST_P(CommandsBad, ExactCodeAndMessage) {
    ParsedCommand c = parse_command(GetParam().payload);
    EXPECT_EQ(c.kind, CommandKind::invalid);
    EXPECT_EQ(c.ack.code, GetParam().code);
    EXPECT_EQ(c.ack.message, GetParam().message);
    EXPECT_EQ(c.ack.id.has_value(), GetParam().has_id);
}

INSTANTIATE_TEST_SUITE_P(
    Table, CommandsBad,
    ::testing::Values(
        Bad{"NotJson", "reboot now", "malformed",
            "command is not valid JSON: [json.exception.parse_error.101] parse error at line 1, column 1: "
            "syntax error while parsing value - invalid literal; last read: 'r'",
            false},
        Bad{"Empty", "", "malformed",
            "command is not valid JSON: [json.exception.parse_error.101] parse error at line 1, column 1: "
            "syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal",
            false},
        Bad{"Array", "[1,2]", "malformed", "command must be a JSON object, got array", false},
        Bad{"NoVersion", R"({"id":"a","command":"rebirth"})", "malformed",
            "schema_version (an integer) is missing", true},
        Bad{"FutureVersion", R"({"schema_version":2,"id":"a","command":"rebirth"})",
            "unsupported_schema_version", "schema_version 2 is not supported; this agent speaks 1", true},
        Bad{"NoId", R"({"schema_version":1,"command":"rebirth"})", "malformed", "id is missing", false},
        Bad{"IdNotString", R"({"schema_version":1,"id":7,"command":"rebirth"})", "malformed",
            "id must be a string of 1 to 128 characters", false},
        Bad{"IdTooLong", R"({"schema_version":1,"id":")" + std::string(129, 'x') + R"(","command":"rebirth"})",
            "malformed", "id must be a string of 1 to 128 characters", false},
        Bad{"NoCommand", R"({"schema_version":1,"id":"a"})", "malformed", "command (a string) is missing", true},
        Bad{"UnknownField", R"({"schema_version":1,"id":"a","command":"rebirth","force":true})", "malformed",
            "unknown field 'force'", true},
        Bad{"Unknown", R"({"schema_version":1,"id":"a","command":"format_disk"})", "unknown_command",
            "unknown command 'format_disk' (known: rebirth, rebenchmark, set_telemetry_interval, set_normalization)", true},
        Bad{"ParamsNotObject", R"({"schema_version":1,"id":"a","command":"rebirth","params":[1]})",
            "invalid_params", "params must be an object", true},
        Bad{"RebirthWithParams", R"({"schema_version":1,"id":"a","command":"rebirth","params":{"x":1}})",
            "invalid_params", "rebirth takes no params", true},
        Bad{"IntervalMissing", R"({"schema_version":1,"id":"a","command":"set_telemetry_interval"})",
            "invalid_params", "params.interval_s (an integer number of seconds) is required", true},
        Bad{"IntervalString",
            R"({"schema_version":1,"id":"a","command":"set_telemetry_interval","params":{"interval_s":"5"}})",
            "invalid_params", "params.interval_s (an integer number of seconds) is required", true},
        Bad{"IntervalZero",
            R"({"schema_version":1,"id":"a","command":"set_telemetry_interval","params":{"interval_s":0}})",
            "invalid_params", "params.interval_s must be between 1 and 3600, got 0", true},
        Bad{"IntervalHuge",
            R"({"schema_version":1,"id":"a","command":"set_telemetry_interval","params":{"interval_s":99999999999}})",
            "invalid_params", "params.interval_s must be between 1 and 3600, got 99999999999", true},
        Bad{"IntervalExtraParam",
            R"({"schema_version":1,"id":"a","command":"set_telemetry_interval","params":{"interval_s":5,"y":1}})",
            "invalid_params", "unknown parameter 'y'", true},
        Bad{"RebenchBadMode",
            R"({"schema_version":1,"id":"a","command":"rebenchmark","params":{"mode":"fastest"}})",
            "invalid_params", "params.mode must be \"quick\" or \"full\", got \"fastest\"", true},
        Bad{"RebenchBadDevices",
            R"({"schema_version":1,"id":"a","command":"rebenchmark","params":{"devices":"cpu"}})",
            "invalid_params", "params.devices must be a list of at most 256 device ids", true},
        Bad{"RebenchBadDevice",
            R"({"schema_version":1,"id":"a","command":"rebenchmark","params":{"devices":[7]}})",
            "invalid_params", "params.devices: every entry must be a device id string, got 7", true},
        Bad{"RebenchUnknownParam",
            R"({"schema_version":1,"id":"a","command":"rebenchmark","params":{"now":true}})",
            "invalid_params", "unknown parameter 'now' (known: mode, devices)", true},
        Bad{"NormalizationEmpty", R"({"schema_version":1,"id":"a","command":"set_normalization"})",
            "invalid_params",
            "params must hold the normalisation: reference, weights, task_classes (docs/capacity.md)", true},
        Bad{"NormalizationBadWeight",
            R"({"schema_version":1,"id":"a","command":"set_normalization","params":{"weights":{"compute":-1}}})",
            "invalid_params", "normalization.weights.compute: -1.000000 must be >= 0", true},
        Bad{"NormalizationUnknownKey",
            R"({"schema_version":1,"id":"a","command":"set_normalization","params":{"scale":2}})",
            "invalid_params",
            "normalization.scale: unknown key (known: reference_name, reference, weights, task_classes)", true},
        Bad{"NumberPastDoubleRange",
            R"({"schema_version":1,"id":"a","command":"set_telemetry_interval","params":{"interval_s":1e999}})",
            "malformed",
            "command is not valid JSON: [json.exception.out_of_range.406] number overflow parsing '1e999'", false},
        Bad{"TooLarge", std::string(70000, ' '), "malformed", "command is 70000 bytes; the limit is 65536", false}),
    [](const ::testing::TestParamInfo<Bad>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace cpn
