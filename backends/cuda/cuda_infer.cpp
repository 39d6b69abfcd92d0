// cuda_infer.cpp: see cuda_infer.hpp.
#include "cuda_infer.hpp"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cpn_backend_util.hpp"
#include "cublas_api.hpp"
#include "cuda_errors.hpp"
#include "cuda_exec.hpp"
#include "cuda_log.hpp"
#include "embedded_fatbin.hpp"
#include "device_shapes.hpp"
#include "executor.hpp"
#include "kernels/infer_args.h"
#include "onnx_import.hpp"
#include "ops.hpp"
#include "plugin_status.hpp"

namespace cpn::cuda::infer_ext {

namespace inf = cpn::infer;
using plugin::fail;

namespace {

/* ---- the operators this backend runs ------------------------------------------------------ */

/* Which inputs must be float32: all of them, or only the first (the rest are shapes, axes or
 * flags read on the host). */
enum class Types { all_float, first_float };

struct OpInfo {
    const char* op;
    Types types;
};

constexpr OpInfo kOps[] = {
    {"Conv", Types::all_float},        {"Gemm", Types::all_float},          {"MatMul", Types::all_float},
    {"Relu", Types::all_float},        {"LeakyRelu", Types::all_float},     {"Sigmoid", Types::all_float},
    {"Tanh", Types::all_float},        {"Clip", Types::all_float},          {"HardSigmoid", Types::all_float},
    {"HardSwish", Types::all_float},   {"Sqrt", Types::all_float},          {"Exp", Types::all_float},
    {"Log", Types::all_float},         {"Neg", Types::all_float},           {"Abs", Types::all_float},
    {"Erf", Types::all_float},         {"Gelu", Types::all_float},          {"Add", Types::all_float},
    {"Sub", Types::all_float},         {"Mul", Types::all_float},           {"Div", Types::all_float},
    {"Pow", Types::all_float},         {"MaxPool", Types::all_float},       {"AveragePool", Types::all_float},
    {"GlobalAveragePool", Types::all_float}, {"BatchNormalization", Types::all_float},
    {"Softmax", Types::all_float},     {"LogSoftmax", Types::all_float},    {"Flatten", Types::all_float},
    {"Reshape", Types::first_float},   {"Squeeze", Types::first_float},     {"Unsqueeze", Types::first_float},
    {"Identity", Types::all_float},    {"Dropout", Types::first_float},     {"Concat", Types::all_float},
    {"Transpose", Types::all_float},
};

const OpInfo* find_info(const char* op) {
    for (const OpInfo& o : kOps)
        if (std::strcmp(o.op, op) == 0) return &o;
    return nullptr;
}

/* The fused activations (Node::fused_activation) by their CPN_ACT_* code. */
constexpr const char* kActNames[] = {"", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "Tanh", "HardSwish"};

/* The unary operators without attributes, as cpn_unary codes. */
struct FnInfo {
    const char* op;
    int code;
};
constexpr FnInfo kFns[] = {{"Relu", CPN_ACT_RELU}, {"Sigmoid", CPN_ACT_SIGMOID}, {"Tanh", CPN_ACT_TANH},
                           {"HardSwish", CPN_ACT_HARDSWISH}, {"Sqrt", CPN_FN_SQRT}, {"Exp", CPN_FN_EXP},
                           {"Log", CPN_FN_LOG}, {"Neg", CPN_FN_NEG}, {"Abs", CPN_FN_ABS}, {"Erf", CPN_FN_ERF}};

/* The kernels of kernels/infer.cu. Each takes one parameter block of infer_args.h, and
 * kernel_of<Args>() names the kernel of a block, so a launch cannot pair a block with the wrong
 * kernel. */
constexpr const char* kKernelNames[] = {"cpn_unary",      "cpn_binary", "cpn_gather",     "cpn_im2col",
                                        "cpn_conv_scatter", "cpn_conv_direct", "cpn_bias_act", "cpn_pool",
                                        "cpn_plane_mean", "cpn_channel_affine", "cpn_softmax", "cpn_copy_rows",
                                        "cpn_sgemm"};
enum Kernel {
    kUnary, kBinary, kGather, kIm2col, kConvScatter, kConvDirect, kBiasAct, kPool, kPlaneMean, kChannelAffine,
    kSoftmax, kCopyRows, kSgemm, kKernelCount
};

template <class A>
constexpr Kernel kernel_of();
template <> constexpr Kernel kernel_of<cpn_unary_args>() { return kUnary; }
template <> constexpr Kernel kernel_of<cpn_binary_args>() { return kBinary; }
template <> constexpr Kernel kernel_of<cpn_gather_args>() { return kGather; }
template <> constexpr Kernel kernel_of<cpn_im2col_args>() { return kIm2col; }
template <> constexpr Kernel kernel_of<cpn_scatter_args>() { return kConvScatter; }
template <> constexpr Kernel kernel_of<cpn_conv_direct_args>() { return kConvDirect; }
template <> constexpr Kernel kernel_of<cpn_bias_act_args>() { return kBiasAct; }
template <> constexpr Kernel kernel_of<cpn_pool_args>() { return kPool; }
template <> constexpr Kernel kernel_of<cpn_plane_mean_args>() { return kPlaneMean; }
template <> constexpr Kernel kernel_of<cpn_affine_args>() { return kChannelAffine; }
template <> constexpr Kernel kernel_of<cpn_softmax_args>() { return kSoftmax; }
template <> constexpr Kernel kernel_of<cpn_copy_rows_args>() { return kCopyRows; }
template <> constexpr Kernel kernel_of<cpn_gemm_args>() { return kSgemm; }

/* Threads per block of the grid-stride kernels, and the most blocks a launch asks for: the
 * kernels loop over any element count, so a larger grid would only add scheduling. */
constexpr unsigned kBlock = 256;
constexpr int64_t kMaxBlocks = 65535;
/* The limit of gridDim.y and gridDim.z (cpn_sgemm's rows and batch). */
constexpr int64_t kMaxGridYZ = 65535;

/* ---- errors ------------------------------------------------------------------------------- */

/* A CUDA or cuBLAS failure inside prepare or a run, with the status it maps to. */
struct CudaError : std::runtime_error {
    CudaError(cpn_status st, const std::string& what) : std::runtime_error(what), status(st) {}
    cpn_status status;
};

/* Sticky errors mean the device faulted (the host marks it unhealthy and re-probes); out of
 * memory is its own status; anything else is internal. */
cpn_status status_for(CUresult r) {
    if (is_sticky(r)) return CPN_E_DEVICE_LOST;
    if (r == CUDA_ERROR_OUT_OF_MEMORY) return CPN_E_OUT_OF_MEMORY;
    return CPN_E_INTERNAL;
}

[[noreturn]] void throw_cuda(const DriverApi* api, CUresult r, const std::string& call) {
    const std::string text = call + " failed: " + error_text(api, r);
    if (is_sticky(r)) log(4, "cuda inference: " + text + "; the device needs a reset");
    throw CudaError(status_for(r), text);
}

void check(const DriverApi* api, CUresult r, const char* call) {
    if (r != CUDA_SUCCESS) throw_cuda(api, r, call);
}

void check_blas(cublas::Status s, const char* call) {
    if (s == cublas::kSuccess) return;
    const cpn_status st = s == cublas::kAllocFailed                                       ? CPN_E_OUT_OF_MEMORY
                          : s == cublas::kNotSupported || s == cublas::kArchMismatch ? CPN_E_UNSUPPORTED
                                                                                       : CPN_E_INTERNAL;
    throw CudaError(st, std::string(call) + " failed: " + cublas::status_name(s));
}

using inf::status_of;

/* ---- device memory ------------------------------------------------------------------------ */

struct Block {
    CUdeviceptr ptr = 0;
    size_t bytes = 0;
};
using Buf = std::shared_ptr<const Block>;

/* The device memory of one prepared segment. cuMemFree waits for the device to go idle, so the
 * memory of a tensor whose last reader is queued is not freed but kept by size and handed to
 * the next tensor of that size: every use of a block is ordered on the segment's one stream,
 * so the next writer runs after the last reader. Blocks that a whole run did not reuse are
 * freed when the next one begins, so the pool holds about what one run needs. The CUDA context
 * must be current for take, begin_run and free_all; a Buf's release needs it only when the
 * pool cannot record the block. */
class DevicePool {
public:
    const DriverApi* api = nullptr;
    CUstream stream = nullptr;  // the segment's stream, which every use of a block is queued on
    size_t live = 0, peak = 0;  // bytes held by tensors; cached blocks not counted

