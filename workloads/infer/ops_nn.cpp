// ops_nn.cpp: the neural-network operators: Conv, ConvTranspose, Gemm, MatMul, the pooling
// family, the normalisations, Softmax / LogSoftmax / Hardmax and LRN. The heavy float32 ones go
// through oneDNN where it is installed (onednn.hpp: thick convolutions, every sgemm), else
// OpenBLAS (im2col + sgemm for Conv, sgemm + col2im for ConvTranspose); float16 / bfloat16 run
// through the float32 kernels (converted in and out), float64 through the same templates.
#include <cblas.h>
#include <dlfcn.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <bit>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "arith.hpp"
#include "onednn.hpp"
#include "ops.hpp"

namespace cpn::infer {
namespace {

// ---------------------------------------------------------------------------------------------
// Small helpers

bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }
bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || is_half(t); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }  // a >= 0, b > 0

std::string ints_str(const std::vector<int64_t>& v) { return shape_str(v); }

// Load-time type check: input i (when known) must be one of `ok`.
void check_in_type(const Node& n, size_t i, std::initializer_list<DType> ok) {
    if (i >= n.in_types.size()) return;
    const DType t = n.in_types[i];
    if (t == DType::undefined) return;
    for (DType d : ok)
        if (d == t) return;
    fail_unsupported(n.where() + ": input " + std::to_string(i) + " of type " + dtype_name(t) + " is not supported");
}

[[noreturn]] void unsupported_type(const Node& n, DType t) {
    fail_unsupported(n.where() + ": element type " + std::string(dtype_name(t)) + " is not supported");
}

void require_same_type(const Node& n, const Tensor& a, const Tensor& b, const char* what) {
    if (a.dtype != b.dtype)
        fail(n.where() + ": " + what + " has type " + dtype_name(b.dtype) + ", expected " + dtype_name(a.dtype));
}

Tensor to_f32(const Tensor& t) {
    if (t.dtype == DType::f32) return t;
    Tensor r = make_tensor(DType::f32, t.shape);
    float* o = r.data<float>();
    const int64_t n = t.numel();
    switch (t.dtype) {
        case DType::f16: {
            const uint16_t* s = t.data<uint16_t>();
            for (int64_t i = 0; i < n; ++i) o[i] = half_to_float(s[i]);
            break;
        }
        case DType::bf16: {
            const uint16_t* s = t.data<uint16_t>();
            for (int64_t i = 0; i < n; ++i) o[i] = bf16_to_float(s[i]);
            break;
        }
        default:
            for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(number_at(t, i));
    }
    return r;
}

// dst (allocated, same element count) = src (float32) converted to dst's type.
void store_f32(const Tensor& src, Tensor& dst) {
    const float* s = src.data<float>();
    const int64_t n = src.numel();
    switch (dst.dtype) {
        case DType::f16: {
            uint16_t* o = dst.data<uint16_t>();
            for (int64_t i = 0; i < n; ++i) o[i] = float_to_half(s[i]);
            break;
        }
        case DType::bf16: {
            uint16_t* o = dst.data<uint16_t>();
            for (int64_t i = 0; i < n; ++i) o[i] = float_to_bf16(s[i]);
            break;
        }
        case DType::f32:
            if (n > 0) std::memcpy(dst.raw(), s, static_cast<size_t>(n) * 4);
            break;
        default: fail("store_f32: unexpected type");
    }
}

using RunFn = void (*)(OpContext&);

// Runs `fn` with every float16 / bfloat16 input converted to float32, then converts the
// outputs in `half_outputs` (a bit mask) back to the type of input 0.
void run_via_f32(OpContext& ctx, RunFn fn, uint32_t half_outputs = ~0u) {
    const DType ht = ctx.input(0).dtype;
    std::vector<Tensor> tin(ctx.in.size());
    std::vector<const Tensor*> pin(ctx.in.size(), nullptr);
    for (size_t i = 0; i < ctx.in.size(); ++i) {
        if (ctx.in[i] == nullptr) continue;
        if (is_half(ctx.in[i]->dtype)) {
            tin[i] = to_f32(*ctx.in[i]);
            pin[i] = &tin[i];
        } else {
            pin[i] = ctx.in[i];
        }
    }
    std::vector<Tensor> tout(ctx.out.size());
    OpContext sub{ctx.node, pin, tout, nullptr, ctx.threads};
    fn(sub);
    for (size_t i = 0; i < tout.size(); ++i) {
        if (!tout[i].defined()) continue;
        if (tout[i].dtype == DType::f32 && i < 32 && ((half_outputs >> i) & 1u) != 0) {
            Tensor& o = ctx.alloc_output(i, ht, tout[i].shape);
            store_f32(tout[i], o);
        } else {
            Tensor& o = ctx.alloc_output(i, tout[i].dtype, tout[i].shape);
            if (tout[i].bytes() > 0) std::memcpy(o.raw(), tout[i].raw(), tout[i].bytes());
        }
    }
}

// OpenBLAS is opened on first use (dlopen), not linked. A linked OpenBLAS starts its worker
// threads in its library constructor, before main(): threads without the daemon's blocked
// signal mask, so a SIGTERM meant for the daemon's signal thread would kill the process (and
// every probe child would start a BLAS thread pool for nothing). Opened from a thread that has
// the mask, its threads inherit it. Without the library the products run as plain loops:
// the same results, slower.
struct Blas {
    decltype(&cblas_sgemm) sgemm = nullptr;
    decltype(&cblas_dgemm) dgemm = nullptr;
    decltype(&openblas_set_num_threads) set_threads = nullptr;
};

const Blas& blas() {
    static const Blas b = [] {
        Blas r;
        for (const char* name : {"libopenblas.so.0", "libopenblas.so"}) {
            void* h = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
            if (h == nullptr) continue;
            r.sgemm = reinterpret_cast<decltype(&cblas_sgemm)>(::dlsym(h, "cblas_sgemm"));
            r.dgemm = reinterpret_cast<decltype(&cblas_dgemm)>(::dlsym(h, "cblas_dgemm"));
            r.set_threads = reinterpret_cast<decltype(&openblas_set_num_threads)>(::dlsym(h, "openblas_set_num_threads"));
            if (r.sgemm != nullptr && r.dgemm != nullptr) break;
            r = Blas{};
        }
        return r;
    }();
    return b;
}

// The threads the products use from now on. Global, as OpenBLAS's own setting is: the
// batch-parallel convolution sets 1 before its workers each run single-threaded products.
std::atomic<int> g_gemm_threads{1};

// OpenBLAS's thread count is global; set it only when it changes.
void blas_threads(int t) {
    static std::atomic<int> current{-1};
    t = std::max(1, t);
    g_gemm_threads.store(t);
    if (current.load() != t && blas().set_threads != nullptr) {
        blas().set_threads(t);
        current.store(t);
    }
}

// C = alpha * op(A) op(B) + beta * C with leading dimensions, when OpenBLAS is not there.
template <class T>
void gemm_loops(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
                T beta, T* C, int64_t ldc) {
    std::vector<T> acc(static_cast<size_t>(N));
    for (int64_t i = 0; i < M; ++i) {
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t k = 0; k < K; ++k) {
            const T a = ta ? A[k * lda + i] : A[i * lda + k];
            for (int64_t j = 0; j < N; ++j) acc[j] += a * (tb ? B[j * ldb + k] : B[k * ldb + j]);
        }
        for (int64_t j = 0; j < N; ++j)
            C[i * ldc + j] = alpha * acc[j] + (beta == T(0) ? T(0) : beta * C[i * ldc + j]);
    }
}

void check_blas_dim(int64_t v) {
    if (v > INT_MAX) fail_unsupported("matrix dimension " + std::to_string(v) + " exceeds the BLAS interface's int range");
}

// Row-major C[M,N] = alpha * op(A) * op(B) + beta * C.
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
          T beta, T* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
        return;
    }
    check_blas_dim(M);
    check_blas_dim(N);
    check_blas_dim(K);
    check_blas_dim(lda);
    check_blas_dim(ldb);
    check_blas_dim(ldc);
    if constexpr (std::is_same_v<T, float>) {
        // oneDNN's sgemm first: one OpenMP team for the convolutions and the products (onednn.hpp)
        if (dnnl_sgemm_f32(ta, tb, M, N, K, alpha, A, std::max<int64_t>(lda, 1), B, std::max<int64_t>(ldb, 1), beta, C,
                           std::max<int64_t>(ldc, 1), g_gemm_threads.load()))
            return;
    }
    const auto TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    if (blas().sgemm == nullptr) {
        gemm_loops(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if constexpr (std::is_same_v<T, float>) {
        blas().sgemm(CblasRowMajor, TA, TB, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
                    static_cast<int>(std::max<int64_t>(lda, 1)), B, static_cast<int>(std::max<int64_t>(ldb, 1)), beta, C,
                    static_cast<int>(std::max<int64_t>(ldc, 1)));
    } else {
        blas().dgemm(CblasRowMajor, TA, TB, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
                    static_cast<int>(std::max<int64_t>(lda, 1)), B, static_cast<int>(std::max<int64_t>(ldb, 1)), beta, C,
                    static_cast<int>(std::max<int64_t>(ldc, 1)));
    }
}

// Plain loop for the integer types (and anything BLAS lacks): C = alpha*op(A)op(B) + beta*C.
// Integers (arith.hpp): the products and sums wrap; with alpha 1 and beta 0 or 1 (MatMul, and
// Gemm's defaults) the result is exact integer arithmetic, wrapping; another alpha or beta
// scales in double and converts back saturating.
template <class T>
void gemm_plain(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const T* A, const T* B, double beta,
                T* C) {
    std::vector<T> acc(static_cast<size_t>(std::max<int64_t>(N, 0)));
    const bool exact = alpha == 1.0 && (beta == 0.0 || beta == 1.0);
    for (int64_t i = 0; i < M; ++i) {
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t k = 0; k < K; ++k) {
            const T a = ta ? A[k * M + i] : A[i * K + k];
            if (tb) {
                for (int64_t j = 0; j < N; ++j) acc[j] = wadd(acc[j], wmul(a, B[j * K + k]));
            } else {
                const T* brow = B + k * N;
                for (int64_t j = 0; j < N; ++j) acc[j] = wadd(acc[j], wmul(a, brow[j]));
            }
        }
        T* c = C + i * N;
        if (exact && beta == 0.0) {
            for (int64_t j = 0; j < N; ++j) c[j] = acc[j];
        } else if (exact) {
            for (int64_t j = 0; j < N; ++j) c[j] = wadd(c[j], acc[j]);
        } else {
            for (int64_t j = 0; j < N; ++j)
                c[j] = convert<T>(alpha * static_cast<double>(acc[j]) + (beta == 0.0 ? 0.0 : beta * static_cast<double>(c[j])));
        }
    }
}

