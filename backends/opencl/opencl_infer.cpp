// opencl_infer.cpp: see opencl_infer.hpp.
#include "opencl_infer.hpp"

#include <clblast_c.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cpn_backend_util.hpp"
#include "device_shapes.hpp"
#include "executor.hpp"
#include "onnx_import.hpp"
#include "plugin_status.hpp"
#include "ops.hpp"

namespace cpn::opencl::infer_source {
extern const char* const kInferSource;  // generated from infer_kernels.cl
}

namespace cpn::opencl::infer_ext {

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
    {"Conv", Types::all_float},      {"Gemm", Types::all_float},          {"MatMul", Types::all_float},
    {"Relu", Types::all_float},      {"LeakyRelu", Types::all_float},     {"Sigmoid", Types::all_float},
    {"Tanh", Types::all_float},      {"Clip", Types::all_float},          {"HardSigmoid", Types::all_float},
    {"HardSwish", Types::all_float}, {"Add", Types::all_float},           {"Sub", Types::all_float},
    {"Mul", Types::all_float},       {"Div", Types::all_float},           {"MaxPool", Types::all_float},
    {"AveragePool", Types::all_float}, {"GlobalAveragePool", Types::all_float},
    {"BatchNormalization", Types::all_float}, {"Softmax", Types::all_float},
    {"Flatten", Types::all_float},   {"Reshape", Types::first_float},     {"Squeeze", Types::first_float},
    {"Unsqueeze", Types::first_float}, {"Identity", Types::all_float},    {"Dropout", Types::first_float},
    {"Concat", Types::all_float},    {"Transpose", Types::all_float},
};

const OpInfo* find_info(const char* op) {
    for (const OpInfo& o : kOps)
        if (std::strcmp(o.op, op) == 0) return &o;
    return nullptr;
}

/* Activation codes of infer_kernels.cl. */
enum Act : cl_int { kActNone = 0, kActRelu, kActLeaky, kActClip, kActSigmoid, kActHardSigmoid, kActTanh, kActHardSwish };

constexpr const char* kKernelNames[] = {"cpn_unary",   "cpn_binary",       "cpn_gather",    "cpn_im2col",
                                        "cpn_conv_scatter", "cpn_conv_direct", "cpn_pool", "cpn_plane_mean",
                                        "cpn_channel_affine", "cpn_softmax"};
enum Kernel { kUnary, kBinary, kGather, kIm2col, kConvScatter, kConvDirect, kPool, kPlaneMean, kChannelAffine, kSoftmax, kKernelCount };

/* ---- errors ------------------------------------------------------------------------------- */

/* An OpenCL or CLBlast failure inside a run: the status comes from the OpenCL code. */
struct ClError : std::runtime_error {
    ClError(cl_int c, const std::string& what) : std::runtime_error(what), status(status_from_cl(c)) {}
    ClError(cpn_status st, const std::string& what) : std::runtime_error(what), status(st) {}
    cpn_status status;
};

void cl_check(cl_int rc, const std::string& what) {
    if (rc != CL_SUCCESS)
        throw ClError(rc, what + " failed: " + cl_error_name(rc) + " (" + std::to_string(rc) + ")");
}

const char* blast_name(CLBlastStatusCode s) {
    switch (s) {
        case CLBlastNotImplemented: return "CLBlastNotImplemented";
        case CLBlastInvalidDimension: return "CLBlastInvalidDimension";
        case CLBlastInvalidLeadDimA: return "CLBlastInvalidLeadDimA";
        case CLBlastInvalidLeadDimB: return "CLBlastInvalidLeadDimB";
        case CLBlastInvalidLeadDimC: return "CLBlastInvalidLeadDimC";
        case CLBlastInsufficientMemoryA: return "CLBlastInsufficientMemoryA";
        case CLBlastInsufficientMemoryB: return "CLBlastInsufficientMemoryB";
        case CLBlastInsufficientMemoryC: return "CLBlastInsufficientMemoryC";
        case CLBlastInsufficientMemoryTemp: return "CLBlastInsufficientMemoryTemp";
        case CLBlastInvalidBatchCount: return "CLBlastInvalidBatchCount";
        case CLBlastInvalidLocalMemUsage: return "CLBlastInvalidLocalMemUsage";
        case CLBlastDatabaseError: return "CLBlastDatabaseError";
        case CLBlastUnknownError: return "CLBlastUnknownError";
        case CLBlastUnexpectedError: return "CLBlastUnexpectedError";
        default: return "CLBlastError";
    }
}

void blast_check(CLBlastStatusCode s, const std::string& what) {
    if (s == CLBlastSuccess) return;
    const int code = static_cast<int>(s);
    if (code > -1000)  // an OpenCL error passed through
        throw ClError(code, "CLBlast " + what + " failed: " + cl_error_name(code) + " (" + std::to_string(code) + ")");
    throw ClError(s == CLBlastNotImplemented ? CPN_E_UNSUPPORTED : CPN_E_INTERNAL,
                  "CLBlast " + what + " failed: " + blast_name(s) + " (" + std::to_string(code) + ")");
}

using inf::status_of;

/* ---- device memory ------------------------------------------------------------------------ */

using Buf = std::shared_ptr<_cl_mem>;

