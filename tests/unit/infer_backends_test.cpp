// infer_backends_test.cpp: inference through the backend plugins (InferEngine): the digits CNN
// on the CPU backend and on the OpenCL backend (accuracy, agreement of the logits, the split
// and copy metrics), and an operator the OpenCL backend lacks falling back to the CPU backend.
// The OpenCL tests skip, saying why, where the plugin or an OpenCL device is missing.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "infer/infer_engine.hpp"
#include "onnx_testdata.hpp"
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

TEST(InferBackends, DigitsCnnOnOpenClAgreesWithCpu) {
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

    auto run_on = [&](const std::string& backend, Result<InferResult>* warm) {
        Result<InferResult> first = engine.run(m, target(backend), inputs, {});
        if (first.ok()) {
            const auto t0 = std::chrono::steady_clock::now();
            *warm = engine.run(m, target(backend), inputs, {});  // prepared: the run alone
            std::printf("%s: second run %.4f s (first, with prepare: compile %.3f s, run %.4f s)\n", backend.c_str(),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                        first->metrics.value("compile_s", 0.0), first->metrics.value("run_s", 0.0));
        } else {
            *warm = first;
        }
    };
    Result<InferResult> cpu = Status(Code::internal, "not run"), ocl = Status(Code::internal, "not run");
    run_on("cpu", &cpu);
    ASSERT_TRUE(cpu.ok()) << cpu.status().message();
    run_on("opencl", &ocl);
    if (!ocl.ok() && (ocl.status().code() == Code::unavailable))
        GTEST_SKIP() << "OpenCL cannot run inference on this machine: " << ocl.status().message();
    ASSERT_TRUE(ocl.ok()) << ocl.status().message();

    const Tensor& a = cpu->outputs.at(out_name);
    const Tensor& b = ocl->outputs.at(out_name);
    ASSERT_EQ(a.dtype, DType::f32);
    ASSERT_EQ(a.shape, b.shape);
    ASSERT_EQ(a.rank(), 2u);
    const int64_t rows = a.shape[0], cols = a.shape[1];
    ASSERT_EQ(rows, labels.numel());
    double max_abs = 0, max_diff = 0;
    int64_t right_cpu = 0, right_ocl = 0;
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
        right_ocl += ib == int_at(labels, r);
    }
    const double acc_cpu = static_cast<double>(right_cpu) / rows, acc_ocl = static_cast<double>(right_ocl) / rows;
    std::printf("digits-cnn, batch %lld: accuracy cpu %.4f, opencl %.4f; max |logit| %.4f, max |diff| %.3g (relative %.3g)\n",
                static_cast<long long>(rows), acc_cpu, acc_ocl, max_abs, max_diff, max_abs > 0 ? max_diff / max_abs : max_diff);
    print_metrics("cpu", cpu->metrics);
    print_metrics("opencl", ocl->metrics);
    EXPECT_GE(acc_cpu, 0.95);
    EXPECT_GE(acc_ocl, 0.95);
    EXPECT_LT(max_diff, 1e-3 * std::max(1.0, max_abs));
    EXPECT_EQ(ocl->metrics.value("backend", ""), "opencl");
    EXPECT_EQ(ocl->metrics.value("fallback_nodes", size_t{99}), 0u) << ocl->metrics.dump();
    EXPECT_EQ(ocl->metrics.value("segments", size_t{0}), 1u);
}

/* Conv -> Erf -> Relu: the OpenCL backend has no Erf, so it runs on the CPU between two OpenCL
 * segments, and the result is still right. */
TEST(InferBackends, AnOperatorOpenClLacksFallsBackToTheCpu) {
    onnx::ModelProto mp;
    mp.set_ir_version(8);
    auto* os = mp.add_opset_import();
    os->set_domain("");
    os->set_version(13);
    auto* g = mp.mutable_graph();
    g->set_name("conv_erf_relu");
    auto add_node = [&](const char* op, std::vector<std::string> ins, const std::string& out) {
        auto* n = g->add_node();
        n->set_op_type(op);
        n->set_name(std::string(op) + "0");
        for (const std::string& i : ins) n->add_input(i);
        n->add_output(out);
        return n;
    };
    add_node("Conv", {"x", "w", "b"}, "c");
    add_node("Erf", {"c"}, "e");
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
    auto m = load(cache, mp.SerializeAsString(), "conv-erf-relu");
    ASSERT_TRUE(m);
    Tensor x = make_tensor(DType::f32, {N, 1, H, W});
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>((i * 37) % 11) / 5.0f - 1.0f;
    InferEngine engine;
    Result<InferResult> r = engine.run(m, target("opencl"), {{"x", x}}, {});
    if (!r.ok() && r.status().code() == Code::unavailable)
        GTEST_SKIP() << "OpenCL cannot run inference on this machine: " << r.status().message();
    ASSERT_TRUE(r.ok()) << r.status().message();
    print_metrics("conv-erf-relu on opencl", r->metrics);
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
                    const double want = std::max(0.0, std::erf(acc));
                    const double got = y.data<float>()[((n * M + mm) * 3 + oh) * 3 + ow];
                    worst = std::max(worst, std::fabs(want - got));
                }
    EXPECT_LT(worst, 1e-5);
}

// ONNX's backend tests through the engine on the OpenCL backend: the nodes it runs go to the
// device, the rest fall back to the CPU, and every supported test must pass (onnx_testdata.hpp).
// How many ran wholly on OpenCL is printed.
class InferOnnxOnOpenCl : public ::testing::TestWithParam<std::string> {};

TEST_P(InferOnnxOnOpenCl, EverySupportedTestPasses) {
    if (!std::filesystem::is_directory(CPN_ONNX_TESTDATA)) GTEST_SKIP() << CPN_ONNX_TESTDATA << " is missing (install libonnx-testdata)";
    InferEngine engine;
    ModelCache cache(4);
    {
        auto probe = load(cache, read_all(fixture("digits-cnn.onnx")), "digits-cnn.onnx");
        ASSERT_TRUE(probe);
        Result<InferResult> r = engine.run(probe, target("opencl"),
                                           {{"image", read_tensor(read_all(fixture("digits-test-x.npy")), "x")}}, {});
        if (!r.ok()) GTEST_SKIP() << "OpenCL cannot run inference on this machine: " << r.status().message();
    }
    int on_device = 0, mixed = 0;
    auto runner = [&](const std::filesystem::path& file, const Model&, const std::map<std::string, Tensor>& inputs) {
        LoadOptions lo;
        lo.origin = file.string();
        lo.base_dir = file.parent_path().string();
        Result<std::shared_ptr<const LoadedModel>> m = cache.get(read_all(file.string()), lo);
        if (!m.ok()) throw Error(Error::invalid, m.status().message());
        InferTarget t = target("opencl");
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
    testdata::Counts c = testdata::run_set(GetParam(), "opencl", runner);
    std::printf("onnx backend tests (%s, opencl): of the %d runs, %d wholly on OpenCL, %d with nodes on the CPU\n",
                GetParam().c_str(), on_device + mixed, on_device, mixed);
    EXPECT_EQ(c.fail, 0) << c.fail << " test(s) failed";
}

INSTANTIATE_TEST_SUITE_P(Sets, InferOnnxOnOpenCl, ::testing::ValuesIn(testdata::sets()),
                         [](const auto& p) { return testdata::test_name(p.param); });

}  // namespace
}  // namespace cpn::infer
