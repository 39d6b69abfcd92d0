// ops_tensor.cpp: data movement, shape, indexing, reduction and resampling operators.
// Operators that only move data work on every element type by element size (1/2/4/8 bytes);
// the ones that compute are templated over float/double/int32/int64/int8/uint8, and run
// float16/bfloat16 through float32 (run_via_f32).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "arith.hpp"
#include "ops.hpp"

namespace cpn::infer {
namespace {

using I64 = int64_t;

// ------------------------------------------------------------------------------------------
// Dispatch and small helpers

template <class F> void by_size(DType t, const Node& n, F&& f) {
    switch (dtype_size(t)) {
        case 1: f(uint8_t{}); return;
        case 2: f(uint16_t{}); return;
        case 4: f(uint32_t{}); return;
        case 8: f(uint64_t{}); return;
        default: fail_unsupported(n.where() + ": element type " + dtype_name(t) + " is not supported");
    }
}

template <class F> void by_num(DType t, const Node& n, F&& f) {
    switch (t) {
        case DType::f32: f(float{}); return;
        case DType::f64: f(double{}); return;
        case DType::i32: f(int32_t{}); return;
        case DType::i64: f(int64_t{}); return;
        case DType::i8: f(int8_t{}); return;
        case DType::u8: f(uint8_t{}); return;
        case DType::i16: f(int16_t{}); return;
        case DType::u16: f(uint16_t{}); return;
        case DType::u32: f(uint32_t{}); return;
        case DType::u64: f(uint64_t{}); return;
        default: fail_unsupported(n.where() + ": element type " + dtype_name(t) + " is not supported");
    }
}

bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }
bool is_float(DType t) { return t == DType::f32 || t == DType::f64 || is_half(t); }

// Load-time type checks.
void check_movable(const Node& n) {
    for (DType t : n.in_types)
        if (t != DType::undefined && !dtype_supported(t))
            fail_unsupported(n.where() + ": element type " + dtype_name(t) + " is not supported");
    for (DType t : n.out_types)
        if (t != DType::undefined && !dtype_supported(t))
            fail_unsupported(n.where() + ": element type " + dtype_name(t) + " is not supported");
}
bool numeric_type(DType t) {
    switch (t) {
        case DType::f32: case DType::f64: case DType::f16: case DType::bf16: case DType::i32:
        case DType::i64: case DType::i8: case DType::u8: case DType::i16: case DType::u16: case DType::u32:
        case DType::u64: return true;
        default: return false;
    }
}
void check_numeric_in0(const Node& n) {
    check_movable(n);
    if (!n.in_types.empty() && n.in_types[0] != DType::undefined && !numeric_type(n.in_types[0]))
        fail_unsupported(n.where() + ": element type " + dtype_name(n.in_types[0]) + " is not supported");
}

I64 prod(const Shape& s, size_t b, size_t e) {
    I64 p = 1;
    for (size_t i = b; i < e && i < s.size(); ++i) p *= s[i];
    return p;
}
std::vector<I64> strides_of(const Shape& s) {
    std::vector<I64> st(s.size());
    I64 acc = 1;
    for (size_t i = s.size(); i-- > 0;) {
        st[i] = acc;
        acc *= s[i];
    }
    return st;
}
void copy_bytes(void* dst, const void* src, size_t n) {
    if (n != 0) std::memcpy(dst, src, n);
}
template <class T> void fill_value(T* dst, I64 n, const void* val) {
    T v;
    std::memcpy(&v, val, sizeof(T));
    std::fill(dst, dst + n, v);
}
// Writes the number `v` as one element of type t into dst (8 bytes of room).
void store_number(DType t, double v, void* dst, const Node& n) {
    switch (t) {
        case DType::f32: { float x = static_cast<float>(v); std::memcpy(dst, &x, 4); return; }
        case DType::f64: std::memcpy(dst, &v, 8); return;
        case DType::f16: { uint16_t x = float_to_half(static_cast<float>(v)); std::memcpy(dst, &x, 2); return; }
        case DType::bf16: { uint16_t x = float_to_bf16(static_cast<float>(v)); std::memcpy(dst, &x, 2); return; }
        case DType::i8: { int8_t x = static_cast<int8_t>(v); std::memcpy(dst, &x, 1); return; }
        case DType::u8: case DType::boolean: { uint8_t x = static_cast<uint8_t>(v); std::memcpy(dst, &x, 1); return; }
        case DType::i16: { int16_t x = static_cast<int16_t>(v); std::memcpy(dst, &x, 2); return; }
        case DType::u16: { uint16_t x = static_cast<uint16_t>(v); std::memcpy(dst, &x, 2); return; }
        case DType::i32: { int32_t x = static_cast<int32_t>(v); std::memcpy(dst, &x, 4); return; }
        case DType::u32: { uint32_t x = static_cast<uint32_t>(v); std::memcpy(dst, &x, 4); return; }
        case DType::i64: { int64_t x = static_cast<int64_t>(v); std::memcpy(dst, &x, 8); return; }
        case DType::u64: { uint64_t x = static_cast<uint64_t>(v); std::memcpy(dst, &x, 8); return; }
        default: fail_unsupported(n.where() + ": element type " + dtype_name(t) + " is not supported");
    }
}

std::vector<I64> norm_axes(const std::vector<I64>& axes, I64 rank, const Node& n) {
    std::vector<I64> r;
    for (I64 a : axes) {
        const I64 x = normalize_axis(a, rank, n);
        if (std::find(r.begin(), r.end(), x) != r.end()) fail(n.where() + ": axis " + std::to_string(a) + " repeats");
        r.push_back(x);
    }
    return r;
}

// Runs fn with float16/bfloat16 inputs converted to float32 and converts its float32 outputs
// back (the ops that compute: reductions, TopK, CumSum, Resize...).
using RunFn = void (*)(OpContext&);
void run_via_f32(OpContext& ctx, RunFn fn) {
    DType half = DType::undefined;
    for (const Tensor* t : ctx.in)
        if (t != nullptr && is_half(t->dtype)) half = t->dtype;
    if (half == DType::undefined) {
        fn(ctx);
        return;
    }
    std::vector<Tensor> conv(ctx.in.size());
    std::vector<const Tensor*> in2(ctx.in);
    for (size_t i = 0; i < in2.size(); ++i) {
        if (in2[i] == nullptr || !is_half(in2[i]->dtype)) continue;
        const Tensor& s = *in2[i];
        conv[i] = make_tensor(DType::f32, s.shape);
        const uint16_t* src = s.data<uint16_t>();
        float* d = conv[i].data<float>();
        const I64 n = s.numel();
        if (s.dtype == DType::f16)
            for (I64 k = 0; k < n; ++k) d[k] = half_to_float(src[k]);
        else
            for (I64 k = 0; k < n; ++k) d[k] = bf16_to_float(src[k]);
        in2[i] = &conv[i];
    }
    std::vector<Tensor> out2(ctx.out.size());
    OpContext sub{ctx.node, in2, out2, nullptr, ctx.threads};
    fn(sub);
    for (size_t i = 0; i < out2.size() && i < ctx.out.size(); ++i) {
        if (!out2[i].defined()) continue;
        if (out2[i].dtype != DType::f32) {
            ctx.out[i] = std::move(out2[i]);
            continue;
        }
        Tensor& o = ctx.alloc_output(i, half, out2[i].shape);
        const float* s = out2[i].data<float>();
        uint16_t* d = o.data<uint16_t>();
        const I64 n = o.numel();
        if (half == DType::f16)
            for (I64 k = 0; k < n; ++k) d[k] = float_to_half(s[k]);
        else
            for (I64 k = 0; k < n; ++k) d[k] = float_to_bf16(s[k]);
    }
}

// ------------------------------------------------------------------------------------------
// Strided copy: out[i0, ..., ik] = in[sum i_d * istr[d]] (out contiguous of shape `shape`;
// `in` points at the element of index 0, strides may be 0 or negative). Slice, Transpose,
// Expand, Tile, DepthToSpace and SpaceToDepth are all this.
template <class T>
void strided_copy(T* out, const T* in, const Shape& shape, const std::vector<I64>& istr, int threads) {
    Shape s;
    std::vector<I64> st;
    I64 total = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
        total *= shape[d];
        if (shape[d] == 1) continue;
        if (!s.empty() && st.back() == istr[d] * shape[d]) {
            s.back() *= shape[d];
            st.back() = istr[d];
        } else {
            s.push_back(shape[d]);
            st.push_back(istr[d]);
        }
    }
    if (total == 0) return;
    if (s.empty()) {
        out[0] = in[0];
        return;
    }
    const size_t r = s.size();
    const I64 inner = s.back(), is = st.back();
    if (is != 1 && is != 0 && r >= 2 && inner >= 8) {
        // Tiled path (transposes): a dimension k read contiguously, the last written contiguously.
        size_t k = r;
        for (size_t d = 0; d + 1 < r; ++d)
            if (st[d] == 1 && s[d] >= 8) k = d;
        if (k < r) {
            const std::vector<I64> ostr = strides_of(s);
            std::vector<I64> ds, dis, dos;
            for (size_t d = 0; d + 1 < r; ++d)
                if (d != k) {
                    ds.push_back(s[d]);
                    dis.push_back(st[d]);
                    dos.push_back(ostr[d]);
                }
            constexpr I64 TB = 16;
            const I64 K = s[k], ok = ostr[k], J = inner;
            const I64 nkt = (K + TB - 1) / TB, outer = total / (K * J);
            parallel_for(threads, outer * nkt, std::max<I64>(1, 32768 / (TB * J)), [&](I64 lo, I64 hi) {
                for (I64 it = lo; it < hi; ++it) {
                    I64 o = it / nkt;
                    const I64 kt = it % nkt;
                    I64 ioff = 0, ooff = 0;
                    for (size_t d = ds.size(); d-- > 0;) {
                        const I64 x = o % ds[d];
                        o /= ds[d];
                        ioff += x * dis[d];
                        ooff += x * dos[d];
                    }
                    const I64 k0 = kt * TB, k1 = std::min(K, k0 + TB);
                    for (I64 j0 = 0; j0 < J; j0 += TB) {
                        const I64 j1 = std::min(J, j0 + TB);
                        for (I64 kk = k0; kk < k1; ++kk) {
                            T* op = out + ooff + kk * ok;
                            const T* ip = in + ioff + kk;
                            for (I64 jj = j0; jj < j1; ++jj) op[jj] = ip[jj * is];
                        }
                    }
                }
            });
            return;
        }
    }
    const I64 rows = total / inner;
    parallel_for(threads, rows, std::max<I64>(1, 32768 / inner), [&](I64 lo, I64 hi) {
        std::vector<I64> idx(r - 1);
        I64 rem = lo, off = 0;
        for (size_t d = r - 1; d-- > 0;) {
            idx[d] = rem % s[d];
            rem /= s[d];
            off += idx[d] * st[d];
        }
        T* o = out + lo * inner;
        for (I64 row = lo; row < hi; ++row) {
            const T* src = in + off;
            if (is == 1)
                std::memcpy(o, src, static_cast<size_t>(inner) * sizeof(T));
            else if (is == 0)
                std::fill(o, o + inner, *src);
            else
                for (I64 j = 0; j < inner; ++j) o[j] = src[j * is];
            o += inner;
            for (size_t d = r - 1; d-- > 0;) {
                off += st[d];
                if (++idx[d] < s[d]) break;
                off -= st[d] * s[d];
                idx[d] = 0;
            }
        }
    });
}

