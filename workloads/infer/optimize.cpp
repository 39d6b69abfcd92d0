#include "optimize.hpp"

#include <cmath>
#include <map>
#include <set>

#include "executor.hpp"
#include "ops.hpp"

namespace cpn::infer {
namespace {

// Who reads each value (node indices), and the graph's outputs (never rewritten away).
struct Uses {
    std::map<std::string, std::vector<size_t>> readers;
    std::set<std::string> outputs;
    explicit Uses(const Graph& g) {
        for (size_t i = 0; i < g.nodes.size(); ++i)
            for (const std::string& in : g.nodes[i].inputs)
                if (!in.empty()) readers[in].push_back(i);
        for (const ValueInfo& o : g.outputs) outputs.insert(o.name);
    }
    // The single node reading `v`, when exactly one does and it is not a graph output.
    long only_reader(const std::string& v) const {
        if (outputs.count(v)) return -1;
        auto it = readers.find(v);
        if (it == readers.end() || it->second.size() != 1) return -1;
        return static_cast<long>(it->second[0]);
    }
};

bool is_const(const Graph& g, const std::string& v) { return v.empty() || g.initializers.count(v) != 0; }

const Tensor* constant(const Graph& g, const std::string& v) {
    auto it = g.initializers.find(v);
    return it == g.initializers.end() ? nullptr : &it->second;
}

std::string unique_name(const Graph& g, const std::string& base) {
    std::string n = base;
    for (int i = 1; g.initializers.count(n); ++i) n = base + "_" + std::to_string(i);
    return n;
}

int fold_constants(Graph& g, const OptimizeOptions& opt) {
    int folded = 0;
    std::vector<Node> kept;
    for (Node& n : g.nodes) {
        bool all_const = true;
        for (const std::string& in : n.inputs) all_const = all_const && is_const(g, in);
        if (!all_const) {
            kept.push_back(std::move(n));
            continue;
        }
        std::vector<const Tensor*> in;
        for (const std::string& name : n.inputs) in.push_back(name.empty() ? nullptr : constant(g, name));
        std::vector<Tensor> out;
        try {
            out = run_node(n, in, 1);
        } catch (const Error&) {
            // Not foldable here (it will fail, or be refused, when it runs with its real
            // context); keep the node.
            kept.push_back(std::move(n));
            continue;
        }
        bool small = true;
        for (const Tensor& t : out) small = small && t.numel() <= opt.max_folded_elements;
        if (!small) {
            kept.push_back(std::move(n));
            continue;
        }
        for (size_t i = 0; i < n.outputs.size(); ++i)
            if (!n.outputs[i].empty()) g.initializers[n.outputs[i]] = out[i];
        ++folded;
    }
    g.nodes = std::move(kept);
    return folded;
}

// Conv(X, W[, B]) -> BatchNormalization(scale, bias, mean, var): W' = W * s, B' = (B - mean) * s + bias,
// s = scale / sqrt(var + epsilon), per output channel.
int fuse_conv_bn(Graph& g) {
    int fused = 0;
    for (bool again = true; again;) {
        again = false;
        Uses u(g);
        for (size_t i = 0; i < g.nodes.size() && !again; ++i) {
            Node& conv = g.nodes[i];
            if (conv.op_type != "Conv" || conv.outputs.size() != 1 || !conv.fused_activation.empty()) continue;
            const long r = u.only_reader(conv.outputs[0]);
            if (r < 0) continue;
            Node& bn = g.nodes[static_cast<size_t>(r)];
            if (bn.op_type != "BatchNormalization" || bn.inputs.size() != 5 || bn.inputs[0] != conv.outputs[0]) continue;
            if (bn.attrs.get_int("training_mode", 0) != 0 || bn.attrs.get_int("spatial", 1) != 1) continue;
            bool extra_outputs = false;
            for (size_t k = 1; k < bn.outputs.size(); ++k) extra_outputs = extra_outputs || !bn.outputs[k].empty();
            if (extra_outputs) continue;
            const Tensor* w = conv.inputs.size() > 1 ? constant(g, conv.inputs[1]) : nullptr;
            const Tensor* b = conv.inputs.size() > 2 && !conv.inputs[2].empty() ? constant(g, conv.inputs[2]) : nullptr;
            if (w == nullptr || w->dtype != DType::f32 || w->rank() < 3) continue;
            if (conv.inputs.size() > 2 && !conv.inputs[2].empty() && b == nullptr) continue;
            const Tensor *s = constant(g, bn.inputs[1]), *beta = constant(g, bn.inputs[2]), *mean = constant(g, bn.inputs[3]),
                         *var = constant(g, bn.inputs[4]);
            const int64_t m = w->shape[0];
            auto ok = [m](const Tensor* t) { return t != nullptr && t->dtype == DType::f32 && t->numel() == m; };
            if (!ok(s) || !ok(beta) || !ok(mean) || !ok(var) || (b != nullptr && !ok(b))) continue;
            const float eps = bn.attrs.get_float("epsilon", 1e-5f);
            Tensor nw = make_tensor(DType::f32, w->shape), nb = make_tensor(DType::f32, {m});
            const int64_t per = w->numel() / m;
            for (int64_t c = 0; c < m; ++c) {
                const float k = s->data<float>()[c] / std::sqrt(var->data<float>()[c] + eps);
                for (int64_t j = 0; j < per; ++j) nw.data<float>()[c * per + j] = w->data<float>()[c * per + j] * k;
                const float bias = b != nullptr ? b->data<float>()[c] : 0.0f;
                nb.data<float>()[c] = (bias - mean->data<float>()[c]) * k + beta->data<float>()[c];
            }
            const std::string wn = unique_name(g, conv.name + "/bn_folded_W"), bnm = unique_name(g, conv.name + "/bn_folded_B");
            g.initializers[wn] = nw;
            g.initializers[bnm] = nb;
            conv.inputs.resize(3);
            conv.inputs[1] = wn;
            conv.inputs[2] = bnm;
            conv.outputs[0] = bn.outputs[0];
            conv.name += "+" + bn.name;
            conv.attrs.where = conv.where();
            g.nodes.erase(g.nodes.begin() + r);
            ++fused;
            again = true;
        }
    }
    return fused;
}

// MatMul(A, W) -> Add(., bias), W a constant [K, N], bias a constant [N], A of known rank 2:
// one Gemm(A, W, bias).
int fuse_matmul_add(Graph& g) {
    int fused = 0;
    for (bool again = true; again;) {
        again = false;
        Uses u(g);
        for (size_t i = 0; i < g.nodes.size() && !again; ++i) {
            Node& mm = g.nodes[i];
            if (mm.op_type != "MatMul" || mm.inputs.size() != 2) continue;
            const Tensor* w = constant(g, mm.inputs[1]);
            if (w == nullptr || w->rank() != 2 || w->dtype != DType::f32) continue;
            auto vi = g.value_info.find(mm.inputs[0]);
            bool rank2 = vi != g.value_info.end() && vi->second.has_shape && vi->second.dims.size() == 2;
            for (const ValueInfo& in : g.inputs)
                if (in.name == mm.inputs[0]) rank2 = in.has_shape && in.dims.size() == 2;
            if (!rank2) continue;
            const long r = u.only_reader(mm.outputs[0]);
            if (r < 0) continue;
            Node& add = g.nodes[static_cast<size_t>(r)];
            if (add.op_type != "Add" || add.inputs.size() != 2) continue;
            const std::string other = add.inputs[0] == mm.outputs[0] ? add.inputs[1] : add.inputs[0];
            const Tensor* bias = constant(g, other);
            if (bias == nullptr || bias->dtype != DType::f32 || bias->numel() != w->shape[1] || bias->rank() > 2) continue;
            if (bias->rank() == 2 && bias->shape[0] != 1) continue;
            mm.op_type = "Gemm";
            mm.opset = std::max(mm.opset, 11);
            mm.inputs.push_back(other);
            mm.outputs[0] = add.outputs[0];
            mm.name += "+" + add.name;
            mm.attrs.where = mm.where();
            g.nodes.erase(g.nodes.begin() + r);
            ++fused;
            again = true;
        }
    }
    return fused;
}

int fuse_activations(Graph& g) {
    int fused = 0;
    for (bool again = true; again;) {
        again = false;
        Uses u(g);
        for (size_t i = 0; i < g.nodes.size() && !again; ++i) {
            Node& p = g.nodes[i];
            if ((p.op_type != "Conv" && p.op_type != "Gemm" && p.op_type != "MatMul") || p.outputs.size() != 1 ||
                !p.fused_activation.empty())
                continue;
            const long r = u.only_reader(p.outputs[0]);
            if (r < 0) continue;
            Node& a = g.nodes[static_cast<size_t>(r)];
            if (a.inputs.empty() || a.inputs[0] != p.outputs[0] || a.outputs.size() != 1) continue;
            std::string act;
            float alpha = 0, beta = 0;
            if (a.op_type == "Relu" || a.op_type == "Sigmoid" || a.op_type == "Tanh" || a.op_type == "HardSwish") {
                act = a.op_type;
            } else if (a.op_type == "LeakyRelu") {
                act = a.op_type;
                alpha = a.attrs.get_float("alpha", 0.01f);
            } else if (a.op_type == "HardSigmoid") {
                act = a.op_type;
                alpha = a.attrs.get_float("alpha", 0.2f);
                beta = a.attrs.get_float("beta", 0.5f);
            } else if (a.op_type == "Clip") {
                alpha = -INFINITY;
                beta = INFINITY;
                if (a.opset < 11) {
                    alpha = a.attrs.get_float("min", -3.402823e38f);
                    beta = a.attrs.get_float("max", 3.402823e38f);
                } else {
                    const Tensor* lo = a.inputs.size() > 1 && !a.inputs[1].empty() ? constant(g, a.inputs[1]) : nullptr;
                    const Tensor* hi = a.inputs.size() > 2 && !a.inputs[2].empty() ? constant(g, a.inputs[2]) : nullptr;
                    if ((a.inputs.size() > 1 && !a.inputs[1].empty() && lo == nullptr) ||
                        (a.inputs.size() > 2 && !a.inputs[2].empty() && hi == nullptr))
                        continue;  // bounds computed at run time
                    if ((lo && (lo->dtype != DType::f32 || lo->numel() != 1)) || (hi && (hi->dtype != DType::f32 || hi->numel() != 1)))
                        continue;
                    if (lo) alpha = lo->data<float>()[0];
                    if (hi) beta = hi->data<float>()[0];
                }
                act = "Clip";
            }
            if (act.empty()) continue;
            // Only float outputs carry a fused activation.
            if (!p.out_types.empty() && p.out_types[0] != DType::f32 && p.out_types[0] != DType::undefined) continue;
            p.fused_activation = act;
            p.fused_alpha = alpha;
            p.fused_beta = beta;
            p.outputs[0] = a.outputs[0];
            p.name += "+" + a.name;
            p.attrs.where = p.where();
            g.nodes.erase(g.nodes.begin() + r);
            ++fused;
            again = true;
        }
    }
    return fused;
}

int remove_dead(Graph& g) {
    int removed = 0;
    for (bool again = true; again;) {
        again = false;
        Uses u(g);
        for (size_t i = g.nodes.size(); i-- > 0;) {
            bool used = false;
            for (const std::string& o : g.nodes[i].outputs)
                used = used || (!o.empty() && (u.readers.count(o) || u.outputs.count(o)));
            if (!used) {
                g.nodes.erase(g.nodes.begin() + static_cast<long>(i));
                ++removed;
                again = true;
            }
        }
    }
    Uses u(g);
    for (auto it = g.initializers.begin(); it != g.initializers.end();) {
        bool is_input = false;
        for (const ValueInfo& in : g.inputs) is_input = is_input || in.name == it->first;
        if (!u.readers.count(it->first) && !u.outputs.count(it->first) && !is_input) it = g.initializers.erase(it);
        else ++it;
    }
    return removed;
}

}  // namespace

std::string OptimizeReport::summary() const {
    return std::to_string(folded) + " folded, " + std::to_string(conv_bn) + " Conv+BatchNormalization, " +
           std::to_string(matmul_add) + " MatMul+Add, " + std::to_string(activations) + " activations fused, " +
           std::to_string(removed) + " dead removed";
}

OptimizeReport optimize(Graph& g, const OptimizeOptions& opt) {
    OptimizeReport r;
    if (opt.fold_constants) r.folded = fold_constants(g, opt);
    if (opt.fuse) {
        r.conv_bn = fuse_conv_bn(g);
        r.matmul_add = fuse_matmul_add(g);
        r.activations = fuse_activations(g);
    }
    r.removed = remove_dead(g);
    return r;
}

}  // namespace cpn::infer
