// fuzz_onnx_model: an ONNX model from outside (a task's inline model or a file) through the
// loader, the optimiser and, when its inputs are small and fully shaped, one run on the CPU.
// Contract: cpn::infer::Error (invalid, unsupported, out of memory) or a result; never another
// exception, a crash or an allocation past the limits.
#include <map>
#include <string>

#include "executor.hpp"
#include "fuzz_support.hpp"
#include "onnx_import.hpp"
#include "optimize.hpp"

using namespace cpn::infer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    cpn::fuzz::expect_no_escape("onnx_model", [&] {
        try {
            LoadOptions lo;
            lo.origin = "fuzz model";
            lo.base_dir = "/nonexistent-fuzz-dir";  // external data never resolves to a real file
            lo.allowed_dirs = {"/nonexistent-fuzz-dir"};
            lo.max_model_bytes = 4u << 20;
            lo.max_tensor_elements = int64_t{1} << 20;
            lo.max_total_weight_bytes = 16u << 20;
            Model m = load_onnx(cpn::fuzz::as_string(data, size), lo);
            optimize(m.graph);
            // One run when every input is small and fully shaped: the operators' own checks
            // (shapes, attributes, indices) then meet the mutated graph too.
            std::map<std::string, Tensor> inputs;
            int64_t total = 0;
            for (const ValueInfo& vi : m.graph.inputs) {
                if (!vi.has_shape) return;
                int64_t n = 1;
                for (int64_t d : vi.dims) {
                    if (d < 0 || d > 4096) return;
                    n *= d;
                    if (n > 4096) return;
                }
                total += n;
                if (total > 16384) return;
                if (!dtype_supported(vi.dtype) || dtype_size(vi.dtype) == 0) return;
                Tensor t = make_tensor(vi.dtype, vi.dims);  // zero-filled
                inputs[vi.name] = t;
            }
            RunOptions ro;
            ro.threads = 1;
            ro.max_tensor_elements = int64_t{1} << 22;
            (void)run_graph(m.graph, inputs, ro);
        } catch (const Error&) {
            // the documented refusal
        }
    });
    return 0;
}
