// cuda_infer.hpp: the inference extension of the CUDA backend (cpn_infer.h, reached through
// get_proc(CPN_INFER_PROC)); the CUDA counterpart of backends/opencl/opencl_infer.hpp.
//
// A segment (a serialized ONNX ModelProto) is imported with the runtime's own importer
// (cpn-infer), its float32 initializers are uploaded once at prepare, and a run keeps every
// float32 tensor in device memory (cuMemAlloc) from node to node, all work queued on one stream
// of the segment: the segment's inputs are copied in when a device operator first reads them,
// its outputs copied out at the end. Products (Conv as im2col + GEMM, a 1x1 Conv as a GEMM
// alone, Gemm, MatMul) go through cuBLAS, dlopened at first use (cublas_api.hpp), or through the
// built-in cpn_sgemm kernel where cuBLAS is missing; the other operators are the kernels of
// kernels/infer.cu. An attribute value or a shape the kernels do not cover (3-D pooling, a
// MaxPool asked for its indices, ...) runs that one node through the CPU operator instead, with
// the copies counted, rather than failing the segment.
#pragma once

#include "cpn_infer.h"

namespace cpn::cuda::infer_ext {

/* The function table get_proc(CPN_INFER_PROC) returns. */
const cpn_infer_api* api();

}  // namespace cpn::cuda::infer_ext
