// infer_backends_test.cpp: inference through the backend plugins (InferEngine): the digits CNN
// on the CPU backend and on each device backend, OpenCL and CUDA (accuracy, agreement of the
// logits, the split and copy metrics), an operator a device backend lacks falling back to the
// CPU backend, and ONNX's backend tests through each. The device tests skip, saying why, where
// the plugin or a device is missing (no CUDA GPU on the development machines: there the CUDA
// plugin is only checked to load and say why it cannot run).
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cpn_infer.h"
#include "infer/infer_engine.hpp"
#include "onnx_testdata.hpp"
#include "plugin/plugin_library.hpp"
#include "tensor_io.hpp"

namespace cpn::infer {
namespace {

std::string plugin(const std::string& backend) { return std::string(CPN_PLUGIN_DIR) + "/libcpn-backend-" + backend + ".so"; }

std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

InferTarget target(const std::string& backend) {
    InferTarget t;
    t.device_id = backend + "-0";
    t.paths.push_back({backend, 0, plugin(backend)});
    t.cpu = {"cpu", 0, plugin("cpu")};
    return t;
}

std::shared_ptr<const LoadedModel> load(ModelCache& cache, const std::string& bytes, const std::string& origin) {
    LoadOptions lo;
    lo.origin = origin;
    Result<std::shared_ptr<const LoadedModel>> m = cache.get(bytes, lo);
    EXPECT_TRUE(m.ok()) << m.status().message();
    return m.ok() ? m.value() : nullptr;
}

std::string fixture(const std::string& name) { return std::string(CPN_SOURCE_DIR) + "/tests/fixtures/infer/" + name; }

void print_metrics(const char* what, const nlohmann::json& m) {
    std::printf("%s: run %.4f s, segments %s, fallback_nodes %s, copies %s (%s bytes), %.2f GFLOP/s\n", what,
                m.value("run_s", 0.0), m["segments"].dump().c_str(), m["fallback_nodes"].dump().c_str(), m["copies"].dump().c_str(),
                m["copy_bytes"].dump().c_str(), m.value("gflops_per_s", 0.0));
}

/* The digits CNN on `backend` at `precision` against the CPU backend at fp32: both at least 95%
 * accurate, the logits within 1e-3 (relative to the largest; 3e-2 at fp16), every node on the
 * device in one segment, the precision the metrics report. Skips when the backend has no usable
 * device here. */
void digits_cnn_agrees_with_cpu(const std::string& backend, const std::string& precision = "fp32") {
    ModelCache cache;
    auto m = load(cache, read_all(fixture("digits-cnn.onnx")), "digits-cnn.onnx");
    ASSERT_TRUE(m);
    const Tensor x = read_tensor(read_all(fixture("digits-test-x.npy")), "digits-test-x.npy");
    const Tensor labels = read_tensor(read_all(fixture("digits-test-y.npy")), "digits-test-y.npy");
    ASSERT_EQ(m->model.graph.inputs.size(), 1u);
    ASSERT_EQ(m->model.graph.outputs.size(), 1u);
    const std::string in_name = m->model.graph.inputs[0].name, out_name = m->model.graph.outputs[0].name;
    const std::map<std::string, Tensor> inputs{{in_name, x}};
    InferEngine engine;

    auto run_on = [&](const std::string& which, Result<InferResult>* warm) {
        InferRunOptions ro;
        if (which != "cpu") ro.precision = precision;  // the reference is float32
        Result<InferResult> first = engine.run(m, target(which), inputs, ro);
        if (first.ok()) {
            const auto t0 = std::chrono::steady_clock::now();
            *warm = engine.run(m, target(which), inputs, ro);  // prepared: the run alone
            std::printf("%s: second run %.4f s (first, with prepare: compile %.3f s, run %.4f s)\n", which.c_str(),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                        first->metrics.value("compile_s", 0.0), first->metrics.value("run_s", 0.0));
        } else {
            *warm = first;
        }
    };
    Result<InferResult> cpu = Status(Code::internal, "not run"), dev = Status(Code::internal, "not run");
    run_on("cpu", &cpu);
    ASSERT_TRUE(cpu.ok()) << cpu.status().message();
    run_on(backend, &dev);
    if (!dev.ok() && (dev.status().code() == Code::unavailable))
        GTEST_SKIP() << backend << " cannot run inference on this machine: " << dev.status().message();
    ASSERT_TRUE(dev.ok()) << dev.status().message();

    const Tensor& a = cpu->outputs.at(out_name);
    const Tensor& b = dev->outputs.at(out_name);
    ASSERT_EQ(a.dtype, DType::f32);
    ASSERT_EQ(a.shape, b.shape);
    ASSERT_EQ(a.rank(), 2u);
    const int64_t rows = a.shape[0], cols = a.shape[1];
    ASSERT_EQ(rows, labels.numel());
    double max_abs = 0, max_diff = 0;
    int64_t right_cpu = 0, right_dev = 0;
    for (int64_t r = 0; r < rows; ++r) {
        int64_t ia = 0, ib = 0;
        for (int64_t c = 0; c < cols; ++c) {
            const float va = a.data<float>()[r * cols + c], vb = b.data<float>()[r * cols + c];
            max_abs = std::max(max_abs, static_cast<double>(std::fabs(va)));
            max_diff = std::max(max_diff, static_cast<double>(std::fabs(va - vb)));
            if (va > a.data<float>()[r * cols + ia]) ia = c;
            if (vb > b.data<float>()[r * cols + ib]) ib = c;
        }
        right_cpu += ia == int_at(labels, r);
        right_dev += ib == int_at(labels, r);
    }
    const double acc_cpu = static_cast<double>(right_cpu) / rows, acc_dev = static_cast<double>(right_dev) / rows;
    std::printf("digits-cnn, batch %lld: accuracy cpu %.4f, %s %.4f; max |logit| %.4f, max |diff| %.3g (relative %.3g)\n",
                static_cast<long long>(rows), acc_cpu, backend.c_str(), acc_dev, max_abs, max_diff,
                max_abs > 0 ? max_diff / max_abs : max_diff);
    print_metrics("cpu", cpu->metrics);
    print_metrics(backend.c_str(), dev->metrics);
    EXPECT_GE(acc_cpu, 0.95);
    EXPECT_GE(acc_dev, 0.95);
    // float16 products keep 11 significant bits: the logits agree to a few parts in a thousand.
    EXPECT_LT(max_diff, (precision == "fp16" ? 3e-2 : 1e-3) * std::max(1.0, max_abs));
    if (precision == "fp16" && backend == "cuda") {  // the tensor cores (compute capability >= 7.0 and cuBLAS)
        EXPECT_EQ(dev->metrics.value("precision", ""), "fp16") << dev->metrics.dump();
        EXPECT_FALSE(dev->metrics.contains("precision_note")) << dev->metrics.dump();
    } else if (precision == "fp16") {  // float32 only, and the metrics say so
        EXPECT_EQ(dev->metrics.value("precision", ""), "fp32") << dev->metrics.dump();
        EXPECT_NE(dev->metrics.value("precision_note", "").find(backend + " computes float32 only: fp16 was asked for"),
                  std::string::npos)
            << dev->metrics.dump();
    } else {
        EXPECT_EQ(dev->metrics.value("precision", ""), "fp32") << dev->metrics.dump();
        EXPECT_FALSE(dev->metrics.contains("precision_note")) << dev->metrics.dump();
    }
    EXPECT_EQ(dev->metrics.value("backend", ""), backend);
    EXPECT_EQ(dev->metrics.value("fallback_nodes", size_t{99}), 0u) << dev->metrics.dump();
    EXPECT_EQ(dev->metrics.value("segments", size_t{0}), 1u);
}

TEST(InferBackends, DigitsCnnOnOpenClAgreesWithCpu) { digits_cnn_agrees_with_cpu("opencl"); }

TEST(InferBackends, DigitsCnnOnCudaAgreesWithCpu) { digits_cnn_agrees_with_cpu("cuda"); }

/* precision fp16: OpenCL computes float32 and says so; CUDA runs its products on the tensor
 * cores (float16 operands, float32 accumulation) and still classifies the digits. */
TEST(InferBackends, DigitsCnnOnOpenClAtFp16RunsFloat32AndSaysWhy) { digits_cnn_agrees_with_cpu("opencl", "fp16"); }

TEST(InferBackends, DigitsCnnOnCudaAtFp16UsesTheTensorCores) { digits_cnn_agrees_with_cpu("cuda", "fp16"); }

/* Conv -> `op` -> Relu, where `backend` lacks `op` (fn: its definition): `op` runs on the CPU
 * between two device segments, and the result is still right. Skips when the backend has no
 * usable device here. */
void an_operator_it_lacks_falls_back_to_the_cpu(const std::string& backend, const char* op, double (*fn)(double)) {
    onnx::ModelProto mp;
    mp.set_ir_version(8);
    auto* os = mp.add_opset_import();
    os->set_domain("");
    os->set_version(13);
    auto* g = mp.mutable_graph();
    g->set_name("conv_op_relu");
    auto add_node = [&](const char* type, std::vector<std::string> ins, const std::string& out) {
        auto* n = g->add_node();
        n->set_op_type(type);
        n->set_name(std::string(type) + "0");
        for (const std::string& i : ins) n->add_input(i);
        n->add_output(out);
        return n;
    };
    add_node("Conv", {"x", "w", "b"}, "c");
    add_node(op, {"c"}, "e");
    add_node("Relu", {"e"}, "y");
    const int64_t N = 2, H = 5, W = 5, M = 2;
    auto* in = g->add_input();
    in->set_name("x");
    auto* tt = in->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto_DataType_FLOAT);
    for (int64_t d : {N, int64_t{1}, H, W}) tt->mutable_shape()->add_dim()->set_dim_value(d);
    std::vector<float> wv(M * 9), bv{0.1f, -0.2f};
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = 0.05f * static_cast<float>(static_cast<int>(i % 7) - 3);
    auto* wt = g->add_initializer();
    wt->set_name("w");
    wt->set_data_type(onnx::TensorProto_DataType_FLOAT);
    for (int64_t d : {M, int64_t{1}, int64_t{3}, int64_t{3}}) wt->add_dims(d);
    for (float v : wv) wt->add_float_data(v);
    auto* bt = g->add_initializer();
    bt->set_name("b");
    bt->set_data_type(onnx::TensorProto_DataType_FLOAT);
    bt->add_dims(M);
    for (float v : bv) bt->add_float_data(v);
    auto* out = g->add_output();
    out->set_name("y");
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto_DataType_FLOAT);

