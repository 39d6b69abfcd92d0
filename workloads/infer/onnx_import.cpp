#include "onnx_import.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <onnx/onnx_pb.h>

#include "ops.hpp"

namespace cpn::infer {
namespace {

namespace fs = std::filesystem;

}  // namespace

std::string read_file_bounded(const std::string& path, uint64_t limit, const std::string& what) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) fail(what + ": " + path + " is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(what + ": cannot open " + path + ": " + std::strerror(errno));
    in.seekg(0, std::ios::end);
    const auto size = static_cast<uint64_t>(in.tellg());
    if (size > limit)
        fail(what + ": " + path + " is " + std::to_string(size) + " bytes, more than the limit of " + std::to_string(limit));
    in.seekg(0);
    std::string s(size, '\0');
    in.read(s.data(), static_cast<std::streamsize>(size));
    if (!in) fail(what + ": cannot read " + path);
    return s;
}

bool path_inside(const std::string& p, const std::vector<std::string>& dirs) {
    std::error_code ec;
    const fs::path real = fs::weakly_canonical(p, ec);
    if (ec) return false;
    for (const std::string& d : dirs) {
        const fs::path base = fs::weakly_canonical(d, ec);
        if (ec) continue;
        auto r = std::mismatch(base.begin(), base.end(), real.begin(), real.end());
        if (r.first == base.end()) return true;
    }
    return false;
}

namespace {

DType dtype_of(int32_t code, const std::string& where) {
    const auto t = static_cast<DType>(code);
    if (!dtype_supported(t)) {
        const std::string name = onnx::TensorProto_DataType_IsValid(code)
                                     ? onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(code))
                                     : "code " + std::to_string(code);
        fail_unsupported(where + ": element type " + name + " is not supported");
    }
    return t;
}

struct Ctx {
    const LoadOptions& opt;
    uint64_t weight_bytes = 0;
};

