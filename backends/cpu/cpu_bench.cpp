// cpu_bench.cpp: the benchmark kinds of cpn_bench.h on the host CPU.
//
// prepare() parses the params, picks the kernel for this CPU, starts a pool of worker threads
// pinned one per CPU (kept until release(), so a sample times only the work), and lets the
// workers first-touch their own data. run() is one sample: the workers meet at a spin barrier,
// worker 0 reads the clock, every worker runs `reps` units of work (checking cancel and
// deadline between units), they meet again and worker 0 reads the clock. The result is then
// checked against the host's own computation before any figure is reported.
#include "cpu_bench.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <atomic>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cpn_backend_util.hpp"
#include "cpn_bench.h"
#include "cpu_bench_kernels.hpp"

namespace cpn::cpubench {

namespace {

using cpn::plugin::copy_str;
using cpn::plugin::fail;

/* ---- kinds -------------------------------------------------------------------------------- */

enum class Kind {
    Fp64, Fp32, Fp16, Bf16, Int8,
    MmFp16, MmBf16, MmTf32, MmInt8,
    MemCopy, MemTriad,
    Clock,
    Launch, Xfer,
    Unknown
};

Kind kind_of(const char* name) {
    static const struct {
        const char* name;
        Kind kind;
    } kTable[] = {
        {"bench.fp64", Kind::Fp64},         {"bench.fp32", Kind::Fp32},
        {"bench.fp16", Kind::Fp16},         {"bench.bf16", Kind::Bf16},
        {"bench.int8", Kind::Int8},         {"bench.mm.fp16", Kind::MmFp16},
        {"bench.mm.bf16", Kind::MmBf16},    {"bench.mm.tf32", Kind::MmTf32},
        {"bench.mm.int8", Kind::MmInt8},    {"bench.mem.copy", Kind::MemCopy},
        {"bench.mem.triad", Kind::MemTriad}, {"bench.clock", Kind::Clock},
        {"bench.launch", Kind::Launch},     {"bench.xfer.h2d.pinned", Kind::Xfer},
        {"bench.xfer.h2d.pageable", Kind::Xfer}, {"bench.xfer.d2h.pinned", Kind::Xfer},
        {"bench.xfer.d2h.pageable", Kind::Xfer},
    };
    for (const auto& e : kTable)
        if (std::strcmp(name, e.name) == 0) return e.kind;
    return Kind::Unknown;
}

bool is_compute(Kind k) {
    return k == Kind::Fp64 || k == Kind::Fp32 || k == Kind::Fp16 || k == Kind::Bf16 ||
           k == Kind::Int8 || k == Kind::MmBf16 || k == Kind::MmInt8;
}
bool is_mem(Kind k) { return k == Kind::MemCopy || k == Kind::MemTriad; }

/* The kernel for a compute kind, or fn == nullptr and `why`. */
ComputeKernel compute_kernel(Kind k, std::string& why) {
    switch (k) {
        case Kind::Fp64: return select_fp64(why);
        case Kind::Fp32: return select_fp32(why);
        case Kind::Fp16: return select_fp16(why);
        case Kind::Bf16: return select_bf16(why);
        case Kind::Int8: return select_int8(why);
        case Kind::MmBf16: return select_mm_bf16(why);
        case Kind::MmInt8: return select_mm_int8(why);
        default: return {};
    }
}

/* Empty when this CPU runs the kind, else the reason it does not. */
std::string unsupported_reason(Kind k, const std::string& name) {
    std::string why;
    switch (k) {
        case Kind::Unknown: return name + ": unknown benchmark kind (cpn_bench.h suite " CPN_BENCH_SUITE_VERSION ")";
        case Kind::Launch:
            return name + ": kernel-launch latency is not meaningful on the host CPU (there is no "
                          "device to dispatch to)";
        case Kind::Xfer:
            return name + ": host <-> device transfers are not meaningful on the host CPU (its "
                          "memory is the host's; see bench.mem.copy)";
        case Kind::MmFp16:
            return name + ": no fp16 matrix-unit kernel on the CPU backend (AMX here means "
                          "amx_bf16 / amx_int8)";
        case Kind::MmTf32: return name + ": CPUs have no tf32 matrix unit";
        case Kind::MemCopy:
        case Kind::MemTriad:
        case Kind::Clock: return {};
        default: break;
    }
    if (compute_kernel(k, why).fn == nullptr) return why;
    return {};
}

/* ---- params ------------------------------------------------------------------------------- */

struct Params {
    uint64_t reps = 1;
    uint64_t bytes = 0;          // 0: the default (4 x LLC, at least 64 MiB)
    bool bytes_given = false;
    uint64_t threads = 0;
    uint64_t seed = 0x5eed;
};

constexpr uint64_t kMaxReps = 1ull << 40;
constexpr uint64_t kMinBytes = 4096;
constexpr uint64_t kMaxBytes = 1ull << 46;  // 64 TiB per array: past any machine, and 3x fits

bool read_u64(const nlohmann::json& v, const std::string& where, const char* key, uint64_t& out,
              std::string& err) {
    if (v.is_number_unsigned()) {
        out = v.get<uint64_t>();
        return true;
    }
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (d >= 0 && d == std::floor(d) && d < 18446744073709551616.0) {
            out = static_cast<uint64_t>(d);
            return true;
        }
    }
    err = where + ": params key \"" + key + "\" must be a non-negative integer, got " + v.dump();
    return false;
}

bool parse_params(const std::string& kind, const char* text, Params& p, std::string& err) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text != nullptr ? text : "{}");
    } catch (const std::exception& e) {
        err = kind + ": params_json is not valid JSON: " + e.what();
        return false;
    }
    if (!j.is_object()) {
        err = kind + ": params_json must be a JSON object, got " + j.dump();
        return false;
    }
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        if (key == "reps") {
            if (!read_u64(it.value(), kind, "reps", p.reps, err)) return false;
            if (p.reps < 1 || p.reps > kMaxReps) {
                err = kind + ": params key \"reps\" must be between 1 and 2^40, got " + it.value().dump();
                return false;
            }
        } else if (key == "bytes") {
            if (!read_u64(it.value(), kind, "bytes", p.bytes, err)) return false;
            if (p.bytes < kMinBytes || p.bytes > kMaxBytes) {
                err = kind + ": params key \"bytes\" must be between 4096 and 2^46 (64 TiB), got " +
                      it.value().dump();
                return false;
            }
            p.bytes_given = true;
        } else if (key == "threads") {
            if (!read_u64(it.value(), kind, "threads", p.threads, err)) return false;
        } else if (key == "seed") {  // "bytes" and "seed" only matter to bench.mem.*; accepted by all
            if (!read_u64(it.value(), kind, "seed", p.seed, err)) return false;
        } else {
            err = kind + ": unknown params key \"" + key + "\" (known: reps, bytes, threads, seed)";
            return false;
        }
    }
    return true;
}

