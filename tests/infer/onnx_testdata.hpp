// onnx_testdata.hpp: ONNX's own backend tests (Debian's libonnx-testdata) as a reusable
// runner: every test directory holds model.onnx and test_data_set_*/{input,output}_*.pb. A test
// is "unsupported" when the model is refused at load time as unsupported (an operator,
// attribute or type the runtime does not have), and that reason is printed; every other test
// must pass with ONNX's default tolerance (rtol 1e-3, atol 1e-7). The runner that executes a
// model is a parameter, so the same data checks the CPU operators directly (tests/infer) and
// every backend through the engine (tests/unit/infer_backends_test.cpp).
//
// Environment: CPN_ONNX_FILTER (a regex on the directory name), CPN_ONNX_VERBOSE=1 (a line per
// test), CPN_ONNX_SET (limit to one set: node, pytorch-converted, pytorch-operator, simple).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "executor.hpp"
#include "onnx_import.hpp"

namespace cpn::infer::testdata {

namespace fs = std::filesystem;

inline std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline const char* env(const char* k) {
    const char* v = std::getenv(k);
    return v != nullptr && *v ? v : nullptr;
}

// "" when equal within tolerance, else what differs.
inline std::string compare(const Tensor& got, const Tensor& want) {
    if (got.dtype != want.dtype)
        return std::string("type ") + dtype_name(got.dtype) + ", expected " + dtype_name(want.dtype);
    if (got.shape != want.shape) return "shape " + shape_str(got.shape) + ", expected " + shape_str(want.shape);
    const int64_t n = want.numel();
    const bool is_float = want.dtype == DType::f32 || want.dtype == DType::f64 || want.dtype == DType::f16 ||
                          want.dtype == DType::bf16;
    for (int64_t i = 0; i < n; ++i) {
        bool ok;
        double g = 0, w = 0;
        if (is_float) {
            g = number_at(got, i);
            w = number_at(want, i);
            if (std::isnan(w)) ok = std::isnan(g);
            else if (std::isinf(w)) ok = g == w;
            else ok = std::fabs(g - w) <= 1e-7 + 1e-3 * std::fabs(w);
        } else {
            const size_t es = dtype_size(want.dtype);
            ok = std::memcmp(static_cast<const char*>(got.raw()) + i * es, static_cast<const char*>(want.raw()) + i * es, es) == 0;
            if (!ok) {
                g = want.dtype == DType::u64 ? static_cast<double>(got.data<uint64_t>()[i]) : number_at(got, i);
                w = want.dtype == DType::u64 ? static_cast<double>(want.data<uint64_t>()[i]) : number_at(want, i);
            }
        }
        if (!ok) {
            std::ostringstream s;
            s.precision(9);
            s << "element " << i << " of " << n << ": " << g << ", expected " << w;
            return s.str();
        }
    }
    return "";
}

inline std::vector<fs::path> numbered(const fs::path& dir, const std::string& prefix) {
    std::vector<std::pair<int, fs::path>> v;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        if (n.rfind(prefix, 0) == 0 && e.path().extension() == ".pb")
            v.emplace_back(std::atoi(n.c_str() + prefix.size()), e.path());
    }
    std::sort(v.begin(), v.end());
    std::vector<fs::path> r;
    for (auto& [i, p] : v) r.push_back(p);
    return r;
}

enum class Outcome { pass, fail, unsupported };

// Runs the model (its file, and the model as loaded, for its input and output names) on the
// inputs; throws Error on failure.
using Runner = std::function<std::map<std::string, Tensor>(const fs::path& model_file, const Model& m,
                                                           const std::map<std::string, Tensor>& inputs)>;

// The runtime's own executor on the CPU operators.
inline std::map<std::string, Tensor> run_directly(const fs::path&, const Model& m, const std::map<std::string, Tensor>& inputs) {
    RunOptions ro;
    ro.threads = 2;
    ro.allow_nonfinite_inputs = true;  // some tests feed NaN and inf on purpose
    ro.check_declared_shapes = false;  // a few data sets differ from their model's declaration
    return run_graph(m.graph, inputs, ro);
}