    /* A block of `bytes` (> 0) for `what` (the message names it: the running node's own name
     * comes from the run); throws CudaError naming cuMemAlloc_v2, CPN_E_OUT_OF_MEMORY when the
     * device has no room even after the cached blocks went back to it. */
    Buf take(size_t bytes, const std::string& what) {
        auto block = std::make_unique<Block>();
        block->bytes = bytes;
        if (auto it = cached_.find(bytes); it != cached_.end()) {
            block->ptr = it->second.ptr;
            cached_.erase(it);
        } else {
            CUresult r = api->mem_alloc(&block->ptr, bytes);
            if (r == CUDA_ERROR_OUT_OF_MEMORY && !cached_.empty()) {  // cached blocks of other sizes first
                api->stream_synchronize(stream);  // queued work may still read them
                free_all();
                r = api->mem_alloc(&block->ptr, bytes);
            }
            const std::string call = "cuMemAlloc_v2(" + std::to_string(bytes) + " bytes for " + what + ")";
            if (r == CUDA_ERROR_OUT_OF_MEMORY)
                throw CudaError(CPN_E_OUT_OF_MEMORY, call + " failed: " + error_text(api, r) + "; the segment holds " +
                                                         std::to_string(live) + " bytes of device memory");
            if (r != CUDA_SUCCESS) throw_cuda(api, r, call);
        }
        live += bytes;
        peak = std::max(peak, live);
        // Should the control block fail to allocate, the deleter runs and the block is cached.
        return Buf(block.release(), [this](const Block* b) { give(b); });
    }

    /* Frees the blocks no tensor of the previous run reused, and starts counting a new run.
     * Called with the stream idle: every run waits for its work before it returns. */
    void begin_run() {
        for (auto it = cached_.begin(); it != cached_.end();) {
            if (it->second.run < run_) {
                api->mem_free(it->second.ptr);
                it = cached_.erase(it);
            } else {
                ++it;
            }
        }
        ++run_;
        peak = live;
    }

    /* Frees every cached block; nothing queued may use one (the stream is idle). */
    void free_all() {
        for (const auto& [bytes, c] : cached_) api->mem_free(c.ptr);
        cached_.clear();
    }

private:
    struct Cached {
        CUdeviceptr ptr;
        uint64_t run;  // the run that last gave it back
    };
    std::multimap<size_t, Cached> cached_;
    uint64_t run_ = 0;

    void give(const Block* b) noexcept {
        live -= b->bytes;
        try {
            cached_.emplace(b->bytes, Cached{b->ptr, run_});
        } catch (...) {  // no room to record it: free it once no queued work can use it
            api->stream_synchronize(stream);
            api->mem_free(b->ptr);
        }
        delete b;
    }
};

CUdeviceptr at(CUdeviceptr base, int64_t elements) { return base + static_cast<CUdeviceptr>(elements) * sizeof(float); }
const float* fptr(CUdeviceptr p) { return reinterpret_cast<const float*>(static_cast<uintptr_t>(p)); }
float* mfptr(CUdeviceptr p) { return reinterpret_cast<float*>(static_cast<uintptr_t>(p)); }

/* A value of the segment: float32 tensors live on the device (buf), others on the host only.
 * A float32 value may have both (an input or initializer: the host copy is kept for scalars). */
struct Val {
    inf::DType dtype = inf::DType::undefined;
    inf::Shape shape;
    Buf buf;
    inf::Tensor host;  // defined() when there is a host copy
    int64_t numel() const { return inf::checked_numel(shape); }
    size_t bytes() const { return static_cast<size_t>(numel()) * inf::dtype_size(dtype); }
    bool is_float() const { return dtype == inf::DType::f32; }
    CUdeviceptr ptr() const { return buf ? buf->ptr : 0; }
};

/* ---- the prepared segment ----------------------------------------------------------------- */

struct Prepared {
    const DriverApi* api = nullptr;
    CUcontext ctx = nullptr;
    std::string label;  // "CUDA device 0 (compute capability 9.0)"
    inf::Model model;
    int threads = 0;
    int64_t max_elements = int64_t{1} << 30;
    CUmodule module = nullptr;
    CUfunction kernels[kKernelCount] = {};
    CUstream stream = nullptr;
    const cublas::Api* blas = nullptr;  // null: the products run on cpn_sgemm
    cublas::Handle blas_handle = nullptr;
    /* precision "fp16": the products (GEMMs, the convolutions' GEMMs) round their float32
     * operands to float16 on the tensor cores and accumulate in float32 (cublasGemmEx with
     * CUBLAS_COMPUTE_32F_FAST_16F); tensors stay float32 in memory, and every other operator
     * computes float32. Set only where cuBLAS has cublasGemmEx and the device has tensor cores
     * (compute capability 7.0 or later); else precision_note says why the products ran float32. */
    bool fp16 = false;
    std::string precision_note;
    DevicePool pool;
    std::map<std::string, Val> consts;  // initializers; float32 ones uploaded
    std::vector<std::vector<std::string>> drop_after;  // per node: values nobody reads later
    std::map<size_t, std::pair<Buf, Buf>> bn_cache;   // BatchNormalization scale/shift per node
    std::mutex mu;  // a run owns the stream and the pool

    ~Prepared() {
        if (api == nullptr) return;
        ScopedContext scope(api, ctx);
        if (stream != nullptr) api->stream_synchronize(stream);  // a failed prepare may leave copies queued
        consts.clear();
        bn_cache.clear();
        pool.free_all();
        if (blas_handle != nullptr) blas->destroy(blas_handle);
        if (stream != nullptr) api->stream_destroy(stream);
        if (module != nullptr) api->module_unload(module);
    }
};

/* ---- a run -------------------------------------------------------------------------------- */

uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int64_t prod(const inf::Shape& s, size_t b, size_t e) {
    int64_t p = 1;
    for (size_t i = b; i < e && i < s.size(); ++i) p *= s[i];
    return p;
}

/* The element strides of an operand of shape `s` along the `rank` trailing-aligned dims of the
 * shape it broadcasts to: 0 where it is broadcast, `unit` the stride of its last dim. */
std::vector<int64_t> bcast_strides(const inf::Shape& s, size_t rank, int64_t unit = 1) {
    std::vector<int64_t> st(rank, 0);
    int64_t acc = unit;
    for (size_t i = s.size(); i-- > 0;) {
        st[i + rank - s.size()] = s[i] == 1 ? 0 : acc;
        acc *= s[i];
    }
    return st;
}

cpn_strides make_strides(const inf::Shape& dims, const std::vector<int64_t>& s0, const std::vector<int64_t>& s1 = {}) {
    cpn_strides st{};
    st.rank = static_cast<int>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) {
        st.dims[i] = dims[i];
        st.s0[i] = s0[i];
        st.s1[i] = i < s1.size() ? s1[i] : 0;
    }
    return st;
}

/* One operand of a product: row-major with leading dimension `ld`, and `stride` elements from
 * one matrix of a batch to the next. */
struct Operand {
    CUdeviceptr ptr;
    int64_t ld;
    int64_t stride = 0;
};

struct Run {
    Prepared& p;
    const DriverApi* api;
    std::map<std::string, Val> env;
    uint64_t copies_in = 0, copies_out = 0, bytes_in = 0, bytes_out = 0;
    double flops = 0;
    size_t host_nodes = 0;
    const inf::Node* node = nullptr;  // the node running (messages)

    explicit Run(Prepared& pp) : p(pp), api(pp.api) {}

    std::string where() const { return node != nullptr ? node->where() : std::string("segment"); }
    [[noreturn]] void bad(const std::string& what) const { inf::fail(where() + ": " + what); }
    void need(bool ok, const std::string& what) const {
        if (!ok) bad(what);
    }

    Val* find(const std::string& name) {
        if (auto it = env.find(name); it != env.end()) return &it->second;
        if (auto it = p.consts.find(name); it != p.consts.end()) return &it->second;
        return nullptr;
    }
    bool has_in(size_t i) const { return i < node->inputs.size() && !node->inputs[i].empty(); }
    const Val& in(size_t i) {
        need(has_in(i), "input " + std::to_string(i) + " is missing");
        const Val* v = find(node->inputs[i]);
        need(v != nullptr, "input '" + node->inputs[i] + "' has no value");
        return *v;
    }
    bool wants(size_t i) const { return i < node->outputs.size() && !node->outputs[i].empty(); }

    Buf alloc(size_t bytes, const std::string& what) { return p.pool.take(bytes, what); }