/* ---- the machine ---------------------------------------------------------------------------- */

std::vector<int> allowed_cpus() {
    std::vector<int> out;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) out.push_back(c);
    }
    if (out.empty()) {
        const unsigned n = std::max(1u, std::thread::hardware_concurrency());
        for (unsigned c = 0; c < n; ++c) out.push_back(static_cast<int>(c));
    }
    return out;
}

std::string read_line(const std::string& path) {
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return cpn::plugin::trim(s);
}

/* Size of the last-level cache from sysfs ("32768K"), 0 when unknown. */
uint64_t llc_bytes() {
    uint64_t best = 0;
    int best_level = 0;
    for (int i = 0; i < 16; ++i) {
        const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i);
        const std::string level = read_line(dir + "/level");
        if (level.empty()) continue;
        const std::string type = read_line(dir + "/type");
        if (type == "Instruction") continue;
        const std::string size = read_line(dir + "/size");
        char* end = nullptr;
        uint64_t v = std::strtoull(size.c_str(), &end, 10);
        if (end != nullptr && (*end == 'K' || *end == 'k')) v <<= 10;
        else if (end != nullptr && (*end == 'M' || *end == 'm')) v <<= 20;
        else if (end != nullptr && (*end == 'G' || *end == 'g')) v <<= 30;
        const int lv = std::atoi(level.c_str());
        if (lv > best_level || (lv == best_level && v > best)) {
            best_level = lv;
            best = v;
        }
    }
    return best;
}

uint64_t mem_available() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    uint64_t kb = 0;
    std::string unit;
    while (in >> key >> kb) {
        std::getline(in, unit);
        if (key == "MemAvailable:") return kb * 1024;
    }
    return 0;
}

/* Summed core_throttle_count of the given CPUs; -1 when no CPU exposes it. */
int64_t throttle_count(const std::vector<int>& cpus) {
    int64_t sum = -1;
    for (int c : cpus) {
        const std::string v = read_line("/sys/devices/system/cpu/cpu" + std::to_string(c) +
                                        "/thermal_throttle/core_throttle_count");
        if (v.empty()) continue;
        sum = std::max<int64_t>(sum, 0) + std::strtoll(v.c_str(), nullptr, 10);
    }
    return sum;
}

/* CPU time of the calling thread: what it actually ran, whatever else shared its core. */
uint64_t thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

/* Length of the clock probe run after every compute sample: 64 dependent adds per iteration,
 * about 1 ms at 3.5 GHz. */
constexpr uint64_t kClockProbeIters = 1u << 16;
constexpr int kClockProbeSlices = 8;

uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

/* ---- the worker pool ------------------------------------------------------------------------ */

class Pool {
public:
    ~Pool() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
        }
        cv_start_.notify_all();
        for (auto& t : threads_)
            if (t.joinable()) t.join();
    }

    /* One worker per CPU in `cpus`, each pinned to its CPU. */
    bool start(const std::vector<int>& cpus, std::string& err) {
        n_ = static_cast<unsigned>(cpus.size());
        for (unsigned i = 0; i < n_; ++i) {
            try {
                threads_.emplace_back([this, i] { loop(i); });
            } catch (const std::exception& e) {
                err = "cannot start worker thread " + std::to_string(i) + ": " + e.what();
                return false;
            }
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpus[i], &set);
            const int rc = pthread_setaffinity_np(threads_.back().native_handle(), sizeof set, &set);
            if (rc != 0) {
                err = "cannot pin worker thread " + std::to_string(i) + " to CPU " +
                      std::to_string(cpus[i]) + ": " + std::strerror(rc);
                return false;
            }
        }
        return true;
    }

    unsigned size() const { return n_; }

    /* Runs job(worker) on every worker and returns when all have finished. */
    void run(const std::function<void(unsigned)>& job) {
        std::unique_lock<std::mutex> lk(m_);
        job_ = &job;
        pending_ = n_;
        ++generation_;
        cv_start_.notify_all();
        cv_done_.wait(lk, [this] { return pending_ == 0; });
        job_ = nullptr;
    }

    /* All workers meet here (only from inside a job). Spins: the workers own their CPUs. */
    void barrier() {
        const unsigned gen = bar_gen_.load(std::memory_order_acquire);
        if (bar_count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
            bar_count_.store(0, std::memory_order_relaxed);
            bar_gen_.store(gen + 1, std::memory_order_release);
            return;
        }
        unsigned spins = 0;
        while (bar_gen_.load(std::memory_order_acquire) == gen) {
            cpu_relax();
            if (++spins > 20000) sched_yield();  // someone else has our CPU: do not fight it
        }
    }

private:
    void loop(unsigned id) {
        uint64_t seen = 0;
        for (;;) {
            const std::function<void(unsigned)>* job = nullptr;
            {
                std::unique_lock<std::mutex> lk(m_);
                cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
                job = job_;
            }
            (*job)(id);
            {
                std::lock_guard<std::mutex> lk(m_);
                if (--pending_ == 0) cv_done_.notify_one();
            }
        }
    }

    unsigned n_ = 0;
    std::vector<std::thread> threads_;
    std::mutex m_;
    std::condition_variable cv_start_, cv_done_;
    uint64_t generation_ = 0;
    unsigned pending_ = 0;
    bool stop_ = false;
    const std::function<void(unsigned)>* job_ = nullptr;
    std::atomic<unsigned> bar_count_{0};
    std::atomic<unsigned> bar_gen_{0};
};

/* ---- deterministic data ------------------------------------------------------------------- */

uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Element i of array `which` (0 a, 1 b, 2 c, 3+ the per-run perturbations): in [1, 2). */
double rand_elem(uint64_t seed, uint64_t which, uint64_t i) {
    const uint64_t r = splitmix64(splitmix64(seed ^ (which * 0xd1b54a32d192ed03ull)) + i);
    return 1.0 + static_cast<double>(r >> 11) * 0x1.0p-53;
}

struct Mapping {
    void* base = nullptr;
    size_t size = 0;
};

constexpr size_t kHuge = 2u << 20;

/* ---- the prepared benchmark ----------------------------------------------------------------- */

