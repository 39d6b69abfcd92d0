// fuzz_command: a command from the brain (MQTT cpn/v1/<node>/cmd: rebirth, rebenchmark,
// set_telemetry_interval, set_normalization with its capacity-normalisation parameters) through
// the command reader. Contract: a command, or kind invalid with an ack code and message; never
// an exception or a crash.
#include <string>

#include "daemon/commands.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    cpn::fuzz::expect_no_escape("command", [&] {
        const cpn::ParsedCommand c = cpn::parse_command(cpn::fuzz::as_string(data, size));
        if (c.kind == cpn::CommandKind::invalid && (c.ack.code.empty() || c.ack.code == "ok" || c.ack.message.empty()))
            cpn::fuzz::broken("command", "an invalid command without an error code and message in its ack");
        if (c.kind == cpn::CommandKind::set_telemetry_interval && c.interval_s <= 0)
            cpn::fuzz::broken("command", "set_telemetry_interval accepted interval " + std::to_string(c.interval_s));
    });
    return 0;
}
