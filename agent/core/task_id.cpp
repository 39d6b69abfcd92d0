#include "core/task_id.hpp"

#include <algorithm>

namespace cpn {

namespace {
bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
}  // namespace

bool is_valid_task_id(const std::string& id) {
    if (id.empty() || id.size() > 128 || !is_alnum(id[0])) return false;
    return std::all_of(id.begin(), id.end(),
                       [](char c) { return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '-'; });
}

}  // namespace cpn
