// onednn.cpp: float32 convolution and sgemm through oneDNN's C API (onednn.hpp).
//
// oneDNN runs a convolution fastest on its own layouts (NHWC or nChw16c, its choice), while the
// runtime's tensors are plain NCHW: each call reorders the input in and the output back (which
// only thick layers repay: kDnnlMinFlopsPerByteMoved), and the weights once per weight tensor
// (cached while the tensor lives). Bias and the fused activation run inside the convolution as
// oneDNN post-ops.
//
// Primitives are cached by geometry, activation and thread count (creating one JIT-compiles its
// kernel). Scratch memory is passed by the caller ("user" scratchpad mode) from per-thread
// buffers, so concurrent runs of one primitive from several threads never share it.
#include "onednn.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#if __has_include(<oneapi/dnnl/dnnl.h>)
#include <oneapi/dnnl/dnnl.h>
#define CPN_HAVE_DNNL 1
#else
#define CPN_HAVE_DNNL 0
#endif

namespace cpn::infer {

namespace {
std::atomic<bool> g_dnnl_on{true};
}  // namespace

void set_dnnl(bool on) { g_dnnl_on.store(on); }

#if CPN_HAVE_DNNL
namespace {

// The entry points used, resolved from libdnnl.so.2 (their types from the header).
#define CPN_DNNL_FUNCS(X)                                                                                          \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_destroy) X(dnnl_stream_wait)                       \
    X(dnnl_memory_desc_init_by_tag) X(dnnl_memory_desc_equal) X(dnnl_memory_desc_get_size)                       \
    X(dnnl_memory_create) X(dnnl_memory_destroy) X(dnnl_dilated_convolution_forward_desc_init)                   \
    X(dnnl_post_ops_create) X(dnnl_post_ops_append_eltwise) X(dnnl_post_ops_destroy) X(dnnl_primitive_attr_create) \
    X(dnnl_primitive_attr_set_post_ops) X(dnnl_primitive_attr_set_scratchpad_mode) X(dnnl_primitive_attr_destroy) \
    X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_query_md) X(dnnl_primitive_desc_destroy)                 \
    X(dnnl_reorder_primitive_desc_create) X(dnnl_primitive_create) X(dnnl_primitive_execute)                     \
    X(dnnl_primitive_destroy) X(dnnl_version) X(dnnl_sgemm)

struct Lib {
#define CPN_DNNL_MEMBER(f) decltype(&::f) f = nullptr;
    CPN_DNNL_FUNCS(CPN_DNNL_MEMBER)
#undef CPN_DNNL_MEMBER
    // oneDNN's OpenMP runtime (libgomp, loaded with it): the calling thread's team size.
    void (*omp_set_num_threads)(int) = nullptr;
    dnnl_engine_t engine = nullptr;
    bool ok = false;
    std::string status;
};

// Opened once, on first use, from the thread that runs the first convolution: OpenMP's worker
// threads start from there and inherit its signal mask (the daemon blocks SIGTERM/SIGINT in
// its workers; see the OpenBLAS note in ops_nn.cpp). CPN_INFER_DNNL=off leaves it closed.
const Lib& lib() {
    static const Lib l = [] {
        Lib r;
        if (const char* e = std::getenv("CPN_INFER_DNNL"); e != nullptr && std::strcmp(e, "off") == 0) {
            r.status = "oneDNN switched off (CPN_INFER_DNNL=off)";
            return r;
        }
        void* h = ::dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr) {
            const char* err = ::dlerror();
            r.status = std::string("libdnnl.so.2 could not be opened: ") + (err != nullptr ? err : "unknown error");
            return r;
        }
        std::string missing;
#define CPN_DNNL_RESOLVE(f)                                                         \
    r.f = reinterpret_cast<decltype(&::f)>(::dlsym(h, #f));                         \
    if (r.f == nullptr) missing += std::string(missing.empty() ? "" : ", ") + #f;
        CPN_DNNL_FUNCS(CPN_DNNL_RESOLVE)
#undef CPN_DNNL_RESOLVE
        r.omp_set_num_threads = reinterpret_cast<void (*)(int)>(::dlsym(h, "omp_set_num_threads"));
        if (!missing.empty()) {
            r = Lib{};
            r.status = "libdnnl.so.2 lacks " + missing;
            return r;
        }
        if (r.dnnl_engine_create(&r.engine, dnnl_cpu, 0) != dnnl_success) {
            r = Lib{};
            r.status = "oneDNN has no CPU engine";
            return r;
        }
        const dnnl_version_t* v = r.dnnl_version();
        r.status = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
                   " (libdnnl.so.2)";
        r.ok = true;
        return r;
    }();
    return l;
}

// A primitive and the scratch memory it wants.
struct Prim {
    dnnl_primitive_t p = nullptr;
    size_t scratch = 0;
};

// Creates the primitive of `pd` (which it destroys); throws nothing, null on failure.
Prim make_prim(dnnl_primitive_desc_t pd) {
    const Lib& L = lib();
    Prim r;
    if (const dnnl_memory_desc_t* s = L.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0); s != nullptr)
        r.scratch = L.dnnl_memory_desc_get_size(s);
    if (L.dnnl_primitive_create(&r.p, pd) != dnnl_success) r.p = nullptr;
    L.dnnl_primitive_desc_destroy(pd);
    return r;
}

// An attribute with the user scratchpad mode and, optionally, the post-ops.
struct AttrHolder {
    dnnl_primitive_attr_t a = nullptr;
    AttrHolder() {
        lib().dnnl_primitive_attr_create(&a);
        lib().dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user);
    }
    ~AttrHolder() { lib().dnnl_primitive_attr_destroy(a); }
    AttrHolder(const AttrHolder&) = delete;
    AttrHolder& operator=(const AttrHolder&) = delete;
};

