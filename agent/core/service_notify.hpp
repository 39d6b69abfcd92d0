// service_notify.hpp: the agent's side of the systemd service protocol (sd_notify(3)):
// readiness, a one-line status, watchdog keep-alives, reload and stop. Outside systemd
// (no NOTIFY_SOCKET) every call is a no-op, so the daemon calls it unconditionally.
#pragma once

#include <chrono>
#include <string>

namespace cpn {

class ServiceNotifier {
public:
    using Clock = std::chrono::steady_clock;

    /* Reads NOTIFY_SOCKET and WATCHDOG_USEC (and WATCHDOG_PID) from the environment. */
    ServiceNotifier();

    /* READY=1 with a status line; sent once, later calls only update the status. */
    void ready(const std::string& status);
    /* STATUS=, shown by `systemctl status`. Repeats of the same text are not re-sent. */
    void status(const std::string& status);
    const std::string& last_status() const { return last_status_; }
    /* RELOADING=1 before a reload (SIGHUP), then ready() again after it. */
    void reloading();
    /* STOPPING=1 when a graceful stop begins. */
    void stopping(const std::string& status);

    /* True when the service manager expects keep-alives (WatchdogSec= is set for us). */
    bool watchdog_enabled() const { return watchdog_interval_.count() > 0; }
    /* Sends WATCHDOG=1 when half the watchdog period has passed since the last one. Call it
     * from the main loop only: a loop that stops turning stops the keep-alives, and the
     * service manager restarts the agent. */
    void keepalive(Clock::time_point now);
    /* When keepalive() next has something to send (time_point::max() without a watchdog). */
    Clock::time_point next_keepalive() const;

private:
    void send(const std::string& state);

    bool active_ = false;
    bool ready_ = false;
    std::string last_status_;
    std::chrono::microseconds watchdog_interval_{0};  // half of WATCHDOG_USEC
    Clock::time_point last_keepalive_{};
};

}  // namespace cpn
