// ze_log.cpp: the host log callback, stored once at entry and read from any thread.
#include "ze_log.hpp"

#include <atomic>
#include <cstddef>

namespace cpn::levelzero {
namespace {

using LogFn = void (*)(int, const char*, const char*);
std::atomic<LogFn> g_log{nullptr};

}  // namespace

/* Takes the callback only when the host's struct is large enough to hold it, so an older or
 * truncated cpn_host never makes the plugin read past its end. */
void set_host(const cpn_host* host) {
    LogFn fn = nullptr;
    if (host != nullptr && host->struct_size >= offsetof(cpn_host, log) + sizeof(host->log)) {
        fn = host->log;
    }
    g_log.store(fn, std::memory_order_release);
}

void log(int level, const std::string& message) {
    if (LogFn fn = g_log.load(std::memory_order_acquire)) fn(level, "levelzero", message.c_str());
}

}  // namespace cpn::levelzero