// A reorder from `from` to `to`, or an empty Prim when the layouts are the same.
Prim make_reorder(const dnnl_memory_desc_t& from, const dnnl_memory_desc_t& to, bool& failed) {
    const Lib& L = lib();
    if (L.dnnl_memory_desc_equal(&from, &to) != 0) return {};
    AttrHolder attr;
    dnnl_primitive_desc_t pd = nullptr;
    if (L.dnnl_reorder_primitive_desc_create(&pd, &from, L.engine, &to, L.engine, attr.a) != dnnl_success) {
        failed = true;
        return {};
    }
    Prim r = make_prim(pd);
    failed = failed || r.p == nullptr;
    return r;
}

// A weight tensor's copy in the convolution's layout, valid while that tensor's memory lives
// (`owner` expires with it; the runtime never writes a tensor after producing it).
struct Weights {
    std::weak_ptr<void> owner;
    const void* data = nullptr;
    std::shared_ptr<void> copy;
};

struct Conv {
    Prim conv, src_in, dst_out, w_in;
    dnnl_memory_desc_t user_src{}, user_w{}, user_dst{}, bias{}, src{}, w{}, dst{};
    size_t src_bytes = 0, dst_bytes = 0, w_bytes = 0;
    std::mutex mu;  // guards `weights`
    std::vector<Weights> weights;

    Conv() = default;
    Conv(const Conv&) = delete;
    Conv& operator=(const Conv&) = delete;
    ~Conv() {
        for (Prim* p : {&conv, &src_in, &dst_out, &w_in})
            if (p->p != nullptr) lib().dnnl_primitive_destroy(p->p);
    }
};

std::string conv_key(const ConvDims& c, const Act& act, bool has_bias, int threads) {
    std::string k;
    auto add = [&](int64_t v) { k += std::to_string(v) + ","; };
    for (int64_t v : {int64_t{c.r}, c.N, c.C, c.M, c.G, int64_t{act.k}, int64_t{has_bias}, int64_t{threads}}) add(v);
    for (int i = 0; i < c.r; ++i)
        for (int64_t v : {c.in[i], c.out[i], c.k[i], c.s[i], c.d[i], c.pb[i], c.pe[i]}) add(v);
    k += std::to_string(std::bit_cast<uint32_t>(act.a)) + "," + std::to_string(std::bit_cast<uint32_t>(act.b));
    return k;
}

