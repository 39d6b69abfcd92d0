// plugin_status.hpp: for the backend plugins that run the inference runtime: the cpn_status an
// inference Error maps to at the plugin ABI (cpn_backend.h / cpn_infer.h).
#pragma once

#include "cpn_backend.h"
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

}  // namespace cpn::infer