enum class Abort : int { None = 0, Cancelled = 1, Deadline = 2 };

}  // namespace

struct Bench {
    Kind kind = Kind::Unknown;
    std::string name;
    Params params;
    std::vector<int> cpus;
    Pool pool;
    std::atomic<int> abort{0};
    std::vector<uint64_t> reps_done;     // per worker, of the last run
    std::vector<uint64_t> cpu_ns;        // per worker: its own CPU time over the timed region
    std::vector<uint64_t> probe_ns;      // per worker: CPU time of its clock probe after a compute sample
    std::vector<uint64_t> probe_out;

    /* compute */
    ComputeKernel ck;
    uint64_t iters_per_rep = 0;
    size_t state_bytes = 0;
    std::vector<uint8_t> initial;        // the start state every worker copies in
    std::vector<void*> states;           // per worker, 64-byte aligned, touched by the worker
    uint64_t expected_for = UINT64_MAX;  // iteration count `expected` holds
    std::vector<uint8_t> expected;
    bool expected_fused = true;

    /* memory */
    MemKernels mk;
    Mapping maps[3];
    double* arr[3] = {nullptr, nullptr, nullptr};  // a, b, c
    size_t n = 0;
    bool nt = false;
    std::vector<size_t> lo, hi;          // each worker's chunk
    std::vector<size_t> samples;
    uint64_t runs = 0;
    uint64_t gen = 0;                    // the perturbation the data of the last run carries
    double scalar = 3.0;

    /* clock */
    ClockKernel clk;
    std::vector<uint64_t> clock_out;

    ~Bench() {
        for (void* s : states) std::free(s);
        for (auto& m : maps)
            if (m.base != nullptr) munmap(m.base, m.size);
    }
};

