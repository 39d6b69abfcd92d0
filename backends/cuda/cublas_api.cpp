// cublas_api.cpp: dlopen of cuBLAS and dlsym of the entry points cublas_api.hpp lists.
#include "cublas_api.hpp"

#include <dlfcn.h>

#include <mutex>

namespace cpn::cuda::cublas {
namespace {

/* Newest first: a driver runs the libraries of its own and of older toolkits. */
constexpr const char* kLibraries[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"};

std::once_flag g_once;
Api g_api;
const Api* g_loaded = nullptr;
std::string g_why;

/* Resolves one symbol into `slot`; records the first missing name in `missing`. */
template <typename Fn>
void resolve(void* lib, const char* name, Fn& slot, std::string* missing) {
    slot = reinterpret_cast<Fn>(dlsym(lib, name));
    if (slot == nullptr && missing->empty()) *missing = name;
}

/* Like libcuda, cuBLAS is opened RTLD_LOCAL and never closed: it keeps the CUDA runtime's
 * process-wide state, which does not survive being unloaded. */
void open_library() {
    std::string tried;
    for (const char* name : kLibraries) {
        dlerror();
        void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (lib == nullptr) {
            const char* e = dlerror();
            tried += std::string(tried.empty() ? "" : "; ") + (e != nullptr ? e : name);
            continue;
        }
        std::string missing;
        resolve(lib, "cublasCreate_v2", g_api.create, &missing);
        resolve(lib, "cublasDestroy_v2", g_api.destroy, &missing);
        resolve(lib, "cublasSetStream_v2", g_api.set_stream, &missing);
        resolve(lib, "cublasSgemm_v2", g_api.sgemm, &missing);
        resolve(lib, "cublasSgemmStridedBatched", g_api.sgemm_strided_batched, &missing);
        if (!missing.empty()) {
            tried += std::string(tried.empty() ? "" : "; ") + name + " lacks " + missing;
            continue;
        }
        std::string optional;  // the float16 products: both or neither
        resolve(lib, "cublasGemmEx", g_api.gemm_ex, &optional);
        resolve(lib, "cublasGemmStridedBatchedEx", g_api.gemm_strided_batched_ex, &optional);
        if (!optional.empty()) {
            g_api.gemm_ex = nullptr;
            g_api.gemm_strided_batched_ex = nullptr;
        }
        g_api.library = name;
        g_loaded = &g_api;
        return;
    }
    g_why = "cuBLAS not found (" + tried + ")";
}

}  // namespace

const Api* load(std::string* why) {
    std::call_once(g_once, open_library);
    if (g_loaded == nullptr && why != nullptr) *why = g_why;
    return g_loaded;
}

const char* status_name(Status s) {
    switch (s) {
        case kSuccess: return "CUBLAS_STATUS_SUCCESS";
        case kNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case kAllocFailed: return "CUBLAS_STATUS_ALLOC_FAILED";
        case kInvalidValue: return "CUBLAS_STATUS_INVALID_VALUE";
        case kArchMismatch: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case kMappingError: return "CUBLAS_STATUS_MAPPING_ERROR";
        case kExecutionFailed: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case kInternalError: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case kNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case kLicenseError: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

}  // namespace cpn::cuda::cublas