void strided_copy_any(OpContext& ctx, Tensor& out, const Tensor& in, I64 base, const Shape& shape,
                      const std::vector<I64>& istr) {
    by_size(in.dtype, ctx.node, [&](auto tag) {
        using T = decltype(tag);
        strided_copy<T>(out.data<T>(), in.data<T>() + base, shape, istr, ctx.threads);
    });
}

// ------------------------------------------------------------------------------------------
// Identity, Dropout, Constant, ConstantOfShape, Shape, Size

void run_identity(OpContext& ctx) {
    const Tensor& x = ctx.input(0);
    ctx.alias_output(0, x, x.shape);
}

void run_dropout(OpContext& ctx) {
    const Tensor& x = ctx.input(0);
    if (ctx.node.opset >= 12 && ctx.has_in(2) && ctx.input(2).numel() > 0 && int_at(ctx.input(2), 0) != 0)
        fail_unsupported(ctx.node.where() + ": training_mode = true is not supported (inference only)");
    ctx.alias_output(0, x, x.shape);
    if (ctx.wants_output(1)) {
        Tensor& m = ctx.alloc_output(1, DType::boolean, x.shape);
        if (m.numel() > 0) std::memset(m.raw(), 1, static_cast<size_t>(m.numel()));
    }
}
void check_dropout(const Node& n) {
    check_movable(n);
    if (n.opset < 7 && n.attrs.get_int("is_test", 0) == 0)
        fail_unsupported(n.where() + ": training mode (is_test = 0) is not supported");
    // The training_mode input (opset 12+) may be true at run time, and random dropout cannot
    // match anything; an inference export leaves it out.
    if (n.opset >= 12 && n.inputs.size() > 2 && !n.inputs[2].empty())
        fail_unsupported(n.where() + ": a training_mode input is not supported (inference only)");
}

void check_constant(const Node& n) {
    for (const char* k : {"sparse_value", "value_string", "value_strings"})
        if (n.attrs.has(k)) fail_unsupported(n.where() + ": attribute '" + k + "' is not supported");
    if (const Tensor* t = n.attrs.get_tensor("value")) {
        if (!dtype_supported(t->dtype))
            fail_unsupported(n.where() + ": constant of type " + dtype_name(t->dtype) + " is not supported");
        return;
    }
    for (const char* k : {"value_float", "value_floats", "value_int", "value_ints"})
        if (n.attrs.has(k)) return;
    fail(n.where() + ": no value attribute");
}
void run_constant(OpContext& ctx) {
    const Attrs& a = ctx.node.attrs;
    if (const Tensor* t = a.get_tensor("value")) {
        ctx.alias_output(0, *t, t->shape);
    } else if (a.has("value_float")) {
        ctx.alloc_output(0, DType::f32, {}).data<float>()[0] = a.get_float("value_float", 0);
    } else if (a.has("value_floats")) {
        const auto v = a.get_floats("value_floats");
        Tensor& o = ctx.alloc_output(0, DType::f32, {static_cast<I64>(v.size())});
        copy_bytes(o.raw(), v.data(), v.size() * 4);
    } else if (a.has("value_int")) {
        ctx.alloc_output(0, DType::i64, {}).data<int64_t>()[0] = a.get_int("value_int", 0);
    } else if (a.has("value_ints")) {
        const auto v = a.get_ints("value_ints");
        Tensor& o = ctx.alloc_output(0, DType::i64, {static_cast<I64>(v.size())});
        copy_bytes(o.raw(), v.data(), v.size() * 8);
    } else {
        fail_unsupported(ctx.node.where() + ": no supported value attribute");
    }
}

void check_constant_of_shape(const Node& n) {
    if (const Tensor* t = n.attrs.get_tensor("value")) {
        if (!dtype_supported(t->dtype))
            fail_unsupported(n.where() + ": value of type " + dtype_name(t->dtype) + " is not supported");
        if (t->numel() != 1) fail(n.where() + ": value must hold one element");
    }
}
void run_constant_of_shape(OpContext& ctx) {
    const Tensor& s = ctx.input(0);
    require(s.rank() <= 1, ctx.node.where() + ": the shape input must be 1-D");
    const Shape shape = to_ints(s);
    for (I64 d : shape) require(d >= 0, ctx.node.where() + ": negative dimension in " + shape_str(shape));
    DType t = DType::f32;
    unsigned char val[8] = {0};
    if (const Tensor* v = ctx.node.attrs.get_tensor("value")) {
        require(v->numel() == 1, ctx.node.where() + ": value must hold one element");
        t = v->dtype;
        copy_bytes(val, v->raw(), dtype_size(t));
    }
    Tensor& o = ctx.alloc_output(0, t, shape);
    by_size(t, ctx.node, [&](auto tag) {
        using T = decltype(tag);
        fill_value<T>(o.data<T>(), o.numel(), val);
    });
}

void run_shape(OpContext& ctx) {
    const Tensor& x = ctx.input(0);
    const I64 r = static_cast<I64>(x.rank());
    I64 st = ctx.node.attrs.get_int("start", 0), en = ctx.node.attrs.get_int("end", r);
    if (st < 0) st += r;
    if (en < 0) en += r;
    st = std::clamp<I64>(st, 0, r);
    en = std::clamp<I64>(en, 0, r);
    const I64 n = std::max<I64>(0, en - st);
    Tensor& o = ctx.alloc_output(0, DType::i64, {n});
    for (I64 i = 0; i < n; ++i) o.data<int64_t>()[i] = x.shape[static_cast<size_t>(st + i)];
}

void run_size(OpContext& ctx) {
    ctx.alloc_output(0, DType::i64, {}).data<int64_t>()[0] = ctx.input(0).numel();
}

// ------------------------------------------------------------------------------------------
// Views: Flatten, Reshape, Squeeze, Unsqueeze

void run_flatten(OpContext& ctx) {
    const Tensor& x = ctx.input(0);
    const I64 r = static_cast<I64>(x.rank());
    I64 a = ctx.node.attrs.get_int("axis", 1);
    if (a < 0) a += r;
    require(a >= 0 && a <= r, ctx.node.where() + ": axis out of range for rank " + std::to_string(r));
    ctx.alias_output(0, x, {prod(x.shape, 0, static_cast<size_t>(a)), prod(x.shape, static_cast<size_t>(a), x.rank())});
}

void run_reshape(OpContext& ctx) {
    const Tensor& x = ctx.input(0);
    const Node& n = ctx.node;
    std::vector<I64> target;
    if (n.opset < 5) {
        target = n.attrs.get_ints("shape");
    } else {
        const Tensor& s = ctx.input(1);
        require(s.rank() == 1, n.where() + ": the shape input must be 1-D");
        target = to_ints(s);
    }
    const bool allowzero = n.attrs.get_int("allowzero", 0) != 0;
    Shape out(target.size());
    int neg = -1;
    I64 known = 1;
    bool known_zero = false;
    for (size_t i = 0; i < target.size(); ++i) {
        I64 d = target[i];
        if (d == 0 && !allowzero) {
            require(i < x.rank(), n.where() + ": shape " + shape_str(target) + " copies a dimension the input " +
                                      shape_str(x.shape) + " lacks");
            d = x.shape[i];
        } else if (d == -1) {
            require(neg < 0, n.where() + ": shape " + shape_str(target) + " has more than one -1");
            neg = static_cast<int>(i);
            out[i] = -1;
            continue;
        } else if (d < 0) {
            fail(n.where() + ": invalid dimension in shape " + shape_str(target));
        }
        out[i] = d;
        if (d == 0) known_zero = true;
        else {
            require(known <= (int64_t{1} << 50) / d, n.where() + ": shape " + shape_str(target) + " is too large");
            known *= d;
        }
    }
    const I64 total = x.numel();
    if (neg >= 0) {
        if (known_zero) {
            require(total == 0, n.where() + ": cannot reshape " + shape_str(x.shape) + " to " + shape_str(target));
            out[static_cast<size_t>(neg)] = 0;
        } else {
            require(total % known == 0,
                    n.where() + ": cannot reshape " + shape_str(x.shape) + " to " + shape_str(target));
            out[static_cast<size_t>(neg)] = total / known;
        }
    }
    require(checked_numel(out) == total, n.where() + ": cannot reshape " + shape_str(x.shape) + " to " + shape_str(target));
    ctx.alias_output(0, x, out);
}

void run_squeeze(OpContext& ctx) {
    const Tensor& x = ctx.input(0);
    const Node& n = ctx.node;
    std::vector<I64> axes;
    bool given = false;
    if (n.opset < 13) {
        given = n.attrs.has("axes");
        axes = n.attrs.get_ints("axes");
    } else if (ctx.has_in(1)) {
        given = true;
        axes = to_ints(ctx.input(1));
    }
    const I64 r = static_cast<I64>(x.rank());
    std::vector<bool> drop(x.rank(), false);
    if (!given) {
        for (size_t i = 0; i < x.rank(); ++i) drop[i] = x.shape[i] == 1;
    } else {
        for (I64 a : norm_axes(axes, r, n)) {
            require(x.shape[static_cast<size_t>(a)] == 1,
                    n.where() + ": cannot squeeze axis " + std::to_string(a) + " of shape " + shape_str(x.shape));
            drop[static_cast<size_t>(a)] = true;
        }
    }
    Shape out;
    for (size_t i = 0; i < x.rank(); ++i)
        if (!drop[i]) out.push_back(x.shape[i]);
    ctx.alias_output(0, x, out);
}

void run_unsqueeze(OpContext& ctx) {
    const Tensor& x = ctx.input(0);
    const Node& n = ctx.node;
    const std::vector<I64> axes = n.opset < 13 ? n.attrs.get_ints("axes") : to_ints(ctx.input(1));
    const I64 r = static_cast<I64>(x.rank() + axes.size());
    std::vector<bool> ins(static_cast<size_t>(r), false);
    for (I64 a : norm_axes(axes, r, n)) ins[static_cast<size_t>(a)] = true;
    Shape out;
    size_t k = 0;
    for (size_t i = 0; i < static_cast<size_t>(r); ++i) out.push_back(ins[i] ? 1 : x.shape[k++]);
    ctx.alias_output(0, x, out);
}

// ------------------------------------------------------------------------------------------
// Transpose, Concat, Split, Slice

void run_transpose(OpContext& ctx) {
    const Tensor& x = ctx.input(0);
    const Node& n = ctx.node;
    const size_t r = x.rank();
    std::vector<I64> perm = n.attrs.get_ints("perm");
    if (perm.empty()) {
        perm.resize(r);
        for (size_t i = 0; i < r; ++i) perm[i] = static_cast<I64>(r - 1 - i);
    }
    require(perm.size() == r, n.where() + ": perm has " + std::to_string(perm.size()) + " entries for rank " + std::to_string(r));
    std::vector<bool> seen(r, false);
    for (I64 p : perm) {
        require(p >= 0 && p < static_cast<I64>(r) && !seen[static_cast<size_t>(p)], n.where() + ": perm is not a permutation");
        seen[static_cast<size_t>(p)] = true;
    }
    const auto st = strides_of(x.shape);
    Shape out(r);
    std::vector<I64> istr(r);
    for (size_t i = 0; i < r; ++i) {
        out[i] = x.shape[static_cast<size_t>(perm[i])];
        istr[i] = st[static_cast<size_t>(perm[i])];
    }
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    strided_copy_any(ctx, o, x, 0, out, istr);
}