namespace {

/* ---- compute: start state and host expectation -------------------------------------------- */

size_t elem_size(Kind k) { return k == Kind::Fp64 ? 8 : k == Kind::Fp16 ? 2 : 4; }

void build_initial(Bench& b) {
    if (b.kind == Kind::MmBf16 || b.kind == Kind::MmInt8) {
        b.state_bytes = sizeof(AmxState);
        b.initial.assign(sizeof(AmxState), 0);
        AmxState s;
        std::memset(&s, 0, sizeof s);
        for (unsigned t = 0; t < 4; ++t)
            for (unsigned e = 0; e < 256; ++e) {
                if (b.kind == Kind::MmBf16) {
                    const float v = bf16_acc_start(t * 256 + e);
                    std::memcpy(&s.c[t][e * 4], &v, 4);
                } else {
                    const uint32_t v = int8_acc_start(t * 256 + e);
                    std::memcpy(&s.c[t][e * 4], &v, 4);
                }
            }
        for (unsigned i = 0; i < 2; ++i)
            for (unsigned r = 0; r < 16; ++r)
                for (unsigned q = 0; q < 64; ++q) {
                    if (b.kind == Kind::MmInt8) {
                        s.a[i][r * 64 + q] = int8_u(i * 1024 + r * 64 + q);
                        s.b[i][r * 64 + q] = static_cast<uint8_t>(int8_s(i * 1024 + r * 64 + q));
                    } else if (q % 2 == 0) {
                        /* A[m][2p] = A[m][2p+1] = alpha(m); B[p][2n] = beta, B[p][2n+1] = -beta:
                         * every pair of products cancels exactly. */
                        const float alpha = 1.0f + static_cast<float>((r + i) % 8) / 8.0f;
                        const unsigned col = q / 4;  // bf16 element q/2 is column (q/2)/2
                        const float beta = 1.0f + static_cast<float>((r + col + i) % 16) / 16.0f;
                        uint32_t ua = 0, ub = 0;
                        std::memcpy(&ua, &alpha, 4);
                        const float bv = (q / 2) % 2 == 0 ? beta : -beta;
                        std::memcpy(&ub, &bv, 4);
                        const uint16_t ha = static_cast<uint16_t>(ua >> 16);
                        const uint16_t hb = static_cast<uint16_t>(ub >> 16);
                        std::memcpy(&s.a[i][r * 64 + q], &ha, 2);
                        std::memcpy(&s.b[i][r * 64 + q], &hb, 2);
                    }
                }
        std::memcpy(b.initial.data(), &s, sizeof s);
        return;
    }
    const unsigned count = b.ck.lanes * b.ck.chains;
    b.state_bytes = count * elem_size(b.kind);
    b.initial.assign(b.state_bytes, 0);
    for (unsigned e = 0; e < count; ++e) {
        uint8_t* p = b.initial.data() + e * elem_size(b.kind);
        switch (b.kind) {
            case Kind::Fp64: {
                const double v = fma_start(e);
                std::memcpy(p, &v, 8);
                break;
            }
            case Kind::Fp32: {
                const float v = static_cast<float>(fma_start(e));
                std::memcpy(p, &v, 4);
                break;
            }
            case Kind::Fp16: {
                const uint16_t v = fp16_from_double(fma_start(e));
                std::memcpy(p, &v, 2);
                break;
            }
            case Kind::Bf16: {
                const float v = bf16_acc_start(e);
                std::memcpy(p, &v, 4);
                break;
            }
            case Kind::Int8: {
                const uint32_t v = int8_acc_start(e);
                std::memcpy(p, &v, 4);
                break;
            }
            default: break;
        }
    }
}

/* x -> x*a + b until it stops changing (the map is monotone, so it settles on a fixed point in
 * a few thousand steps) or `steps` have been taken. */
template <typename T, typename F>
T iterate(T x, uint64_t steps, F f) {
    for (uint64_t k = 0; k < steps; ++k) {
        const T y = f(x);
        if (y == x) break;
        x = y;
    }
    return x;
}

double mul_add_unfused(double x, double a, double b) {
    volatile double p = x * a;  // volatile: no contraction into an fma on any target
    return p + b;
}
float mul_add_unfused_f(float x, float a, float b) {
    volatile float p = x * a;
    return p + b;
}

/* The state every worker must hold after `iters` iterations. */
void compute_expected(Bench& b, uint64_t iters, bool fused, std::vector<uint8_t>& out) {
    out = b.initial;
    const unsigned count = b.ck.lanes * b.ck.chains;
    switch (b.kind) {
        case Kind::Fp64:
            for (unsigned e = 0; e < count; ++e) {
                double x = 0;
                std::memcpy(&x, out.data() + e * 8, 8);
                x = fused ? iterate(x, iters, [](double v) { return std::fma(v, kFmaA, kFmaB); })
                          : iterate(x, iters, [](double v) { return mul_add_unfused(v, kFmaA, kFmaB); });
                std::memcpy(out.data() + e * 8, &x, 8);
            }
            break;
        case Kind::Fp32: {
            const float a = static_cast<float>(kFmaA), c = static_cast<float>(kFmaB);
            for (unsigned e = 0; e < count; ++e) {
                float x = 0;
                std::memcpy(&x, out.data() + e * 4, 4);
                x = fused ? iterate(x, iters, [=](float v) { return std::fmaf(v, a, c); })
                          : iterate(x, iters, [=](float v) { return mul_add_unfused_f(v, a, c); });
                std::memcpy(out.data() + e * 4, &x, 4);
            }
            break;
        }
        case Kind::Fp16:
            /* x, a (8 bits) and b are short enough that x*a + b is exact in double; one rounding
             * to binary16 then is the fused result. */
            for (unsigned e = 0; e < count; ++e) {
                uint16_t h = 0;
                std::memcpy(&h, out.data() + e * 2, 2);
                h = iterate(h, iters, [](uint16_t v) {
                    return fp16_from_double(fp16_to_double(v) * kFmaA + kFmaB);
                });
                std::memcpy(out.data() + e * 2, &h, 2);
            }
            break;
        case Kind::Bf16:
        case Kind::MmBf16:
            break;  // the products cancel: every accumulator keeps its start value
        case Kind::Int8:
            for (unsigned e = 0; e < count; ++e) {
                const unsigned lane = e % b.ck.lanes;
                int32_t dot = 0;
                for (unsigned q = 0; q < 4; ++q)
                    dot += static_cast<int32_t>(int8_u(lane * 4 + q)) * int8_s(lane * 4 + q);
                uint32_t v = 0;
                std::memcpy(&v, out.data() + e * 4, 4);
                v += static_cast<uint32_t>(dot) * static_cast<uint32_t>(iters);  // mod 2^32
                std::memcpy(out.data() + e * 4, &v, 4);
            }
            break;
        case Kind::MmInt8: {
            AmxState s;
            std::memcpy(&s, out.data(), sizeof s);
            for (unsigned t = 0; t < 4; ++t) {
                const unsigned ia = t / 2, jb = t % 2;  // C0 = A0 B0, C1 = A0 B1, C2 = A1 B0, ...
                for (unsigned m = 0; m < 16; ++m)
                    for (unsigned col = 0; col < 16; ++col) {
                        int32_t dot = 0;
                        for (unsigned k = 0; k < 64; ++k)
                            dot += static_cast<int32_t>(s.a[ia][m * 64 + k]) *
                                   static_cast<int8_t>(s.b[jb][(k / 4) * 64 + col * 4 + k % 4]);
                        uint32_t v = 0;
                        std::memcpy(&v, &s.c[t][(m * 16 + col) * 4], 4);
                        v += static_cast<uint32_t>(dot) * static_cast<uint32_t>(iters);
                        std::memcpy(&s.c[t][(m * 16 + col) * 4], &v, 4);
                    }
            }
            std::memcpy(out.data(), &s, sizeof s);
            break;
        }
        default: break;
    }
}

std::string describe_elem(Kind k, const uint8_t* p) {
    char buf[96];
    if (k == Kind::Fp64) {
        double v = 0;
        uint64_t u = 0;
        std::memcpy(&v, p, 8);
        std::memcpy(&u, p, 8);
        std::snprintf(buf, sizeof buf, "%.17g (0x%016" PRIx64 ")", v, u);
    } else if (k == Kind::Fp16) {
        uint16_t h = 0;
        std::memcpy(&h, p, 2);
        std::snprintf(buf, sizeof buf, "%.6g (0x%04x)", fp16_to_double(h), h);
    } else if (k == Kind::Int8 || k == Kind::MmInt8) {
        int32_t v = 0;
        std::memcpy(&v, p, 4);
        std::snprintf(buf, sizeof buf, "%" PRId32, v);
    } else {
        float v = 0;
        uint32_t u = 0;
        std::memcpy(&v, p, 4);
        std::memcpy(&u, p, 4);
        std::snprintf(buf, sizeof buf, "%.9g (0x%08" PRIx32 ")", static_cast<double>(v), u);
    }
    return buf;
}

/* Compares every worker's state with the host's; on success `check` says what was checked. */
cpn_status verify_compute(Bench& b, uint64_t iters, std::string& check, cpn_msg* err) {
    const unsigned T = b.pool.size();
    const bool amx = b.kind == Kind::MmBf16 || b.kind == Kind::MmInt8;
    const size_t cmp_bytes = amx ? sizeof(AmxState::c) : b.state_bytes;
    const size_t esz = amx ? 4 : elem_size(b.kind);
    auto matches = [&](const std::vector<uint8_t>& exp) {
        for (unsigned t = 0; t < T; ++t)
            if (std::memcmp(b.states[t], exp.data(), cmp_bytes) != 0) return false;
        return true;
    };
    if (b.expected_for != iters) {
        compute_expected(b, iters, b.ck.fused, b.expected);
        b.expected_fused = b.ck.fused;
        b.expected_for = iters;
    }
    bool ok = matches(b.expected);
    if (!ok && (b.kind == Kind::Fp64 || b.kind == Kind::Fp32) && std::strcmp(b.ck.isa, "portable") == 0) {
        /* The portable kernel is whatever the compiler made of x*a + b: fused where the target
         * has an fma and contracts, two roundings elsewhere. Either is a correct result. */
        std::vector<uint8_t> other;
        compute_expected(b, iters, !b.expected_fused, other);
        if (matches(other)) {
            b.expected.swap(other);
            b.expected_fused = !b.expected_fused;
            ok = true;
        }
    }
    if (!ok) {
        for (unsigned t = 0; t < T; ++t) {
            const uint8_t* got = static_cast<const uint8_t*>(b.states[t]);
            for (size_t off = 0; off < cmp_bytes; off += esz) {
                if (std::memcmp(got + off, b.expected.data() + off, esz) == 0) continue;
                return fail(err, CPN_E_INTERNAL,
                            "%s: verification failed (%s kernel): worker %u element %zu after %" PRIu64
                            " iterations: expected %s, got %s",
                            b.name.c_str(), b.ck.isa, t, off / esz, iters,
                            describe_elem(b.kind, b.expected.data() + off).c_str(),
                            describe_elem(b.kind, got + off).c_str());
            }
        }
        return fail(err, CPN_E_INTERNAL, "%s: verification failed", b.name.c_str());
    }
    char buf[320];
    const unsigned count = amx ? 1024 : b.ck.lanes * b.ck.chains;
    const char* what = "";
    switch (b.kind) {
        case Kind::Fp64:
        case Kind::Fp32:
        case Kind::Fp16:
            what = b.expected_fused ? "match the host recurrence x = fma(x, a, b)"
                                    : "match the host recurrence x = x*a + b (unfused)";
            break;
        case Kind::Bf16: what = "hold their start value after dot products whose pair products cancel exactly"; break;
        case Kind::Int8: what = "match the host's acc + iterations x dot4(u8, s8) (mod 2^32)"; break;
        case Kind::MmBf16: what = "accumulator elements hold their start value after tile products that cancel exactly"; break;
        case Kind::MmInt8: what = "accumulator elements match the host's C + iterations x A.B (mod 2^32)"; break;
        default: break;
    }
    if (amx)
        std::snprintf(buf, sizeof buf, "all %u %s x %u threads, after %" PRIu64 " iterations", count,
                      what, T, iters);
    else
        std::snprintf(buf, sizeof buf, "all %u lanes (%u chains x %u) x %u threads %s, after %" PRIu64
                      " iterations", count, b.ck.chains, b.ck.lanes, T, what, iters);
    check = buf;
    return CPN_OK;
}

/* ---- memory --------------------------------------------------------------------------------- */

cpn_status map_arrays(Bench& b, cpn_msg* err) {
    const size_t bytes = b.n * sizeof(double);
    for (int k = 0; k < 3; ++k) {
        /* Arrays start 1 KiB + 64 B apart modulo 4 KiB, so a[i], b[i], c[i] never alias in the
         * low address bits the load/store disambiguation compares. */
        const size_t offset = static_cast<size_t>(k) * 1088;
        const size_t size = (bytes + offset + kHuge - 1) / kHuge * kHuge + kHuge;
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return fail(err, CPN_E_OUT_OF_MEMORY,
                        "%s: cannot map array %d of %zu bytes (3 arrays, %zu bytes in all): %s",
                        b.name.c_str(), k, bytes, 3 * bytes, std::strerror(errno));
        b.maps[k] = {p, size};
        uintptr_t start = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) / kHuge * kHuge;
        madvise(reinterpret_cast<void*>(start), size - (start - reinterpret_cast<uintptr_t>(p)),
                MADV_HUGEPAGE);  // a hint: fewer TLB misses; fine if refused
        b.arr[k] = reinterpret_cast<double*>(start + offset);
    }
    return CPN_OK;
}