// Builds the primitives of one convolution; null when oneDNN refuses it.
std::shared_ptr<Conv> build_conv(const ConvDims& c, const Act& act, bool has_bias) {
    const Lib& L = lib();
    const int nd = c.r == 3 ? 5 : 4;  // 1-D runs as 2-D with height 1
    const int sp = nd - 2;
    auto spatial = [&](const int64_t (&v)[3], int64_t one, dnnl_dim_t* out) {
        for (int i = 0; i < sp; ++i) out[i] = one;
        for (int i = 0; i < c.r; ++i) out[sp - c.r + i] = v[i];
    };
    dnnl_dims_t src_d{c.N, c.C}, dst_d{c.N, c.M}, w_d{}, bias_d{c.M}, strides{}, dil{}, pad_l{}, pad_r{};
    spatial(c.in, 1, src_d + 2);
    spatial(c.out, 1, dst_d + 2);
    spatial(c.s, 1, strides);
    int64_t d0[3];
    for (int i = 0; i < 3; ++i) d0[i] = c.d[i] - 1;  // oneDNN counts dilation from 0
    spatial(d0, 0, dil);
    spatial(c.pb, 0, pad_l);
    spatial(c.pe, 0, pad_r);
    const bool grouped = c.G > 1;
    int wnd = nd;
    if (grouped) {
        w_d[0] = c.G;
        w_d[1] = c.M / c.G;
        w_d[2] = c.C / c.G;
        spatial(c.k, 1, w_d + 3);
        wnd = nd + 1;
    } else {
        w_d[0] = c.M;
        w_d[1] = c.C;
        spatial(c.k, 1, w_d + 2);
    }
    auto plain = [](int n) {
        return n == 4 ? dnnl_abcd : n == 5 ? dnnl_abcde : dnnl_abcdef;
    };

    auto conv = std::make_shared<Conv>();
    dnnl_memory_desc_t src_any, w_any, dst_any;
    if (L.dnnl_memory_desc_init_by_tag(&conv->user_src, nd, src_d, dnnl_f32, plain(nd)) != dnnl_success ||
        L.dnnl_memory_desc_init_by_tag(&conv->user_dst, nd, dst_d, dnnl_f32, plain(nd)) != dnnl_success ||
        L.dnnl_memory_desc_init_by_tag(&conv->user_w, wnd, w_d, dnnl_f32, plain(wnd)) != dnnl_success ||
        L.dnnl_memory_desc_init_by_tag(&conv->bias, 1, bias_d, dnnl_f32, dnnl_a) != dnnl_success ||
        L.dnnl_memory_desc_init_by_tag(&src_any, nd, src_d, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        L.dnnl_memory_desc_init_by_tag(&dst_any, nd, dst_d, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        L.dnnl_memory_desc_init_by_tag(&w_any, wnd, w_d, dnnl_f32, dnnl_format_tag_any) != dnnl_success)
        return nullptr;
    dnnl_convolution_desc_t cd;
    if (L.dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &src_any,
                                                     &w_any, has_bias ? &conv->bias : nullptr, &dst_any, strides, dil,
                                                     pad_l, pad_r) != dnnl_success)
        return nullptr;

    AttrHolder attr;
    if (act.k != Act::none) {
        dnnl_alg_kind_t alg;
        float a = 0, b = 0;
        switch (act.k) {
            case Act::relu: alg = dnnl_eltwise_relu; break;
            case Act::leaky: alg = dnnl_eltwise_relu, a = act.a; break;
            case Act::clip: alg = dnnl_eltwise_clip, a = act.a, b = act.b; break;
            case Act::sigmoid: alg = dnnl_eltwise_logistic; break;
            case Act::tanh_: alg = dnnl_eltwise_tanh; break;
            case Act::hardswish: alg = dnnl_eltwise_hardswish; break;
            default: return nullptr;  // HardSigmoid: not an eltwise kind of oneDNN 2.x
        }
        dnnl_post_ops_t po = nullptr;
        L.dnnl_post_ops_create(&po);
        const bool ok = L.dnnl_post_ops_append_eltwise(po, 1.0f, alg, a, b) == dnnl_success &&
                        L.dnnl_primitive_attr_set_post_ops(attr.a, po) == dnnl_success;
        L.dnnl_post_ops_destroy(po);
        if (!ok) return nullptr;
    }
    dnnl_primitive_desc_t pd = nullptr;
    if (L.dnnl_primitive_desc_create(&pd, &cd, attr.a, L.engine, nullptr) != dnnl_success) return nullptr;
    conv->src = *L.dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    conv->w = *L.dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    conv->dst = *L.dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    conv->conv = make_prim(pd);
    bool failed = conv->conv.p == nullptr;
    conv->src_in = make_reorder(conv->user_src, conv->src, failed);
    conv->dst_out = make_reorder(conv->dst, conv->user_dst, failed);
    conv->w_in = make_reorder(conv->user_w, conv->w, failed);
    if (failed) return nullptr;
    conv->src_bytes = L.dnnl_memory_desc_get_size(&conv->src);
    conv->dst_bytes = L.dnnl_memory_desc_get_size(&conv->dst);
    conv->w_bytes = L.dnnl_memory_desc_get_size(&conv->w);
    return conv;
}

// The cached primitives of a convolution (null: oneDNN refused it, also cached). Bounded: a
// process that sees very many geometries starts the cache over (users hold their own
// references, so nothing in use is destroyed).
std::shared_ptr<Conv> find_conv(const ConvDims& c, const Act& act, bool has_bias, int threads) {
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<Conv>> cache;
    const std::string key = conv_key(c, act, has_bias, threads);
    std::lock_guard<std::mutex> lk(mu);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    if (cache.size() >= 1024) cache.clear();
    // A new geometry usually means a new model: drop the weight copies of models gone since
    // (each convolution also drops its own when it next runs).
    for (auto& [k, cv] : cache) {
        if (cv == nullptr) continue;
        std::lock_guard<std::mutex> wl(cv->mu);
        std::erase_if(cv->weights, [](const Weights& w) { return w.owner.expired(); });
    }
    auto conv = build_conv(c, act, has_bias);
    cache.emplace(key, conv);
    return conv;
}

void free_aligned(void* p) { std::free(p); }

std::shared_ptr<void> alloc_aligned(size_t bytes) {
    void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 64) + 63) / 64 * 64);
    if (p == nullptr) throw std::bad_alloc();
    return std::shared_ptr<void>(p, free_aligned);
}

