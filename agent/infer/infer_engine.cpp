// infer_engine.cpp: the model cache, the split of a graph into device segments, the plugin
// sessions and the run loop that passes tensors between segments.
#include "infer/infer_engine.hpp"

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/codec.hpp"
#include "cpn_infer.h"
#include "executor.hpp"
#include "plugin/plugin_library.hpp"

namespace cpn::infer {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

Code code_of(cpn_status st) {
    switch (st) {
        case CPN_E_INVALID_ARGUMENT: return Code::invalid_argument;
        case CPN_E_UNSUPPORTED: return Code::unsupported;
        case CPN_E_OUT_OF_MEMORY: return Code::out_of_memory;
        case CPN_E_CANCELLED: return Code::cancelled;
        case CPN_E_DEADLINE_EXCEEDED: return Code::deadline_exceeded;
        case CPN_E_DEVICE_LOST: return Code::device_lost;
        default: return Code::unavailable;
    }
}

Code code_of(const Error& e) {
    switch (e.kind()) {
        case Error::unsupported: return Code::unsupported;
        case Error::cancelled: return Code::cancelled;
        case Error::out_of_memory: return Code::out_of_memory;
        default: return Code::invalid_argument;
    }
}

/* One device opened through one plugin, with its inference extension. */
class DeviceSession {
public:
    ~DeviceSession() {
        if (handle_ != nullptr && lib_->backend().device_close != nullptr) lib_->backend().device_close(handle_);
    }
    static Result<std::shared_ptr<DeviceSession>> open(const InferTarget::Path& p) {
        PluginLoadError le;
        auto s = std::shared_ptr<DeviceSession>(new DeviceSession);
        s->backend = p.backend;
        s->lib_ = PluginLibrary::open(p.plugin_path, le);
        if (!s->lib_) return Status(Code::unavailable, p.backend + ": " + le.stage + ": " + le.reason);
        const cpn_backend& b = s->lib_->backend();
        s->api = b.get_proc != nullptr ? static_cast<const cpn_infer_api*>(b.get_proc(CPN_INFER_PROC)) : nullptr;
        if (s->api == nullptr || s->api->struct_size < sizeof(cpn_infer_api))
            return Status(Code::unsupported, p.backend + ": the backend has no inference extension");
        cpn_msg err{};
        cpn_probe_info pi{};
        pi.struct_size = sizeof pi;
        if (b.probe != nullptr && b.probe(&pi, &err) != CPN_OK) return Status(Code::unavailable, p.backend + ": probe: " + err.text);
        if (b.probe != nullptr && !pi.usable) return Status(Code::unavailable, p.backend + ": " + pi.reason);
        uint32_t count = 0;
        if (b.device_count != nullptr && b.device_count(&count, &err) != CPN_OK)
            return Status(Code::unavailable, p.backend + ": device_count: " + err.text);
        if (b.device_open == nullptr || b.device_open(p.index, &s->handle_, &err) != CPN_OK)
            return Status(Code::unavailable, p.backend + ": device_open(" + std::to_string(p.index) + "): " + err.text);
        return s;
    }
    bool supports(const Node& n, std::string* why) const {
        std::vector<int32_t> types;
        for (DType t : n.in_types) types.push_back(static_cast<int32_t>(t));
        char reason[256] = {};
        const bool ok = api->supports(handle_, n.op_type.c_str(), n.opset, types.data(), static_cast<uint32_t>(types.size()),
                                      reason, sizeof reason) != 0;
        if (!ok && why != nullptr) *why = reason;
        return ok;
    }
    cpn_device_handle* handle() const { return handle_; }