    ModelCache cache;
    auto m = load(cache, mp.SerializeAsString(), "conv-" + std::string(op) + "-relu");
    ASSERT_TRUE(m);
    Tensor x = make_tensor(DType::f32, {N, 1, H, W});
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>((i * 37) % 11) / 5.0f - 1.0f;
    InferEngine engine;
    Result<InferResult> r = engine.run(m, target(backend), {{"x", x}}, {});
    if (!r.ok() && r.status().code() == Code::unavailable)
        GTEST_SKIP() << backend << " cannot run inference on this machine: " << r.status().message();
    ASSERT_TRUE(r.ok()) << r.status().message();
    print_metrics(("conv-" + std::string(op) + "-relu on " + backend).c_str(), r->metrics);
    EXPECT_GT(r->metrics.value("fallback_nodes", size_t{0}), 0u) << r->metrics.dump();
    EXPECT_EQ(r->metrics.value("segments", size_t{0}), 3u) << r->metrics.dump();

    // The expected values straight from the definition (3x3, no padding: 3x3 outputs).
    const Tensor& y = r->outputs.at("y");
    ASSERT_EQ(y.shape, (Shape{N, M, 3, 3}));
    double worst = 0;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t mm = 0; mm < M; ++mm)
            for (int64_t oh = 0; oh < 3; ++oh)
                for (int64_t ow = 0; ow < 3; ++ow) {
                    double acc = bv[static_cast<size_t>(mm)];
                    for (int64_t kh = 0; kh < 3; ++kh)
                        for (int64_t kw = 0; kw < 3; ++kw)
                            acc += static_cast<double>(x.data<float>()[(n * H + oh + kh) * W + ow + kw]) *
                                   wv[static_cast<size_t>(mm * 9 + kh * 3 + kw)];
                    const double want = std::max(0.0, fn(acc));
                    const double got = y.data<float>()[((n * M + mm) * 3 + oh) * 3 + ow];
                    worst = std::max(worst, std::fabs(want - got));
                }
    EXPECT_LT(worst, 1e-5);
}