// p[i] = exp(p[i]) over an array. float: Cephes' expf (range reduction by ln 2, a degree-6
// polynomial, relative error ~2e-7) four lanes at a time with SSE2 (the compiler does not
// vectorise the clamps itself under -ftrapping-math); inputs below -87 give exp(-87) ~ 1.6e-38.
inline float exp_poly(float x, float t) {
    x = x - t * 0.693359375f + t * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    return y * x * x + x + 1.0f;
}
inline float vexp1(float x) {
    if (!(x == x)) return x;  // NaN (the clamps below would pass it on to the int conversion)
    x = std::min(std::max(x, -87.0f), 88.0f);
    const float t = std::nearbyint(x * 1.44269504088896341f);
    return exp_poly(x, t) * std::bit_cast<float>(static_cast<uint32_t>(static_cast<int32_t>(t) + 127) << 23);
}
void exp_inplace(float* p, int64_t n) {
    int64_t i = 0;
#if defined(__SSE2__)
    const __m128 lo = _mm_set1_ps(-87.0f), hi = _mm_set1_ps(88.0f), l2e = _mm_set1_ps(1.44269504088896341f);
    const __m128 c1 = _mm_set1_ps(0.693359375f), c2 = _mm_set1_ps(-2.12194440e-4f), one = _mm_set1_ps(1.0f);
    const __m128 p0 = _mm_set1_ps(1.9875691500e-4f), p1 = _mm_set1_ps(1.3981999507e-3f), p2 = _mm_set1_ps(8.3334519073e-3f),
                 p3 = _mm_set1_ps(4.1665795894e-2f), p4 = _mm_set1_ps(1.6666665459e-1f), p5 = _mm_set1_ps(5.0000001201e-1f);
    for (; i + 4 <= n; i += 4) {
        __m128 x = _mm_loadu_ps(p + i);
        x = _mm_min_ps(_mm_max_ps(x, lo), hi);
        const __m128i k = _mm_cvtps_epi32(_mm_mul_ps(x, l2e));  // round to nearest
        const __m128 t = _mm_cvtepi32_ps(k);
        x = _mm_sub_ps(_mm_sub_ps(x, _mm_mul_ps(t, c1)), _mm_mul_ps(t, c2));
        __m128 y = p0;
        y = _mm_add_ps(_mm_mul_ps(y, x), p1);
        y = _mm_add_ps(_mm_mul_ps(y, x), p2);
        y = _mm_add_ps(_mm_mul_ps(y, x), p3);
        y = _mm_add_ps(_mm_mul_ps(y, x), p4);
        y = _mm_add_ps(_mm_mul_ps(y, x), p5);
        y = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_mul_ps(y, x), x), x), one);
        const __m128 scale = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(k, _mm_set1_epi32(127)), 23));
        _mm_storeu_ps(p + i, _mm_mul_ps(y, scale));
    }
#endif
    for (; i < n; ++i) p[i] = vexp1(p[i]);
}
void exp_inplace(double* p, int64_t n) {
    for (int64_t i = 0; i < n; ++i) p[i] = std::exp(p[i]);
}

// Sum and max with eight partial results, so the loops vectorise without -ffast-math.
template <class T>
T vsum(const T* p, int64_t n) {
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
    T s = 0;
    for (; i < n; ++i) s += p[i];
    return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
inline float vmax(const float* p, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
    int64_t i = 0;
#if defined(__SSE2__)
    __m128 a = _mm_set1_ps(m), b = a;
    for (; i + 8 <= n; i += 8) {
        a = _mm_max_ps(a, _mm_loadu_ps(p + i));
        b = _mm_max_ps(b, _mm_loadu_ps(p + i + 4));
    }
    alignas(16) float lanes[4];
    _mm_store_ps(lanes, _mm_max_ps(a, b));
    for (float v : lanes) m = m > v ? m : v;
#endif
    for (; i < n; ++i) m = m > p[i] ? m : p[i];
    return m;
}
template <class T>
T vmax(const T* p, int64_t n) {
    T acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = -std::numeric_limits<T>::infinity();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] = acc[j] > p[i + j] ? acc[j] : p[i + j];
    T m = -std::numeric_limits<T>::infinity();
    for (; i < n; ++i) m = m > p[i] ? m : p[i];
    for (int j = 0; j < 8; ++j) m = m > acc[j] ? m : acc[j];
    return m;
}

// ---------------------------------------------------------------------------------------------
// Fused activations (Conv, Gemm, MatMul)

Act parse_act(const Node& n) {
    Act act;
    const std::string& s = n.fused_activation;
    if (s.empty()) return act;
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
        const size_t p = s.find(':', start);
        parts.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
        if (p == std::string::npos) break;
        start = p + 1;
    }
    const std::string& name = parts[0];
    act.a = n.fused_alpha;
    act.b = n.fused_beta;
    auto param = [&](size_t i, float& dst) {
        if (parts.size() > i && !parts[i].empty()) {
            char* end = nullptr;
            const float v = std::strtof(parts[i].c_str(), &end);
            if (end == parts[i].c_str()) fail(n.where() + ": bad fused activation parameter '" + parts[i] + "'");
            dst = v;
        }
    };
    param(1, act.a);
    param(2, act.b);
    if (name == "Relu") act.k = Act::relu;
    else if (name == "LeakyRelu") act.k = Act::leaky;
    else if (name == "Clip") act.k = Act::clip;
    else if (name == "Sigmoid") act.k = Act::sigmoid;
    else if (name == "HardSigmoid") act.k = Act::hardsigmoid;
    else if (name == "Tanh") act.k = Act::tanh_;
    else if (name == "HardSwish") act.k = Act::hardswish;
    else fail_unsupported(n.where() + ": fused activation '" + s + "' is not supported");
    return act;
}

// p[i] = act(p[i] + bias) over n contiguous elements.
template <class T>
void bias_act(T* p, int64_t n, T bias, const Act& act) {
    const T a = static_cast<T>(act.a), b = static_cast<T>(act.b);
    switch (act.k) {
        case Act::none:
            if (bias != T(0))
                for (int64_t i = 0; i < n; ++i) p[i] += bias;
            break;
        case Act::relu:
            for (int64_t i = 0; i < n; ++i) {
                const T v = p[i] + bias;
                p[i] = v < T(0) ? T(0) : v;  // NaN stays NaN, as in the Relu operator and oneDNN
            }
            break;
        case Act::leaky:
            for (int64_t i = 0; i < n; ++i) {
                const T v = p[i] + bias;
                p[i] = v < T(0) ? v * a : v;
            }
            break;
        case Act::clip:
            for (int64_t i = 0; i < n; ++i) {
                const T v = p[i] + bias;
                p[i] = std::min(std::max(v, a), b);
            }
            break;
        case Act::sigmoid:
            for (int64_t i = 0; i < n; ++i) p[i] = -(p[i] + bias);
            exp_inplace(p, n);
            for (int64_t i = 0; i < n; ++i) p[i] = T(1) / (T(1) + p[i]);
            break;
        case Act::hardsigmoid:
            for (int64_t i = 0; i < n; ++i) p[i] = std::max(T(0), std::min(T(1), a * (p[i] + bias) + b));
            break;
        case Act::tanh_:
            for (int64_t i = 0; i < n; ++i) p[i] = std::tanh(p[i] + bias);
            break;
        case Act::hardswish:
            for (int64_t i = 0; i < n; ++i) {
                const T v = p[i] + bias;
                p[i] = v * std::max(T(0), std::min(T(1), v / T(6) + T(0.5)));
            }
            break;
    }
}

// ---------------------------------------------------------------------------------------------
// Geometry of a convolution / pooling window (Geo, ops.hpp)

std::vector<int64_t> attr_ints_sized(const Node& n, const char* name, size_t count, int64_t dflt, int64_t min_value) {
    std::vector<int64_t> v = n.attrs.get_ints(name, std::vector<int64_t>(count, dflt));
    if (v.size() != count)
        fail(n.where() + ": attribute '" + name + "' has " + std::to_string(v.size()) + " values, expected " +
             std::to_string(count) + " for the input's spatial rank");
    for (int64_t x : v)
        if (x < min_value)
            fail(n.where() + ": attribute '" + name + "' = " + ints_str(v) + " must be >= " + std::to_string(min_value));
    return v;
}

void check_auto_pad(const Node& n) {
    const std::string ap = n.attrs.get_string("auto_pad", "NOTSET");
    if (ap != "NOTSET" && ap != "SAME_UPPER" && ap != "SAME_LOWER" && ap != "VALID" && !ap.empty())
        fail_unsupported(n.where() + ": auto_pad '" + ap + "' is not supported");
}

}  // namespace

// Output sizes and pads of Conv / pooling from the input shape [N, C, D1...] and the kernel.
Geo make_geo(const Node& n, const Shape& xs, const std::vector<int64_t>& kernel, bool ceil_mode, bool use_dilations) {
    if (xs.size() < 3) fail(n.where() + ": input of shape " + shape_str(xs) + " needs rank >= 3 ([N, C, spatial...])");
    const size_t r = xs.size() - 2;
    if (r > 3) fail_unsupported(n.where() + ": " + std::to_string(r) + "-D spatial inputs are not supported (at most 3-D)");
    if (kernel.size() != r)
        fail(n.where() + ": kernel_shape " + ints_str(kernel) + " does not match the input's spatial rank " + std::to_string(r) +
             " (input " + shape_str(xs) + ")");
    for (int64_t k : kernel)
        if (k < 1) fail(n.where() + ": kernel_shape " + ints_str(kernel) + " must be positive");
    const auto strides = attr_ints_sized(n, "strides", r, 1, 1);
    const auto dil = use_dilations ? attr_ints_sized(n, "dilations", r, 1, 1) : std::vector<int64_t>(r, 1);
    auto pads = attr_ints_sized(n, "pads", 2 * r, 0, 0);
    std::string ap = n.attrs.get_string("auto_pad", "NOTSET");
    if (ap.empty()) ap = "NOTSET";
    Geo g;
    g.r = static_cast<int>(r);
    const size_t off = 3 - r;
    for (size_t i = 0; i < r; ++i) {
        const int64_t in = xs[2 + i], k = kernel[i], s = strides[i], d = dil[i];
        if (d > 1 && k > (INT64_MAX / 4) / d) fail(n.where() + ": kernel extent too large");
        const int64_t ek = (k - 1) * d + 1;
        int64_t out, pb = pads[i], pe = pads[i + r];
        if (ap == "NOTSET") {
            const int64_t num = in + pb + pe - ek;
            if (num < 0)
                fail(n.where() + ": input " + shape_str(xs) + " with pads " + ints_str(pads) + " is smaller than the kernel extent " +
                     std::to_string(ek) + " along spatial axis " + std::to_string(i));
            out = (ceil_mode ? ceil_div(num, s) : num / s) + 1;
        } else if (ap == "VALID") {
            pb = pe = 0;
            const int64_t num = in - ek;
            if (num < 0)
                fail(n.where() + ": input " + shape_str(xs) + " is smaller than the kernel extent " + std::to_string(ek) +
                     " along spatial axis " + std::to_string(i) + " (auto_pad VALID)");
            out = num / s + 1;
        } else if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
            out = ceil_div(in, s);
            const int64_t total = std::max<int64_t>(0, (out - 1) * s + ek - in);
            if (ap == "SAME_UPPER") {
                pb = total / 2;
                pe = total - pb;
            } else {
                pe = total / 2;
                pb = total - pe;
            }
        } else {
            fail_unsupported(n.where() + ": auto_pad '" + ap + "' is not supported");
        }
        g.in[off + i] = in;
        g.out[off + i] = out;
        g.k[off + i] = k;
        g.s[off + i] = s;
        g.d[off + i] = d;
        g.pb[off + i] = pb;
        g.pe[off + i] = pe;
    }
    return g;
}

