// onnx_import.hpp: reads an ONNX model (protobuf, Debian's libonnx classes) into the runtime's
// graph. Everything a model can get wrong is refused here, before anything runs, with a message
// naming the element: not protobuf, an opset outside 1..17, an unsupported operator, attribute
// or type (every offending node listed), a value nobody produces, a cycle, a tensor whose data
// does not match its declared shape, external data outside the allowed directories, sizes past
// the limits.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "graph.hpp"

namespace cpn::infer {

struct LoadOptions {
    std::string origin = "model";         // for messages: the file name or "inline model"
    std::string base_dir;                  // external data files are resolved against this
    std::vector<std::string> allowed_dirs; // ... and must lie in one of these (empty: base_dir)
    uint64_t max_model_bytes = uint64_t{2} << 30;
    int64_t max_tensor_elements = int64_t{1} << 30;  // any one initializer or declared value
    uint64_t max_total_weight_bytes = uint64_t{4} << 30;
};

constexpr int kMinOpset = 1;
constexpr int kMaxOpset = 17;

// True when `path` lies inside one of `dirs` once ".." and symlinks are resolved.
bool path_inside(const std::string& path, const std::vector<std::string>& dirs);
// The file's bytes; throws Error::invalid naming `what` and the path when it cannot be read or
// is larger than `limit`.
std::string read_file_bounded(const std::string& path, uint64_t limit, const std::string& what);

// Throws Error (invalid or unsupported) naming what is wrong.
Model load_onnx(const std::string& bytes, const LoadOptions& opt);
Model load_onnx_file(const std::string& path, LoadOptions opt);

// The graph back as a serialized ModelProto (what a backend plugin receives for a segment):
// initializers as raw data, fused activations as the attributes cpn_fused_activation,
// cpn_fused_alpha and cpn_fused_beta, which load_onnx reads back into the node.
std::string save_onnx(const Graph& g, const std::map<std::string, int>& opsets);

// A serialized TensorProto (the .pb files of ONNX's test data, and the agent's tensor inputs):
// its name and value.
std::pair<std::string, Tensor> load_tensor_proto(const std::string& bytes, const std::string& origin,
                                                 int64_t max_elements = int64_t{1} << 30);
std::string save_tensor_proto(const std::string& name, const Tensor& t);

}  // namespace cpn::infer
