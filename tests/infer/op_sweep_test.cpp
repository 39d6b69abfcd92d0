// op_sweep_test.cpp: every registered operator, fed the extreme values of every element type
// it accepts (an integer type's minimum and maximum, -1, 0; NaN, the infinities, 1e30, values
// past int32 and int64), in several shapes and arities, as data and as parameters (axes,
// shapes, counts, indices). Each run either computes or throws Error naming the node; nothing
// else. A task's model and inputs come from the network, so this is the operators' share of
// "the process stays up".
//
// In the normal build this catches crashes, non-Error exceptions and allocations the input
// chose (the runs cap outputs at 2^16 elements). Built with -DCPN_SANITIZE=address,undefined
// (docs/fuzzing.md) it is also the check that integer arithmetic wraps and float-to-integer
// conversions saturate instead of being undefined behaviour: signed overflow, INT_MIN / -1,
// out-of-range shifts and float-to-int casts abort the run there.
//
// OperatorArithmetic.* below pins the results those rules give.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <typeinfo>

#include <gtest/gtest.h>

#include "attr_helpers.hpp"
#include "ops.hpp"

namespace cpn::infer {
namespace {

using test::float_attr;
using test::int_attr;
using test::ints_attr;

const std::vector<DType> kTypes = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8,      DType::u8, DType::i16,
                                   DType::u16, DType::i32, DType::u32, DType::i64,  DType::u64, DType::boolean};

template <class T> std::vector<T> int_pattern(bool extreme) {
    using L = std::numeric_limits<T>;
    if (!extreme) return {T(0), T(1), T(1), T(0), T(2), T(1)};
    return {L::min(), L::max(), static_cast<T>(-1), T(0), T(1), static_cast<T>(L::max() - 1), static_cast<T>(L::min() + 1),
            T(2)};
}
std::vector<double> float_pattern(bool extreme) {
    if (!extreme) return {0, 1, 1, 0, 2, 1};
    const double inf = std::numeric_limits<double>::infinity();
    return {std::nan(""), inf, -inf, 1e30, -1e30, 0.0, -0.0, 1, 3e9, -3e9, 1.9e19, -9.3e18, 0.5, 65504.0, 1e-45};
}

template <class T> void fill_ints(Tensor& t, bool extreme, size_t salt) {
    const auto p = int_pattern<T>(extreme);
    T* d = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = p[(static_cast<size_t>(i) + salt) % p.size()];
}

// A tensor of type t and shape s holding the extreme (or the small, valid-looking) pattern,
// rotated by `salt` so two inputs differ.
Tensor filled(DType t, const Shape& s, bool extreme, size_t salt) {
    Tensor x = make_tensor(t, s);
    const int64_t n = x.numel();
    const auto fp = float_pattern(extreme);
    auto fv = [&](int64_t i) { return fp[(static_cast<size_t>(i) + salt) % fp.size()]; };
    switch (t) {
        case DType::f32: for (int64_t i = 0; i < n; ++i) x.data<float>()[i] = static_cast<float>(fv(i)); break;
        case DType::f64: for (int64_t i = 0; i < n; ++i) x.data<double>()[i] = fv(i); break;
        case DType::f16: for (int64_t i = 0; i < n; ++i) x.data<uint16_t>()[i] = float_to_half(static_cast<float>(fv(i))); break;
        case DType::bf16: for (int64_t i = 0; i < n; ++i) x.data<uint16_t>()[i] = float_to_bf16(static_cast<float>(fv(i))); break;
        case DType::i8: fill_ints<int8_t>(x, extreme, salt); break;
        case DType::u8: fill_ints<uint8_t>(x, extreme, salt); break;
        case DType::i16: fill_ints<int16_t>(x, extreme, salt); break;
        case DType::u16: fill_ints<uint16_t>(x, extreme, salt); break;
        case DType::i32: fill_ints<int32_t>(x, extreme, salt); break;
        case DType::u32: fill_ints<uint32_t>(x, extreme, salt); break;
        case DType::i64: fill_ints<int64_t>(x, extreme, salt); break;
        case DType::u64: fill_ints<uint64_t>(x, extreme, salt); break;
        case DType::boolean: for (int64_t i = 0; i < n; ++i) x.data<uint8_t>()[i] = ((i + static_cast<int64_t>(salt)) % 3) != 0; break;
        default: break;
    }
    return x;
}

// Attribute sets tried besides none: the ones that choose a computation over the inputs.
std::vector<std::map<std::string, Attr>> attr_variants(const std::string& op) {
    std::vector<std::map<std::string, Attr>> v = {{}};
    if (op == "Cast")
        for (DType t : kTypes) v.push_back({{"to", int_attr(static_cast<int64_t>(t))}});
    if (op == "Mod") v.push_back({{"fmod", int_attr(1)}});
    if (op == "CumSum") v.push_back({{"exclusive", int_attr(1)}, {"reverse", int_attr(1)}});
    if (op.rfind("Reduce", 0) == 0) v.push_back({{"keepdims", int_attr(0)}, {"axes", ints_attr({0})}});
    if (op == "Concat") v.back() = {{"axis", int_attr(0)}};
    if (op == "DepthToSpace" || op == "SpaceToDepth") v.back() = {{"blocksize", int_attr(1)}};
    if (op == "LRN") v.back() = {{"size", int_attr(1)}};
    if (op == "AveragePool" || op == "MaxPool" || op == "LpPool") v.back() = {{"kernel_shape", ints_attr({1, 1})}};
    if (op == "Constant") {
        Attr t;
        t.kind = Attr::t;
        t.tensor = std::make_shared<Tensor>(filled(DType::i64, {3}, true, 0));
        v.back() = {{"value", t}};
    }
    if (op == "Gemm") {
        v.push_back({{"transA", int_attr(1)}, {"transB", int_attr(1)}});
        v.push_back({{"alpha", float_attr(1e30f)}, {"beta", float_attr(-2.5f)}});
    }
    if (op == "AveragePool" || op == "MaxPool" || op == "LpPool")
        v.push_back({{"kernel_shape", ints_attr({2, 2})}, {"strides", ints_attr({2, 2})}, {"pads", ints_attr({1, 1, 1, 1})},
                     {"ceil_mode", int_attr(1)}, {"count_include_pad", int_attr(1)}});
    return v;
}

struct Tally {
    int64_t computed = 0, refused = 0;
    std::map<std::string, std::string> late_unsupported;  // message -> a case that met it
};

// One operator call: check (as the importer does at load time), then run. Returns whether it
// computed; a non-Error exception fails the test naming the case, an Error::unsupported from the
// run (not the check) is collected.
// `label` names the case; built only when something is reported (millions of cases pass).
bool run_case(const OpDef& def, Node& node, const std::vector<Tensor>& inputs, const std::function<std::string()>& label,
              Tally& tally) {
    node.in_types.clear();
    for (const Tensor& t : inputs) node.in_types.push_back(t.dtype);
    node.out_types.assign(node.outputs.size(), DType::undefined);
    node.attrs.where = node.where();
    try {
        if (def.check) def.check(node);
    } catch (const Error&) {
        ++tally.refused;
        return false;
    }
    try {
        std::vector<const Tensor*> in;
        for (const Tensor& t : inputs) in.push_back(&t);
        std::vector<Tensor> out(node.outputs.size());
        OpContext ctx{node, in, out};
        ctx.threads = 2;
        ctx.max_elements = int64_t{1} << 16;
        def.run(ctx);
        for (const Tensor& o : out)
            if (o.defined() && o.numel() > ctx.max_elements) {
                ADD_FAILURE() << label() << ": an output of " << o.numel() << " elements passed the limit";
                return false;
            }
        ++tally.computed;
        return true;
    } catch (const Error& e) {
        ++tally.refused;  // the executor prefixes the node's name where the message lacks it
        if (e.kind() == Error::unsupported) tally.late_unsupported[e.what()] = label();
    } catch (const std::exception& e) {
        ADD_FAILURE() << label() << ": threw " << typeid(e).name() << " (not Error): " << e.what();
    }
    return false;
}

std::string type_list(const std::vector<Tensor>& in) {
    std::string s;
    for (const Tensor& t : in) s += std::string(s.empty() ? "" : ",") + dtype_name(t.dtype) + shape_str(t.shape);
    return s;
}

TEST(OperatorSweep, ExtremeValuesComputeOrAreRefusedForEveryOperator) {
    const std::vector<Shape> first_shapes = {{3, 3}, {1, 1, 3, 3}, {}, {0, 3}};
    const std::vector<Shape> rest_shapes = {{}, {1}, {2}, {3, 3}, {1, 1, 3, 3}, {0}};
    Tally total;
    std::set<std::string> never;
    int defs = 0;
    for (const std::string& op : supported_ops()) {
        // Each distinct implementation, at the newest opset it follows.
        std::map<const OpDef*, int> versions;
        for (int opset = 1; opset <= 21; ++opset)
            if (const OpDef* d = find_op(op, opset)) versions[d] = opset;
        for (const auto& [def, opset] : versions) {
            ++defs;
            bool any = false;
            for (const auto& attrs : attr_variants(op)) {
                for (size_t outputs : {size_t{1}, size_t{3}}) {
                    Node node;
                    node.name = "sweep";
                    node.op_type = op;
                    node.opset = opset;
                    node.attrs.map = attrs;
                    for (size_t o = 0; o < outputs; ++o) node.outputs.push_back("y" + std::to_string(o));
                    for (size_t arity = 0; arity <= 5; ++arity) {
                        node.inputs.assign(arity, "");
                        for (size_t i = 0; i < arity; ++i) node.inputs[i] = "x" + std::to_string(i);
                        for (DType t : kTypes) {
                            // The other inputs: the same type, int64 (axes, shapes, indices) or float32.
                            const DType rests[] = {t, DType::i64, DType::f32};
                            for (size_t ri = 0; ri < 3; ++ri) {
                                const DType rest = rests[ri];
                                if (ri > 0 && (arity < 2 || rest == t)) continue;  // the same case again
                                for (const Shape& s0 : first_shapes)
                                    for (const Shape& sr : rest_shapes) {
                                        if (arity < 2 && &sr != &rest_shapes[0]) continue;
                                        for (int pat = 0; pat < 4; ++pat) {
                                            std::vector<Tensor> in;
                                            for (size_t i = 0; i < arity; ++i)
                                                in.push_back(filled(i == 0 ? t : rest, i == 0 ? s0 : sr,
                                                                    i == 0 ? (pat & 1) != 0 : (pat & 2) != 0, i * 3));
                                            auto label = [&] {
                                                return op + " opset " + std::to_string(opset) + " (" + type_list(in) +
                                                       ", " + std::to_string(outputs) + " outputs, pattern " +
                                                       std::to_string(pat) + ")";
                                            };
                                            any |= run_case(*def, node, in, label, total);
                                        }
                                    }
                            }
                        }
                    }
                }
            }
            if (!any) never.insert(op + " (opset " + std::to_string(opset) + ")");
        }
    }
    std::string nv;
    for (const auto& s : never) nv += " " + s;
    for (const auto& [msg, label] : total.late_unsupported) std::printf("late unsupported: %s  [%s]\n", msg.c_str(), label.c_str());
    std::printf("operator sweep: %d implementations, %lld runs computed, %lld refused with Error; never computed:%s\n",
                defs, static_cast<long long>(total.computed), static_cast<long long>(total.refused), nv.c_str());
    // The sweep must reach the arithmetic: every implementation computes somewhere, but for the
    // odd one whose inputs no combination here fits (OneHot: a scalar depth and two values).
    EXPECT_GT(total.computed, 1000000);
    // What an operator cannot do is refused by its load-time check, before the task runs: an
    // Error::unsupported only at run time means the check lets through what the kernel lacks.
    EXPECT_TRUE(total.late_unsupported.empty()) << total.late_unsupported.size()
                                                << " kinds of Error::unsupported at run time after the check passed";
    EXPECT_LE(never.size(), 2u) << "never computed:" << nv;
}

// ---------------------------------------------------------------------------------------------
// What the rules give: integers wrap modulo 2^bits (as NumPy's and ONNX Runtime's kernels do on
// two's-complement machines), float-to-integer conversion saturates and NaN gives 0.

template <class T> Tensor tensor_of(DType t, const Shape& s, std::vector<T> v) { return make_tensor_from<T>(t, s, v); }

Tensor run1(const std::string& op, std::vector<Tensor> in, std::map<std::string, Attr> attrs = {}, int opset = 17) {
    const OpDef* def = find_op(op, opset);
    if (def == nullptr) throw std::runtime_error(op + " is not registered");
    Node node;
    node.name = "t";
    node.op_type = op;
    node.opset = opset;
    node.attrs.map = std::move(attrs);
    node.attrs.where = node.where();
    node.outputs = {"y"};
    for (size_t i = 0; i < in.size(); ++i) {
        node.inputs.push_back("x" + std::to_string(i));
        node.in_types.push_back(in[i].dtype);
    }
    node.out_types = {DType::undefined};
    if (def->check) def->check(node);
    std::vector<const Tensor*> ip;
    for (const Tensor& t : in) ip.push_back(&t);
    std::vector<Tensor> out(1);
    OpContext ctx{node, ip, out};
    def->run(ctx);
    return out[0];
}

template <class T> std::vector<T> values(const Tensor& t) {
    return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

constexpr int64_t kMin64 = std::numeric_limits<int64_t>::min(), kMax64 = std::numeric_limits<int64_t>::max();
constexpr int32_t kMin32 = std::numeric_limits<int32_t>::min(), kMax32 = std::numeric_limits<int32_t>::max();

int64_t wrap_mul(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b)); }
int64_t wrap_add(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }

TEST(OperatorArithmetic, IntegerMatMulAndGemmWrap) {
    const Tensor a = tensor_of<int64_t>(DType::i64, {1, 2}, {kMax64, 3});
    const Tensor b = tensor_of<int64_t>(DType::i64, {2, 1}, {5, kMax64});
    const int64_t want = wrap_add(wrap_mul(kMax64, 5), wrap_mul(3, kMax64));
    EXPECT_EQ(values<int64_t>(run1("MatMul", {a, b})), std::vector<int64_t>{want});
    EXPECT_EQ(values<int64_t>(run1("Gemm", {a, b})), std::vector<int64_t>{want});
    // Gemm's alpha and C: alpha scales in double and converts back saturating.
    const Tensor big = tensor_of<int32_t>(DType::i32, {1, 1}, {kMax32});
    const Tensor one = tensor_of<int32_t>(DType::i32, {1, 1}, {1});
    EXPECT_EQ(values<int32_t>(run1("Gemm", {big, one}, {{"alpha", float_attr(4.0f)}})), std::vector<int32_t>{kMax32});
    // Default alpha and beta: exact integer arithmetic, wrapping.
    const Tensor c = tensor_of<int32_t>(DType::i32, {1, 1}, {kMax32});
    EXPECT_EQ(values<int32_t>(run1("Gemm", {big, one, c})), std::vector<int32_t>{-2});
}