// Grow-only per-thread buffers (the reordered input and output, the scratchpad): a network's
// convolutions reuse them instead of mapping fresh pages each call.
struct ThreadBuffers {
    std::shared_ptr<void> mem[3];
    size_t cap[3] = {0, 0, 0};
    void* get(int i, size_t bytes) {
        if (bytes == 0) return nullptr;
        if (cap[i] < bytes) {
            mem[i].reset();
            mem[i] = alloc_aligned(bytes);
            cap[i] = bytes;
        }
        return mem[i].get();
    }
};

// A memory object over caller-owned data, destroyed with the holder.
struct Mem {
    dnnl_memory_t m = nullptr;
    Mem(const dnnl_memory_desc_t& md, const void* data) {
        if (lib().dnnl_memory_create(&m, &md, lib().engine, const_cast<void*>(data)) != dnnl_success) m = nullptr;
    }
    ~Mem() {
        if (m != nullptr) lib().dnnl_memory_destroy(m);
    }
    Mem(const Mem&) = delete;
    Mem& operator=(const Mem&) = delete;
};

// One CPU stream per thread (a stream is not meant to be shared between threads).
dnnl_stream_t thread_stream() {
    struct Holder {
        dnnl_stream_t s = nullptr;
        ~Holder() {
            if (s != nullptr) lib().dnnl_stream_destroy(s);
        }
    };
    thread_local Holder h;
    if (h.s == nullptr && lib().dnnl_stream_create(&h.s, lib().engine, dnnl_stream_default_flags) != dnnl_success)
        h.s = nullptr;
    return h.s;
}

// Runs `p` with (arg, data) pairs plus its scratchpad; false on failure.
bool execute(const Prim& p, dnnl_stream_t s, std::initializer_list<std::pair<int, std::pair<const dnnl_memory_desc_t*, const void*>>> args,
             ThreadBuffers& bufs) {
    std::vector<std::unique_ptr<Mem>> mems;
    std::vector<dnnl_exec_arg_t> ea;
    for (const auto& [arg, md_data] : args) {
        mems.push_back(std::make_unique<Mem>(*md_data.first, md_data.second));
        if (mems.back()->m == nullptr) return false;
        ea.push_back({arg, mems.back()->m});
    }
    dnnl_memory_desc_t sd;
    if (p.scratch > 0) {
        const dnnl_dims_t d{static_cast<dnnl_dim_t>(p.scratch)};
        if (lib().dnnl_memory_desc_init_by_tag(&sd, 1, d, dnnl_u8, dnnl_a) != dnnl_success) return false;
        mems.push_back(std::make_unique<Mem>(sd, bufs.get(2, p.scratch)));
        if (mems.back()->m == nullptr) return false;
        ea.push_back({DNNL_ARG_SCRATCHPAD, mems.back()->m});
    }
    return lib().dnnl_primitive_execute(p.p, s, static_cast<int>(ea.size()), ea.data()) == dnnl_success &&
           lib().dnnl_stream_wait(s) == dnnl_success;
}