    /* Copies host memory into a new device buffer and waits for the copy: the host memory may
     * go (its last reader done) as soon as this returns. */
    Buf upload(const void* src, size_t bytes, const std::string& what) {
        Buf b = alloc(bytes, what);
        check(api, api->memcpy_htod_async(b->ptr, src, bytes, p.stream), ("cuMemcpyHtoDAsync_v2(" + what + ")").c_str());
        check(api, api->stream_synchronize(p.stream), "cuStreamSynchronize after an upload");
        return b;
    }
    /* Copies a device buffer out into host memory, waiting for the work queued before. */
    void download(void* dst, CUdeviceptr src, size_t bytes, const std::string& what) {
        check(api, api->memcpy_dtoh_async(dst, src, bytes, p.stream), ("cuMemcpyDtoHAsync_v2(" + what + ")").c_str());
        check(api, api->stream_synchronize(p.stream), "cuStreamSynchronize after a download");
        ++copies_out;
        bytes_out += bytes;
    }

    /* The device memory of a float32 value, uploading its host copy the first time. 0 for an
     * empty tensor. */
    CUdeviceptr dev(const std::string& name) {
        Val* v = find(name);
        need(v != nullptr, "value '" + name + "' has no value");
        need(v->is_float(), "value '" + name + "' is " + inf::dtype_name(v->dtype) + ", not float32");
        if (v->buf || v->numel() == 0) return v->ptr();
        need(v->host.defined() && v->host.raw() != nullptr, "value '" + name + "' has no data");
        v->buf = upload(v->host.raw(), v->bytes(), "'" + name + "'");
        ++copies_in;
        bytes_in += v->bytes();
        return v->ptr();
    }
    CUdeviceptr in_dev(size_t i) { return dev(node->inputs[i]); }

    /* A host tensor of a value, downloading it when it only lives on the device. */
    inf::Tensor host(const std::string& name) {
        Val* v = find(name);
        need(v != nullptr, "value '" + name + "' has no value");
        if (v->host.defined()) {
            inf::Tensor t = v->host;
            t.shape = v->shape;  // a view may have reshaped it
            return t;
        }
        inf::Tensor t = inf::make_tensor(v->dtype, v->shape);
        if (t.bytes() > 0) {
            need(v->buf != nullptr, "value '" + name + "' has no data");
            download(t.raw(), v->ptr(), t.bytes(), "'" + name + "'");
        }
        v->host = t;
        return t;
    }

    /* A fresh float32 output on the device. */
    Val& out(size_t i, const inf::Shape& s) {
        need(wants(i), "output " + std::to_string(i) + " is not named");
        const int64_t n = inf::checked_numel(s, p.max_elements);
        need(n >= 0, "the output " + inf::shape_str(s) + " exceeds the tensor size limit of " +
                         std::to_string(p.max_elements) + " elements");
        Val v;
        v.dtype = inf::DType::f32;
        v.shape = s;
        if (n > 0) v.buf = alloc(static_cast<size_t>(n) * sizeof(float), "output '" + node->outputs[i] + "'");
        return env[node->outputs[i]] = std::move(v);
    }
    /* Output i as a view of input j (same memory, another shape). */
    void view(size_t i, size_t j, const inf::Shape& s) {
        const Val& x = in(j);
        need(inf::checked_numel(s) == x.numel(),
             "the new shape " + inf::shape_str(s) + " does not hold the " + std::to_string(x.numel()) + " elements of " +
                 inf::shape_str(x.shape));
        need(wants(i), "output " + std::to_string(i) + " is not named");
        Val v = x;
        v.shape = s;
        if (v.host.defined()) v.host.shape = s;
        env[node->outputs[i]] = std::move(v);
    }

    /* ---- launching ---- */
    template <class A>
    void launch_grid(const A& args, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by) {
        const Kernel k = kernel_of<A>();
        void* params[] = {const_cast<A*>(&args)};
        const CUresult r = api->launch_kernel(p.kernels[k], gx, gy, gz, bx, by, 1, 0, p.stream, params, nullptr);
        if (r != CUDA_SUCCESS) throw_cuda(api, r, std::string("cuLaunchKernel(") + kKernelNames[k] + ")");
    }
    /* A grid-stride kernel over `total` elements. */
    template <class A>
    void launch(int64_t total, const A& args) {
        if (total <= 0) return;
        const int64_t blocks = std::min<int64_t>((total + kBlock - 1) / kBlock, kMaxBlocks);
        launch_grid(args, static_cast<unsigned>(blocks), 1, 1, kBlock, 1);
    }
    static int i32(int64_t v) { return static_cast<int>(v); }
    void fits_int(std::initializer_list<int64_t> vs) const {
        for (int64_t v : vs) need(v >= 0 && v <= INT32_MAX, "a dimension exceeds the kernels' 32-bit index range");
    }

    /* ---- helpers of the operators ---- */
    struct ActSpec {
        int code = CPN_ACT_NONE;
        float a = 0, b = 0;
    };
    bool fused(ActSpec* s) const {
        s->a = node->fused_alpha;
        s->b = node->fused_beta;
        for (int code = 0; code < static_cast<int>(std::size(kActNames)); ++code)
            if (node->fused_activation == kActNames[code]) {
                s->code = code;
                return true;
            }
        return false;
    }
    void apply_act(const Val& y, const ActSpec& a) {
        if (a.code != CPN_ACT_NONE) launch(y.numel(), cpn_unary_args{y.ptr(), y.ptr(), y.numel(), a.code, a.a, a.b});
    }
    bool all_float_inputs() {
        for (size_t i = 0; i < node->inputs.size(); ++i)
            if (has_in(i)) {
                const Val* v = find(node->inputs[i]);
                if (v == nullptr || !v->is_float()) return false;
            }
        return true;
    }
    void zero(const Val& y) {
        check(api, api->memset_d32_async(y.ptr(), 0, static_cast<size_t>(y.numel()), p.stream), "cuMemsetD32Async");
    }
    std::vector<int64_t> ints_input(size_t i) {
        const inf::Tensor t = host(node->inputs[i]);
        need(t.dtype == inf::DType::i64 || t.dtype == inf::DType::i32, "input " + std::to_string(i) + " must be int64");
        return inf::to_ints(t);
    }
    float scalar_input(size_t i, float dflt) {
        if (!has_in(i)) return dflt;
        const inf::Tensor t = host(node->inputs[i]);
        need(t.numel() == 1, "input " + std::to_string(i) + " must be a scalar");
        return static_cast<float>(inf::number_at(t, 0));
    }

    void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const Operand& a, const Operand& b, float beta,
               const Operand& c, int64_t batch = 1);
    bool geo(const inf::Shape& xs, std::vector<int64_t> kernel, bool ceil_mode, bool use_dil, cpn_geo* g) const;

    /* ---- the operators: false = run this node on the host instead ---- */
    bool conv();
    bool gemm();
    bool matmul();
    bool unary();
    bool binary();
    bool pool();
    bool global_avg();
    bool batchnorm();
    bool softmax();
    bool views();
    bool concat();
    bool transpose();
    void host_node();
    void run_node(size_t index);
};

