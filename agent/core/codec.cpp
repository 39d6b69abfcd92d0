#include "core/codec.hpp"

#include <cstdint>

#include <openssl/evp.h>

namespace cpn {

std::string base64_encode(const std::string& in) {
    static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
        out += {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], a[v & 63]};
    }
    if (i + 1 == in.size()) {
        const uint32_t v = uint8_t(in[i]) << 16;
        out += {a[v >> 18], a[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
        out += {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], '='};
    }
    return out;
}

bool base64_decode(const std::string& in, std::string& out) {
    static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.clear();
    if (in.size() % 4 != 0) return false;
    out.reserve(in.size() / 4 * 3);
    for (size_t i = 0; i < in.size(); i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (size_t j = 0; j < 4; ++j) {
            const char c = in[i + j];
            if (c == '=') {
                // Padding only in the last quantum, at its end.
                if (i + 4 != in.size() || j < 2) return false;
                ++pad;
                v <<= 6;
                continue;
            }
            if (pad > 0) return false;
            const size_t k = kAlphabet.find(c);
            if (k == std::string::npos) return false;
            v = (v << 6) | static_cast<uint32_t>(k);
        }
        out.push_back(static_cast<char>((v >> 16) & 0xff));
        if (pad < 2) out.push_back(static_cast<char>((v >> 8) & 0xff));
        if (pad < 1) out.push_back(static_cast<char>(v & 0xff));
    }
    return true;
}

std::string sha256_hex(const std::string& bytes) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    // Fetched once: EVP_sha256() makes EVP_Digest look the implementation up in the provider
    // tables on every call (OpenSSL 3), which costs more than hashing a small buffer.
    static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (EVP_Digest(bytes.data(), bytes.size(), md, &n, kSha256 ? kSha256 : EVP_sha256(), nullptr) != 1) return "";
    static const char* d = "0123456789abcdef";
    std::string s(n * 2, '0');
    for (unsigned i = 0; i < n; ++i) {
        s[2 * i] = d[md[i] >> 4];
        s[2 * i + 1] = d[md[i] & 15];
    }
    return s;
}

}  // namespace cpn