    std::string backend;
    const cpn_infer_api* api = nullptr;

private:
    DeviceSession() = default;
    std::shared_ptr<PluginLibrary> lib_;
    cpn_device_handle* handle_ = nullptr;
};

struct Segment {
    std::shared_ptr<DeviceSession> session;
    cpn_prepared* prepared = nullptr;
    std::vector<std::string> inputs, outputs;
    size_t nodes = 0;
    bool fallback = false;
    ~Segment() {
        if (prepared != nullptr) session->api->release(prepared);
    }
};

struct Plan {
    std::mutex run_mu;  // one run of a plan at a time (cpn_infer.h: a prepared segment is not reentrant)
    std::vector<std::unique_ptr<Segment>> segments;
    double compile_seconds = 0;
    size_t fallback_nodes = 0;
    std::vector<std::string> fallback_ops;  // "Op: reason"
    std::string backend;
};

// The nodes [b, e) of g as a graph of their own: inputs are what they read from outside, outputs
// what later nodes (or the graph) read.
Graph sub_graph(const Graph& g, size_t b, size_t e, std::vector<std::string>& ins, std::vector<std::string>& outs) {
    Graph s;
    std::set<std::string> made, read;
    for (size_t i = b; i < e; ++i) {
        for (const std::string& in : g.nodes[i].inputs)
            if (!in.empty() && !made.count(in)) read.insert(in);
        for (const std::string& o : g.nodes[i].outputs)
            if (!o.empty()) made.insert(o);
        s.nodes.push_back(g.nodes[i]);
    }
    std::set<std::string> later;
    for (size_t i = e; i < g.nodes.size(); ++i)
        for (const std::string& in : g.nodes[i].inputs) later.insert(in);
    for (const ValueInfo& o : g.outputs) later.insert(o.name);
    auto type_of = [&](const std::string& name) {
        for (const ValueInfo& vi : g.inputs)
            if (vi.name == name) return vi;
        for (const ValueInfo& vi : g.outputs)
            if (vi.name == name) return vi;
        ValueInfo vi;
        vi.name = name;
        if (auto it = g.value_info.find(name); it != g.value_info.end()) vi.dtype = it->second.dtype;
        vi.has_shape = false;
        return vi;
    };
    for (const std::string& r : read) {
        if (auto it = g.initializers.find(r); it != g.initializers.end()) {
            s.initializers[r] = it->second;
        } else {
            ValueInfo vi = type_of(r);
            vi.has_shape = false;  // checked where the model's inputs enter, not per segment
            s.inputs.push_back(vi);
            ins.push_back(r);
        }
    }
    for (size_t i = b; i < e; ++i)
        for (const std::string& o : g.nodes[i].outputs)
            if (!o.empty() && later.count(o)) {
                ValueInfo vi = type_of(o);
                vi.has_shape = false;
                s.outputs.push_back(vi);
                outs.push_back(o);
            }
    return s;
}

struct AllocState {
    std::map<std::string, Tensor>* into;
    int64_t max_elements;
    std::string error;
};

void* alloc_output(void* user, const char* name, int32_t dtype, uint32_t rank, const int64_t* dims, uint64_t bytes) {
    auto* st = static_cast<AllocState*>(user);
    try {
        const Shape shape(dims, dims + rank);
        const auto t = static_cast<DType>(dtype);
        if (!dtype_supported(t) || checked_numel(shape, st->max_elements) < 0 ||
            static_cast<uint64_t>(checked_numel(shape)) * dtype_size(t) != bytes) {
            st->error = std::string("output '") + name + "': type " + dtype_name(t) + " " + shape_str(shape) + " and " +
                        std::to_string(bytes) + " bytes disagree or exceed the limit";
            return nullptr;
        }
        Tensor& x = (*st->into)[name] = make_tensor(t, shape);
        return x.raw() != nullptr ? x.raw() : reinterpret_cast<void*>(&x);  // never NULL for an empty tensor
    } catch (const std::exception& e) {
        st->error = std::string("output '") + name + "': " + e.what();
        return nullptr;
    }
}

// A plan per model, device and precision (the segments are prepared for one precision).
std::string plan_key(const std::string& sha256, const InferTarget& t, const InferRunOptions& opt) {
    return sha256 + "@" + t.device_id + (opt.precision == "fp32" ? "" : "#" + opt.precision);
}

}  // namespace

// ---- the cache ---------------------------------------------------------------------------------

Result<std::shared_ptr<const LoadedModel>> ModelCache::get(const std::string& bytes, const LoadOptions& opt, bool* hit) {
    const std::string key = sha256_hex(bytes);
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (auto it = lru_.begin(); it != lru_.end(); ++it)
            if (it->first == key) {
                lru_.splice(lru_.begin(), lru_, it);
                if (hit) *hit = true;
                return lru_.front().second;
            }
    }
    if (hit) *hit = false;
    const auto t0 = Clock::now();
    auto m = std::make_shared<LoadedModel>();
    try {
        m->model = load_onnx(bytes, opt);
        m->original_nodes = m->model.graph.nodes.size();
        m->report = optimize(m->model.graph);
    } catch (const Error& e) {
        return Status(code_of(e), e.what());
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, opt.origin + ": out of memory loading the model");
    }
    m->sha256 = key;
    m->bytes = bytes.size();
    m->load_seconds = since(t0);
    std::lock_guard<std::mutex> lk(mu_);
    lru_.emplace_front(key, m);
    while (lru_.size() > max_) lru_.pop_back();
    return std::shared_ptr<const LoadedModel>(m);
}