void run_concat(OpContext& ctx) {
    const Node& n = ctx.node;
    require(ctx.n_in() >= 1, n.where() + ": no inputs");
    const Tensor& x0 = ctx.input(0);
    const I64 r = static_cast<I64>(x0.rank());
    require(r >= 1, n.where() + ": cannot concatenate scalars");
    const size_t axis = static_cast<size_t>(normalize_axis(n.attrs.req_int("axis"), r, n));
    Shape out = x0.shape;
    out[axis] = 0;
    for (size_t i = 0; i < ctx.n_in(); ++i) {
        const Tensor& xi = ctx.input(i);
        require(xi.dtype == x0.dtype, n.where() + ": inputs have different element types");
        require(xi.rank() == x0.rank(), n.where() + ": inputs have different ranks");
        for (size_t d = 0; d < x0.rank(); ++d)
            if (d != axis)
                require(xi.shape[d] == x0.shape[d], n.where() + ": input shapes " + shape_str(x0.shape) + " and " +
                                                        shape_str(xi.shape) + " differ outside the axis");
        out[axis] += xi.shape[axis];
    }
    Tensor& o = ctx.alloc_output(0, x0.dtype, out);
    const size_t esz = dtype_size(x0.dtype);
    const I64 outer = prod(out, 0, axis), inner = prod(out, axis + 1, out.size());
    const size_t orow = static_cast<size_t>(out[axis] * inner) * esz;
    char* dst = static_cast<char*>(o.raw());
    parallel_for(ctx.threads, outer, std::max<I64>(1, (1 << 18) / std::max<I64>(1, static_cast<I64>(orow))), [&](I64 lo, I64 hi) {
        for (I64 ob = lo; ob < hi; ++ob) {
            size_t off = static_cast<size_t>(ob) * orow;
            for (size_t i = 0; i < ctx.n_in(); ++i) {
                const Tensor& xi = *ctx.in[i];
                const size_t row = static_cast<size_t>(xi.shape[axis] * inner) * esz;
                copy_bytes(dst + off, static_cast<const char*>(xi.raw()) + static_cast<size_t>(ob) * row, row);
                off += row;
            }
        }
    });
}

void run_split(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const I64 r = static_cast<I64>(x.rank());
    require(r >= 1, n.where() + ": cannot split a scalar");
    const size_t axis = static_cast<size_t>(normalize_axis(n.attrs.get_int("axis", 0), r, n));
    const size_t nout = n.outputs.size();
    const I64 dim = x.shape[axis];
    std::vector<I64> split;
    if (ctx.has_in(1)) split = to_ints(ctx.input(1));
    else if (n.opset < 13) split = n.attrs.get_ints("split");
    if (split.empty()) {
        if (n.attrs.has("num_outputs")) {  // opset 18: the last chunk may be smaller
            const I64 no = n.attrs.get_int("num_outputs", 1);
            require(no >= 1 && static_cast<size_t>(no) == nout, n.where() + ": num_outputs does not match the outputs");
            const I64 c = (dim + no - 1) / no;
            for (I64 i = 0; i < no; ++i) split.push_back(std::clamp<I64>(dim - i * c, 0, c));
        } else {
            require(nout >= 1 && dim % static_cast<I64>(nout) == 0,
                    n.where() + ": dimension " + std::to_string(dim) + " does not split into " + std::to_string(nout) + " equal parts");
            split.assign(nout, dim / static_cast<I64>(nout));
        }
    }
    require(split.size() == nout, n.where() + ": split has " + std::to_string(split.size()) + " entries for " +
                                      std::to_string(nout) + " outputs");
    I64 sum = 0;
    for (I64 s : split) {
        require(s >= 0, n.where() + ": negative split");
        sum += s;
    }
    require(sum == dim, n.where() + ": split sizes sum to " + std::to_string(sum) + ", the axis has " + std::to_string(dim));
    const size_t esz = dtype_size(x.dtype);
    const I64 outer = prod(x.shape, 0, axis), inner = prod(x.shape, axis + 1, x.rank());
    const size_t irow = static_cast<size_t>(dim * inner) * esz;
    I64 start = 0;
    for (size_t i = 0; i < nout; ++i) {
        Shape os = x.shape;
        os[axis] = split[i];
        Tensor& o = ctx.alloc_output(i, x.dtype, os);
        const size_t row = static_cast<size_t>(split[i] * inner) * esz;
        const char* src = static_cast<const char*>(x.raw()) + static_cast<size_t>(start * inner) * esz;
        char* dst = static_cast<char*>(o.raw());
        for (I64 ob = 0; ob < outer; ++ob) copy_bytes(dst + static_cast<size_t>(ob) * row, src + static_cast<size_t>(ob) * irow, row);
        start += split[i];
    }
}

void run_slice(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const I64 r = static_cast<I64>(x.rank());
    std::vector<I64> starts, ends, axes, steps;
    if (n.opset < 10) {
        starts = n.attrs.get_ints("starts");
        ends = n.attrs.get_ints("ends");
        axes = n.attrs.get_ints("axes");
    } else {
        starts = to_ints(ctx.input(1));
        ends = to_ints(ctx.input(2));
        if (ctx.has_in(3)) axes = to_ints(ctx.input(3));
        if (ctx.has_in(4)) steps = to_ints(ctx.input(4));
    }
    require(starts.size() == ends.size(), n.where() + ": starts and ends differ in length");
    if (axes.empty())
        for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<I64>(i));
    if (steps.empty()) steps.assign(starts.size(), 1);
    require(axes.size() == starts.size() && steps.size() == starts.size(),
            n.where() + ": starts, ends, axes and steps differ in length");
    axes = norm_axes(axes, r, n);
    const auto st = strides_of(x.shape);
    Shape out = x.shape;
    std::vector<I64> istr(st);
    I64 base = 0;
    for (size_t i = 0; i < axes.size(); ++i) {
        const size_t a = static_cast<size_t>(axes[i]);
        const I64 dim = x.shape[a];
        I64 step = steps[i];
        require(step != 0, n.where() + ": step 0");
        // A step longer than the axis takes at most one element: shortened, so that neither the
        // count nor the stride below overflows.
        step = std::clamp<I64>(step, -std::max<I64>(dim, 1), std::max<I64>(dim, 1));
        I64 s = starts[i], e = ends[i];
        if (s < 0) s += dim;
        if (e < 0) e += dim;
        I64 len = 0;
        if (step > 0) {
            s = std::clamp<I64>(s, 0, dim);
            e = std::clamp<I64>(e, 0, dim);
            if (e > s) len = (e - s - 1) / step + 1;
        } else {
            s = std::clamp<I64>(s, 0, dim - 1);
            e = std::clamp<I64>(e, -1, dim - 1);
            if (s > e) len = (s - e - 1) / (-step) + 1;
        }
        if (dim == 0) len = 0;
        out[a] = len;
        if (len > 0) base += s * st[a];
        istr[a] = st[a] * step;
    }
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    if (o.numel() == 0) return;
    strided_copy_any(ctx, o, x, base, out, istr);
}

// ------------------------------------------------------------------------------------------
// Gather, GatherElements, GatherND, ScatterElements

I64 fix_index(I64 i, I64 dim, const Node& n) {
    if (i < 0) i += dim;
    if (i < 0 || i >= dim) fail(n.where() + ": index " + std::to_string(i < 0 ? i - dim : i) + " is out of range for a dimension of " + std::to_string(dim));
    return i;
}

void run_gather(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const Tensor& ind = ctx.input(1);
    const I64 r = static_cast<I64>(x.rank());
    require(r >= 1, n.where() + ": data must have rank >= 1");
    const size_t axis = static_cast<size_t>(normalize_axis(n.attrs.get_int("axis", 0), r, n));
    std::vector<I64> idx = to_ints(ind);
    const I64 A = x.shape[axis];
    for (I64& i : idx) i = fix_index(i, A, n);
    Shape out(x.shape.begin(), x.shape.begin() + static_cast<ptrdiff_t>(axis));
    out.insert(out.end(), ind.shape.begin(), ind.shape.end());
    out.insert(out.end(), x.shape.begin() + static_cast<ptrdiff_t>(axis) + 1, x.shape.end());
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    const I64 outer = prod(x.shape, 0, axis), inner = prod(x.shape, axis + 1, x.rank());
    const I64 ni = static_cast<I64>(idx.size());
    if (o.numel() == 0) return;
    by_size(x.dtype, n, [&](auto tag) {
        using T = decltype(tag);
        const T* src = x.data<T>();
        T* dst = o.data<T>();
        parallel_for(ctx.threads, outer * ni, std::max<I64>(1, 32768 / std::max<I64>(1, inner)), [&](I64 lo, I64 hi) {
            for (I64 it = lo; it < hi; ++it) {
                const I64 ob = it / ni, j = it % ni;
                const T* s = src + (ob * A + idx[static_cast<size_t>(j)]) * inner;
                T* d = dst + it * inner;
                if (inner == 1) *d = *s;
                else std::memcpy(d, s, static_cast<size_t>(inner) * sizeof(T));
            }
        });
    });
}

void run_gather_elements(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const Tensor& ind = ctx.input(1);
    const I64 r = static_cast<I64>(x.rank());
    require(r >= 1 && ind.rank() == x.rank(), n.where() + ": data and indices must have the same rank >= 1");
    const size_t axis = static_cast<size_t>(normalize_axis(n.attrs.get_int("axis", 0), r, n));
    for (size_t d = 0; d < x.rank(); ++d)
        if (d != axis)
            require(ind.shape[d] <= x.shape[d], n.where() + ": indices shape " + shape_str(ind.shape) + " exceeds data shape " + shape_str(x.shape));
    const std::vector<I64> idx = to_ints(ind);
    Tensor& o = ctx.alloc_output(0, x.dtype, ind.shape);
    const I64 total = o.numel();
    if (total == 0) return;
    const auto dst_ = strides_of(x.shape);
    const I64 A = x.shape[axis];
    by_size(x.dtype, n, [&](auto tag) {
        using T = decltype(tag);
        const T* src = x.data<T>();
        T* dst = o.data<T>();
        std::vector<I64> cnt(x.rank(), 0);
        I64 base = 0;
        for (I64 e = 0; e < total; ++e) {
            const I64 k = fix_index(idx[static_cast<size_t>(e)], A, n);
            dst[e] = src[base + k * dst_[axis]];
            for (size_t d = x.rank(); d-- > 0;) {
                if (d != axis) base += dst_[d];
                if (++cnt[d] < ind.shape[d]) break;
                if (d != axis) base -= dst_[d] * ind.shape[d];
                cnt[d] = 0;
            }
        }
    });
}

void run_gather_nd(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const Tensor& ind = ctx.input(1);
    const size_t r = x.rank(), q = ind.rank();
    const I64 b = n.attrs.get_int("batch_dims", 0);
    require(q >= 1 && r >= 1, n.where() + ": data and indices must have rank >= 1");
    require(b >= 0 && static_cast<size_t>(b) < std::min(q, r), n.where() + ": batch_dims out of range");
    const size_t bd = static_cast<size_t>(b);
    const I64 k = ind.shape[q - 1];
    require(k >= 1 && static_cast<size_t>(k) <= r - bd, n.where() + ": the last indices dimension is out of range");
    for (size_t d = 0; d < bd; ++d)
        require(ind.shape[d] == x.shape[d], n.where() + ": batch dimensions of data and indices differ");
    Shape out(ind.shape.begin(), ind.shape.end() - 1);
    out.insert(out.end(), x.shape.begin() + static_cast<ptrdiff_t>(bd + static_cast<size_t>(k)), x.shape.end());
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    if (o.numel() == 0) return;
    const std::vector<I64> idx = to_ints(ind);
    const auto st = strides_of(x.shape);
    const I64 B = prod(x.shape, 0, bd);
    const I64 nsel = prod(ind.shape, bd, q - 1);
    const I64 slice = prod(x.shape, bd + static_cast<size_t>(k), r);
    const I64 bstride = prod(x.shape, bd, r);
    const size_t esz = dtype_size(x.dtype);
    const char* src = static_cast<const char*>(x.raw());
    char* dst = static_cast<char*>(o.raw());
    for (I64 bb = 0; bb < B; ++bb)
        for (I64 s = 0; s < nsel; ++s) {
            const I64* iv = idx.data() + (bb * nsel + s) * k;
            I64 off = bb * bstride;
            for (I64 j = 0; j < k; ++j) off += fix_index(iv[j], x.shape[bd + static_cast<size_t>(j)], n) * st[bd + static_cast<size_t>(j)];
            copy_bytes(dst + static_cast<size_t>((bb * nsel + s) * slice) * esz, src + static_cast<size_t>(off) * esz,
                       static_cast<size_t>(slice) * esz);
        }
}

