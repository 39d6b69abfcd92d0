// cpu_infer.hpp: the CPU backend's inference extension (cpn_infer.h): segments run on the
// operators of workloads/infer (OpenBLAS for the heavy ones), in this process's threads.
#pragma once

#include "cpn_infer.h"

namespace cpn::cpuinfer {

const cpn_infer_api* api();

}  // namespace cpn::cpuinfer