namespace {

Shape out_shape(int64_t N, int64_t C, const Geo& g) {
    Shape s{N, C};
    for (int i = 3 - g.r; i < 3; ++i) s.push_back(g.out[i]);
    return s;
}

// The outputs o in [0, count) whose position o*s + off falls inside [0, size): [lo, hi).
void valid_range(int64_t off, int64_t s, int64_t size, int64_t count, int64_t& lo, int64_t& hi) {
    lo = off >= 0 ? 0 : ceil_div(-off, s);
    hi = size - 1 - off < 0 ? 0 : (size - 1 - off) / s + 1;
    hi = std::min(hi, count);
    lo = std::min(lo, hi);
}

// ---------------------------------------------------------------------------------------------
// Conv

// col[(c, a, b, e), o] = x[c, od*s0 - p0 + a*d0, ...] (0 outside), for Cg channels.
template <class T>
void im2col(const T* x, T* col, int64_t Cg, const Geo& g, int threads) {
    const int64_t K = g.k_size(), O = g.out_size(), rows = Cg * K;
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(O, 1));
    parallel_for(threads, rows, grain, [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
            int64_t t = row;
            const int64_t e = t % g.k[2];
            t /= g.k[2];
            const int64_t b = t % g.k[1];
            t /= g.k[1];
            const int64_t a = t % g.k[0];
            const int64_t c = t / g.k[0];
            const T* xc = x + c * ID * IH * IW;
            T* dst = col + row * O;
            const int64_t offw = e * g.d[2] - g.pb[2], sw = g.s[2];
            int64_t lo, hi;
            valid_range(offw, sw, IW, OW, lo, hi);
            for (int64_t od = 0; od < OD; ++od) {
                const int64_t id = od * g.s[0] - g.pb[0] + a * g.d[0];
                for (int64_t oh = 0; oh < OH; ++oh) {
                    const int64_t ih = oh * g.s[1] - g.pb[1] + b * g.d[1];
                    T* drow = dst + (od * OH + oh) * OW;
                    if (id < 0 || id >= ID || ih < 0 || ih >= IH) {
                        std::fill(drow, drow + OW, T(0));
                        continue;
                    }
                    const T* src = xc + (id * IH + ih) * IW;
                    for (int64_t ow = 0; ow < lo; ++ow) drow[ow] = T(0);
                    if (sw == 1) {
                        for (int64_t ow = lo; ow < hi; ++ow) drow[ow] = src[ow + offw];
                    } else {
                        for (int64_t ow = lo; ow < hi; ++ow) drow[ow] = src[ow * sw + offw];
                    }
                    for (int64_t ow = hi; ow < OW; ++ow) drow[ow] = T(0);
                }
            }
        }
    });
}

// Depthwise (group == C): a direct loop per output plane.
template <class T>
void conv_depthwise(const T* x, const T* w, const T* bias, T* y, int64_t N, int64_t C, int64_t M, const Geo& g,
                    const Act& act, int threads) {
    const int64_t mult = M / C, K = g.k_size(), Isz = g.in_size(), Osz = g.out_size();
    const int64_t IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(Osz * K, 1));
    parallel_for(threads, N * M, grain, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            const int64_t n = p / M, m = p % M, c = m / mult;
            const T* xp = x + (n * C + c) * Isz;
            const T* wp = w + m * K;
            T* yp = y + p * Osz;
            std::fill(yp, yp + Osz, T(0));
            for (int64_t a = 0; a < g.k[0]; ++a)
                for (int64_t b = 0; b < g.k[1]; ++b)
                    for (int64_t e = 0; e < g.k[2]; ++e) {
                        const T wv = wp[(a * g.k[1] + b) * g.k[2] + e];
                        const int64_t offw = e * g.d[2] - g.pb[2], sw = g.s[2];
                        int64_t lo, hi;
                        valid_range(offw, sw, IW, OW, lo, hi);
                        for (int64_t od = 0; od < OD; ++od) {
                            const int64_t id = od * g.s[0] - g.pb[0] + a * g.d[0];
                            if (id < 0 || id >= g.in[0]) continue;
                            for (int64_t oh = 0; oh < OH; ++oh) {
                                const int64_t ih = oh * g.s[1] - g.pb[1] + b * g.d[1];
                                if (ih < 0 || ih >= IH) continue;
                                T* yr = yp + (od * OH + oh) * OW;
                                const T* xr = xp + (id * IH + ih) * IW;
                                if (sw == 1) {
                                    for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow + offw];
                                } else {
                                    for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow * sw + offw];
                                }
                            }
                        }
                    }
            bias_act(yp, Osz, bias ? bias[m] : T(0), act);
        }
    });
}

template <class T>
void conv_kernel(const T* x, const T* w, const T* bias, T* y, int64_t N, int64_t C, int64_t M, int64_t G, const Geo& g,
                 const Act& act, int threads, const Node& node) {
    const int64_t Osz = g.out_size();
    if (N == 0 || M == 0 || Osz == 0) return;
    if (G == C && G > 1) {
        conv_depthwise(x, w, bias, y, N, C, M, g, act, threads);
        return;
    }
    const int64_t Cg = C / G, Mg = M / G, K = g.k_size(), Isz = g.in_size(), CgK = Cg * K;
    bool direct = true;
    for (int i = 0; i < 3; ++i)
        if (g.k[i] != 1 || g.s[i] != 1 || g.pb[i] != 0 || g.pe[i] != 0) direct = false;
    check_blas_dim(Mg);
    check_blas_dim(Osz);
    check_blas_dim(CgK);
    const int64_t cn = direct ? 0 : checked_numel({CgK, Osz}, int64_t{1} << 32);
    if (cn < 0) fail(node.where() + ": the im2col buffer would be too large");
    // One image: im2col + a GEMM per group, then bias and activation (nothing here throws: the
    // batch-parallel path runs it on worker threads).
    auto image = [&](int64_t n, T* colbuf, int inner_threads) {
        for (int64_t gi = 0; gi < G; ++gi) {
            const T* xg = x + (n * C + gi * Cg) * Isz;
            const T* colp = xg;
            if (!direct) {
                im2col(xg, colbuf, Cg, g, inner_threads);
                colp = colbuf;
            }
            gemm<T>(false, false, Mg, Osz, CgK, T(1), w + gi * Mg * CgK, CgK, colp, Osz, T(0), y + (n * M + gi * Mg) * Osz,
                    Osz);
        }
        if (bias != nullptr || act.k != Act::none) {
            T* yn = y + n * M * Osz;
            parallel_for(inner_threads, M, std::max<int64_t>(1, 32768 / Osz), [&](int64_t m0, int64_t m1) {
                for (int64_t m = m0; m < m1; ++m) bias_act(yn + m * Osz, Osz, bias ? bias[m] : T(0), act);
            });
        }
    };
    if (threads > 1 && N > 1) {
        // A batch: images split across the threads, each with its own buffer and a
        // single-threaded GEMM (no synchronisation inside the GEMMs).
        const int nt = static_cast<int>(std::min<int64_t>(threads, N));
        std::vector<std::vector<T>> bufs(static_cast<size_t>(nt));
        for (auto& b : bufs) b.resize(static_cast<size_t>(cn));
        blas_threads(1);
        parallel_for(nt, nt, 1, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t)
                for (int64_t n = t; n < N; n += nt) image(n, bufs[static_cast<size_t>(t)].data(), 1);
        });
        return;
    }
    std::vector<T> colbuf(static_cast<size_t>(cn));
    blas_threads(threads);
    for (int64_t n = 0; n < N; ++n) image(n, colbuf.data(), threads);
}

// The geometry in onednn.hpp's terms (Geo keeps the spatial axes right-aligned in its arrays).
ConvDims conv_dims(int64_t N, int64_t C, int64_t M, int64_t G, const Geo& g) {
    ConvDims c;
    c.r = g.r;
    c.N = N, c.C = C, c.M = M, c.G = G;
    for (int i = 0; i < g.r; ++i) {
        const int j = 3 - g.r + i;
        c.in[i] = g.in[j], c.out[i] = g.out[j], c.k[i] = g.k[j], c.s[i] = g.s[j], c.d[i] = g.d[j];
        c.pb[i] = g.pb[j], c.pe[i] = g.pe[j];
    }
    return c;
}

void conv_check(const Node& n) {
    check_auto_pad(n);
    if (n.attrs.get_int("group", 1) < 1) fail(n.where() + ": group must be >= 1");
    const auto ks = n.attrs.get_ints("kernel_shape");
    if (ks.size() > 3) fail_unsupported(n.where() + ": " + std::to_string(ks.size()) + "-D convolutions are not supported");
    for (size_t i = 0; i < std::min<size_t>(3, n.in_types.size()); ++i)
        check_in_type(n, i, {DType::f32, DType::f64, DType::f16, DType::bf16});
    parse_act(n);
}

void conv_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    const Tensor& W = ctx.input(1);
    const Tensor* B = ctx.has_in(2) ? ctx.in[2] : nullptr;
    if (is_half(X.dtype) || is_half(W.dtype)) return run_via_f32(ctx, conv_run);
    require_same_type(n, X, W, "W");
    if (B) require_same_type(n, X, *B, "B");
    if (X.dtype != DType::f32 && X.dtype != DType::f64) unsupported_type(n, X.dtype);
    const Shape& xs = X.shape;
    const Shape& ws = W.shape;
    if (xs.size() < 3) fail(n.where() + ": X of shape " + shape_str(xs) + " needs rank >= 3 ([N, C, spatial...])");
    if (ws.size() != xs.size())
        fail(n.where() + ": W of shape " + shape_str(ws) + " must have the rank of X " + shape_str(xs));
    const int64_t N = xs[0], C = xs[1], M = ws[0], G = n.attrs.get_int("group", 1);
    if (G < 1) fail(n.where() + ": group must be >= 1");
    if (C % G != 0 || ws[1] * G != C)
        fail(n.where() + ": W " + shape_str(ws) + " with group " + std::to_string(G) + " does not match X's " +
             std::to_string(C) + " channels");
    if (M % G != 0)
        fail(n.where() + ": W's " + std::to_string(M) + " output channels are not divisible by group " + std::to_string(G));
    std::vector<int64_t> kernel(ws.begin() + 2, ws.end());
    if (n.attrs.has("kernel_shape") && n.attrs.get_ints("kernel_shape") != kernel)
        fail(n.where() + ": kernel_shape " + ints_str(n.attrs.get_ints("kernel_shape")) + " does not match W " + shape_str(ws));
    if (B && (B->rank() != 1 || B->shape[0] != M))
        fail(n.where() + ": B of shape " + shape_str(B->shape) + " must be [" + std::to_string(M) + "]");
    const Geo g = make_geo(n, xs, kernel, false, true);
    const Act act = parse_act(n);
    Tensor& Y = ctx.alloc_output(0, X.dtype, out_shape(N, M, g));
    if (X.dtype == DType::f32) {
        const float* bias = B ? B->data<float>() : nullptr;
        if (!dnnl_conv_f32(conv_dims(N, C, M, G, g), act, X.data<float>(), W, bias, Y.data<float>(), ctx.threads))
            conv_kernel<float>(X.data<float>(), W.data<float>(), bias, Y.data<float>(), N, C, M, G, g, act, ctx.threads, n);
    } else
        conv_kernel<double>(X.data<double>(), W.data<double>(), B ? B->data<double>() : nullptr, Y.data<double>(), N, C, M,
                            G, g, act, ctx.threads, n);
}