TEST(OperatorArithmetic, IntegerReductionsAndCumSumWrap) {
    const Tensor x = tensor_of<int64_t>(DType::i64, {3}, {kMax64, 2, kMin64});
    EXPECT_EQ(values<int64_t>(run1("ReduceSum", {x})), std::vector<int64_t>{wrap_add(wrap_add(kMax64, 2), kMin64)});
    EXPECT_EQ(values<int64_t>(run1("ReduceProd", {x}, {}, 13)), std::vector<int64_t>{wrap_mul(wrap_mul(kMax64, 2), kMin64)});
    EXPECT_EQ(values<int64_t>(run1("ReduceSumSquare", {x}, {}, 13)),
              std::vector<int64_t>{wrap_add(wrap_add(wrap_mul(kMax64, kMax64), 4), wrap_mul(kMin64, kMin64))});
    EXPECT_EQ(values<int64_t>(run1("ReduceL1", {tensor_of<int64_t>(DType::i64, {2}, {kMin64, 1})}, {}, 13)),
              std::vector<int64_t>{kMin64 + 1});  // |INT64_MIN| wraps to INT64_MIN
    const Tensor x32 = tensor_of<int32_t>(DType::i32, {2}, {kMax32, 1});
    EXPECT_EQ(values<int32_t>(run1("ReduceSum", {x32})), std::vector<int32_t>{kMin32});
    const Tensor axis = tensor_of<int64_t>(DType::i64, {}, {0});
    EXPECT_EQ(values<int64_t>(run1("CumSum", {x, axis})), (std::vector<int64_t>{kMax64, kMin64 + 1, 1}));
}

