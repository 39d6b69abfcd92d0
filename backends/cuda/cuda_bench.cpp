// cuda_bench.cpp: the bench.* workloads (backends/api/cpn_bench.h) on CUDA: parameters, device
// setup, the timed repetitions, NVML clock readings and the host models that verify each
// kernel of kernels/bench.cu and kernels/bench_sm90a.cu. A kernel and its host model must
// change together.
#include "cuda_bench.hpp"

#include "cpn_backend_util.hpp"
#include "cpn_bench.h"
#include "cuda_errors.hpp"
#include "cuda_exec.hpp"
#include "cuda_log.hpp"
#include "cuda_telemetry.hpp"
#include "embedded_fatbin.hpp"
#include "nvml_api.hpp"
#include "params_json.hpp"

#include <time.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#ifndef CPN_CUDA_MIN_ARCH
#define CPN_CUDA_MIN_ARCH 75
#endif
#ifndef CPN_CUDA_KERNEL_TARGETS
#define CPN_CUDA_KERNEL_TARGETS "sm_75 sm_80 sm_90 compute_90"
#endif
#ifndef CPN_CUDA_HAVE_SM90A
#define CPN_CUDA_HAVE_SM90A 0
#endif

namespace cpn::cuda {

using plugin::copy_str;
using plugin::fail;

namespace {

enum class Kind {
    Fp64, Fp32, Fp16, Bf16, Int8,
    MmFp16, MmBf16, MmTf32, MmInt8,
    MemCopy, MemTriad,
    H2dPinned, H2dPageable, D2hPinned, D2hPageable,
    Launch
};

enum class Family { Vector, Matrix, Memory, Transfer, Launch };

struct KindInfo {
    const char* name;
    Kind kind;
    Family family;
    int min_cc; /* 10 * major + minor */
    const char* need; /* what the minimum compute capability is for */
};

constexpr KindInfo kKinds[] = {
    {"bench.fp64", Kind::Fp64, Family::Vector, 0, ""},
    {"bench.fp32", Kind::Fp32, Family::Vector, 0, ""},
    {"bench.fp16", Kind::Fp16, Family::Vector, 0, ""},
    {"bench.bf16", Kind::Bf16, Family::Vector, 80, "bf16 FMA (fma.rn.bf16x2)"},
    {"bench.int8", Kind::Int8, Family::Vector, 0, ""},
    {"bench.mm.fp16", Kind::MmFp16, Family::Matrix, 0, ""},
    {"bench.mm.bf16", Kind::MmBf16, Family::Matrix, 80, "bf16 tensor cores (mma.sync m16n8k16 bf16)"},
    {"bench.mm.tf32", Kind::MmTf32, Family::Matrix, 80, "tf32 tensor cores (mma.sync m16n8k8 tf32)"},
    {"bench.mm.int8", Kind::MmInt8, Family::Matrix, 0, ""},
    {"bench.mem.copy", Kind::MemCopy, Family::Memory, 0, ""},
    {"bench.mem.triad", Kind::MemTriad, Family::Memory, 0, ""},
    {"bench.xfer.h2d.pinned", Kind::H2dPinned, Family::Transfer, 0, ""},
    {"bench.xfer.h2d.pageable", Kind::H2dPageable, Family::Transfer, 0, ""},
    {"bench.xfer.d2h.pinned", Kind::D2hPinned, Family::Transfer, 0, ""},
    {"bench.xfer.d2h.pageable", Kind::D2hPageable, Family::Transfer, 0, ""},
    {"bench.launch", Kind::Launch, Family::Launch, 0, ""},
};

constexpr const char* kKindsText =
    "bench.fp64 bench.fp32 bench.fp16 bench.bf16 bench.int8 bench.mm.fp16 bench.mm.bf16 "
    "bench.mm.tf32 bench.mm.int8 bench.mem.copy bench.mem.triad bench.xfer.h2d.pinned "
    "bench.xfer.h2d.pageable bench.xfer.d2h.pinned bench.xfer.d2h.pageable bench.launch";

const KindInfo* find_kind(const char* name) {
    for (const KindInfo& k : kKinds) {
        if (std::strcmp(k.name, name) == 0) return &k;
    }
    return nullptr;
}

/* ---- the shared constants of kernels and host models ------------------------------------ */

constexpr unsigned kChains = 16;       /* CPN_CHAINS in bench.cu */
constexpr unsigned kPatterns = 16;     /* start values repeat every 16 threads */
constexpr unsigned kVectorIters = 8192; /* steps of every chain in one launch (multiple of CPN_UNROLL = 16) */
constexpr unsigned kMmaIters = 4096;    /* mma.sync trips (8 tiles each) in one launch */
constexpr unsigned kMmaTiles = 8;       /* CPN_MM_TILES */
constexpr unsigned kWgmmaIters = 2048;  /* wgmma trips (4 wgmma each) in one launch */
constexpr unsigned kWgmmaUnroll = 4;    /* CPN_WGMMA_UNROLL */
constexpr int kMmBeta = 3;              /* every element of B */
constexpr double kTriadScalar = 3.0;
constexpr uint64_t kDefaultSeed = 1;
constexpr uint64_t kMinDefaultBytes = 256ull << 20;
constexpr uint64_t kDefaultXferBytes = 256ull << 20;

/* The recurrences x <- fma(x, a, b), all converging to 1.5 from [1, 2). */
constexpr float kFp32A = 1.0f - 1.0f / 65536.0f;
constexpr float kFp32B = 1.5f / 65536.0f;
constexpr double kFp64A = 1.0 - 1.0 / 65536.0;
constexpr double kFp64B = 1.5 / 65536.0;
constexpr double kFp16A = 1.0 - 1.0 / 64.0;
constexpr double kFp16B = 1.5 / 64.0;
constexpr double kBf16A = 1.0 - 1.0 / 16.0;
constexpr double kBf16B = 1.5 / 16.0;
constexpr uint32_t kInt8B = 0xF905FE03u; /* bytes 3, -2, 5, -7 */

/* mix32 of bench.cu. */
uint32_t mix32(uint32_t v) {
    v ^= v >> 16;
    v *= 0x7FEB352Du;
    v ^= v >> 15;
    v *= 0x846CA68Bu;
    v ^= v >> 16;
    return v;
}

/* mm_val of bench.cu / bench_sm90a.cu. */
int mm_val(unsigned l, unsigned r, unsigned e) { return static_cast<int>((l * 7u + r * 3u + e * 5u) % 5u) - 2; }

/* splitmix64 of seed + (i + 1) * golden: seeded_double of bench.cu, and the transfer pattern. */
uint64_t seeded_u64(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
double seeded_double(uint64_t seed, uint64_t i) {
    return static_cast<double>(seeded_u64(seed, i) >> 11) * (1.0 / 9007199254740992.0);
}

/* `v` rounded to `bits` significant bits, to nearest even (v normal in the target format: the
 * models keep every value in [0.5, 4)). */
double round_bits(double v, int bits) {
    if (v == 0.0) return 0.0;
    int e = 0;
    std::frexp(v, &e); /* v = f * 2^e, f in [0.5, 1) */
    const double scaled = std::ldexp(v, bits - e);
    return std::ldexp(std::nearbyint(scaled), e - bits); /* FE_TONEAREST: ties to even */
}

/* fp16 / bf16 bits of a normal value with 11 / 8 significant bits. */
uint32_t f16_bits(double v) {
    int e = 0;
    const double f = std::frexp(v, &e); /* v = f * 2^e */
    const uint32_t mant = static_cast<uint32_t>(std::ldexp(f, 11)) & 0x3FFu;
    return (v < 0 ? 0x8000u : 0u) | (static_cast<uint32_t>(e - 1 + 15) << 10) | mant;
}
uint32_t bf16_bits(double v) {
    int e = 0;
    const double f = std::frexp(v, &e);
    const uint32_t mant = static_cast<uint32_t>(std::ldexp(f, 8)) & 0x7Fu;
    return (v < 0 ? 0x8000u : 0u) | (static_cast<uint32_t>(e - 1 + 127) << 7) | mant;
}
uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

/* One chain of the half / bfloat16 recurrence, stopping early at a fixed point (a and b are
 * constant, so a fixed point stays one). */
double narrow_chain(double x, double a, double b, int bits, unsigned iters) {
    for (unsigned i = 0; i < iters; ++i) {
        const double next = round_bits(x * a + b, bits); /* x * a + b is exact in double */
        if (next == x) break;
        x = next;
    }
    return x;
}

/* ---- parameters ------------------------------------------------------------------------- */

struct BenchParams {
    uint64_t reps = 1;
    uint64_t bytes = 0; /* 0: the kind's default */
    bool bytes_given = false;
    uint64_t seed = kDefaultSeed;
};

/* An unsigned JSON integer literal ("0", "42"); false for anything else. */
bool parse_u64(const std::string& text, uint64_t* out) {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return false;
    if (text.size() > 1 && text[0] == '0') return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
    return ec == std::errc() && end == text.data() + text.size();
}

bool parse_params(const char* kind, const char* json, BenchParams* p, std::string* error) {
    std::vector<std::pair<std::string, std::string>> members;
    std::string problem;
    if (!json_object_members(json, &members, &problem)) {
        *error = std::string(kind) + ": " + problem;
        return false;
    }
    bool seen[4] = {false, false, false, false};
    for (const auto& [key, value] : members) {
        static const char* const kKeys[] = {"reps", "bytes", "seed", "threads"};
        int k = 0;
        while (k < 4 && key != kKeys[k]) ++k;
        if (k == 4) {
            *error = std::string(kind) + ": unknown params_json key \"" + key +
                     "\" (known: reps, bytes, seed, threads)";
            return false;
        }
        if (seen[k]) {
            *error = std::string(kind) + ": params_json key \"" + key + "\" given twice";
            return false;
        }
        seen[k] = true;
        uint64_t v = 0;
        if (!parse_u64(value, &v)) {
            *error = std::string(kind) + ": params_json \"" + key +
                     "\" must be an unsigned integer, got " + value;
            return false;
        }
        switch (k) {
            case 0:
                if (v == 0) {
                    *error = std::string(kind) + ": params_json \"reps\" must be >= 1, got 0";
                    return false;
                }
                p->reps = v;
                break;
            case 1:
                if (v < 16) {
                    *error = std::string(kind) + ": params_json \"bytes\" must be >= 16, got " + value;
                    return false;
                }
                p->bytes = v;
                p->bytes_given = true;
                break;
            case 2: p->seed = v; break;
            default:
                /* "threads" (CPU only in the contract): accepted and ignored, GPU kernels size
                 * their own grids. */
                if (v > 0xFFFFFFFFull) {
                    *error = std::string(kind) + ": params_json \"threads\" must be a uint32, got " + value;
                    return false;
                }
                break;
        }
    }
    return true;
}

/* ---- device and errors ------------------------------------------------------------------ */

cpn_status status_for(CUresult r) {
    if (is_sticky(r)) return CPN_E_DEVICE_LOST;
    if (r == CUDA_ERROR_OUT_OF_MEMORY) return CPN_E_OUT_OF_MEMORY;
    return CPN_E_INTERNAL;
}

cpn_status cuda_fail(const DriverApi* api, cpn_msg* err, CUresult r, const char* kind,
                     const std::string& what) {
    const cpn_status st = status_for(r);
    const std::string text = std::string(kind) + ": " + what + " failed: " + error_text(api, r);
    if (st == CPN_E_DEVICE_LOST) log(4, text + "; the device needs a reset");
    return fail(err, st, "%s", text.c_str());
}

int device_attr(const cpn_device_handle* d, CUdevice_attribute a, int fallback) {
    int v = 0;
    return d->api->device_get_attribute(&v, a, d->dev) == CUDA_SUCCESS ? v : fallback;
}

/* Why this device cannot run `k`, or "". */
std::string support_problem(const cpn_device_handle* d, const KindInfo& k) {
    const int cc = d->cc_major * 10 + d->cc_minor;
    char buf[384];
    if (cc < CPN_CUDA_MIN_ARCH) {
        std::snprintf(buf, sizeof buf,
                      "%s needs compute capability >= %d.%d; this device is %d.%d (kernels built "
                      "for " CPN_CUDA_KERNEL_TARGETS ")",
                      k.name, CPN_CUDA_MIN_ARCH / 10, CPN_CUDA_MIN_ARCH % 10, d->cc_major, d->cc_minor);
        return buf;
    }
    if (cc < k.min_cc) {
        std::snprintf(buf, sizeof buf, "%s: this device (compute capability %d.%d) has no %s; needs %d.%d",
                      k.name, d->cc_major, d->cc_minor, k.need, k.min_cc / 10, k.min_cc % 10);
        return buf;
    }
    return "";
}

uint64_t default_mem_bytes(const cpn_device_handle* d) {
    const uint64_t l2 = static_cast<uint64_t>(device_attr(d, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, 0));
    return std::max<uint64_t>(4 * l2, kMinDefaultBytes);
}

/* Whether the wgmma kernels run on this device. */
bool use_wgmma(const cpn_device_handle* d, Family f) {
    return CPN_CUDA_HAVE_SM90A && f == Family::Matrix && d->cc_major == 9 && d->cc_minor == 0;
}

}  // namespace

/* ---- prepared state --------------------------------------------------------------------- */

struct BenchState {
    cpn_device_handle* device = nullptr;
    const KindInfo* info = nullptr;
    BenchParams params;
    std::string pci; /* for NVML */