size_t ModelCache::size() const {
    std::lock_guard<std::mutex> lk(mu_);
    return lru_.size();
}

InferTarget infer_target_for(const Device& d, const std::vector<Device>& all,
                             const std::function<std::string(const std::string&)>& plugin_path) {
    InferTarget t;
    t.device_id = d.id;
    auto rank = [](const std::string& b) {
        if (b == "cpu" || b == "cuda") return 0;
        if (b == "levelzero") return 1;
        if (b == "opencl") return 2;
        return 3;
    };
    std::vector<RuntimePath> rts = d.runtimes;
    std::stable_sort(rts.begin(), rts.end(), [&](const RuntimePath& a, const RuntimePath& b) { return rank(a.backend) < rank(b.backend); });
    for (const RuntimePath& rp : rts)
        if (std::string p = plugin_path(rp.backend); !p.empty()) t.paths.push_back({rp.backend, rp.index, p});
    for (const Device& c : all)
        if (c.device_class == DeviceClass::cpu)
            for (const RuntimePath& rp : c.runtimes)
                if (rp.backend == "cpu" && t.cpu.plugin_path.empty())
                    if (std::string p = plugin_path("cpu"); !p.empty()) t.cpu = {"cpu", rp.index, p};
    return t;
}

// ---- the engine --------------------------------------------------------------------------------

struct InferEngine::Impl {
    std::mutex mu;  // guards sessions and plans; runs themselves go on concurrently
    std::map<std::string, std::shared_ptr<DeviceSession>> sessions;  // backend:index
    std::map<std::string, std::shared_ptr<Plan>> plans;             // sha256 @ device
    std::list<std::string> plan_order;                              // oldest first
    static constexpr size_t kMaxPlans = 32;  // prepared (model, device) pairs kept

    void remember(const std::string& key, std::shared_ptr<Plan> p) {
        plans[key] = std::move(p);
        plan_order.push_back(key);
        // An evicted plan stays alive while a run still holds it (shared_ptr).
        while (plan_order.size() > kMaxPlans) {
            plans.erase(plan_order.front());
            plan_order.pop_front();
        }
    }

    Result<std::shared_ptr<DeviceSession>> session(const InferTarget::Path& p) {
        const std::string key = p.backend + ":" + std::to_string(p.index);
        if (auto it = sessions.find(key); it != sessions.end()) return it->second;
        Result<std::shared_ptr<DeviceSession>> s = DeviceSession::open(p);
        if (s.ok()) sessions[key] = s.value();
        return s;
    }