void check_scatter(const Node& n) {
    check_movable(n);
    const std::string red = n.attrs.get_string("reduction", "none");
    if (red != "none" && red != "add" && red != "mul" && red != "max" && red != "min")
        fail_unsupported(n.where() + ": reduction '" + red + "' is not supported");
}
void run_scatter_elements(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const Tensor& ind = ctx.input(1);
    const Tensor& upd = ctx.input(2);
    const I64 r = static_cast<I64>(x.rank());
    require(r >= 1 && ind.rank() == x.rank() && upd.shape == ind.shape,
            n.where() + ": data, indices and updates must have the same rank, indices and updates the same shape");
    require(upd.dtype == x.dtype, n.where() + ": data and updates differ in type");
    const size_t axis = static_cast<size_t>(normalize_axis(n.attrs.get_int("axis", 0), r, n));
    for (size_t d = 0; d < x.rank(); ++d)
        if (d != axis)
            require(ind.shape[d] <= x.shape[d], n.where() + ": indices shape " + shape_str(ind.shape) + " exceeds data shape " + shape_str(x.shape));
    const std::string red = n.attrs.get_string("reduction", "none");
    const std::vector<I64> idx = to_ints(ind);
    Tensor& o = ctx.alloc_output(0, x.dtype, x.shape);
    copy_bytes(o.raw(), x.raw(), x.bytes());
    const I64 total = ind.numel();
    if (total == 0) return;
    const auto dst_ = strides_of(x.shape);
    const I64 A = x.shape[axis];
    auto scatter = [&](auto tag, auto combine) {
        using T = decltype(tag);
        const T* u = upd.data<T>();
        T* dst = o.data<T>();
        std::vector<I64> cnt(x.rank(), 0);
        I64 base = 0;
        for (I64 e = 0; e < total; ++e) {
            const I64 k = fix_index(idx[static_cast<size_t>(e)], A, n);
            T& t = dst[base + k * dst_[axis]];
            t = combine(t, u[e]);
            for (size_t d = x.rank(); d-- > 0;) {
                if (d != axis) base += dst_[d];
                if (++cnt[d] < ind.shape[d]) break;
                if (d != axis) base -= dst_[d] * ind.shape[d];
                cnt[d] = 0;
            }
        }
    };
    if (red == "none") {
        by_size(x.dtype, n, [&](auto tag) {
            using T = decltype(tag);
            scatter(tag, [](T, T b) { return b; });
        });
    } else {
        by_num(x.dtype, n, [&](auto tag) {
            using T = decltype(tag);
            if (red == "add") scatter(tag, [](T a, T b) { return wadd(a, b); });
            else if (red == "mul") scatter(tag, [](T a, T b) { return wmul(a, b); });
            else if (red == "max") scatter(tag, [](T a, T b) { return std::max(a, b); });
            else scatter(tag, [](T a, T b) { return std::min(a, b); });
        });
    }
}

// ------------------------------------------------------------------------------------------
// Expand, Tile, Pad

void run_expand(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const Tensor& s = ctx.input(1);
    require(s.rank() == 1, n.where() + ": the shape input must be 1-D");
    const Shape want = to_ints(s);
    for (I64 d : want) require(d >= 0, n.where() + ": negative dimension in " + shape_str(want));
    const Shape out = broadcast_shapes(x.shape, want, n);
    const auto st = strides_of(x.shape);
    std::vector<I64> istr(out.size(), 0);
    const size_t off = out.size() - x.rank();
    for (size_t d = 0; d < x.rank(); ++d) istr[off + d] = x.shape[d] == 1 ? 0 : st[d];
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    strided_copy_any(ctx, o, x, 0, out, istr);
}

void run_tile(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const std::vector<I64> rep = to_ints(ctx.input(1));
    require(rep.size() == x.rank(), n.where() + ": repeats has " + std::to_string(rep.size()) + " entries for rank " + std::to_string(x.rank()));
    const auto st = strides_of(x.shape);
    Shape out, view;
    std::vector<I64> istr;
    for (size_t d = 0; d < x.rank(); ++d) {
        require(rep[d] >= 0, n.where() + ": negative repeat");
        require(x.shape[d] == 0 || rep[d] <= (int64_t{1} << 40) / x.shape[d], n.where() + ": output too large");
        out.push_back(x.shape[d] * rep[d]);
        view.push_back(rep[d]);
        view.push_back(x.shape[d]);
        istr.push_back(0);
        istr.push_back(st[d]);
    }
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    if (o.numel() == 0) return;
    strided_copy_any(ctx, o, x, 0, view, istr);
}

void check_pad(const Node& n) {
    check_movable(n);
    const std::string mode = n.attrs.get_string("mode", "constant");
    if (mode != "constant" && mode != "reflect" && mode != "edge")
        fail_unsupported(n.where() + ": mode '" + mode + "' is not supported");
}
I64 pad_map(I64 j, I64 d, int mode) {  // -1: constant fill
    if (j >= 0 && j < d) return j;
    if (mode == 0) return -1;
    if (mode == 2) return std::clamp<I64>(j, 0, d - 1);
    if (d == 1) return 0;
    const I64 p = 2 * (d - 1);
    j %= p;
    if (j < 0) j += p;
    return j >= d ? p - j : j;
}
void run_pad(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const size_t r = x.rank();
    const std::string ms = n.attrs.get_string("mode", "constant");
    const int mode = ms == "constant" ? 0 : ms == "reflect" ? 1 : ms == "edge" ? 2 : -1;
    if (mode < 0) fail_unsupported(n.where() + ": mode '" + ms + "' is not supported");
    std::vector<I64> pads;
    unsigned char val[8] = {0};
    if (n.opset < 11) {
        pads = n.attrs.has("pads") ? n.attrs.get_ints("pads") : n.attrs.get_ints("paddings");
        store_number(x.dtype, n.attrs.get_float("value", 0.f), val, n);
    } else {
        pads = to_ints(ctx.input(1));
        if (ctx.has_in(2) && ctx.input(2).numel() > 0) {
            require(ctx.input(2).dtype == x.dtype, n.where() + ": constant_value differs in type from the data");
            copy_bytes(val, ctx.input(2).raw(), dtype_size(x.dtype));
        }
        if (ctx.has_in(3)) {  // opset 18 axes
            const auto axes = norm_axes(to_ints(ctx.input(3)), static_cast<I64>(r), n);
            require(pads.size() == 2 * axes.size(), n.where() + ": pads does not match axes");
            std::vector<I64> full(2 * r, 0);
            for (size_t i = 0; i < axes.size(); ++i) {
                full[static_cast<size_t>(axes[i])] = pads[i];
                full[static_cast<size_t>(axes[i]) + r] = pads[i + axes.size()];
            }
            pads = full;
        }
    }
    require(pads.size() == 2 * r, n.where() + ": pads has " + std::to_string(pads.size()) + " entries for rank " + std::to_string(r));
    Shape out(r);
    for (size_t d = 0; d < r; ++d) {
        out[d] = x.shape[d] + pads[d] + pads[d + r];
        require(out[d] >= 0, n.where() + ": pads make a negative dimension");
        if (mode != 0 && x.shape[d] == 0 && out[d] > 0) fail(n.where() + ": cannot " + ms + "-pad an empty dimension");
    }
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    if (o.numel() == 0) return;
    if (r == 0) {
        copy_bytes(o.raw(), x.raw(), x.bytes());
        return;
    }
    const auto st = strides_of(x.shape);
    const I64 W = out[r - 1], w = x.shape[r - 1], pb = pads[r - 1];
    const I64 rows = o.numel() / W;
    by_size(x.dtype, n, [&](auto tag) {
        using T = decltype(tag);
        T v;
        std::memcpy(&v, val, sizeof(T));
        const T* src = x.data<T>();
        T* dst = o.data<T>();
        const I64 m0 = std::clamp<I64>(pb, 0, W), m1 = std::clamp<I64>(pb + w, m0, W);
        parallel_for(ctx.threads, rows, std::max<I64>(1, 32768 / W), [&](I64 lo, I64 hi) {
            for (I64 row = lo; row < hi; ++row) {
                T* orow = dst + row * W;
                I64 rem = row, off = 0;
                bool fillrow = false;
                for (size_t d = r - 1; d-- > 0;) {
                    const I64 i = rem % out[d];
                    rem /= out[d];
                    const I64 m = pad_map(i - pads[d], x.shape[d], mode);
                    if (m < 0) fillrow = true;
                    else off += m * st[d];
                }
                if (fillrow) {
                    std::fill(orow, orow + W, v);
                    continue;
                }
                const T* irow = src + off;
                for (I64 j = 0; j < m0; ++j) {
                    const I64 m = pad_map(j - pb, w, mode);
                    orow[j] = m < 0 ? v : irow[m];
                }
                if (m1 > m0) std::memcpy(orow + m0, irow + (m0 - pb), static_cast<size_t>(m1 - m0) * sizeof(T));
                for (I64 j = m1; j < W; ++j) {
                    const I64 m = pad_map(j - pb, w, mode);
                    orow[j] = m < 0 ? v : irow[m];
                }
            }
        });
    });
}

// ------------------------------------------------------------------------------------------
// Range, OneHot, NonZero, Trilu, CumSum

// Range's types (ONNX's): refused at load, not halfway through a task.
void check_range(const Node& n) {
    check_movable(n);
    for (DType t : n.in_types)
        if (t != DType::undefined && t != DType::f32 && t != DType::f64 && t != DType::i16 && t != DType::i32 &&
            t != DType::i64)
            fail_unsupported(n.where() + ": element type " + dtype_name(t) + " is not supported");
}

void run_range(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor &a = ctx.input(0), &l = ctx.input(1), &d = ctx.input(2);
    require(a.numel() == 1 && l.numel() == 1 && d.numel() == 1, n.where() + ": start, limit and delta must be scalars");
    require(a.dtype == l.dtype && a.dtype == d.dtype, n.where() + ": start, limit and delta differ in type");
    auto go = [&](auto tag) {
        using T = decltype(tag);
        const T s = a.data<T>()[0], lim = l.data<T>()[0], dl = d.data<T>()[0];
        require(dl != T(0), n.where() + ": delta is 0");
        I64 len = 0;
        if constexpr (std::is_integral_v<T>) {
            // Counted exactly: the distance fits an unsigned 64-bit integer.
            const bool up = dl > T(0);
            if (up ? lim > s : lim < s) {
                const uint64_t dist = up ? static_cast<uint64_t>(int64_t{lim}) - static_cast<uint64_t>(int64_t{s})
                                         : static_cast<uint64_t>(int64_t{s}) - static_cast<uint64_t>(int64_t{lim});
                const uint64_t step = up ? static_cast<uint64_t>(int64_t{dl}) : uint64_t{0} - static_cast<uint64_t>(int64_t{dl});
                const uint64_t cnt = dist / step + (dist % step != 0 ? 1 : 0);
                require(cnt <= uint64_t{1000000000000}, n.where() + ": range too long");
                len = static_cast<I64>(cnt);
            }
        } else {
            const double cnt = std::ceil((static_cast<double>(lim) - static_cast<double>(s)) / static_cast<double>(dl));
            require(!(cnt > 1e12), n.where() + ": range too long");
            len = cnt > 0 ? static_cast<I64>(cnt) : 0;
        }
        Tensor& o = ctx.alloc_output(0, a.dtype, {len});
        T* y = o.data<T>();
        for (I64 i = 0; i < len; ++i) y[i] = wadd(s, wmul(static_cast<T>(i), dl));
    };
    switch (a.dtype) {
        case DType::f32: go(float{}); break;
        case DType::f64: go(double{}); break;
        case DType::i16: go(int16_t{}); break;
        case DType::i32: go(int32_t{}); break;
        case DType::i64: go(int64_t{}); break;
        default: fail_unsupported(n.where() + ": element type " + dtype_name(a.dtype) + " is not supported");
    }
}