    CUmodule module = nullptr;
    CUmodule wgmma_module = nullptr;
    CUfunction fn = nullptr;
    CUfunction fill_fn = nullptr;
    CUstream stream = nullptr;
    CUevent ev_start = nullptr, ev_stop = nullptr;
    CUevent ring[2] = {nullptr, nullptr};

    unsigned block = 256, grid = 1;
    unsigned iters = 0;
    bool wgmma = false;
    std::string path; /* the kernel path, named in "check" */

    /* compute kinds */
    CUdeviceptr out = 0;
    uint64_t out_count = 0; /* threads (vector) or warps (matrix) */
    std::vector<double> expect_real;      /* fp32/fp64/fp16/bf16: per start pattern */
    std::vector<uint32_t> expect_u32;     /* int8: per start pattern */
    std::vector<long long> expect_i64;    /* matrix: per warp & 7 (mma.sync) or warpgroup & 7 (wgmma) */
    double ops_per_rep = 0.0;

    /* memory kinds: arrays of n2 double2 */
    CUdeviceptr a = 0, b = 0, c = 0;
    uint64_t n2 = 0;

    /* transfers */
    CUdeviceptr dbuf = 0;
    void* host = nullptr;
    bool host_pinned = false;
    uint64_t bytes = 0;

    /* launch */
    CUdeviceptr counter = 0;
};

namespace {

/* Frees what `s` holds; the caller has pushed the context. */
void free_state(BenchState* s) {
    const DriverApi* api = s->device->api;
    if (s->stream != nullptr) api->stream_synchronize(s->stream);
    for (CUdeviceptr* p : {&s->out, &s->a, &s->b, &s->c, &s->dbuf, &s->counter}) {
        if (*p != 0) api->mem_free(*p);
        *p = 0;
    }
    if (s->host != nullptr) {
        if (s->host_pinned) {
            api->mem_free_host(s->host);
        } else {
            std::free(s->host);
        }
        s->host = nullptr;
    }
    for (CUevent* e : {&s->ev_start, &s->ev_stop, &s->ring[0], &s->ring[1]}) {
        if (*e != nullptr) api->event_destroy(*e);
        *e = nullptr;
    }
    if (s->stream != nullptr) api->stream_destroy(s->stream);
    s->stream = nullptr;
    if (s->module != nullptr) api->module_unload(s->module);
    if (s->wgmma_module != nullptr) api->module_unload(s->wgmma_module);
    s->module = s->wgmma_module = nullptr;
}

cpn_status load_module(BenchState* s, const unsigned char* image, const char* what, CUmodule* out,
                       cpn_msg* err) {
    const DriverApi* api = s->device->api;
    const CUresult r = api->module_load_data(out, image);
    if (r == CUDA_SUCCESS) return CPN_OK;
    switch (r) {
        case CUDA_ERROR_NO_BINARY_FOR_GPU:
        case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
        case CUDA_ERROR_INVALID_PTX:
        case CUDA_ERROR_JIT_COMPILER_NOT_FOUND:
        case CUDA_ERROR_JIT_COMPILATION_DISABLED:
            return fail(err, CPN_E_UNSUPPORTED, "%s: cuModuleLoadData(%s) failed on compute capability %d.%d: %s",
                        s->info->name, what, s->device->cc_major, s->device->cc_minor,
                        error_text(api, r).c_str());
        default: return cuda_fail(api, err, r, s->info->name, std::string("cuModuleLoadData(") + what + ")");
    }
}

cpn_status get_function(BenchState* s, CUmodule m, const char* name, CUfunction* out, cpn_msg* err) {
    const CUresult r = s->device->api->module_get_function(out, m, name);
    if (r != CUDA_SUCCESS) {
        return cuda_fail(s->device->api, err, r, s->info->name, std::string("cuModuleGetFunction(") + name + ")");
    }
    return CPN_OK;
}

/* One full wave: the SM count times the blocks of `block` threads one SM holds. */
cpn_status size_grid(BenchState* s, CUfunction fn, unsigned block, cpn_msg* err) {
    const DriverApi* api = s->device->api;
    int per_sm = 0;
    const CUresult r = api->occupancy_max_active_blocks(&per_sm, fn, static_cast<int>(block), 0);
    if (r != CUDA_SUCCESS) {
        return cuda_fail(api, err, r, s->info->name, "cuOccupancyMaxActiveBlocksPerMultiprocessor");
    }
    if (per_sm < 1) per_sm = 1;
    const int sms = device_attr(s->device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 1);
    s->block = block;
    s->grid = static_cast<unsigned>(per_sm) * static_cast<unsigned>(sms > 0 ? sms : 1);
    return CPN_OK;
}

cpn_status alloc_device(BenchState* s, CUdeviceptr* p, uint64_t bytes, const char* what, cpn_msg* err) {
    const DriverApi* api = s->device->api;
    const CUresult r = api->mem_alloc(p, bytes);
    if (r == CUDA_SUCCESS) return CPN_OK;
    if (r == CUDA_ERROR_OUT_OF_MEMORY) {
        size_t free_b = 0, total_b = 0;
        api->mem_get_info(&free_b, &total_b);
        return fail(err, CPN_E_OUT_OF_MEMORY,
                    "%s: cuMemAlloc of %s (%" PRIu64 " bytes) failed: %s; %zu of %zu bytes free",
                    s->info->name, what, bytes, error_text(api, r).c_str(), free_b, total_b);
    }
    return cuda_fail(api, err, r, s->info->name, std::string("cuMemAlloc(") + what + ")");
}

/* ---- host models -------------------------------------------------------------------------- */

void model_vector(BenchState* s) {
    const unsigned it = s->iters;
    switch (s->info->kind) {
        case Kind::Fp32:
            for (unsigned p = 0; p < kPatterns; ++p) {
                double sum = 0.0;
                for (unsigned j = 0; j < kChains; ++j) {
                    float x = 1.0f + static_cast<float>(p * 16 + j) * (1.0f / 256.0f);
                    for (unsigned i = 0; i < it; ++i) x = std::fma(x, kFp32A, kFp32B);
                    sum += static_cast<double>(x);
                }
                s->expect_real.push_back(sum);
            }
            break;
        case Kind::Fp64:
            for (unsigned p = 0; p < kPatterns; ++p) {
                double sum = 0.0;
                for (unsigned j = 0; j < kChains; ++j) {
                    double x = 1.0 + static_cast<double>(p * 16 + j) * (1.0 / 256.0);
                    for (unsigned i = 0; i < it; ++i) x = std::fma(x, kFp64A, kFp64B);
                    sum = sum + x;
                }
                s->expect_real.push_back(sum);
            }
            break;
        case Kind::Fp16:
        case Kind::Bf16: {
            const bool half = s->info->kind == Kind::Fp16;
            for (unsigned p = 0; p < kPatterns; ++p) {
                double sum = 0.0;
                for (unsigned j = 0; j < kChains; ++j) {
                    for (unsigned h = 0; h < 2; ++h) {
                        const unsigned k = p * 32 + 2 * j + h;
                        const double x0 = half ? 1.0 + (k & 511u) / 512.0 : 1.0 + (k & 127u) / 128.0;
                        sum += half ? narrow_chain(x0, kFp16A, kFp16B, 11, it)
                                    : narrow_chain(x0, kBf16A, kBf16B, 8, it);
                    }
                }
                s->expect_real.push_back(sum);
            }
            break;
        }
        case Kind::Int8: {
            int32_t dot_b[4];
            for (int q = 0; q < 4; ++q) dot_b[q] = static_cast<int8_t>((kInt8B >> (8 * q)) & 0xFFu);
            for (unsigned p = 0; p < kPatterns; ++p) {
                uint32_t sum = 0;
                for (unsigned j = 0; j < kChains; ++j) {
                    const uint32_t idx = p * 16 + j;
                    const uint32_t av = mix32(idx);
                    int32_t dot = 0;
                    for (int q = 0; q < 4; ++q) dot += static_cast<int8_t>((av >> (8 * q)) & 0xFFu) * dot_b[q];
                    sum += idx + static_cast<uint32_t>(it) * static_cast<uint32_t>(dot);
                }
                s->expect_u32.push_back(sum);
            }
            break;
        }
        default: break;
    }
}

struct MmShape {
    unsigned m, n, k;
    unsigned regs, elems; /* A fragment registers a thread, elements a register */
    const char* ptx;
};

MmShape mm_shape(const BenchState* s) {
    const bool ampere = s->device->cc_major * 10 + s->device->cc_minor >= 80;
    switch (s->info->kind) {
        case Kind::MmFp16:
            if (s->wgmma) return {64, 256, 16, 4, 2, "wgmma.mma_async m64n256k16 f32.f16.f16 (sm_90a)"};
            return ampere ? MmShape{16, 8, 16, 4, 2, "mma.sync m16n8k16 f32.f16.f16.f32"}
                          : MmShape{16, 8, 8, 2, 2, "mma.sync m16n8k8 f32.f16.f16.f32"};
        case Kind::MmBf16:
            if (s->wgmma) return {64, 256, 16, 4, 2, "wgmma.mma_async m64n256k16 f32.bf16.bf16 (sm_90a)"};
            return {16, 8, 16, 4, 2, "mma.sync m16n8k16 f32.bf16.bf16.f32"};
        case Kind::MmTf32:
            if (s->wgmma) return {64, 256, 8, 4, 1, "wgmma.mma_async m64n256k8 f32.tf32.tf32 (sm_90a)"};
            return {16, 8, 8, 4, 1, "mma.sync m16n8k8 f32.tf32.tf32.f32"};
        default:
            if (s->wgmma) return {64, 128, 32, 4, 4, "wgmma.mma_async m64n128k32 s32.s8.s8 (sm_90a)"};
            return ampere ? MmShape{16, 8, 32, 4, 4, "mma.sync m16n8k32 s32.s8.s8.s32"}
                          : MmShape{8, 8, 16, 1, 4, "mma.sync m8n8k16 s32.s8.s8.s32"};
    }
}

/* Expected accumulator sums: per warp & 7 (mma.sync: tiles start at (warp & 7) + j + 1) or per
 * warpgroup & 7 (wgmma: everything starts at (warpgroup & 7) + 1). */
void model_matrix(BenchState* s) {
    const MmShape sh = mm_shape(s);
    const unsigned threads = s->wgmma ? 128 : 32;
    long long sum_a = 0;
    for (unsigned t = 0; t < threads; ++t)
        for (unsigned r = 0; r < sh.regs; ++r)
            for (unsigned e = 0; e < sh.elems; ++e) sum_a += mm_val(t, r, e);
    for (unsigned g = 0; g < 8; ++g) {
        long long v = 0;
        if (s->wgmma) {
            v = static_cast<long long>(sh.m) * sh.n * (g + 1) +
                static_cast<long long>(s->iters) * kWgmmaUnroll * sh.n * kMmBeta * sum_a;
        } else {
            for (unsigned j = 0; j < kMmaTiles; ++j) v += 128LL * (g + j + 1); /* 4 registers x 32 lanes */
            v += static_cast<long long>(s->iters) * kMmaTiles * sh.n * kMmBeta * sum_a;
        }
        s->expect_i64.push_back(v);
    }
}

/* ---- setup per family ------------------------------------------------------------------- */

cpn_status setup_compute(BenchState* s, cpn_msg* err) {
    const Kind k = s->info->kind;
    const char* name = nullptr;
    unsigned block = 256;
    CUmodule m = s->module;
    if (s->info->family == Family::Vector) {
        s->iters = kVectorIters;
        name = k == Kind::Fp64 ? "cpn_bench_fp64" : k == Kind::Fp32 ? "cpn_bench_fp32"
             : k == Kind::Fp16 ? "cpn_bench_fp16" : k == Kind::Bf16 ? "cpn_bench_bf16" : "cpn_bench_int8";
    } else if (s->wgmma) {
        s->iters = kWgmmaIters;
        m = s->wgmma_module;
        name = k == Kind::MmFp16 ? "cpn_bench_wgmma_fp16" : k == Kind::MmBf16 ? "cpn_bench_wgmma_bf16"
             : k == Kind::MmTf32 ? "cpn_bench_wgmma_tf32" : "cpn_bench_wgmma_int8";
    } else {
        s->iters = kMmaIters;
        block = 128;
        name = k == Kind::MmFp16 ? "cpn_bench_mm_fp16" : k == Kind::MmBf16 ? "cpn_bench_mm_bf16"
             : k == Kind::MmTf32 ? "cpn_bench_mm_tf32" : "cpn_bench_mm_int8";
    }
    if (cpn_status st = get_function(s, m, name, &s->fn, err); st != CPN_OK) return st;
    if (cpn_status st = size_grid(s, s->fn, block, err); st != CPN_OK) return st;
    const uint64_t threads = static_cast<uint64_t>(s->grid) * s->block;
    if (s->info->family == Family::Vector) {
        s->out_count = threads;
        const uint64_t elem = (k == Kind::Fp32 || k == Kind::Fp64) ? 8 : 4;
        if (cpn_status st = alloc_device(s, &s->out, threads * elem, "the per-thread results", err); st != CPN_OK) {
            return st;
        }
        /* ops: one FMA = 2; a half2 / bf16x2 FMA = 2 FMA; one dp4a = 4 byte MACs = 8. */
        const double per_step = (k == Kind::Fp32 || k == Kind::Fp64) ? 2.0 : (k == Kind::Int8 ? 8.0 : 4.0);
        s->ops_per_rep = static_cast<double>(threads) * s->iters * kChains * per_step;
        model_vector(s);
        s->path = k == Kind::Fp64 ? "DFMA" : k == Kind::Fp32 ? "FFMA" : k == Kind::Fp16 ? "HFMA2 (fma.rn.f16x2)"
                : k == Kind::Bf16 ? "HFMA2.BF16 (fma.rn.bf16x2)" : "IDP4A (dp4a.s32.s32)";
    } else {
        const uint64_t warps = threads / 32;
        s->out_count = warps;
        if (cpn_status st = alloc_device(s, &s->out, warps * 8, "the per-warp sums", err); st != CPN_OK) return st;
        const MmShape sh = mm_shape(s);
        const double per_mma = 2.0 * sh.m * sh.n * sh.k;
        s->ops_per_rep = s->wgmma ? static_cast<double>(threads / 128) * s->iters * kWgmmaUnroll * per_mma
                                  : static_cast<double>(warps) * s->iters * kMmaTiles * per_mma;
        s->path = sh.ptx;
        model_matrix(s);
    }
    return CPN_OK;
}

cpn_status fill_array(BenchState* s, CUdeviceptr p, uint64_t seed, cpn_msg* err) {
    const DriverApi* api = s->device->api;
    unsigned long long n = s->n2 * 2;
    unsigned long long sd = seed;
    void* args[] = {&p, &n, &sd};
    CUresult r = api->launch_kernel(s->fill_fn, s->grid, 1, 1, s->block, 1, 1, 0, s->stream, args, nullptr);
    if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, s->info->name, "cuLaunchKernel(cpn_bench_fill)");
    return CPN_OK;
}

cpn_status setup_memory(BenchState* s, cpn_msg* err) {
    const uint64_t bytes = s->params.bytes_given ? s->params.bytes : default_mem_bytes(s->device);
    s->n2 = bytes / 16;
    s->bytes = s->n2 * 16;
    const bool triad = s->info->kind == Kind::MemTriad;
    if (cpn_status st = get_function(s, s->module, triad ? "cpn_bench_triad" : "cpn_bench_copy", &s->fn, err);
        st != CPN_OK) {
        return st;
    }
    if (cpn_status st = get_function(s, s->module, "cpn_bench_fill", &s->fill_fn, err); st != CPN_OK) return st;
    if (cpn_status st = size_grid(s, s->fn, 256, err); st != CPN_OK) return st;
    const unsigned arrays = triad ? 3 : 2;
    char what[96];
    std::snprintf(what, sizeof what, "array a of %u x %" PRIu64 " bytes", arrays, s->bytes);
    if (cpn_status st = alloc_device(s, &s->a, s->bytes, what, err); st != CPN_OK) return st;
    std::snprintf(what, sizeof what, "array %s of %u x %" PRIu64 " bytes", triad ? "b" : "c", arrays, s->bytes);
    if (cpn_status st = alloc_device(s, triad ? &s->b : &s->c, s->bytes, what, err); st != CPN_OK) return st;
    if (triad) {
        std::snprintf(what, sizeof what, "array c of 3 x %" PRIu64 " bytes", s->bytes);
        if (cpn_status st = alloc_device(s, &s->c, s->bytes, what, err); st != CPN_OK) return st;
    }
    /* a, b, c filled from seed, seed + 1, seed + 2; run() refills the output array each time. */
    if (cpn_status st = fill_array(s, s->a, s->params.seed, err); st != CPN_OK) return st;
    if (triad) {
        if (cpn_status st = fill_array(s, s->b, s->params.seed + 1, err); st != CPN_OK) return st;
    }
    if (cpn_status st = fill_array(s, s->c, s->params.seed + 2, err); st != CPN_OK) return st;
    const CUresult r = s->device->api->stream_synchronize(s->stream);
    if (r != CUDA_SUCCESS) return cuda_fail(s->device->api, err, r, s->info->name, "cuStreamSynchronize after the fill");
    s->ops_per_rep = static_cast<double>(s->bytes) * arrays; /* copy moves 2 arrays, triad 3 */
    s->path = triad ? "a = b + 3*c (DFMA), double2 loads/stores, grid-stride x4"
                    : "c = a, double2 loads/stores, grid-stride x4";
    return CPN_OK;
}

/* The transfer pattern: little-endian 64-bit word w of the buffer is seeded_u64(seed, w). */
void fill_pattern(unsigned char* p, uint64_t bytes, uint64_t seed) {
    for (uint64_t w = 0; w * 8 < bytes; ++w) {
        const uint64_t v = seeded_u64(seed, w);
        const uint64_t n = std::min<uint64_t>(8, bytes - w * 8);
        std::memcpy(p + w * 8, &v, n);
    }
}

cpn_status setup_transfer(BenchState* s, cpn_msg* err) {
    const DriverApi* api = s->device->api;
    const Kind k = s->info->kind;
    s->bytes = (s->params.bytes_given ? s->params.bytes : kDefaultXferBytes) / 16 * 16;
    s->host_pinned = k == Kind::H2dPinned || k == Kind::D2hPinned;
    if (s->host_pinned) {
        const CUresult r = api->mem_host_alloc(&s->host, s->bytes, 0);
        if (r != CUDA_SUCCESS) {
            s->host = nullptr;
            if (r == CUDA_ERROR_OUT_OF_MEMORY) {
                return fail(err, CPN_E_OUT_OF_MEMORY, "%s: cuMemHostAlloc of %" PRIu64 " pinned bytes failed: %s",
                            s->info->name, s->bytes, error_text(api, r).c_str());
            }
            return cuda_fail(api, err, r, s->info->name, "cuMemHostAlloc");
        }
    } else {
        s->host = std::malloc(s->bytes);
        if (s->host == nullptr) {
            return fail(err, CPN_E_OUT_OF_MEMORY, "%s: malloc of %" PRIu64 " pageable bytes failed",
                        s->info->name, s->bytes);
        }
    }
    if (cpn_status st = alloc_device(s, &s->dbuf, s->bytes, "the device buffer", err); st != CPN_OK) return st;
    /* Both directions start from the pattern in host memory (which also makes every pageable
     * page resident); d2h uploads it once here, run() clears the host side before copying. */
    fill_pattern(static_cast<unsigned char*>(s->host), s->bytes, s->params.seed);
    if (k == Kind::D2hPinned || k == Kind::D2hPageable) {
        const CUresult r = api->memcpy_htod(s->dbuf, s->host, s->bytes);
        if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, s->info->name, "cuMemcpyHtoD(the pattern)");
    }
    s->ops_per_rep = static_cast<double>(s->bytes);
    s->path = s->host_pinned ? "cuMemcpy*Async from/to cuMemHostAlloc memory"
                             : "cuMemcpyHtoD/DtoH from/to malloc memory";
    return CPN_OK;
}

cpn_status setup_launch(BenchState* s, cpn_msg* err) {
    if (cpn_status st = get_function(s, s->module, "cpn_bench_launch", &s->fn, err); st != CPN_OK) return st;
    s->block = 32;
    s->grid = 1;
    if (cpn_status st = alloc_device(s, &s->counter, 4, "the launch counter", err); st != CPN_OK) return st;
    s->ops_per_rep = 1.0;
    s->path = "cuLaunchKernel of a 1x32 kernel + cuStreamSynchronize per launch";
    return CPN_OK;
}

/* ---- run helpers ------------------------------------------------------------------------- */

uint64_t now_monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

cpn_status check_control(const cpn_run_control* control, const char* kind, uint64_t rep, cpn_msg* err) {
    if (control == nullptr) return CPN_OK;
    if (control->cancel != nullptr && *control->cancel != 0) {
        return fail(err, CPN_E_CANCELLED, "%s cancelled after %" PRIu64 " repetitions", kind, rep);
    }
    if (control->deadline_ns != 0) {
        const uint64_t now = now_monotonic_ns();
        if (now >= control->deadline_ns) {
            return fail(err, CPN_E_DEADLINE_EXCEEDED, "%s deadline exceeded after %" PRIu64 " repetitions (%.3f ms past it)",
                        kind, rep, static_cast<double>(now - control->deadline_ns) / 1e6);
        }
    }
    return CPN_OK;
}

/* NVML readings taken while the work runs. */
struct ClockReadings {
    double mhz_sum = 0.0;
    unsigned mhz_count = 0;
    unsigned long long reasons = 0;
    bool have_reasons = false;
    bool nvml = true; /* false once NVML said no: stop asking */