// ---------------------------------------------------------------------------------------------
// ConvTranspose

// y[m, o] += col[(m, a, b, e), i] where o = i*s - p + k*d, for Mg output channels.
template <class T>
void col2im_add(const T* col, T* y, int64_t Mg, const Geo& g, int threads) {
    const int64_t K = g.k_size(), Isz = g.in_size(), Osz = g.out_size();
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    parallel_for(threads, Mg, std::max<int64_t>(1, 16384 / std::max<int64_t>(Isz * K, 1)), [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
            T* ym = y + m * Osz;
            for (int64_t a = 0; a < g.k[0]; ++a)
                for (int64_t b = 0; b < g.k[1]; ++b)
                    for (int64_t e = 0; e < g.k[2]; ++e) {
                        const T* cr = col + (m * K + (a * g.k[1] + b) * g.k[2] + e) * Isz;
                        const int64_t offw = e * g.d[2] - g.pb[2], sw = g.s[2];
                        int64_t lo, hi;
                        valid_range(offw, sw, OW, IW, lo, hi);
                        for (int64_t id = 0; id < ID; ++id) {
                            const int64_t od = id * g.s[0] - g.pb[0] + a * g.d[0];
                            if (od < 0 || od >= OD) continue;
                            for (int64_t ih = 0; ih < IH; ++ih) {
                                const int64_t oh = ih * g.s[1] - g.pb[1] + b * g.d[1];
                                if (oh < 0 || oh >= OH) continue;
                                const T* src = cr + (id * IH + ih) * IW;
                                T* dst = ym + (od * OH + oh) * OW;
                                if (sw == 1) {
                                    for (int64_t iw = lo; iw < hi; ++iw) dst[iw + offw] += src[iw];
                                } else {
                                    for (int64_t iw = lo; iw < hi; ++iw) dst[iw * sw + offw] += src[iw];
                                }
                            }
                        }
                    }
        }
    });
}

template <class T>
void convtranspose_kernel(const T* x, const T* w, const T* bias, T* y, int64_t N, int64_t C, int64_t M, int64_t G,
                          const Geo& g, int threads, const Node& node) {
    const int64_t Cg = C / G, Mg = M / G, K = g.k_size(), Isz = g.in_size(), Osz = g.out_size();
    if (N == 0 || M == 0 || Osz == 0) return;
    const int64_t cn = checked_numel({Mg * K, Isz}, int64_t{1} << 32);
    if (cn < 0) fail(node.where() + ": the col2im buffer would be too large");
    check_blas_dim(Mg * K);
    check_blas_dim(Isz);
    check_blas_dim(Cg);
    std::vector<T> col(static_cast<size_t>(cn));
    blas_threads(threads);
    for (int64_t n = 0; n < N; ++n) {
        T* yn = y + n * M * Osz;
        std::fill(yn, yn + M * Osz, T(0));
        for (int64_t gi = 0; gi < G; ++gi) {
            const T* xg = x + (n * C + gi * Cg) * Isz;
            const T* wg = w + gi * Cg * Mg * K;
            gemm<T>(true, false, Mg * K, Isz, Cg, T(1), wg, Mg * K, xg, Isz, T(0), col.data(), Isz);
            col2im_add(col.data(), yn + gi * Mg * Osz, Mg, g, threads);
        }
        if (bias != nullptr)
            for (int64_t m = 0; m < M; ++m) bias_act(yn + m * Osz, Osz, bias[m], Act{});
    }
}

void convtranspose_check(const Node& n) {
    check_auto_pad(n);
    if (n.attrs.get_int("group", 1) < 1) fail(n.where() + ": group must be >= 1");
    const auto ks = n.attrs.get_ints("kernel_shape");
    if (ks.size() > 3) fail_unsupported(n.where() + ": " + std::to_string(ks.size()) + "-D convolutions are not supported");
    for (size_t i = 0; i < std::min<size_t>(3, n.in_types.size()); ++i)
        check_in_type(n, i, {DType::f32, DType::f64, DType::f16, DType::bf16});
    if (!n.fused_activation.empty())
        fail_unsupported(n.where() + ": fused activation on ConvTranspose is not supported");
}

void convtranspose_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    const Tensor& W = ctx.input(1);
    const Tensor* B = ctx.has_in(2) ? ctx.in[2] : nullptr;
    if (is_half(X.dtype) || is_half(W.dtype)) return run_via_f32(ctx, convtranspose_run);
    require_same_type(n, X, W, "W");
    if (B) require_same_type(n, X, *B, "B");
    if (X.dtype != DType::f32 && X.dtype != DType::f64) unsupported_type(n, X.dtype);
    const Shape& xs = X.shape;
    const Shape& ws = W.shape;
    if (xs.size() < 3) fail(n.where() + ": X of shape " + shape_str(xs) + " needs rank >= 3 ([N, C, spatial...])");
    if (ws.size() != xs.size())
        fail(n.where() + ": W of shape " + shape_str(ws) + " must have the rank of X " + shape_str(xs));
    const size_t r = xs.size() - 2;
    if (r > 3) fail_unsupported(n.where() + ": " + std::to_string(r) + "-D spatial inputs are not supported (at most 3-D)");
    const int64_t N = xs[0], C = xs[1], G = n.attrs.get_int("group", 1);
    if (G < 1) fail(n.where() + ": group must be >= 1");
    if (ws[0] != C || C % G != 0)
        fail(n.where() + ": W " + shape_str(ws) + " does not match X's " + std::to_string(C) + " channels with group " +
             std::to_string(G));
    const int64_t M = ws[1] * G;
    std::vector<int64_t> kernel(ws.begin() + 2, ws.end());
    if (n.attrs.has("kernel_shape") && n.attrs.get_ints("kernel_shape") != kernel)
        fail(n.where() + ": kernel_shape " + ints_str(n.attrs.get_ints("kernel_shape")) + " does not match W " + shape_str(ws));
    if (B && (B->rank() != 1 || B->shape[0] != M))
        fail(n.where() + ": B of shape " + shape_str(B->shape) + " must be [" + std::to_string(M) + "]");
    const auto strides = attr_ints_sized(n, "strides", r, 1, 1);
    const auto dil = attr_ints_sized(n, "dilations", r, 1, 1);
    const auto pads = attr_ints_sized(n, "pads", 2 * r, 0, 0);
    const auto opad = attr_ints_sized(n, "output_padding", r, 0, 0);
    std::vector<int64_t> oshape = n.attrs.get_ints("output_shape");
    if (!oshape.empty()) {
        if (oshape.size() == r + 2) oshape.erase(oshape.begin(), oshape.begin() + 2);
        if (oshape.size() != r)
            fail(n.where() + ": output_shape " + ints_str(n.attrs.get_ints("output_shape")) + " does not match the spatial rank " +
                 std::to_string(r));
    }
    std::string ap = n.attrs.get_string("auto_pad", "NOTSET");
    if (ap.empty()) ap = "NOTSET";
    if (ap != "NOTSET" && ap != "VALID" && ap != "SAME_UPPER" && ap != "SAME_LOWER")
        fail_unsupported(n.where() + ": auto_pad '" + ap + "' is not supported");
    Geo g;
    g.r = static_cast<int>(r);
    const size_t off = 3 - r;
    for (size_t i = 0; i < r; ++i) {
        const int64_t in = xs[2 + i], k = kernel[i], s = strides[i], d = dil[i];
        if (k < 1) fail(n.where() + ": W " + shape_str(ws) + " has an empty kernel");
        if (in > (INT64_MAX / 8) / s || k > (INT64_MAX / 8) / d) fail(n.where() + ": sizes too large");
        const int64_t full = s * (in - 1) + opad[i] + (k - 1) * d + 1;
        int64_t pb = pads[i], pe = pads[i + r], out;
        if (!oshape.empty() || ap == "SAME_UPPER" || ap == "SAME_LOWER") {
            out = !oshape.empty() ? oshape[i] : in * s;
            // The spec's split, with Python's floor division (a negative total, an output larger
            // than the full result, extends it at the end).
            const int64_t total = full - out;
            const int64_t half = total >= 0 ? total / 2 : -ceil_div(-total, 2);
            if (ap == "SAME_UPPER") {
                pb = half;
                pe = total - pb;
            } else {
                pe = half;
                pb = total - pe;
            }
        } else {
            if (ap == "VALID") pb = pe = 0;
            out = full - pb - pe;
        }
        if (out < 0)
            fail(n.where() + ": the output size along spatial axis " + std::to_string(i) + " is negative (" + std::to_string(out) +
                 ")");
        g.in[off + i] = in;
        g.out[off + i] = out;
        g.k[off + i] = k;
        g.s[off + i] = s;
        g.d[off + i] = d;
        g.pb[off + i] = pb;
        g.pe[off + i] = pe;
    }
    Tensor& Y = ctx.alloc_output(0, X.dtype, out_shape(N, M, g));
    if (X.dtype == DType::f32)
        convtranspose_kernel<float>(X.data<float>(), W.data<float>(), B ? B->data<float>() : nullptr, Y.data<float>(), N, C,
                                    M, G, g, ctx.threads, n);
    else
        convtranspose_kernel<double>(X.data<double>(), W.data<double>(), B ? B->data<double>() : nullptr, Y.data<double>(),
                                     N, C, M, G, g, ctx.threads, n);
}

// ---------------------------------------------------------------------------------------------
// Gemm

template <class T>
void gemm_fill_c(T* y, int64_t M, int64_t N, const Tensor& Ct, double beta) {
    const T* c = Ct.data<T>();
    const int64_t cr = Ct.rank();
    const int64_t cN = cr >= 1 ? Ct.shape[cr - 1] : 1, cM = cr == 2 ? Ct.shape[0] : 1;
    const T b = static_cast<T>(beta);
    for (int64_t i = 0; i < M; ++i) {
        const T* crow = c + (cM == 1 ? 0 : i) * cN;
        T* yrow = y + i * N;
        if (cN == 1)
            for (int64_t j = 0; j < N; ++j) yrow[j] = b * crow[0];
        else
            for (int64_t j = 0; j < N; ++j) yrow[j] = b * crow[j];
    }
}

template <class T>
void gemm_int(const Tensor& A, const Tensor& Bt, const Tensor* Ct, Tensor& Y, bool ta, bool tb, int64_t M, int64_t N,
              int64_t K, double alpha, double beta) {
    T* y = Y.data<T>();
    const bool useC = Ct != nullptr && beta != 0.0;
    if (useC) gemm_fill_c<T>(y, M, N, *Ct, 1.0);
    gemm_plain<T>(ta, tb, M, N, K, alpha, A.data<T>(), Bt.data<T>(), useC ? beta : 0.0, y);
}

