// session_counter.hpp: the Sparkplug-style birth/death sequence number (bdSeq). Persisted in its
// own small file, it increases on every connect and survives kill -9 and power cuts, so the
// brain can pair each birth with the death certificate the broker publishes for that session.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.hpp"

namespace cpn {

/* Not thread-safe: one owner (the daemon's connect path) increments it. */
class SessionCounter {
public:
    /* Reads <path> (creating it with 0, durably, when absent). The content is the decimal number
     * and a newline. A garbage or truncated file is an error that names the file and what is
     * wrong: it is never silently reset, because the brain pairs births and deaths by this
     * number. */
    static Result<SessionCounter> open(const std::string& path);

    int64_t current() const { return value_; }

    /* Increments and makes it durable before returning: writes <path>.tmp, fsyncs it, renames it
     * over <path> and fsyncs the directory. On error the counter is unchanged in memory (the file
     * then holds either the old or the new value, never a mix). */
    Result<int64_t> next();

    const std::string& path() const { return path_; }

private:
    SessionCounter(std::string path, int64_t value) : path_(std::move(path)), value_(value) {}
    /* Writes `value` to path_ by the tmp + fsync + rename + directory fsync sequence. */
    Status store(int64_t value, const char* what) const;

    std::string path_;
    int64_t value_ = 0;
};

}  // namespace cpn
