// attr_helpers.hpp: node attributes for tests that build a Node by hand (conv_test.cpp,
// op_sweep_test.cpp), as the ONNX importer would fill them.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "graph.hpp"

namespace cpn::infer::test {

inline Attr int_attr(int64_t v) {
    Attr a;
    a.kind = Attr::i;
    a.iv = v;
    return a;
}

inline Attr ints_attr(std::vector<int64_t> v) {
    Attr a;
    a.kind = Attr::is;
    a.ints = std::move(v);
    return a;
}

inline Attr float_attr(float v) {
    Attr a;
    a.kind = Attr::f;
    a.fv = v;
    return a;
}

}  // namespace cpn::infer::test