struct MemStats {
    size_t live = 0, peak = 0;
};

/* A read-write buffer of `bytes` (> 0). `stats` (may be NULL) counts the live device bytes. */
Buf make_buf(const DeviceView& d, size_t bytes, MemStats* stats, const std::string& what) {
    if (d.max_alloc != 0 && bytes > d.max_alloc)
        throw inf::Error(inf::Error::unsupported, what + ": a buffer of " + std::to_string(bytes) +
                                                      " bytes exceeds CL_DEVICE_MAX_MEM_ALLOC_SIZE (" +
                                                      std::to_string(d.max_alloc) + ") of " + d.label);
    cl_int rc = CL_SUCCESS;
    cl_mem m = clCreateBuffer(d.context, CL_MEM_READ_WRITE, bytes, nullptr, &rc);
    cl_check(rc, "clCreateBuffer(" + std::to_string(bytes) + " bytes) for " + what);
    if (stats != nullptr) {
        stats->live += bytes;
        stats->peak = std::max(stats->peak, stats->live);
    }
    return Buf(m, [stats, bytes](cl_mem p) {
        if (stats != nullptr) stats->live -= bytes;
        clReleaseMemObject(p);
    });
}

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
};

/* ---- the prepared segment ----------------------------------------------------------------- */

struct Prepared {
    DeviceView dev;
    inf::Model model;
    int threads = 0;
    int64_t max_elements = int64_t{1} << 30;
    cl_kernel kernels[kKernelCount] = {};
    std::map<std::string, Val> consts;  // initializers; float32 ones uploaded
    std::vector<std::vector<std::string>> drop_after;  // per node: values nobody reads later
    std::map<size_t, std::pair<Buf, Buf>> bn_cache;   // BatchNormalization scale/shift per node
    MemStats mem;
    std::mutex mu;  // kernel arguments are per-kernel state: one run at a time

    ~Prepared() {
        for (cl_kernel k : kernels)
            if (k != nullptr) clReleaseKernel(k);
    }
};

cpn_status build_program(const DeviceView& d, cl_program* out, cpn_msg* err) {
    return build_cached_program(d, infer_source::kInferSource, "", "inference kernels", out, err);
}

/* ---- a run -------------------------------------------------------------------------------- */

uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

cl_long8 long8(const std::vector<int64_t>& v) {
    cl_long8 r{};
    for (size_t i = 0; i < 8; ++i) r.s[i] = i < v.size() ? v[i] : 1;
    return r;
}

int64_t prod(const inf::Shape& s, size_t b, size_t e) {
    int64_t p = 1;
    for (size_t i = b; i < e && i < s.size(); ++i) p *= s[i];
    return p;
}

/* 2-D convolution / pooling geometry (1-D as H = 1), following make_geo of the CPU operators. */
struct Geo {
    int64_t H = 1, W = 1, OH = 1, OW = 1, KH = 1, KW = 1, sh = 1, sw = 1, phb = 0, pwb = 0, phe = 0, pwe = 0, dh = 1, dw = 1;
};

struct Run {
    Prepared& p;
    const DeviceView& d;
    std::map<std::string, Val> env;
    uint64_t copies_in = 0, copies_out = 0, bytes_in = 0, bytes_out = 0;
    double flops = 0;
    size_t host_nodes = 0;
    const inf::Node* node = nullptr;  // the node running (messages)

    Run(Prepared& pp) : p(pp), d(pp.dev) {}

    std::string where() const { return node != nullptr ? node->where() : std::string("segment"); }
    [[noreturn]] void bad(const std::string& what) const { inf::fail(where() + ": " + what); }
    void need(bool ok, const std::string& what) const {
        if (!ok) bad(what);
    }

    const Val* find(const std::string& name) const {
        if (auto it = env.find(name); it != env.end()) return &it->second;
        if (auto it = p.consts.find(name); it != p.consts.end()) return &it->second;
        return nullptr;
    }
    bool has_in(size_t i) const { return i < node->inputs.size() && !node->inputs[i].empty(); }
    const Val& in(size_t i) const {
        need(has_in(i), "input " + std::to_string(i) + " is missing");
        const Val* v = find(node->inputs[i]);
        need(v != nullptr, "input '" + node->inputs[i] + "' has no value");
        return *v;
    }
    bool wants(size_t i) const { return i < node->outputs.size() && !node->outputs[i].empty(); }

    /* The device buffer of a float32 value, uploading its host copy the first time. NULL for an
     * empty tensor. */
    cl_mem dev(const std::string& name) {
        Val* v = nullptr;
        if (auto it = env.find(name); it != env.end()) v = &it->second;
        else if (auto jt = p.consts.find(name); jt != p.consts.end()) v = &jt->second;
        need(v != nullptr, "value '" + name + "' has no value");
        need(v->is_float(), "value '" + name + "' is " + inf::dtype_name(v->dtype) + ", not float32");
        if (v->buf || v->numel() == 0) return v->buf.get();
        need(v->host.defined() && v->host.raw() != nullptr, "value '" + name + "' has no data");
        const size_t bytes = v->bytes();
        v->buf = make_buf(d, bytes, &p.mem, where());
        // Blocking: the host copy may go (its last reader done) before a queued write would run.
        cl_check(clEnqueueWriteBuffer(d.queue, v->buf.get(), CL_TRUE, 0, bytes, v->host.raw(), 0, nullptr, nullptr),
                 "clEnqueueWriteBuffer('" + name + "')");
        ++copies_in;
        bytes_in += bytes;
        return v->buf.get();
    }
    cl_mem in_dev(size_t i) { return dev(node->inputs[i]); }