inline Outcome run_case(const fs::path& dir, const Runner& runner, std::string& why) {
    Model m;
    try {
        m = load_onnx_file((dir / "model.onnx").string(), {});
    } catch (const Error& e) {
        why = e.what();
        return e.kind() == Error::unsupported ? Outcome::unsupported : Outcome::fail;
    }
    int sets = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (!e.is_directory() || e.path().filename().string().rfind("test_data_set_", 0) != 0) continue;
        ++sets;
        std::map<std::string, Tensor> inputs;
        const std::vector<fs::path> ins = numbered(e.path(), "input_");
        const std::vector<fs::path> outs = numbered(e.path(), "output_");
        try {
            // Inputs by position against the graph's inputs (those without an initializer).
            for (size_t i = 0; i < ins.size() && i < m.graph.inputs.size(); ++i) {
                Tensor t = load_tensor_proto(read_all(ins[i]), ins[i].string()).second;
                // ONNX's test data stores bfloat16 as its bits in uint16 (NumPy has no bfloat16).
                if (t.dtype == DType::u16 && m.graph.inputs[i].dtype == DType::bf16) t.dtype = DType::bf16;
                inputs[m.graph.inputs[i].name] = t;
            }
            std::map<std::string, Tensor> got = runner(dir / "model.onnx", m, inputs);
            if (outs.size() != m.graph.outputs.size()) {
                why = "the data set has " + std::to_string(outs.size()) + " outputs, the model " +
                      std::to_string(m.graph.outputs.size());
                return Outcome::fail;
            }
            for (size_t i = 0; i < outs.size(); ++i) {
                Tensor want = load_tensor_proto(read_all(outs[i]), outs[i].string()).second;
                const std::string& name = m.graph.outputs[i].name;
                if (want.dtype == DType::u16 && got.at(name).dtype == DType::bf16) want.dtype = DType::bf16;
                if (std::string d = compare(got.at(name), want); !d.empty()) {
                    why = e.path().filename().string() + " output '" + name + "': " + d;
                    return Outcome::fail;
                }
            }
        } catch (const Error& err) {
            why = std::string(err.kind() == Error::unsupported ? "(at run time) " : "") + err.what();
            return Outcome::fail;
        } catch (const std::exception& err) {
            why = std::string("exception: ") + err.what();
            return Outcome::fail;
        }
    }
    if (sets == 0) {
        why = "no test_data_set_*";
        return Outcome::unsupported;
    }
    return Outcome::pass;
}

struct Counts {
    int pass = 0, fail = 0, unsupported = 0;
    std::vector<std::string> failures;
};

inline Counts run_set(const std::string& set, const std::string& backend, const Runner& runner) {
    Counts c;
    const fs::path root = fs::path(CPN_ONNX_TESTDATA) / set;
    if (!fs::is_directory(root)) return c;
    if (const char* only = env("CPN_ONNX_SET"); only && set != only) return c;
    const bool verbose = env("CPN_ONNX_VERBOSE") != nullptr;
    std::regex filter(env("CPN_ONNX_FILTER") ? env("CPN_ONNX_FILTER") : ".*");
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(root))
        if (e.is_directory() && fs::exists(e.path() / "model.onnx") && std::regex_search(e.path().filename().string(), filter))
            dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const fs::path& d : dirs) {
        std::string why;
        const Outcome o = run_case(d, runner, why);
        const std::string name = d.filename().string();
        switch (o) {
            case Outcome::pass: ++c.pass; break;
            case Outcome::fail:
                ++c.fail;
                c.failures.push_back(name + ": " + why);
                break;
            case Outcome::unsupported: ++c.unsupported; break;
        }
        if (verbose)
            std::printf("%-60s %s%s%s\n", name.c_str(),
                        o == Outcome::pass ? "pass" : o == Outcome::fail ? "FAIL" : "unsupported", why.empty() ? "" : ": ",
                        why.c_str());
    }
    std::printf("onnx backend tests (%s, %s): %d passed, %d failed, %d unsupported\n", set.c_str(), backend.c_str(), c.pass,
                c.fail, c.unsupported);
    for (const std::string& f : c.failures) std::printf("  FAIL %s\n", f.c_str());
    std::fflush(stdout);
    return c;
}

// The four sets of Debian's libonnx-testdata, and a set's name as a GoogleTest parameter name.
inline const std::vector<std::string>& sets() {
    static const std::vector<std::string> s = {"node", "pytorch-converted", "pytorch-operator", "simple"};
    return s;
}
inline std::string test_name(std::string set) {
    std::replace(set.begin(), set.end(), '-', '_');
    return set;
}

}  // namespace cpn::infer::testdata