void run_onehot(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor &ind = ctx.input(0), &dep = ctx.input(1), &vals = ctx.input(2);
    require(dep.numel() == 1, n.where() + ": depth must hold one value");
    require(vals.numel() == 2, n.where() + ": values must hold two elements");
    const double dd = number_at(dep, 0);
    require(dd >= 0 && dd < 1e9, n.where() + ": depth out of range");
    const I64 depth = static_cast<I64>(dd);
    const I64 r = static_cast<I64>(ind.rank());
    const I64 axis = normalize_axis(n.attrs.get_int("axis", -1), r + 1, n);
    Shape out = ind.shape;
    out.insert(out.begin() + axis, depth);
    Tensor& o = ctx.alloc_output(0, vals.dtype, out);
    if (o.numel() == 0) return;
    const I64 outer = prod(ind.shape, 0, static_cast<size_t>(axis)), inner = prod(ind.shape, static_cast<size_t>(axis), ind.rank());
    by_size(vals.dtype, n, [&](auto tag) {
        using T = decltype(tag);
        const T off = vals.data<T>()[0], on = vals.data<T>()[1];
        T* y = o.data<T>();
        std::fill(y, y + o.numel(), off);
        for (I64 ob = 0; ob < outer; ++ob)
            for (I64 i = 0; i < inner; ++i) {
                I64 k = static_cast<I64>(number_at(ind, ob * inner + i));
                if (k < 0) k += depth;
                if (k >= 0 && k < depth) y[(ob * depth + k) * inner + i] = on;
            }
    });
}

void run_nonzero(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const I64 total = x.numel();
    std::vector<I64> nz;
    auto scan = [&](auto pred) {
        for (I64 i = 0; i < total; ++i)
            if (pred(i)) nz.push_back(i);
    };
    switch (x.dtype) {
        case DType::f32: { const float* p = x.data<float>(); scan([p](I64 i) { return p[i] != 0.f; }); break; }
        case DType::f64: { const double* p = x.data<double>(); scan([p](I64 i) { return p[i] != 0.0; }); break; }
        case DType::f16: case DType::bf16: { const uint16_t* p = x.data<uint16_t>(); scan([p](I64 i) { return (p[i] & 0x7fff) != 0; }); break; }
        default:
            by_size(x.dtype, n, [&](auto tag) {
                using T = decltype(tag);
                const T* p = x.data<T>();
                scan([p](I64 i) { return p[i] != 0; });
            });
    }
    const I64 r = static_cast<I64>(x.rank()), cnt = static_cast<I64>(nz.size());
    Tensor& o = ctx.alloc_output(0, DType::i64, {r, cnt});
    int64_t* y = o.data<int64_t>();
    for (I64 j = 0; j < cnt; ++j) {
        I64 rem = nz[static_cast<size_t>(j)];
        for (I64 d = r - 1; d >= 0; --d) {
            y[d * cnt + j] = rem % x.shape[static_cast<size_t>(d)];
            rem /= x.shape[static_cast<size_t>(d)];
        }
    }
}

void run_trilu(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    require(x.rank() >= 2, n.where() + ": input must have rank >= 2");
    const I64 k = ctx.has_in(1) && ctx.input(1).numel() > 0 ? int_at(ctx.input(1), 0) : 0;
    const bool upper = n.attrs.get_int("upper", 1) != 0;
    Tensor& o = ctx.alloc_output(0, x.dtype, x.shape);
    const I64 N = x.shape[x.rank() - 2], M = x.shape[x.rank() - 1];
    const I64 mats = prod(x.shape, 0, x.rank() - 2);
    const size_t esz = dtype_size(x.dtype);
    const char* src = static_cast<const char*>(x.raw());
    char* dst = static_cast<char*>(o.raw());
    const I64 big = int64_t{1} << 40;
    const I64 kk = std::clamp<I64>(k, -big, big);
    for (I64 m = 0; m < mats; ++m)
        for (I64 i = 0; i < N; ++i) {
            const size_t row = static_cast<size_t>((m * N + i) * M) * esz;
            // columns kept: upper j >= i + k, lower j <= i + k
            I64 c0, c1;
            if (upper) {
                c0 = std::clamp<I64>(i + kk, 0, M);
                c1 = M;
            } else {
                c0 = 0;
                c1 = std::clamp<I64>(i + kk + 1, 0, M);
            }
            if (M > 0) std::memset(dst + row, 0, static_cast<size_t>(M) * esz);
            if (c1 > c0) copy_bytes(dst + row + static_cast<size_t>(c0) * esz, src + row + static_cast<size_t>(c0) * esz, static_cast<size_t>(c1 - c0) * esz);
        }
}

void run_cumsum(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const Tensor& ax = ctx.input(1);
    require(ax.numel() == 1, n.where() + ": axis must be a scalar");
    const I64 r = static_cast<I64>(x.rank());
    require(r >= 1, n.where() + ": input must have rank >= 1");
    const size_t axis = static_cast<size_t>(normalize_axis(int_at(ax, 0), r, n));
    const bool excl = n.attrs.get_int("exclusive", 0) != 0, rev = n.attrs.get_int("reverse", 0) != 0;
    Tensor& o = ctx.alloc_output(0, x.dtype, x.shape);
    const I64 outer = prod(x.shape, 0, axis), A = x.shape[axis], inner = prod(x.shape, axis + 1, x.rank());
    by_num(x.dtype, n, [&](auto tag) {
        using T = decltype(tag);
        const T* src = x.data<T>();
        T* dst = o.data<T>();
        std::vector<T> acc(static_cast<size_t>(inner));
        for (I64 ob = 0; ob < outer; ++ob) {
            std::fill(acc.begin(), acc.end(), T(0));
            for (I64 s = 0; s < A; ++s) {
                const I64 a = rev ? A - 1 - s : s;
                const T* xi = src + (ob * A + a) * inner;
                T* yi = dst + (ob * A + a) * inner;
                if (excl)
                    for (I64 i = 0; i < inner; ++i) {
                        yi[i] = acc[static_cast<size_t>(i)];
                        acc[static_cast<size_t>(i)] = wadd(acc[static_cast<size_t>(i)], xi[i]);
                    }
                else
                    for (I64 i = 0; i < inner; ++i) {
                        acc[static_cast<size_t>(i)] = wadd(acc[static_cast<size_t>(i)], xi[i]);
                        yi[i] = acc[static_cast<size_t>(i)];
                    }
            }
        }
    });
}

// ------------------------------------------------------------------------------------------
// TopK, ArgMax, ArgMin

void run_topk(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const I64 r = static_cast<I64>(x.rank());
    require(r >= 1, n.where() + ": input must have rank >= 1");
    const size_t axis = static_cast<size_t>(normalize_axis(n.attrs.get_int("axis", -1), r, n));
    I64 k;
    if (n.opset < 10) k = n.attrs.req_int("k");
    else {
        const Tensor& kt = ctx.input(1);
        require(kt.numel() == 1, n.where() + ": k must hold one value");
        k = int_at(kt, 0);
    }
    const I64 A = x.shape[axis];
    require(k >= 0 && k <= A, n.where() + ": k = " + std::to_string(k) + " is out of range for a dimension of " + std::to_string(A));
    const bool largest = n.attrs.get_int("largest", 1) != 0;
    Shape out = x.shape;
    out[axis] = k;
    Tensor& ov = ctx.alloc_output(0, x.dtype, out);
    Tensor& oi = ctx.alloc_output(1, DType::i64, out);
    const I64 outer = prod(x.shape, 0, axis), inner = prod(x.shape, axis + 1, x.rank());
    if (ov.numel() == 0) return;
    by_num(x.dtype, n, [&](auto tag) {
        using T = decltype(tag);
        const T* src = x.data<T>();
        T* yv = ov.data<T>();
        int64_t* yi = oi.data<int64_t>();
        parallel_for(ctx.threads, outer * inner, std::max<I64>(1, 8192 / std::max<I64>(A, 1)), [&](I64 lo, I64 hi) {
            std::vector<I64> ids(static_cast<size_t>(A));
            for (I64 it = lo; it < hi; ++it) {
                const I64 ob = it / inner, i = it % inner;
                const T* p = src + ob * A * inner + i;
                std::iota(ids.begin(), ids.end(), I64{0});
                auto cmp = [&](I64 u, I64 v) {
                    const T a = p[u * inner], b = p[v * inner];
                    if (a != b) return largest ? a > b : a < b;
                    return u < v;
                };
                std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), cmp);
                for (I64 j = 0; j < k; ++j) {
                    const I64 o = (ob * k + j) * inner + i;
                    yv[o] = p[ids[static_cast<size_t>(j)] * inner];
                    yi[o] = ids[static_cast<size_t>(j)];
                }
            }
        });
    });
}

template <bool IsMax> void run_arg(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const I64 r = static_cast<I64>(x.rank());
    require(r >= 1, n.where() + ": input must have rank >= 1");
    const size_t axis = static_cast<size_t>(normalize_axis(n.attrs.get_int("axis", 0), r, n));
    const bool keep = n.attrs.get_int("keepdims", 1) != 0, last = n.attrs.get_int("select_last_index", 0) != 0;
    const I64 A = x.shape[axis];
    require(A > 0, n.where() + ": cannot reduce an empty axis");
    Shape out = x.shape;
    if (keep) out[axis] = 1;
    else out.erase(out.begin() + static_cast<ptrdiff_t>(axis));
    Tensor& o = ctx.alloc_output(0, DType::i64, out);
    const I64 outer = prod(x.shape, 0, axis), inner = prod(x.shape, axis + 1, x.rank());
    by_num(x.dtype, n, [&](auto tag) {
        using T = decltype(tag);
        const T* src = x.data<T>();
        int64_t* y = o.data<int64_t>();
        for (I64 ob = 0; ob < outer; ++ob)
            for (I64 i = 0; i < inner; ++i) {
                const T* p = src + ob * A * inner + i;
                T best = p[0];
                I64 bi = 0;
                for (I64 a = 1; a < A; ++a) {
                    const T v = p[a * inner];
                    const bool better = IsMax ? (last ? v >= best : v > best) : (last ? v <= best : v < best);
                    if (better) {
                        best = v;
                        bi = a;
                    }
                }
                y[ob * inner + i] = bi;
            }
    });
}

// ------------------------------------------------------------------------------------------
// Reductions

enum class Red { sum, mean, max, min, prod, l1, l2, sumsq, logsumexp, logsum };

// Integers accumulate in 64 bits, wrapping (arith.hpp); uint64 in its own type, so that Max and
// Min compare it as unsigned.
template <class T> struct AccOf { using type = int64_t; };
template <> struct AccOf<uint64_t> { using type = uint64_t; };
template <> struct AccOf<float> { using type = float; };
template <> struct AccOf<double> { using type = double; };

