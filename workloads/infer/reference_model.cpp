#include "reference_model.hpp"

#include <cmath>
#include <cstdint>
#include <vector>

#include <onnx/onnx_pb.h>

namespace cpn::infer {
namespace {

struct Builder {
    onnx::GraphProto* g;
    uint32_t state = 0x12345678u;
    int count = 0;

    float next() {  // xorshift32 in [-1, 1)
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        return static_cast<float>(state) / 2147483648.0f - 1.0f;
    }
    std::string weight(const std::string& name, std::vector<int64_t> dims, float scale, float offset = 0.0f) {
        auto* t = g->add_initializer();
        t->set_name(name);
        t->set_data_type(onnx::TensorProto_DataType_FLOAT);
        int64_t n = 1;
        for (int64_t d : dims) {
            t->add_dims(d);
            n *= d;
        }
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = offset + scale * next();
        t->set_raw_data(v.data(), v.size() * sizeof(float));
        return name;
    }
    onnx::NodeProto* node(const std::string& op, std::vector<std::string> in, const std::string& out) {
        auto* n = g->add_node();
        n->set_op_type(op);
        n->set_name(op + "_" + std::to_string(count++));
        for (const auto& i : in) n->add_input(i);
        n->add_output(out);
        return n;
    }
    static void ints(onnx::NodeProto* n, const std::string& k, std::vector<int64_t> v) {
        auto* a = n->add_attribute();
        a->set_name(k);
        a->set_type(onnx::AttributeProto_AttributeType_INTS);
        for (int64_t x : v) a->add_ints(x);
    }
    static void integer(onnx::NodeProto* n, const std::string& k, int64_t v) {
        auto* a = n->add_attribute();
        a->set_name(k);
        a->set_type(onnx::AttributeProto_AttributeType_INT);
        a->set_i(v);
    }
    // He-style scale keeps activations in range through the layers.
    std::string conv(const std::string& x, int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t group, const std::string& out) {
        const float scale = std::sqrt(6.0f / static_cast<float>(cin / group * k * k));
        const std::string w = weight(out + ".w", {cout, cin / group, k, k}, scale);
        const std::string b = weight(out + ".b", {cout}, 0.05f);
        auto* n = node("Conv", {x, w, b}, out);
        ints(n, "kernel_shape", {k, k});
        ints(n, "strides", {stride, stride});
        const int64_t p = k / 2;
        ints(n, "pads", {p, p, p, p});
        if (group != 1) integer(n, "group", group);
        return out;
    }
};

}  // namespace

std::string reference_model_onnx() {
    onnx::ModelProto m;
    m.set_ir_version(7);
    m.set_producer_name("cpn-agent");
    m.set_producer_version(kReferenceModelName);
    auto* os = m.add_opset_import();
    os->set_domain("");
    os->set_version(13);
    auto* g = m.mutable_graph();
    g->set_name(kReferenceModelName);
    auto* in = g->add_input();
    in->set_name("image");
    auto* tt = in->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto_DataType_FLOAT);
    tt->mutable_shape()->add_dim()->set_dim_param("batch");
    for (int64_t d : {3, 96, 96}) tt->mutable_shape()->add_dim()->set_dim_value(d);

    Builder b{g};
    std::string x = b.conv("image", 3, 32, 3, 1, 1, "c1");
    x = b.node("BatchNormalization",
               {x, b.weight("bn.scale", {32}, 0.1f, 1.0f), b.weight("bn.bias", {32}, 0.1f), b.weight("bn.mean", {32}, 0.1f),
                b.weight("bn.var", {32}, 0.1f, 1.0f)},
               "bn")->output(0);
    x = b.node("Relu", {x}, "r1")->output(0);
    x = b.conv(x, 32, 64, 3, 2, 1, "c2");
    x = b.node("Relu", {x}, "r2")->output(0);
    x = b.conv(x, 64, 64, 3, 1, 64, "dw");
    auto* lo = g->add_initializer();
    lo->set_name("zero");
    lo->set_data_type(onnx::TensorProto_DataType_FLOAT);
    lo->add_float_data(0.0f);
    auto* hi = g->add_initializer();
    hi->set_name("six");
    hi->set_data_type(onnx::TensorProto_DataType_FLOAT);
    hi->add_float_data(6.0f);
    x = b.node("Clip", {x, "zero", "six"}, "r3")->output(0);
    x = b.conv(x, 64, 128, 1, 1, 1, "pw");
    x = b.node("Relu", {x}, "r4")->output(0);
    auto* mp = b.node("MaxPool", {x}, "mp");
    Builder::ints(mp, "kernel_shape", {2, 2});
    Builder::ints(mp, "strides", {2, 2});
    x = b.conv("mp", 128, 128, 3, 2, 1, "c5");
    x = b.node("Relu", {x}, "r5")->output(0);
    x = b.node("GlobalAveragePool", {x}, "gap")->output(0);
    x = b.node("Flatten", {x}, "flat")->output(0);
    auto* gemm = b.node("Gemm", {x, b.weight("fc.w", {1000, 128}, std::sqrt(6.0f / 128)), b.weight("fc.b", {1000}, 0.05f)}, "fc");
    Builder::integer(gemm, "transB", 1);
    b.node("Softmax", {"fc"}, "probabilities");
    auto* out = g->add_output();
    out->set_name("probabilities");
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto_DataType_FLOAT);
    return m.SerializeAsString();
}

}  // namespace cpn::infer