    /* A host tensor of a value, downloading it when it only lives on the device. */
    inf::Tensor host(const std::string& name) {
        Val* v = nullptr;
        if (auto it = env.find(name); it != env.end()) v = &it->second;
        else if (auto jt = p.consts.find(name); jt != p.consts.end()) v = &jt->second;
        need(v != nullptr, "value '" + name + "' has no value");
        if (v->host.defined()) {
            inf::Tensor t = v->host;
            t.shape = v->shape;  // a view may have reshaped it
            return t;
        }
        inf::Tensor t = inf::make_tensor(v->dtype, v->shape);
        if (t.bytes() > 0) {
            need(v->buf != nullptr, "value '" + name + "' has no data");
            cl_check(clEnqueueReadBuffer(d.queue, v->buf.get(), CL_TRUE, 0, t.bytes(), t.raw(), 0, nullptr, nullptr),
                     "clEnqueueReadBuffer('" + name + "')");
            ++copies_out;
            bytes_out += t.bytes();
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
        if (n > 0) v.buf = make_buf(d, static_cast<size_t>(n) * sizeof(float), &p.mem, where());
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
    template <class T>
    void arg(cl_kernel k, cl_uint i, const T& v, const char* kname) {
        cl_check(clSetKernelArg(k, i, sizeof(T), &v), std::string("clSetKernelArg(") + kname + ", " + std::to_string(i) + ")");
    }
    template <class... A>
    void launch(Kernel which, int64_t global, const A&... args) {
        if (global <= 0) return;
        cl_kernel k = p.kernels[which];
        const char* kname = kKernelNames[which];
        cl_uint i = 0;
        (arg(k, i++, args, kname), ...);
        const size_t g = static_cast<size_t>(global);
        cl_check(clEnqueueNDRangeKernel(d.queue, k, 1, nullptr, &g, nullptr, 0, nullptr, nullptr),
                 std::string("clEnqueueNDRangeKernel(") + kname + ")");
    }
    static cl_int i32(int64_t v) { return static_cast<cl_int>(v); }
    void fits_int(std::initializer_list<int64_t> vs) const {
        for (int64_t v : vs) need(v >= 0 && v <= INT32_MAX, "a dimension exceeds the kernels' 32-bit index range");
    }

    /* ---- helpers of the operators ---- */
    struct ActSpec {
        cl_int code = kActNone;
        float a = 0, b = 0;
    };
    bool fused(ActSpec* s) const {
        const std::string& f = node->fused_activation;
        s->a = node->fused_alpha;
        s->b = node->fused_beta;
        if (f.empty()) s->code = kActNone;
        else if (f == "Relu") s->code = kActRelu;
        else if (f == "LeakyRelu") s->code = kActLeaky;
        else if (f == "Clip") s->code = kActClip;
        else if (f == "Sigmoid") s->code = kActSigmoid;
        else if (f == "HardSigmoid") s->code = kActHardSigmoid;
        else if (f == "Tanh") s->code = kActTanh;
        else if (f == "HardSwish") s->code = kActHardSwish;
        else return false;
        return true;
    }
    void apply_act(cl_mem y, int64_t n, const ActSpec& a) {
        if (a.code != kActNone && n > 0) launch(kUnary, n, y, y, cl_long{n}, a.code, cl_float{a.a}, cl_float{a.b});
    }
    bool all_float_inputs() const {
        for (size_t i = 0; i < node->inputs.size(); ++i)
            if (has_in(i)) {
                const Val* v = find(node->inputs[i]);
                if (v == nullptr || !v->is_float()) return false;
            }
        return true;
    }
    void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, cl_mem A, size_t aoff, int64_t lda, cl_mem B,
               size_t boff, int64_t ldb, float beta, cl_mem C, size_t coff, int64_t ldc) {
        cl_command_queue q = d.queue;
        blast_check(CLBlastSgemm(CLBlastLayoutRowMajor, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
                                 tb ? CLBlastTransposeYes : CLBlastTransposeNo, static_cast<size_t>(M), static_cast<size_t>(N),
                                 static_cast<size_t>(K), alpha, A, aoff, static_cast<size_t>(lda), B, boff,
                                 static_cast<size_t>(ldb), beta, C, coff, static_cast<size_t>(ldc), &q, nullptr),
                    "Sgemm");
        flops += 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
    }
    void zero(cl_mem y, size_t bytes) {
        if (bytes == 0) return;
        const cl_float z = 0;
        cl_check(clEnqueueFillBuffer(d.queue, y, &z, sizeof z, 0, bytes, 0, nullptr, nullptr), "clEnqueueFillBuffer");
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

    bool geo(const inf::Shape& xs, std::vector<int64_t> kernel, bool ceil_mode, bool use_dil, Geo* g) const;

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

bool Run::geo(const inf::Shape& xs, std::vector<int64_t> kernel, bool ceil_mode, bool use_dil, Geo* g) const {
    const std::optional<inf::Geo2d> s = inf::geo_2d(*node, xs, kernel, ceil_mode, use_dil);
    if (!s) return false;
    g->H = s->H, g->W = s->W, g->OH = s->OH, g->OW = s->OW, g->KH = s->KH, g->KW = s->KW, g->sh = s->sh, g->sw = s->sw;
    g->dh = s->dh, g->dw = s->dw, g->phb = s->phb, g->pwb = s->pwb, g->phe = s->phe, g->pwe = s->pwe;
    fits_int({g->H, g->W, g->OH, g->OW, g->H * g->W});
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
    Geo g;
    if (!geo(X.shape, kernel, false, true, &g)) return false;
    ActSpec act;
    if (!fused(&act)) return false;
    const bool has_b = has_in(2);
    if (has_b) need(in(2).numel() == M, "B " + inf::shape_str(in(2).shape) + " must hold M = " + std::to_string(M) + " values");
    const int64_t Cg = C / G, Mg = M / G, K = Cg * g.KH * g.KW, P = g.OH * g.OW;
    fits_int({N, C, M, K, P});
    inf::Shape ys{N, M};
    if (X.shape.size() == 4) ys.push_back(g.OH);
    ys.push_back(g.OW);
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    cl_mem x = in_dev(0), w = in_dev(1), bias = has_b ? in_dev(2) : nullptr, y = Y.buf.get();
    if (bias == nullptr) bias = y;  // unread (has_bias 0); a valid buffer for the argument
    if (K == 0) {
        zero(y, Y.bytes());
        return true;
    }
    const cl_int ih = i32(g.H), iw = i32(g.W), oh = i32(g.OH), ow = i32(g.OW), kh = i32(g.KH), kw = i32(g.KW);
    const cl_int sh = i32(g.sh), sw = i32(g.sw), ph = i32(g.phb), pw = i32(g.pwb), dh = i32(g.dh), dw = i32(g.dw);
    if (Cg * g.KH * g.KW <= 16 || (G > 1 && Cg == 1)) {  // thin (depthwise): one work item per output
        launch(kConvDirect, Y.numel(), x, w, bias, cl_int{has_b ? 1 : 0}, y, cl_long{Y.numel()}, i32(C), ih, iw, i32(M), i32(G), kh,
               kw, oh, ow, sh, sw, ph, pw, dh, dw, act.code, cl_float{act.a}, cl_float{act.b});
        flops += 2.0 * static_cast<double>(N) * M * K * P;
        return true;
    }
    // im2col of a chunk of images per group, one GEMM, scattered into NCHW with bias and activation.
    const int64_t col_limit = int64_t{1} << 24;  // floats per im2col buffer (64 MiB)
    int64_t nb = std::max<int64_t>(1, std::min<int64_t>(N, col_limit / std::max<int64_t>(1, K * P)));
    if (d.max_alloc != 0) nb = std::max<int64_t>(1, std::min<int64_t>(nb, static_cast<int64_t>(d.max_alloc / sizeof(float)) / (K * P)));
    const int64_t tmp_elems = Mg * nb * P;
    Buf col = make_buf(d, static_cast<size_t>(K * nb * P) * sizeof(float), &p.mem, where() + " im2col");
    Buf tmp = make_buf(d, static_cast<size_t>(tmp_elems) * sizeof(float), &p.mem, where() + " product");
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        const int64_t cnt = std::min(nb, N - n0);
        for (int64_t gi = 0; gi < G; ++gi) {
            launch(kIm2col, K * cnt * P, x, col.get(), cl_long{K * cnt * P}, i32(n0), i32(cnt), i32(C), i32(gi * Cg), i32(Cg), ih, iw,
                   kh, kw, oh, ow, sh, sw, ph, pw, dh, dw);
            sgemm(false, false, Mg, cnt * P, K, 1.0f, w, static_cast<size_t>(gi * Mg * K), K, col.get(), 0, cnt * P, 0.0f, tmp.get(),
                  0, cnt * P);
            launch(kConvScatter, Mg * cnt * P, tmp.get(), bias, cl_int{has_b ? 1 : 0}, y, cl_long{Mg * cnt * P}, i32(n0), i32(cnt),
                   i32(M), i32(gi * Mg), cl_long{P}, act.code, cl_float{act.a}, cl_float{act.b});
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
    cl_mem y = Y.buf.get();
    if (useC) launch(kGather, Y.numel(), in_dev(2), y, cl_long{Y.numel()}, cl_int{2}, long8({M, N}), long8(cstr), cl_float{beta});
    if (K == 0) {
        if (!useC) zero(y, Y.bytes());
    } else {
        sgemm(ta, tb, M, N, K, alpha, in_dev(0), 0, A.shape[1], in_dev(1), 0, B.shape[1], useC ? 1.0f : 0.0f, y, 0, N);
    }
    apply_act(y, Y.numel(), act);
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
    cl_mem y = Y.buf.get();
    if (K == 0) {
        zero(y, Y.bytes());
        return true;
    }
    cl_mem a = in_dev(0), b = in_dev(1);
    const int64_t nbatch = prod(batch, 0, batch.size());
    if (bb.empty() || prod(bb, 0, bb.size()) == 1) {
        // B is one matrix: A's batch rows stack into one product.
        if (prod(ab, 0, ab.size()) == nbatch) {
            sgemm(false, false, nbatch * M, N, K, 1.0f, a, 0, K, b, 0, N, 0.0f, y, 0, N);
            apply_act(y, Y.numel(), act);
            return true;
        }
    }
    // Per batch element: offsets by the broadcast strides.
    std::vector<size_t> ao, bo, co;
    std::vector<float> alphas, betas;
    auto strides = [&](const inf::Shape& s, int64_t mat) {
        std::vector<int64_t> st(br, 0);
        int64_t acc = mat;
        for (size_t i = s.size(); i-- > 0;) {
            const size_t bi = i + br - s.size();
            st[bi] = s[i] == 1 ? 0 : acc;
            acc *= s[i];
        }
        return st;
    };
    const auto ast = strides(ab, M * K), bst = strides(bb, K * N);
    for (int64_t i = 0; i < nbatch; ++i) {
        int64_t rem = i, oa = 0, ob = 0;
        for (size_t dd = br; dd-- > 0;) {
            const int64_t c = rem % batch[dd];
            rem /= batch[dd];
            oa += c * ast[dd];
            ob += c * bst[dd];
        }
        ao.push_back(static_cast<size_t>(oa));
        bo.push_back(static_cast<size_t>(ob));
        co.push_back(static_cast<size_t>(i * M * N));
        alphas.push_back(1.0f);
        betas.push_back(0.0f);
    }
    cl_command_queue q = d.queue;
    blast_check(CLBlastSgemmBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, static_cast<size_t>(M),
                                    static_cast<size_t>(N), static_cast<size_t>(K), alphas.data(), a, ao.data(), static_cast<size_t>(K),
                                    b, bo.data(), static_cast<size_t>(N), betas.data(), y, co.data(), static_cast<size_t>(N),
                                    static_cast<size_t>(nbatch), &q, nullptr),
                "SgemmBatched");
    flops += 2.0 * static_cast<double>(nbatch) * M * N * K;
    apply_act(y, Y.numel(), act);
    return true;
}

bool Run::unary() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    const std::string& op = n.op_type;
    ActSpec a;
    if (op == "Relu") a.code = kActRelu;
    else if (op == "Sigmoid") a.code = kActSigmoid;
    else if (op == "Tanh") a.code = kActTanh;
    else if (op == "HardSwish") a.code = kActHardSwish;
    else if (op == "LeakyRelu") a = {kActLeaky, n.attrs.get_float("alpha", 0.01f), 0};
    else if (op == "HardSigmoid") a = {kActHardSigmoid, n.attrs.get_float("alpha", 0.2f), n.attrs.get_float("beta", 0.5f)};
    else if (op == "Clip") {
        a.code = kActClip;
        if (n.opset < 11) {
            a.a = n.attrs.get_float("min", -3.402823e38f);
            a.b = n.attrs.get_float("max", 3.402823e38f);
        } else {
            a.a = scalar_input(1, -INFINITY);
            a.b = scalar_input(2, INFINITY);
        }
    } else {
        return false;
    }
    const Val& X = in(0);
    Val& Y = out(0, X.shape);
    launch(kUnary, Y.numel(), in_dev(0), Y.buf.get(), cl_long{Y.numel()}, a.code, cl_float{a.a}, cl_float{a.b});
    return true;
}

bool Run::binary() {
    const inf::Node& n = *node;
    if (!all_float_inputs() || n.opset < 7) return false;  // opset < 7: the legacy broadcast attribute
    const Val& A = in(0);
    const Val& B = in(1);
    const inf::Shape ys = inf::broadcast_shapes(A.shape, B.shape, n);
    if (ys.size() > 8) return false;
    const cl_int op = n.op_type == "Add" ? 0 : n.op_type == "Sub" ? 1 : n.op_type == "Mul" ? 2 : 3;
    auto strides = [&](const inf::Shape& s) {
        std::vector<int64_t> st(ys.size(), 0);
        int64_t acc = 1;
        for (size_t i = s.size(); i-- > 0;) {
            st[i + ys.size() - s.size()] = s[i] == 1 ? 0 : acc;
            acc *= s[i];
        }
        return st;
    };
    const cl_int plain = A.shape == ys && B.shape == ys ? 1 : 0;
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    launch(kBinary, Y.numel(), in_dev(0), in_dev(1), Y.buf.get(), cl_long{Y.numel()}, op, i32(static_cast<int64_t>(ys.size())),
           long8(ys), long8(strides(A.shape)), long8(strides(B.shape)), plain);
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
    Geo g;
    if (!geo(X.shape, kernel, n.attrs.get_int("ceil_mode", 0) != 0, is_max || n.opset >= 19, &g)) return false;
    const bool count_pad = n.attrs.get_int("count_include_pad", 0) != 0;
    inf::Shape ys{X.shape[0], X.shape[1]};
    if (X.shape.size() == 4) ys.push_back(g.OH);
    ys.push_back(g.OW);
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    launch(kPool, Y.numel(), in_dev(0), Y.buf.get(), cl_long{Y.numel()}, i32(g.H), i32(g.W), i32(g.OH), i32(g.OW), i32(g.KH),
           i32(g.KW), i32(g.sh), i32(g.sw), i32(g.phb), i32(g.pwb), i32(g.phe), i32(g.pwe), i32(g.dh), i32(g.dw),
           cl_int{is_max ? 0 : 1}, cl_int{count_pad ? 1 : 0});
    return true;
}

bool Run::global_avg() {
    if (!all_float_inputs()) return false;
    const Val& X = in(0);
    need(X.shape.size() >= 3, "input " + inf::shape_str(X.shape) + " needs rank >= 3");
    inf::Shape ys{X.shape[0], X.shape[1]};
    ys.resize(X.shape.size(), 1);
    const int64_t planes = X.shape[0] * X.shape[1], len = prod(X.shape, 2, X.shape.size());
    Val& Y = out(0, ys);
    if (Y.numel() == 0) return true;
    if (len == 0) return false;  // a mean of nothing: whatever the CPU operator does
    launch(kPlaneMean, planes, in_dev(0), Y.buf.get(), cl_long{planes}, cl_long{len});
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
    auto it = p.bn_cache.find(index);
    std::pair<Buf, Buf> ss;
    if (it != p.bn_cache.end()) {
        ss = it->second;
        need(ss.first != nullptr || C == 0, "internal: batch normalisation parameters missing");
    } else {
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
            scale[c] = static_cast<float>(s);
            shift[c] = static_cast<float>(t[1].data<float>()[c] - t[2].data<float>()[c] * s);
        }
        if (C > 0) {
            ss.first = make_buf(d, scale.size() * sizeof(float), nullptr, where());
            ss.second = make_buf(d, shift.size() * sizeof(float), nullptr, where());
            cl_check(clEnqueueWriteBuffer(d.queue, ss.first.get(), CL_TRUE, 0, scale.size() * sizeof(float), scale.data(), 0, nullptr,
                                          nullptr),
                     "clEnqueueWriteBuffer(scale)");
            cl_check(clEnqueueWriteBuffer(d.queue, ss.second.get(), CL_TRUE, 0, shift.size() * sizeof(float), shift.data(), 0,
                                          nullptr, nullptr),
                     "clEnqueueWriteBuffer(shift)");
            if (!constant) {
                copies_in += 2;
                bytes_in += 2 * scale.size() * sizeof(float);
            }
        }
        if (constant) p.bn_cache[index] = ss;
    }
    Val& Y = out(0, X.shape);
    if (Y.numel() == 0) return true;
    launch(kChannelAffine, Y.numel(), in_dev(0), ss.first.get(), ss.second.get(), Y.buf.get(), cl_long{Y.numel()}, cl_long{C},
           cl_long{prod(X.shape, 2, X.shape.size())});
    return true;
}

bool Run::softmax() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    const Val& X = in(0);
    const int64_t r = static_cast<int64_t>(X.shape.size());
    if (r == 0) return false;
    const int64_t axis = inf::normalize_axis(n.attrs.get_int("axis", n.opset < 13 ? 1 : -1), r, n);
    int64_t outer = prod(X.shape, 0, static_cast<size_t>(axis)), len, inner;
    if (n.opset < 13) {
        len = prod(X.shape, static_cast<size_t>(axis), X.shape.size());
        inner = 1;
    } else {
        len = X.shape[static_cast<size_t>(axis)];
        inner = prod(X.shape, static_cast<size_t>(axis) + 1, X.shape.size());
    }
    Val& Y = out(0, X.shape);
    if (Y.numel() == 0) return true;
    launch(kSoftmax, outer * inner, in_dev(0), Y.buf.get(), cl_long{outer * inner}, cl_long{len}, cl_long{inner});
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
    const int64_t outer = prod(ys, 0, static_cast<size_t>(axis)), inner = prod(ys, static_cast<size_t>(axis) + 1, ys.size());
    const size_t dst_row = static_cast<size_t>(ys[static_cast<size_t>(axis)] * inner) * sizeof(float);
    size_t off = 0;
    for (const auto& [i, shape] : shapes) {
                const size_t row = static_cast<size_t>(shape[static_cast<size_t>(axis)] * inner) * sizeof(float);
        if (row > 0 && outer > 0) {
            cl_mem src = in_dev(i);
            const size_t so[3] = {0, 0, 0}, dof[3] = {off, 0, 0}, region[3] = {row, static_cast<size_t>(outer), 1};
            cl_check(clEnqueueCopyBufferRect(d.queue, src, Y.buf.get(), so, dof, region, row, 0, dst_row, 0, 0, nullptr, nullptr),
                     "clEnqueueCopyBufferRect");
        }
        off += row;
    }
    return true;
}

