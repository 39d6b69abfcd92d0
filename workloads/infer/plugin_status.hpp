// plugin_status.hpp: for the backend plugins that run the inference runtime: the cpn_status an
// inference Error maps to at the plugin ABI (cpn_backend.h / cpn_infer.h), and the guard that
// keeps exceptions from crossing it.
#pragma once

#include <exception>
#include <new>

#include "cpn_backend.h"
#include "cpn_backend_util.hpp"
#include "tensor.hpp"

namespace cpn::infer {

inline cpn_status status_of(const Error& e) {
    switch (e.kind()) {
        case Error::unsupported: return CPN_E_UNSUPPORTED;
        case Error::cancelled: return CPN_E_CANCELLED;
        case Error::out_of_memory: return CPN_E_OUT_OF_MEMORY;
        default: return CPN_E_INVALID_ARGUMENT;
    }
}

// Runs `f` (which returns a cpn_status) at an ABI entry point: nothing thrown crosses into the
// host. Out of host memory and any other escaped exception become statuses whose message starts
// with `what` ("opencl infer run").
template <class F>
cpn_status guarded(cpn_msg* err, const char* what, F&& f) noexcept {
    try {
        return f();
    } catch (const std::bad_alloc&) {
        return plugin::fail(err, CPN_E_OUT_OF_MEMORY, "%s: out of host memory", what);
    } catch (const std::exception& e) {
        return plugin::fail(err, CPN_E_INTERNAL, "%s: internal error: %s", what, e.what());
    } catch (...) {
        return plugin::fail(err, CPN_E_INTERNAL, "%s: internal error", what);
    }
}

}  // namespace cpn::infer
