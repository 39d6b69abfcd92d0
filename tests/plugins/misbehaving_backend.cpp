// misbehaving_backend.cpp: one source, several test plugins, each failing the way real vendor
// runtimes do: a wrong ABI, a probe that hangs, a probe that crashes, a missing runtime library.
#include <csignal>
#include <cstring>
#include <unistd.h>

#include "cpn_backend.h"

#ifdef CPN_TEST_MODE_NEEDS_RUNTIME
extern "C" int cpn_vanishing_runtime_version(void);
#endif

namespace {

cpn_status probe(cpn_probe_info* out, cpn_msg*) {
#if defined(CPN_TEST_MODE_HANG)
    for (;;) ::pause();  // a driver stuck in an ioctl
#elif defined(CPN_TEST_MODE_CRASH)
    std::raise(SIGSEGV);  // a driver that dereferences garbage
#elif defined(CPN_TEST_MODE_NEEDS_RUNTIME)
    out->usable = cpn_vanishing_runtime_version() > 0;
#endif
    out->usable = 1;
    return CPN_OK;
}
cpn_status device_count(uint32_t* n, cpn_msg*) {
    *n = 0;
    return CPN_OK;
}
cpn_status device_info(uint32_t, cpn_device_desc*, cpn_msg*) { return CPN_E_INVALID_ARGUMENT; }

const cpn_backend kBackend = {CPN_BACKEND_ABI_VERSION, sizeof(cpn_backend), "misbehaving", "0",
                              probe, device_count, device_info, nullptr, nullptr, nullptr,
                              nullptr, nullptr, nullptr, nullptr, nullptr};

}  // namespace

extern "C" CPN_BACKEND_EXPORT uint32_t cpn_backend_abi_version(void) {
#ifdef CPN_TEST_MODE_BAD_ABI
    return CPN_BACKEND_ABI_VERSION + 98;
#else
    return CPN_BACKEND_ABI_VERSION;
#endif
}
extern "C" CPN_BACKEND_EXPORT const cpn_backend* cpn_backend_entry(const cpn_host*) { return &kBackend; }