void gemm_check(const Node& n) {
    for (size_t i = 0; i < std::min<size_t>(3, n.in_types.size()); ++i)
        check_in_type(n, i, {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u32, DType::u64});
    parse_act(n);
}

void gemm_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& A = ctx.input(0);
    const Tensor& Bm = ctx.input(1);
    const Tensor* C = ctx.has_in(2) ? ctx.in[2] : nullptr;
    if (is_half(A.dtype)) return run_via_f32(ctx, gemm_run);
    require_same_type(n, A, Bm, "B");
    if (C) require_same_type(n, A, *C, "C");
    if (A.rank() != 2 || Bm.rank() != 2)
        fail(n.where() + ": A " + shape_str(A.shape) + " and B " + shape_str(Bm.shape) + " must be matrices");
    const bool ta = n.attrs.get_int("transA", 0) != 0, tb = n.attrs.get_int("transB", 0) != 0;
    const float alpha = n.attrs.get_float("alpha", 1.0f), beta = n.attrs.get_float("beta", 1.0f);
    const int64_t M = ta ? A.shape[1] : A.shape[0], K = ta ? A.shape[0] : A.shape[1];
    const int64_t KB = tb ? Bm.shape[1] : Bm.shape[0], N = tb ? Bm.shape[0] : Bm.shape[1];
    if (K != KB)
        fail(n.where() + ": A " + shape_str(A.shape) + (ta ? " (transposed)" : "") + " and B " + shape_str(Bm.shape) +
             (tb ? " (transposed)" : "") + " have different inner dimensions");
    if (C) {
        const Shape& cs = C->shape;
        const size_t cr = cs.size();
        const int64_t cN = cr >= 1 ? cs[cr - 1] : 1, cM = cr == 2 ? cs[0] : 1;
        if (cr > 2 || (cN != 1 && cN != N) || (cM != 1 && cM != M))
            fail(n.where() + ": C of shape " + shape_str(cs) + " does not broadcast to [" + std::to_string(M) + ", " +
                 std::to_string(N) + "]");
    }
    const Act act = parse_act(n);
    Tensor& Y = ctx.alloc_output(0, A.dtype, {M, N});
    const bool useC = C != nullptr && beta != 0.0f;
    switch (A.dtype) {
        case DType::f32:
        case DType::f64: {
            blas_threads(ctx.threads);
            auto go = [&](auto zero) {
                using T = decltype(zero);
                T* y = Y.data<T>();
                if (useC) gemm_fill_c<T>(y, M, N, *C, beta);
                gemm<T>(ta, tb, M, N, K, static_cast<T>(alpha), A.data<T>(), A.shape[1], Bm.data<T>(), Bm.shape[1],
                        useC ? T(1) : T(0), y, N);
                if (act.k != Act::none) bias_act<T>(y, M * N, T(0), act);
            };
            if (A.dtype == DType::f32) go(0.0f);
            else go(0.0);
            break;
        }
        case DType::i32: gemm_int<int32_t>(A, Bm, C, Y, ta, tb, M, N, K, alpha, beta); break;
        case DType::i64: gemm_int<int64_t>(A, Bm, C, Y, ta, tb, M, N, K, alpha, beta); break;
        case DType::u32: gemm_int<uint32_t>(A, Bm, C, Y, ta, tb, M, N, K, alpha, beta); break;
        case DType::u64: gemm_int<uint64_t>(A, Bm, C, Y, ta, tb, M, N, K, alpha, beta); break;
        default: unsupported_type(n, A.dtype);
    }
}

// ---------------------------------------------------------------------------------------------
// MatMul

template <class T>
void matmul_kernel(const Tensor& A, const Tensor& Bm, Tensor& Y, const Shape& batch, const Shape& abatch,
                   const Shape& bbatch, int64_t M, int64_t N, int64_t K, const Act& act, int threads) {
    const T* a = A.data<T>();
    const T* b = Bm.data<T>();
    T* y = Y.data<T>();
    const int64_t nb = checked_numel(batch), anb = checked_numel(abatch), bnb = checked_numel(bbatch);
    if (nb == 0 || M == 0 || N == 0) return;
    // Checked here: the batch-parallel path below must not throw on a worker thread.
    check_blas_dim(M);
    check_blas_dim(N);
    check_blas_dim(K);
    constexpr bool blas = std::is_same_v<T, float> || std::is_same_v<T, double>;
    auto one = [&](const T* ap, const T* bp, T* yp, int64_t rows) {
        if constexpr (blas) {
            gemm<T>(false, false, rows, N, K, T(1), ap, K, bp, N, T(0), yp, N);
            if (act.k != Act::none) bias_act<T>(yp, rows * N, T(0), act);
        } else {
            gemm_plain<T>(false, false, rows, N, K, 1.0, ap, bp, 0.0, yp);
        }
    };
    if (blas) blas_threads(threads);
    // B shared by every batch (a weight): one GEMM over all of A's rows.
    if (bnb == 1 && anb == nb && nb * M <= INT_MAX) {
        one(a, b, y, nb * M);
        return;
    }
    // Broadcast strides of the batch dimensions.
    const size_t r = batch.size();
    std::vector<int64_t> ast(r, 0), bst(r, 0);
    {
        int64_t sa = M * K, sb = K * N;
        for (size_t i = r; i-- > 0;) {
            const size_t ia = i + abatch.size() - r, ib = i + bbatch.size() - r;
            const bool ha = i + abatch.size() >= r, hb = i + bbatch.size() >= r;
            const int64_t da = ha ? abatch[ia] : 1, db = hb ? bbatch[ib] : 1;
            ast[i] = da == 1 ? 0 : sa;
            bst[i] = db == 1 ? 0 : sb;
            sa *= da;
            sb *= db;
        }
    }
    auto offsets = [&](int64_t bi, int64_t& ao, int64_t& bo) {
        ao = 0;
        bo = 0;
        for (size_t i = r; i-- > 0;) {
            const int64_t idx = bi % batch[i];
            bi /= batch[i];
            ao += idx * ast[i];
            bo += idx * bst[i];
        }
    };
    // Many matrices: one per thread, each GEMM single-threaded (less overhead than splitting
    // every small GEMM across the threads).
    if (threads > 1 && nb >= threads) {
        if (blas) blas_threads(1);
        parallel_for(threads, nb, std::max<int64_t>(1, 65536 / std::max<int64_t>(M * N * K, 1)), [&](int64_t b0, int64_t b1) {
            for (int64_t bi = b0; bi < b1; ++bi) {
                int64_t ao, bo;
                offsets(bi, ao, bo);
                one(a + ao, b + bo, y + bi * M * N, M);
            }
        });
    } else {
        for (int64_t bi = 0; bi < nb; ++bi) {
            int64_t ao, bo;
            offsets(bi, ao, bo);
            one(a + ao, b + bo, y + bi * M * N, M);
        }
    }
}

void matmul_check(const Node& n) {
    for (size_t i = 0; i < std::min<size_t>(2, n.in_types.size()); ++i)
        check_in_type(n, i, {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u32, DType::u64});
    parse_act(n);
}

void matmul_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& A = ctx.input(0);
    const Tensor& Bm = ctx.input(1);
    if (is_half(A.dtype)) return run_via_f32(ctx, matmul_run);
    require_same_type(n, A, Bm, "B");
    if (A.rank() == 0 || Bm.rank() == 0)
        fail(n.where() + ": MatMul operands must have rank >= 1 (got " + shape_str(A.shape) + " and " + shape_str(Bm.shape) + ")");
    Shape as = A.shape, bs = Bm.shape;
    const bool a1 = as.size() == 1, b1 = bs.size() == 1;
    if (a1) as.insert(as.begin(), 1);
    if (b1) bs.push_back(1);
    const int64_t M = as[as.size() - 2], K = as[as.size() - 1], KB = bs[bs.size() - 2], N = bs[bs.size() - 1];
    if (K != KB)
        fail(n.where() + ": shapes " + shape_str(A.shape) + " and " + shape_str(Bm.shape) + " are not aligned for MatMul (" +
             std::to_string(K) + " != " + std::to_string(KB) + ")");
    const Shape abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
    const Shape batch = broadcast_shapes(abatch, bbatch, n);
    Shape ys = batch;
    if (!a1) ys.push_back(M);
    if (!b1) ys.push_back(N);
    const Act act = parse_act(n);
    Tensor& Y = ctx.alloc_output(0, A.dtype, ys);
    switch (A.dtype) {
        case DType::f32: matmul_kernel<float>(A, Bm, Y, batch, abatch, bbatch, M, N, K, act, ctx.threads); break;
        case DType::f64: matmul_kernel<double>(A, Bm, Y, batch, abatch, bbatch, M, N, K, act, ctx.threads); break;
        case DType::i32: matmul_kernel<int32_t>(A, Bm, Y, batch, abatch, bbatch, M, N, K, act, ctx.threads); break;
        case DType::i64: matmul_kernel<int64_t>(A, Bm, Y, batch, abatch, bbatch, M, N, K, act, ctx.threads); break;
        case DType::u32: matmul_kernel<uint32_t>(A, Bm, Y, batch, abatch, bbatch, M, N, K, act, ctx.threads); break;
        case DType::u64: matmul_kernel<uint64_t>(A, Bm, Y, batch, abatch, bbatch, M, N, K, act, ctx.threads); break;
        default: unsupported_type(n, A.dtype);
    }
}

// ---------------------------------------------------------------------------------------------
// Pooling

enum class PoolKind { max, avg, lp };

// Per spatial dimension and output position: the first valid input index, how many valid taps
// (stepping by the dilation), and how many taps fall inside the padded extent.
struct Windows {
    std::vector<int64_t> first[3], cnt[3], padcnt[3];
};

Windows make_windows(const Geo& g) {
    Windows w;
    for (int i = 0; i < 3; ++i) {
        const int64_t O = g.out[i];
        w.first[i].resize(static_cast<size_t>(O));
        w.cnt[i].resize(static_cast<size_t>(O));
        w.padcnt[i].resize(static_cast<size_t>(O));
        for (int64_t o = 0; o < O; ++o) {
            const int64_t start = o * g.s[i] - g.pb[i];
            // taps k in [0, K) with start + k*d in [0, in)
            int64_t klo = start >= 0 ? 0 : ceil_div(-start, g.d[i]);
            int64_t khi = g.in[i] - 1 - start < 0 ? 0 : (g.in[i] - 1 - start) / g.d[i] + 1;
            khi = std::min(khi, g.k[i]);
            klo = std::min(klo, khi);
            w.first[i][o] = start + klo * g.d[i];
            w.cnt[i][o] = khi - klo;
            // taps inside [-pb, in + pe)
            const int64_t lim = g.in[i] + g.pe[i] - 1 - start;
            int64_t phi = lim < 0 ? 0 : lim / g.d[i] + 1;
            w.padcnt[i][o] = std::min(phi, g.k[i]);
        }
    }
    return w;
}

