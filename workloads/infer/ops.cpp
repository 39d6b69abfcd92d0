#include "ops.hpp"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "executor.hpp"

namespace cpn::infer {
namespace {

std::map<std::string, std::vector<OpDef>>& registry() {
    static std::map<std::string, std::vector<OpDef>> r;
    return r;
}

void ensure_registered() {
    static std::once_flag once;
    std::call_once(once, [] {
        register_elementwise_ops();
        register_nn_ops();
        register_tensor_ops();
    });
}

const Attr* find_attr(const Attrs& a, const std::string& k, Attr::Kind want, const char* what) {
    auto it = a.map.find(k);
    if (it == a.map.end()) return nullptr;
    if (it->second.kind != want)
        fail(a.where + ": attribute '" + k + "' is not " + what);
    return &it->second;
}

}  // namespace

void register_op(OpDef def) { registry()[def.op_type].push_back(std::move(def)); }

const OpDef* find_op(const std::string& op_type, int opset) {
    ensure_registered();
    auto it = registry().find(op_type);
    if (it == registry().end()) return nullptr;
    for (const OpDef& d : it->second)
        if (opset >= d.since && opset <= d.until) return &d;
    return nullptr;
}

std::vector<std::string> supported_ops() {
    ensure_registered();
    std::vector<std::string> v;
    for (const auto& [k, _] : registry()) v.push_back(k);
    return v;
}

namespace {

// A persistent pool: starting threads per operator call costs tens of microseconds, more than
// many operators take. Workers pick chunks of the current job; the caller works too. An
// exception in any chunk is rethrown on the caller's thread after every chunk has finished.
class ThreadPool {
public:
    static ThreadPool& get() {
        static ThreadPool pool;
        return pool;
    }
    void run(int64_t chunks, const std::function<void(int64_t)>& f) {
        std::unique_lock<std::mutex> job_lock(job_mu_);  // one parallel job at a time (nested: inline)
        {
            std::lock_guard<std::mutex> lk(mu_);
            ensure_workers(static_cast<int>(std::min<int64_t>(chunks - 1, 64)));
            fn_ = &f;
            next_ = 0;
            total_ = chunks;
            pending_ = chunks;
            error_ = nullptr;
            ++generation_;
        }
        cv_.notify_all();
        worker_flag() = true;  // a parallel_for inside a chunk runs inline
        work();
        worker_flag() = false;
        std::unique_lock<std::mutex> lk(mu_);
        done_cv_.wait(lk, [&] { return pending_ == 0; });
        fn_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }
    static bool in_worker() { return worker_flag(); }

private:
    static bool& worker_flag() {
        static thread_local bool w = false;
        return w;
    }
    void ensure_workers(int n) {
        while (static_cast<int>(workers_.size()) < n)
            workers_.emplace_back([this] {
                worker_flag() = true;
                uint64_t seen = 0;
                for (;;) {
                    {
                        std::unique_lock<std::mutex> lk(mu_);
                        cv_.wait(lk, [&] { return stop_ || (generation_ != seen && fn_ != nullptr && next_ < total_); });
                        if (stop_) return;
                        seen = generation_;
                    }
                    work();
                }
            });
    }
    void work() {
        for (;;) {
            int64_t i;
            const std::function<void(int64_t)>* f;
            {
                std::lock_guard<std::mutex> lk(mu_);
                if (fn_ == nullptr || next_ >= total_) return;
                i = next_++;
                f = fn_;
            }
            try {
                (*f)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lk(mu_);
                if (!error_) error_ = std::current_exception();
            }
            std::lock_guard<std::mutex> lk(mu_);
            if (--pending_ == 0) done_cv_.notify_all();
        }
    }
    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
    }
    std::mutex job_mu_, mu_;
    std::condition_variable cv_, done_cv_;
    std::vector<std::thread> workers_;
    const std::function<void(int64_t)>* fn_ = nullptr;
    int64_t next_ = 0, total_ = 0, pending_ = 0;
    uint64_t generation_ = 0;
    std::exception_ptr error_;
    bool stop_ = false;
};

}  // namespace

