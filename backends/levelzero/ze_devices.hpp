// ze_devices.hpp: enumeration of Level Zero devices into the uniform cpn_device_desc shape.
#pragma once

#include "cpn_backend.h"

namespace cpn::levelzero {

cpn_status device_count(uint32_t* count, cpn_msg* err);
cpn_status device_info(uint32_t index, cpn_device_desc* out, cpn_msg* err);

}  // namespace cpn::levelzero