TEST(InferBackends, AnOperatorOpenClLacksFallsBackToTheCpu) {
    an_operator_it_lacks_falls_back_to_the_cpu("opencl", "Erf", [](double v) { return std::erf(v); });
}

TEST(InferBackends, AnOperatorCudaLacksFallsBackToTheCpu) {
    an_operator_it_lacks_falls_back_to_the_cpu("cuda", "Sin", [](double v) { return std::sin(v); });
}

/* Where the CUDA plugin cannot run (no driver, no GPU: every development machine), it still
 * loads, offers the inference extension, and the engine passes on the reason probe gives. */
TEST(InferBackends, CudaWithoutADeviceSaysWhy) {
    PluginLoadError le;
    std::shared_ptr<PluginLibrary> lib = PluginLibrary::open(plugin("cuda"), le);
    if (!lib) GTEST_SKIP() << "the CUDA plugin is not built: " << le.stage << ": " << le.reason;
    const cpn_backend& b = lib->backend();
    ASSERT_NE(b.get_proc, nullptr);
    const auto* api = static_cast<const cpn_infer_api*>(b.get_proc(CPN_INFER_PROC));
    ASSERT_NE(api, nullptr);
    EXPECT_GE(api->struct_size, sizeof(cpn_infer_api));
    cpn_probe_info pi{};
    pi.struct_size = sizeof pi;
    cpn_msg err{};
    ASSERT_EQ(b.probe(&pi, &err), CPN_OK) << err.text;
    if (pi.usable) GTEST_SKIP() << "a CUDA device is usable here: the CUDA tests above run on it";
    ASSERT_NE(pi.reason[0], '\0');
    ModelCache cache;
    auto m = load(cache, read_all(fixture("digits-cnn.onnx")), "digits-cnn.onnx");
    ASSERT_TRUE(m);
    InferEngine engine;
    Result<InferResult> r = engine.run(m, target("cuda"), {{"image", read_tensor(read_all(fixture("digits-test-x.npy")), "x")}}, {});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::unavailable);
    EXPECT_NE(r.status().message().find(pi.reason), std::string::npos) << r.status().message();
    std::printf("cuda: %s\n", r.status().message().c_str());
}