    Result<std::shared_ptr<Plan>> plan(const LoadedModel& m, const InferTarget& t, const InferRunOptions& opt) {
        const std::string key = plan_key(m.sha256, t, opt);
        if (auto it = plans.find(key); it != plans.end()) return it->second;
        const auto t0 = Clock::now();
        // The device by its best path that has the inference extension.
        std::shared_ptr<DeviceSession> dev;
        std::string why;
        for (const InferTarget::Path& p : t.paths) {
            Result<std::shared_ptr<DeviceSession>> s = session(p);
            if (s.ok()) {
                dev = s.value();
                break;
            }
            why += (why.empty() ? "" : "; ") + s.status().message();
        }
        if (!dev) return Status(Code::unavailable, t.device_id + ": no backend can run inference on it" + (why.empty() ? "" : ": " + why));
        std::shared_ptr<DeviceSession> cpu;
        if (dev->backend != "cpu" && !t.cpu.plugin_path.empty()) {
            Result<std::shared_ptr<DeviceSession>> s = session(t.cpu);
            if (s.ok()) cpu = s.value();
        }
        auto plan = std::make_shared<Plan>();
        plan->backend = dev->backend;
        const Graph& g = m.model.graph;
        // Which nodes run where.
        std::vector<bool> on_dev(g.nodes.size(), true);
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            std::string r;
            if (dev->supports(g.nodes[i], &r)) continue;
            if (!cpu || !cpu->supports(g.nodes[i], nullptr))
                return Status(Code::unsupported, g.nodes[i].where() + ": " + dev->backend + " cannot run it (" + r +
                                                     ") and there is no CPU backend to fall back to");
            on_dev[i] = false;
            ++plan->fallback_nodes;
            if (plan->fallback_ops.size() < 16) plan->fallback_ops.push_back(g.nodes[i].op_type + ": " + r);
        }
        const std::string options = nlohmann::json{{"threads", opt.threads},
                                                   {"max_tensor_elements", opt.max_tensor_elements},
                                                   {"precision", opt.precision}}
                                        .dump();
        for (size_t b = 0; b < g.nodes.size();) {
            size_t e = b + 1;
            while (e < g.nodes.size() && on_dev[e] == on_dev[b]) ++e;
            auto seg = std::make_unique<Segment>();
            seg->session = on_dev[b] ? dev : cpu;
            seg->fallback = !on_dev[b];
            seg->nodes = e - b;
            Graph sub = sub_graph(g, b, e, seg->inputs, seg->outputs);
            const std::string bytes = save_onnx(sub, m.model.opsets);
            cpn_msg err{};
            const cpn_status st = seg->session->api->prepare(seg->session->handle(), bytes.data(), bytes.size(), options.c_str(),
                                                             &seg->prepared, &err);
            if (st != CPN_OK) return Status(code_of(st), seg->session->backend + ": prepare: " + err.text);
            plan->segments.push_back(std::move(seg));
            b = e;
        }
        plan->compile_seconds = since(t0);
        remember(key, plan);
        return plan;
    }
};

InferEngine::InferEngine() : impl_(std::make_unique<Impl>()) {}
InferEngine::~InferEngine() = default;