// The weights in the convolution's layout: W itself when that is the layout, else the cached
// copy for W's memory (made now if there is none).
const void* conv_weights(Conv& cv, const Tensor& W, dnnl_stream_t s, ThreadBuffers& bufs) {
    if (cv.w_in.p == nullptr) return W.raw();
    std::lock_guard<std::mutex> lk(cv.mu);
    std::erase_if(cv.weights, [](const Weights& w) { return w.owner.expired(); });
    for (const Weights& w : cv.weights)
        if (w.data == W.raw() && !w.owner.owner_before(W.mem) && !W.mem.owner_before(w.owner)) return w.copy.get();
    auto copy = alloc_aligned(cv.w_bytes);
    if (!execute(cv.w_in, s, {{DNNL_ARG_FROM, {&cv.user_w, W.raw()}}, {DNNL_ARG_TO, {&cv.w, copy.get()}}}, bufs))
        return nullptr;
    cv.weights.push_back({W.mem, W.raw(), copy});
    return copy.get();
}

// The convolution's arithmetic per byte its layout reorders would move: the input and the
// output, each read and written once. Known before any primitive exists, so a thin layer
// costs no kernel compilation.
double flops_per_byte_moved(const ConvDims& c) {
    double flops = 2.0 * static_cast<double>(c.N * c.M * (c.C / c.G));
    double in = static_cast<double>(c.N * c.C), out = static_cast<double>(c.N * c.M);
    for (int i = 0; i < c.r; ++i) {
        flops *= static_cast<double>(c.out[i] * c.k[i]);
        in *= static_cast<double>(c.in[i]);
        out *= static_cast<double>(c.out[i]);
    }
    const double moved = 2.0 * sizeof(float) * (in + out);
    return moved > 0 ? flops / moved : 0;
}

// Sets the calling thread's OpenMP team size for the next oneDNN call.
void use_threads(int threads) {
    if (lib().omp_set_num_threads != nullptr) lib().omp_set_num_threads(std::max(1, threads));
}

}  // namespace

bool dnnl_conv_f32(const ConvDims& c, const Act& act, const float* x, const Tensor& W, const float* bias, float* y,
                   int threads, double min_flops_per_byte_moved) {
    if (!g_dnnl_on.load()) return false;
    const Lib& L = lib();
    if (!L.ok || c.r < 1 || c.r > 3) return false;
    if (min_flops_per_byte_moved > 0 && flops_per_byte_moved(c) < min_flops_per_byte_moved) return false;
    threads = std::max(1, threads);
    use_threads(threads);
    auto cv = find_conv(c, act, bias != nullptr, threads);
    if (cv == nullptr) return false;
    dnnl_stream_t s = thread_stream();
    if (s == nullptr) return false;
    thread_local ThreadBuffers bufs;
    const void* w = conv_weights(*cv, W, s, bufs);
    if (w == nullptr) return false;
    const void* src = x;
    if (cv->src_in.p != nullptr) {
        void* blk = bufs.get(0, cv->src_bytes);
        if (!execute(cv->src_in, s, {{DNNL_ARG_FROM, {&cv->user_src, x}}, {DNNL_ARG_TO, {&cv->src, blk}}}, bufs))
            return false;
        src = blk;
    }
    void* dst = cv->dst_out.p != nullptr ? bufs.get(1, cv->dst_bytes) : y;
    bool ok = bias != nullptr
                  ? execute(cv->conv, s,
                            {{DNNL_ARG_SRC, {&cv->src, src}}, {DNNL_ARG_WEIGHTS, {&cv->w, w}},
                             {DNNL_ARG_BIAS, {&cv->bias, bias}}, {DNNL_ARG_DST, {&cv->dst, dst}}},
                            bufs)
                  : execute(cv->conv, s,
                            {{DNNL_ARG_SRC, {&cv->src, src}}, {DNNL_ARG_WEIGHTS, {&cv->w, w}}, {DNNL_ARG_DST, {&cv->dst, dst}}},
                            bufs);
    if (ok && cv->dst_out.p != nullptr)
        ok = execute(cv->dst_out, s, {{DNNL_ARG_FROM, {&cv->dst, dst}}, {DNNL_ARG_TO, {&cv->user_dst, y}}}, bufs);
    return ok;
}

bool dnnl_sgemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc, int threads) {
    if (!g_dnnl_on.load() || !lib().ok) return false;
    use_threads(threads);
    return lib().dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == dnnl_success;
}

std::string dnnl_status() { return lib().status; }

#else  // built without oneDNN's header

bool dnnl_conv_f32(const ConvDims&, const Act&, const float*, const Tensor&, const float*, float*, int, double) {
    return false;
}
bool dnnl_sgemm_f32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                    float*, int64_t, int) {
    return false;
}
std::string dnnl_status() { return "built without oneDNN (libdnnl-dev was not installed)"; }

#endif

}  // namespace cpn::infer