    void sample(const std::string& pci) {
        if (!nvml) return;
        unsigned mhz = 0;
        unsigned long long r = 0;
        bool hm = false, hr = false;
        if (!clock_sample(pci.c_str(), &mhz, &hm, &r, &hr)) {
            nvml = false;
            return;
        }
        if (hm) {
            mhz_sum += mhz;
            ++mhz_count;
        }
        if (hr) {
            reasons |= r;
            have_reasons = true;
        }
    }
};

/* Throttling that makes a sample unrepresentative: thermal, power brake, hardware slowdown; not
 * idle, application clock settings, the software power cap, sync boost or display settings. */
constexpr unsigned long long kThrottleMask = nvml::kReasonHwSlowdown | nvml::kReasonSwThermalSlowdown |
                                             nvml::kReasonHwThermalSlowdown | nvml::kReasonHwPowerBrakeSlowdown;

/* Enqueues `reps` units of asynchronous work (`enqueue(rep)`) between two timing events, keeping
 * at most two units queued ahead of the one running, so the host can honour cancel and deadline
 * between repetitions without ever leaving the device idle. NVML is read while the work runs. */
cpn_status timed_async(BenchState* s, uint64_t reps, const cpn_run_control* control,
                       const std::function<CUresult(uint64_t)>& enqueue, const char* what, double* seconds,
                       ClockReadings* clocks, cpn_msg* err) {
    const DriverApi* api = s->device->api;
    const char* kind = s->info->name;
    const uint64_t sample_every = std::max<uint64_t>(1, reps / 32);
    auto stop = [&](cpn_status st) {
        api->stream_synchronize(s->stream);
        return st;
    };
    for (uint64_t r = 0; r < reps; ++r) {
        if (r >= 2) {
            const CUresult e = api->event_synchronize(s->ring[r % 2]);
            if (e != CUDA_SUCCESS) return cuda_fail(api, err, e, kind, std::string("cuEventSynchronize after ") + what);
        }
        if (cpn_status st = check_control(control, kind, r, err); st != CPN_OK) return stop(st);
        CUresult e = CUDA_SUCCESS;
        if (r == 0) e = api->event_record(s->ev_start, s->stream);
        if (e == CUDA_SUCCESS) e = enqueue(r);
        if (e != CUDA_SUCCESS) {
            api->stream_synchronize(s->stream);
            return cuda_fail(api, err, e, kind, what);
        }
        e = api->event_record(s->ring[r % 2], s->stream);
        if (e != CUDA_SUCCESS) return cuda_fail(api, err, e, kind, "cuEventRecord");
        if (r % sample_every == 0) clocks->sample(s->pci);
    }
    CUresult e = api->event_record(s->ev_stop, s->stream);
    if (e != CUDA_SUCCESS) return cuda_fail(api, err, e, kind, "cuEventRecord");
    clocks->sample(s->pci);
    e = api->event_synchronize(s->ev_stop);
    if (e != CUDA_SUCCESS) return cuda_fail(api, err, e, kind, std::string("cuEventSynchronize after ") + what);
    float ms = 0.0f;
    e = api->event_elapsed_time(&ms, s->ev_start, s->ev_stop);
    if (e != CUDA_SUCCESS) return cuda_fail(api, err, e, kind, "cuEventElapsedTime");
    *seconds = static_cast<double>(ms) / 1e3;
    return CPN_OK;
}

cpn_status launch(BenchState* s, void** args, const char* what, cpn_msg* err) {
    const CUresult r = s->device->api->launch_kernel(s->fn, s->grid, 1, 1, s->block, 1, 1, 0, s->stream, args, nullptr);
    if (r != CUDA_SUCCESS) return cuda_fail(s->device->api, err, r, s->info->name, what);
    return CPN_OK;
}

/* The kernel arguments of one compute launch (stable storage for the pointers in args). */
struct ComputeArgs {
    unsigned iters = 0;
    float fa = 0, fb = 0;
    double da = 0, db = 0;
    unsigned ua = 0, ub = 0;
    CUdeviceptr out = 0;
    void* args[4] = {};
};

void compute_args(const BenchState* s, ComputeArgs* a) {
    a->iters = s->iters;
    a->out = s->out;
    switch (s->info->kind) {
        case Kind::Fp32:
            a->fa = kFp32A, a->fb = kFp32B;
            a->args[0] = &a->iters, a->args[1] = &a->fa, a->args[2] = &a->fb, a->args[3] = &a->out;
            return;
        case Kind::Fp64:
            a->da = kFp64A, a->db = kFp64B;
            a->args[0] = &a->iters, a->args[1] = &a->da, a->args[2] = &a->db, a->args[3] = &a->out;
            return;
        case Kind::Fp16:
            a->ua = f16_bits(kFp16A) * 0x10001u, a->ub = f16_bits(kFp16B) * 0x10001u;
            a->args[0] = &a->iters, a->args[1] = &a->ua, a->args[2] = &a->ub, a->args[3] = &a->out;
            return;
        case Kind::Bf16:
            a->ua = bf16_bits(kBf16A) * 0x10001u, a->ub = bf16_bits(kBf16B) * 0x10001u;
            a->args[0] = &a->iters, a->args[1] = &a->ua, a->args[2] = &a->ub, a->args[3] = &a->out;
            return;
        case Kind::Int8:
            a->ub = kInt8B;
            a->args[0] = &a->iters, a->args[1] = &a->ub, a->args[2] = &a->out;
            return;
        default: {
            /* Matrix kinds: beta's bits as the B operand word (a pair, a single tf32, 4 bytes). */
            const Kind k = s->info->kind;
            a->ub = k == Kind::MmFp16   ? f16_bits(kMmBeta) * 0x10001u
                    : k == Kind::MmBf16 ? bf16_bits(kMmBeta) * 0x10001u
                    : k == Kind::MmTf32 ? float_bits(static_cast<float>(kMmBeta))
                                        : static_cast<uint32_t>(kMmBeta) * 0x01010101u;
            a->args[0] = &a->iters, a->args[1] = &a->ub, a->args[2] = &a->out;
            return;
        }
    }
}

std::string fmt_double(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

cpn_status verify_compute(BenchState* s, std::string* check, cpn_msg* err) {
    const DriverApi* api = s->device->api;
    const char* kind = s->info->name;
    const Kind k = s->info->kind;
    const uint64_t n = s->out_count;
    const size_t elem = (s->info->family == Family::Matrix || k == Kind::Fp32 || k == Kind::Fp64) ? 8 : 4;
    std::vector<unsigned char> buf(n * elem);
    const CUresult r = api->memcpy_dtoh(buf.data(), s->out, n * elem);
    if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, kind, "cuMemcpyDtoH(the results)");
    char text[512];
    if (s->info->family == Family::Vector) {
        for (uint64_t t = 0; t < n; ++t) {
            const unsigned p = static_cast<unsigned>(t % kPatterns);
            bool ok = true;
            std::string got, want;
            if (k == Kind::Int8) {
                uint32_t v;
                std::memcpy(&v, &buf[t * 4], 4);
                ok = v == s->expect_u32[p];
                got = std::to_string(v), want = std::to_string(s->expect_u32[p]);
            } else if (elem == 8) {
                double v;
                std::memcpy(&v, &buf[t * 8], 8);
                ok = v == s->expect_real[p];
                got = fmt_double(v), want = fmt_double(s->expect_real[p]);
            } else {
                float v;
                std::memcpy(&v, &buf[t * 4], 4);
                ok = static_cast<double>(v) == s->expect_real[p];
                got = fmt_double(v), want = fmt_double(s->expect_real[p]);
            }
            if (!ok) {
                return fail(err, CPN_E_INTERNAL,
                            "%s: verification failed: thread %" PRIu64 " of %" PRIu64 " (%s) returned %s, expected %s "
                            "from the host model of %u chains x %u steps",
                            kind, t, n, s->path.c_str(), got.c_str(), want.c_str(), kChains, s->iters);
            }
        }
        std::snprintf(text, sizeof text,
                      "%s: all %" PRIu64 " threads x %u chains x %u steps of x = fma(x, a, b) match the host "
                      "model bit for bit",
                      s->path.c_str(), n, k == Kind::Fp16 || k == Kind::Bf16 ? 2 * kChains : kChains, s->iters);
    } else {
        const uint64_t per_group = s->wgmma ? 4 : 1; /* warps whose sums add up to one check */
        for (uint64_t g = 0; g * per_group < n; ++g) {
            long long sum = 0;
            for (uint64_t w = g * per_group; w < (g + 1) * per_group && w < n; ++w) {
                long long v;
                std::memcpy(&v, &buf[w * 8], 8);
                sum += v;
            }
            const long long want = s->expect_i64[g % 8];
            if (sum != want) {
                return fail(err, CPN_E_INTERNAL,
                            "%s: verification failed: %s %" PRIu64 " (%s) summed its accumulators to %lld, "
                            "expected %lld",
                            kind, s->wgmma ? "warpgroup" : "warp", g, s->path.c_str(), sum, want);
            }
        }
        std::snprintf(text, sizeof text,
                      "%s: the accumulator sums of all %" PRIu64 " %s match the host's exact value "
                      "(A small integers, B = %d, %u %s a launch)",
                      s->path.c_str(), n / per_group, s->wgmma ? "warpgroups" : "warps", kMmBeta,
                      s->wgmma ? s->iters * kWgmmaUnroll : s->iters * kMmaTiles,
                      s->wgmma ? "wgmma per warpgroup" : "mma per warp");
    }
    *check = text;
    return CPN_OK;
}

/* Chunk offsets (bytes, 16-aligned) to sample in a buffer of `bytes`: 16 seeded ones and the end. */
std::vector<uint64_t> sample_offsets(uint64_t bytes, uint64_t chunk, uint64_t seed) {
    std::vector<uint64_t> v;
    if (bytes <= chunk) {
        v.push_back(0);
        return v;
    }
    for (uint64_t i = 0; i < 16; ++i) v.push_back(seeded_u64(seed ^ 0x5A5A5A5Aull, i) % (bytes - chunk) / 16 * 16);
    v.push_back(bytes - chunk);
    return v;
}

cpn_status verify_memory(BenchState* s, std::string* check, cpn_msg* err) {
    const DriverApi* api = s->device->api;
    const bool triad = s->info->kind == Kind::MemTriad;
    const uint64_t chunk = std::min<uint64_t>(4096, s->bytes);
    std::vector<double> got(chunk / 8);
    uint64_t checked = 0;
    for (uint64_t off : sample_offsets(s->bytes, chunk, s->params.seed)) {
        const CUdeviceptr src = (triad ? s->a : s->c) + off;
        const CUresult r = api->memcpy_dtoh(got.data(), src, chunk);
        if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, s->info->name, "cuMemcpyDtoH(a sample)");
        for (uint64_t q = 0; q < chunk / 8; ++q) {
            const uint64_t i = off / 8 + q;
            const double want = triad ? std::fma(kTriadScalar, seeded_double(s->params.seed + 2, i),
                                                 seeded_double(s->params.seed + 1, i))
                                      : seeded_double(s->params.seed, i);
            if (got[q] != want) {
                return fail(err, CPN_E_INTERNAL, "%s: verification failed: element %" PRIu64 " of %s is %s, expected %s",
                            s->info->name, i, triad ? "a" : "c", fmt_double(got[q]).c_str(), fmt_double(want).c_str());
            }
            ++checked;
        }
    }
    char text[384];
    std::snprintf(text, sizeof text, "%s over %" PRIu64 " bytes an array: %" PRIu64 " sampled elements match the host's %s",
                  s->path.c_str(), s->bytes, checked, triad ? "fma(3, c, b)" : "a");
    *check = text;
    return CPN_OK;
}

