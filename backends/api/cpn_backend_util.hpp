// cpn_backend_util.hpp: small header-only helpers for backends written in C++.
// Header-only on purpose: a plugin links nothing of the core.
#pragma once

#include "cpn_backend.h"

#include <cctype>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

namespace cpn::plugin {

/* Copies src into a fixed char array, always NUL-terminated, truncating when needed. */
template <size_t N>
inline void copy_str(char (&dst)[N], const std::string& src) {
    size_t n = src.size() < N - 1 ? src.size() : N - 1;
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}

/* printf into a cpn_msg (NULL-safe) and return the status, for `return fail(err, ...)`. */
__attribute__((format(printf, 3, 4))) inline cpn_status fail(cpn_msg* err, cpn_status code,
                                                             const char* fmt, ...) {
    if (err != nullptr) {
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(err->text, sizeof err->text, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Runs `f` (which returns a cpn_status) at an ABI entry point, so that nothing thrown crosses
 * into the host: host memory exhaustion becomes CPN_E_OUT_OF_MEMORY, anything else (a bug here)
 * CPN_E_INTERNAL with the exception's text; each message starts with `what` ("cuda probe"). */
template <typename F>
cpn_status guarded(cpn_msg* err, const char* what, F&& f) noexcept {
    try {
        return f();
    } catch (const std::bad_alloc&) {
        return fail(err, CPN_E_OUT_OF_MEMORY, "%s: out of host memory", what);
    } catch (const std::exception& e) {
        return fail(err, CPN_E_INTERNAL, "%s: internal error: %s", what, e.what());
    } catch (...) {
        return fail(err, CPN_E_INTERNAL, "%s: internal error (unknown exception)", what);
    }
}

/* The buffer named `name` in a host-given list (NULL entries and names tolerated), or NULL. */
template <typename B>
inline B* find_buffer(B* list, uint32_t count, const char* name) {
    for (uint32_t i = 0; list != nullptr && i < count; ++i)
        if (list[i].name != nullptr && std::strcmp(list[i].name, name) == 0) return &list[i];
    return nullptr;
}

inline cpn_attr* next_attr(cpn_device_desc* d, const char* key, const char* unit) {
    if (d->attr_count >= CPN_MAX_ATTRS) return nullptr;
    cpn_attr* a = &d->attrs[d->attr_count++];
    std::memset(a, 0, sizeof *a);
    copy_str(a->key, key);
    copy_str(a->unit, unit ? unit : "");
    return a;
}

inline void attr_str(cpn_device_desc* d, const char* key, const std::string& v) {
    if (cpn_attr* a = next_attr(d, key, nullptr)) {
        a->type = CPN_ATTR_STRING;
        copy_str(a->s, v);
    }
}
inline void attr_int(cpn_device_desc* d, const char* key, int64_t v, const char* unit = nullptr) {
    if (cpn_attr* a = next_attr(d, key, unit)) {
        a->type = CPN_ATTR_INT;
        a->i = v;
    }
}
inline void attr_float(cpn_device_desc* d, const char* key, double v, const char* unit = nullptr) {
    if (cpn_attr* a = next_attr(d, key, unit)) {
        a->type = CPN_ATTR_FLOAT;
        a->f = v;
    }
}
inline void attr_bool(cpn_device_desc* d, const char* key, bool v) {
    if (cpn_attr* a = next_attr(d, key, nullptr)) {
        a->type = CPN_ATTR_BOOL;
        a->i = v ? 1 : 0;
    }
}

/* Normalises a PCI address to "dddd:bb:dd.f" lower-case; returns "" when it is not one. */
/* The checks every device_telemetry extra starts with: arguments present, a struct at least as
 * large as this ABI's, then every reading cleared (absent until set). */
inline cpn_status begin_telemetry(const char* pci_address, cpn_device_telemetry* out, cpn_msg* err) {
    if (pci_address == nullptr || out == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "device_telemetry: pci_address or out is NULL");
    if (out->struct_size < sizeof(cpn_device_telemetry))
        return fail(err, CPN_E_INVALID_ARGUMENT, "device_telemetry: out->struct_size is %u, expected at least %zu",
                    out->struct_size, sizeof(cpn_device_telemetry));
    const uint32_t size = out->struct_size;
    std::memset(out, 0, sizeof *out);
    out->struct_size = size;
    return CPN_OK;
}

inline std::string normalise_pci(const std::string& in) {
    unsigned dom = 0, bus = 0, dev = 0, fn = 0;
    char tail = 0;
    if (std::sscanf(in.c_str(), "%x:%x:%x.%x%c", &dom, &bus, &dev, &fn, &tail) == 4) {
    } else if (std::sscanf(in.c_str(), "%x:%x.%x%c", &bus, &dev, &fn, &tail) == 3) {
        dom = 0;
    } else {
        return "";
    }
    if (dom > 0xffff || bus > 0xff || dev > 0x1f || fn > 0x7) return "";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
    return buf;
}

/* Formats 16 raw UUID bytes as lower-case 8-4-4-4-12. */
inline std::string format_uuid(const unsigned char* b) {
    char buf[40];
    std::snprintf(buf, sizeof buf,
                  "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                  b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                  b[13], b[14], b[15]);
    return buf;
}

inline std::string trim(std::string s) {
    while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.back())) || s.back() == '\0'))
        s.pop_back();
    size_t i = 0;
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    return s.substr(i);
}

}  // namespace cpn::plugin
