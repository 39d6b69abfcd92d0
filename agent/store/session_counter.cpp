#include "store/session_counter.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

namespace cpn {
namespace {

// The file holds at most 19 digits and a newline; anything much longer is not ours.
constexpr size_t kMaxFileBytes = 64;

Code errno_code(int e) {
    switch (e) {
        case EACCES:
        case EPERM:
        case EROFS: return Code::permission_denied;
        case ENOENT:
        case ENOTDIR: return Code::not_found;
        case ENOSPC:
        case EDQUOT:
        case EIO: return Code::unavailable;
        default: return Code::internal;
    }
}

Status sys_error(const std::string& path, const char* what, int e) {
    return Status(errno_code(e), path + ": " + what + ": " + std::strerror(e));
}

std::string parent_dir(const std::string& path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

/* Shows file content in an error message without letting control bytes into the log. */
std::string printable(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < 32; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '\n') {
            out += "\\n";
        } else if (c < 0x20 || c >= 0x7f) {
            static const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (s.size() > 32) out += "...";
    return out;
}

/* Reads the whole file (at most kMaxFileBytes + 1 bytes, enough to tell "too long"). Sets
 * `absent` instead of failing when it does not exist. */
Status read_file(const std::string& path, std::string& text, bool& absent) {
    absent = false;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            absent = true;
            return {};
        }
        return sys_error(path, "open", errno);
    }
    char buf[kMaxFileBytes + 1];
    size_t have = 0;
    while (have < sizeof buf) {
        ssize_t n = ::read(fd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            ::close(fd);
            return sys_error(path, "read", e);
        }
        if (n == 0) break;
        have += static_cast<size_t>(n);
    }
    ::close(fd);
    text.assign(buf, have);
    return {};
}

/* The content must be exactly the decimal number and one newline: anything else means the file
 * was damaged or written by something else, and guessing a value could pair the wrong births
 * and deaths. */
Result<int64_t> parse(const std::string& path, const std::string& text) {
    auto bad = [&](const std::string& why) {
        return Status(Code::failed_precondition,
                      path + ": " + why + "; refusing to reset the session counter (fix or remove the file)");
    };
    if (text.empty()) return bad("empty file (truncated?)");
    if (text.size() > kMaxFileBytes) return bad("too long to be a session counter ('" + printable(text) + "')");
    if (text.back() != '\n') return bad("no newline after the number (truncated?): '" + printable(text) + "'");
    std::string digits = text.substr(0, text.size() - 1);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
        return bad("expected a decimal number and a newline, got '" + printable(text) + "'");
    int64_t v = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || end != digits.data() + digits.size())
        return bad("number out of range: '" + printable(text) + "'");
    return v;
}

}  // namespace

Status SessionCounter::store(int64_t value, const char* what) const {
    const std::string tmp = path_ + ".tmp";
    const std::string text = std::to_string(value) + "\n";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return sys_error(tmp, what, errno);
    auto fail = [&](const std::string& file, const char* step, int e) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        return sys_error(file, (std::string(what) + ": " + step).c_str(), e);
    };
    size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(tmp, "write", errno);
        done += static_cast<size_t>(n);
    }
    // The data must be on disk before the rename makes it the counter: otherwise a power cut
    // can leave a renamed but empty file (ext4 delayed allocation).
    if (::fsync(fd) != 0) return fail(tmp, "fsync", errno);
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) return fail(tmp, "close", errno);
    if (::rename(tmp.c_str(), path_.c_str()) != 0) return fail(path_, "rename", errno);
    // And the rename itself must be on disk before the value is used.
    const std::string dir = parent_dir(path_);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return sys_error(dir, (std::string(what) + ": open directory").c_str(), errno);
    if (::fsync(dfd) != 0) {
        int e = errno;
        ::close(dfd);
        return sys_error(dir, (std::string(what) + ": fsync directory").c_str(), e);
    }
    ::close(dfd);
    return {};
}

Result<SessionCounter> SessionCounter::open(const std::string& path) {
    try {
        if (path.empty()) return Status(Code::invalid_argument, "session counter: empty path");
        std::string text;
        bool absent = false;
        if (Status s = read_file(path, text, absent); !s.ok()) return s;
        if (absent) {
            SessionCounter c(path, 0);
            if (Status s = c.store(0, "create"); !s.ok()) return s;
            return c;
        }
        Result<int64_t> v = parse(path, text);
        if (!v.ok()) return v.status();
        return SessionCounter(path, v.value());
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, path + ": open: out of memory");
    }
}

Result<int64_t> SessionCounter::next() {
    try {
        if (value_ == std::numeric_limits<int64_t>::max())
            return Status(Code::failed_precondition, path_ + ": the session counter is at its maximum");
        if (Status s = store(value_ + 1, "next"); !s.ok()) return s;
        return ++value_;
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, path_ + ": next: out of memory");
    }
}

}  // namespace cpn
