// import_test.cpp: models and inputs from outside that are wrong, each refused with a message
// that names what is wrong, without a crash and without an allocation the input chose.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include "executor.hpp"
#include "onnx_import.hpp"

namespace cpn::infer {
namespace {

namespace fs = std::filesystem;

// A one-node model: y = op(x, ...), opset 13, float [2, 3] inputs.
onnx::ModelProto model(const std::string& op, int inputs = 1, int opset = 13) {
    onnx::ModelProto m;
    m.set_ir_version(8);
    auto* os = m.add_opset_import();
    os->set_domain("");
    os->set_version(opset);
    auto* g = m.mutable_graph();
    g->set_name("g");
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name("n0");
    for (int i = 0; i < inputs; ++i) {
        const std::string name = "x" + std::to_string(i);
        n->add_input(name);
        auto* in = g->add_input();
        in->set_name(name);
        auto* tt = in->mutable_type()->mutable_tensor_type();
        tt->set_elem_type(onnx::TensorProto_DataType_FLOAT);
        tt->mutable_shape()->add_dim()->set_dim_param("batch");
        tt->mutable_shape()->add_dim()->set_dim_value(3);
    }
    n->add_output("y");
    auto* out = g->add_output();
    out->set_name("y");
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto_DataType_FLOAT);
    return m;
}

std::string load_error(const onnx::ModelProto& m, Error::Kind* kind = nullptr, const LoadOptions& opt = {}) {
    try {
        load_onnx(m.SerializeAsString(), opt);
    } catch (const Error& e) {
        if (kind) *kind = e.kind();
        return e.what();
    }
    return "";
}

Tensor floats(const Shape& s, float v = 1.0f) {
    Tensor t = make_tensor(DType::f32, s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = v;
    return t;
}

TEST(OnnxImport, GarbageAndTruncatedModelsAreRefused) {
    EXPECT_THROW(load_onnx("", {}), Error);
    try {
        load_onnx(std::string("\xff\xff\xff\xff garbage, not protobuf"), {});
        FAIL() << "garbage accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not an ONNX model"), std::string::npos) << e.what();
    }
    // A real model cut short at every length: never a crash, always an error.
    const std::string whole = model("Relu").SerializeAsString();
    for (size_t len = 1; len < whole.size(); ++len) {
        try {
            load_onnx(whole.substr(0, len), {});
        } catch (const Error&) {
            continue;
        }
        // A prefix that happens to be a complete smaller model must still be a valid one.
    }
}

// Intermediate element types come from the runtime's own propagation (not ONNX's shape
// inference, which crashes on some malformed models): a type an operator lacks is still refused
// at load, naming the node, even when only an earlier node's attribute tells it.
TEST(OnnxImport, IntermediateTypesReachTheLoadTimeChecks) {
    onnx::ModelProto m = model("Cast");
    auto* g = m.mutable_graph();
    auto* to = g->mutable_node(0)->add_attribute();
    to->set_name("to");
    to->set_type(onnx::AttributeProto_AttributeType_INT);
    to->set_i(onnx::TensorProto_DataType_INT32);
    g->mutable_node(0)->set_output(0, "as_int");
    auto* scales = g->add_initializer();
    scales->set_name("scales");
    scales->set_data_type(onnx::TensorProto_DataType_FLOAT);
    scales->add_dims(2);
    scales->add_float_data(1.0f);
    scales->add_float_data(2.0f);
    auto* r = g->add_node();
    r->set_op_type("Resize");
    r->set_name("up");
    r->add_input("as_int");
    r->add_input("");
    r->add_input("scales");
    r->add_output("y");
    auto* mode = r->add_attribute();
    mode->set_name("mode");
    mode->set_type(onnx::AttributeProto_AttributeType_STRING);
    mode->set_s("linear");
    Error::Kind k{};
    const std::string e = load_error(m, &k);
    EXPECT_EQ(k, Error::unsupported) << e;
    EXPECT_NE(e.find("node 'up' (Resize): linear resize of int32 is not supported"), std::string::npos) << e;
    // The same graph resizing the float input is fine: the refusal came from Cast's type.
    g->mutable_node(1)->set_input(0, "x0");
    EXPECT_EQ(load_error(m), "");
    // Declared value_info wins over propagation.
    g->mutable_node(1)->set_input(0, "as_int");
    auto* vi = g->add_value_info();
    vi->set_name("as_int");
    vi->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto_DataType_INT64);
    EXPECT_NE(load_error(m).find("linear resize of int64 is not supported"), std::string::npos) << load_error(m);
}

