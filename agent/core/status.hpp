// status.hpp: recoverable errors as values (abseil Status / std::expected style).
// Every error carries a canonical code and a message that says what failed and where.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace cpn {

enum class Code {
    ok = 0,
    invalid_argument,
    not_found,
    unavailable,
    unsupported,
    out_of_memory,
    cancelled,
    deadline_exceeded,
    internal,
    device_lost,
    failed_precondition,
    permission_denied,
};

/* Lower-case name of a code, as it appears in logs and JSON ("invalid_argument"). */
const char* code_name(Code c);

class Status {
public:
    Status() = default;
    Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
    static Status Ok() { return {}; }

    bool ok() const { return code_ == Code::ok; }
    Code code() const { return code_; }
    const std::string& message() const { return message_; }
    /* "invalid_argument: agent.yaml:3:5: ..." */
    std::string to_string() const;

private:
    Code code_ = Code::ok;
    std::string message_;
};

/* A value or the Status that explains why there is none. */
template <typename T>
class Result {
public:
    Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(Status status) : v_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

    bool ok() const { return std::holds_alternative<T>(v_); }
    const Status& status() const {
        static const Status kOk;
        return ok() ? kOk : std::get<Status>(v_);
    }
    T& value() & { return std::get<T>(v_); }
    const T& value() const& { return std::get<T>(v_); }
    T&& value() && { return std::get<T>(std::move(v_)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }

private:
    std::variant<T, Status> v_;
};

}  // namespace cpn
