#include "core/status.hpp"

namespace cpn {

const char* code_name(Code c) {
    switch (c) {
        case Code::ok: return "ok";
        case Code::invalid_argument: return "invalid_argument";
        case Code::not_found: return "not_found";
        case Code::unavailable: return "unavailable";
        case Code::unsupported: return "unsupported";
        case Code::out_of_memory: return "out_of_memory";
        case Code::cancelled: return "cancelled";
        case Code::deadline_exceeded: return "deadline_exceeded";
        case Code::internal: return "internal";
        case Code::device_lost: return "device_lost";
        case Code::failed_precondition: return "failed_precondition";
        case Code::permission_denied: return "permission_denied";
    }
    return "unknown";
}

std::string Status::to_string() const {
    if (ok()) return "ok";
    return std::string(code_name(code_)) + ": " + message_;
}

}  // namespace cpn
