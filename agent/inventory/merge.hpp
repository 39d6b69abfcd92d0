// merge.hpp: joins what the host scan, the PCI scan and every backend report into one device
// per physical device: the same GPU seen through CUDA and OpenCL is one device with two runtime
// paths, matched by PCI address or UUID; an OpenCL CPU device is the host CPU.
#pragma once

#include <vector>

#include "inventory/device.hpp"

namespace cpn {

/* Adds each plugin device to `devices`, merging it into an existing one when they are the same
 * hardware. Afterwards ids are unique and devices are ordered cpu, gpu, npu, fpga, other. */
void merge_devices(std::vector<Device>& devices, const std::vector<Device>& plugin_devices);

}  // namespace cpn