TEST(OperatorArithmetic, IntegerElementwiseWrapsAndDivisionIsDefined) {
    const Tensor a = tensor_of<int64_t>(DType::i64, {4}, {kMin64, kMax64, kMin64, 7});
    const Tensor b = tensor_of<int64_t>(DType::i64, {4}, {-1, 1, 0, 0});
    EXPECT_EQ(values<int64_t>(run1("Div", {a, b})), (std::vector<int64_t>{kMin64, kMax64, 0, 0}));
    EXPECT_EQ(values<int64_t>(run1("Add", {a, b})), (std::vector<int64_t>{kMax64, kMin64, kMin64, 7}));
    EXPECT_EQ(values<int64_t>(run1("Neg", {a})), (std::vector<int64_t>{kMin64, kMin64 + 1, kMin64, -7}));
    EXPECT_EQ(values<int64_t>(run1("Abs", {a})), (std::vector<int64_t>{kMin64, kMax64, kMin64, 7}));
    EXPECT_EQ(values<int64_t>(run1("Mod", {a, b})), (std::vector<int64_t>{0, 0, 0, 0}));
}

TEST(OperatorArithmetic, UnsignedReductionsCompareAsUnsigned) {
    const uint64_t big = std::numeric_limits<uint64_t>::max();
    const Tensor x = tensor_of<uint64_t>(DType::u64, {3}, {1, big, 2});
    EXPECT_EQ(values<uint64_t>(run1("ReduceMax", {x})), std::vector<uint64_t>{big});
    EXPECT_EQ(values<uint64_t>(run1("ReduceMin", {x})), std::vector<uint64_t>{1});
    EXPECT_EQ(values<uint64_t>(run1("ReduceSum", {x})), std::vector<uint64_t>{2});
}