void make_chunks(Bench& b) {
    const unsigned T = b.pool.size();
    b.lo.assign(T, 0);
    b.hi.assign(T, 0);
    constexpr size_t kAlign = 512;  // elements: 4 KiB, so chunks never share a page
    for (unsigned t = 0; t < T; ++t) {
        b.lo[t] = std::min(b.n, b.n * t / T / kAlign * kAlign);
        b.hi[t] = t + 1 == T ? b.n : std::min(b.n, b.n * (t + 1) / T / kAlign * kAlign);
    }
    /* Sampled elements: 1024 spread over the arrays, plus both ends of every chunk. */
    b.samples.clear();
    for (uint64_t k = 0; k < 1024 && b.n > 0; ++k) {
        const size_t span = std::max<size_t>(1, b.n / 1024);
        b.samples.push_back(std::min(b.n - 1, k * b.n / 1024 + splitmix64(k) % span));
    }
    for (unsigned t = 0; t < T; ++t)
        if (b.hi[t] > b.lo[t]) {
            b.samples.push_back(b.lo[t]);
            b.samples.push_back(b.hi[t] - 1);
        }
    std::sort(b.samples.begin(), b.samples.end());
    b.samples.erase(std::unique(b.samples.begin(), b.samples.end()), b.samples.end());
}

double triad_expected(double s, double bv, double cv, bool fused) {
    if (fused) return std::fma(s, cv, bv);
    volatile double p = s * cv;
    return bv + p;
}

cpn_status verify_mem(Bench& b, std::string& check, cpn_msg* err) {
    const uint64_t gen = b.gen;
    bool fused = b.mk.fused;
    for (int attempt = 0; attempt < 2; ++attempt, fused = !fused) {
        bool ok = true;
        for (size_t i : b.samples) {
            if (b.kind == Kind::MemCopy) {
                const double want = rand_elem(b.params.seed, gen, i);
                if (b.arr[2][i] != want || b.arr[0][i] != want) {
                    return fail(err, CPN_E_INTERNAL,
                                "%s: verification failed (%s kernel): c[%zu] expected %.17g (a[%zu] "
                                "as perturbed for this run), got %.17g (a[%zu] = %.17g)",
                                b.name.c_str(), b.mk.isa, i, want, i, b.arr[2][i], i, b.arr[0][i]);
                }
            } else {
                const double bv = rand_elem(b.params.seed, gen, i);
                const double cv = rand_elem(b.params.seed, 2, i);
                const double want = triad_expected(b.scalar, bv, cv, fused);
                if (b.arr[0][i] != want) {
                    if (attempt == 0 && std::strcmp(b.mk.isa, "portable") == 0) {
                        ok = false;
                        break;  // try the other rounding (see verify_compute)
                    }
                    return fail(err, CPN_E_INTERNAL,
                                "%s: verification failed (%s kernel): a[%zu] expected %.17g "
                                "(b %.17g + %g * c %.17g), got %.17g",
                                b.name.c_str(), b.mk.isa, i, want, bv, b.scalar, cv, b.arr[0][i]);
                }
            }
        }
        if (!ok) continue;
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "%zu sampled elements (spread, and both ends of each of %u chunks) match %s",
                      b.samples.size(), b.pool.size(),
                      b.kind == Kind::MemCopy ? "c[i] = a[i] with a freshly perturbed for this run"
                      : fused ? "a[i] = fma(3, c[i], b[i]) with b freshly perturbed for this run"
                              : "a[i] = b[i] + 3*c[i] with b freshly perturbed for this run");
        check = buf;
        return CPN_OK;
    }
    return fail(err, CPN_E_INTERNAL, "%s: verification failed (%s kernel): a[] matches neither "
                "the fused nor the unfused triad", b.name.c_str(), b.mk.isa);
}

/* ---- one sample ------------------------------------------------------------------------------ */