template <class T, Red R> struct RedOp {
    using Acc = typename AccOf<T>::type;
    static Acc init() {
        if constexpr (R == Red::max) return std::numeric_limits<T>::has_infinity ? static_cast<Acc>(-std::numeric_limits<T>::infinity()) : static_cast<Acc>(std::numeric_limits<T>::lowest());
        else if constexpr (R == Red::min) return std::numeric_limits<T>::has_infinity ? static_cast<Acc>(std::numeric_limits<T>::infinity()) : static_cast<Acc>(std::numeric_limits<T>::max());
        else if constexpr (R == Red::prod) return Acc(1);
        else return Acc(0);
    }
    static Acc map(T v) {
        const Acc a = static_cast<Acc>(v);
        if constexpr (R == Red::l1) return wabs(a);
        else if constexpr (R == Red::l2 || R == Red::sumsq) return wmul(a, a);
        else if constexpr (R == Red::logsumexp) return convert<Acc>(std::exp(static_cast<double>(a)));
        else return a;
    }
    static Acc comb(Acc a, Acc b) {
        if constexpr (R == Red::max) return a < b ? b : a;
        else if constexpr (R == Red::min) return b < a ? b : a;
        else if constexpr (R == Red::prod) return wmul(a, b);
        else return wadd(a, b);
    }
    static T fin(Acc a, I64 n) {
        if constexpr (R == Red::mean) return static_cast<T>(n > 0 ? a / static_cast<Acc>(n) : a);
        else if constexpr (R == Red::l2) return convert<T>(std::sqrt(static_cast<double>(a)));
        else if constexpr (R == Red::logsum || R == Red::logsumexp) return convert<T>(std::log(static_cast<double>(a)));
        else return static_cast<T>(a);
    }
};

// y[o, i] = reduce over r of x[o, r, i]
template <class T, Red R>
void reduce_kernel(const T* x, T* y, I64 outer, I64 Rn, I64 inner, int threads) {
    using Op = RedOp<T, R>;
    using Acc = typename Op::Acc;
    if (inner == 1) {
        parallel_for(threads, outer, std::max<I64>(1, 32768 / std::max<I64>(Rn, 1)), [&](I64 lo, I64 hi) {
            for (I64 ob = lo; ob < hi; ++ob) {
                const T* p = x + ob * Rn;
                Acc lane[8];
                for (auto& l : lane) l = Op::init();
                I64 r = 0;
                for (; r + 8 <= Rn; r += 8)
                    for (int j = 0; j < 8; ++j) lane[j] = Op::comb(lane[j], Op::map(p[r + j]));
                for (; r < Rn; ++r) lane[0] = Op::comb(lane[0], Op::map(p[r]));
                Acc a = lane[0];
                for (int j = 1; j < 8; ++j) a = Op::comb(a, lane[j]);
                y[ob] = Op::fin(a, Rn);
            }
        });
        return;
    }
    constexpr I64 IB = 512;
    const I64 nib = (inner + IB - 1) / IB;
    parallel_for(threads, outer * nib, std::max<I64>(1, 32768 / std::max<I64>(Rn * std::min(inner, IB), 1)), [&](I64 lo, I64 hi) {
        Acc acc[IB];
        for (I64 it = lo; it < hi; ++it) {
            const I64 ob = it / nib, i0 = (it % nib) * IB, cnt = std::min(IB, inner - i0);
            for (I64 i = 0; i < cnt; ++i) acc[i] = Op::init();
            for (I64 r = 0; r < Rn; ++r) {
                const T* p = x + (ob * Rn + r) * inner + i0;
                for (I64 i = 0; i < cnt; ++i) acc[i] = Op::comb(acc[i], Op::map(p[i]));
            }
            T* q = y + ob * inner + i0;
            for (I64 i = 0; i < cnt; ++i) q[i] = Op::fin(acc[i], Rn);
        }
    });
}

template <class T>
void reduce_dispatch(Red red, const T* x, T* y, I64 outer, I64 Rn, I64 inner, int threads) {
    switch (red) {
        case Red::sum: reduce_kernel<T, Red::sum>(x, y, outer, Rn, inner, threads); break;
        case Red::mean: reduce_kernel<T, Red::mean>(x, y, outer, Rn, inner, threads); break;
        case Red::max: reduce_kernel<T, Red::max>(x, y, outer, Rn, inner, threads); break;
        case Red::min: reduce_kernel<T, Red::min>(x, y, outer, Rn, inner, threads); break;
        case Red::prod: reduce_kernel<T, Red::prod>(x, y, outer, Rn, inner, threads); break;
        case Red::l1: reduce_kernel<T, Red::l1>(x, y, outer, Rn, inner, threads); break;
        case Red::l2: reduce_kernel<T, Red::l2>(x, y, outer, Rn, inner, threads); break;
        case Red::sumsq: reduce_kernel<T, Red::sumsq>(x, y, outer, Rn, inner, threads); break;
        case Red::logsumexp: reduce_kernel<T, Red::logsumexp>(x, y, outer, Rn, inner, threads); break;
        case Red::logsum: reduce_kernel<T, Red::logsum>(x, y, outer, Rn, inner, threads); break;
    }
}

Red red_of(const std::string& op) {
    if (op == "ReduceSum") return Red::sum;
    if (op == "ReduceMean") return Red::mean;
    if (op == "ReduceMax") return Red::max;
    if (op == "ReduceMin") return Red::min;
    if (op == "ReduceProd") return Red::prod;
    if (op == "ReduceL1") return Red::l1;
    if (op == "ReduceL2") return Red::l2;
    if (op == "ReduceSumSquare") return Red::sumsq;
    if (op == "ReduceLogSumExp") return Red::logsumexp;
    return Red::logsum;
}

void run_reduce_f(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const I64 r = static_cast<I64>(x.rank());
    const Red red = red_of(n.op_type);
    const bool axes_input = n.opset >= 18 || (red == Red::sum && n.opset >= 13);
    std::vector<I64> axes;
    if (axes_input) {
        if (ctx.has_in(1)) axes = to_ints(ctx.input(1));
    } else {
        axes = n.attrs.get_ints("axes");
    }
    const bool keep = n.attrs.get_int("keepdims", 1) != 0;
    if (axes.empty() && axes_input && n.attrs.get_int("noop_with_empty_axes", 0) != 0) {
        ctx.alias_output(0, x, x.shape);
        return;
    }
    std::vector<bool> rd(x.rank(), axes.empty());
    for (I64 a : norm_axes(axes, std::max<I64>(r, 1), n))
        if (a < r) rd[static_cast<size_t>(a)] = true;
    Shape out;
    for (size_t d = 0; d < x.rank(); ++d) {
        if (!rd[d]) out.push_back(x.shape[d]);
        else if (keep) out.push_back(1);
    }
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    if (o.numel() == 0) return;
    // Group the dims: [kept..., reduced..., kept...] is one kernel call; otherwise permute first.
    Shape gs;
    std::vector<bool> gr;
    for (size_t d = 0; d < x.rank(); ++d) {
        if (x.shape[d] == 1) continue;
        if (!gs.empty() && gr.back() == rd[d]) gs.back() *= x.shape[d];
        else {
            gs.push_back(x.shape[d]);
            gr.push_back(rd[d]);
        }
    }
    int nred = 0;
    for (bool b : gr) nred += b ? 1 : 0;
    by_num(x.dtype, n, [&](auto tag) {
        using T = decltype(tag);
        if (nred <= 1) {
            I64 outer = 1, Rn = 1, inner = 1;
            bool after = false;
            for (size_t g = 0; g < gs.size(); ++g) {
                if (gr[g]) {
                    Rn = gs[g];
                    after = true;
                } else if (after) inner *= gs[g];
                else outer *= gs[g];
            }
            reduce_dispatch<T>(red, x.data<T>(), o.data<T>(), outer, Rn, inner, ctx.threads);
            return;
        }
        // permute kept dims first, reduced last, then reduce rows
        Shape ps;
        std::vector<I64> pst;
        const auto st = strides_of(x.shape);
        I64 outer = 1, Rn = 1;
        for (int pass = 0; pass < 2; ++pass)
            for (size_t d = 0; d < x.rank(); ++d)
                if (rd[d] == (pass == 1)) {
                    ps.push_back(x.shape[d]);
                    pst.push_back(st[d]);
                    (pass == 1 ? Rn : outer) *= x.shape[d];
                }
        std::vector<T> tmp(static_cast<size_t>(x.numel()));
        strided_copy<T>(tmp.data(), x.data<T>(), ps, pst, ctx.threads);
        reduce_dispatch<T>(red, tmp.data(), o.data<T>(), outer, Rn, 1, ctx.threads);
    });
}
void run_reduce(OpContext& ctx) { run_via_f32(ctx, run_reduce_f); }

// ------------------------------------------------------------------------------------------
// Resize, Upsample

enum class Ctm { half_pixel, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn, tf_crop_and_resize };
enum class NMode { round_prefer_floor, round_prefer_ceil, floor, ceil, simple };

struct ResizeParams {
    int mode = 0;  // 0 nearest, 1 linear, 2 cubic
    Ctm ctm = Ctm::half_pixel;
    NMode nmode = NMode::round_prefer_floor;
    double cubic_a = -0.75;
    bool exclude_outside = false;
    float extrapolation = 0;
};

int resize_mode(const std::string& m) {
    if (m == "nearest") return 0;
    if (m == "linear" || m == "bilinear") return 1;
    if (m == "cubic") return 2;
    return -1;
}
bool parse_ctm(const std::string& s, Ctm& c) {
    static const std::pair<const char*, Ctm> t[] = {
        {"half_pixel", Ctm::half_pixel}, {"pytorch_half_pixel", Ctm::pytorch_half_pixel},
        {"align_corners", Ctm::align_corners}, {"asymmetric", Ctm::asymmetric},
        {"tf_half_pixel_for_nn", Ctm::tf_half_pixel_for_nn}, {"tf_crop_and_resize", Ctm::tf_crop_and_resize}};
    for (const auto& [k, v] : t)
        if (s == k) {
            c = v;
            return true;
        }
    return false;
}
bool parse_nmode(const std::string& s, NMode& m) {
    if (s == "round_prefer_floor") m = NMode::round_prefer_floor;
    else if (s == "round_prefer_ceil") m = NMode::round_prefer_ceil;
    else if (s == "floor") m = NMode::floor;
    else if (s == "ceil") m = NMode::ceil;
    else return false;
    return true;
}

ResizeParams resize_params(const Node& n) {
    ResizeParams p;
    const std::string m = n.attrs.get_string("mode", "nearest");
    p.mode = resize_mode(m);
    if (p.mode < 0 || (p.mode == 2 && (n.op_type == "Upsample" || n.opset < 11)))
        fail_unsupported(n.where() + ": mode '" + m + "' is not supported");
    if (n.op_type == "Upsample" || n.opset < 11) {
        p.ctm = Ctm::asymmetric;
        p.nmode = NMode::simple;
        return p;
    }
    const std::string c = n.attrs.get_string("coordinate_transformation_mode", "half_pixel");
    if (!parse_ctm(c, p.ctm)) fail_unsupported(n.where() + ": coordinate_transformation_mode '" + c + "' is not supported");
    const std::string nm = n.attrs.get_string("nearest_mode", "round_prefer_floor");
    if (!parse_nmode(nm, p.nmode)) fail_unsupported(n.where() + ": nearest_mode '" + nm + "' is not supported");
    p.cubic_a = n.attrs.get_float("cubic_coeff_a", -0.75f);
    p.exclude_outside = n.attrs.get_int("exclude_outside", 0) != 0;
    p.extrapolation = n.attrs.get_float("extrapolation_value", 0.f);
    if (n.attrs.get_int("antialias", 0) != 0) fail_unsupported(n.where() + ": antialias is not supported");
    if (n.attrs.has("axes")) fail_unsupported(n.where() + ": the axes attribute is not supported");
    const std::string kar = n.attrs.get_string("keep_aspect_ratio_policy", "stretch");
    if (kar != "stretch") fail_unsupported(n.where() + ": keep_aspect_ratio_policy '" + kar + "' is not supported");
    return p;
}

