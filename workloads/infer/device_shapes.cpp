// device_shapes.cpp: see device_shapes.hpp.
#include "device_shapes.hpp"

#include <set>
#include <string>

#include "ops.hpp"

namespace cpn::infer {
namespace {

void need(const Node& n, bool ok, const std::string& what) {
    if (!ok) fail(n.where() + ": " + what);
}

int64_t prod(const Shape& s, size_t b, size_t e) {
    int64_t p = 1;
    for (size_t i = b; i < e; ++i) p *= s[i];
    return p;
}

}  // namespace

std::optional<Geo2d> geo_2d(const Node& n, const Shape& xs, const std::vector<int64_t>& kernel, bool ceil_mode,
                            bool use_dilations) {
    if (xs.size() != 3 && xs.size() != 4) return std::nullopt;
    const Geo g = make_geo(n, xs, kernel, ceil_mode, use_dilations);  // the CPU operators' rules
    // The device kernels index with 32-bit geometry.
    for (int i = 1; i < 3; ++i) {
        need(n, g.k[i] < (int64_t{1} << 24) && g.d[i] < (int64_t{1} << 24) && g.s[i] < (int64_t{1} << 30),
             "kernel geometry too large");
        need(n, g.pb[i] < (int64_t{1} << 30) && g.pe[i] < (int64_t{1} << 30), "pads too large");
    }
    Geo2d r;
    r.N = xs[0], r.C = xs[1], r.H = g.in[1], r.W = g.in[2], r.OH = g.out[1], r.OW = g.out[2], r.KH = g.k[1], r.KW = g.k[2];
    r.sh = g.s[1], r.sw = g.s[2], r.dh = g.d[1], r.dw = g.d[2], r.phb = g.pb[1], r.pwb = g.pb[2], r.phe = g.pe[1], r.pwe = g.pe[2];
    return r;
}

std::optional<Shape> view_shape(const Node& n, const Shape& x, const ViewInputs& in) {
    const std::string& op = n.op_type;
    const int64_t r = static_cast<int64_t>(x.size());
    const int64_t numel = prod(x, 0, x.size());
    Shape s;
    if (op == "Identity") {
        s = x;
    } else if (op == "Dropout") {
        if (in.wants_mask || in.has(1) || in.has(2)) return std::nullopt;  // a mask or training flags: the CPU operator
        s = x;
    } else if (op == "Flatten") {
        int64_t axis = n.attrs.get_int("axis", 1);
        if (axis < 0) axis += r;
        need(n, axis >= 0 && axis <= r,
             "axis " + std::to_string(n.attrs.get_int("axis", 1)) + " is out of range for rank " + std::to_string(r));
        s = {prod(x, 0, static_cast<size_t>(axis)), prod(x, static_cast<size_t>(axis), x.size())};
    } else if (op == "Reshape") {
        std::vector<int64_t> want = n.opset < 5 ? n.attrs.get_ints("shape") : in.ints(1);
        const bool allowzero = n.attrs.get_int("allowzero", 0) != 0;
        int64_t known = 1, neg = -1;
        s.resize(want.size());
        for (size_t i = 0; i < want.size(); ++i) {
            int64_t v = want[i];
            if (v == 0 && !allowzero) {
                need(n, static_cast<int64_t>(i) < r, "shape " + shape_str(want) + " copies a dimension the input lacks");
                v = x[i];
            }
            if (v == -1) {
                need(n, neg < 0, "shape " + shape_str(want) + " has more than one -1");
                neg = static_cast<int64_t>(i);
                continue;
            }
            need(n, v >= 0, "shape " + shape_str(want) + " has a negative dimension");
            s[i] = v;
            known = v == 0 ? 0 : known * v;
            need(n, known <= numel || numel == 0, "shape " + shape_str(want) + " does not fit " + shape_str(x));
        }
        if (neg >= 0) {
            need(n, known != 0 && numel % known == 0, "shape " + shape_str(want) + " cannot hold the elements of " + shape_str(x));
            s[static_cast<size_t>(neg)] = numel / known;
        }
    } else if (op == "Squeeze" || op == "Unsqueeze") {
        const std::vector<int64_t> axes =
            n.opset < 13 ? n.attrs.get_ints("axes") : (in.has(1) ? in.ints(1) : std::vector<int64_t>{});
        if (op == "Squeeze") {
            std::set<int64_t> drop;
            for (int64_t a : axes) {
                const int64_t ax = normalize_axis(a, r, n);
                need(n, x[static_cast<size_t>(ax)] == 1, "axis " + std::to_string(a) + " of " + shape_str(x) + " is not 1");
                drop.insert(ax);
            }
            for (int64_t i = 0; i < r; ++i)
                if (axes.empty() ? x[static_cast<size_t>(i)] != 1 : !drop.count(i)) s.push_back(x[static_cast<size_t>(i)]);
        } else {
            const int64_t outr = r + static_cast<int64_t>(axes.size());
            std::set<int64_t> add;
            for (int64_t a : axes) need(n, add.insert(normalize_axis(a, outr, n)).second, "axes " + shape_str(axes) + " repeat an axis");
            size_t k = 0;
            for (int64_t i = 0; i < outr; ++i) s.push_back(add.count(i) ? 1 : x[k++]);
        }
    } else {
        return std::nullopt;
    }
    return s;
}

Shape concat_shape(const Node& n, const std::vector<std::pair<size_t, Shape>>& inputs, int64_t& axis) {
    need(n, !inputs.empty(), "Concat needs at least one input");
    const Shape& first = inputs[0].second;
    const int64_t r = static_cast<int64_t>(first.size());
    need(n, r >= 1, "Concat of scalars");
    axis = normalize_axis(n.attrs.req_int("axis"), r, n);
    Shape ys = first;
    ys[static_cast<size_t>(axis)] = 0;
    for (const auto& [i, s] : inputs) {
        need(n, static_cast<int64_t>(s.size()) == r,
             "input " + std::to_string(i) + " " + shape_str(s) + " differs in rank from " + shape_str(first));
        for (int64_t k = 0; k < r; ++k)
            if (k != axis)
                need(n, s[static_cast<size_t>(k)] == first[static_cast<size_t>(k)],
                     "input " + std::to_string(i) + " " + shape_str(s) + " does not match " + shape_str(first));
        ys[static_cast<size_t>(axis)] += s[static_cast<size_t>(axis)];
    }
    return ys;
}

}  // namespace cpn::infer
