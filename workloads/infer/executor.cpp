#include "executor.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <new>
#include <thread>

namespace cpn::infer {

std::shared_ptr<void> Pool::get(size_t bytes, size_t& capacity) {
    const size_t want = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    void* p = nullptr;
    size_t cap = 0;
    {
        std::lock_guard<std::mutex> lk(mu_);
        // Best fit among the free blocks, but not one more than twice the size (that would
        // strand a big block on a small tensor).
        auto it = free_.lower_bound(want);
        if (it != free_.end() && it->first <= 2 * want) {
            cap = it->first;
            p = it->second;
            free_.erase(it);
        }
    }
    if (p == nullptr) {
        p = std::aligned_alloc(64, want);
        if (p == nullptr) throw Error(Error::out_of_memory, "cannot allocate " + std::to_string(want) + " bytes");
        cap = want;
        std::lock_guard<std::mutex> lk(mu_);
        ++allocations_;
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        in_use_ += cap;
        peak_ = std::max(peak_, in_use_);
    }
    capacity = cap;
    std::shared_ptr<Pool> self = shared_from_this();
    return std::shared_ptr<void>(p, [self, cap](void* q) { self->put(q, cap); });
}

void Pool::put(void* p, size_t cap) {
    std::lock_guard<std::mutex> lk(mu_);
    in_use_ -= cap;
    free_.emplace(cap, p);
}

Pool::~Pool() {
    for (auto& [cap, p] : free_) std::free(p);
}

namespace {

int default_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
}

void run_one(const Node& n, OpContext& ctx) {
    const OpDef* def = find_op(n.op_type, n.opset);
    if (def == nullptr)
        fail_unsupported(n.where() + ": operator " + n.op_type + " (opset " + std::to_string(n.opset) + ") is not supported");
    try {
        def->run(ctx);
    } catch (const Error& e) {
        const std::string what = e.what();
        if (what.find("'" + n.name + "'") != std::string::npos) throw;
        throw Error(e.kind(), n.where() + ": " + what);
    } catch (const std::bad_alloc&) {
        throw Error(Error::out_of_memory, n.where() + ": out of memory");
    } catch (const std::exception& e) {
        throw Error(Error::invalid, n.where() + ": " + e.what());
    }
    for (size_t i = 0; i < n.outputs.size(); ++i)
        if (!n.outputs[i].empty() && !ctx.out[i].defined())
            fail(n.where() + ": output " + std::to_string(i) + " ('" + n.outputs[i] + "') was not produced");
}

void check_input(const ValueInfo& vi, const Tensor& t) {
    if (vi.dtype != DType::undefined && t.dtype != vi.dtype)
        fail("input '" + vi.name + "': expected " + dtype_name(vi.dtype) + ", got " + dtype_name(t.dtype));
    if (!vi.has_shape) return;
    auto declared = [&] {
        std::string s = "[";
        for (size_t i = 0; i < vi.dims.size(); ++i) {
            s += i ? ", " : "";
            s += vi.dims[i] >= 0 ? std::to_string(vi.dims[i]) : (vi.dim_names[i].empty() ? "?" : vi.dim_names[i]);
        }
        return s + "]";
    };
    if (t.shape.size() != vi.dims.size())
        fail("input '" + vi.name + "': expected shape " + declared() + ", got " + shape_str(t.shape));
    for (size_t i = 0; i < vi.dims.size(); ++i)
        if (vi.dims[i] >= 0 && t.shape[i] != vi.dims[i])
            fail("input '" + vi.name + "': expected shape " + declared() + ", got " + shape_str(t.shape) + " (dimension " +
                 std::to_string(i) + ")");
}

void check_finite(const std::string& name, const Tensor& t) {
    const int64_t n = t.numel();
    auto report = [&](int64_t i, double v) {
        fail("input '" + name + "': element " + std::to_string(i) + " is " + (std::isnan(v) ? "NaN" : "infinite") +
             " (pass only finite values, or allow them explicitly)");
    };
    if (t.dtype == DType::f32) {
        const float* p = t.data<float>();
        for (int64_t i = 0; i < n; ++i)
            if (!std::isfinite(p[i])) report(i, p[i]);
    } else if (t.dtype == DType::f64 || t.dtype == DType::f16 || t.dtype == DType::bf16) {
        for (int64_t i = 0; i < n; ++i)
            if (double v = number_at(t, i); !std::isfinite(v)) report(i, v);
    }
}

}  // namespace