template <class T, PoolKind KIND, bool IDX>
void pool_kernel(const T* x, T* y, int64_t* idx, int64_t planes, const Geo& g, const Windows& w, bool count_pad,
                 double p, bool col_major, int threads) {
    const int64_t Isz = g.in_size(), Osz = g.out_size();
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    const int64_t dd = g.d[0], dh = g.d[1], dw = g.d[2];
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(Osz * g.k_size(), 1));
    parallel_for(threads, planes, grain, [&](int64_t p0, int64_t p1) {
        for (int64_t pl = p0; pl < p1; ++pl) {
            const T* xp = x + pl * Isz;
            T* yp = y + pl * Osz;
            int64_t* ip = IDX ? idx + pl * Osz : nullptr;
            for (int64_t od = 0; od < OD; ++od)
                for (int64_t oh = 0; oh < OH; ++oh)
                    for (int64_t ow = 0; ow < OW; ++ow) {
                        const int64_t fd = w.first[0][od], fh = w.first[1][oh], fw = w.first[2][ow];
                        const int64_t cd = w.cnt[0][od], ch = w.cnt[1][oh], cw = w.cnt[2][ow];
                        const int64_t o = (od * OH + oh) * OW + ow;
                        if constexpr (KIND == PoolKind::max) {
                            T best = std::numeric_limits<T>::lowest();
                            int64_t bi = -1;
                            for (int64_t i0 = 0; i0 < cd; ++i0) {
                                const int64_t id = fd + i0 * dd;
                                for (int64_t i1 = 0; i1 < ch; ++i1) {
                                    const int64_t ih = fh + i1 * dh;
                                    const T* row = xp + (id * IH + ih) * IW;
                                    if constexpr (IDX) {
                                        for (int64_t i2 = 0; i2 < cw; ++i2) {
                                            const int64_t iw = fw + i2 * dw;
                                            if (row[iw] > best || bi < 0) {
                                                best = row[iw];
                                                bi = col_major ? id + ID * (ih + IH * iw) : (id * IH + ih) * IW + iw;
                                            }
                                        }
                                    } else if (dw == 1) {
                                        for (int64_t iw = fw; iw < fw + cw; ++iw) best = std::max(best, row[iw]);
                                    } else {
                                        for (int64_t i2 = 0; i2 < cw; ++i2) best = std::max(best, row[fw + i2 * dw]);
                                    }
                                }
                            }
                            yp[o] = best;
                            if constexpr (IDX) ip[o] = pl * Isz + std::max<int64_t>(bi, 0);
                        } else {
                            T acc = T(0);
                            for (int64_t i0 = 0; i0 < cd; ++i0) {
                                const int64_t id = fd + i0 * dd;
                                for (int64_t i1 = 0; i1 < ch; ++i1) {
                                    const int64_t ih = fh + i1 * dh;
                                    const T* row = xp + (id * IH + ih) * IW;
                                    for (int64_t i2 = 0; i2 < cw; ++i2) {
                                        const T v = row[fw + i2 * dw];
                                        if constexpr (KIND == PoolKind::avg) acc += v;
                                        else if (p == 2.0) acc += v * v;
                                        else if (p == 1.0) acc += std::abs(v);
                                        else acc += static_cast<T>(std::pow(std::abs(static_cast<double>(v)), p));
                                    }
                                }
                            }
                            if constexpr (KIND == PoolKind::avg) {
                                const int64_t div = count_pad ? w.padcnt[0][od] * w.padcnt[1][oh] * w.padcnt[2][ow] : cd * ch * cw;
                                yp[o] = div > 0 ? acc / static_cast<T>(div) : T(0);
                            } else {
                                yp[o] = p == 2.0   ? std::sqrt(acc)
                                        : p == 1.0 ? acc
                                                   : static_cast<T>(std::pow(static_cast<double>(acc), 1.0 / p));
                            }
                        }
                    }
        }
    });
}

void pool_check_common(const Node& n, std::initializer_list<DType> types) {
    check_auto_pad(n);
    const auto ks = n.attrs.get_ints("kernel_shape");
    if (ks.empty()) fail(n.where() + ": attribute 'kernel_shape' is required");
    if (ks.size() > 3) fail_unsupported(n.where() + ": " + std::to_string(ks.size()) + "-D pooling is not supported");
    check_in_type(n, 0, types);
}

void maxpool_check(const Node& n) {
    pool_check_common(n, {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8, DType::u8});
    const int64_t so = n.attrs.get_int("storage_order", 0);
    if (so != 0 && so != 1) fail(n.where() + ": storage_order must be 0 or 1");
}

template <class T>
void maxpool_typed(const Tensor& X, Tensor& Y, Tensor* I, int64_t planes, const Geo& g, bool col_major, int threads) {
    const Windows w = make_windows(g);
    if (I)
        pool_kernel<T, PoolKind::max, true>(X.data<T>(), Y.data<T>(), I->data<int64_t>(), planes, g, w, false, 0, col_major,
                                            threads);
    else
        pool_kernel<T, PoolKind::max, false>(X.data<T>(), Y.data<T>(), nullptr, planes, g, w, false, 0, col_major, threads);
}

void maxpool_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    if (is_half(X.dtype)) return run_via_f32(ctx, maxpool_run, 1u);
    const auto kernel = n.attrs.get_ints("kernel_shape");
    if (kernel.empty()) fail(n.where() + ": attribute 'kernel_shape' is required");
    const Geo g = make_geo(n, X.shape, kernel, n.attrs.get_int("ceil_mode", 0) != 0, true);
    const Shape ys = out_shape(X.shape[0], X.shape[1], g);
    const bool col_major = n.attrs.get_int("storage_order", 0) == 1;
    const int64_t planes = X.shape[0] * X.shape[1];
    if (X.dtype != DType::f32 && X.dtype != DType::f64 && X.dtype != DType::i8 && X.dtype != DType::u8)
        unsupported_type(n, X.dtype);
    Tensor& Y = ctx.alloc_output(0, X.dtype, ys);
    Tensor* I = ctx.wants_output(1) ? &ctx.alloc_output(1, DType::i64, ys) : nullptr;
    switch (X.dtype) {
        case DType::f32: maxpool_typed<float>(X, Y, I, planes, g, col_major, ctx.threads); break;
        case DType::f64: maxpool_typed<double>(X, Y, I, planes, g, col_major, ctx.threads); break;
        case DType::i8: maxpool_typed<int8_t>(X, Y, I, planes, g, col_major, ctx.threads); break;
        default: maxpool_typed<uint8_t>(X, Y, I, planes, g, col_major, ctx.threads); break;
    }
}

void avgpool_check(const Node& n) { pool_check_common(n, {DType::f32, DType::f64, DType::f16, DType::bf16}); }

void avgpool_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    if (is_half(X.dtype)) return run_via_f32(ctx, avgpool_run);
    if (X.dtype != DType::f32 && X.dtype != DType::f64) unsupported_type(n, X.dtype);
    const auto kernel = n.attrs.get_ints("kernel_shape");
    if (kernel.empty()) fail(n.where() + ": attribute 'kernel_shape' is required");
    const Geo g = make_geo(n, X.shape, kernel, n.attrs.get_int("ceil_mode", 0) != 0, n.opset >= 19);
    const bool count_pad = n.attrs.get_int("count_include_pad", 0) != 0;
    Tensor& Y = ctx.alloc_output(0, X.dtype, out_shape(X.shape[0], X.shape[1], g));
    const Windows w = make_windows(g);
    const int64_t planes = X.shape[0] * X.shape[1];
    if (X.dtype == DType::f32)
        pool_kernel<float, PoolKind::avg, false>(X.data<float>(), Y.data<float>(), nullptr, planes, g, w, count_pad, 0, false,
                                                 ctx.threads);
    else
        pool_kernel<double, PoolKind::avg, false>(X.data<double>(), Y.data<double>(), nullptr, planes, g, w, count_pad, 0,
                                                  false, ctx.threads);
}

double lp_p(const Node& n) {
    auto it = n.attrs.map.find("p");
    if (it == n.attrs.map.end()) return 2.0;
    if (it->second.kind == Attr::f) return it->second.fv;
    if (it->second.kind == Attr::i) return static_cast<double>(it->second.iv);
    fail(n.where() + ": attribute 'p' must be a number");
}

void lppool_check(const Node& n) {
    pool_check_common(n, {DType::f32, DType::f64, DType::f16, DType::bf16});
    if (!(lp_p(n) > 0)) fail_unsupported(n.where() + ": p must be positive");
}

void lppool_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    if (is_half(X.dtype)) return run_via_f32(ctx, lppool_run);
    if (X.dtype != DType::f32 && X.dtype != DType::f64) unsupported_type(n, X.dtype);
    const auto kernel = n.attrs.get_ints("kernel_shape");
    if (kernel.empty()) fail(n.where() + ": attribute 'kernel_shape' is required");
    const double p = lp_p(n);
    if (!(p > 0)) fail(n.where() + ": p must be positive");
    const Geo g = make_geo(n, X.shape, kernel, n.attrs.get_int("ceil_mode", 0) != 0, true);
    Tensor& Y = ctx.alloc_output(0, X.dtype, out_shape(X.shape[0], X.shape[1], g));
    const Windows w = make_windows(g);
    const int64_t planes = X.shape[0] * X.shape[1];
    if (X.dtype == DType::f32)
        pool_kernel<float, PoolKind::lp, false>(X.data<float>(), Y.data<float>(), nullptr, planes, g, w, false, p, false,
                                                ctx.threads);
    else
        pool_kernel<double, PoolKind::lp, false>(X.data<double>(), Y.data<double>(), nullptr, planes, g, w, false, p, false,
                                                 ctx.threads);
}

template <bool MAX>
void global_pool_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    if (is_half(X.dtype)) return run_via_f32(ctx, global_pool_run<MAX>);
    if (X.rank() < 2) fail(n.where() + ": input of shape " + shape_str(X.shape) + " needs rank >= 2 ([N, C, ...])");
    Shape ys = X.shape;
    for (size_t i = 2; i < ys.size(); ++i) ys[i] = 1;
    const int64_t planes = X.shape[0] * X.shape[1];
    const int64_t S = planes == 0 ? 0 : X.numel() / planes;
    if (MAX && S == 0 && planes > 0) fail(n.where() + ": GlobalMaxPool over an empty spatial extent");
    auto go = [&](auto zero) {
        using T = decltype(zero);
        Tensor& Y = ctx.alloc_output(0, X.dtype, ys);
        const T* x = X.data<T>();
        T* y = Y.data<T>();
        parallel_for(ctx.threads, planes, std::max<int64_t>(1, 32768 / std::max<int64_t>(S, 1)), [&](int64_t p0, int64_t p1) {
            for (int64_t pl = p0; pl < p1; ++pl) {
                const T* xp = x + pl * S;
                if constexpr (MAX) {
                    T m = xp[0];
                    for (int64_t i = 1; i < S; ++i) m = std::max(m, xp[i]);
                    y[pl] = m;
                } else {
                    double acc = 0;
                    for (int64_t i = 0; i < S; ++i) acc += xp[i];
                    y[pl] = S > 0 ? static_cast<T>(acc / static_cast<double>(S)) : T(0);
                }
            }
        });
    };
    switch (X.dtype) {
        case DType::f32: go(0.0f); break;
        case DType::f64: go(0.0); break;
        default: unsupported_type(n, X.dtype);
    }
}

