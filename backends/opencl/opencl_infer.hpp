// opencl_infer.hpp: the inference extension of the OpenCL backend (cpn_infer.h, reached through
// get_proc(CPN_INFER_PROC)).
//
// A segment (a serialized ONNX ModelProto) is imported with the runtime's own importer
// (cpn-infer), its float32 initializers are uploaded once at prepare, and a run keeps every
// float32 tensor on the device (cl_mem) from node to node: the segment's inputs are copied in
// when a device operator first reads them, its outputs copied out at the end. Products (Conv as
// im2col + GEMM, Gemm, MatMul) go through CLBlast; the other operators are the OpenCL C kernels
// of infer_kernels.cl. An attribute value or a shape the kernels do not cover (3-D pooling, a
// MaxPool asked for its indices, ...) runs that one node through the CPU operator instead,
// with the copies counted, rather than failing the segment.
#pragma once

#include <mutex>
#include <string>

#include "cpn_infer.h"
#include "opencl_internal.hpp"

namespace cpn::opencl::infer_ext {

/* The opened device as the inference code sees it (opencl_internal.hpp; opencl_exec.cpp fills
 * it). */
using DeviceView = opencl::DeviceView;

/* Fills *out for an opened device handle; false for NULL. (opencl_exec.cpp) */
bool device_view(cpn_device_handle* handle, DeviceView* out);

/* The function table get_proc(CPN_INFER_PROC) returns. */
const cpn_infer_api* api();

}  // namespace cpn::opencl::infer_ext
