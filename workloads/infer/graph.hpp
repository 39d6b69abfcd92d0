// graph.hpp: the runtime's own graph, independent of protobuf: what the ONNX importer produces
// and what shape inference, constant folding, fusion, planning and the executor work on.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tensor.hpp"

namespace cpn::infer {

struct Attr {
    enum Kind { none, f, i, s, t, fs, is, ss, g } kind = none;
    float fv = 0;
    int64_t iv = 0;
    std::string sv;
    std::vector<float> floats;
    std::vector<int64_t> ints;
    std::vector<std::string> strings;
    std::shared_ptr<Tensor> tensor;
};

// Typed access to a node's attributes; the getters throw Error::invalid naming the node and the
// attribute when the kind is wrong or a required one is missing.
class Attrs {
public:
    std::map<std::string, Attr> map;
    std::string where = "node";  // "node 'conv1' (Conv)", for messages

    bool has(const std::string& k) const { return map.count(k) != 0; }
    int64_t get_int(const std::string& k, int64_t dflt) const;
    int64_t req_int(const std::string& k) const;
    float get_float(const std::string& k, float dflt) const;
    std::string get_string(const std::string& k, const std::string& dflt) const;
    std::vector<int64_t> get_ints(const std::string& k, const std::vector<int64_t>& dflt = {}) const;
    std::vector<float> get_floats(const std::string& k, const std::vector<float>& dflt = {}) const;
    const Tensor* get_tensor(const std::string& k) const;  // null when absent
};

struct Node {
    std::string name;     // the model's node name, or "<op_type>#<index>" when it has none
    std::string op_type;  // "Conv", ...
    std::string domain;   // "" (ai.onnx)
    int opset = 0;        // the model's opset for the node's domain
    std::vector<std::string> inputs;   // "" for an omitted optional input
    std::vector<std::string> outputs;  // "" for an omitted optional output
    Attrs attrs;
    // Element types of the inputs and outputs as ONNX type inference found them at load time
    // (DType::undefined where unknown), so an operator's check can refuse a type it lacks before
    // anything runs. Same length as inputs / outputs.
    std::vector<DType> in_types, out_types;
    // Set by fusion (optimize.cpp): an activation applied to the output in the same pass, read by
    // Conv, Gemm and MatMul: "" none, "Relu", "LeakyRelu" (alpha = fused_alpha), "Clip" (min =
    // fused_alpha, max = fused_beta), "Sigmoid", "HardSigmoid" (alpha, beta), "Tanh", "HardSwish".
    std::string fused_activation;
    float fused_alpha = 0, fused_beta = 0;

    std::string where() const { return "node '" + name + "' (" + op_type + ")"; }
};

// A value the graph reads or writes, with what the model declares of it. Dims: >= 0 fixed,
// -1 unknown or symbolic (then `dim_names` holds the symbol, e.g. "batch").
struct ValueInfo {
    std::string name;
    DType dtype = DType::undefined;
    bool has_shape = false;
    Shape dims;
    std::vector<std::string> dim_names;
};

struct Graph {
    std::vector<ValueInfo> inputs;   // graph inputs that are not initializers
    std::vector<ValueInfo> outputs;
    std::map<std::string, Tensor> initializers;  // constants: weights, folded values
    std::vector<Node> nodes;         // in topological order after import
    std::map<std::string, ValueInfo> value_info;  // declared intermediate types/shapes
};

struct Model {
    Graph graph;
    int64_t ir_version = 0;
    std::map<std::string, int> opsets;  // domain -> version ("" is ai.onnx)
    std::string producer;               // "pytorch 1.13.1", ...
};

}  // namespace cpn::infer
