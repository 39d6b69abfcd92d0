// fuzz_tensor: tensor bytes from outside (a task's inputs: .npy, ONNX TensorProto .pb, .cpnt)
// through the reader, which tells the format from the content, and through the TensorProto
// reader directly. Contract: cpn::infer::Error or a tensor whose size matches its shape; never
// another exception, a crash or an allocation past the element limit.
#include <cstring>
#include <string>

#include "fuzz_support.hpp"
#include "onnx_import.hpp"
#include "tensor_io.hpp"

using namespace cpn::infer;

namespace {

void check_tensor(const Tensor& t, int64_t limit, const char* reader) {
    const int64_t n = t.numel();
    if (n < 0 || n > limit)
        cpn::fuzz::broken("tensor", std::string(reader) + " returned " + std::to_string(n) + " elements (limit " +
                                        std::to_string(limit) + ")");
    if (n > 0 && t.capacity < t.bytes())
        cpn::fuzz::broken("tensor", std::string(reader) + " returned a tensor whose memory (" + std::to_string(t.capacity) +
                                        " bytes) is smaller than its shape needs (" + std::to_string(t.bytes()) + ")");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string bytes = cpn::fuzz::as_string(data, size);
    constexpr int64_t kLimit = int64_t{1} << 20;
    cpn::fuzz::expect_no_escape("tensor", [&] {
        try {
            Tensor t = read_tensor(bytes, "fuzz tensor", kLimit);
            check_tensor(t, kLimit, "read_tensor");
            // What the agent writes back must read back the same (task outputs).
            for (TensorFormat f : {TensorFormat::npy, TensorFormat::pb, TensorFormat::cpnt}) {
                if (t.dtype == DType::string) break;
                Tensor back = read_tensor(write_tensor(t, f, "x"), "round trip", kLimit);
                if (back.dtype != t.dtype || back.shape != t.shape ||
                    (t.bytes() > 0 && std::memcmp(back.raw(), t.raw(), t.bytes()) != 0))
                    cpn::fuzz::broken("tensor", "a tensor read from outside does not survive write_tensor + read_tensor");
            }
        } catch (const Error&) {
        }
        try {
            auto [name, t] = load_tensor_proto(bytes, "fuzz TensorProto", kLimit);
            check_tensor(t, kLimit, "load_tensor_proto");
        } catch (const Error&) {
        }
    });
    return 0;
}
