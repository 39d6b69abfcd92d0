// cublas_api.hpp: the few cuBLAS entry points the inference extension uses (cuda_infer.cpp),
// resolved at run time like the driver (cuda_driver.hpp).
//
// The plugin neither links cuBLAS nor needs its header to build: the types below are declared
// here with the values cuBLAS's cublas_api.h documents (they are part of its stable C ABI). The
// library is dlopened on first use; where it is missing the products run on the plugin's own
// SGEMM kernel instead (kernels/infer.cu, cpn_sgemm).
#pragma once

#include <cuda.h>

#include <string>

namespace cpn::cuda::cublas {

/* cublasHandle_t: an opaque pointer to cuBLAS's context. */
struct Context;
using Handle = Context*;

/* cublasStatus_t. */
enum Status : int {
    kSuccess = 0,
    kNotInitialized = 1,
    kAllocFailed = 3,
    kInvalidValue = 7,
    kArchMismatch = 8,
    kMappingError = 11,
    kExecutionFailed = 13,
    kInternalError = 14,
    kNotSupported = 15,
    kLicenseError = 16,
};

/* cublasOperation_t. */
enum Operation : int { kOpN = 0, kOpT = 1 };

/* cudaDataType (library_types.h), cublasComputeType_t and cublasGemmAlgo_t: the values the
 * float16 products (cublasGemmEx) use. */
enum DataType : int { kR32F = 0, kR16F = 2 };
enum ComputeType : int { kCompute32F = 68, kCompute32FFast16F = 74 };
enum GemmAlgo : int { kGemmDefault = -1 };

/* The resolved entry points. cuBLAS is column-major; the callers swap operands for row-major
 * data. The math mode is left at its default (CUBLAS_DEFAULT_MATH: no TF32), so float32
 * products round as float32 and agree with the CPU backend. gemm_ex and
 * gemm_strided_batched_ex serve the float16 precision (float32 operands rounded to float16 on
 * the tensor cores, float32 accumulation, CUBLAS_COMPUTE_32F_FAST_16F); they are optional: a
 * cuBLAS without them runs float32 only. */
struct Api {
    std::string library;  // the soname that loaded, e.g. "libcublas.so.12"
    Status (*create)(Handle* handle) = nullptr;         // cublasCreate_v2
    Status (*destroy)(Handle handle) = nullptr;         // cublasDestroy_v2
    Status (*set_stream)(Handle handle, CUstream stream) = nullptr;  // cublasSetStream_v2
    Status (*sgemm)(Handle handle, Operation ta, Operation tb, int m, int n, int k, const float* alpha,
                    const float* a, int lda, const float* b, int ldb, const float* beta, float* c,
                    int ldc) = nullptr;  // cublasSgemm_v2
    Status (*sgemm_strided_batched)(Handle handle, Operation ta, Operation tb, int m, int n, int k,
                                    const float* alpha, const float* a, int lda, long long stride_a,
                                    const float* b, int ldb, long long stride_b, const float* beta,
                                    float* c, int ldc, long long stride_c,
                                    int batch) = nullptr;  // cublasSgemmStridedBatched
    Status (*gemm_ex)(Handle handle, Operation ta, Operation tb, int m, int n, int k, const void* alpha,
                      const void* a, DataType a_type, int lda, const void* b, DataType b_type, int ldb,
                      const void* beta, void* c, DataType c_type, int ldc, ComputeType compute,
                      GemmAlgo algo) = nullptr;  // cublasGemmEx (optional)
    Status (*gemm_strided_batched_ex)(Handle handle, Operation ta, Operation tb, int m, int n, int k,
                                      const void* alpha, const void* a, DataType a_type, int lda,
                                      long long stride_a, const void* b, DataType b_type, int ldb,
                                      long long stride_b, const void* beta, void* c, DataType c_type,
                                      int ldc, long long stride_c, int batch, ComputeType compute,
                                      GemmAlgo algo) = nullptr;  // cublasGemmStridedBatchedEx (optional)
};

/* Opens cuBLAS on first use ("libcublas.so.13", then .12 and .11 (Debian 12's non-free
 * libcublas11), then the unversioned name) and returns its entry points, or nullptr with the
 * reason in *why. The outcome is kept: the library is never unloaded, and a missing one is not
 * looked for again. Thread-safe. */
const Api* load(std::string* why);

/* "CUBLAS_STATUS_ALLOC_FAILED" for a status. */
const char* status_name(Status s);

}  // namespace cpn::cuda::cublas
