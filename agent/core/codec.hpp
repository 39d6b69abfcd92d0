// codec.hpp: the byte encodings the task path and cpnctl share: base64 (RFC 4648, with
// padding) for inline task data, and SHA-256 for output checksums (OpenSSL libcrypto).
#pragma once

#include <string>

namespace cpn {

std::string base64_encode(const std::string& bytes);
/* Standard base64 with padding; false on any other character or a misplaced '='. */
bool base64_decode(const std::string& in, std::string& out);
/* Lower-case hex SHA-256 of `bytes`. */
std::string sha256_hex(const std::string& bytes);

}  // namespace cpn