cpn_status verify_transfer(BenchState* s, std::string* check, cpn_msg* err) {
    const DriverApi* api = s->device->api;
    const bool h2d = s->info->kind == Kind::H2dPinned || s->info->kind == Kind::H2dPageable;
    const uint64_t chunk = std::min<uint64_t>(65536, s->bytes);
    std::vector<unsigned char> got(chunk), want(chunk);
    uint64_t sum_got = 0, sum_want = 0, checked = 0;
    for (uint64_t off : sample_offsets(s->bytes, chunk, s->params.seed)) {
        if (h2d) {
            const CUresult r = api->memcpy_dtoh(got.data(), s->dbuf + off, chunk);
            if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, s->info->name, "cuMemcpyDtoH(a sample)");
        } else {
            std::memcpy(got.data(), static_cast<unsigned char*>(s->host) + off, chunk);
        }
        for (uint64_t w = 0; w < chunk / 8; ++w) {
            const uint64_t v = seeded_u64(s->params.seed, off / 8 + w);
            std::memcpy(&want[w * 8], &v, 8);
        }
        for (uint64_t q = 0; q < chunk; q += 8) {
            uint64_t a = 0, b = 0;
            std::memcpy(&a, &got[q], 8);
            std::memcpy(&b, &want[q], 8);
            sum_got = sum_got * 31 + a;
            sum_want = sum_want * 31 + b;
        }
        if (sum_got != sum_want) {
            uint64_t q = 0;
            while (q < chunk && got[q] == want[q]) ++q;
            return fail(err, CPN_E_INTERNAL,
                        "%s: verification failed: %" PRIu64 "-byte sample at offset %" PRIu64
                        " differs from the pattern (first at byte %" PRIu64 ": got 0x%02x, expected 0x%02x; "
                        "checksum 0x%016" PRIx64 ", expected 0x%016" PRIx64 ")",
                        s->info->name, chunk, off, off + q, q < chunk ? got[q] : 0, q < chunk ? want[q] : 0,
                        sum_got, sum_want);
        }
        checked += chunk;
    }
    char text[384];
    std::snprintf(text, sizeof text, "%s, %" PRIu64 " bytes: checksums of %" PRIu64 " sampled bytes match the seeded pattern",
                  s->path.c_str(), s->bytes, checked);
    *check = text;
    return CPN_OK;
}

