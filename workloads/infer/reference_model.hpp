// reference_model.hpp: the inference capacity reference model ("task.infer", docs/capacity.md),
// built in code so every node measures the same thing without shipping a file: a small
// image CNN (the shape of an edge classifier) with fixed pseudo-random weights:
//   input [batch, 3, 96, 96] -> Conv 3x3 (32) + BatchNorm + Relu -> Conv 3x3/2 (64) + Relu
//   -> depthwise Conv 3x3 (64) + Clip(0, 6) -> Conv 1x1 (128) + Relu -> MaxPool 2x2
//   -> Conv 3x3/2 (128) + Relu -> GlobalAveragePool -> Flatten -> Gemm (1000) -> Softmax
// About 0.18 GFLOP per image (2 per multiply-add); opset 13.
#pragma once

#include <string>

namespace cpn::infer {

constexpr int kReferenceBatch = 8;
constexpr const char* kReferenceModelName = "cpn-ref-cnn-1";
std::string reference_model_onnx();  // the serialized ModelProto (deterministic bytes)

}  // namespace cpn::infer