/* C = alpha op(A) op(B) + beta C for `batch` row-major products. */
void Run::sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const Operand& a, const Operand& b, float beta,
                const Operand& c, int64_t batch) {
    if (M == 0 || N == 0 || batch == 0) return;
    fits_int({M, N, K, a.ld, b.ld, c.ld, batch});
    flops += 2.0 * static_cast<double>(batch) * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
    if (p.blas != nullptr) {
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B first, M and N swapped.
        const cublas::Operation opa = ta ? cublas::kOpT : cublas::kOpN, opb = tb ? cublas::kOpT : cublas::kOpN;
        if (p.fp16) {
            constexpr cublas::DataType f32 = cublas::kR32F;
            if (batch == 1)
                check_blas(p.blas->gemm_ex(p.blas_handle, opb, opa, i32(N), i32(M), i32(K), &alpha, fptr(b.ptr), f32, i32(b.ld),
                                           fptr(a.ptr), f32, i32(a.ld), &beta, mfptr(c.ptr), f32, i32(c.ld),
                                           cublas::kCompute32FFast16F, cublas::kGemmDefault),
                           "cublasGemmEx(CUBLAS_COMPUTE_32F_FAST_16F)");
            else
                check_blas(p.blas->gemm_strided_batched_ex(p.blas_handle, opb, opa, i32(N), i32(M), i32(K), &alpha, fptr(b.ptr), f32,
                                                           i32(b.ld), b.stride, fptr(a.ptr), f32, i32(a.ld), a.stride, &beta,
                                                           mfptr(c.ptr), f32, i32(c.ld), c.stride, i32(batch),
                                                           cublas::kCompute32FFast16F, cublas::kGemmDefault),
                           "cublasGemmStridedBatchedEx(CUBLAS_COMPUTE_32F_FAST_16F)");
            return;
        }
        if (batch == 1)
            check_blas(p.blas->sgemm(p.blas_handle, opb, opa, i32(N), i32(M), i32(K), &alpha, fptr(b.ptr), i32(b.ld),
                                     fptr(a.ptr), i32(a.ld), &beta, mfptr(c.ptr), i32(c.ld)),
                       "cublasSgemm_v2");
        else
            check_blas(p.blas->sgemm_strided_batched(p.blas_handle, opb, opa, i32(N), i32(M), i32(K), &alpha, fptr(b.ptr),
                                                     i32(b.ld), b.stride, fptr(a.ptr), i32(a.ld), a.stride, &beta,
                                                     mfptr(c.ptr), i32(c.ld), c.stride, i32(batch)),
                       "cublasSgemmStridedBatched");
        return;
    }
    // cpn_sgemm: a tile of C per block; rows and batch in chunks the grid's y and z limits allow.
    const int64_t rows = kMaxGridYZ * CPN_GEMM_TILE;
    for (int64_t z0 = 0; z0 < batch; z0 += kMaxGridYZ)
        for (int64_t m0 = 0; m0 < M; m0 += rows) {
            const int64_t mc = std::min(rows, M - m0), zc = std::min(kMaxGridYZ, batch - z0);
            cpn_gemm_args g{};
            // Row m0 of op(A) is row m0 of A, or its column m0 when A is transposed.
            g.a = at(a.ptr, z0 * a.stride + (ta ? m0 : m0 * a.ld));
            g.b = at(b.ptr, z0 * b.stride);
            g.c = at(c.ptr, z0 * c.stride + m0 * c.ld);
            g.lda = a.ld, g.ldb = b.ld, g.ldc = c.ld;
            g.sa = a.stride, g.sb = b.stride, g.sc = c.stride;
            g.M = i32(mc), g.N = i32(N), g.K = i32(K);
            g.ta = ta ? 1 : 0, g.tb = tb ? 1 : 0;
            g.alpha = alpha, g.beta = beta;
            launch_grid(g, static_cast<unsigned>((N + CPN_GEMM_TILE - 1) / CPN_GEMM_TILE),
                        static_cast<unsigned>((mc + CPN_GEMM_TILE - 1) / CPN_GEMM_TILE), static_cast<unsigned>(zc),
                        CPN_GEMM_TILE, CPN_GEMM_TILE);
        }
}

/* 2-D convolution / pooling geometry (1-D as H = 1), following make_geo of the CPU operators. */
bool Run::geo(const inf::Shape& xs, std::vector<int64_t> kernel, bool ceil_mode, bool use_dil, cpn_geo* g) const {
    const std::optional<inf::Geo2d> s = inf::geo_2d(*node, xs, kernel, ceil_mode, use_dil);
    if (!s) return false;
    fits_int({s->N, s->C, s->H, s->W, s->OH, s->OW, s->H * s->W});
    *g = cpn_geo{};
    g->N = i32(s->N), g->C = i32(s->C), g->H = i32(s->H), g->W = i32(s->W), g->OH = i32(s->OH), g->OW = i32(s->OW);
    g->KH = i32(s->KH), g->KW = i32(s->KW), g->sh = i32(s->sh), g->sw = i32(s->sw), g->dh = i32(s->dh), g->dw = i32(s->dw);
    g->phb = i32(s->phb), g->pwb = i32(s->pwb), g->phe = i32(s->phe), g->pwe = i32(s->pwe);
    g->M = 1, g->G = 1;
    return true;
}

bool Run::conv() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    const Val& X = in(0);
    const Val& Wt = in(1);
    if (X.shape.size() != 3 && X.shape.size() != 4) return false;
    need(Wt.shape.size() == X.shape.size(), "W " + inf::shape_str(Wt.shape) + " and X " + inf::shape_str(X.shape) + " differ in rank");
    const int64_t N = X.shape[0], C = X.shape[1], M = Wt.shape[0], G = n.attrs.get_int("group", 1);
    need(G >= 1 && C % G == 0 && M % G == 0 && Wt.shape[1] * G == C,
         "group " + std::to_string(G) + " does not fit X " + inf::shape_str(X.shape) + " and W " + inf::shape_str(Wt.shape));
    std::vector<int64_t> kernel(Wt.shape.begin() + 2, Wt.shape.end());
    if (n.attrs.has("kernel_shape"))
        need(n.attrs.get_ints("kernel_shape") == kernel, "kernel_shape disagrees with W " + inf::shape_str(Wt.shape));
    cpn_geo g;
    if (!geo(X.shape, kernel, false, true, &g)) return false;
    ActSpec act;
    if (!fused(&act)) return false;
    const bool has_b = has_in(2);
    if (has_b) need(in(2).numel() == M, "B " + inf::shape_str(in(2).shape) + " must hold M = " + std::to_string(M) + " values");
    const int64_t Cg = C / G, Mg = M / G, K = Cg * g.KH * g.KW, P = int64_t{g.OH} * g.OW;
    fits_int({N, C, M, K, P});
    g.M = i32(M), g.G = i32(G);
    inf::Shape ys{N, M};
    if (X.shape.size() == 4) ys.push_back(g.OH);
    ys.push_back(g.OW);
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    const CUdeviceptr x = in_dev(0), w = in_dev(1), y = Y.ptr();
    const CUdeviceptr bias = has_b ? in_dev(2) : y;  // unread without a bias; any valid pointer
    if (K == 0) {
        zero(Y);
        return true;
    }
    const int hb = has_b ? 1 : 0;
    if (K <= 16 || (G > 1 && Cg == 1)) {  // thin (depthwise): one thread per output
        launch(Y.numel(), cpn_conv_direct_args{x, w, bias, y, Y.numel(), hb, act.code, act.a, act.b, g});
        flops += 2.0 * static_cast<double>(N) * static_cast<double>(M) * static_cast<double>(K) * static_cast<double>(P);
        return true;
    }
    if (g.KH == 1 && g.KW == 1 && g.sh == 1 && g.sw == 1 && g.phb == 0 && g.pwb == 0 && g.phe == 0 && g.pwe == 0) {
        // 1x1, stride 1, no padding: X[n] is already the im2col matrix (Cg x P per group), so
        // one batched product per group writes Y, and the bias and activation follow in place.
        for (int64_t gi = 0; gi < G; ++gi)
            sgemm(false, false, Mg, P, Cg, 1.0f, {at(w, gi * Mg * Cg), Cg, 0}, {at(x, gi * Cg * P), P, C * P}, 0.0f,
                  {at(y, gi * Mg * P), P, M * P}, N);
        if (has_b || act.code != CPN_ACT_NONE)
            launch(Y.numel(), cpn_bias_act_args{y, bias, Y.numel(), P, i32(M), hb, act.code, act.a, act.b});
        return true;
    }
    // im2col of a chunk of images per group, one GEMM, scattered into NCHW with bias and activation.
    const int64_t col_limit = int64_t{1} << 24;  // floats per im2col buffer (64 MiB)
    const int64_t nb = std::max<int64_t>(1, std::min<int64_t>(N, col_limit / std::max<int64_t>(1, K * P)));
    Buf col = alloc(static_cast<size_t>(K * nb * P) * sizeof(float), "the im2col matrix");
    Buf tmp = alloc(static_cast<size_t>(Mg * nb * P) * sizeof(float), "the product");
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        const int64_t cnt = std::min(nb, N - n0);
        for (int64_t gi = 0; gi < G; ++gi) {
            launch(K * cnt * P, cpn_im2col_args{x, col->ptr, K * cnt * P, i32(n0), i32(cnt), i32(gi * Cg), i32(Cg), g});
            sgemm(false, false, Mg, cnt * P, K, 1.0f, {at(w, gi * Mg * K), K}, {col->ptr, cnt * P}, 0.0f, {tmp->ptr, cnt * P});
            launch(Mg * cnt * P, cpn_scatter_args{tmp->ptr, bias, y, Mg * cnt * P, P, i32(n0), i32(cnt), i32(M), i32(gi * Mg), hb,
                                                  act.code, act.a, act.b});
        }
    }
    return true;
}