/* JSON string escaping for "check". */
std::string json_escape(const std::string& in) {
    std::string out;
    for (char ch : in) {
        const unsigned char u = static_cast<unsigned char>(ch);
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += ch;
        } else if (u < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", u);
            out += b;
        } else {
            out += ch;
        }
    }
    return out;
}

cpn_status write_result(cpn_run_io* io, const char* kind, double ops, double seconds, const std::string& check,
                        const ClockReadings& clocks, cpn_msg* err) {
    std::string json = "{\"ops\":" + fmt_double(ops) + ",\"seconds\":" + fmt_double(seconds) +
                       ",\"verified\":true,\"check\":\"" + json_escape(check) + "\"";
    if (clocks.mhz_count > 0) json += ",\"clock_mhz\":" + fmt_double(clocks.mhz_sum / clocks.mhz_count);
    if (clocks.have_reasons) json += std::string(",\"throttled\":") + ((clocks.reasons & kThrottleMask) ? "true" : "false");
    json += "}";
    if (io->result_json == nullptr || io->result_json_capacity <= json.size()) {
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: result_json holds %" PRIu64 " bytes; the result needs %zu",
                    kind, io->result_json_capacity, json.size() + 1);
    }
    std::memcpy(io->result_json, json.c_str(), json.size() + 1);
    return CPN_OK;
}

