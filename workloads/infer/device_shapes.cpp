// device_shapes.cpp: see device_shapes.hpp.
#include "device_shapes.hpp"

#include <algorithm>
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
    const size_t r = xs.size() - 2;
    need(n, kernel.size() == r, "kernel_shape does not match the input's spatial rank (input " + shape_str(xs) + ")");
    auto sized = [&](const char* name, size_t count, int64_t dflt, int64_t min) {
        std::vector<int64_t> v = n.attrs.get_ints(name);
        if (v.empty()) v.assign(count, dflt);
        need(n, v.size() == count,
             std::string("attribute '") + name + "' has " + std::to_string(v.size()) + " values, expected " +
                 std::to_string(count));
        for (int64_t x : v) need(n, x >= min, std::string("attribute '") + name + "' has a value below " + std::to_string(min));
        return v;
    };
    const auto strides = sized("strides", r, 1, 1);
    const auto dil = use_dilations ? sized("dilations", r, 1, 1) : std::vector<int64_t>(r, 1);
    const auto pads = sized("pads", 2 * r, 0, 0);
    std::string ap = n.attrs.get_string("auto_pad", "NOTSET");
    if (ap.empty()) ap = "NOTSET";
    int64_t in[2] = {1, 1}, out[2] = {1, 1}, k[2] = {1, 1}, s[2] = {1, 1}, dl[2] = {1, 1}, pb[2] = {0, 0}, pe[2] = {0, 0};
    const size_t off = 2 - r;
    for (size_t i = 0; i < r; ++i) {
        const int64_t x = xs[2 + i], kk = kernel[i], ss = strides[i], dd = dil[i];
        need(n, kk >= 1, "kernel_shape must be positive");
        need(n, kk < (int64_t{1} << 24) && dd < (int64_t{1} << 24) && ss < (int64_t{1} << 30), "kernel geometry too large");
        const int64_t ek = (kk - 1) * dd + 1;
        int64_t o = 0, b = pads[i], e = pads[i + r];
        need(n, b < (int64_t{1} << 30) && e < (int64_t{1} << 30), "pads too large");
        if (ap == "NOTSET") {
            const int64_t num = x + b + e - ek;
            need(n, num >= 0, "input " + shape_str(xs) + " is smaller than the kernel extent " + std::to_string(ek));
            o = (ceil_mode ? (num + ss - 1) / ss : num / ss) + 1;
        } else if (ap == "VALID") {
            b = e = 0;
            const int64_t num = x - ek;
            need(n, num >= 0, "input " + shape_str(xs) + " is smaller than the kernel extent " + std::to_string(ek));
            o = num / ss + 1;
        } else if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
            o = (x + ss - 1) / ss;
            const int64_t total = std::max<int64_t>(0, (o - 1) * ss + ek - x);
            if (ap == "SAME_UPPER") {
                b = total / 2;
                e = total - b;
            } else {
                e = total / 2;
                b = total - e;
            }
        } else {
            return std::nullopt;
        }
        in[off + i] = x, out[off + i] = o, k[off + i] = kk, s[off + i] = ss, dl[off + i] = dd, pb[off + i] = b, pe[off + i] = e;
    }
    Geo2d g;
    g.N = xs[0], g.C = xs[1], g.H = in[0], g.W = in[1], g.OH = out[0], g.OW = out[1], g.KH = k[0], g.KW = k[1];
    g.sh = s[0], g.sw = s[1], g.dh = dl[0], g.dw = dl[1], g.phb = pb[0], g.pwb = pb[1], g.phe = pe[0], g.pwe = pe[1];
    return g;
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