bool Run::gemm() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    const Val& A = in(0);
    const Val& B = in(1);
    need(A.shape.size() == 2 && B.shape.size() == 2,
         "A " + inf::shape_str(A.shape) + " and B " + inf::shape_str(B.shape) + " must be matrices");
    const bool ta = n.attrs.get_int("transA", 0) != 0, tb = n.attrs.get_int("transB", 0) != 0;
    const float alpha = n.attrs.get_float("alpha", 1.0f), beta = n.attrs.get_float("beta", 1.0f);
    const int64_t M = ta ? A.shape[1] : A.shape[0], K = ta ? A.shape[0] : A.shape[1];
    const int64_t Kb = tb ? B.shape[1] : B.shape[0], N = tb ? B.shape[0] : B.shape[1];
    need(K == Kb, "A " + inf::shape_str(A.shape) + " and B " + inf::shape_str(B.shape) + " do not multiply (transA " +
                      std::to_string(ta) + ", transB " + std::to_string(tb) + ")");
    ActSpec act;
    if (!fused(&act)) return false;
    const bool useC = has_in(2) && beta != 0.0f;
    std::vector<int64_t> cstr{0, 0};
    if (useC) {
        const inf::Shape& cs = in(2).shape;
        need(cs.size() <= 2, "C " + inf::shape_str(cs) + " must have rank <= 2");
        const int64_t cN = cs.empty() ? 1 : cs.back(), cM = cs.size() == 2 ? cs[0] : 1;
        need((cN == N || cN == 1) && (cM == M || cM == 1),
             "C " + inf::shape_str(cs) + " does not broadcast to [" + std::to_string(M) + ", " + std::to_string(N) + "]");
        cstr = {cM == 1 ? 0 : cN, cN == 1 ? 0 : 1};
    }
    Val& Y = out(0, {M, N});
    if (Y.numel() == 0) return true;
    if (useC) launch(Y.numel(), cpn_gather_args{in_dev(2), Y.ptr(), Y.numel(), beta, 0, make_strides({M, N}, cstr)});
    if (K == 0) {
        if (!useC) zero(Y);
    } else {
        sgemm(ta, tb, M, N, K, alpha, {in_dev(0), A.shape[1]}, {in_dev(1), B.shape[1]}, useC ? 1.0f : 0.0f, {Y.ptr(), N});
    }
    apply_act(Y, act);
    return true;
}

bool Run::matmul() {
    if (!all_float_inputs()) return false;
    const Val& A = in(0);
    const Val& B = in(1);
    need(!A.shape.empty() && !B.shape.empty(), "MatMul needs inputs of rank >= 1");
    ActSpec act;
    if (!fused(&act)) return false;
    const bool a1 = A.shape.size() == 1, b1 = B.shape.size() == 1;
    const inf::Shape as = a1 ? inf::Shape{1, A.shape[0]} : A.shape;
    const inf::Shape bs = b1 ? inf::Shape{B.shape[0], 1} : B.shape;
    const int64_t M = as[as.size() - 2], K = as.back(), Kb = bs[bs.size() - 2], N = bs.back();
    need(K == Kb, "A " + inf::shape_str(A.shape) + " and B " + inf::shape_str(B.shape) + " do not multiply");
    const inf::Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
    const size_t br = std::max(ab.size(), bb.size());
    inf::Shape batch(br);
    for (size_t i = 0; i < br; ++i) {
        const int64_t x = i + ab.size() >= br ? ab[i + ab.size() - br] : 1;
        const int64_t z = i + bb.size() >= br ? bb[i + bb.size() - br] : 1;
        need(x == z || x == 1 || z == 1, "the batch dimensions of A " + inf::shape_str(A.shape) + " and B " +
                                             inf::shape_str(B.shape) + " do not broadcast");
        batch[i] = x == 1 ? z : x;
    }
    inf::Shape ys = batch;
    if (!a1) ys.push_back(M);
    if (!b1) ys.push_back(N);
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    const CUdeviceptr y = Y.ptr();
    if (K == 0) {
        zero(Y);
        return true;
    }
    const CUdeviceptr a = in_dev(0), b = in_dev(1);
    const int64_t nbatch = prod(batch, 0, batch.size());
    if (prod(bb, 0, bb.size()) == 1 && prod(ab, 0, ab.size()) == nbatch) {
        // B is one matrix: A's batch rows stack into one product.
        sgemm(false, false, nbatch * M, N, K, 1.0f, {a, K}, {b, N}, 0.0f, {y, N});
        apply_act(Y, act);
        return true;
    }
    // The batch element offsets by the broadcast strides: one strided batched product when they
    // step evenly (no broadcast, or one side broadcast whole), else one product per element.
    const auto ast = bcast_strides(ab, br, M * K), bst = bcast_strides(bb, br, K * N);
    std::vector<int64_t> ao(static_cast<size_t>(nbatch)), bo(static_cast<size_t>(nbatch));
    for (int64_t i = 0; i < nbatch; ++i) {
        int64_t rem = i, oa = 0, ob = 0;
        for (size_t d = br; d-- > 0;) {
            const int64_t c = rem % batch[d];
            rem /= batch[d];
            oa += c * ast[d];
            ob += c * bst[d];
        }
        ao[static_cast<size_t>(i)] = oa;
        bo[static_cast<size_t>(i)] = ob;
    }
    const int64_t sa = nbatch > 1 ? ao[1] : 0, sb = nbatch > 1 ? bo[1] : 0;
    bool even = true;
    for (int64_t i = 0; i < nbatch && even; ++i) even = ao[static_cast<size_t>(i)] == i * sa && bo[static_cast<size_t>(i)] == i * sb;
    if (even) {
        sgemm(false, false, M, N, K, 1.0f, {a, K, sa}, {b, N, sb}, 0.0f, {y, N, M * N}, nbatch);
    } else {
        for (int64_t i = 0; i < nbatch; ++i)
            sgemm(false, false, M, N, K, 1.0f, {at(a, ao[static_cast<size_t>(i)]), K}, {at(b, bo[static_cast<size_t>(i)]), N},
                  0.0f, {at(y, i * M * N), N});
    }
    apply_act(Y, act);
    return true;
}

bool Run::unary() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    const std::string& op = n.op_type;
    ActSpec a;
    a.code = -1;
    for (const FnInfo& f : kFns)
        if (op == f.op) a.code = f.code;
    if (op == "LeakyRelu") {
        a = {CPN_ACT_LEAKY, n.attrs.get_float("alpha", 0.01f), 0};
    } else if (op == "HardSigmoid") {
        a = {CPN_ACT_HARDSIGMOID, n.attrs.get_float("alpha", 0.2f), n.attrs.get_float("beta", 0.5f)};
    } else if (op == "Gelu") {
        const std::string approx = n.attrs.get_string("approximate", "none");
        if (approx == "none") a.code = CPN_FN_GELU;
        else if (approx == "tanh") a.code = CPN_FN_GELU_TANH;
        else return false;  // the CPU operator says what is wrong with it
    } else if (op == "Clip") {
        a.code = CPN_ACT_CLIP;
        if (n.opset < 11) {
            a.a = n.attrs.get_float("min", -3.402823e38f);
            a.b = n.attrs.get_float("max", 3.402823e38f);
        } else {
            a.a = scalar_input(1, -INFINITY);
            a.b = scalar_input(2, INFINITY);
        }
    }
    if (a.code < 0) return false;
    const Val& X = in(0);
    Val& Y = out(0, X.shape);
    launch(Y.numel(), cpn_unary_args{in_dev(0), Y.ptr(), Y.numel(), a.code, a.a, a.b});
    return true;
}

bool Run::binary() {
    const inf::Node& n = *node;
    if (!all_float_inputs() || n.opset < 7) return false;  // opset < 7: the legacy broadcast attribute
    const Val& A = in(0);
    const Val& B = in(1);
    const inf::Shape ys = inf::broadcast_shapes(A.shape, B.shape, n);
    if (ys.size() > CPN_MAX_RANK) return false;
    const std::string& op = n.op_type;
    const int code = op == "Add" ? CPN_BIN_ADD : op == "Sub" ? CPN_BIN_SUB : op == "Mul" ? CPN_BIN_MUL
                                                           : op == "Div" ? CPN_BIN_DIV : CPN_BIN_POW;
    const int plain = A.shape == ys && B.shape == ys ? 1 : 0;
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    launch(Y.numel(), cpn_binary_args{in_dev(0), in_dev(1), Y.ptr(), Y.numel(), code, plain,
                                      make_strides(ys, bcast_strides(A.shape, ys.size()), bcast_strides(B.shape, ys.size()))});
    return true;
}

bool Run::pool() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    const bool is_max = n.op_type == "MaxPool";
    if (is_max && wants(1)) return false;  // Indices: the CPU operator
    const Val& X = in(0);
    if (X.shape.size() != 3 && X.shape.size() != 4) return false;
    const auto kernel = n.attrs.get_ints("kernel_shape");
    need(!kernel.empty(), "attribute 'kernel_shape' is required");
    cpn_geo g;
    if (!geo(X.shape, kernel, n.attrs.get_int("ceil_mode", 0) != 0, is_max || n.opset >= 19, &g)) return false;
    const bool count_pad = n.attrs.get_int("count_include_pad", 0) != 0;
    inf::Shape ys{X.shape[0], X.shape[1]};
    if (X.shape.size() == 4) ys.push_back(g.OH);
    ys.push_back(g.OW);
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    launch(Y.numel(), cpn_pool_args{in_dev(0), Y.ptr(), Y.numel(), is_max ? 0 : 1, count_pad ? 1 : 0, g});
    return true;
}