bool Run::transpose() {
    const inf::Node& n = *node;
    if (!all_float_inputs()) return false;
    const Val& X = in(0);
    const size_t r = X.shape.size();
    if (r > 8) return false;
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
    if (r == 0) {
        cl_check(clEnqueueCopyBuffer(d.queue, in_dev(0), Y.buf.get(), 0, 0, sizeof(float), 0, nullptr, nullptr), "clEnqueueCopyBuffer");
        return true;
    }
    launch(kGather, Y.numel(), in_dev(0), Y.buf.get(), cl_long{Y.numel()}, i32(static_cast<int64_t>(r)), long8(ys), long8(st),
           cl_float{1.0f});
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
        else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") done = binary();
        else if (op == "MaxPool" || op == "AveragePool") done = pool();
        else if (op == "GlobalAveragePool") done = global_avg();
        else if (op == "BatchNormalization") done = batchnorm();
        else if (op == "Softmax") done = softmax();
        else if (op == "Concat") done = concat();
        else if (op == "Transpose") done = transpose();
        else if (op == "Flatten" || op == "Reshape" || op == "Squeeze" || op == "Unsqueeze" || op == "Identity" || op == "Dropout")
            done = views();
        else done = unary();
    }
    if (!done) {
        opencl::log(1, "opencl inference: " + node->where() + " runs on the host (an attribute, type or shape the kernels lack)");
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
                       ") is not implemented by the OpenCL backend");
        if (input_count > 0 && input_types == nullptr) return why("input types missing");
        for (uint32_t i = 0; i < input_count; ++i) {
            const int32_t t = input_types[i];
            if (i > 0 && info->types == Types::first_float) continue;
            if (t != 0 && t != static_cast<int32_t>(inf::DType::f32))
                return why(std::string("input ") + std::to_string(i) + " of " + op_type + " is " +
                           inf::dtype_name(static_cast<inf::DType>(t)) + "; the OpenCL backend runs float32 only");
        }
        return 1;
    } catch (...) {
        return why("internal error");
    }
}

