// arith.hpp: the runtime's rules for arithmetic whose C++ form would be undefined behaviour, so
// that a model or input from the network cannot make an operator's result (or the agent) depend
// on the compiler:
//  - integer arithmetic wraps modulo 2^bits (two's complement), as NumPy's and ONNX Runtime's
//    kernels do in practice: computed in the unsigned type of the same width, never as signed
//    overflow (nor as int promotion of 16-bit operands);
//  - float to integer conversion saturates at the type's range and NaN gives 0 (C++ leaves an
//    out-of-range conversion undefined; x86 gives INT_MIN, ARM saturates).
// Floating-point arithmetic is IEEE and passes through unchanged.
// tests/infer/op_sweep_test.cpp holds every operator to these rules under UBSan.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

namespace cpn::infer {

template <class T> constexpr bool is_flt = std::is_floating_point_v<T>;

// The unsigned type integer arithmetic on T is done in (at least 32 bits: no promotion to int).
template <class T> using Wide = std::conditional_t<sizeof(T) <= 4, uint32_t, uint64_t>;

template <class T> constexpr T wadd(T a, T b) {
    if constexpr (is_flt<T>) return a + b;
    else return static_cast<T>(static_cast<Wide<T>>(a) + static_cast<Wide<T>>(b));
}
template <class T> constexpr T wsub(T a, T b) {
    if constexpr (is_flt<T>) return a - b;
    else return static_cast<T>(static_cast<Wide<T>>(a) - static_cast<Wide<T>>(b));
}
template <class T> constexpr T wmul(T a, T b) {
    if constexpr (is_flt<T>) return a * b;
    else return static_cast<T>(static_cast<Wide<T>>(a) * static_cast<Wide<T>>(b));
}
template <class T> constexpr T wneg(T a) {
    if constexpr (is_flt<T>) return -a;
    else return static_cast<T>(Wide<T>(0) - static_cast<Wide<T>>(a));
}
// |a|, with |INT_MIN| = INT_MIN as in two's complement.
template <class T> constexpr T wabs(T a) {
    if constexpr (is_flt<T> || std::is_signed_v<T>) return a < T(0) ? wneg(a) : a;
    else return a;
}

// Saturating conversion: floating point to integer clamps to the range (NaN gives 0); anything
// else is static_cast (integer to integer wraps, as C++20 defines).
template <class D, class S> constexpr D convert(S s) {
    if constexpr (is_flt<S> && !is_flt<D>) {
        if (!(s == s)) return D(0);
        if (s <= static_cast<S>(std::numeric_limits<D>::lowest())) return std::numeric_limits<D>::lowest();
        if (s >= static_cast<S>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
        return static_cast<D>(s);
    } else {
        return static_cast<D>(s);
    }
}

}  // namespace cpn::infer