void check_resize(const Node& n) {
    check_movable(n);
    const ResizeParams p = resize_params(n);
    if (p.mode != 0 && !n.in_types.empty() && n.in_types[0] != DType::undefined && !is_float(n.in_types[0]))
        fail_unsupported(n.where() + ": " + n.attrs.get_string("mode", "") + " resize of " + dtype_name(n.in_types[0]) +
                         " is not supported");
}

struct AxisTaps {
    int ntap = 1;
    std::vector<I64> idx;     // n_out * ntap
    std::vector<double> w;    // n_out * ntap
    std::vector<char> ext;    // n_out: extrapolated
    bool any_ext = false;
    bool identity = false;
};

AxisTaps make_taps(const ResizeParams& p, I64 in, I64 out, double scale, double roi0, double roi1) {
    AxisTaps t;
    t.ntap = p.mode == 0 ? 1 : p.mode == 1 ? 2 : 4;
    t.idx.resize(static_cast<size_t>(out * t.ntap));
    t.w.resize(static_cast<size_t>(out * t.ntap));
    t.ext.assign(static_cast<size_t>(out), 0);
    const double out_f = scale * static_cast<double>(in);
    const double inm1 = static_cast<double>(in - 1);
    bool ident = in == out;
    for (I64 j = 0; j < out; ++j) {
        const double xj = static_cast<double>(j);
        double x = 0;
        switch (p.ctm) {
            case Ctm::half_pixel: x = (xj + 0.5) / scale - 0.5; break;
            case Ctm::pytorch_half_pixel: x = out_f == 1 ? -0.5 : (xj + 0.5) / scale - 0.5; break;
            case Ctm::align_corners: x = out_f == 1 ? 0 : xj * inm1 / (out_f - 1); break;
            case Ctm::asymmetric: x = xj / scale; break;
            case Ctm::tf_half_pixel_for_nn: x = (xj + 0.5) / scale; break;
            case Ctm::tf_crop_and_resize:
                x = out_f == 1 ? (roi1 - roi0) * inm1 / 2 : xj * (roi1 - roi0) * inm1 / (out_f - 1);
                x += roi0 * inm1;
                if (x < 0 || x > inm1) {
                    t.ext[static_cast<size_t>(j)] = 1;
                    t.any_ext = true;
                    x = std::clamp(x, 0.0, std::max(inm1, 0.0));
                }
                break;
        }
        if (!std::isfinite(x)) x = 0;
        x = std::clamp(x, -4.0, static_cast<double>(in) + 4.0);
        const double fl = std::floor(x);
        const bool integral = fl == x;
        const I64 i0 = static_cast<I64>(fl) - (integral ? 1 : 0);
        const double ratio = x - static_cast<double>(i0);  // (0, 1]
        I64* ix = t.idx.data() + j * t.ntap;
        double* w = t.w.data() + j * t.ntap;
        auto cl = [in](I64 v) { return std::clamp<I64>(v, 0, in - 1); };
        if (p.mode == 0) {
            bool up;
            if (integral) up = true;
            else switch (p.nmode) {
                case NMode::round_prefer_floor: up = ratio > 0.5; break;
                case NMode::round_prefer_ceil: up = ratio >= 0.5; break;
                case NMode::floor: up = false; break;
                case NMode::ceil: up = true; break;
                case NMode::simple: default: up = scale < 1; break;  // Upsample / Resize-10: ceil when downsampling
            }
            ix[0] = cl(i0 + (up ? 1 : 0));
            w[0] = 1;
            if (ix[0] != j) ident = false;
        } else if (p.mode == 1) {
            ix[0] = cl(i0);
            ix[1] = cl(i0 + 1);
            w[0] = 1 - ratio;
            w[1] = ratio;
            for (int k = 0; k < 2; ++k)
                if (ix[k] != j && w[k] != 0) ident = false;
        } else {
            const double A = p.cubic_a, rr = ratio, q = 1 - ratio;
            double c[4] = {((A * (rr + 1) - 5 * A) * (rr + 1) + 8 * A) * (rr + 1) - 4 * A,
                           ((A + 2) * rr - (A + 3)) * rr * rr + 1,
                           ((A + 2) * q - (A + 3)) * q * q + 1,
                           ((A * (q + 1) - 5 * A) * (q + 1) + 8 * A) * (q + 1) - 4 * A};
            if (p.exclude_outside) {
                double s = 0;
                for (int k = 0; k < 4; ++k) {
                    const I64 v = i0 - 1 + k;
                    if (v < 0 || v >= in) c[k] = 0;
                    s += c[k];
                }
                if (s != 0)
                    for (double& v : c) v /= s;
            }
            for (int k = 0; k < 4; ++k) {
                ix[k] = cl(i0 - 1 + k);
                w[k] = c[k];
                if (ix[k] != j && w[k] != 0) ident = false;
            }
            if (ident) {
                double s = 0;
                for (int k = 0; k < 4; ++k) s += ix[k] == j ? w[k] : 0;
                if (s != 1) ident = false;
            }
        }
    }
    t.identity = ident && !t.any_ext;
    return t;
}

// One separable pass along an axis: x [outer, nin, inner] -> y [outer, nout, inner].
template <class T>
void resize_pass(const T* x, T* y, I64 outer, I64 nin, I64 nout, I64 inner, const AxisTaps& t, int threads) {
    if (inner == 1) {  // the last axis: a gather per row
        std::vector<T> wt(t.w.size());
        for (size_t i = 0; i < wt.size(); ++i) wt[i] = static_cast<T>(t.w[i]);
        parallel_for(threads, outer, std::max<I64>(1, 16384 / std::max<I64>(nout * t.ntap, 1)), [&](I64 lo, I64 hi) {
            for (I64 ob = lo; ob < hi; ++ob) {
                const T* src = x + ob * nin;
                T* dst = y + ob * nout;
                const I64* ix = t.idx.data();
                const T* w = wt.data();
                if (t.ntap == 1)
                    for (I64 j = 0; j < nout; ++j) dst[j] = src[ix[j]];
                else if (t.ntap == 2)
                    for (I64 j = 0; j < nout; ++j) dst[j] = w[2 * j] * src[ix[2 * j]] + w[2 * j + 1] * src[ix[2 * j + 1]];
                else
                    for (I64 j = 0; j < nout; ++j) {
                        const I64* q = ix + 4 * j;
                        const T* v = w + 4 * j;
                        dst[j] = v[0] * src[q[0]] + v[1] * src[q[1]] + v[2] * src[q[2]] + v[3] * src[q[3]];
                    }
            }
        });
        return;
    }
    parallel_for(threads, outer * nout, std::max<I64>(1, 16384 / std::max<I64>(inner * t.ntap, 1)), [&](I64 lo, I64 hi) {
        for (I64 it = lo; it < hi; ++it) {
            const I64 ob = it / nout, j = it % nout;
            const T* src = x + ob * nin * inner;
            T* dst = y + it * inner;
            const I64* ix = t.idx.data() + j * t.ntap;
            const double* w = t.w.data() + j * t.ntap;
            if (t.ntap == 1) {
                std::memcpy(dst, src + ix[0] * inner, static_cast<size_t>(inner) * sizeof(T));
            } else if (t.ntap == 2) {
                const T w0 = static_cast<T>(w[0]), w1 = static_cast<T>(w[1]);
                const T* a = src + ix[0] * inner;
                const T* b = src + ix[1] * inner;
                for (I64 i = 0; i < inner; ++i) dst[i] = w0 * a[i] + w1 * b[i];
            } else {
                const T w0 = static_cast<T>(w[0]), w1 = static_cast<T>(w[1]), w2 = static_cast<T>(w[2]), w3 = static_cast<T>(w[3]);
                const T* a = src + ix[0] * inner;
                const T* b = src + ix[1] * inner;
                const T* c = src + ix[2] * inner;
                const T* d = src + ix[3] * inner;
                for (I64 i = 0; i < inner; ++i) dst[i] = w0 * a[i] + w1 * b[i] + w2 * c[i] + w3 * d[i];
            }
        }
    });
}

// Resize of the last two axes without an intermediate tensor: per output row, blend the input
// rows (vertical taps) into a row buffer, then gather/blend along the row (horizontal taps).
// ty / tx null: that axis is unchanged.
template <class T>
void resize_2d(const T* x, T* y, I64 planes, I64 H, I64 W, I64 OH, I64 OW, const AxisTaps* ty, const AxisTaps* tx,
               int threads) {
    std::vector<T> wy, wx;
    if (ty) for (double v : ty->w) wy.push_back(static_cast<T>(v));
    if (tx) for (double v : tx->w) wx.push_back(static_cast<T>(v));
    parallel_for(threads, planes * OH, std::max<I64>(1, 16384 / std::max<I64>(OW + W, 1)), [&](I64 lo, I64 hi) {
        std::vector<T> tmp(static_cast<size_t>(W));
        for (I64 it = lo; it < hi; ++it) {
            const I64 p = it / OH, oy = it % OH;
            const T* plane = x + p * H * W;
            const T* row;
            if (!ty) {
                row = plane + oy * W;
            } else if (ty->ntap == 1) {
                row = plane + ty->idx[static_cast<size_t>(oy)] * W;
            } else {
                const I64* iy = ty->idx.data() + oy * ty->ntap;
                const T* w = wy.data() + oy * ty->ntap;
                T* t = tmp.data();
                const T* r0 = plane + iy[0] * W;
                const T* r1 = plane + iy[1] * W;
                if (ty->ntap == 2) {
                    for (I64 i = 0; i < W; ++i) t[i] = w[0] * r0[i] + w[1] * r1[i];
                } else {
                    const T* r2 = plane + iy[2] * W;
                    const T* r3 = plane + iy[3] * W;
                    for (I64 i = 0; i < W; ++i) t[i] = w[0] * r0[i] + w[1] * r1[i] + w[2] * r2[i] + w[3] * r3[i];
                }
                row = t;
            }
            T* d = y + it * OW;
            if (!tx) {
                std::memcpy(d, row, static_cast<size_t>(W) * sizeof(T));
                continue;
            }
            const I64* ix = tx->idx.data();
            const T* w = wx.data();
            if (tx->ntap == 1)
                for (I64 j = 0; j < OW; ++j) d[j] = row[ix[j]];
            else if (tx->ntap == 2)
                for (I64 j = 0; j < OW; ++j) d[j] = w[2 * j] * row[ix[2 * j]] + w[2 * j + 1] * row[ix[2 * j + 1]];
            else
                for (I64 j = 0; j < OW; ++j) {
                    const I64* q = ix + 4 * j;
                    const T* v = w + 4 * j;
                    d[j] = v[0] * row[q[0]] + v[1] * row[q[1]] + v[2] * row[q[2]] + v[3] * row[q[3]];
                }
        }
    });
}