void parallel_for(int threads, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f) {
    if (n <= 0) return;
    const int64_t chunks = std::min<int64_t>(threads, std::max<int64_t>(1, n / std::max<int64_t>(grain, 1)));
    if (chunks <= 1 || ThreadPool::in_worker()) {
        f(0, n);
        return;
    }
    const int64_t step = (n + chunks - 1) / chunks;
    ThreadPool::get().run(chunks, [&](int64_t c) {
        const int64_t b = c * step, e = std::min(n, b + step);
        if (b < e) f(b, e);
    });
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const Node& n) {
    const size_t r = std::max(a.size(), b.size());
    Shape out(r);
    for (size_t i = 0; i < r; ++i) {
        const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
        const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
        if (da != db && da != 1 && db != 1)
            fail(n.where() + ": shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

int64_t normalize_axis(int64_t axis, int64_t rank, const Node& n) {
    if (axis < -rank || axis >= rank)  // a scalar has no axis
        fail(n.where() + ": axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
    return axis < 0 ? axis + rank : axis;
}

const Tensor& OpContext::input(size_t i) const {
    if (!has_in(i)) fail(node.where() + ": input " + std::to_string(i) + " is required");
    return *in[i];
}

Tensor& OpContext::alloc_output(size_t i, DType t, const Shape& s) {
    require(i < out.size(), node.where() + ": output " + std::to_string(i) + " does not exist");
    const int64_t n = checked_numel(s, max_elements);
    if (n < 0)
        fail(node.where() + ": output shape " + shape_str(s) + " is negative or larger than the limit of " +
             std::to_string(max_elements) + " elements");
    Tensor& o = out[i];
    o.dtype = t;
    o.shape = s;
    const size_t bytes = static_cast<size_t>(n) * dtype_size(t);
    if (pool != nullptr) {
        o.mem = pool->get(bytes, o.capacity);
    } else {
        Tensor fresh = make_tensor(t, s);
        o.mem = fresh.mem;
        o.capacity = fresh.capacity;
    }
    return o;
}

Tensor& OpContext::alias_output(size_t i, const Tensor& src, const Shape& s) {
    require(i < out.size(), node.where() + ": output " + std::to_string(i) + " does not exist");
    require(checked_numel(s) == src.numel(), node.where() + ": cannot view " + shape_str(src.shape) + " as " + shape_str(s));
    Tensor& o = out[i];
    o = src;
    o.shape = s;
    return o;
}

int64_t Attrs::get_int(const std::string& k, int64_t dflt) const {
    const Attr* a = find_attr(*this, k, Attr::i, "an integer");
    return a ? a->iv : dflt;
}
int64_t Attrs::req_int(const std::string& k) const {
    const Attr* a = find_attr(*this, k, Attr::i, "an integer");
    if (!a) fail(where + ": attribute '" + k + "' is required");
    return a->iv;
}
float Attrs::get_float(const std::string& k, float dflt) const {
    const Attr* a = find_attr(*this, k, Attr::f, "a float");
    return a ? a->fv : dflt;
}
std::string Attrs::get_string(const std::string& k, const std::string& dflt) const {
    const Attr* a = find_attr(*this, k, Attr::s, "a string");
    return a ? a->sv : dflt;
}
std::vector<int64_t> Attrs::get_ints(const std::string& k, const std::vector<int64_t>& dflt) const {
    const Attr* a = find_attr(*this, k, Attr::is, "a list of integers");
    return a ? a->ints : dflt;
}
std::vector<float> Attrs::get_floats(const std::string& k, const std::vector<float>& dflt) const {
    const Attr* a = find_attr(*this, k, Attr::fs, "a list of floats");
    return a ? a->floats : dflt;
}
const Tensor* Attrs::get_tensor(const std::string& k) const {
    const Attr* a = find_attr(*this, k, Attr::t, "a tensor");
    return a ? a->tensor.get() : nullptr;
}

}  // namespace cpn::infer