std::map<std::string, Tensor> run_graph(const Graph& g, const std::map<std::string, Tensor>& inputs,
                                        const RunOptions& opt, RunStats* stats) {
    const auto t0 = std::chrono::steady_clock::now();
    auto pool = std::make_shared<Pool>();
    std::map<std::string, Tensor> env;
    for (const auto& [name, t] : g.initializers) env[name] = t;
    for (const ValueInfo& vi : g.inputs) {
        auto it = inputs.find(vi.name);
        if (it == inputs.end()) {
            if (env.count(vi.name)) continue;  // an input with a default (initializer)
            std::string names;
            for (const ValueInfo& v : g.inputs) names += (names.empty() ? "" : ", ") + v.name;
            fail("input '" + vi.name + "' is missing (the model's inputs: " + names + ")");
        }
        if (opt.check_declared_shapes) check_input(vi, it->second);
        else if (vi.dtype != DType::undefined && it->second.dtype != vi.dtype)
            fail("input '" + vi.name + "': expected " + dtype_name(vi.dtype) + ", got " + dtype_name(it->second.dtype));
        if (!opt.allow_nonfinite_inputs) check_finite(vi.name, it->second);
        env[vi.name] = it->second;
    }
    for (const auto& [name, t] : inputs) {
        (void)t;
        bool known = false;
        for (const ValueInfo& vi : g.inputs) known = known || vi.name == name;
        if (!known) {
            std::string names;
            for (const ValueInfo& v : g.inputs) names += (names.empty() ? "" : ", ") + v.name;
            fail("input '" + name + "' is not an input of the model (its inputs: " + names + ")");
        }
    }

    // Readers left per value: a value's memory goes back to the pool after its last reader.
    std::map<std::string, int> readers;
    for (const Node& n : g.nodes)
        for (const std::string& in : n.inputs)
            if (!in.empty()) ++readers[in];
    for (const ValueInfo& o : g.outputs) readers[o.name] += 1 << 20;  // never released

    const int threads = opt.threads > 0 ? opt.threads : default_threads();
    double flops = 0;
    for (size_t k = 0; k < g.nodes.size(); ++k) {
        const Node& n = g.nodes[k];
        if (opt.cancel != nullptr && opt.cancel->load()) throw Error(Error::cancelled, "cancelled before " + n.where());
        std::vector<const Tensor*> in;
        for (const std::string& name : n.inputs) {
            if (name.empty()) {
                in.push_back(nullptr);
                continue;
            }
            auto it = env.find(name);
            if (it == env.end()) fail(n.where() + ": input '" + name + "' has no value");
            in.push_back(&it->second);
        }
        std::vector<Tensor> out(n.outputs.size());
        OpContext ctx{n, in, out, pool.get(), threads, opt.max_tensor_elements};
        run_one(n, ctx);
        flops += node_flops(n, in, out);
        for (size_t i = 0; i < n.outputs.size(); ++i)
            if (!n.outputs[i].empty()) env[n.outputs[i]] = std::move(out[i]);
        for (const std::string& name : n.inputs) {
            if (name.empty()) continue;
            auto r = readers.find(name);
            if (r != readers.end() && --r->second == 0 && !g.initializers.count(name)) env.erase(name);
        }
        if (opt.on_node) opt.on_node(k + 1, g.nodes.size());
    }
    std::map<std::string, Tensor> result;
    for (const ValueInfo& o : g.outputs) {
        auto it = env.find(o.name);
        if (it == env.end()) fail("output '" + o.name + "' was not computed");
        result[o.name] = it->second;
    }
    if (stats != nullptr) {
        stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        stats->peak_bytes = pool->peak_bytes();
        stats->nodes = g.nodes.size();
        stats->flops = flops;
    }
    return result;
}

double node_flops(const Node& n, const std::vector<const Tensor*>& in, const std::vector<Tensor>& out) {
    if (out.empty() || !out[0].defined() || in.size() < 2 || in[0] == nullptr || in[1] == nullptr) return 0;
    const Tensor &a = *in[0], &w = *in[1], &y = out[0];
    if (n.op_type == "Conv" && w.rank() >= 3) {
        // per output element: C/group x kernel multiply-adds = W's elements per output channel
        return 2.0 * static_cast<double>(y.numel()) * static_cast<double>(w.numel() / std::max<int64_t>(w.shape[0], 1));
    }
    if (n.op_type == "ConvTranspose" && w.rank() >= 3) {
        // every input element meets (M/group) x kernel weights
        return 2.0 * static_cast<double>(a.numel()) * static_cast<double>(w.numel() / std::max<int64_t>(w.shape[0], 1));
    }
    if ((n.op_type == "Gemm" || n.op_type == "MatMul") && a.rank() >= 1) {
        // K is A's contracted dimension: the last one, or the first of a transposed Gemm A
        const int64_t k = n.op_type == "Gemm" && n.attrs.get_int("transA", 0) != 0 ? a.shape[0] : a.shape.back();
        return 2.0 * static_cast<double>(y.numel()) * static_cast<double>(k);
    }
    return 0;
}

std::vector<Tensor> run_node(const Node& n, const std::vector<const Tensor*>& in, int threads) {
    std::vector<Tensor> out(n.outputs.size());
    OpContext ctx{n, in, out, nullptr, threads};
    run_one(n, ctx);
    return out;
}

}  // namespace cpn::infer
