#include "core/service_notify.hpp"

#include <cstdlib>

#include <spdlog/spdlog.h>

#ifdef CPN_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace cpn {

ServiceNotifier::ServiceNotifier() {
    const char* sock = std::getenv("NOTIFY_SOCKET");
    if (sock == nullptr || *sock == '\0') return;
#ifdef CPN_HAVE_SYSTEMD
    active_ = true;
    uint64_t usec = 0;
    // The environment stays set (children never notify: the unit has NotifyAccess=main), so
    // sd_notify() can read it on every call.
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
        watchdog_interval_ = std::chrono::microseconds(static_cast<int64_t>(usec / 2));
#else
    spdlog::warn("NOTIFY_SOCKET is set but this build has no systemd support (libsystemd): the "
                 "service manager will not see readiness or watchdog keep-alives; use Type=simple");
#endif
}

void ServiceNotifier::send(const std::string& state) {
#ifdef CPN_HAVE_SYSTEMD
    if (!active_) return;
    int r = sd_notify(0, state.c_str());
    if (r < 0) spdlog::debug("sd_notify: error {}", -r);
#else
    (void)state;
#endif
}

void ServiceNotifier::ready(const std::string& status) {
    if (!active_) return;
    if (ready_) {
        this->status(status);
        return;
    }
    ready_ = true;
    last_status_ = status;
    send("READY=1\nSTATUS=" + status);
    last_keepalive_ = Clock::now();
}

void ServiceNotifier::status(const std::string& status) {
    if (!active_ || status == last_status_) return;
    last_status_ = status;
    send("STATUS=" + status);
}

void ServiceNotifier::reloading() {
    if (!active_) return;
    ready_ = false;
    send("RELOADING=1");
}

void ServiceNotifier::stopping(const std::string& status) {
    if (!active_) return;
    last_status_ = status;
    send("STOPPING=1\nSTATUS=" + status);
}

void ServiceNotifier::keepalive(Clock::time_point now) {
    if (!watchdog_enabled() || now < last_keepalive_ + watchdog_interval_) return;
    last_keepalive_ = now;
    send("WATCHDOG=1");
}

ServiceNotifier::Clock::time_point ServiceNotifier::next_keepalive() const {
    if (!watchdog_enabled()) return Clock::time_point::max();
    return last_keepalive_ + watchdog_interval_;
}

}  // namespace cpn
