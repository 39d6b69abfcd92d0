// tensor_io.hpp: tensors in and out of files and payloads, in three formats:
//   .npy  NumPy's format (versions 1-3, little-endian, C order): what Python users have;
//   .pb   a serialized ONNX TensorProto: what ONNX's tools and test data use;
//   .cpnt the agent's own, documented in docs/inference.md: "CPNT", u32 version 1, i32 element
//         type (ONNX codes), u32 rank, rank x i64 dims, then the elements little-endian, C order.
// The reader tells the format from the content (magic), not the name, and bounds every size
// by the caller's element limit before allocating.
#pragma once

#include <string>

#include "tensor.hpp"

namespace cpn::infer {

enum class TensorFormat { npy, pb, cpnt };

// Throws Error naming `origin` and what is wrong.
Tensor read_tensor(const std::string& bytes, const std::string& origin, int64_t max_elements = int64_t{1} << 30);
std::string write_tensor(const Tensor& t, TensorFormat f, const std::string& name = "");
// By file extension: .npy, .pb, .cpnt (anything else: cpnt).
TensorFormat format_for_path(const std::string& path);

}  // namespace cpn::infer
