// optimize.hpp: the graph rewrites done once at load, before anything runs (docs/inference.md):
//   constant folding   nodes whose inputs are all constants run once, their outputs become
//                      initializers (shape arithmetic, Constant nodes, weight transposes);
//   Conv + BatchNormalization  the normalisation folded into the convolution's weights and bias;
//   MatMul + Add       a 2-D MatMul with a constant matrix and a constant bias becomes one Gemm;
//   + activation       Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, Tanh, HardSwish after Conv,
//                      Gemm or MatMul applied in the same pass (Node::fused_activation);
//   dead code          nodes and initializers nothing reads.
// Every rewrite keeps the results within float rounding of the unrewritten graph (tested).
#pragma once

#include <string>

#include "graph.hpp"

namespace cpn::infer {

struct OptimizeReport {
    int folded = 0;           // nodes replaced by constants
    int conv_bn = 0;          // BatchNormalizations folded into Conv
    int matmul_add = 0;       // MatMul + Add turned into Gemm
    int activations = 0;      // activations fused into their producer
    int removed = 0;          // dead nodes removed
    std::string summary() const;
};

struct OptimizeOptions {
    bool fold_constants = true;
    bool fuse = true;
    int64_t max_folded_elements = int64_t{1} << 24;  // a folded constant larger than this stays a node
};

OptimizeReport optimize(Graph& g, const OptimizeOptions& opt = {});

}  // namespace cpn::infer