Tensor tensor_from_proto(const onnx::TensorProto& p, Ctx& c, const std::string& where) {
    if (p.has_segment()) fail_unsupported(where + ": segmented tensors are not supported");
    const DType t = dtype_of(p.data_type(), where);
    Shape shape(p.dims().begin(), p.dims().end());
    for (int64_t d : shape)
        if (d < 0) fail(where + ": negative dimension in " + shape_str(shape));
    const int64_t n = checked_numel(shape, c.opt.max_tensor_elements);
    if (n < 0)
        fail(where + ": shape " + shape_str(shape) + " has more than the limit of " +
             std::to_string(c.opt.max_tensor_elements) + " elements");
    const size_t es = dtype_size(t), bytes = static_cast<size_t>(n) * es;
    c.weight_bytes += bytes;
    if (c.weight_bytes > c.opt.max_total_weight_bytes)
        fail(where + ": the model's tensors exceed the limit of " + std::to_string(c.opt.max_total_weight_bytes) + " bytes");

    auto check_count = [&](int64_t have, const char* field) {
        if (have != n)
            fail(where + ": " + field + " holds " + std::to_string(have) + " values, the shape " + shape_str(shape) + " needs " +
                 std::to_string(n));
    };
    if (p.data_location() == onnx::TensorProto_DataLocation_EXTERNAL) {
        std::string location;
        uint64_t offset = 0, length = bytes;
        bool has_length = false;
        for (const auto& kv : p.external_data()) {
            try {
                if (kv.key() == "location") location = kv.value();
                else if (kv.key() == "offset") offset = std::stoull(kv.value());
                else if (kv.key() == "length") length = std::stoull(kv.value()), has_length = true;
            } catch (const std::exception&) {
                fail(where + ": external_data " + kv.key() + " '" + kv.value() + "' is not a number");
            }
        }
        if (location.empty()) fail(where + ": external data without a location");
        if (has_length && length != bytes)
            fail(where + ": external data length " + std::to_string(length) + " does not match the shape's " +
                 std::to_string(bytes) + " bytes");
        if (c.opt.base_dir.empty()) fail(where + ": external data '" + location + "' but the model was not loaded from a file");
        const fs::path file = fs::path(c.opt.base_dir) / location;
        const std::vector<std::string> allowed = c.opt.allowed_dirs.empty() ? std::vector<std::string>{c.opt.base_dir} : c.opt.allowed_dirs;
        if (fs::path(location).is_absolute() || !path_inside(file.string(), allowed))
            fail(where + ": external data '" + location + "' is outside the allowed directories");
        std::ifstream in(file, std::ios::binary);
        if (!in) fail(where + ": external data file " + file.string() + " cannot be opened: " + std::strerror(errno));
        in.seekg(0, std::ios::end);
        const auto size = static_cast<uint64_t>(in.tellg());
        if (offset > size || bytes > size - offset)
            fail(where + ": external data file " + file.string() + " is " + std::to_string(size) + " bytes; " +
                 std::to_string(bytes) + " bytes at offset " + std::to_string(offset) + " do not fit");
        Tensor x = make_tensor(t, shape);
        in.seekg(static_cast<std::streamoff>(offset));
        in.read(static_cast<char*>(x.raw()), static_cast<std::streamsize>(bytes));
        if (!in) fail(where + ": cannot read external data from " + file.string());
        return x;
    }

    Tensor x = make_tensor(t, shape);
    if (p.has_raw_data()) {
        if (p.raw_data().size() != bytes)
            fail(where + ": raw_data is " + std::to_string(p.raw_data().size()) + " bytes, the shape " + shape_str(shape) +
                 " of " + dtype_name(t) + " needs " + std::to_string(bytes));
        if (bytes) std::memcpy(x.raw(), p.raw_data().data(), bytes);
        return x;
    }
    switch (t) {
        case DType::f32:
            check_count(p.float_data_size(), "float_data");
            std::copy(p.float_data().begin(), p.float_data().end(), x.data<float>());
            break;
        case DType::f64:
            check_count(p.double_data_size(), "double_data");
            std::copy(p.double_data().begin(), p.double_data().end(), x.data<double>());
            break;
        case DType::i64:
            check_count(p.int64_data_size(), "int64_data");
            std::copy(p.int64_data().begin(), p.int64_data().end(), x.data<int64_t>());
            break;
        case DType::u32:
        case DType::u64:
            check_count(p.uint64_data_size(), "uint64_data");
            for (int64_t i = 0; i < n; ++i) {
                if (t == DType::u32) x.data<uint32_t>()[i] = static_cast<uint32_t>(p.uint64_data(static_cast<int>(i)));
                else x.data<uint64_t>()[i] = p.uint64_data(static_cast<int>(i));
            }
            break;
        default:  // int32_data carries int32, int16, int8, uint16, uint8, bool, float16, bfloat16
            check_count(p.int32_data_size(), "int32_data");
            for (int64_t i = 0; i < n; ++i) {
                const int32_t v = p.int32_data(static_cast<int>(i));
                switch (es) {
                    case 1: x.data<uint8_t>()[i] = static_cast<uint8_t>(v); break;
                    case 2: x.data<uint16_t>()[i] = static_cast<uint16_t>(v); break;
                    default: x.data<int32_t>()[i] = v; break;
                }
            }
            break;
    }
    return x;
}

ValueInfo value_info_from(const onnx::ValueInfoProto& v) {
    ValueInfo vi;
    vi.name = v.name();
    if (!v.has_type() || !v.type().has_tensor_type()) return vi;
    const auto& tt = v.type().tensor_type();
    vi.dtype = dtype_supported(static_cast<DType>(tt.elem_type())) ? static_cast<DType>(tt.elem_type()) : DType::undefined;
    if (tt.has_shape()) {
        vi.has_shape = true;
        for (const auto& d : tt.shape().dim()) {
            vi.dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
            vi.dim_names.push_back(d.has_dim_param() ? d.dim_param() : "");
        }
    }
    return vi;
}

/* The element type of output `k` of `n`, from its input types and attributes; undefined
 * where it cannot be told. Most operators give the type of their first input. */