bool Run::global_avg() {
    if (!all_float_inputs()) return false;
    const Val& X = in(0);
    need(X.shape.size() >= 3, "input " + inf::shape_str(X.shape) + " needs rank >= 3");
    inf::Shape ys{X.shape[0], X.shape[1]};
    ys.resize(X.shape.size(), 1);
    const int64_t planes = X.shape[0] * X.shape[1], len = prod(X.shape, 2, X.shape.size());
    if (len == 0) return false;  // a mean of nothing: whatever the CPU operator does
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    launch(planes, cpn_plane_mean_args{in_dev(0), Y.ptr(), planes, len});
    return true;
}

bool Run::batchnorm() {
    const inf::Node& n = *node;
    if (!all_float_inputs() || n.attrs.get_int("training_mode", 0) != 0 || wants(1) || wants(2)) return false;
    if (n.opset < 9 && n.attrs.has("spatial") && n.attrs.get_int("spatial", 1) == 0) return false;
    need(node->inputs.size() >= 5, "BatchNormalization needs 5 inputs");
    for (size_t i = 1; i < 5; ++i) need(has_in(i), "input " + std::to_string(i) + " is missing");
    const Val& X = in(0);
    need(X.shape.size() >= 2, "input " + inf::shape_str(X.shape) + " needs rank >= 2");
    const int64_t C = X.shape[1];
    const size_t index = static_cast<size_t>(node - p.model.graph.nodes.data());
    std::pair<Buf, Buf> ss;
    if (auto it = p.bn_cache.find(index); it != p.bn_cache.end()) {
        ss = it->second;
    } else {
        // scale = gamma / sqrt(var + eps), shift = beta - mean * scale, once per node when the
        // parameters are initializers.
        bool constant = true;
        for (size_t i = 1; i < 5; ++i) constant = constant && p.consts.count(node->inputs.at(i)) != 0;
        const float eps = n.attrs.get_float("epsilon", 1e-5f);
        std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
        inf::Tensor t[4];
        for (size_t i = 0; i < 4; ++i) {
            t[i] = host(node->inputs.at(i + 1));
            need(t[i].numel() == C, "parameter " + std::to_string(i + 1) + " " + inf::shape_str(t[i].shape) + " must hold C = " +
                                        std::to_string(C) + " values");
        }
        for (int64_t c = 0; c < C; ++c) {
            const double s = t[0].data<float>()[c] / std::sqrt(static_cast<double>(t[3].data<float>()[c]) + eps);
            scale[static_cast<size_t>(c)] = static_cast<float>(s);
            shift[static_cast<size_t>(c)] = static_cast<float>(t[1].data<float>()[c] - t[2].data<float>()[c] * s);
        }
        if (C > 0) {
            const size_t bytes = scale.size() * sizeof(float);
            ss = {upload(scale.data(), bytes, "the scale"), upload(shift.data(), bytes, "the shift")};
            if (!constant) {
                copies_in += 2;
                bytes_in += 2 * bytes;
            }
        }
        if (constant) p.bn_cache[index] = ss;
    }
    Val& Y = out(0, X.shape);
    if (Y.numel() == 0) return true;
    launch(Y.numel(), cpn_affine_args{in_dev(0), ss.first->ptr, ss.second->ptr, Y.ptr(), Y.numel(), C,
                                      prod(X.shape, 2, X.shape.size())});
    return true;
}

bool Run::softmax() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    const Val& X = in(0);
    const int64_t r = static_cast<int64_t>(X.shape.size());
    if (r == 0) return false;
    const int64_t axis = inf::normalize_axis(n.attrs.get_int("axis", n.opset < 13 ? 1 : -1), r, n);
    const int64_t outer = prod(X.shape, 0, static_cast<size_t>(axis));
    int64_t len, inner;
    if (n.opset < 13) {  // the input as a matrix [outer, everything from axis on]
        len = prod(X.shape, static_cast<size_t>(axis), X.shape.size());
        inner = 1;
    } else {
        len = X.shape[static_cast<size_t>(axis)];
        inner = prod(X.shape, static_cast<size_t>(axis) + 1, X.shape.size());
    }
    Val& Y = out(0, X.shape);
    if (Y.numel() == 0) return true;
    launch(outer * inner, cpn_softmax_args{in_dev(0), Y.ptr(), outer * inner, len, inner, n.op_type == "LogSoftmax" ? 1 : 0, 0});
    return true;
}

bool Run::views() {
    const Val& X = in(0);
    if (!X.is_float()) return false;
    const std::optional<inf::Shape> s = inf::view_shape(
        *node, X.shape, {[&](size_t i) { return has_in(i); }, [&](size_t i) { return ints_input(i); }, wants(1)});
    if (!s) return false;
    view(0, 0, *s);
    return true;
}

bool Run::concat() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    std::vector<std::pair<size_t, inf::Shape>> shapes;
    for (size_t i = 0; i < n.inputs.size(); ++i)
        if (has_in(i)) shapes.emplace_back(i, in(i).shape);
    int64_t axis = 0;
    const inf::Shape ys = inf::concat_shape(n, shapes, axis);
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    // Each input is `outer` rows of `row` elements, placed at `off` within the output's rows.
    const int64_t outer = prod(ys, 0, static_cast<size_t>(axis)), inner = prod(ys, static_cast<size_t>(axis) + 1, ys.size());
    const int64_t dst_row = ys[static_cast<size_t>(axis)] * inner;
    int64_t off = 0;
    for (const auto& [i, shape] : shapes) {
        const int64_t row = shape[static_cast<size_t>(axis)] * inner;
        if (row > 0) launch(outer * row, cpn_copy_rows_args{in_dev(i), Y.ptr(), outer * row, row, dst_row, off});
        off += row;
    }
    return true;
}

bool Run::transpose() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    const Val& X = in(0);
    const size_t r = X.shape.size();
    if (r > CPN_MAX_RANK) return false;
    std::vector<int64_t> perm = n.attrs.get_ints("perm");
    if (perm.empty())
        for (size_t i = 0; i < r; ++i) perm.push_back(static_cast<int64_t>(r - 1 - i));
    need(perm.size() == r, "perm " + inf::shape_str(perm) + " does not match rank " + std::to_string(r));
    std::vector<int64_t> xstr(r, 1), st(r, 0);
    for (size_t i = r; i-- > 1;) xstr[i - 1] = xstr[i] * X.shape[i];
    std::vector<bool> seen(r, false);
    inf::Shape ys(r);
    for (size_t i = 0; i < r; ++i) {
        const int64_t a = perm[i];
        need(a >= 0 && a < static_cast<int64_t>(r) && !seen[static_cast<size_t>(a)], "perm " + inf::shape_str(perm) + " is not a permutation");
        seen[static_cast<size_t>(a)] = true;
        ys[i] = X.shape[static_cast<size_t>(a)];
        st[i] = xstr[static_cast<size_t>(a)];
    }
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    launch(Y.numel(), cpn_gather_args{in_dev(0), Y.ptr(), Y.numel(), 1.0f, 0, make_strides(ys, st)});
    return true;
}

/* The node through the CPU operator: inputs read back, outputs kept on the host until a device
 * operator needs them. */
void Run::host_node() {
    const inf::Node& n = *node;
    std::vector<inf::Tensor> held;
    held.reserve(n.inputs.size());
    std::vector<const inf::Tensor*> ptrs;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
        if (!has_in(i)) {
            ptrs.push_back(nullptr);
            continue;
        }
        held.push_back(host(n.inputs[i]));
        ptrs.push_back(&held.back());
    }
    std::vector<inf::Tensor> outs = inf::run_node(n, ptrs, p.threads > 0 ? p.threads : 1);
    for (size_t i = 0; i < outs.size() && i < n.outputs.size(); ++i) {
        if (n.outputs[i].empty()) continue;
        Val v;
        v.dtype = outs[i].dtype;
        v.shape = outs[i].shape;
        v.host = std::move(outs[i]);
        env[n.outputs[i]] = std::move(v);
    }
    ++host_nodes;
}