/* Same input, same answer: every operator the device backends run, alone in a model, on the
 * device and on the CPU, with inputs that mix ordinary values with the finite extremes a task may
 * send (+-1e30, +-3e9, 65504, 1e-38, -0). Element-wise operators get the extremes; operators
 * that sum (MatMul, Gemm, Conv, the pools, Softmax, BatchNormalization) get values up to 1e3 and
 * the tiny ones, since a sum of huge terms depends on the order. Agreement: both NaN, the same
 * infinity, or within 1e-5 relative (plus 1e-30, and for the sums 1e-6 of the output's largest
 * magnitude); and the device must have run the node. */
struct OpCase {
    std::string op;
    std::vector<Shape> inputs;  // float32 graph inputs x0, x1, ...
    std::map<std::string, std::vector<int64_t>> ints;
    bool extreme = true;
    bool positive_last = false;  // the last input must be > 0 (a variance)
};

onnx::ModelProto one_node_model(const OpCase& c) {
    onnx::ModelProto m;
    m.set_ir_version(8);
    auto* os = m.add_opset_import();
    os->set_domain("");
    os->set_version(14);  // HardSwish's first
    auto* g = m.mutable_graph();
    g->set_name(c.op);
    auto* n = g->add_node();
    n->set_op_type(c.op);
    n->set_name("n");
    for (size_t i = 0; i < c.inputs.size(); ++i) {
        const std::string name = "x" + std::to_string(i);
        n->add_input(name);
        auto* in = g->add_input();
        in->set_name(name);
        auto* tt = in->mutable_type()->mutable_tensor_type();
        tt->set_elem_type(onnx::TensorProto_DataType_FLOAT);
        for (int64_t d : c.inputs[i]) tt->mutable_shape()->add_dim()->set_dim_value(d);
    }
    for (const auto& [k, v] : c.ints) {
        auto* a = n->add_attribute();
        a->set_name(k);
        if (v.size() == 1 && k != "kernel_shape" && k != "perm" && k != "pads") {
            a->set_type(onnx::AttributeProto::INT);
            a->set_i(v[0]);
        } else {
            a->set_type(onnx::AttributeProto::INTS);
            for (int64_t x : v) a->add_ints(x);
        }
    }
    n->add_output("y");
    auto* out = g->add_output();
    out->set_name("y");
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto_DataType_FLOAT);
    return m;
}