bool should_stop(Bench& b, const cpn_run_control* ctl) {
    if (b.abort.load(std::memory_order_relaxed) != 0) return true;
    if (ctl == nullptr) return false;
    if (ctl->cancel != nullptr && *ctl->cancel != 0) {
        int none = 0;
        b.abort.compare_exchange_strong(none, static_cast<int>(Abort::Cancelled));
        return true;
    }
    if (ctl->deadline_ns != 0 && now_ns() > ctl->deadline_ns) {
        int none = 0;
        b.abort.compare_exchange_strong(none, static_cast<int>(Abort::Deadline));
        return true;
    }
    return false;
}

const cpn_buffer* find_input(const cpn_run_io* io, const char* name) {
    if (io == nullptr || io->inputs == nullptr) return nullptr;
    for (uint32_t i = 0; i < io->input_count; ++i)
        if (io->inputs[i].name != nullptr && std::strcmp(io->inputs[i].name, name) == 0)
            return &io->inputs[i];
    return nullptr;
}

}  // namespace

/* ---- the public half ---------------------------------------------------------------------- */

bool is_bench_kind(const char* kind) {
    return kind != nullptr && std::strncmp(kind, CPN_BENCH_KIND_PREFIX, std::strlen(CPN_BENCH_KIND_PREFIX)) == 0;
}

cpn_status query(const cpn_workload* w, cpn_query_result* out, cpn_msg* err) {
    try {
        const std::string name = w->kind;
        const Kind k = kind_of(w->kind);
        out->supported = 0;
        out->device_memory_bytes = 0;
        const std::string why = unsupported_reason(k, name);
        if (!why.empty()) {
            copy_str(out->reason, why);
            return CPN_OK;
        }
        Params p;
        std::string perr;
        if (!parse_params(name, w->params_json, p, perr))
            return fail(err, CPN_E_INVALID_ARGUMENT, "%s", perr.c_str());
        const size_t ncpu = allowed_cpus().size();
        if (p.threads > ncpu)
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: params key \"threads\" is %" PRIu64 " but this process may use %zu CPUs",
                        name.c_str(), p.threads, ncpu);
        if (is_mem(k)) {
            const uint64_t bytes = p.bytes_given ? p.bytes : std::max<uint64_t>(4 * llc_bytes(), 64ull << 20);
            out->device_memory_bytes = 3 * bytes;
        }
        out->supported = 1;
        out->reason[0] = '\0';
        return CPN_OK;
    } catch (const std::exception& e) {
        return fail(err, CPN_E_INTERNAL, "%s: %s", w->kind, e.what());
    }
}

cpn_status prepare(const cpn_workload* w, Bench** out, cpn_msg* err) {
    try {
        const std::string name = w->kind;
        const Kind k = kind_of(w->kind);
        const std::string why = unsupported_reason(k, name);
        if (!why.empty()) return fail(err, CPN_E_UNSUPPORTED, "%s", why.c_str());
        auto b = std::make_unique<Bench>();
        b->kind = k;
        b->name = name;
        std::string perr;
        if (!parse_params(name, w->params_json, b->params, perr))
            return fail(err, CPN_E_INVALID_ARGUMENT, "%s", perr.c_str());
        const std::vector<int> cpus = allowed_cpus();
        if (b->params.threads > cpus.size())
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: params key \"threads\" is %" PRIu64 " but this process may use %zu CPUs",
                        name.c_str(), b->params.threads, cpus.size());
        const size_t T = b->params.threads == 0 ? cpus.size() : b->params.threads;
        b->cpus.assign(cpus.begin(), cpus.begin() + static_cast<std::ptrdiff_t>(T));

        if (is_mem(k)) {
            const uint64_t llc = llc_bytes();
            const uint64_t bytes = b->params.bytes_given ? b->params.bytes
                                                          : std::max<uint64_t>(4 * llc, 64ull << 20);
            const uint64_t avail = mem_available();
            if (avail != 0 && 3 * bytes > avail)
                return fail(err, CPN_E_OUT_OF_MEMORY,
                            "%s: 3 arrays of %" PRIu64 " bytes (%" PRIu64 " bytes) exceed the %" PRIu64
                            " bytes of memory available",
                            name.c_str(), bytes, 3 * bytes, avail);
            b->n = bytes / sizeof(double);
            b->mk = select_mem();
            /* Past the last-level cache the stores go to memory anyway: stream them, so no line
             * is read before it is overwritten. Within it, normal stores keep the data cached. */
            const uint64_t working = (k == Kind::MemCopy ? 2 : 3) * bytes;
            b->nt = b->mk.has_nontemporal && llc != 0 && working > llc;
            if (cpn_status st = map_arrays(*b, err); st != CPN_OK) return st;
        } else if (is_compute(k)) {
            std::string kwhy;
            b->ck = compute_kernel(k, kwhy);
            if (k == Kind::MmBf16 || k == Kind::MmInt8) {
                const std::string amx = amx_enable();
                if (!amx.empty())
                    return fail(err, CPN_E_UNSUPPORTED, "%s: AMX is present but unusable: %s",
                                name.c_str(), amx.c_str());
                b->iters_per_rep = 1u << 14;
            } else {
                b->iters_per_rep = 1u << 16;
            }
            build_initial(*b);
            b->clk = select_clock();  // the clock each compute sample ran at (see run)
        } else if (k == Kind::Clock) {
            b->clk = select_clock();
            b->iters_per_rep = 1u << 14;
        }

        std::string pool_err;
        if (!b->pool.start(b->cpus, pool_err))
            return fail(err, CPN_E_UNAVAILABLE, "%s: %s", name.c_str(), pool_err.c_str());
        const unsigned nt = b->pool.size();
        b->reps_done.assign(nt, 0);
        b->cpu_ns.assign(nt, 0);
        b->probe_ns.assign(nt, 0);
        b->probe_out.assign(nt, 0);

        if (is_mem(k)) {
            make_chunks(*b);
            Bench* bp = b.get();
            /* First touch by the workers: each page lands on its worker's NUMA node. */
            b->pool.run([bp](unsigned t) {
                for (int a = 0; a < 3; ++a) {
                    double* p = bp->arr[a];
                    for (size_t i = bp->lo[t]; i < bp->hi[t]; ++i)
                        p[i] = rand_elem(bp->params.seed, static_cast<uint64_t>(a), i);
                }
            });
        } else if (is_compute(k)) {
            b->states.assign(nt, nullptr);
            const size_t alloc = (b->state_bytes + 4095) / 4096 * 4096;
            for (unsigned t = 0; t < nt; ++t) {
                b->states[t] = std::aligned_alloc(4096, alloc);
                if (b->states[t] == nullptr)
                    return fail(err, CPN_E_OUT_OF_MEMORY, "%s: out of memory", name.c_str());
            }
            Bench* bp = b.get();
            b->pool.run([bp](unsigned t) {
                std::memcpy(bp->states[t], bp->initial.data(), bp->initial.size());
            });
        } else if (k == Kind::Clock) {
            b->clock_out.assign(nt, 0);
        }
        *out = b.release();
        return CPN_OK;
    } catch (const std::bad_alloc&) {
        return fail(err, CPN_E_OUT_OF_MEMORY, "%s: out of memory", w->kind);
    } catch (const std::exception& e) {
        return fail(err, CPN_E_INTERNAL, "%s: %s", w->kind, e.what());
    }
}