TEST(OnnxImport, UnsupportedOpsetOperatorAndSubgraphsAreNamedAtLoad) {
    Error::Kind k{};
    std::string e = load_error(model("Relu", 1, 18), &k);
    EXPECT_EQ(k, Error::unsupported);
    EXPECT_NE(e.find("opset 18 is outside the supported range 1 to 17"), std::string::npos) << e;
    e = load_error(model("FancyAttention"), &k);
    EXPECT_EQ(k, Error::unsupported);
    EXPECT_NE(e.find("node 'n0' (FancyAttention): operator FancyAttention (opset 13) is not supported"), std::string::npos) << e;
    onnx::ModelProto m = model("If");
    auto* a = m.mutable_graph()->mutable_node(0)->add_attribute();
    a->set_name("then_branch");
    a->set_type(onnx::AttributeProto_AttributeType_GRAPH);
    e = load_error(m, &k);
    EXPECT_EQ(k, Error::unsupported);
    EXPECT_NE(e.find("subgraph"), std::string::npos) << e;
}

TEST(OnnxImport, CyclesAndDanglingValuesAreRefused) {
    onnx::ModelProto m = model("Add", 1);
    auto* g = m.mutable_graph();
    g->mutable_node(0)->add_input("z");  // Add(x0, z) -> y
    auto* n = g->add_node();             // Relu(y) -> z: a cycle
    n->set_op_type("Relu");
    n->set_name("loop");
    n->add_input("y");
    n->add_output("z");
    std::string e = load_error(m);
    EXPECT_NE(e.find("cycle"), std::string::npos) << e;
    EXPECT_NE(e.find("node 'loop' (Relu)"), std::string::npos) << e;

    m = model("Add", 1);
    m.mutable_graph()->mutable_node(0)->add_input("nobody");
    e = load_error(m);
    EXPECT_NE(e.find("input 'nobody' is neither a graph input, an initializer nor any node's output"), std::string::npos) << e;
}

TEST(OnnxImport, HugeDeclaredTensorsAreRefusedBeforeAllocation) {
    // 2^40 elements declared, no data: refused by the element limit, nothing allocated.
    onnx::ModelProto m = model("Add", 1);
    auto* w = m.mutable_graph()->add_initializer();
    w->set_name("w");
    w->set_data_type(onnx::TensorProto_DataType_FLOAT);
    w->add_dims(int64_t{1} << 20);
    w->add_dims(int64_t{1} << 20);
    m.mutable_graph()->mutable_node(0)->add_input("w");
    std::string e = load_error(m);
    EXPECT_NE(e.find("initializer 'w': shape [1048576, 1048576] has more than the limit"), std::string::npos) << e;
    // Data that does not match the shape.
    w->set_dims(0, 2);
    w->set_dims(1, 3);
    w->set_raw_data(std::string(5, '\0'));
    e = load_error(m);
    EXPECT_NE(e.find("raw_data is 5 bytes, the shape [2, 3] of float32 needs 24"), std::string::npos) << e;
}

