// file_values.hpp: reading the small /proc and sysfs files the samplers use, and parsing the
// numbers in them strictly.
//
// Every sample runs on an idle edge node every few seconds, so reads go through one stack
// buffer per call (no heap), and parsing rejects anything that is not exactly a number: a file
// holding garbage yields "no reading", never zero.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cpn::telemetry {

/* Large enough for every file read here: a sysfs attribute, /proc/loadavg, the head of
 * /proc/meminfo and the aggregate line of /proc/stat. */
inline constexpr size_t kReadBufferSize = 4096;

/* Reads at most `cap - 1` bytes of the file at `path` into `buf` and returns a view of them,
 * or nullopt when the file cannot be opened or read (absent, permission denied, a sysfs
 * attribute whose driver returns an error). Retries on EINTR; allocates nothing. */
std::optional<std::string_view> read_small_file(const std::string& path, char* buf, size_t cap);

/* The whole of `text`, surrounding whitespace aside, as a decimal integer; nullopt when it is
 * empty, not a number, has trailing characters, or does not fit. */
std::optional<int64_t> parse_int64(std::string_view text);
std::optional<uint64_t> parse_uint64(std::string_view text);

/* The whole of `text`, surrounding whitespace aside, as a finite decimal number; nullopt for
 * anything else (including "nan" and "inf", which must never reach the JSON). */
std::optional<double> parse_double(std::string_view text);

/* A single-integer attribute file (sysfs: "48000\n"), read and parsed strictly. */
std::optional<int64_t> read_int_file(const std::string& path);
std::optional<uint64_t> read_uint_file(const std::string& path);

/* The first line of a single-line attribute file, whitespace trimmed ("" when unreadable). Used
 * for names ("coretemp", "package-0"); allocates only the short result. */
std::string read_line_file(const std::string& path);

/* Names of the entries of directory `dir`, sorted; empty when it cannot be listed. Never
 * throws (filesystem errors are reported through error codes). Used at construction only. */
std::vector<std::string> list_dir(const std::string& dir);

/* Removes and returns the next whitespace-separated token of `text` ("" at the end). */
std::string_view next_token(std::string_view& text);

/* `text` without leading and trailing whitespace. */
std::string_view trim(std::string_view text);

}  // namespace cpn::telemetry
