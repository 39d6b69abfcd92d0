#include "core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace cpn {

bool is_log_level(const std::string& level) {
    for (const char* l : {"trace", "debug", "info", "warn", "error", "off"})
        if (level == l) return true;
    return false;
}

Status set_log_level(const std::string& level) {
    if (!is_log_level(level))
        return {Code::invalid_argument, "unknown log level '" + level +
                                            "' (expected trace, debug, info, warn, error or off)"};
    spdlog::set_level(spdlog::level::from_str(level));
    return {};
}

void init_logging(const std::string& level) {
    auto logger = spdlog::stderr_color_mt("cpn");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    spdlog::set_default_logger(logger);
    (void)set_log_level(level);
}

}  // namespace cpn