/* Reads the reps override from the inputs; any other buffer is an error. */
cpn_status reps_from_io(const cpn_run_io* io, const char* kind, uint64_t* reps, cpn_msg* err) {
    if (io->input_count > 0 && io->inputs == nullptr) {
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: input list is NULL", kind);
    }
    for (uint32_t i = 0; i < io->input_count; ++i) {
        const cpn_buffer& b = io->inputs[i];
        if (b.name == nullptr || std::strcmp(b.name, CPN_BENCH_REPS_INPUT) != 0) {
            return fail(err, CPN_E_INVALID_ARGUMENT, "%s: unknown input buffer \"%s\" (only \"reps\" is used)",
                        kind, b.name != nullptr ? b.name : "(null)");
        }
        if (b.size != 8 || b.data == nullptr) {
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: input \"reps\" must hold one little-endian uint64 (8 bytes), got %" PRIu64 " bytes",
                        kind, b.size);
        }
        const unsigned char* d = static_cast<const unsigned char*>(b.data);
        uint64_t v = 0;
        for (int q = 7; q >= 0; --q) v = (v << 8) | d[q];
        if (v == 0) return fail(err, CPN_E_INVALID_ARGUMENT, "%s: input \"reps\" must be >= 1, got 0", kind);
        *reps = v;
    }
    if (io->output_count > 0) {
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: unknown output buffer \"%s\" (bench kinds use none)", kind,
                    io->outputs != nullptr && io->outputs[0].name != nullptr ? io->outputs[0].name : "(null)");
    }
    return CPN_OK;
}