void Run::run_node(size_t index) {
    node = &p.model.graph.nodes[index];
    const std::string& op = node->op_type;
    bool done = false;
    if (node->domain.empty() || node->domain == "ai.onnx") {
        if (op == "Conv") done = conv();
        else if (op == "Gemm") done = gemm();
        else if (op == "MatMul") done = matmul();
        else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow") done = binary();
        else if (op == "MaxPool" || op == "AveragePool") done = pool();
        else if (op == "GlobalAveragePool") done = global_avg();
        else if (op == "BatchNormalization") done = batchnorm();
        else if (op == "Softmax" || op == "LogSoftmax") done = softmax();
        else if (op == "Concat") done = concat();
        else if (op == "Transpose") done = transpose();
        else if (op == "Flatten" || op == "Reshape" || op == "Squeeze" || op == "Unsqueeze" || op == "Identity" || op == "Dropout")
            done = views();
        else done = unary();
    }
    if (!done) {
        log(1, "cuda inference: " + node->where() + " runs on the host (an attribute, type or shape the kernels lack)");
        host_node();
    }
    for (const std::string& name : p.drop_after[index]) env.erase(name);
}

/* ---- the C entry points ------------------------------------------------------------------- */

void set_msg(cpn_msg* e, const std::string& m) {
    if (e != nullptr) plugin::copy_str(e->text, m);
}

int32_t supports(cpn_device_handle* device, const char* op_type, int32_t opset, const int32_t* input_types, uint32_t input_count,
                 char* reason, uint32_t reason_len) {
    auto why = [&](const std::string& s) {
        if (reason != nullptr && reason_len > 0) std::snprintf(reason, reason_len, "%s", s.c_str());
        return 0;
    };
    try {
        if (device == nullptr) return why("no device");
        if (op_type == nullptr) return why("no operator named");
        const OpInfo* info = find_info(op_type);
        if (info == nullptr || opset < inf::kMinOpset || opset > inf::kMaxOpset)
            return why(std::string("operator ") + op_type + " (opset " + std::to_string(opset) +
                       ") is not implemented by the CUDA backend");
        if (input_count > 0 && input_types == nullptr) return why("input types missing");
        for (uint32_t i = 0; i < input_count; ++i) {
            const int32_t t = input_types[i];
            if (i > 0 && info->types == Types::first_float) continue;
            if (t != 0 && t != static_cast<int32_t>(inf::DType::f32))
                return why(std::string("input ") + std::to_string(i) + " of " + op_type + " is " +
                           inf::dtype_name(static_cast<inf::DType>(t)) + "; the CUDA backend runs float32 only");
        }
        return 1;
    } catch (...) {
        return why("internal error");
    }
}

/* The products' engine of a prepared segment: a cuBLAS handle on its stream, or nothing (the
 * built-in cpn_sgemm kernel), said once in the log. */
void open_blas(Prepared& p) {
    std::string why;
    p.blas = cublas::load(&why);
    if (p.blas != nullptr) {
        cublas::Status s = p.blas->create(&p.blas_handle);
        if (s == cublas::kSuccess) s = p.blas->set_stream(p.blas_handle, p.stream);
        if (s != cublas::kSuccess) {
            why = p.blas->library + ": cublasCreate_v2/cublasSetStream_v2 failed: " + cublas::status_name(s);
            if (p.blas_handle != nullptr) p.blas->destroy(p.blas_handle);
            p.blas_handle = nullptr;
            p.blas = nullptr;
        }
    }
    static std::once_flag said;
    std::call_once(said, [&] {
        if (p.blas != nullptr)
            log(2, "cuda inference: products through cuBLAS (" + p.blas->library + ", default math mode: no TF32)");
        else
            log(3, "cuda inference: " + why + "; products run on the built-in cpn_sgemm kernel (slower)");
    });
}

cpn_status prepare_impl(cpn_device_handle* device, const void* model, uint64_t size, const char* options_json, cpn_prepared** out,
                        cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "cuda infer prepare: out is NULL");
    *out = nullptr;
    if (device == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "cuda infer prepare: device handle is NULL");
    if (model == nullptr && size > 0) return fail(err, CPN_E_INVALID_ARGUMENT, "cuda infer prepare: model is NULL");
    auto p = std::make_unique<Prepared>();
    bool want_fp16 = false;
    try {
        inf::LoadOptions lo;
        lo.origin = "segment";
        p->model = inf::load_onnx(std::string(static_cast<const char*>(model), size), lo);
        if (options_json != nullptr && *options_json) {
            const nlohmann::json o = nlohmann::json::parse(options_json, nullptr, false);
            if (o.is_object()) {
                if (auto it = o.find("threads"); it != o.end() && it->is_number_integer())
                    p->threads = static_cast<int>(std::clamp<int64_t>(it->get<int64_t>(), 0, 4096));
                if (auto it = o.find("max_tensor_elements"); it != o.end() && it->is_number_integer() && it->get<int64_t>() > 0)
                    p->max_elements = it->get<int64_t>();
                if (auto it = o.find("precision"); it != o.end()) {
                    const std::string v = it->is_string() ? it->get<std::string>() : it->dump();
                    if (v != "fp32" && v != "fp16")
                        return fail(err, CPN_E_INVALID_ARGUMENT, "cuda infer prepare: precision '%s': expected fp32 or fp16",
                                    v.c_str());
                    want_fp16 = v == "fp16";
                }
            }
        }
    } catch (const inf::Error& e) {
        set_msg(err, std::string("cuda: ") + e.what());
        return status_of(e);
    }
    const DriverApi* api = device->api;
    ScopedContext scope(api, device->ctx);
    if (scope.result() != CUDA_SUCCESS)
        return fail(err, status_for(scope.result()), "cuda infer prepare: cuCtxPushCurrent_v2 failed: %s",
                    error_text(api, scope.result()).c_str());
    // From here on ~Prepared frees what was made, with the context current.
    p->api = api;
    p->ctx = device->ctx;
    p->pool.api = api;
    p->label = "CUDA device " + std::to_string(device->index) + " (compute capability " + std::to_string(device->cc_major) + "." +
               std::to_string(device->cc_minor) + ")";
    CUresult r = api->module_load_data(&p->module, embedded::infer_fatbin);
    if (r == CUDA_ERROR_NO_BINARY_FOR_GPU || r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION || r == CUDA_ERROR_INVALID_PTX ||
        r == CUDA_ERROR_JIT_COMPILER_NOT_FOUND || r == CUDA_ERROR_JIT_COMPILATION_DISABLED)
        return fail(err, CPN_E_UNSUPPORTED, "cuda: cuModuleLoadData(inference kernels) failed on %s: %s", p->label.c_str(),
                    error_text(api, r).c_str());
    try {
        check(api, r, "cuModuleLoadData(inference kernels)");
        for (int k = 0; k < kKernelCount; ++k)
            if (CUresult rk = api->module_get_function(&p->kernels[k], p->module, kKernelNames[k]); rk != CUDA_SUCCESS)
                throw_cuda(api, rk, std::string("cuModuleGetFunction(") + kKernelNames[k] + ")");
        // Non-blocking: the segment's work never waits for the legacy default stream of others.
        check(api, api->stream_create(&p->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        p->pool.stream = p->stream;
        open_blas(*p);
        if (want_fp16) {
            if (p->blas == nullptr)
                p->precision_note = "cuBLAS is not loaded (the built-in cpn_sgemm computes float32)";
            else if (p->blas->gemm_ex == nullptr)
                p->precision_note = p->blas->library + " lacks cublasGemmEx";
            else if (device->cc_major < 7)
                p->precision_note = "compute capability " + std::to_string(device->cc_major) + "." +
                                    std::to_string(device->cc_minor) + " has no float16 tensor cores";
            else
                p->fp16 = true;
        }
        // Initializers: float32 ones uploaded now, once; all keep their host copy, which
        // outlives the copies, so one wait at the end covers them.
        const inf::Graph& g = p->model.graph;
        for (const auto& [name, t] : g.initializers) {
            Val v;
            v.dtype = t.dtype;
            v.shape = t.shape;
            v.host = t;
            if (v.is_float() && t.numel() > 0) {
                v.buf = p->pool.take(t.bytes(), "initializer '" + name + "'");
                check(api, api->memcpy_htod_async(v.buf->ptr, t.raw(), t.bytes(), p->stream),
                      ("cuMemcpyHtoDAsync_v2(initializer '" + name + "')").c_str());
            }
            p->consts[name] = std::move(v);
        }
        check(api, api->stream_synchronize(p->stream), "cuStreamSynchronize after the initializers");
    } catch (const CudaError& e) {
        return fail(err, e.status, "cuda: prepare: %s on %s", e.what(), p->label.c_str());
    }
    // Last readers: a value nobody reads after node i (and that is no output) is dropped then.
    const inf::Graph& g = p->model.graph;
    std::set<std::string> outputs;
    for (const inf::ValueInfo& o : g.outputs) outputs.insert(o.name);
    std::map<std::string, size_t> last;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        for (const std::string& in : g.nodes[i].inputs)
            if (!in.empty()) last[in] = i;
        for (const std::string& o : g.nodes[i].outputs)
            if (!o.empty() && !last.count(o)) last[o] = i;  // produced, maybe never read
    }
    p->drop_after.resize(g.nodes.size());
    for (const auto& [name, i] : last)
        if (!outputs.count(name) && !g.initializers.count(name)) p->drop_after[i].push_back(name);
    *out = reinterpret_cast<cpn_prepared*>(p.release());
    return CPN_OK;
}

