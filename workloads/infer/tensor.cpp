#include "tensor.hpp"

#include <cstdlib>
#include <cstring>

namespace cpn::infer {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::f32: case DType::i32: case DType::u32: return 4;
        case DType::u8: case DType::i8: case DType::boolean: return 1;
        case DType::u16: case DType::i16: case DType::f16: case DType::bf16: return 2;
        case DType::i64: case DType::u64: case DType::f64: return 8;
        default: return 0;
    }
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "float32";
        case DType::u8: return "uint8";
        case DType::i8: return "int8";
        case DType::u16: return "uint16";
        case DType::i16: return "int16";
        case DType::i32: return "int32";
        case DType::i64: return "int64";
        case DType::string: return "string";
        case DType::boolean: return "bool";
        case DType::f16: return "float16";
        case DType::f64: return "float64";
        case DType::u32: return "uint32";
        case DType::u64: return "uint64";
        case DType::bf16: return "bfloat16";
        default: return "undefined";
    }
}

bool dtype_supported(DType t) { return dtype_size(t) != 0; }

std::string shape_str(const Shape& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

int64_t checked_numel(const Shape& s, int64_t limit) {
    int64_t n = 1;
    for (int64_t d : s) {
        if (d < 0) return -1;
        if (d != 0 && n > limit / d) return -1;
        n *= d;
    }
    return n <= limit ? n : -1;
}

void fail(const std::string& what) { throw Error(Error::invalid, what); }
void fail_unsupported(const std::string& what) { throw Error(Error::unsupported, what); }

int64_t Tensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

Tensor make_tensor(DType t, const Shape& s) {
    require(dtype_supported(t), std::string("tensors of type ") + dtype_name(t) + " are not supported");
    Tensor x;
    x.dtype = t;
    x.shape = s;
    const int64_t n = checked_numel(s, int64_t{1} << 40);
    require(n >= 0, "tensor shape " + shape_str(s) + " is negative or too large");
    const size_t bytes = static_cast<size_t>(n) * dtype_size(t);
    const size_t cap = (bytes + 63) / 64 * 64;
    if (cap > 0) {
        void* p = std::aligned_alloc(64, cap);
        if (p == nullptr) throw Error(Error::out_of_memory, "cannot allocate " + std::to_string(cap) + " bytes");
        std::memset(p, 0, cap);
        x.mem = std::shared_ptr<void>(p, std::free);
        x.capacity = cap;
    }
    return x;
}

int64_t int_at(const Tensor& t, int64_t i) {
    switch (t.dtype) {
        case DType::i64: return t.data<int64_t>()[i];
        case DType::i32: return t.data<int32_t>()[i];
        case DType::i16: return t.data<int16_t>()[i];
        case DType::i8: return t.data<int8_t>()[i];
        case DType::u8: case DType::boolean: return t.data<uint8_t>()[i];
        case DType::u16: return t.data<uint16_t>()[i];
        case DType::u32: return t.data<uint32_t>()[i];
        case DType::u64: return static_cast<int64_t>(t.data<uint64_t>()[i]);
        default: fail(std::string("expected an integer tensor, got ") + dtype_name(t.dtype));
    }
}

std::vector<int64_t> to_ints(const Tensor& t) {
    std::vector<int64_t> v(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = int_at(t, static_cast<int64_t>(i));
    return v;
}

double number_at(const Tensor& t, int64_t i) {
    switch (t.dtype) {
        case DType::f32: return t.data<float>()[i];
        case DType::f64: return t.data<double>()[i];
        case DType::f16: return half_to_float(t.data<uint16_t>()[i]);
        case DType::bf16: return bf16_to_float(t.data<uint16_t>()[i]);
        default: return static_cast<double>(int_at(t, i));
    }
}

float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t{h & 0x8000u} << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while ((man & 0x400u) == 0) {
                man <<= 1;
                --exp;
            }
            man &= 0x3ffu;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0);  // inf / nan
    if (ax >= 0x477ff000u) return sign | 0x7c00u;  // rounds to above the largest half: inf
    if (ax < 0x38800000u) {                           // subnormal half or zero
        if (ax < 0x33000000u) return sign;
        // value = m * 2^(e-150); in units of the half's smallest subnormal (2^-24): m >> (126-e)
        const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - e;
        uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) ++q;
        return static_cast<uint16_t>(sign | q);
    }
    uint32_t r = ax - 0x38000000u;  // rebias exponent 127 -> 15
    const uint32_t lsb = (r >> 13) & 1;
    r += 0xfffu + lsb;  // round to nearest even
    return static_cast<uint16_t>(sign | (r >> 13));
}

float bf16_to_float(uint16_t h) {
    uint32_t bits = uint32_t{h} << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_bf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return static_cast<uint16_t>(x >> 16);
}

}  // namespace cpn::infer