cpn_status run_inner(BenchState* s, cpn_run_io* io, const cpn_run_control* control, cpn_msg* err) {
    const DriverApi* api = s->device->api;
    const char* kind = s->info->name;
    uint64_t reps = s->params.reps;
    if (cpn_status st = reps_from_io(io, kind, &reps, err); st != CPN_OK) return st;
    if (cpn_status st = check_control(control, kind, 0, err); st != CPN_OK) return st;
    ScopedContext scope(api, s->device->ctx);
    if (scope.result() != CUDA_SUCCESS) return cuda_fail(api, err, scope.result(), kind, "cuCtxPushCurrent_v2");

    double seconds = 0.0;
    ClockReadings clocks;
    std::string check, timing;
    switch (s->info->family) {
        case Family::Vector:
        case Family::Matrix: {
            ComputeArgs a;
            compute_args(s, &a);
            if (cpn_status st = timed_async(s, reps, control,
                                            [&](uint64_t) {
                                                return api->launch_kernel(s->fn, s->grid, 1, 1, s->block, 1, 1, 0,
                                                                          s->stream, a.args, nullptr);
                                            },
                                            "the bench kernel", &seconds, &clocks, err);
                st != CPN_OK) {
                return st;
            }
            if (cpn_status st = verify_compute(s, &check, err); st != CPN_OK) return st;
            timing = "CUDA events around " + std::to_string(reps) + " launches of " + std::to_string(s->grid) + "x" +
                     std::to_string(s->block);
            break;
        }
        case Family::Memory: {
            const bool triad = s->info->kind == Kind::MemTriad;
            /* Reset the output array (untimed) so a launch that did nothing cannot pass. */
            if (cpn_status st = fill_array(s, triad ? s->a : s->c, s->params.seed + (triad ? 0 : 2), err); st != CPN_OK) {
                return st;
            }
            unsigned long long n2 = s->n2;
            double scalar = kTriadScalar;
            void* copy_args[] = {&s->a, &s->c, &n2};
            void* triad_args[] = {&s->a, &s->b, &s->c, &scalar, &n2};
            void** args = triad ? triad_args : copy_args;
            if (cpn_status st = timed_async(s, reps, control,
                                            [&](uint64_t) {
                                                return api->launch_kernel(s->fn, s->grid, 1, 1, s->block, 1, 1, 0,
                                                                          s->stream, args, nullptr);
                                            },
                                            triad ? "the triad kernel" : "the copy kernel", &seconds, &clocks, err);
                st != CPN_OK) {
                return st;
            }
            if (cpn_status st = verify_memory(s, &check, err); st != CPN_OK) return st;
            timing = "CUDA events around " + std::to_string(reps) + " launches of " + std::to_string(s->grid) + "x" +
                     std::to_string(s->block);
            break;
        }
        case Family::Transfer: {
            const bool h2d = s->info->kind == Kind::H2dPinned || s->info->kind == Kind::H2dPageable;
            /* Clear the destination (untimed). */
            if (h2d) {
                const CUresult r = api->memset_d8(s->dbuf, 0, s->bytes);
                if (r != CUDA_SUCCESS) return cuda_fail(api, err, r, kind, "cuMemsetD8");
            } else {
                std::memset(s->host, 0, s->bytes);
            }
            if (s->host_pinned) {
                if (cpn_status st = timed_async(s, reps, control,
                                                [&](uint64_t) {
                                                    return h2d ? api->memcpy_htod_async(s->dbuf, s->host, s->bytes, s->stream)
                                                               : api->memcpy_dtoh_async(s->host, s->dbuf, s->bytes, s->stream);
                                                },
                                                h2d ? "cuMemcpyHtoDAsync" : "cuMemcpyDtoHAsync", &seconds, &clocks, err);
                    st != CPN_OK) {
                    return st;
                }
                timing = "CUDA events around " + std::to_string(reps) + " copies";
            } else {
                /* Pageable copies are synchronous for the host: time them with its clock. */
                const auto t0 = std::chrono::steady_clock::now();
                for (uint64_t r = 0; r < reps; ++r) {
                    if (cpn_status st = check_control(control, kind, r, err); st != CPN_OK) return st;
                    const CUresult e = h2d ? api->memcpy_htod(s->dbuf, s->host, s->bytes)
                                           : api->memcpy_dtoh(s->host, s->dbuf, s->bytes);
                    if (e != CUDA_SUCCESS) return cuda_fail(api, err, e, kind, h2d ? "cuMemcpyHtoD" : "cuMemcpyDtoH");
                    if (r == 0) clocks.sample(s->pci);
                }
                seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                timing = "host clock around " + std::to_string(reps) + " synchronous copies";
            }
            if (cpn_status st = verify_transfer(s, &check, err); st != CPN_OK) return st;
            break;
        }
        case Family::Launch: {
            CUresult e = api->memset_d8(s->counter, 0, 4);
            if (e == CUDA_SUCCESS) e = api->ctx_synchronize();
            if (e != CUDA_SUCCESS) return cuda_fail(api, err, e, kind, "cuMemsetD8(the counter)");
            void* args[] = {&s->counter};
            const auto t0 = std::chrono::steady_clock::now();
            for (uint64_t r = 0; r < reps; ++r) {
                if (cpn_status st = check_control(control, kind, r, err); st != CPN_OK) return st;
                if (cpn_status st = launch(s, args, "cuLaunchKernel(cpn_bench_launch)", err); st != CPN_OK) return st;
                e = api->stream_synchronize(s->stream);
                if (e != CUDA_SUCCESS) return cuda_fail(api, err, e, kind, "cuStreamSynchronize after cpn_bench_launch");
            }
            seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            clocks.sample(s->pci);
            uint32_t count = 0;
            e = api->memcpy_dtoh(&count, s->counter, 4);
            if (e != CUDA_SUCCESS) return cuda_fail(api, err, e, kind, "cuMemcpyDtoH(the counter)");
            const uint32_t want = static_cast<uint32_t>(reps);
            if (count != want) {
                return fail(err, CPN_E_INTERNAL, "%s: verification failed: the kernel counted %u launches, expected %u",
                            kind, count, want);
            }
            check = s->path + ": the kernel's counter shows all " + std::to_string(reps) + " launches ran";
            timing = "host clock (launch to completion seen by the host)";
            break;
        }
    }
    check += "; timed with " + timing;
    if (clocks.have_reasons && clocks.reasons != 0) {
        char b[96];
        std::snprintf(b, sizeof b, "; NVML clock event reasons 0x%llx", clocks.reasons);
        check += b;
    }
    if (control != nullptr && control->progress != nullptr) control->progress(control->user, 1.0, "done");
    return write_result(io, kind, s->ops_per_rep * static_cast<double>(reps), seconds, check, clocks, err);
}

}  // namespace