TEST(OnnxImport, ExternalDataStaysInsideTheAllowedDirectories) {
    const fs::path dir = fs::temp_directory_path() / ("cpn-infer-ext-" + std::to_string(::getpid()));
    fs::create_directories(dir / "model");
    {
        std::ofstream(dir / "secret.bin") << std::string(24, 'x');
        std::ofstream(dir / "model" / "w.bin") << std::string(24, '\0');
    }
    onnx::ModelProto m = model("Add", 1);
    auto* w = m.mutable_graph()->add_initializer();
    w->set_name("w");
    w->set_data_type(onnx::TensorProto_DataType_FLOAT);
    w->add_dims(2);
    w->add_dims(3);
    w->set_data_location(onnx::TensorProto_DataLocation_EXTERNAL);
    auto* loc = w->add_external_data();
    loc->set_key("location");
    loc->set_value("../secret.bin");
    m.mutable_graph()->mutable_node(0)->add_input("w");
    LoadOptions opt;
    opt.base_dir = (dir / "model").string();
    std::string e = load_error(m, nullptr, opt);
    EXPECT_NE(e.find("external data '../secret.bin' is outside the allowed directories"), std::string::npos) << e;
    loc->set_value("w.bin");
    e = load_error(m, nullptr, opt);
    EXPECT_EQ(e.find("external data"), std::string::npos) << e;
    loc->set_value("missing.bin");
    e = load_error(m, nullptr, opt);
    EXPECT_NE(e.find("cannot be opened"), std::string::npos) << e;
    fs::remove_all(dir);
}

TEST(OnnxRun, WrongInputsAreRefusedNamingTheInput) {
    const Model m = load_onnx(model("Relu").SerializeAsString(), {});
    auto error = [&](const std::map<std::string, Tensor>& in) {
        try {
            run_graph(m.graph, in);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_NE(error({}).find("input 'x0' is missing"), std::string::npos);
    EXPECT_NE(error({{"x0", floats({2, 3})}, {"nope", floats({1})}}).find("input 'nope' is not an input of the model (its inputs: x0)"),
              std::string::npos);
    EXPECT_NE(error({{"x0", floats({2, 4})}}).find("input 'x0': expected shape [batch, 3], got [2, 4]"), std::string::npos)
        << error({{"x0", floats({2, 4})}});
    EXPECT_NE(error({{"x0", make_tensor(DType::i64, {2, 3})}}).find("input 'x0': expected float32, got int64"), std::string::npos);
    Tensor nan = floats({2, 3});
    nan.data<float>()[4] = std::nanf("");
    EXPECT_NE(error({{"x0", nan}}).find("input 'x0': element 4 is NaN"), std::string::npos);
    // The batch dimension is free; the result is right.
    auto out = run_graph(m.graph, {{"x0", floats({5, 3}, -2.0f)}});
    ASSERT_EQ(out.at("y").shape, (Shape{5, 3}));
    EXPECT_EQ(out.at("y").data<float>()[0], 0.0f);
}

TEST(OnnxRun, RunTimeSizesAreBounded) {
    // ConstantOfShape fed a shape of 2^40 elements at run time: refused, nothing allocated.
    onnx::ModelProto m = model("ConstantOfShape", 0);
    auto* g = m.mutable_graph();
    g->mutable_node(0)->add_input("shape");
    auto* in = g->add_input();
    in->set_name("shape");
    in->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto_DataType_INT64);
    const Model model_ = load_onnx(m.SerializeAsString(), {});
    Tensor shape = make_tensor(DType::i64, {2});
    shape.data<int64_t>()[0] = int64_t{1} << 20;
    shape.data<int64_t>()[1] = int64_t{1} << 20;
    try {
        run_graph(model_.graph, {{"shape", shape}});
        FAIL() << "a 2^40-element tensor was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("larger than the limit"), std::string::npos) << e.what();
    }
}

TEST(OnnxRun, CancelStopsBetweenNodes) {
    const Model m = load_onnx(model("Relu").SerializeAsString(), {});
    std::atomic<bool> cancel{true};
    RunOptions o;
    o.cancel = &cancel;
    try {
        run_graph(m.graph, {{"x0", floats({2, 3})}}, o);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), Error::cancelled);
    }
}

TEST(OnnxTensor, HalfConversionsRoundTrip) {
    for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 1e-3f, 3.14159f}) {
        const float back = half_to_float(float_to_half(f));
        EXPECT_NEAR(back, f, std::fabs(f) * 1e-3 + 1e-8) << f;
    }
    EXPECT_TRUE(std::isinf(half_to_float(float_to_half(1e6f))));
    EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
    EXPECT_EQ(bf16_to_float(float_to_bf16(1.5f)), 1.5f);
}

}  // namespace
}  // namespace cpn::infer