Result<InferResult> InferEngine::run(const std::shared_ptr<const LoadedModel>& m, const InferTarget& target,
                                     const std::map<std::string, Tensor>& inputs, const InferRunOptions& opt) {
    const Graph& g = m->model.graph;
    // The model's inputs are checked once, here: names, types, shapes, finite values.
    try {
        Graph check;
        check.inputs = g.inputs;
        for (const ValueInfo& o : g.inputs) check.outputs.push_back(o);
        RunOptions ro;
        ro.allow_nonfinite_inputs = opt.allow_nonfinite_inputs;
        ro.check_declared_shapes = opt.check_declared_shapes;
        run_graph(check, inputs, ro);
    } catch (const Error& e) {
        return Status(code_of(e), e.what());
    }
    bool cached_plan = false;
    std::shared_ptr<Plan> held;  // keeps the plan alive for this run even if it is evicted
    {
        std::lock_guard<std::mutex> lk(impl_->mu);
        cached_plan = impl_->plans.count(plan_key(m->sha256, target, opt)) != 0;
        Result<std::shared_ptr<Plan>> pr = impl_->plan(*m, target, opt);
        if (!pr.ok()) return pr.status();
        held = pr.value();
    }
    Plan& plan = *held;
    std::lock_guard<std::mutex> run_lock(plan.run_mu);

    std::map<std::string, Tensor> env = inputs;
    for (const auto& [k, v] : g.initializers) env.emplace(k, v);
    const auto t0 = Clock::now();
    double flops = 0;
    uint64_t copy_bytes = 0, copies = 0;
    uint64_t host_nodes = 0;
    // The precision the products ran at: float16 once a device segment says so; the first
    // reason a segment gives for running float32 although float16 was asked for.
    std::string precision = "fp32", precision_note;
    // The plugins poll a flag during a segment; a watcher turns the caller's cancel into it.
    volatile int32_t cancel_flag = 0;
    std::atomic<bool> run_over{false};
    std::thread watcher;
    if (opt.cancelled)
        watcher = std::thread([&] {
            while (!run_over.load()) {
                if (opt.cancelled()) {
                    cancel_flag = 1;
                    return;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        });
    struct Join {
        std::atomic<bool>& over;
        std::thread& t;
        ~Join() {
            over.store(true);
            if (t.joinable()) t.join();
        }
    } join{run_over, watcher};
    for (const auto& seg : plan.segments) {
        if (opt.cancelled && opt.cancelled()) return Status(Code::cancelled, "cancelled");
        std::vector<cpn_tensor> in;
        for (const std::string& name : seg->inputs) {
            auto it = env.find(name);
            if (it == env.end()) return Status(Code::internal, "segment input '" + name + "' has no value");
            Tensor& t = it->second;
            in.push_back({name.c_str(), static_cast<int32_t>(t.dtype), static_cast<uint32_t>(t.rank()), t.shape.data(), t.raw(),
                          t.bytes()});
        }
        std::map<std::string, Tensor> out;
        AllocState as{&out, opt.max_tensor_elements, {}};
        cpn_run_control ctl{};
        ctl.struct_size = sizeof ctl;
        ctl.cancel = &cancel_flag;
        char result[1024] = {};
        cpn_msg err{};
        const cpn_status st = seg->session->api->run(seg->prepared, in.data(), static_cast<uint32_t>(in.size()), alloc_output, &as,
                                                     &ctl, result, sizeof result, &err);
        if (st == CPN_E_CANCELLED || cancel_flag != 0) return Status(Code::cancelled, "cancelled");
        if (st != CPN_OK) {
            std::string msg = err.text;
            if (!as.error.empty()) msg += (msg.empty() ? "" : "; ") + as.error;
            return Status(code_of(st), seg->session->backend + ": " + msg);
        }
        const nlohmann::json r = nlohmann::json::parse(result, nullptr, false);
        if (r.is_object()) {
            flops += r.value("flops", 0.0);
            host_nodes += r.value("host_nodes", uint64_t{0});
            if (r.value("precision", "") == "fp16") precision = "fp16";
            if (precision_note.empty() && r.contains("precision_note") && r["precision_note"].is_string())
                precision_note = seg->session->backend + ": " + r["precision_note"].get<std::string>();
        }
        // The copies between host and device memory: what the backend counted (a device
        // backend copies in and out itself), or, when it does not say, one per tensor crossing
        // into or out of a non-CPU segment.
        if (r.is_object() && (r.contains("copies_in") || r.contains("copies_out"))) {
            copies += r.value("copies_in", uint64_t{0}) + r.value("copies_out", uint64_t{0});
            copy_bytes += r.value("copy_bytes_in", uint64_t{0}) + r.value("copy_bytes_out", uint64_t{0});
        } else if (seg->session->backend != "cpu") {
            for (const cpn_tensor& t : in) ++copies, copy_bytes += t.bytes;
            for (const auto& [name, t] : out) ++copies, copy_bytes += t.bytes();
        }
        for (auto& [name, t] : out) env[name] = std::move(t);
        for (const std::string& name : seg->outputs)
            if (!env.count(name)) return Status(Code::internal, seg->session->backend + ": output '" + name + "' was not returned");
    }
    const double run_s = since(t0);
    InferResult res;
    for (const ValueInfo& o : g.outputs) res.outputs[o.name] = env.at(o.name);
    res.metrics = {
        {"device_id", target.device_id},
        {"backend", plan.backend},
        {"model_sha256", m->sha256},
        {"load_s", m->load_seconds},
        {"compile_s", cached_plan ? 0.0 : plan.compile_seconds},
        {"run_s", run_s},
        {"flops", flops},
        {"gflops_per_s", run_s > 0 ? flops / run_s / 1e9 : 0.0},
        {"nodes", g.nodes.size()},
        {"model_nodes", m->original_nodes},
        {"optimizations", m->report.summary()},
        {"segments", plan.segments.size()},
        {"fallback_nodes", plan.fallback_nodes},
        {"fallback_ops", plan.fallback_ops},
        {"host_nodes", host_nodes},  // nodes a device backend ran on the host inside its segments
        {"copies", copies},
        {"copy_bytes", copy_bytes},
        {"precision", precision},
    };
    if (opt.precision == "fp16" && precision != "fp16")
        res.metrics["precision_note"] = !precision_note.empty() ? precision_note
                                                                : plan.backend + " computes float32 only: fp16 was asked for";
    else if (opt.precision == "fp16" && plan.fallback_nodes > 0)
        res.metrics["precision_note"] = "the nodes that fell back to the CPU ran in float32";
    return res;
}

}  // namespace cpn::infer
