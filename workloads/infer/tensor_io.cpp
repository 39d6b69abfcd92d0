#include "tensor_io.hpp"

#include <cstring>
#include <regex>

#include "onnx_import.hpp"

namespace cpn::infer {
namespace {

const char kNpyMagic[] = "\x93NUMPY";

struct NpyType {
    const char* descr;
    DType t;
};
const NpyType kNpyTypes[] = {
    {"<f4", DType::f32}, {"<f8", DType::f64}, {"<f2", DType::f16}, {"<i8", DType::i64}, {"<i4", DType::i32},
    {"<i2", DType::i16}, {"|i1", DType::i8},  {"|u1", DType::u8},  {"<u2", DType::u16}, {"<u4", DType::u32},
    {"<u8", DType::u64}, {"|b1", DType::boolean},
};

Tensor read_npy(const std::string& b, const std::string& origin, int64_t max_elements) {
    if (b.size() < 10) fail(origin + ": truncated .npy header");
    const int major = static_cast<unsigned char>(b[6]);
    size_t header_len, offset;
    if (major == 1) {
        header_len = static_cast<unsigned char>(b[8]) | static_cast<size_t>(static_cast<unsigned char>(b[9])) << 8;
        offset = 10;
    } else if (major == 2 || major == 3) {
        if (b.size() < 12) fail(origin + ": truncated .npy header");
        uint32_t l;
        std::memcpy(&l, b.data() + 8, 4);
        header_len = l;
        offset = 12;
    } else {
        fail_unsupported(origin + ": .npy version " + std::to_string(major) + " is not supported");
    }
    if (header_len > 65536 || offset + header_len > b.size()) fail(origin + ": truncated .npy header");
    const std::string h = b.substr(offset, header_len);
    std::smatch m;
    if (!std::regex_search(h, m, std::regex(R"('descr'\s*:\s*'([^']*)')")))
        fail(origin + ": .npy header has no 'descr'");
    const std::string descr = m[1];
    if (std::regex_search(h, std::regex(R"('fortran_order'\s*:\s*True)")))
        fail_unsupported(origin + ": .npy in Fortran order is not supported (save it C-contiguous)");
    if (!std::regex_search(h, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))"))) fail(origin + ": .npy header has no 'shape'");
    Shape shape;
    const std::string dims = m[1];
    static const std::regex number(R"(\d+)");
    for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it) {
        if (it->str().size() > 15) fail(origin + ": .npy dimension " + it->str() + " is too large");
        shape.push_back(std::stoll(it->str()));
    }
    DType t = DType::undefined;
    for (const NpyType& nt : kNpyTypes)
        if (descr == nt.descr || (descr.size() == 3 && descr[0] == '=' && descr.substr(1) == std::string(nt.descr).substr(1)))
            t = nt.t;
    if (t == DType::undefined) fail_unsupported(origin + ": .npy element type '" + descr + "' is not supported");
    const int64_t n = checked_numel(shape, max_elements);
    if (n < 0) fail(origin + ": shape " + shape_str(shape) + " has more than the limit of " + std::to_string(max_elements) + " elements");
    const size_t bytes = static_cast<size_t>(n) * dtype_size(t), data = offset + header_len;
    if (b.size() - data != bytes)
        fail(origin + ": .npy data is " + std::to_string(b.size() - data) + " bytes, the shape " + shape_str(shape) + " of " +
             dtype_name(t) + " needs " + std::to_string(bytes));
    Tensor x = make_tensor(t, shape);
    if (bytes) std::memcpy(x.raw(), b.data() + data, bytes);
    return x;
}

std::string write_npy(const Tensor& t) {
    const char* descr = nullptr;
    for (const NpyType& nt : kNpyTypes)
        if (nt.t == t.dtype) descr = nt.descr;
    if (descr == nullptr) fail_unsupported(std::string("cannot write ") + dtype_name(t.dtype) + " as .npy");
    std::string shape;
    for (int64_t d : t.shape) shape += std::to_string(d) + ", ";
    if (t.shape.size() > 1) shape.resize(shape.size() - 2);
    std::string h = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
    const size_t total = 10 + h.size() + 1;
    h.append((64 - total % 64) % 64, ' ');
    h += '\n';
    std::string out(kNpyMagic, 6);
    out += '\x01';
    out += '\x00';
    out += static_cast<char>(h.size() & 0xff);
    out += static_cast<char>(h.size() >> 8);
    out += h;
    out.append(static_cast<const char*>(t.raw()), t.bytes());
    return out;
}

template <class T> T get(const std::string& b, size_t& at, const std::string& origin) {
    if (at + sizeof(T) > b.size()) fail(origin + ": truncated .cpnt header");
    T v;
    std::memcpy(&v, b.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
}

Tensor read_cpnt(const std::string& b, const std::string& origin, int64_t max_elements) {
    size_t at = 4;
    const auto version = get<uint32_t>(b, at, origin);
    if (version != 1) fail_unsupported(origin + ": .cpnt version " + std::to_string(version) + " (this agent reads 1)");
    const auto code = get<int32_t>(b, at, origin);
    const auto t = static_cast<DType>(code);
    if (!dtype_supported(t)) fail_unsupported(origin + ": element type code " + std::to_string(code) + " is not supported");
    const auto rank = get<uint32_t>(b, at, origin);
    if (rank > 16) fail(origin + ": rank " + std::to_string(rank) + " is more than 16");
    Shape shape;
    for (uint32_t i = 0; i < rank; ++i) shape.push_back(get<int64_t>(b, at, origin));
    const int64_t n = checked_numel(shape, max_elements);
    if (n < 0) fail(origin + ": shape " + shape_str(shape) + " is negative or has more than the limit of " + std::to_string(max_elements) + " elements");
    const size_t bytes = static_cast<size_t>(n) * dtype_size(t);
    if (b.size() - at != bytes)
        fail(origin + ": .cpnt data is " + std::to_string(b.size() - at) + " bytes, the shape " + shape_str(shape) + " of " +
             dtype_name(t) + " needs " + std::to_string(bytes));
    Tensor x = make_tensor(t, shape);
    if (bytes) std::memcpy(x.raw(), b.data() + at, bytes);
    return x;
}

std::string write_cpnt(const Tensor& t) {
    std::string out = "CPNT";
    auto put = [&](const auto& v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    put(uint32_t{1});
    put(static_cast<int32_t>(t.dtype));
    put(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put(d);
    out.append(static_cast<const char*>(t.raw()), t.bytes());
    return out;
}

}  // namespace

Tensor read_tensor(const std::string& bytes, const std::string& origin, int64_t max_elements) {
    if (bytes.compare(0, 6, kNpyMagic, 6) == 0) return read_npy(bytes, origin, max_elements);
    if (bytes.compare(0, 4, "CPNT") == 0) return read_cpnt(bytes, origin, max_elements);
    try {
        return load_tensor_proto(bytes, origin, max_elements).second;
    } catch (const Error& e) {
        if (std::string(e.what()).find("not a serialized") == std::string::npos) throw;
        fail(origin + ": not a tensor (expected .npy, an ONNX TensorProto or .cpnt)");
    }
}

std::string write_tensor(const Tensor& t, TensorFormat f, const std::string& name) {
    switch (f) {
        case TensorFormat::npy: return write_npy(t);
        case TensorFormat::pb: return save_tensor_proto(name, t);
        default: return write_cpnt(t);
    }
}

TensorFormat format_for_path(const std::string& path) {
    auto ends = [&](const char* e) {
        const size_t n = std::strlen(e);
        return path.size() >= n && path.compare(path.size() - n, n, e) == 0;
    };
    if (ends(".npy")) return TensorFormat::npy;
    if (ends(".pb")) return TensorFormat::pb;
    return TensorFormat::cpnt;
}

}  // namespace cpn::infer
