#include "core/log.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#ifdef CPN_HAVE_SYSTEMD
#include <spdlog/sinks/systemd_sink.h>
#endif

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

bool stderr_is_journal() {
    // systemd sets JOURNAL_STREAM to "<device>:<inode>" of the stream it connected to stderr;
    // a redirect (cpn-agent ... 2>file under systemd) no longer matches it.
    const char* js = std::getenv("JOURNAL_STREAM");
    if (js == nullptr) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    if (::fstat(2, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

void init_logging(const std::string& level) {
    std::shared_ptr<spdlog::logger> logger;
#ifdef CPN_HAVE_SYSTEMD
    // Under systemd, log to the journal natively: each line keeps its level as the syslog
    // PRIORITY (journalctl -p warning filters), and the journal adds its own time stamp.
    if (stderr_is_journal()) logger = spdlog::systemd_logger_mt("cpn", "cpn-agent");
#endif
    if (!logger) {
        logger = spdlog::stderr_color_mt("cpn");
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    }
    spdlog::set_default_logger(logger);
    (void)set_log_level(level);
}

}  // namespace cpn