cpn_status run_impl(cpn_prepared* pp, const cpn_tensor* inputs, uint32_t input_count, cpn_tensor_alloc_fn alloc, void* user,
                    const cpn_run_control* ctl, char* result_json, uint64_t result_cap, cpn_msg* err) {
    auto* p = reinterpret_cast<Prepared*>(pp);
    if (p == nullptr || alloc == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "cuda infer run: no prepared model or no allocator");
    if (input_count > 0 && inputs == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "cuda infer run: inputs is NULL");
    if (ctl != nullptr && ctl->struct_size < sizeof(cpn_run_control))
        return fail(err, CPN_E_INVALID_ARGUMENT, "cuda infer run: cpn_run_control is smaller than this plugin's (%zu bytes)",
                    sizeof(cpn_run_control));
    if (result_json != nullptr && result_cap > 0) result_json[0] = '\0';
    std::lock_guard<std::mutex> lock(p->mu);
    const DriverApi* api = p->api;
    ScopedContext scope(api, p->ctx);
    if (scope.result() != CUDA_SUCCESS)
        return fail(err, status_for(scope.result()), "cuda infer run: cuCtxPushCurrent_v2 failed: %s",
                    error_text(api, scope.result()).c_str());
    const uint64_t t0 = monotonic_ns();
    p->pool.begin_run();
    Run r(*p);
    const inf::Graph& g = p->model.graph;
    // A failed run still waits for what it queued, so the next one starts on an idle stream.
    auto drain = [&] { api->stream_synchronize(p->stream); };
    try {
        // The inputs, by name, as host values (copied to the device when a device operator reads them).
        for (uint32_t i = 0; i < input_count; ++i) {
            const cpn_tensor& t = inputs[i];
            const std::string name = t.name != nullptr ? t.name : "";
            Val v;
            v.dtype = static_cast<inf::DType>(t.dtype);
            if (t.rank > 64 || (t.rank > 0 && t.dims == nullptr))
                return fail(err, CPN_E_INVALID_ARGUMENT, "cuda: input '%s': bad rank or dims", name.c_str());
            v.shape.assign(t.dims, t.dims + t.rank);
            if (!inf::dtype_supported(v.dtype) || inf::checked_numel(v.shape, p->max_elements) < 0 || v.bytes() != t.bytes ||
                (t.bytes > 0 && t.data == nullptr))
                return fail(err, CPN_E_INVALID_ARGUMENT, "cuda: input '%s': its type, shape and byte count disagree", name.c_str());
            bool declared = false;
            for (const inf::ValueInfo& vi : g.inputs)
                if (vi.name == name) {
                    declared = true;
                    if (vi.dtype != inf::DType::undefined && vi.dtype != v.dtype)
                        return fail(err, CPN_E_INVALID_ARGUMENT, "cuda: input '%s' is %s, the segment declares %s", name.c_str(),
                                    inf::dtype_name(v.dtype), inf::dtype_name(vi.dtype));
                }
            if (!declared) return fail(err, CPN_E_INVALID_ARGUMENT, "cuda: '%s' is not an input of the segment", name.c_str());
            if (r.env.count(name)) return fail(err, CPN_E_INVALID_ARGUMENT, "cuda: input '%s' given twice", name.c_str());
            v.host.dtype = v.dtype;
            v.host.shape = v.shape;
            v.host.mem = std::shared_ptr<void>(t.data, [](void*) {});
            v.host.capacity = t.bytes;
            r.env[name] = std::move(v);
        }
        for (const inf::ValueInfo& vi : g.inputs)
            if (!r.env.count(vi.name)) return fail(err, CPN_E_INVALID_ARGUMENT, "cuda: segment input '%s' is missing", vi.name.c_str());
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            if (ctl != nullptr && ctl->cancel != nullptr && *ctl->cancel != 0) {
                drain();
                return fail(err, CPN_E_CANCELLED, "cuda: cancelled before %s", g.nodes[i].where().c_str());
            }
            if (ctl != nullptr && ctl->deadline_ns != 0 && monotonic_ns() >= ctl->deadline_ns) {
                drain();
                return fail(err, CPN_E_DEADLINE_EXCEEDED, "cuda: deadline passed before %s", g.nodes[i].where().c_str());
            }
            r.run_node(i);
        }
        r.node = nullptr;
        for (const inf::ValueInfo& o : g.outputs) {
            const Val* v = r.find(o.name);
            if (v == nullptr) {
                drain();
                return fail(err, CPN_E_INVALID_ARGUMENT, "cuda: output '%s' was not produced", o.name.c_str());
            }
            const size_t bytes = v->bytes();
            void* dst = alloc(user, o.name.c_str(), static_cast<int32_t>(v->dtype), static_cast<uint32_t>(v->shape.size()),
                              v->shape.data(), bytes);
            if (dst == nullptr) {
                drain();
                return fail(err, CPN_E_OUT_OF_MEMORY, "cuda: the host gave no memory for output '%s'", o.name.c_str());
            }
            if (bytes == 0) continue;
            if (v->buf) r.download(dst, v->ptr(), bytes, "output '" + o.name + "'");
            else std::memcpy(dst, v->host.raw(), bytes);
        }
        // Surfaces a fault of any kernel queued since the last copy.
        check(api, api->stream_synchronize(p->stream), "cuStreamSynchronize at the end of the run");
    } catch (const CudaError& e) {
        drain();
        return fail(err, e.status, "cuda: %s: %s on %s", r.where().c_str(), e.what(), p->label.c_str());
    } catch (const inf::Error& e) {
        drain();
        const std::string m = e.what();
        // Messages of the host fallback already name the node.
        set_msg(err, "cuda: " + (r.node != nullptr && m.find(r.node->name) == std::string::npos ? r.where() + ": " + m : m));
        return status_of(e);
    } catch (const std::bad_alloc&) {
        drain();
        return fail(err, CPN_E_OUT_OF_MEMORY, "cuda: %s: out of host memory", r.where().c_str());
    }
    const double seconds = static_cast<double>(monotonic_ns() - t0) / 1e9;
    if (result_json != nullptr && result_cap > 0) {
        nlohmann::json m = {{"seconds", seconds},
                            {"flops", r.flops},
                            {"nodes", g.nodes.size()},
                            {"host_nodes", r.host_nodes},
                            {"peak_bytes", p->pool.peak},
                            {"copies_in", r.copies_in},
                            {"copies_out", r.copies_out},
                            {"copy_bytes_in", r.bytes_in},
                            {"copy_bytes_out", r.bytes_out},
                            {"gemm", p->blas != nullptr ? "cublas" : "cpn_sgemm"},
                            {"precision", p->fp16 ? "fp16" : "fp32"}};
        if (!p->precision_note.empty()) m["precision_note"] = p->precision_note;
        const std::string text = m.dump();
        if (text.size() < result_cap) std::memcpy(result_json, text.c_str(), text.size() + 1);
    }
    return CPN_OK;
}

/* The ABI wrappers: nothing thrown crosses into the host. */
cpn_status prepare(cpn_device_handle* device, const void* model, uint64_t size, const char* options_json, cpn_prepared** out,
                   cpn_msg* err) {
    return plugin::guarded(err, "cuda infer prepare", [&] { return prepare_impl(device, model, size, options_json, out, err); });
}

cpn_status run(cpn_prepared* pp, const cpn_tensor* inputs, uint32_t input_count, cpn_tensor_alloc_fn alloc, void* user,
               const cpn_run_control* ctl, char* result_json, uint64_t result_cap, cpn_msg* err) {
    return plugin::guarded(err, "cuda infer run",
                        [&] { return run_impl(pp, inputs, input_count, alloc, user, ctl, result_json, result_cap, err); });
}

void release(cpn_prepared* pp) {
    try {
        delete reinterpret_cast<Prepared*>(pp);
    } catch (...) {
    }
}

const cpn_infer_api kApi = {sizeof(cpn_infer_api), supports, prepare, run, release};

}  // namespace

const cpn_infer_api* api() { return &kApi; }

}  // namespace cpn::cuda::infer_ext
