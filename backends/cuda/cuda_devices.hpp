// cuda_devices.hpp: enumeration of CUDA devices into the uniform cpn_device_desc shape.
#pragma once

#include "cpn_backend.h"

namespace cpn::cuda {

cpn_status device_count(uint32_t* count, cpn_msg* err);
cpn_status device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err);

/* "kepler" ... "blackwell" from a compute capability; "" when unknown. */
const char* gpu_family(int major, int minor);

/* CPN_PREC_* mask from a compute capability. */
uint32_t precisions_for(int major, int minor);

}  // namespace cpn::cuda
