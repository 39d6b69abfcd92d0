// file_values.cpp: small-file reads with POSIX calls, strict number parsing with from_chars.
#include "file_values.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <filesystem>

namespace cpn::telemetry {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* from_chars over the whole of a trimmed text; `T` is an integer or floating type. A leading
 * '+' is not accepted by from_chars and does not occur in these files, so it stays an error. */
template <typename T>
std::optional<T> parse_whole(std::string_view text) {
    text = trim(text);
    if (text.empty()) return std::nullopt;
    T value{};
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (ec != std::errc() || ptr != end) return std::nullopt;
    return value;
}

}  // namespace

std::optional<std::string_view> read_small_file(const std::string& path, char* buf, size_t cap) {
    if (cap == 0) return std::nullopt;
    int fd;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return std::nullopt;
    /* /proc files may come in several reads; sysfs attributes come in one. Loop until EOF or
     * the buffer is full (the callers only need the head of the longer /proc files). */
    size_t used = 0;
    bool ok = true;
    while (used + 1 < cap) {
        ssize_t n = ::read(fd, buf + used, cap - 1 - used);
        if (n < 0) {
            if (errno == EINTR) continue;
            ok = false;
            break;
        }
        if (n == 0) break;
        used += static_cast<size_t>(n);
    }
    ::close(fd);
    if (!ok) return std::nullopt;
    buf[used] = '\0';
    return std::string_view(buf, used);
}

std::optional<int64_t> parse_int64(std::string_view text) { return parse_whole<int64_t>(text); }

std::optional<uint64_t> parse_uint64(std::string_view text) {
    /* from_chars for an unsigned type rejects a leading '-', so "-5" is an error, not a wrap. */
    return parse_whole<uint64_t>(text);
}

std::optional<double> parse_double(std::string_view text) {
    std::optional<double> v = parse_whole<double>(text);
    if (v && !std::isfinite(*v)) return std::nullopt;
    return v;
}

std::optional<int64_t> read_int_file(const std::string& path) {
    char buf[128];
    std::optional<std::string_view> text = read_small_file(path, buf, sizeof buf);
    if (!text) return std::nullopt;
    return parse_int64(*text);
}

std::optional<uint64_t> read_uint_file(const std::string& path) {
    char buf[128];
    std::optional<std::string_view> text = read_small_file(path, buf, sizeof buf);
    if (!text) return std::nullopt;
    return parse_uint64(*text);
}

std::string read_line_file(const std::string& path) {
    char buf[256];
    std::optional<std::string_view> text = read_small_file(path, buf, sizeof buf);
    if (!text) return "";
    std::string_view line = *text;
    size_t nl = line.find('\n');
    if (nl != std::string_view::npos) line = line.substr(0, nl);
    return std::string(trim(line));
}

std::vector<std::string> list_dir(const std::string& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) return names;
    for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
        if (ec) break;
        names.push_back(it->path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string_view next_token(std::string_view& text) {
    size_t i = 0;
    while (i < text.size() && is_space(text[i])) ++i;
    size_t j = i;
    while (j < text.size() && !is_space(text[j])) ++j;
    std::string_view token = text.substr(i, j - i);
    text.remove_prefix(j);
    return token;
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && (is_space(text.back()) || text.back() == '\0')) text.remove_suffix(1);
    return text;
}

}  // namespace cpn::telemetry