DType output_type(const Node& n, size_t k, const std::vector<DType>& in) {
    auto at = [&](size_t i) { return i < in.size() ? in[i] : DType::undefined; };
    auto supported = [](int64_t t) {
        const DType d = static_cast<DType>(t);
        return t > 0 && t <= 16 && dtype_supported(d) ? d : DType::undefined;
    };
    const std::string& op = n.op_type;
    auto attr_int = [&](const char* key, int64_t dflt) {
        auto it = n.attrs.map.find(key);
        return it != n.attrs.map.end() && it->second.kind == Attr::i ? it->second.iv : dflt;
    };
    auto attr_tensor_type = [&](const char* key) {
        auto it = n.attrs.map.find(key);
        return it != n.attrs.map.end() && it->second.kind == Attr::t && it->second.tensor ? it->second.tensor->dtype
                                                                                           : DType::undefined;
    };
    if (op == "Shape" || op == "Size" || op == "ArgMax" || op == "ArgMin" || op == "NonZero") return DType::i64;
    if (op == "Equal" || op == "Less" || op == "Greater" || op == "LessOrEqual" || op == "GreaterOrEqual" ||
        op == "Not" || op == "And" || op == "Or" || op == "Xor" || op == "IsNaN" || op == "IsInf")
        return DType::boolean;
    if (op == "Cast") return supported(attr_int("to", 0));
    if (op == "CastLike") return at(1);
    if (op == "Where") return at(1) != DType::undefined ? at(1) : at(2);
    if (op == "Constant") {
        if (n.attrs.map.count("value")) return attr_tensor_type("value");
        if (n.attrs.map.count("value_float") || n.attrs.map.count("value_floats")) return DType::f32;
        if (n.attrs.map.count("value_int") || n.attrs.map.count("value_ints")) return DType::i64;
        return DType::undefined;
    }
    if (op == "ConstantOfShape") return n.attrs.map.count("value") ? attr_tensor_type("value") : DType::f32;
    if ((op == "MaxPool" || op == "TopK") && k == 1) return DType::i64;
    if (op == "Dropout" && k == 1) return DType::boolean;
    if (op == "EyeLike" || op == "RandomNormalLike" || op == "RandomUniformLike" || op == "RandomNormal" ||
        op == "RandomUniform") {
        const int64_t t = attr_int("dtype", 0);
        if (t != 0) return supported(t);
        return op == "RandomNormal" || op == "RandomUniform" ? DType::f32 : at(0);
    }
    if (op == "DequantizeLinear") return DType::f32;
    if (op == "QuantizeLinear") return at(2) != DType::undefined ? at(2) : DType::u8;
    return at(0);
}

/* Fills g.value_info for every node output the model does not declare: its element type, and
 * its rank where it follows from the operator alone (what the MatMul + Add fusion asks). */
void propagate_value_info(Graph& g) {
    auto info = [&](const std::string& name) -> const ValueInfo* {
        if (name.empty()) return nullptr;
        if (auto it = g.value_info.find(name); it != g.value_info.end()) return &it->second;
        for (const ValueInfo& vi : g.inputs)
            if (vi.name == name) return &vi;
        return nullptr;
    };
    std::map<std::string, ValueInfo> from_initializers;
    for (const auto& [name, t] : g.initializers) {
        ValueInfo vi;
        vi.name = name;
        vi.dtype = t.dtype;
        vi.has_shape = true;
        vi.dims = t.shape;
        vi.dim_names.assign(t.shape.size(), "");
        from_initializers[name] = vi;
    }
    auto get = [&](const std::string& name) -> const ValueInfo* {
        if (auto it = from_initializers.find(name); it != from_initializers.end()) return &it->second;
        return info(name);
    };
    // Unary operators (Clip's bounds and the normalisations' parameters do not broadcast the
    // input up); PRelu is not among them: its slope may raise the rank.
    static const std::set<std::string> same_shape = {
        "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu", "Erf", "Clip",
        "Softmax", "LogSoftmax", "Neg", "Abs", "Sqrt", "Exp", "Log", "Identity", "Cast", "BatchNormalization",
        "LayerNormalization", "Dropout"};
    for (const Node& n : g.nodes) {
        std::vector<DType> in;
        for (const std::string& name : n.inputs) {
            const ValueInfo* vi = get(name);
            in.push_back(vi != nullptr ? vi->dtype : DType::undefined);
        }
        const ValueInfo* first = n.inputs.empty() ? nullptr : get(n.inputs[0]);
        for (size_t k = 0; k < n.outputs.size(); ++k) {
            const std::string& out = n.outputs[k];
            if (out.empty()) continue;
            ValueInfo& vi = g.value_info[out];
            if (vi.name.empty()) vi.name = out;
            if (vi.dtype == DType::undefined) vi.dtype = output_type(n, k, in);
            if (vi.has_shape) continue;
            int64_t rank = -1;
            if (n.op_type == "Flatten" || n.op_type == "Gemm") rank = 2;
            else if (k == 0 && same_shape.count(n.op_type) && first != nullptr && first->has_shape)
                rank = static_cast<int64_t>(first->dims.size());
            if (rank >= 0) {
                vi.has_shape = true;
                vi.dims.assign(static_cast<size_t>(rank), -1);
                vi.dim_names.assign(static_cast<size_t>(rank), "");
            }
        }
    }
}