void float_check(const Node& n) { check_in_type(n, 0, {DType::f32, DType::f64, DType::f16, DType::bf16}); }

// ---------------------------------------------------------------------------------------------
// Normalisations

std::vector<double> param_vec(const Node& n, const Tensor& t, int64_t count, const char* what) {
    if (t.numel() != count)
        fail(n.where() + ": " + what + " of shape " + shape_str(t.shape) + " must have " + std::to_string(count) + " elements");
    if (!is_floating(t.dtype)) fail(n.where() + ": " + what + " must be floating-point, got " + dtype_name(t.dtype));
    std::vector<double> v(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) v[static_cast<size_t>(i)] = number_at(t, i);
    return v;
}

void batchnorm_check(const Node& n) {
    if (n.attrs.get_int("training_mode", 0) != 0)
        fail_unsupported(n.where() + ": BatchNormalization with training_mode=1 is not supported (inference only)");
    for (size_t i = 1; i < n.outputs.size(); ++i)
        if (!n.outputs[i].empty())
            fail_unsupported(n.where() + ": BatchNormalization's training outputs (mean, var, saved statistics) are not supported");
    if (n.opset < 7 && n.attrs.get_int("is_test", 0) == 0)
        fail_unsupported(n.where() + ": BatchNormalization with is_test=0 (training mode, opset " + std::to_string(n.opset) +
                         ") is not supported (inference only)");
    for (size_t i = 0; i < std::min<size_t>(5, n.in_types.size()); ++i)
        check_in_type(n, i, {DType::f32, DType::f64, DType::f16, DType::bf16});
}

void batchnorm_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    if (is_half(X.dtype)) return run_via_f32(ctx, batchnorm_run, 1u);
    if (X.dtype != DType::f32 && X.dtype != DType::f64) unsupported_type(n, X.dtype);
    if (X.rank() < 2) fail(n.where() + ": X of shape " + shape_str(X.shape) + " needs rank >= 2 ([N, C, ...])");
    const int64_t N = X.shape[0], C = X.shape[1];
    const int64_t S = N * C == 0 ? 0 : X.numel() / (N * C);
    const bool spatial = n.opset >= 9 || n.attrs.get_int("spatial", 1) != 0;
    const int64_t F = spatial ? C : C * S;  // features the statistics are per
    const auto scale = param_vec(n, ctx.input(1), F, "scale");
    const auto bias = param_vec(n, ctx.input(2), F, "B");
    const auto mean = param_vec(n, ctx.input(3), F, "mean");
    const auto var = param_vec(n, ctx.input(4), F, "var");
    const double eps = n.attrs.get_float("epsilon", 1e-5f);
    std::vector<double> mul(static_cast<size_t>(F)), add(static_cast<size_t>(F));
    for (size_t i = 0; i < mul.size(); ++i) {
        mul[i] = scale[i] / std::sqrt(var[i] + eps);
        add[i] = bias[i] - mean[i] * mul[i];
    }
    Tensor& Y = ctx.alloc_output(0, X.dtype, X.shape);
    auto go = [&](auto zero) {
        using T = decltype(zero);
        const T* x = X.data<T>();
        T* y = Y.data<T>();
        if (spatial) {
            parallel_for(ctx.threads, N * C, std::max<int64_t>(1, 32768 / std::max<int64_t>(S, 1)), [&](int64_t p0, int64_t p1) {
                for (int64_t pl = p0; pl < p1; ++pl) {
                    const T a = static_cast<T>(mul[static_cast<size_t>(pl % C)]), b = static_cast<T>(add[static_cast<size_t>(pl % C)]);
                    const T* xp = x + pl * S;
                    T* yp = y + pl * S;
                    for (int64_t i = 0; i < S; ++i) yp[i] = xp[i] * a + b;
                }
            });
        } else {
            for (int64_t b0 = 0; b0 < N; ++b0)
                for (int64_t f = 0; f < F; ++f)
                    y[b0 * F + f] = x[b0 * F + f] * static_cast<T>(mul[static_cast<size_t>(f)]) + static_cast<T>(add[static_cast<size_t>(f)]);
        }
    };
    if (X.dtype == DType::f32) go(0.0f);
    else go(0.0);
}

void instancenorm_check(const Node& n) {
    for (size_t i = 0; i < std::min<size_t>(3, n.in_types.size()); ++i)
        check_in_type(n, i, {DType::f32, DType::f64, DType::f16, DType::bf16});
}

void instancenorm_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    if (is_half(X.dtype)) return run_via_f32(ctx, instancenorm_run);
    if (X.dtype != DType::f32 && X.dtype != DType::f64) unsupported_type(n, X.dtype);
    if (X.rank() < 2) fail(n.where() + ": X of shape " + shape_str(X.shape) + " needs rank >= 2 ([N, C, ...])");
    const int64_t N = X.shape[0], C = X.shape[1];
    const int64_t S = N * C == 0 ? 0 : X.numel() / (N * C);
    const auto scale = param_vec(n, ctx.input(1), C, "scale");
    const auto bias = param_vec(n, ctx.input(2), C, "B");
    const double eps = n.attrs.get_float("epsilon", 1e-5f);
    Tensor& Y = ctx.alloc_output(0, X.dtype, X.shape);
    auto go = [&](auto zero) {
        using T = decltype(zero);
        const T* x = X.data<T>();
        T* y = Y.data<T>();
        parallel_for(ctx.threads, N * C, std::max<int64_t>(1, 16384 / std::max<int64_t>(S, 1)), [&](int64_t p0, int64_t p1) {
            for (int64_t pl = p0; pl < p1; ++pl) {
                const T* xp = x + pl * S;
                T* yp = y + pl * S;
                double sum = 0;
                for (int64_t i = 0; i < S; ++i) sum += xp[i];
                const double mean = S > 0 ? sum / static_cast<double>(S) : 0.0;
                double sq = 0;
                for (int64_t i = 0; i < S; ++i) {
                    const double dv = xp[i] - mean;
                    sq += dv * dv;
                }
                const double var = S > 0 ? sq / static_cast<double>(S) : 0.0;
                const double a = scale[static_cast<size_t>(pl % C)] / std::sqrt(var + eps);
                const T ma = static_cast<T>(a), mb = static_cast<T>(bias[static_cast<size_t>(pl % C)] - mean * a);
                for (int64_t i = 0; i < S; ++i) yp[i] = xp[i] * ma + mb;
            }
        });
    };
    if (X.dtype == DType::f32) go(0.0f);
    else go(0.0);
}

// Expands a parameter tensor (unidirectionally broadcastable to `shape`) to shape's element count.
std::vector<double> broadcast_param(const Node& n, const Tensor& t, const Shape& shape, const char* what) {
    if (!is_floating(t.dtype)) fail(n.where() + ": " + what + " must be floating-point, got " + dtype_name(t.dtype));
    const int64_t total = checked_numel(shape);
    std::vector<double> v(static_cast<size_t>(total));
    if (t.shape.size() > shape.size())
        fail(n.where() + ": " + what + " of shape " + shape_str(t.shape) + " does not broadcast to " + shape_str(shape));
    const size_t off = shape.size() - t.shape.size();
    for (size_t i = 0; i < t.shape.size(); ++i)
        if (t.shape[i] != 1 && t.shape[i] != shape[off + i])
            fail(n.where() + ": " + what + " of shape " + shape_str(t.shape) + " does not broadcast to " + shape_str(shape));
    if (t.numel() == total) {
        for (int64_t i = 0; i < total; ++i) v[static_cast<size_t>(i)] = number_at(t, i);
        return v;
    }
    for (int64_t i = 0; i < total; ++i) {
        int64_t rem = i, src = 0, stride = 1;
        for (size_t d = shape.size(); d-- > 0;) {
            const int64_t idx = rem % shape[d];
            rem /= shape[d];
            if (d >= off) {
                const int64_t td = t.shape[d - off];
                if (td != 1) src += idx * stride;
                stride *= td;
            }
        }
        v[static_cast<size_t>(i)] = number_at(t, src);
    }
    return v;
}

void layernorm_check(const Node& n) {
    for (size_t i = 0; i < std::min<size_t>(3, n.in_types.size()); ++i)
        check_in_type(n, i, {DType::f32, DType::f64, DType::f16, DType::bf16});
    const int64_t st = n.attrs.get_int("stash_type", 1);
    if (st != 1) fail_unsupported(n.where() + ": stash_type " + std::to_string(st) + " is not supported (only float)");
}

void layernorm_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    if (is_half(X.dtype)) return run_via_f32(ctx, layernorm_run, 1u);
    if (X.dtype != DType::f32 && X.dtype != DType::f64) unsupported_type(n, X.dtype);
    const int64_t r = static_cast<int64_t>(X.rank());
    if (r < 1) fail(n.where() + ": X must have rank >= 1");
    if (n.attrs.get_int("stash_type", 1) != 1) fail_unsupported(n.where() + ": only stash_type 1 (float) is supported");
    const int64_t axis = normalize_axis(n.attrs.get_int("axis", -1), r, n);
    const Shape inner_shape(X.shape.begin() + axis, X.shape.end());
    const int64_t inner = checked_numel(inner_shape);
    const int64_t outer = inner == 0 ? 0 : X.numel() / inner;
    const auto scale = broadcast_param(n, ctx.input(1), inner_shape, "Scale");
    const std::vector<double> bias =
        ctx.has_in(2) ? broadcast_param(n, *ctx.in[2], inner_shape, "B") : std::vector<double>(scale.size(), 0.0);
    const double eps = n.attrs.get_float("epsilon", 1e-5f);
    Shape ss(X.shape.begin(), X.shape.begin() + axis);
    ss.resize(static_cast<size_t>(r), 1);
    Tensor& Y = ctx.alloc_output(0, X.dtype, X.shape);
    float* mean_out = ctx.wants_output(1) ? ctx.alloc_output(1, DType::f32, ss).data<float>() : nullptr;
    float* inv_out = ctx.wants_output(2) ? ctx.alloc_output(2, DType::f32, ss).data<float>() : nullptr;
    auto go = [&](auto zero) {
        using T = decltype(zero);
        std::vector<T> sc(scale.begin(), scale.end()), bi(bias.begin(), bias.end());
        const T* x = X.data<T>();
        T* y = Y.data<T>();
        parallel_for(ctx.threads, outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)), [&](int64_t r0, int64_t r1) {
            for (int64_t row = r0; row < r1; ++row) {
                const T* xp = x + row * inner;
                T* yp = y + row * inner;
                double sum = 0;
                for (int64_t i = 0; i < inner; ++i) sum += xp[i];
                const double mean = sum / static_cast<double>(inner);
                double sq = 0;
                for (int64_t i = 0; i < inner; ++i) {
                    const double dv = xp[i] - mean;
                    sq += dv * dv;
                }
                const double inv = 1.0 / std::sqrt(sq / static_cast<double>(inner) + eps);
                const T m = static_cast<T>(mean), iv = static_cast<T>(inv);
                for (int64_t i = 0; i < inner; ++i) yp[i] = (xp[i] - m) * iv * sc[static_cast<size_t>(i)] + bi[static_cast<size_t>(i)];
                if (mean_out) mean_out[row] = static_cast<float>(mean);
                if (inv_out) inv_out[row] = static_cast<float>(inv);
            }
        });
    };
    if (X.dtype == DType::f32) go(0.0f);
    else go(0.0);
}