cpn_status prepare_impl(cpn_device_handle* device, const void* model, uint64_t size, const char* options_json, cpn_prepared** out,
                        cpn_msg* err) {
    if (out == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl infer prepare: out is NULL");
    *out = nullptr;
    auto p = std::make_unique<Prepared>();
    if (!device_view(device, &p->dev)) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl infer prepare: device handle is NULL");
    if (model == nullptr && size > 0) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl infer prepare: model is NULL");
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
            }
        }
    } catch (const inf::Error& e) {
        set_msg(err, std::string("opencl: ") + e.what());
        return status_of(e);
    }
    cl_program prog = nullptr;
    if (cpn_status st = build_program(p->dev, &prog, err); st != CPN_OK) return st;
    for (int k = 0; k < kKernelCount; ++k) {
        cl_int rc = CL_SUCCESS;
        p->kernels[k] = clCreateKernel(prog, kKernelNames[k], &rc);
        if (rc != CL_SUCCESS) return cl_fail(err, rc, std::string("clCreateKernel(") + kKernelNames[k] + ") on " + p->dev.label);
    }
    const inf::Graph& g = p->model.graph;
    // Initializers: float32 ones uploaded now, once; all keep their host copy.
    try {
        for (const auto& [name, t] : g.initializers) {
            Val v;
            v.dtype = t.dtype;
            v.shape = t.shape;
            v.host = t;
            if (v.is_float() && t.numel() > 0) {
                v.buf = make_buf(p->dev, t.bytes(), nullptr, "initializer '" + name + "'");
                cl_check(clEnqueueWriteBuffer(p->dev.queue, v.buf.get(), CL_TRUE, 0, t.bytes(), t.raw(), 0, nullptr, nullptr),
                         "clEnqueueWriteBuffer(initializer '" + name + "')");
            }
            p->consts[name] = std::move(v);
        }
    } catch (const ClError& e) {
        return fail(err, e.status, "opencl: %s on %s", e.what(), p->dev.label.c_str());
    } catch (const inf::Error& e) {
        set_msg(err, std::string("opencl: ") + e.what());
        return status_of(e);
    }
    // Last readers: a value nobody reads after node i (and that is no output) is dropped then.
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
    if (p == nullptr || alloc == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl infer run: no prepared model or no allocator");
    if (input_count > 0 && inputs == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl infer run: inputs is NULL");
    if (ctl != nullptr && ctl->struct_size < sizeof(cpn_run_control))
        return fail(err, CPN_E_INVALID_ARGUMENT, "opencl infer run: cpn_run_control is smaller than this plugin's (%zu bytes)",
                    sizeof(cpn_run_control));
    if (result_json != nullptr && result_cap > 0) result_json[0] = '\0';
    std::lock_guard<std::mutex> lock(p->mu);
    const uint64_t t0 = monotonic_ns();
    Run r(*p);
    p->mem.live = p->mem.peak = 0;
    const inf::Graph& g = p->model.graph;
    try {
        // The inputs, by name, as host values (copied to the device when a device operator reads them).
        for (uint32_t i = 0; i < input_count; ++i) {
            const cpn_tensor& t = inputs[i];
            const std::string name = t.name != nullptr ? t.name : "";
            Val v;
            v.dtype = static_cast<inf::DType>(t.dtype);
            if (t.rank > 64 || (t.rank > 0 && t.dims == nullptr))
                return fail(err, CPN_E_INVALID_ARGUMENT, "opencl: input '%s': bad rank or dims", name.c_str());
            v.shape.assign(t.dims, t.dims + t.rank);
            if (!inf::dtype_supported(v.dtype) || inf::checked_numel(v.shape, p->max_elements) < 0 || v.bytes() != t.bytes ||
                (t.bytes > 0 && t.data == nullptr))
                return fail(err, CPN_E_INVALID_ARGUMENT, "opencl: input '%s': its type, shape and byte count disagree", name.c_str());
            bool declared = false;
            for (const inf::ValueInfo& vi : g.inputs)
                if (vi.name == name) {
                    declared = true;
                    if (vi.dtype != inf::DType::undefined && vi.dtype != v.dtype)
                        return fail(err, CPN_E_INVALID_ARGUMENT, "opencl: input '%s' is %s, the segment declares %s", name.c_str(),
                                    inf::dtype_name(v.dtype), inf::dtype_name(vi.dtype));
                }
            if (!declared) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl: '%s' is not an input of the segment", name.c_str());
            if (r.env.count(name)) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl: input '%s' given twice", name.c_str());
            v.host.dtype = v.dtype;
            v.host.shape = v.shape;
            v.host.mem = std::shared_ptr<void>(t.data, [](void*) {});
            v.host.capacity = t.bytes;
            r.env[name] = std::move(v);
        }
        for (const inf::ValueInfo& vi : g.inputs)
            if (!r.env.count(vi.name)) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl: segment input '%s' is missing", vi.name.c_str());
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            if (ctl != nullptr && ctl->cancel != nullptr && *ctl->cancel != 0)
                return fail(err, CPN_E_CANCELLED, "opencl: cancelled before %s", g.nodes[i].where().c_str());
            if (ctl != nullptr && ctl->deadline_ns != 0 && monotonic_ns() >= ctl->deadline_ns)
                return fail(err, CPN_E_DEADLINE_EXCEEDED, "opencl: deadline passed before %s", g.nodes[i].where().c_str());
            r.run_node(i);
        }
        r.node = nullptr;
        for (const inf::ValueInfo& o : g.outputs) {
            const Val* v = r.find(o.name);
            if (v == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "opencl: output '%s' was not produced", o.name.c_str());
            const size_t bytes = v->bytes();
            void* dst = alloc(user, o.name.c_str(), static_cast<int32_t>(v->dtype), static_cast<uint32_t>(v->shape.size()),
                              v->shape.data(), bytes);
            if (dst == nullptr) return fail(err, CPN_E_OUT_OF_MEMORY, "opencl: the host gave no memory for output '%s'", o.name.c_str());
            if (bytes == 0) continue;
            if (v->buf) {
                cl_check(clEnqueueReadBuffer(p->dev.queue, v->buf.get(), CL_TRUE, 0, bytes, dst, 0, nullptr, nullptr),
                         "clEnqueueReadBuffer(output '" + o.name + "')");
                ++r.copies_out;
                r.bytes_out += bytes;
            } else {
                std::memcpy(dst, v->host.raw(), bytes);
            }
        }
        cl_check(clFinish(p->dev.queue), "clFinish");
    } catch (const ClError& e) {
        clFinish(p->dev.queue);
        return fail(err, e.status, "opencl: %s: %s on %s", r.where().c_str(), e.what(), p->dev.label.c_str());
    } catch (const inf::Error& e) {
        clFinish(p->dev.queue);
        const std::string m = e.what();
        // Messages of the host fallback already name the node.
        set_msg(err, "opencl: " + (r.node != nullptr && m.find(r.node->name) == std::string::npos ? r.where() + ": " + m : m));
        return status_of(e);
    } catch (const std::bad_alloc&) {
        clFinish(p->dev.queue);
        return fail(err, CPN_E_OUT_OF_MEMORY, "opencl: %s: out of host memory", r.where().c_str());
    }
    const double seconds = static_cast<double>(monotonic_ns() - t0) / 1e9;
    if (result_json != nullptr && result_cap > 0) {
        char buf[512];
        const int len = std::snprintf(buf, sizeof buf,
                                      "{\"seconds\":%.6f,\"flops\":%.0f,\"nodes\":%zu,\"host_nodes\":%zu,\"peak_bytes\":%zu,"
                                      "\"copies_in\":%llu,\"copies_out\":%llu,\"copy_bytes_in\":%llu,\"copy_bytes_out\":%llu}",
                                      seconds, r.flops, g.nodes.size(), r.host_nodes, p->mem.peak,
                                      static_cast<unsigned long long>(r.copies_in), static_cast<unsigned long long>(r.copies_out),
                                      static_cast<unsigned long long>(r.bytes_in), static_cast<unsigned long long>(r.bytes_out));
        if (len > 0 && static_cast<uint64_t>(len) < result_cap) std::memcpy(result_json, buf, static_cast<size_t>(len) + 1);
    }
    return CPN_OK;
}

/* The ABI wrappers: nothing thrown crosses into the host. */
cpn_status prepare(cpn_device_handle* device, const void* model, uint64_t size, const char* options_json, cpn_prepared** out,
                   cpn_msg* err) {
    return plugin::guarded(err, "opencl infer prepare", [&] { return prepare_impl(device, model, size, options_json, out, err); });
}

cpn_status run(cpn_prepared* pp, const cpn_tensor* inputs, uint32_t input_count, cpn_tensor_alloc_fn alloc, void* user,
               const cpn_run_control* ctl, char* result_json, uint64_t result_cap, cpn_msg* err) {
    return plugin::guarded(err, "opencl infer run",
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

}  // namespace cpn::opencl::infer_ext
