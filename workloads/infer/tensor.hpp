// tensor.hpp: the inference runtime's tensor: an element type (ONNX's TensorProto codes), a
// shape and a reference-counted block of memory. The executor hands blocks back to a pool when
// the last reference goes, so a graph reuses its intermediate buffers (docs/inference.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace cpn::infer {

// The values are ONNX TensorProto.DataType's, so a model's codes map one to one.
enum class DType : int32_t {
    undefined = 0,
    f32 = 1,
    u8 = 2,
    i8 = 3,
    u16 = 4,
    i16 = 5,
    i32 = 6,
    i64 = 7,
    string = 8,
    boolean = 9,
    f16 = 10,
    f64 = 11,
    u32 = 12,
    u64 = 13,
    bf16 = 16,
};

// Bytes per element; 0 for types the runtime does not hold (string, complex).
size_t dtype_size(DType t);
// "float32", "int64", ...: the names error messages use.
const char* dtype_name(DType t);
bool dtype_supported(DType t);  // a type tensors may have in this runtime

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[1, 3, 224, 224]"
// The element count, or -1 when it overflows or exceeds `limit` (a bad model must not make
// the runtime allocate without bound).
int64_t checked_numel(const Shape& s, int64_t limit = INT64_MAX);

// Thrown by the runtime and the operators; the executor turns it into a Status. `unsupported`
// marks what a model asks for that this runtime does not do (an operator, an attribute value,
// a type), as opposed to a model or input that is wrong.
class Error : public std::runtime_error {
public:
    enum Kind { invalid, unsupported, cancelled, out_of_memory };
    Error(Kind k, const std::string& what) : std::runtime_error(what), kind_(k) {}
    Kind kind() const { return kind_; }

private:
    Kind kind_;
};
[[noreturn]] void fail(const std::string& what);              // Error::invalid
[[noreturn]] void fail_unsupported(const std::string& what);  // Error::unsupported
inline void require(bool ok, const std::string& what) {
    if (!ok) fail(what);
}

struct Tensor {
    DType dtype = DType::undefined;
    Shape shape;
    std::shared_ptr<void> mem;  // at least bytes() long, 64-byte aligned; null when empty
    size_t capacity = 0;        // bytes behind mem

    int64_t numel() const;
    size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
    size_t rank() const { return shape.size(); }
    bool defined() const { return dtype != DType::undefined; }
    template <class T> T* data() { return static_cast<T*>(mem.get()); }
    template <class T> const T* data() const { return static_cast<const T*>(mem.get()); }
    void* raw() { return mem.get(); }
    const void* raw() const { return mem.get(); }
};

// Fresh zeroed memory for a tensor (outside any pool): initializers, constants, test inputs.
Tensor make_tensor(DType t, const Shape& s);
template <class T> Tensor make_tensor_from(DType t, const Shape& s, const std::vector<T>& v) {
    Tensor x = make_tensor(t, s);
    require(v.size() == static_cast<size_t>(x.numel()), "make_tensor_from: size mismatch");
    if (!v.empty()) std::memcpy(x.raw(), v.data(), v.size() * sizeof(T));
    return x;
}

// Reads element i of an integer tensor (any integer type or bool) as int64: shapes, axes,
// indices and the like come in int32 or int64.
int64_t int_at(const Tensor& t, int64_t i);
std::vector<int64_t> to_ints(const Tensor& t);
// Element i of a floating-point or integer tensor as double (scalars such as Clip's bounds).
double number_at(const Tensor& t, int64_t i);

// fp16 / bf16 conversions (round to nearest even).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_bf16(float f);

}  // namespace cpn::infer