/* ---- entry points ------------------------------------------------------------------------ */

bool is_bench_kind(const char* kind) {
    return kind != nullptr && std::strncmp(kind, CPN_BENCH_KIND_PREFIX, std::strlen(CPN_BENCH_KIND_PREFIX)) == 0;
}

const char* bench_kinds_text() { return kKindsText; }

cpn_status bench_query(cpn_device_handle* device, const cpn_workload* workload, cpn_query_result* out,
                       cpn_msg* err) {
    (void)err;
    const KindInfo* k = find_kind(workload->kind);
    if (k == nullptr) {
        if (std::strcmp(workload->kind, "bench.clock") == 0) {
            copy_str(out->reason, "bench.clock is a CPU-only kind (core clock from dependent integer adds)");
        } else {
            copy_str(out->reason, std::string("cuda backend does not support workload kind \"") + workload->kind +
                                      "\" (bench kinds: " + kKindsText + ")");
        }
        return CPN_OK;
    }
    BenchParams p;
    std::string problem;
    if (!parse_params(k->name, workload->params_json, &p, &problem)) {
        copy_str(out->reason, problem);
        return CPN_OK;
    }
    problem = support_problem(device, *k);
    if (!problem.empty()) {
        copy_str(out->reason, problem);
        return CPN_OK;
    }
    out->supported = 1;
    switch (k->family) {
        case Family::Memory: {
            const uint64_t b = (p.bytes_given ? p.bytes : default_mem_bytes(device)) / 16 * 16;
            out->device_memory_bytes = b * (k->kind == Kind::MemTriad ? 3 : 2);
            break;
        }
        case Family::Transfer: out->device_memory_bytes = (p.bytes_given ? p.bytes : kDefaultXferBytes) / 16 * 16; break;
        case Family::Launch: out->device_memory_bytes = 4; break;
        default: {
            /* One result a thread at full occupancy, 8 bytes at most. */
            const uint64_t sms = static_cast<uint64_t>(device_attr(device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 1));
            const uint64_t threads =
                static_cast<uint64_t>(device_attr(device, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, 2048));
            out->device_memory_bytes = sms * threads * 8;
            break;
        }
    }
    return CPN_OK;
}

cpn_status bench_prepare(cpn_device_handle* device, const cpn_workload* workload, cpn_prepared** out,
                         cpn_msg* err) {
    const KindInfo* k = find_kind(workload->kind);
    if (k == nullptr) {
        if (std::strcmp(workload->kind, "bench.clock") == 0) {
            return fail(err, CPN_E_UNSUPPORTED, "bench.clock is a CPU-only kind");
        }
        return fail(err, CPN_E_UNSUPPORTED, "cuda backend does not support workload kind \"%s\" (bench kinds: %s)",
                    workload->kind, kKindsText);
    }
    BenchParams params;
    std::string problem;
    if (!parse_params(k->name, workload->params_json, &params, &problem)) {
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s", problem.c_str());
    }
    problem = support_problem(device, *k);
    if (!problem.empty()) return fail(err, CPN_E_UNSUPPORTED, "%s", problem.c_str());

    auto* s = new (std::nothrow) BenchState;
    auto* p = new (std::nothrow) cpn_prepared;
    if (s == nullptr || p == nullptr) {
        delete s;
        delete p;
        return fail(err, CPN_E_OUT_OF_MEMORY, "%s: prepare: out of host memory", k->name);
    }
    s->device = device;
    s->info = k;
    s->params = params;
    s->wgmma = use_wgmma(device, k->family);
    char bus[32] = {};
    if (device->api->device_get_pci_bus_id(bus, sizeof bus, device->dev) == CUDA_SUCCESS) s->pci = bus;

    cpn_status st = CPN_OK;
    {
        const DriverApi* api = device->api;
        ScopedContext scope(api, device->ctx);
        if (scope.result() != CUDA_SUCCESS) {
            st = cuda_fail(api, err, scope.result(), k->name, "cuCtxPushCurrent_v2");
        }
        CUresult r = CUDA_SUCCESS;
        if (st == CPN_OK) st = load_module(s, embedded::bench_fatbin, "bench fatbin: " CPN_CUDA_KERNEL_TARGETS, &s->module, err);
#if CPN_CUDA_HAVE_SM90A
        if (st == CPN_OK && s->wgmma) {
            st = load_module(s, embedded::bench_sm90a_fatbin, "bench wgmma fatbin: sm_90a", &s->wgmma_module, err);
        }
#endif
        if (st == CPN_OK) {
            r = api->stream_create(&s->stream, CU_STREAM_NON_BLOCKING);
            if (r == CUDA_SUCCESS) r = api->event_create(&s->ev_start, CU_EVENT_DEFAULT);
            if (r == CUDA_SUCCESS) r = api->event_create(&s->ev_stop, CU_EVENT_DEFAULT);
            if (r == CUDA_SUCCESS) r = api->event_create(&s->ring[0], CU_EVENT_DISABLE_TIMING);
            if (r == CUDA_SUCCESS) r = api->event_create(&s->ring[1], CU_EVENT_DISABLE_TIMING);
            if (r != CUDA_SUCCESS) st = cuda_fail(api, err, r, k->name, "creating the stream and events");
        }
        if (st == CPN_OK) {
            switch (k->family) {
                case Family::Vector:
                case Family::Matrix: st = setup_compute(s, err); break;
                case Family::Memory: st = setup_memory(s, err); break;
                case Family::Transfer: st = setup_transfer(s, err); break;
                case Family::Launch: st = setup_launch(s, err); break;
            }
        }
        if (st != CPN_OK && scope.result() == CUDA_SUCCESS) free_state(s);
    }
    if (st != CPN_OK) {
        delete s;
        delete p;
        return st;
    }
    p->device = device;
    p->bench = s;
    *out = p;
    return CPN_OK;
}

cpn_status bench_run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control, cpn_msg* err) {
    BenchState* s = prepared->bench;
    if (io == nullptr) return fail(err, CPN_E_INVALID_ARGUMENT, "%s: run: io is NULL", s->info->name);
    if (io->struct_size < sizeof(cpn_run_io)) {
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: run: io->struct_size is %u, expected at least %zu",
                    s->info->name, io->struct_size, sizeof(cpn_run_io));
    }
    if (control != nullptr && control->struct_size < sizeof(cpn_run_control)) {
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: run: control->struct_size is %u, expected at least %zu",
                    s->info->name, control->struct_size, sizeof(cpn_run_control));
    }
    return run_inner(s, io, control, err);
}

void bench_release(BenchState* state) {
    if (state == nullptr) return;
    {
        ScopedContext scope(state->device->api, state->device->ctx);
        if (scope.result() == CUDA_SUCCESS) free_state(state);
    }
    delete state;
}

}  // namespace cpn::cuda