Attr attr_from(const onnx::AttributeProto& a, Ctx& c, const std::string& where) {
    Attr r;
    using AP = onnx::AttributeProto;
    switch (a.type()) {
        case AP::FLOAT: r.kind = Attr::f; r.fv = a.f(); break;
        case AP::INT: r.kind = Attr::i; r.iv = a.i(); break;
        case AP::STRING: r.kind = Attr::s; r.sv = a.s(); break;
        case AP::TENSOR:
            r.kind = Attr::t;
            r.tensor = std::make_shared<Tensor>(tensor_from_proto(a.t(), c, where + " attribute '" + a.name() + "'"));
            break;
        case AP::FLOATS: r.kind = Attr::fs; r.floats.assign(a.floats().begin(), a.floats().end()); break;
        case AP::INTS: r.kind = Attr::is; r.ints.assign(a.ints().begin(), a.ints().end()); break;
        case AP::STRINGS: r.kind = Attr::ss; r.strings.assign(a.strings().begin(), a.strings().end()); break;
        case AP::GRAPH:
        case AP::GRAPHS:
            fail_unsupported(where + ": attribute '" + a.name() + "' is a subgraph (control flow is not supported)");
        default:
            fail_unsupported(where + ": attribute '" + a.name() + "' has the unsupported type " +
                             AP::AttributeType_Name(a.type()));
    }
    return r;
}

}  // namespace

