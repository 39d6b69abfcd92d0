// fuzz_config: the agent's YAML configuration (an operator's file, or one pushed by a fleet
// tool) through the validating reader and the check command's report. Contract: a Config or an
// error naming the file, line and key; never an exception or a crash.
#include <string>

#include "config/config.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text = cpn::fuzz::as_string(data, size);
    cpn::fuzz::expect_no_escape("config", [&] {
        auto c = cpn::parse_config(text, "fuzz.yaml");
        if (!c.ok() && c.status().message().empty()) cpn::fuzz::broken("config", "a refused configuration without a message");
        (void)cpn::check_config(text, "fuzz.yaml");
    });
    return 0;
}