TEST(OperatorArithmetic, IntegerRangeCountsExactlyAndSliceTakesAnyStep) {
    // Past 2^53 a double cannot tell these apart: counted in integers.
    const int64_t s = (int64_t{1} << 62) + 1;
    const Tensor start = tensor_of<int64_t>(DType::i64, {}, {s}), limit = tensor_of<int64_t>(DType::i64, {}, {s + 3});
    const Tensor one = tensor_of<int64_t>(DType::i64, {}, {1});
    EXPECT_EQ(values<int64_t>(run1("Range", {start, limit, one})), (std::vector<int64_t>{s, s + 1, s + 2}));
    const Tensor lo = tensor_of<int64_t>(DType::i64, {}, {kMin64}), hi = tensor_of<int64_t>(DType::i64, {}, {kMax64});
    const Tensor huge = tensor_of<int64_t>(DType::i64, {}, {kMax64});
    EXPECT_EQ(values<int64_t>(run1("Range", {lo, hi, huge})), (std::vector<int64_t>{kMin64, -1, kMax64 - 1}));
    try {
        run1("Range", {lo, hi, one});
        ADD_FAILURE() << "a range of 2^64 elements was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("range too long"), std::string::npos) << e.what();
    }
    // Slice with the extreme steps: one element, from the right end.
    const Tensor x = tensor_of<int32_t>(DType::i32, {4}, {10, 11, 12, 13});
    const Tensor st = tensor_of<int64_t>(DType::i64, {1}, {kMax64}), en = tensor_of<int64_t>(DType::i64, {1}, {kMin64});
    const Tensor ax = tensor_of<int64_t>(DType::i64, {1}, {0});
    EXPECT_EQ(values<int32_t>(run1("Slice", {x, st, en, ax, tensor_of<int64_t>(DType::i64, {1}, {kMin64})})),
              std::vector<int32_t>{13});
    EXPECT_EQ(values<int32_t>(run1("Slice", {x, en, st, ax, tensor_of<int64_t>(DType::i64, {1}, {kMax64})})),
              std::vector<int32_t>{10});
    EXPECT_EQ(values<int32_t>(run1("Slice", {x, tensor_of<int64_t>(DType::i64, {1}, {-1}), en, ax,
                                            tensor_of<int64_t>(DType::i64, {1}, {-2})})),
              (std::vector<int32_t>{13, 11}));
}

TEST(OperatorArithmetic, FloatToIntegerConversionSaturates) {
    const float inf = std::numeric_limits<float>::infinity();
    const Tensor x = tensor_of<float>(DType::f32, {6}, {1e30f, -1e30f, std::nanf(""), inf, -3.7f, 3e9f});
    EXPECT_EQ(values<int32_t>(run1("Cast", {x}, {{"to", int_attr(static_cast<int64_t>(DType::i32))}})),
              (std::vector<int32_t>{kMax32, kMin32, 0, kMax32, -3, kMax32}));
    EXPECT_EQ(values<uint8_t>(run1("Cast", {x}, {{"to", int_attr(static_cast<int64_t>(DType::u8))}})),
              (std::vector<uint8_t>{255, 0, 0, 255, 0, 255}));
    EXPECT_EQ(values<int64_t>(run1("Cast", {x}, {{"to", int_attr(static_cast<int64_t>(DType::i64))}})),
              (std::vector<int64_t>{kMax64, kMin64, 0, kMax64, -3, 3000000000}));
}

}  // namespace
}  // namespace cpn::infer