Model load_onnx(const std::string& bytes, const LoadOptions& opt) {
    const std::string& o = opt.origin;
    if (bytes.size() > opt.max_model_bytes)
        fail(o + ": " + std::to_string(bytes.size()) + " bytes, more than the limit of " + std::to_string(opt.max_model_bytes));
    onnx::ModelProto mp;
    if (bytes.empty() || !mp.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
        fail(o + ": not an ONNX model (the protobuf does not parse: truncated or not a model file)");
    if (!mp.has_graph() || mp.graph().node_size() == 0) {
        if (!mp.has_graph()) fail(o + ": not an ONNX model (no graph)");
    }
    Model m;
    m.ir_version = mp.ir_version();
    m.producer = mp.producer_name() + (mp.producer_version().empty() ? "" : " " + mp.producer_version());
    if (m.ir_version < 3) fail_unsupported(o + ": IR version " + std::to_string(m.ir_version) + " is older than 3");
    for (const auto& os : mp.opset_import()) {
        const std::string d = os.domain() == "ai.onnx" ? "" : os.domain();
        m.opsets[d] = static_cast<int>(os.version());
    }
    if (!m.opsets.count("")) {
        for (const auto& np : mp.graph().node())
            if (np.domain().empty() || np.domain() == "ai.onnx")
                fail(o + ": node '" + np.name() + "' (" + np.op_type() + ") is in ai.onnx, but the model imports no ai.onnx opset");
        // Only other domains: their nodes are reported below.
    }
    const int opset = m.opsets.count("") ? m.opsets[""] : kMinOpset;
    if (opset < kMinOpset || opset > kMaxOpset)
        fail_unsupported(o + ": opset " + std::to_string(opset) + " is outside the supported range " + std::to_string(kMinOpset) +
                         " to " + std::to_string(kMaxOpset));

    Ctx c{opt};
    const onnx::GraphProto& gp = mp.graph();
    Graph& g = m.graph;
    for (const auto& init : gp.initializer()) {
        if (init.name().empty()) fail(o + ": an initializer has no name");
        if (g.initializers.count(init.name())) fail(o + ": initializer '" + init.name() + "' is defined twice");
        g.initializers[init.name()] = tensor_from_proto(init, c, o + ": initializer '" + init.name() + "'");
    }
    if (gp.sparse_initializer_size() > 0) fail_unsupported(o + ": sparse initializers are not supported");
    for (const auto& in : gp.input()) {
        // IR < 4 lists weights as inputs too; from IR 4 such an input is a default the caller
        // could override. This runtime treats every initializer as a constant (folded, fused).
        if (g.initializers.count(in.name())) continue;
        ValueInfo vi = value_info_from(in);
        if (in.has_type() && !in.type().has_tensor_type())
            fail_unsupported(o + ": input '" + in.name() + "' is not a tensor (sequences and maps are not supported)");
        if (vi.dtype == DType::undefined && in.has_type())
            dtype_of(in.type().tensor_type().elem_type(), o + ": input '" + in.name() + "'");
        g.inputs.push_back(vi);
    }
    for (const auto& out : gp.output()) {
        if (out.has_type() && !out.type().has_tensor_type())
            fail_unsupported(o + ": output '" + out.name() + "' is not a tensor (sequences and maps are not supported)");
        g.outputs.push_back(value_info_from(out));
    }
    if (g.outputs.empty()) fail(o + ": the graph has no outputs");

    // Nodes, in the model's order first; then sorted (the spec requires topological order, but
    // a bad or malicious model may not keep it, or may contain a cycle).
    std::vector<Node> nodes;
    std::set<std::string> produced;
    for (const ValueInfo& vi : g.inputs) produced.insert(vi.name);
    for (const auto& [name, t] : g.initializers) produced.insert(name);
    for (int i = 0; i < gp.node_size(); ++i) {
        const onnx::NodeProto& np = gp.node(i);
        Node n;
        n.op_type = np.op_type();
        n.name = np.name().empty() ? np.op_type() + "#" + std::to_string(i) : np.name();
        n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
        n.inputs.assign(np.input().begin(), np.input().end());
        n.outputs.assign(np.output().begin(), np.output().end());
        n.attrs.where = n.where();
        auto dom = m.opsets.find(n.domain);
        n.opset = dom == m.opsets.end() ? 0 : dom->second;
        for (const auto& a : np.attribute()) {
            if (!a.ref_attr_name().empty()) fail_unsupported(o + ": " + n.where() + ": attribute references are not supported");
            // The runtime's own annotations (save_onnx) go back into the node's fields.
            if (a.name() == "cpn_fused_activation") n.fused_activation = a.s();
            else if (a.name() == "cpn_fused_alpha") n.fused_alpha = a.f();
            else if (a.name() == "cpn_fused_beta") n.fused_beta = a.f();
            else n.attrs.map[a.name()] = attr_from(a, c, o + ": " + n.where());
        }
        for (const std::string& out : n.outputs) {
            if (out.empty()) continue;
            if (!produced.insert(out).second && !g.initializers.count(out))
                fail(o + ": " + n.where() + ": output '" + out + "' is produced twice (the graph is not single-assignment)");
        }
        nodes.push_back(std::move(n));
    }
    for (const Node& n : nodes)
        for (const std::string& in : n.inputs)
            if (!in.empty() && !produced.count(in))
                fail(o + ": " + n.where() + ": input '" + in + "' is neither a graph input, an initializer nor any node's output");
    for (const ValueInfo& out : g.outputs)
        if (!produced.count(out.name)) fail(o + ": graph output '" + out.name + "' is not produced by any node");

    // Kahn's algorithm, stable (keeps the model's order where it is valid).
    {
        std::map<std::string, size_t> producer;
        for (size_t i = 0; i < nodes.size(); ++i)
            for (const std::string& out : nodes[i].outputs)
                if (!out.empty()) producer[out] = i;
        std::vector<int> pending(nodes.size(), 0);
        std::vector<std::vector<size_t>> users(nodes.size());
        for (size_t i = 0; i < nodes.size(); ++i) {
            std::set<size_t> deps;
            for (const std::string& in : nodes[i].inputs) {
                auto it = producer.find(in);
                if (!in.empty() && it != producer.end()) deps.insert(it->second);
            }
            pending[i] = static_cast<int>(deps.size());
            for (size_t d : deps) users[d].push_back(i);
        }
        std::set<size_t> ready;
        for (size_t i = 0; i < nodes.size(); ++i)
            if (pending[i] == 0) ready.insert(i);
        std::vector<size_t> order;
        while (!ready.empty()) {
            const size_t i = *ready.begin();
            ready.erase(ready.begin());
            order.push_back(i);
            for (size_t u : users[i])
                if (--pending[u] == 0) ready.insert(u);
        }
        if (order.size() != nodes.size()) {
            std::string cyc;
            int shown = 0;
            for (size_t i = 0; i < nodes.size() && shown < 5; ++i)
                if (pending[i] > 0) cyc += (shown++ ? ", " : "") + nodes[i].where();
            fail(o + ": the graph has a cycle (nodes that can never run: " + cyc + ")");
        }
        for (size_t i : order) g.nodes.push_back(nodes[i]);
    }

    // Element types (and, for the fusions, ranks) of the intermediate values: the model's own
    // value_info declarations first, then the runtime's own propagation through the sorted
    // nodes (propagate_value_info). Not ONNX's shape inference: Debian's libonnx crashes on some
    // malformed models (a ConvTranspose weight with a broken dimension dereferences null in
    // convTransposeShapeInference; tests/fuzz found it), and a model is outside input.
    for (const auto& v : gp.value_info()) g.value_info[v.name()] = value_info_from(v);
    propagate_value_info(g);
    auto type_of = [&](const std::string& name) {
        if (name.empty()) return DType::undefined;
        if (auto it = g.initializers.find(name); it != g.initializers.end()) return it->second.dtype;
        for (const ValueInfo& vi : g.inputs)
            if (vi.name == name) return vi.dtype;
        for (const ValueInfo& vi : g.outputs)
            if (vi.name == name && vi.dtype != DType::undefined) return vi.dtype;
        if (auto it = g.value_info.find(name); it != g.value_info.end()) return it->second.dtype;
        return DType::undefined;
    };

    // Every node against the registry: all problems in one message.
    std::string unsupported;
    int count = 0;
    for (Node& n : g.nodes) {
        n.in_types.clear();
        n.out_types.clear();
        for (const std::string& in : n.inputs) n.in_types.push_back(type_of(in));
        for (const std::string& out : n.outputs) n.out_types.push_back(type_of(out));
        std::string why;
        if (!n.domain.empty() && n.domain != "ai.onnx") {
            why = n.where() + ": domain '" + n.domain + "' is not supported";
        } else if (const OpDef* d = find_op(n.op_type, n.opset); d == nullptr) {
            why = n.where() + ": operator " + n.op_type + " (opset " + std::to_string(n.opset) + ") is not supported";
        } else if (d->check) {
            try {
                d->check(n);
            } catch (const Error& e) {
                if (e.kind() != Error::unsupported) fail(o + ": " + e.what());
                why = e.what();
            }
        }
        if (!why.empty() && count++ < 8) unsupported += (unsupported.empty() ? "" : "; ") + why;
    }
    if (count > 0)
        fail_unsupported(o + ": " + std::to_string(count) + " node(s) cannot run here: " + unsupported +
                         (count > 8 ? "; ..." : ""));
    return m;
}

Model load_onnx_file(const std::string& path, LoadOptions opt) {
    if (opt.origin == "model") opt.origin = path;
    if (opt.base_dir.empty()) opt.base_dir = fs::absolute(fs::path(path)).parent_path().string();
    return load_onnx(read_file_bounded(path, opt.max_model_bytes, "model"), opt);
}

namespace {

void tensor_to_proto(const std::string& name, const Tensor& t, onnx::TensorProto& p) {
    p.set_name(name);
    p.set_data_type(static_cast<int32_t>(t.dtype));
    for (int64_t d : t.shape) p.add_dims(d);
    if (t.bytes() > 0) p.set_raw_data(t.raw(), t.bytes());
}

void value_info_to_proto(const ValueInfo& vi, onnx::ValueInfoProto& p) {
    p.set_name(vi.name);
    auto* tt = p.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(static_cast<int32_t>(vi.dtype));
    if (!vi.has_shape) return;
    auto* sh = tt->mutable_shape();
    for (size_t i = 0; i < vi.dims.size(); ++i) {
        auto* d = sh->add_dim();
        if (vi.dims[i] >= 0) d->set_dim_value(vi.dims[i]);
        else if (i < vi.dim_names.size() && !vi.dim_names[i].empty()) d->set_dim_param(vi.dim_names[i]);
    }
}

}  // namespace

std::string save_onnx(const Graph& g, const std::map<std::string, int>& opsets) {
    onnx::ModelProto mp;
    mp.set_ir_version(8);
    mp.set_producer_name("cpn-agent");
    for (const auto& [domain, version] : opsets) {
        auto* os = mp.add_opset_import();
        os->set_domain(domain);
        os->set_version(version);
    }
    auto* gp = mp.mutable_graph();
    gp->set_name("segment");
    for (const auto& [name, t] : g.initializers) tensor_to_proto(name, t, *gp->add_initializer());
    for (const ValueInfo& vi : g.inputs) value_info_to_proto(vi, *gp->add_input());
    for (const ValueInfo& vi : g.outputs) value_info_to_proto(vi, *gp->add_output());
    using AP = onnx::AttributeProto;
    for (const Node& n : g.nodes) {
        auto* np = gp->add_node();
        np->set_name(n.name);
        np->set_op_type(n.op_type);
        np->set_domain(n.domain);
        for (const std::string& in : n.inputs) np->add_input(in);
        for (const std::string& out : n.outputs) np->add_output(out);
        for (const auto& [k, a] : n.attrs.map) {
            auto* ap = np->add_attribute();
            ap->set_name(k);
            switch (a.kind) {
                case Attr::f: ap->set_type(AP::FLOAT); ap->set_f(a.fv); break;
                case Attr::i: ap->set_type(AP::INT); ap->set_i(a.iv); break;
                case Attr::s: ap->set_type(AP::STRING); ap->set_s(a.sv); break;
                case Attr::t: ap->set_type(AP::TENSOR); tensor_to_proto("", *a.tensor, *ap->mutable_t()); break;
                case Attr::fs: ap->set_type(AP::FLOATS); for (float v : a.floats) ap->add_floats(v); break;
                case Attr::is: ap->set_type(AP::INTS); for (int64_t v : a.ints) ap->add_ints(v); break;
                case Attr::ss: ap->set_type(AP::STRINGS); for (const auto& v : a.strings) ap->add_strings(v); break;
                default: break;
            }
        }
        if (!n.fused_activation.empty()) {
            auto* a = np->add_attribute();
            a->set_name("cpn_fused_activation");
            a->set_type(AP::STRING);
            a->set_s(n.fused_activation);
            a = np->add_attribute();
            a->set_name("cpn_fused_alpha");
            a->set_type(AP::FLOAT);
            a->set_f(n.fused_alpha);
            a = np->add_attribute();
            a->set_name("cpn_fused_beta");
            a->set_type(AP::FLOAT);
            a->set_f(n.fused_beta);
        }
    }
    return mp.SerializeAsString();
}

std::pair<std::string, Tensor> load_tensor_proto(const std::string& bytes, const std::string& origin, int64_t max_elements) {
    onnx::TensorProto p;
    if (!p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
        fail(origin + ": not a serialized ONNX TensorProto");
    LoadOptions opt;
    opt.max_tensor_elements = max_elements;
    Ctx c{opt};
    return {p.name(), tensor_from_proto(p, c, origin)};
}

std::string save_tensor_proto(const std::string& name, const Tensor& t) {
    onnx::TensorProto p;
    tensor_to_proto(name, t, p);
    return p.SerializeAsString();
}

}  // namespace cpn::infer
