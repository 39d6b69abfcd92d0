// ops_elementwise.cpp: the elementwise CPU operators: arithmetic, math functions, activations,
// comparisons and logic, Where, Clip, the variadic Min/Max/Sum/Mean, Cast/CastLike, IsNaN/IsInf
// and Mod. Binary and ternary operators follow NumPy's multidirectional broadcasting (and the
// legacy broadcast/axis attributes before opset 7). Broadcasting collapses the operands' shapes
// into a few runs so the inner loop is always one of: both contiguous, one side scalar; the
// per-channel bias [C,1,1] against [N,C,H,W] becomes rows of H*W with a scalar operand.
// float16/bfloat16 are computed in float32 (converted on the way in and out).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "arith.hpp"
#include "ops.hpp"

namespace cpn::infer {
namespace {

// ---------------------------------------------------------------------------------------------
// Element types

constexpr uint32_t B(DType t) { return 1u << static_cast<int>(t); }
constexpr uint32_t kFloat = B(DType::f32) | B(DType::f64);    // computed natively
constexpr uint32_t kHalf = B(DType::f16) | B(DType::bf16);    // computed in float32
constexpr uint32_t kSInt = B(DType::i8) | B(DType::i16) | B(DType::i32) | B(DType::i64);
constexpr uint32_t kUInt = B(DType::u8) | B(DType::u16) | B(DType::u32) | B(DType::u64);
constexpr uint32_t kBool = B(DType::boolean);
constexpr uint32_t kNum = kFloat | kSInt | kUInt;
constexpr uint32_t kSigned = kFloat | kSInt;

constexpr int64_t kGrainCheap = int64_t{1} << 16;  // elements per thread, cheap ops
constexpr int64_t kGrainHeavy = int64_t{1} << 13;  // transcendental ops

// Calls f(T{}) with the C++ type of `t` when t is in the compile-time mask M; bool is uint8_t.
template <uint32_t M, class F> bool visit(DType t, F&& f) {
    switch (t) {
#define CPN_VISIT_CASE(D, T)                                      \
    case DType::D:                                                \
        if constexpr ((M & B(DType::D)) != 0) {                   \
            f(T{});                                               \
            return true;                                          \
        } else {                                                  \
            return false;                                         \
        }
        CPN_VISIT_CASE(f32, float)
        CPN_VISIT_CASE(f64, double)
        CPN_VISIT_CASE(i8, int8_t)
        CPN_VISIT_CASE(i16, int16_t)
        CPN_VISIT_CASE(i32, int32_t)
        CPN_VISIT_CASE(i64, int64_t)
        CPN_VISIT_CASE(u8, uint8_t)
        CPN_VISIT_CASE(u16, uint16_t)
        CPN_VISIT_CASE(u32, uint32_t)
        CPN_VISIT_CASE(u64, uint64_t)
        CPN_VISIT_CASE(boolean, uint8_t)
#undef CPN_VISIT_CASE
        default: return false;
    }
}

bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }

[[noreturn]] void type_unsupported(const Node& n, const char* what, DType t) {
    fail_unsupported(n.where() + ": " + what + " of type " + dtype_name(t) + " is not supported");
}

// Load-time check: input i's type (when known) must be in mask.
void check_input_type(const Node& n, size_t i, uint32_t mask) {
    if (i >= n.in_types.size()) return;
    const DType t = n.in_types[i];
    if (t == DType::undefined) return;
    if ((mask & B(t)) == 0)
        fail_unsupported(n.where() + ": input " + std::to_string(i) + " of type " + dtype_name(t) + " is not supported");
}

std::function<void(const Node&)> check_types(uint32_t mask, size_t n_inputs = 1) {
    return [mask, n_inputs](const Node& n) {
        for (size_t i = 0; i < n_inputs; ++i) check_input_type(n, i, mask);
    };
}

Tensor to_f32(const Tensor& t) {
    Tensor r = make_tensor(DType::f32, t.shape);
    const int64_t n = t.numel();
    const uint16_t* s = t.data<uint16_t>();
    float* d = r.data<float>();
    if (t.dtype == DType::f16)
        for (int64_t i = 0; i < n; ++i) d[i] = half_to_float(s[i]);
    else
        for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_float(s[i]);
    return r;
}

void from_f32(const float* s, uint16_t* d, int64_t n, DType t) {
    if (t == DType::f16)
        for (int64_t i = 0; i < n; ++i) d[i] = float_to_half(s[i]);
    else
        for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(s[i]);
}

using RunFn = std::function<void(OpContext&)>;

// Runs f with every float16/bfloat16 input converted to float32; the float32 outputs go back
// to input 0's half type when input 0 was half (bool outputs and the like stay as they are).
RunFn with_half(RunFn f) {
    return [f](OpContext& ctx) {
        bool any = false;
        for (const Tensor* t : ctx.in) any = any || (t != nullptr && is_half(t->dtype));
        if (!any) return f(ctx);
        std::vector<Tensor> conv(ctx.in.size());
        std::vector<const Tensor*> in2(ctx.in.size());
        for (size_t i = 0; i < ctx.in.size(); ++i) {
            if (ctx.in[i] != nullptr && is_half(ctx.in[i]->dtype)) {
                conv[i] = to_f32(*ctx.in[i]);
                in2[i] = &conv[i];
            } else {
                in2[i] = ctx.in[i];
            }
        }
        std::vector<Tensor> out2(ctx.out.size());
        OpContext c2{ctx.node, in2, out2, nullptr, ctx.threads};
        f(c2);
        const DType ht = ctx.has_in(0) && is_half(ctx.in[0]->dtype) ? ctx.in[0]->dtype : DType::undefined;
        for (size_t i = 0; i < out2.size(); ++i) {
            if (!out2[i].defined()) continue;
            if (ht != DType::undefined && out2[i].dtype == DType::f32) {
                Tensor& o = ctx.alloc_output(i, ht, out2[i].shape);
                from_f32(out2[i].data<float>(), o.data<uint16_t>(), o.numel(), ht);
            } else {
                ctx.out[i] = out2[i];
            }
        }
    };
}

void reg(const char* op, int since, int until, std::function<void(const Node&)> check, RunFn run, bool half = true) {
    register_op(OpDef{op, since, until, std::move(check), half ? with_half(std::move(run)) : std::move(run)});
}

// ---------------------------------------------------------------------------------------------
// Vector float math. GCC does not vectorise libm's expf, nor (under the default
// -ftrapping-math) chains of float selects, so exp/tanh/sigmoid/erf for float32 are written
// with GCC's portable vector extension, four lanes (SSE2 baseline; NEON elsewhere).

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

inline v4f splat(float c) { return v4f{c, c, c, c}; }
inline v4f v_abs(v4f x) { return (v4f)((v4i)x & 0x7fffffff); }
inline v4f v_clamp(v4f x, float lo, float hi) {
    x = x < lo ? splat(lo) : x;  // NaN stays NaN
    return x > hi ? splat(hi) : x;
}

// exp(x) = 2^n * exp(r), r = x - n ln2 (Cody-Waite), exp(r) by Cephes' polynomial (about 1 ulp);
// 2^n is built from bits in two halves, so n from -150 (denormals, then 0) to 128 (overflow to
// inf) needs no selects. NaN propagates through the arithmetic.
inline v4f v_exp(v4f x) {
    const v4f xc = v_clamp(x, -104.0f, 89.0f);
    const v4f t = xc * 1.44269504088896341f + 12582912.0f;  // + 1.5 * 2^23 rounds to an integer
    const v4i n = (v4i)t - 0x4B400000;
    const v4f fn = t - 12582912.0f;
    v4f r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    v4f p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const v4i n1 = n >> 1, n2 = n - n1;
    const v4f s1 = (v4f)((n1 + 127) << 23), s2 = (v4f)((n2 + 127) << 23);
    return p * s1 * s2;
}

// tanh: Cephes' odd polynomial below 0.625, 1 - 2/(exp(2|x|) + 1) above.
inline v4f v_tanh(v4f x) {
    const v4f ax = v_abs(x);
    const v4f z = x * x;
    v4f p = splat(-5.70498872745e-3f);
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const v4f small = p * z * x + x;
    const v4f e = v_exp(ax + ax);
    v4f big = 1.0f - 2.0f / (e + 1.0f);
    big = (v4f)((v4i)big | ((v4i)x & (int32_t)0x80000000));  // x's sign
    return ax < 0.625f ? small : big;
}

inline v4f v_sigmoid(v4f x) { return 1.0f / (1.0f + v_exp(-x)); }

// erf: the rational approximation Eigen and XLA use for float (a few ulp); |x| >= 4 is +-1.
inline v4f v_erf(v4f a) {
    const v4f x = v_clamp(a, -4.0f, 4.0f);
    const v4f x2 = x * x;
    v4f p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = x2 * p + -2.10102402082508e-06f;
    p = x2 * p + -5.69250639462346e-05f;
    p = x2 * p + -7.34990630326855e-04f;
    p = x2 * p + -2.95459980854025e-03f;
    p = x2 * p + -1.60960333262415e-02f;
    p = x * p;
    v4f q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
    q = x2 * q + -1.68282697438203e-03f;
    q = x2 * q + -7.37332916720468e-03f;
    q = x2 * q + -1.42647390514189e-02f;
    return p / q;
}

// mish = x tanh(softplus(x)) = x n / (n + 2) with n = e^x (e^x + 2); x itself above 20.
inline v4f v_mish(v4f x) {
    const v4f e = v_exp(x);
    const v4f n = e * (e + 2.0f);
    const v4f m = x * n / (n + 2.0f);
    return x > 20.0f ? x : m;
}

inline v4f v_gelu_tanh(v4f x) {
    return 0.5f * x * (1.0f + v_tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
inline v4f v_gelu_erf(v4f x) { return 0.5f * x * (1.0f + v_erf(x * 0.7071067811865476f)); }

// y = vf(x) over float32 arrays, four at a time (the tail padded).
template <class VF> void map_v4(const float* x, float* y, int64_t n, int threads, int64_t grain, const VF& vf) {
    parallel_for(threads, n, grain, [&](int64_t b, int64_t e) {
        int64_t i = b;
        for (; i + 4 <= e; i += 4) {
            v4f v;
            std::memcpy(&v, x + i, sizeof v);
            v = vf(v);
            std::memcpy(y + i, &v, sizeof v);
        }
        if (i < e) {
            v4f v = splat(0);
            const size_t m = static_cast<size_t>(e - i) * sizeof(float);
            std::memcpy(&v, x + i, m);
            v = vf(v);
            std::memcpy(y + i, &v, m);
        }
    });
}

template <class T> inline T m_softplus(T x) {
    return x > T(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

// ---------------------------------------------------------------------------------------------
// Loops

template <class TI, class TO, class F>
void map1(const TI* x, TO* y, int64_t n, int threads, int64_t grain, const F& f) {
    parallel_for(threads, n, grain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
    });
}

// Broadcasting plan for K operands against an output shape: the output dims (ones dropped)
// merged into runs where every operand is either broadcast or not throughout; per run, each
// operand's element stride (0 where broadcast). The innermost stride is always 0 or 1.
template <int K> struct Plan {
    std::vector<int64_t> dims;
    std::array<std::vector<int64_t>, K> st;
};

template <int K> Plan<K> make_plan(const Shape& out, const std::array<const Shape*, K>& in) {
    Plan<K> p;
    std::vector<unsigned> masks;
    const size_t r = out.size();
    for (size_t i = 0; i < r; ++i) {
        const int64_t d = out[i];
        if (d == 1) continue;
        unsigned m = 0;
        for (int k = 0; k < K; ++k) {
            const Shape& s = *in[k];
            const size_t off = r - s.size();
            const int64_t sd = i < off ? 1 : s[i - off];
            if (sd == 1) m |= 1u << k;
        }
        if (!masks.empty() && masks.back() == m) {
            p.dims.back() *= d;
        } else {
            p.dims.push_back(d);
            masks.push_back(m);
        }
    }
    if (p.dims.empty()) {
        p.dims.push_back(1);
        masks.push_back((1u << K) - 1);
    }
    const size_t nd = p.dims.size();
    for (int k = 0; k < K; ++k) {
        p.st[k].assign(nd, 0);
        int64_t acc = 1;
        for (size_t d = nd; d-- > 0;) {
            if ((masks[d] >> k) & 1u) continue;
            p.st[k][d] = acc;
            acc *= p.dims[d];
        }
    }
    return p;
}

// Calls row(pos, offsets, n, inner_strides) for the output elements [begin, end) split at the
// innermost run's boundaries.
template <int K, class Row> void walk(const Plan<K>& p, int64_t begin, int64_t end, const Row& row) {
    const size_t nd = p.dims.size();
    std::vector<int64_t> idx(nd);
    std::array<int64_t, K> off{};
    int64_t rem = begin;
    for (size_t d = nd; d-- > 0;) {
        idx[d] = rem % p.dims[d];
        rem /= p.dims[d];
        for (int k = 0; k < K; ++k) off[k] += idx[d] * p.st[k][d];
    }
    const size_t last = nd - 1;
    const int64_t inner = p.dims[last];
    std::array<int64_t, K> ist;
    for (int k = 0; k < K; ++k) ist[k] = p.st[k][last];
    int64_t pos = begin;
    while (pos < end) {
        const int64_t n = std::min(inner - idx[last], end - pos);
        row(pos, off, n, ist);
        pos += n;
        for (int k = 0; k < K; ++k) off[k] += n * ist[k];
        idx[last] += n;
        size_t d = last;
        while (d > 0 && idx[d] == p.dims[d]) {
            for (int k = 0; k < K; ++k) off[k] -= p.dims[d] * p.st[k][d];
            idx[d] = 0;
            --d;
            ++idx[d];
            for (int k = 0; k < K; ++k) off[k] += p.st[k][d];
        }
    }
}

template <class TA, class TB, class TO, class F>
inline void bin_row(const TA* a, int64_t sa, const TB* b, int64_t sb, TO* o, int64_t n, const F& f) {
    if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
    } else if (sa == 0 && sb == 1) {
        const TA av = a[0];
        for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
    } else if (sa == 1 && sb == 0) {
        const TB bv = b[0];
        for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
    } else {
        const TO v = f(a[0], b[0]);
        for (int64_t i = 0; i < n; ++i) o[i] = v;
    }
}

// o (already allocated with the broadcast shape) = f(a, b); a and b broadcast to o's shape.
// o may be a itself (variadic folds).
template <class TA, class TB, class TO, class F>
void bcast2(const TA* pa, const Shape& sa, const TB* pb, const Shape& sb, TO* po, const Shape& so, int threads,
            int64_t grain, const F& f) {
    const int64_t n = checked_numel(so);
    if (n <= 0) return;
    const Plan<2> p = make_plan<2>(so, {&sa, &sb});
    parallel_for(threads, n, grain, [&](int64_t b0, int64_t e0) {
        walk<2>(p, b0, e0, [&](int64_t pos, const std::array<int64_t, 2>& off, int64_t len,
                               const std::array<int64_t, 2>& ist) {
            bin_row(pa + off[0], ist[0], pb + off[1], ist[1], po + pos, len, f);
        });
    });
}

// The second operand's shape: before opset 7 the binary operators broadcast only with
// broadcast=1, B's dims then lining up with A's from `axis` (default: the trailing ones).
Shape operand_shape_b(const Node& n, const Tensor& a, const Tensor& b) {
    if (n.opset >= 7) return b.shape;
    if (n.attrs.get_int("broadcast", 0) == 0) {
        if (a.shape != b.shape && b.numel() != 1)
            fail(n.where() + ": shapes " + shape_str(a.shape) + " and " + shape_str(b.shape) +
                 " differ and broadcast is not set");
        return b.shape;
    }
    const int64_t ra = static_cast<int64_t>(a.rank()), rb = static_cast<int64_t>(b.rank());
    const int64_t axis = n.attrs.has("axis") ? n.attrs.get_int("axis", 0) : ra - rb;
    const int64_t ax = axis < 0 ? axis + ra : axis;
    if (ax < 0 || ax + rb > ra)
        fail(n.where() + ": cannot broadcast " + shape_str(b.shape) + " into " + shape_str(a.shape) + " at axis " +
             std::to_string(axis));
    Shape s(static_cast<size_t>(ra), 1);
    for (int64_t i = 0; i < rb; ++i) s[static_cast<size_t>(ax + i)] = b.shape[static_cast<size_t>(i)];
    return s;
}

// ---------------------------------------------------------------------------------------------
// Functors

struct AddF {
    template <class T> T operator()(T a, T b) const {
        return wadd(a, b);
    }
};
struct SubF {
    template <class T> T operator()(T a, T b) const {
        return wsub(a, b);
    }
};
struct MulF {
    template <class T> T operator()(T a, T b) const {
        return wmul(a, b);
    }
};
// Integer division truncates (C, and NumPy's astype of the quotient); x/0 gives 0 rather than
// trapping, INT_MIN/-1 wraps.
struct DivF {
    template <class T> T operator()(T a, T b) const {
        if constexpr (is_flt<T>) {
            return a / b;
        } else {
            if (b == 0) return T(0);
            if constexpr (std::is_signed_v<T>) {
                if (b == T(-1)) return wneg(a);
            }
            return static_cast<T>(a / b);
        }
    }
};
// Mod with fmod=1: the remainder has the dividend's sign (C fmod / %).
struct ModTruncF {
    template <class T> T operator()(T a, T b) const {
        if constexpr (is_flt<T>) {
            return std::fmod(a, b);
        } else {
            if (b == 0) return T(0);
            if constexpr (std::is_signed_v<T>) {
                if (b == T(-1)) return T(0);
            }
            return static_cast<T>(a % b);
        }
    }
};
// Mod with fmod=0: the remainder has the divisor's sign (Python / NumPy mod).
struct ModFloorF {
    template <class T> T operator()(T a, T b) const {
        if constexpr (is_flt<T>) {
            T r = std::fmod(a, b);
            if (r != 0 && ((r < 0) != (b < 0))) r += b;
            return r;
        } else {
            if (b == 0) return T(0);
            if constexpr (std::is_signed_v<T>) {
                if (b == T(-1)) return T(0);
                T r = static_cast<T>(a % b);
                if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
                return r;
            } else {
                return static_cast<T>(a % b);
            }
        }
    }
};
struct MaxF {
    template <class T> T operator()(T a, T b) const {
        if constexpr (is_flt<T>) return (a < b || b != b) ? b : a; else return a < b ? b : a;
    }
};
struct MinF {
    template <class T> T operator()(T a, T b) const {
        if constexpr (is_flt<T>) return (b < a || b != b) ? b : a; else return b < a ? b : a;
    }
};
struct EqF { template <class T> uint8_t operator()(T a, T b) const { return a == b; } };
struct LtF { template <class T> uint8_t operator()(T a, T b) const { return a < b; } };
struct GtF { template <class T> uint8_t operator()(T a, T b) const { return a > b; } };
struct LeF { template <class T> uint8_t operator()(T a, T b) const { return a <= b; } };
struct GeF { template <class T> uint8_t operator()(T a, T b) const { return a >= b; } };
struct AndF { uint8_t operator()(uint8_t a, uint8_t b) const { return (a != 0) & (b != 0); } };
struct OrF { uint8_t operator()(uint8_t a, uint8_t b) const { return (a != 0) | (b != 0); } };
struct XorF { uint8_t operator()(uint8_t a, uint8_t b) const { return (a != 0) != (b != 0); } };

template <class T> inline T ipow(T a, int64_t e) {
    if (e < 0) {
        if (a == T(1)) return T(1);
        if constexpr (std::is_signed_v<T>) {
            if (a == T(-1)) return (e & 1) ? T(-1) : T(1);
        }
        return T(0);
    }
    Wide<T> r = 1, base = static_cast<Wide<T>>(a);
    while (e > 0) {
        if (e & 1) r *= base;
        base *= base;
        e >>= 1;
    }
    return static_cast<T>(r);
}

struct PowF {
    template <class T, class U> T operator()(T a, U b) const {
        if constexpr (std::is_same_v<T, U> && is_flt<T>) {
            return std::pow(a, b);
        } else if constexpr (!is_flt<T> && !is_flt<U>) {
            return ipow(a, static_cast<int64_t>(b));
        } else if constexpr (is_flt<T>) {
            return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
        } else {
            return convert<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
        }
    }
};

// ---------------------------------------------------------------------------------------------
// Runners

// Output 0 = f(input 0, input 1) with broadcasting; both inputs of one type in mask; the output
// has that type, or bool when BoolOut.
template <uint32_t M, bool BoolOut, class F> void run_binary(OpContext& ctx, const F& f, int64_t grain = kGrainCheap) {
    const Tensor& a = ctx.input(0);
    const Tensor& b = ctx.input(1);
    if (a.dtype != b.dtype)
        fail(ctx.node.where() + ": inputs have different types " + dtype_name(a.dtype) + " and " + dtype_name(b.dtype));
    const Shape sb = operand_shape_b(ctx.node, a, b);
    const Shape so = broadcast_shapes(a.shape, sb, ctx.node);
    const bool ok = visit<M>(a.dtype, [&](auto tag) {
        using T = decltype(tag);
        using R = std::conditional_t<BoolOut, uint8_t, T>;
        Tensor& o = ctx.alloc_output(0, BoolOut ? DType::boolean : a.dtype, so);
        bcast2(a.data<T>(), a.shape, b.data<T>(), sb, o.data<R>(), so, ctx.threads, grain, f);
    });
    if (!ok) type_unsupported(ctx.node, "input", a.dtype);
}

// Output 0 = f(input 0), same type.
template <uint32_t M, class F> void run_unary(OpContext& ctx, const F& f, int64_t grain = kGrainHeavy) {
    const Tensor& x = ctx.input(0);
    const bool ok = visit<M>(x.dtype, [&](auto tag) {
        using T = decltype(tag);
        Tensor& o = ctx.alloc_output(0, x.dtype, x.shape);
        map1(x.data<T>(), o.data<T>(), x.numel(), ctx.threads, grain, [&](T v) { return static_cast<T>(f(v)); });
    });
    if (!ok) type_unsupported(ctx.node, "input", x.dtype);
}

template <class F> void reg_unary_float(const char* op, int since, const F& f, int64_t grain = kGrainHeavy) {
    reg(op, since, 1000, check_types(kFloat | kHalf), [f, grain](OpContext& ctx) { run_unary<kFloat>(ctx, f, grain); });
}

// float32 through the vector kernel vf, float64 through the scalar f.
template <class F, class VF> void run_unary_vec(OpContext& ctx, const F& f, const VF& vf) {
    const Tensor& x = ctx.input(0);
    if (x.dtype == DType::f32) {
        Tensor& o = ctx.alloc_output(0, x.dtype, x.shape);
        map_v4(x.data<float>(), o.data<float>(), x.numel(), ctx.threads, kGrainHeavy, vf);
        return;
    }
    run_unary<kFloat>(ctx, f);
}

template <class F, class VF> void reg_unary_vec(const char* op, int since, const F& f, const VF& vf) {
    reg(op, since, 1000, check_types(kFloat | kHalf), [f, vf](OpContext& ctx) { run_unary_vec(ctx, f, vf); });
}

// Variadic Min/Max/Sum/Mean: broadcast over all inputs, folded pairwise into the output.
template <uint32_t M, class F> void run_variadic(OpContext& ctx, const F& f, bool mean) {
    const size_t n = ctx.n_in();
    if (n == 0) fail(ctx.node.where() + ": needs at least one input");
    const Tensor& x0 = ctx.input(0);
    Shape so = x0.shape;
    for (size_t i = 1; i < n; ++i) {
        const Tensor& xi = ctx.input(i);
        if (xi.dtype != x0.dtype)
            fail(ctx.node.where() + ": inputs have different types " + dtype_name(x0.dtype) + " and " +
                 dtype_name(xi.dtype));
        so = broadcast_shapes(so, xi.shape, ctx.node);
    }
    const bool ok = visit<M>(x0.dtype, [&](auto tag) {
        using T = decltype(tag);
        Tensor& o = ctx.alloc_output(0, x0.dtype, so);
        T* po = o.data<T>();
        if (n == 1) {
            bcast2(x0.data<T>(), x0.shape, x0.data<T>(), x0.shape, po, so, ctx.threads, kGrainCheap,
                   [](T a, T) { return a; });
        } else {
            bcast2(x0.data<T>(), x0.shape, ctx.input(1).data<T>(), ctx.input(1).shape, po, so, ctx.threads,
                   kGrainCheap, f);
            for (size_t i = 2; i < n; ++i)
                bcast2(static_cast<const T*>(po), so, ctx.input(i).data<T>(), ctx.input(i).shape, po, so,
                       ctx.threads, kGrainCheap, f);
        }
        if constexpr (is_flt<T>) {
            if (mean) {
                const T d = static_cast<T>(n);
                map1(static_cast<const T*>(po), po, o.numel(), ctx.threads, kGrainCheap, [d](T v) { return v / d; });
            }
        }
    });
    if (!ok) type_unsupported(ctx.node, "input", x0.dtype);
}

void run_pow(OpContext& ctx) {
    const Tensor& a = ctx.input(0);
    const Tensor& b = ctx.input(1);
    const Shape sb = operand_shape_b(ctx.node, a, b);
    const Shape so = broadcast_shapes(a.shape, sb, ctx.node);
    constexpr uint32_t kBase = kFloat | B(DType::i32) | B(DType::i64);
    // Fast paths: float base, scalar exponent 2, 1, 0.5, 3.
    if ((a.dtype == DType::f32 || a.dtype == DType::f64) && b.numel() == 1 && so == a.shape &&
        ((kNum & B(b.dtype)) != 0)) {
        const double e = number_at(b, 0);
        if (e == 2.0 || e == 1.0 || e == 0.5 || e == 3.0) {
            visit<kFloat>(a.dtype, [&](auto tag) {
                using T = decltype(tag);
                Tensor& o = ctx.alloc_output(0, a.dtype, so);
                const T* x = a.data<T>();
                T* y = o.data<T>();
                const int64_t n = a.numel();
                if (e == 2.0)
                    map1(x, y, n, ctx.threads, kGrainCheap, [](T v) { return v * v; });
                else if (e == 3.0)
                    map1(x, y, n, ctx.threads, kGrainCheap, [](T v) { return v * v * v; });
                else if (e == 1.0)
                    map1(x, y, n, ctx.threads, kGrainCheap, [](T v) { return v; });
                else
                    map1(x, y, n, ctx.threads, kGrainCheap, [](T v) { return std::sqrt(v); });
            });
            return;
        }
    }
    // The exponent as the base's type, int64 or double (fewer instantiations).
    Tensor bconv;
    const Tensor* bp = &b;
    if (b.dtype != a.dtype) {
        if ((kSInt | kUInt | kBool) & B(b.dtype)) {
            bconv = make_tensor(DType::i64, b.shape);
            for (int64_t i = 0; i < b.numel(); ++i) bconv.data<int64_t>()[i] = int_at(b, i);
        } else if ((kFloat & B(b.dtype)) != 0) {
            bconv = make_tensor(DType::f64, b.shape);
            for (int64_t i = 0; i < b.numel(); ++i) bconv.data<double>()[i] = number_at(b, i);
        } else {
            type_unsupported(ctx.node, "exponent", b.dtype);
        }
        bp = &bconv;
    }
    const bool ok = visit<kBase>(a.dtype, [&](auto tag) {
        using T = decltype(tag);
        const bool ok2 = visit<kBase>(bp->dtype, [&](auto tag2) {
            using U = decltype(tag2);
            Tensor& o = ctx.alloc_output(0, a.dtype, so);
            bcast2(a.data<T>(), a.shape, bp->data<U>(), sb, o.data<T>(), so, ctx.threads, kGrainHeavy, PowF{});
        });
        if (!ok2) type_unsupported(ctx.node, "exponent", b.dtype);
    });
    if (!ok) type_unsupported(ctx.node, "base", a.dtype);
}

void run_where(OpContext& ctx) {
    const Tensor& c = ctx.input(0);
    const Tensor& x = ctx.input(1);
    const Tensor& y = ctx.input(2);
    if (c.dtype != DType::boolean) fail(ctx.node.where() + ": condition must be bool, got " + dtype_name(c.dtype));
    if (x.dtype != y.dtype)
        fail(ctx.node.where() + ": X and Y have different types " + dtype_name(x.dtype) + " and " + dtype_name(y.dtype));
    if (!dtype_supported(x.dtype)) type_unsupported(ctx.node, "input", x.dtype);
    const Shape so = broadcast_shapes(broadcast_shapes(c.shape, x.shape, ctx.node), y.shape, ctx.node);
    Tensor& o = ctx.alloc_output(0, x.dtype, so);
    const int64_t n = o.numel();
    if (n == 0) return;
    const Plan<3> p = make_plan<3>(so, {&c.shape, &x.shape, &y.shape});
    auto go = [&](auto tag) {
        using T = decltype(tag);
        const uint8_t* pc = c.data<uint8_t>();
        const T* px = static_cast<const T*>(x.raw());
        const T* py = static_cast<const T*>(y.raw());
        T* po = static_cast<T*>(o.raw());
        parallel_for(ctx.threads, n, kGrainCheap, [&](int64_t b0, int64_t e0) {
            walk<3>(p, b0, e0, [&](int64_t pos, const std::array<int64_t, 3>& off, int64_t len,
                                   const std::array<int64_t, 3>& ist) {
                const uint8_t* cc = pc + off[0];
                const T* xx = px + off[1];
                const T* yy = py + off[2];
                T* oo = po + pos;
                if (ist[0] == 1 && ist[1] == 1 && ist[2] == 1) {
                    for (int64_t i = 0; i < len; ++i) oo[i] = cc[i] ? xx[i] : yy[i];
                } else {
                    for (int64_t i = 0; i < len; ++i) oo[i] = cc[i * ist[0]] ? xx[i * ist[1]] : yy[i * ist[2]];
                }
            });
        });
    };
    switch (dtype_size(x.dtype)) {
        case 1: go(uint8_t{}); break;
        case 2: go(uint16_t{}); break;
        case 4: go(uint32_t{}); break;
        case 8: go(uint64_t{}); break;
        default: type_unsupported(ctx.node, "input", x.dtype);
    }
}

// Clip: opset < 11 bounds from the min/max attributes, later from optional scalar inputs.
void run_clip(OpContext& ctx) {
    const Tensor& x = ctx.input(0);
    const bool ok = visit<kNum>(x.dtype, [&](auto tag) {
        using T = decltype(tag);
        T lo, hi;
        if constexpr (is_flt<T>) {
            lo = -std::numeric_limits<T>::infinity();
            hi = std::numeric_limits<T>::infinity();
        } else {
            lo = std::numeric_limits<T>::lowest();
            hi = std::numeric_limits<T>::max();
        }
        if (ctx.node.opset < 11) {
            if (ctx.node.attrs.has("min")) lo = static_cast<T>(ctx.node.attrs.get_float("min", 0));
            if (ctx.node.attrs.has("max")) hi = static_cast<T>(ctx.node.attrs.get_float("max", 0));
        } else {
            for (size_t i = 1; i <= 2; ++i) {
                if (!ctx.has_in(i)) continue;
                const Tensor& t = ctx.input(i);
                if (t.dtype != x.dtype)
                    fail(ctx.node.where() + ": bound has type " + dtype_name(t.dtype) + ", input " + dtype_name(x.dtype));
                if (t.numel() != 1)
                    fail(ctx.node.where() + ": bound must be a scalar, got shape " + shape_str(t.shape));
                (i == 1 ? lo : hi) = t.data<T>()[0];
            }
        }
        Tensor& o = ctx.alloc_output(0, x.dtype, x.shape);
        map1(x.data<T>(), o.data<T>(), x.numel(), ctx.threads, kGrainCheap, [lo, hi](T v) {
            const T a = v < lo ? lo : v;
            return a > hi ? hi : a;
        });
    });
    if (!ok) type_unsupported(ctx.node, "input", x.dtype);
}

// ---------------------------------------------------------------------------------------------
// Cast

DType cast_target(const Node& n) {
    auto it = n.attrs.map.find("to");
    if (it == n.attrs.map.end()) fail(n.where() + ": attribute 'to' is required");
    if (it->second.kind == Attr::s) {  // opset 1: the type's name
        static const std::pair<const char*, DType> names[] = {
            {"FLOAT", DType::f32},   {"UINT8", DType::u8},    {"INT8", DType::i8},     {"UINT16", DType::u16},
            {"INT16", DType::i16},   {"INT32", DType::i32},   {"INT64", DType::i64},   {"STRING", DType::string},
            {"BOOL", DType::boolean}, {"FLOAT16", DType::f16}, {"DOUBLE", DType::f64}, {"UINT32", DType::u32},
            {"UINT64", DType::u64},  {"BFLOAT16", DType::bf16}};
        for (const auto& [s, t] : names)
            if (it->second.sv == s) return t;
        fail_unsupported(n.where() + ": cast to '" + it->second.sv + "' is not supported");
    }
    return static_cast<DType>(n.attrs.req_int("to"));
}

void check_cast_types(const Node& n, DType from, DType to) {
    if (from != DType::undefined && !dtype_supported(from))
        fail_unsupported(n.where() + ": cast from " + dtype_name(from) + " is not supported");
    if (!dtype_supported(to)) {
        const std::string nm = to == DType::string ? std::string("string") : "type code " + std::to_string(int(to));
        fail_unsupported(n.where() + ": cast to " + nm + " is not supported");
    }
}

constexpr uint32_t kPlain = kNum;  // cast's directly handled types (bool and half separately)

void cast_into(const Tensor& x, Tensor& o, int threads, const Node& node) {
    const int64_t n = x.numel();
    const DType to = o.dtype;
    if (x.dtype == to) {
        if (n > 0) std::memcpy(o.raw(), x.raw(), x.bytes());
        return;
    }
    if (is_half(x.dtype)) {
        const Tensor f = to_f32(x);
        if (to == DType::f32) {
            if (n > 0) std::memcpy(o.raw(), f.raw(), f.bytes());
            return;
        }
        cast_into(f, o, threads, node);
        return;
    }
    if (is_half(to)) {
        Tensor f = make_tensor(DType::f32, x.shape);
        cast_into(x, f, threads, node);
        if (to == DType::bf16) {
            // Cast to bfloat16 truncates the low 16 bits (NaN kept quiet), as ONNX's reference
            // does up to opset 18 (its test data says so); opset 19 changed it to rounding.
            const auto* bits = f.data<uint32_t>();
            auto* d = o.data<uint16_t>();
            for (int64_t i = 0; i < n; ++i) {
                const bool nan = (bits[i] & 0x7fffffffu) > 0x7f800000u;
                d[i] = static_cast<uint16_t>(bits[i] >> 16) | (nan ? 0x40 : 0);
            }
            return;
        }
        from_f32(f.data<float>(), o.data<uint16_t>(), n, to);
        return;
    }
    if (to == DType::boolean) {
        const bool ok = visit<kPlain>(x.dtype, [&](auto tag) {
            using S = decltype(tag);
            map1(x.data<S>(), o.data<uint8_t>(), n, threads, kGrainCheap, [](S v) { return uint8_t(v != S(0)); });
        });
        if (!ok) fail_unsupported(node.where() + ": cast from " + dtype_name(x.dtype) + " is not supported");
        return;
    }
    if (x.dtype == DType::boolean) {
        const bool ok = visit<kPlain>(to, [&](auto tag) {
            using D = decltype(tag);
            map1(x.data<uint8_t>(), o.data<D>(), n, threads, kGrainCheap, [](uint8_t v) { return D(v != 0); });
        });
        if (!ok) fail_unsupported(node.where() + ": cast to " + dtype_name(to) + " is not supported");
        return;
    }
    bool ok2 = true;
    const bool ok = visit<kPlain>(x.dtype, [&](auto stag) {
        using S = decltype(stag);
        ok2 = visit<kPlain>(to, [&](auto dtag) {
            using D = decltype(dtag);
            map1(x.data<S>(), o.data<D>(), n, threads, kGrainCheap, [](S v) { return convert<D>(v); });
        });
    });
    if (!ok || !ok2)
        fail_unsupported(node.where() + ": cast from " + dtype_name(x.dtype) + " to " + dtype_name(to) +
                         " is not supported");
}

void run_cast(OpContext& ctx, DType to) {
    const Tensor& x = ctx.input(0);
    check_cast_types(ctx.node, x.dtype, to);
    if (x.dtype == to) {
        ctx.alias_output(0, x, x.shape);
        return;
    }
    Tensor& o = ctx.alloc_output(0, to, x.shape);
    cast_into(x, o, ctx.threads, ctx.node);
}

// ---------------------------------------------------------------------------------------------

float attr_f(const OpContext& ctx, const char* k, float d) { return ctx.node.attrs.get_float(k, d); }

void register_arith() {
    const auto chk2 = check_types(kNum | kHalf, 2);
    reg("Add", 1, 1000, chk2, [](OpContext& c) { run_binary<kNum, false>(c, AddF{}); });
    reg("Sub", 1, 1000, chk2, [](OpContext& c) { run_binary<kNum, false>(c, SubF{}); });
    reg("Mul", 1, 1000, chk2, [](OpContext& c) { run_binary<kNum, false>(c, MulF{}); });
    reg("Div", 1, 1000, chk2, [](OpContext& c) { run_binary<kNum, false>(c, DivF{}); });
    reg("Pow", 1, 1000,
        [](const Node& n) {
            check_input_type(n, 0, kFloat | kHalf | B(DType::i32) | B(DType::i64));
            check_input_type(n, 1, kNum | kHalf);
        },
        run_pow);
    reg("Mod", 10, 1000, chk2, [](OpContext& c) {
        if (c.node.attrs.get_int("fmod", 0) != 0)
            run_binary<kNum, false>(c, ModTruncF{});
        else
            run_binary<kNum, false>(c, ModFloorF{});
    });
    reg("PRelu", 1, 1000, check_types(kSigned | kHalf | kUInt, 2), [](OpContext& ctx) {
        const Tensor& x = ctx.input(0);
        const Tensor& s = ctx.input(1);
        if (s.dtype != x.dtype)
            fail(ctx.node.where() + ": slope has type " + dtype_name(s.dtype) + ", input " + dtype_name(x.dtype));
        Shape ss = s.shape;
        // Before opset 7 a 1-D slope of C values is per channel (axis 1).
        if (ctx.node.opset < 7 && ss.size() == 1 && x.rank() >= 2 && ss[0] == x.shape[1] && ss[0] != x.shape.back()) {
            ss.assign(x.rank() - 1, 1);
            ss[0] = s.shape[0];
        }
        const Shape so = broadcast_shapes(x.shape, ss, ctx.node);
        if (so != x.shape)
            fail(ctx.node.where() + ": slope " + shape_str(s.shape) + " does not broadcast to X " + shape_str(x.shape));
        const bool ok = visit<kSigned | kUInt>(x.dtype, [&](auto tag) {
            using T = decltype(tag);
            Tensor& o = ctx.alloc_output(0, x.dtype, so);
            bcast2(x.data<T>(), x.shape, s.data<T>(), ss, o.data<T>(), so, ctx.threads, kGrainCheap,
                   [](T v, T a) { return v < T(0) ? wmul(v, a) : v; });
        });
        if (!ok) type_unsupported(ctx.node, "input", x.dtype);
    });
}

void register_compare_logic() {
    reg("Equal", 1, 1000, check_types(kNum | kHalf | kBool, 2), [](OpContext& c) { run_binary<kNum | kBool, true>(c, EqF{}); });
    const auto chk = check_types(kNum | kHalf, 2);  // ONNX orders numbers only
    reg("Less", 1, 1000, chk, [](OpContext& c) { run_binary<kNum, true>(c, LtF{}); });
    reg("Greater", 1, 1000, chk, [](OpContext& c) { run_binary<kNum, true>(c, GtF{}); });
    reg("LessOrEqual", 12, 1000, chk, [](OpContext& c) { run_binary<kNum, true>(c, LeF{}); });
    reg("GreaterOrEqual", 12, 1000, chk, [](OpContext& c) { run_binary<kNum, true>(c, GeF{}); });
    const auto chkb = check_types(kBool, 2);
    reg("And", 1, 1000, chkb, [](OpContext& c) { run_binary<kBool, true>(c, AndF{}); });
    reg("Or", 1, 1000, chkb, [](OpContext& c) { run_binary<kBool, true>(c, OrF{}); });
    reg("Xor", 1, 1000, chkb, [](OpContext& c) { run_binary<kBool, true>(c, XorF{}); });
    reg("Not", 1, 1000, check_types(kBool), [](OpContext& c) {
        run_unary<kBool>(c, [](uint8_t v) { return uint8_t(v == 0); }, kGrainCheap);
    });
    reg("Where", 9, 1000,
        [](const Node& n) {
            check_input_type(n, 0, kBool);
            check_input_type(n, 1, kNum | kHalf | kBool);
            check_input_type(n, 2, kNum | kHalf | kBool);
        },
        run_where, false);
    reg("IsNaN", 9, 1000, check_types(kFloat | kHalf), [](OpContext& ctx) {
        const Tensor& x = ctx.input(0);
        const bool ok = visit<kFloat>(x.dtype, [&](auto tag) {
            using T = decltype(tag);
            Tensor& o = ctx.alloc_output(0, DType::boolean, x.shape);
            map1(x.data<T>(), o.data<uint8_t>(), x.numel(), ctx.threads, kGrainCheap, [](T v) { return uint8_t(v != v); });
        });
        if (!ok) type_unsupported(ctx.node, "input", x.dtype);
    });
    reg("IsInf", 10, 1000, check_types(kFloat | kHalf), [](OpContext& ctx) {
        const Tensor& x = ctx.input(0);
        const bool neg = ctx.node.attrs.get_int("detect_negative", 1) != 0;
        const bool pos = ctx.node.attrs.get_int("detect_positive", 1) != 0;
        const bool ok = visit<kFloat>(x.dtype, [&](auto tag) {
            using T = decltype(tag);
            Tensor& o = ctx.alloc_output(0, DType::boolean, x.shape);
            const T inf = std::numeric_limits<T>::infinity();
            map1(x.data<T>(), o.data<uint8_t>(), x.numel(), ctx.threads, kGrainCheap,
                 [neg, pos, inf](T v) { return uint8_t((pos && v == inf) || (neg && v == -inf)); });
        });
        if (!ok) type_unsupported(ctx.node, "input", x.dtype);
    });
}

void register_variadic() {
    auto chk = [](uint32_t mask) {
        return [mask](const Node& n) {
            for (size_t i = 0; i < n.in_types.size(); ++i) check_input_type(n, i, mask);
        };
    };
    reg("Max", 1, 1000, chk(kNum | kHalf), [](OpContext& c) { run_variadic<kNum>(c, MaxF{}, false); });
    reg("Min", 1, 1000, chk(kNum | kHalf), [](OpContext& c) { run_variadic<kNum>(c, MinF{}, false); });
    reg("Sum", 1, 1000, chk(kNum | kHalf), [](OpContext& c) { run_variadic<kNum>(c, AddF{}, false); });
    reg("Mean", 1, 1000, chk(kFloat | kHalf), [](OpContext& c) { run_variadic<kFloat>(c, AddF{}, true); });
}

void register_math() {
    // Unary functions over the float types.
    reg_unary_float("Sqrt", 1, [](auto x) { return std::sqrt(x); }, kGrainCheap);
    reg_unary_vec("Exp", 1, [](auto x) { return std::exp(x); }, [](v4f x) { return v_exp(x); });
    reg_unary_float("Log", 1, [](auto x) { return std::log(x); });
    reg_unary_float("Reciprocal", 1, [](auto x) { return decltype(x)(1) / x; }, kGrainCheap);
    reg_unary_float("Floor", 1, [](auto x) { return std::floor(x); }, kGrainCheap);
    reg_unary_float("Ceil", 1, [](auto x) { return std::ceil(x); }, kGrainCheap);
    reg_unary_float("Round", 11, [](auto x) { return std::nearbyint(x); }, kGrainCheap);
    reg_unary_vec("Erf", 9, [](auto x) { return std::erf(x); }, [](v4f x) { return v_erf(x); });
    reg_unary_float("Sin", 7, [](auto x) { return std::sin(x); });
    reg_unary_float("Cos", 7, [](auto x) { return std::cos(x); });
    reg_unary_float("Tan", 7, [](auto x) { return std::tan(x); });
    reg_unary_float("Asin", 7, [](auto x) { return std::asin(x); });
    reg_unary_float("Acos", 7, [](auto x) { return std::acos(x); });
    reg_unary_float("Atan", 7, [](auto x) { return std::atan(x); });
    reg_unary_float("Sinh", 9, [](auto x) { return std::sinh(x); });
    reg_unary_float("Cosh", 9, [](auto x) { return std::cosh(x); });
    reg_unary_float("Asinh", 9, [](auto x) { return std::asinh(x); });
    reg_unary_float("Acosh", 9, [](auto x) { return std::acosh(x); });
    reg_unary_float("Atanh", 9, [](auto x) { return std::atanh(x); });
    reg_unary_vec("Sigmoid", 1, [](auto x) { return decltype(x)(1) / (decltype(x)(1) + std::exp(-x)); },
                  [](v4f x) { return v_sigmoid(x); });
    reg_unary_vec("Tanh", 1, [](auto x) { return std::tanh(x); }, [](v4f x) { return v_tanh(x); });
    reg_unary_float("Softplus", 1, [](auto x) { return m_softplus(x); });
    reg_unary_float("Softsign", 1, [](auto x) { return x / (decltype(x)(1) + std::abs(x)); }, kGrainCheap);
    reg_unary_float("HardSwish", 14, [](auto x) {
        using T = decltype(x);
        const T t = x / T(6) + T(0.5);
        return x * (t < T(0) ? T(0) : (t > T(1) ? T(1) : t));
    }, kGrainCheap);
    reg_unary_vec("Mish", 1, [](auto x) { return x * std::tanh(m_softplus(x)); }, [](v4f x) { return v_mish(x); });

    // Numeric types.
    reg("Neg", 1, 1000, check_types(kNum | kHalf), [](OpContext& c) {
        run_unary<kNum>(c, [](auto x) { return wneg(x); }, kGrainCheap);
    });
    reg("Abs", 1, 1000, check_types(kNum | kHalf), [](OpContext& c) {
        run_unary<kNum>(c, [](auto x) {
            using T = decltype(x);
            if constexpr (is_flt<T>) return std::abs(x);
            else return wabs(x);
        }, kGrainCheap);
    });
    reg("Sign", 9, 1000, check_types(kNum | kHalf), [](OpContext& c) {
        run_unary<kNum>(c, [](auto x) {
            using T = decltype(x);
            if constexpr (is_flt<T>) return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x);  // keeps 0, -0, NaN
            else return x > T(0) ? T(1) : (x < T(0) ? static_cast<T>(-1) : T(0));
        }, kGrainCheap);
    });
    reg("Relu", 1, 1000, check_types(kSigned | kHalf), [](OpContext& c) {
        run_unary<kSigned>(c, [](auto x) { return x < decltype(x)(0) ? decltype(x)(0) : x; }, kGrainCheap);
    });
}

void register_activations() {
    const auto chk = check_types(kFloat | kHalf);
    reg("LeakyRelu", 1, 1000, chk, [](OpContext& c) {
        const float a = attr_f(c, "alpha", 0.01f);
        run_unary<kFloat>(c, [a](auto x) { return x < decltype(x)(0) ? decltype(x)(a) * x : x; }, kGrainCheap);
    });
    reg("ThresholdedRelu", 1, 1000, chk, [](OpContext& c) {
        const float a = attr_f(c, "alpha", 1.0f);
        run_unary<kFloat>(c, [a](auto x) { return x > decltype(x)(a) ? x : decltype(x)(0); }, kGrainCheap);
    });
    reg("HardSigmoid", 1, 1000, chk, [](OpContext& c) {
        const float a = attr_f(c, "alpha", 0.2f), b = attr_f(c, "beta", 0.5f);
        run_unary<kFloat>(c, [a, b](auto x) {
            using T = decltype(x);
            const T t = T(a) * x + T(b);
            return t < T(0) ? T(0) : (t > T(1) ? T(1) : t);
        }, kGrainCheap);
    });
    reg("Elu", 1, 1000, chk, [](OpContext& c) {
        const float a = attr_f(c, "alpha", 1.0f);
        run_unary<kFloat>(c, [a](auto x) { return x < decltype(x)(0) ? decltype(x)(a) * std::expm1(x) : x; });
    });
    reg("Selu", 1, 1000, chk, [](OpContext& c) {
        const float a = attr_f(c, "alpha", 1.67326319217681884765625f);
        const float g = attr_f(c, "gamma", 1.05070102214813232421875f);
        run_unary<kFloat>(c, [a, g](auto x) {
            using T = decltype(x);
            return x <= T(0) ? T(g) * (T(a) * std::expm1(x)) : T(g) * x;
        });
    });
    reg("Celu", 12, 1000, chk, [](OpContext& c) {
        const float a = attr_f(c, "alpha", 1.0f);
        if (a == 0) fail(c.node.where() + ": alpha must not be 0");
        run_unary<kFloat>(c, [a](auto x) {
            using T = decltype(x);
            return x > T(0) ? x : T(a) * std::expm1(x / T(a));
        });
    });
    reg("Gelu", 1, 1000,
        [](const Node& n) {
            check_input_type(n, 0, kFloat | kHalf);
            const std::string ap = n.attrs.get_string("approximate", "none");
            if (ap != "none" && ap != "tanh")
                fail_unsupported(n.where() + ": approximate='" + ap + "' is not supported (none, tanh)");
        },
        [](OpContext& c) {
            const std::string ap = c.node.attrs.get_string("approximate", "none");
            if (ap == "tanh") {
                run_unary_vec(c, [](auto x) {
                    using T = decltype(x);
                    const T k = T(0.7978845608028654);  // sqrt(2/pi)
                    return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
                }, [](v4f x) { return v_gelu_tanh(x); });
            } else if (ap == "none") {
                run_unary_vec(c, [](auto x) {
                    using T = decltype(x);
                    return T(0.5) * x * (T(1) + std::erf(x * T(0.7071067811865476)));
                }, [](v4f x) { return v_gelu_erf(x); });
            } else {
                fail_unsupported(c.node.where() + ": approximate='" + ap + "' is not supported (none, tanh)");
            }
        });
}

void register_clip_cast() {
    reg("Clip", 1, 10, check_types(kFloat | kHalf), run_clip);
    reg("Clip", 11, 1000, check_types(kNum | kHalf, 3), run_clip);
    reg("Cast", 1, 1000,
        [](const Node& n) {
            const DType to = cast_target(n);
            check_cast_types(n, n.in_types.empty() ? DType::undefined : n.in_types[0], to);
        },
        [](OpContext& c) { run_cast(c, cast_target(c.node)); }, false);
    reg("CastLike", 15, 1000,
        [](const Node& n) {
            const DType from = n.in_types.empty() ? DType::undefined : n.in_types[0];
            const DType to = n.in_types.size() > 1 ? n.in_types[1] : DType::undefined;
            if (from != DType::undefined && !dtype_supported(from))
                fail_unsupported(n.where() + ": cast from " + dtype_name(from) + " is not supported");
            if (to != DType::undefined && !dtype_supported(to))
                fail_unsupported(n.where() + ": cast to " + dtype_name(to) + " is not supported");
        },
        [](OpContext& c) { run_cast(c, c.input(1).dtype); }, false);
}

}  // namespace

void register_elementwise_ops() {
    register_arith();
    register_compare_logic();
    register_variadic();
    register_math();
    register_activations();
    register_clip_cast();
}

}  // namespace cpn::infer