Tensor op_input(const Shape& s, bool extreme, bool positive, uint32_t seed) {
    static const float kExtreme[] = {1e30f, -1e30f, 3e9f, -3e9f, 65504.0f, 1e-38f, -0.0f, 0.0f};
    static const float kTiny[] = {1e-38f, -1e-38f, -0.0f, 0.0f, 1e3f, -1e3f};
    Tensor t = make_tensor(DType::f32, s);
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
        seed = seed * 1664525u + 1013904223u;
        float v = static_cast<float>(seed >> 8) / 8388608.0f * 8.0f - 4.0f;  // [-4, 4)
        if ((seed >> 28) < 5) v = extreme ? kExtreme[(seed >> 3) % 8] : kTiny[(seed >> 3) % 6];
        p[i] = positive ? std::fabs(v) + 0.5f : v;
    }
    return t;
}

// `slack`: an absolute allowance on top (for sums: a part of the output's largest magnitude, as
// a different summation order or algorithm, cuDNN's Winograd say, may leave a cancelled sum off
// by that much).
bool agree(float a, float b, double slack) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    if (std::isinf(a) || std::isinf(b)) return a == b;
    const double x = a, y = b;
    return std::fabs(x - y) <= 1e-30 + slack + 1e-5 * std::max(std::fabs(x), std::fabs(y));
}

void every_device_operator_agrees_with_the_cpu(const std::string& backend) {
    const Shape x4 = {2, 3, 5, 5};
    using Ints = std::map<std::string, std::vector<int64_t>>;
    auto oc = [](std::string op, std::vector<Shape> in, Ints ints = {}, bool extreme = true, bool positive_last = false) {
        return OpCase{std::move(op), std::move(in), std::move(ints), extreme, positive_last};
    };
    const std::vector<OpCase> cases = {
        oc("Relu", {x4}), oc("LeakyRelu", {x4}), oc("Sigmoid", {x4}), oc("Tanh", {x4}), oc("HardSigmoid", {x4}),
        oc("HardSwish", {x4}), oc("Clip", {x4}), oc("Identity", {x4}), oc("Flatten", {x4}),
        oc("Transpose", {x4}, {{"perm", {0, 2, 3, 1}}}),
        oc("Add", {x4, x4}), oc("Sub", {x4, {5}}), oc("Mul", {x4, {3, 1, 1}}), oc("Div", {x4, x4}),
        oc("Concat", {x4, x4}, {{"axis", {1}}}),
        oc("MatMul", {{6, 7}, {7, 5}}, {}, false), oc("Gemm", {{6, 7}, {5, 7}, {5}}, {{"transB", {1}}}, false),
        oc("Conv", {x4, {4, 3, 3, 3}, {4}}, {{"pads", {1, 1, 1, 1}}}, false),
        oc("MaxPool", {x4}, {{"kernel_shape", {2, 2}}}), oc("AveragePool", {x4}, {{"kernel_shape", {3, 3}}}, false),
        oc("GlobalAveragePool", {x4}, {}, false), oc("Softmax", {x4}, {}, false),
        oc("BatchNormalization", {x4, {3}, {3}, {3}, {3}}, {}, false, true),
    };
    InferEngine engine;
    int ran = 0;
    for (const OpCase& c : cases) {
        ModelCache cache;
        auto m = load(cache, one_node_model(c).SerializeAsString(), c.op);
        ASSERT_TRUE(m) << c.op;
        std::map<std::string, Tensor> in;
        for (size_t i = 0; i < c.inputs.size(); ++i)
            in["x" + std::to_string(i)] = op_input(c.inputs[i], c.extreme, c.positive_last && i + 1 == c.inputs.size(),
                                                   static_cast<uint32_t>(17 + 31 * i + c.op.size()));
        Result<InferResult> cpu = engine.run(m, target("cpu"), in, {});
        ASSERT_TRUE(cpu.ok()) << c.op << ": " << cpu.status().message();
        Result<InferResult> dev = engine.run(m, target(backend), in, {});
        if (!dev.ok() && dev.status().code() == Code::unavailable)
            GTEST_SKIP() << backend << " cannot run inference on this machine: " << dev.status().message();
        ASSERT_TRUE(dev.ok()) << c.op << ": " << dev.status().message();
        EXPECT_EQ(dev->metrics.value("fallback_nodes", size_t{99}), 0u) << c.op << " did not run on " << backend << ": "
                                                                      << dev->metrics.dump();
        const Tensor& a = cpu->outputs.at("y");
        const Tensor& b = dev->outputs.at("y");
        ASSERT_EQ(a.shape, b.shape) << c.op;
        double largest = 0;
        for (int64_t i = 0; i < a.numel(); ++i)
            if (std::isfinite(a.data<float>()[i])) largest = std::max(largest, std::fabs(static_cast<double>(a.data<float>()[i])));
        const double slack = c.extreme ? 0.0 : 1e-6 * largest;
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < a.numel(); ++i)
            if (!agree(a.data<float>()[i], b.data<float>()[i], slack)) {
                if (first < 0) first = i;
                ++bad;
            }
        EXPECT_EQ(bad, 0) << c.op << ": " << bad << " of " << a.numel() << " elements differ; the first, " << first
                          << ": cpu " << (first >= 0 ? a.data<float>()[first] : 0.0f) << ", " << backend << " "
                          << (first >= 0 ? b.data<float>()[first] : 0.0f);
        ++ran;
    }
    std::printf("%s: %d operators agree with the CPU on extreme values\n", backend.c_str(), ran);
}