cpn_status run(Bench* b, cpn_run_io* io, const cpn_run_control* ctl, cpn_msg* err) {
    try {
        const char* name = b->name.c_str();
        uint64_t reps = b->params.reps;
        if (const cpn_buffer* r = find_input(io, CPN_BENCH_REPS_INPUT)) {
            if (r->data == nullptr || r->size != 8)
                return fail(err, CPN_E_INVALID_ARGUMENT,
                            "%s: input \"reps\" must hold one little-endian uint64 (8 bytes), got %" PRIu64
                            " bytes", name, r->size);
            const uint8_t* d = static_cast<const uint8_t*>(r->data);
            reps = 0;
            for (int i = 7; i >= 0; --i) reps = (reps << 8) | d[i];
            if (reps < 1 || reps > kMaxReps)
                return fail(err, CPN_E_INVALID_ARGUMENT,
                            "%s: input \"reps\" must be between 1 and 2^40, got %" PRIu64, name, reps);
        }
        if (ctl != nullptr && ctl->cancel != nullptr && *ctl->cancel != 0)
            return fail(err, CPN_E_CANCELLED, "%s: cancelled before start", name);
        if (ctl != nullptr && ctl->deadline_ns != 0 && now_ns() > ctl->deadline_ns)
            return fail(err, CPN_E_DEADLINE_EXCEEDED, "%s: deadline passed before start", name);

        const unsigned T = b->pool.size();
        b->abort.store(0);
        std::fill(b->reps_done.begin(), b->reps_done.end(), 0);

        if (is_mem(b->kind)) {
            /* Perturb the source at the sampled elements, so this run's result differs from the
             * previous one's and a skipped pass cannot verify. */
            double* src = b->kind == Kind::MemCopy ? b->arr[0] : b->arr[1];
            b->gen = 3 + b->runs++;
            for (size_t i : b->samples) src[i] = rand_elem(b->params.seed, b->gen, i);
        }

        const int64_t throttle_before = throttle_count(b->cpus);
        uint64_t t0 = 0, t1 = 0;
        Bench* bp = b;
        const std::function<void(unsigned)> job = [&, bp](unsigned t) {
            const Kind k = bp->kind;
            uint64_t done = 0;
            if (is_compute(k)) std::memcpy(bp->states[t], bp->initial.data(), bp->initial.size());
            uint64_t clock_x = 1000 * t;
            bp->pool.barrier();
            if (t == 0) t0 = now_ns();
            const uint64_t c0 = thread_cpu_ns();
            if (is_compute(k)) {
                for (; done < reps && !should_stop(*bp, ctl); ++done) bp->ck.fn(bp->states[t], bp->iters_per_rep);
            } else if (k == Kind::MemCopy) {
                const size_t lo = bp->lo[t], len = bp->hi[t] - bp->lo[t];
                for (; done < reps && !should_stop(*bp, ctl); ++done)
                    bp->mk.copy(bp->arr[2] + lo, bp->arr[0] + lo, len, bp->nt);
            } else if (k == Kind::MemTriad) {
                const size_t lo = bp->lo[t], len = bp->hi[t] - bp->lo[t];
                for (; done < reps && !should_stop(*bp, ctl); ++done)
                    bp->mk.triad(bp->arr[0] + lo, bp->arr[1] + lo, bp->arr[2] + lo, bp->scalar, len, bp->nt);
            } else if (k == Kind::Clock) {
                for (; done < reps && !should_stop(*bp, ctl); ++done)
                    clock_x = bp->clk.fn(clock_x, bp->iters_per_rep);
                bp->clock_out[t] = clock_x;
            }
            bp->reps_done[t] = done;
            bp->cpu_ns[t] = thread_cpu_ns() - c0;
            if (is_compute(k) && done == reps) {
                // The clock this worker ran at, right after its FMA loop, before it can change:
                // a short dependent-add chain (kClockProbeIters x 64 adds, ~1 ms), timed on the
                // worker's own CPU time. The peak of this sample is computed at this clock.
                // In slices, keeping the fastest: an interrupt or a hypervisor steal can only
                // make a slice look slower than the clock, never faster.
                uint64_t x = 7 * t, best = UINT64_MAX;
                for (int slice = 0; slice < kClockProbeSlices; ++slice) {
                    const uint64_t p0 = thread_cpu_ns();
                    x = bp->clk.fn(x, kClockProbeIters / kClockProbeSlices);
                    best = std::min(best, thread_cpu_ns() - p0);
                }
                bp->probe_out[t] = x;
                bp->probe_ns[t] = best;
            }
            bp->pool.barrier();
            if (t == 0) t1 = now_ns();
        };
        b->pool.run(job);
        const int64_t throttle_after = throttle_count(b->cpus);

        const int ab = b->abort.load();
        if (ab == static_cast<int>(Abort::Cancelled))
            return fail(err, CPN_E_CANCELLED, "%s: cancelled after %" PRIu64 " of %" PRIu64 " reps",
                        name, b->reps_done[0], reps);
        if (ab == static_cast<int>(Abort::Deadline))
            return fail(err, CPN_E_DEADLINE_EXCEEDED,
                        "%s: deadline passed after %" PRIu64 " of %" PRIu64 " reps", name,
                        b->reps_done[0], reps);
        for (unsigned t = 0; t < T; ++t)
            if (b->reps_done[t] != reps)
                return fail(err, CPN_E_INTERNAL, "%s: worker %u ran %" PRIu64 " of %" PRIu64 " reps",
                            name, t, b->reps_done[t], reps);

        /* Compute and clock figures are what the cores deliver while they run: timed on the
         * slowest worker's own CPU time, so a node busy with other work (an edge node usually
         * is) measures its hardware, not the share it got; the share is telemetry's business.
         * Memory bandwidth is shared with every other process, so it is timed on the wall
         * clock, and a sample in which a worker lost its CPU for more than 10 % of it is
         * marked "preempted" (the core discards and counts such samples). */
        const double wall = static_cast<double>(t1 - t0) * 1e-9;
        uint64_t max_cpu = 0, min_cpu = UINT64_MAX;
        for (unsigned t = 0; t < T; ++t) {
            max_cpu = std::max(max_cpu, b->cpu_ns[t]);
            min_cpu = std::min(min_cpu, b->cpu_ns[t]);
        }
        const bool cpu_timed = !is_mem(b->kind) && max_cpu > 0;
        const double seconds = cpu_timed ? std::min(wall, static_cast<double>(max_cpu) * 1e-9) : wall;
        const bool preempted = is_mem(b->kind) && wall > 0 && static_cast<double>(min_cpu) * 1e-9 < 0.9 * wall;
        double ops = 0;
        std::string check;
        const char* isa = "";
        std::string isa_buf;
        double clock_mhz = 0;
        if (is_compute(b->kind)) {
            const uint64_t iters = reps * b->iters_per_rep;
            if (cpn_status st = verify_compute(*b, iters, check, err); st != CPN_OK) return st;
            ops = b->ck.ops_per_iter * static_cast<double>(iters) * T;
            isa = b->ck.isa;
            // The sample's clock: mean over the workers of their probe chains.
            double mhz_sum = 0;
            unsigned probes = 0;
            for (unsigned t = 0; t < T; ++t) {
                if (b->probe_out[t] != 7ull * t + 64ull * kClockProbeIters)
                    return fail(err, CPN_E_INTERNAL, "%s: worker %u's clock probe chain ended at %" PRIu64
                                ", expected %" PRIu64, name, t, b->probe_out[t], static_cast<uint64_t>(7ull * t + 64ull * kClockProbeIters));
                if (b->probe_ns[t] > 0) {
                    mhz_sum += 64.0 * (kClockProbeIters / kClockProbeSlices) /
                               (static_cast<double>(b->probe_ns[t]) * 1e-9) / 1e6;
                    ++probes;
                }
            }
            if (probes > 0 && b->clk.exact) clock_mhz = mhz_sum / probes;
        } else if (is_mem(b->kind)) {
            if (cpn_status st = verify_mem(*b, check, err); st != CPN_OK) return st;
            ops = static_cast<double>(b->kind == Kind::MemCopy ? 2 : 3) * static_cast<double>(b->n) *
                  sizeof(double) * static_cast<double>(reps);
            isa_buf = std::string(b->mk.isa) + (b->nt ? "+nt" : "");
            isa = isa_buf.c_str();
        } else if (b->kind == Kind::Clock) {
            const uint64_t adds = 64 * b->iters_per_rep * reps;
            for (unsigned t = 0; t < T; ++t) {
                const uint64_t want = 1000ull * t + adds;
                if (b->clock_out[t] != want)
                    return fail(err, CPN_E_INTERNAL,
                                "%s: verification failed: worker %u's add chain expected %" PRIu64
                                ", got %" PRIu64, name, t, want, b->clock_out[t]);
            }
            ops = static_cast<double>(adds) * T;
            clock_mhz = seconds > 0 ? ops / T / seconds / 1e6 : 0;
            char buf[200];
            std::snprintf(buf, sizeof buf,
                          "all %u threads' chains of %" PRIu64 " dependent adds end at start + %" PRIu64
                          "%s", T, adds, adds,
                          b->clk.exact ? "" : " (portable chain: one add per cycle not guaranteed)");
            check = buf;
            isa = b->clk.isa;
        }
        if (ctl != nullptr && ctl->progress != nullptr) ctl->progress(ctl->user, 1.0, "sample done");

        std::string json = "{\"ops\":";
        char num[64];
        std::snprintf(num, sizeof num, "%.17g", ops);
        json += num;
        std::snprintf(num, sizeof num, "%.9g", seconds);
        json += ",\"seconds\":";
        json += num;
        json += ",\"verified\":true,\"check\":";
        json += nlohmann::json(check + (cpu_timed ? "; timed on the workers' own CPU time" : "; timed on the wall clock")).dump();
        std::snprintf(num, sizeof num, "%.9g", wall);
        json += ",\"wall_seconds\":";
        json += num;
        if (preempted) json += ",\"preempted\":true";
        json += ",\"threads\":" + std::to_string(T);
        json += ",\"isa\":" + nlohmann::json(std::string(isa)).dump();
        if (is_mem(b->kind)) json += ",\"bytes\":" + std::to_string(b->n * sizeof(double));  // per array
        if (clock_mhz > 0) {
            std::snprintf(num, sizeof num, "%.1f", clock_mhz);
            json += ",\"clock_mhz\":";
            json += num;
        }
        if (throttle_before >= 0 && throttle_after >= 0)
            json += std::string(",\"throttled\":") + (throttle_after > throttle_before ? "true" : "false");
        json += "}";
        if (io == nullptr || io->result_json == nullptr || io->result_json_capacity <= json.size())
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: result_json capacity %" PRIu64 " is too small for the %zu-byte result",
                        name, io != nullptr ? io->result_json_capacity : 0, json.size() + 1);
        std::memcpy(io->result_json, json.c_str(), json.size() + 1);
        return CPN_OK;
    } catch (const std::bad_alloc&) {
        return fail(err, CPN_E_OUT_OF_MEMORY, "%s: out of memory", b->name.c_str());
    } catch (const std::exception& e) {
        return fail(err, CPN_E_INTERNAL, "%s: %s", b->name.c_str(), e.what());
    }
}

void release(Bench* b) { delete b; }

void describe_device(cpn_device_desc* d) {
    const Features& f = features();
    d->precisions |= CPN_PREC_FP64 | CPN_PREC_FP32;
    if (f.avx512_bf16 || f.amx_bf16) d->precisions |= CPN_PREC_BF16;
    if (f.avx512_vnni || f.avx_vnni || f.amx_int8 || f.asimddp) d->precisions |= CPN_PREC_INT8;
    if (f.avx512_fp16 || f.fphp) d->precisions |= CPN_PREC_FP16;
    std::string why;
    std::string isa = select_fp32(why).isa;
    for (ComputeKernel k : {select_bf16(why), select_int8(why), select_fp16(why),
                            select_mm_bf16(why), select_mm_int8(why)})
        if (k.fn != nullptr && isa.find(k.isa) == std::string::npos) isa += std::string(",") + k.isa;
    cpn::plugin::attr_str(d, "cpu.bench_isa", isa);
}

}  // namespace cpn::cpubench