void resize_core(OpContext& ctx, const ResizeParams& p, const Shape& out, const std::vector<double>& scales,
                 const std::vector<double>& roi) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    const size_t r = x.rank();
    std::vector<AxisTaps> taps(r);
    std::vector<size_t> order;
    for (size_t a = 0; a < r; ++a) {
        require(out[a] >= 0, n.where() + ": negative output size");
        if (x.shape[a] == 0 || out[a] == 0) continue;
        taps[a] = make_taps(p, x.shape[a], out[a], scales[a], roi.empty() ? 0 : roi[a], roi.empty() ? 1 : roi[a + r]);
        if (!taps[a].identity) order.push_back(a);
    }
    for (size_t a = 0; a < r; ++a)
        if (out[a] != x.shape[a] && (x.shape[a] == 0 || out[a] == 0) && out[a] != 0)
            fail(n.where() + ": cannot resize an empty dimension");
    if (checked_numel(out) == 0) {
        ctx.alloc_output(0, x.dtype, out);
        return;
    }
    if (order.empty()) {
        ctx.alias_output(0, x, out);
        return;
    }
    // shrinking axes first
    std::stable_sort(order.begin(), order.end(), [&](size_t u, size_t v) {
        return static_cast<double>(out[u]) / static_cast<double>(x.shape[u]) < static_cast<double>(out[v]) / static_cast<double>(x.shape[v]);
    });
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    auto go = [&](auto tag) {
        using T = decltype(tag);
        bool last_two = r >= 2;
        for (size_t a : order) last_two = last_two && a + 2 >= r;
        if (last_two) {
            const bool hy = std::find(order.begin(), order.end(), r - 2) != order.end();
            const bool hx = std::find(order.begin(), order.end(), r - 1) != order.end();
            resize_2d<T>(x.data<T>(), o.data<T>(), prod(x.shape, 0, r - 2), x.shape[r - 2], x.shape[r - 1], out[r - 2],
                         out[r - 1], hy ? &taps[r - 2] : nullptr, hx ? &taps[r - 1] : nullptr, ctx.threads);
        } else {
        Shape cur = x.shape;
        const T* src = x.data<T>();
        std::vector<T> bufs[2];
        for (size_t k = 0; k < order.size(); ++k) {
            const size_t a = order[k];
            Shape nxt = cur;
            nxt[a] = out[a];
            T* dst;
            if (k + 1 == order.size()) dst = o.data<T>();
            else {
                bufs[k % 2].resize(static_cast<size_t>(checked_numel(nxt)));
                dst = bufs[k % 2].data();
            }
            const I64 outer = prod(cur, 0, a), inner = prod(cur, a + 1, r);
            resize_pass<T>(src, dst, outer, cur[a], out[a], inner, taps[a], ctx.threads);
            src = dst;
            cur = nxt;
        }
        }
        // tf_crop_and_resize: outputs outside the input take extrapolation_value
        for (size_t a = 0; a < r; ++a) {
            if (!taps[a].any_ext) continue;
            T v;
            if constexpr (std::is_floating_point_v<T>) v = static_cast<T>(p.extrapolation);
            else fail_unsupported(n.where() + ": extrapolation needs a float input");
            const I64 outer = prod(out, 0, a), inner = prod(out, a + 1, r);
            T* y = o.data<T>();
            for (I64 ob = 0; ob < outer; ++ob)
                for (I64 j = 0; j < out[a]; ++j)
                    if (taps[a].ext[static_cast<size_t>(j)]) std::fill(y + (ob * out[a] + j) * inner, y + (ob * out[a] + j + 1) * inner, v);
        }
    };
    if (x.dtype == DType::f32) go(float{});
    else if (x.dtype == DType::f64) go(double{});
    else if (p.mode == 0) by_size(x.dtype, n, [&](auto tag) { go(tag); });
    else fail_unsupported(n.where() + ": resize of " + dtype_name(x.dtype) + " is not supported for this mode");
}

// Output sizes and scales from scales (floor(in * scale)) or sizes.
void sizes_from(const Tensor& x, const std::vector<double>& sc, const std::vector<I64>& sizes, const Node& n,
                Shape& out, std::vector<double>& scales) {
    const size_t r = x.rank();
    out.assign(r, 0);
    scales.assign(r, 1);
    if (!sizes.empty()) {
        require(sizes.size() == r, n.where() + ": sizes has " + std::to_string(sizes.size()) + " entries for rank " + std::to_string(r));
        for (size_t a = 0; a < r; ++a) {
            out[a] = sizes[a];
            require(out[a] >= 0 && out[a] <= (int64_t{1} << 32), n.where() + ": invalid output size");
            scales[a] = x.shape[a] > 0 ? static_cast<double>(out[a]) / static_cast<double>(x.shape[a]) : 1;
        }
        return;
    }
    require(sc.size() == r, n.where() + ": scales has " + std::to_string(sc.size()) + " entries for rank " + std::to_string(r));
    for (size_t a = 0; a < r; ++a) {
        require(sc[a] > 0 && sc[a] < 1e6, n.where() + ": invalid scale");
        scales[a] = sc[a];
        const double v = std::floor(sc[a] * static_cast<double>(x.shape[a]));
        require(v <= static_cast<double>(int64_t{1} << 32), n.where() + ": output too large");
        out[a] = static_cast<I64>(v);
    }
}

std::vector<double> doubles(const Tensor& t) {
    std::vector<double> v(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = number_at(t, static_cast<I64>(i));
    return v;
}

void run_resize_f(OpContext& ctx) {
    const Node& n = ctx.node;
    const ResizeParams p = resize_params(n);
    const Tensor& x = ctx.input(0);
    std::vector<double> sc, roi;
    std::vector<I64> sizes;
    if (n.op_type == "Upsample" && n.opset < 9) {
        for (float f : n.attrs.get_floats("scales")) sc.push_back(f);
    } else if (n.op_type == "Upsample" || n.opset < 11) {
        sc = doubles(ctx.input(1));
    } else {
        if (ctx.has_in(1) && p.ctm == Ctm::tf_crop_and_resize) roi = doubles(ctx.input(1));
        if (ctx.has_in(2)) sc = doubles(ctx.input(2));
        if (ctx.has_in(3)) sizes = to_ints(ctx.input(3));
        require(sc.empty() != sizes.empty(), n.where() + ": exactly one of scales and sizes must be given");
    }
    if (p.ctm == Ctm::tf_crop_and_resize) {
        if (roi.empty()) {
            roi.assign(2 * x.rank(), 0);
            for (size_t a = 0; a < x.rank(); ++a) roi[a + x.rank()] = 1;
        }
        require(roi.size() == 2 * x.rank(), n.where() + ": roi must have 2 * rank entries");
    }
    Shape out;
    std::vector<double> scales;
    sizes_from(x, sc, sizes, n, out, scales);
    resize_core(ctx, p, out, scales, roi);
}
void run_resize(OpContext& ctx) {
    if (is_half(ctx.input(0).dtype) && resize_params(ctx.node).mode == 0) {
        run_resize_f(ctx);  // nearest moves bytes
        return;
    }
    run_via_f32(ctx, run_resize_f);
}

// ------------------------------------------------------------------------------------------
// DepthToSpace, SpaceToDepth

void run_depth_to_space(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    require(x.rank() == 4, n.where() + ": input must be 4-D");
    const I64 b = n.attrs.req_int("blocksize");
    const std::string mode = n.attrs.get_string("mode", "DCR");
    require(b >= 1, n.where() + ": blocksize must be positive");
    const I64 N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    require(C % (b * b) == 0, n.where() + ": channels not divisible by blocksize^2");
    const I64 Cp = C / (b * b);
    Shape out{N, Cp, H * b, W * b};
    Shape view{N, Cp, H, b, W, b};
    std::vector<I64> istr;
    if (mode == "DCR") istr = {C * H * W, H * W, W, b * Cp * H * W, 1, Cp * H * W};
    else if (mode == "CRD") istr = {C * H * W, b * b * H * W, W, b * H * W, 1, H * W};
    else fail_unsupported(n.where() + ": mode '" + mode + "' is not supported");
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    strided_copy_any(ctx, o, x, 0, view, istr);
}

void run_space_to_depth(OpContext& ctx) {
    const Node& n = ctx.node;
    const Tensor& x = ctx.input(0);
    require(x.rank() == 4, n.where() + ": input must be 4-D");
    const I64 b = n.attrs.req_int("blocksize");
    require(b >= 1, n.where() + ": blocksize must be positive");
    const I64 N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    require(H % b == 0 && W % b == 0, n.where() + ": spatial dimensions not divisible by blocksize");
    const I64 Hp = H / b, Wp = W / b;
    Shape out{N, C * b * b, Hp, Wp};
    Shape view{N, b, b, C, Hp, Wp};
    std::vector<I64> istr{C * H * W, W, 1, H * W, b * W, b};
    Tensor& o = ctx.alloc_output(0, x.dtype, out);
    strided_copy_any(ctx, o, x, 0, view, istr);
}

// ------------------------------------------------------------------------------------------

void reg(const char* op, int since, int until, std::function<void(const Node&)> check, RunFn run) {
    register_op(OpDef{op, since, until, std::move(check), run});
}

}  // namespace

void register_tensor_ops() {
    const auto mv = check_movable;
    const auto num = check_numeric_in0;
    reg("Identity", 1, 1000, mv, run_identity);
    reg("Dropout", 1, 1000, check_dropout, run_dropout);
    reg("Constant", 1, 1000, check_constant, run_constant);
    reg("ConstantOfShape", 9, 1000, check_constant_of_shape, run_constant_of_shape);
    reg("Shape", 1, 1000, mv, run_shape);
    reg("Size", 1, 1000, mv, run_size);
    reg("Flatten", 1, 1000, mv, run_flatten);
    reg("Reshape", 1, 1000, mv, run_reshape);
    reg("Squeeze", 1, 1000, mv, run_squeeze);
    reg("Unsqueeze", 1, 1000, mv, run_unsqueeze);
    reg("Transpose", 1, 1000, mv, run_transpose);
    reg("Concat", 1, 1000, mv, run_concat);
    reg("Split", 1, 1000, mv, run_split);
    reg("Slice", 1, 1000, mv, run_slice);
    reg("Gather", 1, 1000, mv, run_gather);
    reg("GatherElements", 11, 1000, mv, run_gather_elements);
    reg("GatherND", 11, 1000, mv, run_gather_nd);
    reg("ScatterElements", 11, 1000, check_scatter, run_scatter_elements);
    reg("Scatter", 9, 10, check_scatter, run_scatter_elements);
    reg("Expand", 8, 1000, mv, run_expand);
    reg("Tile", 6, 1000, mv, run_tile);
    reg("Pad", 2, 1000, check_pad, run_pad);
    reg("Range", 11, 1000, check_range, run_range);
    reg("OneHot", 9, 1000, mv, run_onehot);
    reg("TopK", 1, 1000, num, [](OpContext& c) { run_via_f32(c, run_topk); });
    reg("ArgMax", 1, 1000, num, [](OpContext& c) { run_via_f32(c, run_arg<true>); });
    reg("ArgMin", 1, 1000, num, [](OpContext& c) { run_via_f32(c, run_arg<false>); });
    for (const char* op : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                           "ReduceSumSquare", "ReduceLogSumExp", "ReduceLogSum"})
        reg(op, 1, 1000, num, run_reduce);
    reg("Resize", 10, 1000, check_resize, run_resize);
    reg("Upsample", 7, 9, check_resize, run_resize);
    reg("DepthToSpace", 1, 1000, mv, run_depth_to_space);
    reg("SpaceToDepth", 1, 1000, mv, run_space_to_depth);
    reg("NonZero", 9, 1000, mv, run_nonzero);
    reg("Trilu", 14, 1000, mv, run_trilu);
    reg("CumSum", 11, 1000, num, [](OpContext& c) { run_via_f32(c, run_cumsum); });
}

}  // namespace cpn::infer