TEST(InferBackends, EveryOpenClOperatorAgreesWithTheCpuOnExtremeValues) { every_device_operator_agrees_with_the_cpu("opencl"); }

TEST(InferBackends, EveryCudaOperatorAgreesWithTheCpuOnExtremeValues) { every_device_operator_agrees_with_the_cpu("cuda"); }

// ONNX's backend tests through the engine on a device backend: the nodes it runs go to the
// device, the rest fall back to the CPU, and every supported test must pass (onnx_testdata.hpp).
// How many ran wholly on the device is printed. Skips when the backend cannot run the digits CNN
// here (no plugin, no device).
void every_supported_onnx_test_passes(const std::string& backend, const std::string& set) {
    if (!std::filesystem::is_directory(CPN_ONNX_TESTDATA)) GTEST_SKIP() << CPN_ONNX_TESTDATA << " is missing (install libonnx-testdata)";
    InferEngine engine;
    ModelCache cache(4);
    {
        auto probe = load(cache, read_all(fixture("digits-cnn.onnx")), "digits-cnn.onnx");
        ASSERT_TRUE(probe);
        Result<InferResult> r = engine.run(probe, target(backend),
                                           {{"image", read_tensor(read_all(fixture("digits-test-x.npy")), "x")}}, {});
        if (!r.ok()) GTEST_SKIP() << backend << " cannot run inference on this machine: " << r.status().message();
    }
    int on_device = 0, mixed = 0;
    auto runner = [&](const std::filesystem::path& file, const Model&, const std::map<std::string, Tensor>& inputs) {
        LoadOptions lo;
        lo.origin = file.string();
        lo.base_dir = file.parent_path().string();
        Result<std::shared_ptr<const LoadedModel>> m = cache.get(read_all(file.string()), lo);
        if (!m.ok()) throw Error(Error::invalid, m.status().message());
        InferTarget t = target(backend);
        t.device_id = m.value()->sha256.substr(0, 12);  // a plan per test model, not one shared id
        InferRunOptions ro;
        ro.allow_nonfinite_inputs = true;
        ro.check_declared_shapes = false;
        Result<InferResult> r = engine.run(m.value(), t, inputs, ro);
        if (!r.ok())
            throw Error(r.status().code() == Code::unsupported ? Error::unsupported : Error::invalid, r.status().message());
        (r->metrics.value("fallback_nodes", 0) == 0 ? on_device : mixed)++;
        return r->outputs;
    };
    testdata::Counts c = testdata::run_set(set, backend, runner);
    std::printf("onnx backend tests (%s, %s): of the %d runs, %d wholly on the device, %d with nodes on the CPU\n",
                set.c_str(), backend.c_str(), on_device + mixed, on_device, mixed);
    EXPECT_EQ(c.fail, 0) << c.fail << " test(s) failed";
}

class InferOnnxOnOpenCl : public ::testing::TestWithParam<std::string> {};
TEST_P(InferOnnxOnOpenCl, EverySupportedTestPasses) { every_supported_onnx_test_passes("opencl", GetParam()); }
INSTANTIATE_TEST_SUITE_P(Sets, InferOnnxOnOpenCl, ::testing::ValuesIn(testdata::sets()),
                         [](const auto& p) { return testdata::test_name(p.param); });

class InferOnnxOnCuda : public ::testing::TestWithParam<std::string> {};
TEST_P(InferOnnxOnCuda, EverySupportedTestPasses) { every_supported_onnx_test_passes("cuda", GetParam()); }
INSTANTIATE_TEST_SUITE_P(Sets, InferOnnxOnCuda, ::testing::ValuesIn(testdata::sets()),
                         [](const auto& p) { return testdata::test_name(p.param); });

}  // namespace
}  // namespace cpn::infer