// ---------------------------------------------------------------------------------------------
// Softmax / LogSoftmax / Hardmax

enum class SmKind { softmax, logsoftmax, hardmax };

template <class T, SmKind KIND>
void softmax_kernel(const T* x, T* y, int64_t outer, int64_t len, int64_t inner, int threads) {
    if (inner == 1) {
        parallel_for(threads, outer, std::max<int64_t>(1, 8192 / std::max<int64_t>(len, 1)), [&](int64_t r0, int64_t r1) {
            for (int64_t row = r0; row < r1; ++row) {
                const T* xp = x + row * len;
                T* yp = y + row * len;
                if constexpr (KIND == SmKind::hardmax) {
                    int64_t bi = 0;
                    for (int64_t i = 1; i < len; ++i)
                        if (xp[i] > xp[bi]) bi = i;
                    for (int64_t i = 0; i < len; ++i) yp[i] = T(0);
                    if (len > 0) yp[bi] = T(1);
                } else {
                    const T mx = vmax(xp, len);
                    for (int64_t i = 0; i < len; ++i) yp[i] = xp[i] - mx;
                    exp_inplace(yp, len);
                    const T sum = vsum(yp, len);
                    if constexpr (KIND == SmKind::softmax) {
                        const T inv = T(1) / sum;
                        for (int64_t i = 0; i < len; ++i) yp[i] *= inv;
                    } else {
                        // (x - max) - log(sum): exact where max + log(sum) would round away log(sum)
                        const T ls = std::log(sum);
                        for (int64_t i = 0; i < len; ++i) yp[i] = (xp[i] - mx) - ls;
                    }
                }
            }
        });
        return;
    }
    parallel_for(threads, outer, std::max<int64_t>(1, 8192 / std::max<int64_t>(len * inner, 1)), [&](int64_t r0, int64_t r1) {
        std::vector<T> mx(static_cast<size_t>(inner)), sum(static_cast<size_t>(inner));
        std::vector<int64_t> arg(static_cast<size_t>(KIND == SmKind::hardmax ? inner : 0));
        for (int64_t o = r0; o < r1; ++o) {
            const T* xp = x + o * len * inner;
            T* yp = y + o * len * inner;
            if constexpr (KIND == SmKind::hardmax) {
                std::copy(xp, xp + inner, mx.begin());
                std::fill(arg.begin(), arg.end(), 0);
                for (int64_t j = 1; j < len; ++j)
                    for (int64_t i = 0; i < inner; ++i)
                        if (xp[j * inner + i] > mx[static_cast<size_t>(i)]) {
                            mx[static_cast<size_t>(i)] = xp[j * inner + i];
                            arg[static_cast<size_t>(i)] = j;
                        }
                std::fill(yp, yp + len * inner, T(0));
                if (len > 0)
                    for (int64_t i = 0; i < inner; ++i) yp[arg[static_cast<size_t>(i)] * inner + i] = T(1);
            } else {
                std::fill(mx.begin(), mx.end(), -std::numeric_limits<T>::infinity());
                std::fill(sum.begin(), sum.end(), T(0));
                for (int64_t j = 0; j < len; ++j)
                    for (int64_t i = 0; i < inner; ++i) mx[static_cast<size_t>(i)] = std::max(mx[static_cast<size_t>(i)], xp[j * inner + i]);
                // exp(x - max) into y (LogSoftmax overwrites it below), summed per lane
                for (int64_t j = 0; j < len; ++j) {
                    T* yr = yp + j * inner;
                    for (int64_t i = 0; i < inner; ++i) yr[i] = xp[j * inner + i] - mx[static_cast<size_t>(i)];
                    exp_inplace(yr, inner);
                    for (int64_t i = 0; i < inner; ++i) sum[static_cast<size_t>(i)] += yr[i];
                }
                if constexpr (KIND == SmKind::softmax) {
                    for (int64_t i = 0; i < inner; ++i) sum[static_cast<size_t>(i)] = T(1) / sum[static_cast<size_t>(i)];
                    for (int64_t j = 0; j < len; ++j)
                        for (int64_t i = 0; i < inner; ++i) yp[j * inner + i] *= sum[static_cast<size_t>(i)];
                } else {
                    for (int64_t i = 0; i < inner; ++i) sum[static_cast<size_t>(i)] = std::log(sum[static_cast<size_t>(i)]);
                    for (int64_t j = 0; j < len; ++j)
                        for (int64_t i = 0; i < inner; ++i)
                            yp[j * inner + i] = (xp[j * inner + i] - mx[static_cast<size_t>(i)]) - sum[static_cast<size_t>(i)];
                }
            }
        }
    });
}

template <SmKind KIND>
void softmax_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    if (is_half(X.dtype)) return run_via_f32(ctx, softmax_run<KIND>);
    if (X.dtype != DType::f32 && X.dtype != DType::f64) unsupported_type(n, X.dtype);
    const int64_t r = static_cast<int64_t>(X.rank());
    const bool legacy = n.opset < 13;
    Tensor& Y = ctx.alloc_output(0, X.dtype, X.shape);
    int64_t outer = 1, len = 1, inner = 1;
    if (r == 0) {
        // a scalar: one row of one element
    } else {
        const int64_t axis = normalize_axis(n.attrs.get_int("axis", legacy ? 1 : -1), r, n);
        for (int64_t i = 0; i < axis; ++i) outer *= X.shape[static_cast<size_t>(i)];
        if (legacy) {
            for (int64_t i = axis; i < r; ++i) len *= X.shape[static_cast<size_t>(i)];
        } else {
            len = X.shape[static_cast<size_t>(axis)];
            for (int64_t i = axis + 1; i < r; ++i) inner *= X.shape[static_cast<size_t>(i)];
        }
    }
    if (X.numel() == 0) return;
    if (X.dtype == DType::f32)
        softmax_kernel<float, KIND>(X.data<float>(), Y.data<float>(), outer, len, inner, ctx.threads);
    else
        softmax_kernel<double, KIND>(X.data<double>(), Y.data<double>(), outer, len, inner, ctx.threads);
}

// ---------------------------------------------------------------------------------------------
// LRN

void lrn_check(const Node& n) {
    float_check(n);
    if (n.attrs.req_int("size") < 1) fail(n.where() + ": size must be >= 1");
}

void lrn_run(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& X = ctx.input(0);
    if (is_half(X.dtype)) return run_via_f32(ctx, lrn_run);
    if (X.dtype != DType::f32 && X.dtype != DType::f64) unsupported_type(n, X.dtype);
    if (X.rank() < 2) fail(n.where() + ": X of shape " + shape_str(X.shape) + " needs rank >= 2 ([N, C, ...])");
    const int64_t size = n.attrs.req_int("size");
    if (size < 1) fail(n.where() + ": size must be >= 1");
    const double alpha = n.attrs.get_float("alpha", 1e-4f), beta = n.attrs.get_float("beta", 0.75f),
                 bias = n.attrs.get_float("bias", 1.0f);
    const int64_t N = X.shape[0], C = X.shape[1];
    const int64_t S = N * C == 0 ? 0 : X.numel() / (N * C);
    const int64_t lo_off = (size - 1) / 2, hi_off = size - 1 - lo_off;  // floor / ceil of (size-1)/2
    Tensor& Y = ctx.alloc_output(0, X.dtype, X.shape);
    auto go = [&](auto zero) {
        using T = decltype(zero);
        const T* x = X.data<T>();
        T* y = Y.data<T>();
        const T k = static_cast<T>(alpha / static_cast<double>(size)), b0 = static_cast<T>(bias), be = static_cast<T>(beta);
        parallel_for(ctx.threads, N * C, std::max<int64_t>(1, 8192 / std::max<int64_t>(S * size, 1)), [&](int64_t p0, int64_t p1) {
            std::vector<T> sq(static_cast<size_t>(S));
            for (int64_t pl = p0; pl < p1; ++pl) {
                const int64_t nn = pl / C, c = pl % C;
                std::fill(sq.begin(), sq.end(), T(0));
                const int64_t c0 = std::max<int64_t>(0, c - lo_off), c1 = std::min<int64_t>(C - 1, c + hi_off);
                for (int64_t cc = c0; cc <= c1; ++cc) {
                    const T* xc = x + (nn * C + cc) * S;
                    for (int64_t i = 0; i < S; ++i) sq[static_cast<size_t>(i)] += xc[i] * xc[i];
                }
                const T* xp = x + pl * S;
                T* yp = y + pl * S;
                for (int64_t i = 0; i < S; ++i) yp[i] = xp[i] / std::pow(b0 + k * sq[static_cast<size_t>(i)], be);
            }
        });
    };
    if (X.dtype == DType::f32) go(0.0f);
    else go(0.0);
}

}  // namespace

void register_nn_ops() {
    register_op(OpDef{"Conv", 1, 1000, conv_check, conv_run});
    register_op(OpDef{"ConvTranspose", 1, 1000, convtranspose_check, convtranspose_run});
    register_op(OpDef{"Gemm", 1, 1000, gemm_check, gemm_run});
    register_op(OpDef{"MatMul", 1, 1000, matmul_check, matmul_run});
    register_op(OpDef{"MaxPool", 1, 1000, maxpool_check, maxpool_run});
    register_op(OpDef{"AveragePool", 1, 1000, avgpool_check, avgpool_run});
    register_op(OpDef{"LpPool", 1, 1000, lppool_check, lppool_run});
    register_op(OpDef{"GlobalAveragePool", 1, 1000, float_check, global_pool_run<false>});
    register_op(OpDef{"GlobalMaxPool", 1, 1000, float_check, global_pool_run<true>});
    register_op(OpDef{"BatchNormalization", 1, 1000, batchnorm_check, batchnorm_run});
    register_op(OpDef{"InstanceNormalization", 1, 1000, instancenorm_check, instancenorm_run});
    register_op(OpDef{"LayerNormalization", 17, 1000, layernorm_check, layernorm_run});
    register_op(OpDef{"Softmax", 1, 12, float_check, softmax_run<SmKind::softmax>});
    register_op(OpDef{"Softmax", 13, 1000, float_check, softmax_run<SmKind::softmax>});
    register_op(OpDef{"LogSoftmax", 1, 12, float_check, softmax_run<SmKind::logsoftmax>});
    register_op(OpDef{"LogSoftmax", 13, 1000, float_check, softmax_run<SmKind::logsoftmax>});
    register_op(OpDef{"Hardmax", 1, 12, float_check, softmax_run<SmKind::hardmax>});
    register_op(OpDef{"Hardmax", 13, 1000, float_check, softmax_run<SmKind::hardmax>});
    register_op(OpDef{"LRN", 1, 1000, lrn_check, lrn_run});
}

}  // namespace cpn::infer
