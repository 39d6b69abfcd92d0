// opencl_bench.cpp: the benchmark workloads of cpn_bench.h on an OpenCL device.
//
// Every kind prepares everything once (program, kernel, buffers, random data, its own in-order
// queue) and then times only the repetitions in run(): the host's monotonic clock is read
// before the first enqueue and after the clFinish that follows the last one. At most two
// repetitions are in flight at any time, so the cancel flag and the deadline, checked before
// each repetition, take effect within one repetition. After the timed region the result is
// verified against the host:
//
//   bench.fp32/fp64/fp16  CH independent chains of W-wide vectors per work-item, each step
//                         x = fma(x, a, b) (a < 1, so x stays bounded and normal), summed over
//                         the chains in a fixed order and stored per lane; the host runs the
//                         same recurrence in the same precision and compares bit for bit.
//   bench.int8            x += dot(bytes of x as signed char4, k) on 32-bit lanes (wrapping),
//                         through cl_khr_integer_dot_product's dot() when the device has it,
//                         else as four sign-extended byte multiplies; compared exactly.
//   bench.mem.*           STREAM copy (c = a) and triad (a = b + s*c, with fma) over three
//                         arrays of counter-hashed random data; sampled chunks of the result,
//                         overwritten with a sentinel before each run, are compared exactly.
//   bench.xfer.*          whole-buffer clEnqueueWriteBuffer / ReadBuffer from pinned
//                         (CL_MEM_ALLOC_HOST_PTR, mapped once) or malloc'd host memory; a
//                         checksum of sentinel-cleared sampled chunks that arrived is compared.
//   bench.launch          a one-work-item kernel that only bumps a counter, enqueued and
//                         clFinish'ed per launch; the counter must equal the launches.
#include "opencl_bench.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "cpn_backend_util.hpp"
#include "cpn_bench.h"

namespace cpn::opencl::bench {

using plugin::fail;

/* ---- program cache ----------------------------------------------------------------------- */

struct ProgramCache {
    std::mutex mu;
    std::map<std::string, cl_program> programs;  // key: options + "\n" + source
};

ProgramCache* new_program_cache() { return new ProgramCache(); }

void free_program_cache(ProgramCache* cache) {
    if (cache == nullptr) return;
    for (auto& [key, prog] : cache->programs) clReleaseProgram(prog);
    delete cache;
}

bool is_bench_kind(const char* kind) {
    return kind != nullptr &&
           std::strncmp(kind, CPN_BENCH_KIND_PREFIX, std::strlen(CPN_BENCH_KIND_PREFIX)) == 0;
}

namespace {

/* ---- tuning ------------------------------------------------------------------------------ */

/* Compute kernels: CH chains of W-wide vectors per work-item, the loop body unrolled UN times,
 * ITERS loop trips per launch, GROUPS_PER_CU work-groups of WG items per compute unit.
 *
 * CPU devices (PoCL: LLVM for the host CPU): eight independent float16 chains per work-item
 * are 8 x 512 bits of FMAs in flight, enough to cover the FMA latency of both pipes without
 * relying on the work-group vectoriser; the small fixed work-group keeps PoCL's work-item loop
 * outside the unrolled chain loop, and 32 groups per compute unit make one launch a few
 * milliseconds (launch overhead well under 1%) while keeping the host reference cheap. The
 * int8 recurrence is shift/multiply heavy and runs best on 256-bit (8-lane) vectors.
 * Other devices (GPUs): narrower vectors (the lanes are work-items there), wider groups. */
struct ComputeShape {
    int w;   // vector width
    int ch;  // independent chains per work-item
    int un;  // textual unroll of the loop body
    int wg;  // reqd_work_group_size
    int groups_per_cu;
    uint32_t iters;
};
constexpr ComputeShape kCpuFp32{16, 8, 8, 8, 32, 256};
constexpr ComputeShape kCpuFp64{8, 8, 8, 8, 32, 256};
constexpr ComputeShape kCpuFp16{16, 8, 8, 8, 32, 256};
constexpr ComputeShape kCpuInt8{8, 8, 8, 8, 32, 256};
constexpr ComputeShape kGpuFloat{4, 8, 8, 256, 16, 256};
constexpr ComputeShape kGpuInt8{4, 8, 8, 256, 16, 256};

/* Memory kernels: one W-element vector per work-item, work-groups of kMemWg. */
constexpr int kMemWg = 1024;
constexpr uint64_t kMemGranule = 64;  // bytes per work-item (uint16 / float16)

constexpr uint64_t kMinDefaultBytes = 64ull << 20;
constexpr uint64_t kSampleChunkBytes = 4096;
constexpr int kSampleChunks = 16;  // plus the first and the last chunk
constexpr float kTriadScalar = 3.0f;

/* ---- small helpers ----------------------------------------------------------------------- */

uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Element i of random array `array` (0, 1, 2) for `seed`: any element can be regenerated on
 * its own, so verification needs no host copy of the arrays. */
uint32_t rand_u32(uint64_t seed, uint32_t array, uint64_t i) {
    return static_cast<uint32_t>(
        splitmix64(seed * 0x2545F4914F6CDD1Dull + (static_cast<uint64_t>(array) << 56) + i) >> 32);
}
/* A float in [-1, 1) with 24 random bits. */
float rand_f32(uint64_t seed, uint32_t array, uint64_t i) {
    return static_cast<float>(rand_u32(seed, array, i) >> 8) * (1.0f / 8388608.0f) - 1.0f;
}

/* Rounds v (exactly computed in double, inside half's finite range) to IEEE binary16 with
 * round-to-nearest-even, subnormals included; returns the rounded value as a double. */
double round_to_half(double v) {
    if (v == 0.0 || !std::isfinite(v)) return v;
    int e = 0;
    std::frexp(v, &e);                    // v = m * 2^e, 0.5 <= |m| < 1
    const int q = std::max(e - 11, -24);  // quantum exponent: 11 significant bits, min 2^-24
    return std::ldexp(std::nearbyint(std::ldexp(v, -q)), q);
}

double half_bits_to_double(uint16_t h) {
    const int sign = (h >> 15) != 0 ? -1 : 1;
    const int exp = (h >> 10) & 0x1f;
    const int man = h & 0x3ff;
    if (exp == 0) return sign * std::ldexp(static_cast<double>(man), -24);
    if (exp == 31) return man != 0 ? NAN : sign * INFINITY;
    return sign * std::ldexp(static_cast<double>(man | 0x400), exp - 25);
}

/* The binary16 encoding of v, which must already be a finite half value. */
uint16_t half_bits(double v) {
    uint16_t h = std::signbit(v) ? 0x8000 : 0;
    const double a = std::fabs(v);
    if (a == 0.0) return h;
    int e = 0;
    const double m = std::frexp(a, &e);  // a = m * 2^e, 0.5 <= m < 1
    if (e - 1 < -14) return static_cast<uint16_t>(h | static_cast<uint16_t>(std::ldexp(a, 24)));
    const int man = static_cast<int>(std::ldexp(m, 11)) - 1024;
    return static_cast<uint16_t>(h | ((e - 1 + 15) << 10) | man);
}

std::string hex_u32(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

std::string fmt_double(double v) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}


/* ---- kinds ------------------------------------------------------------------------------- */

enum class Kind { Fp32, Fp64, Fp16, Int8, MemCopy, MemTriad, XferH2D, XferD2H, Launch };

struct KindInfo {
    const char* name;
    Kind kind;
    bool pinned;
};
constexpr KindInfo kKinds[] = {
    {"bench.fp32", Kind::Fp32, false},
    {"bench.fp64", Kind::Fp64, false},
    {"bench.fp16", Kind::Fp16, false},
    {"bench.int8", Kind::Int8, false},
    {"bench.mem.copy", Kind::MemCopy, false},
    {"bench.mem.triad", Kind::MemTriad, false},
    {"bench.xfer.h2d.pinned", Kind::XferH2D, true},
    {"bench.xfer.h2d.pageable", Kind::XferH2D, false},
    {"bench.xfer.d2h.pinned", Kind::XferD2H, true},
    {"bench.xfer.d2h.pageable", Kind::XferD2H, false},
    {"bench.launch", Kind::Launch, false},
};

/* Kinds of cpn_bench.h this backend never runs, with the reason. */
struct NoKind {
    const char* name;
    const char* reason;
};
constexpr NoKind kNoKinds[] = {
    {"bench.bf16",
     "OpenCL C has no bf16 arithmetic type (vendor extensions only convert to and from it)"},
    {"bench.mm.fp16", "OpenCL C has no portable access to matrix units (tensor cores, AMX, XMX)"},
    {"bench.mm.bf16", "OpenCL C has no portable access to matrix units (tensor cores, AMX, XMX)"},
    {"bench.mm.tf32", "OpenCL C has no portable access to matrix units (tensor cores, AMX, XMX)"},
    {"bench.mm.int8", "OpenCL C has no portable access to matrix units (tensor cores, AMX, XMX)"},
    {"bench.clock",
     "CPU only: the core clock is measured by the cpu backend, not through an OpenCL device"},
};

const KindInfo* find_kind(const char* name) {
    for (const KindInfo& k : kKinds)
        if (std::strcmp(k.name, name) == 0) return &k;
    return nullptr;
}

bool is_compute(Kind k) {
    return k == Kind::Fp32 || k == Kind::Fp64 || k == Kind::Fp16 || k == Kind::Int8;
}
bool is_sized(Kind k) {
    return k == Kind::MemCopy || k == Kind::MemTriad || k == Kind::XferH2D || k == Kind::XferD2H;
}

/* ---- params ------------------------------------------------------------------------------ */

struct Params {
    uint64_t reps = 1;
    uint64_t bytes = 0;  // 0: the default for the device
    bool bytes_given = false;
    uint64_t seed = 1;
    uint32_t threads = 0;  // accepted for the contract's sake; an OpenCL device ignores it
};

cpn_status parse_params(const char* kind, const char* text, Params* out, cpn_msg* err) {
    const nlohmann::json j =
        nlohmann::json::parse(text != nullptr ? text : "{}", nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: params_json is not a JSON object: %.200s",
                    kind, text != nullptr ? text : "(null)");
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        const nlohmann::json& v = it.value();
        const bool is_uint =
            v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
        if (key == "reps" || key == "bytes" || key == "seed" || key == "threads") {
            if (!is_uint)
                return fail(err, CPN_E_INVALID_ARGUMENT,
                            "%s: param \"%s\" must be a non-negative integer, got %s", kind,
                            key.c_str(), v.dump().substr(0, 64).c_str());
            const uint64_t u = v.get<uint64_t>();
            if (key == "reps") {
                if (u == 0)
                    return fail(err, CPN_E_INVALID_ARGUMENT, "%s: param \"reps\" must be >= 1",
                                kind);
                out->reps = u;
            } else if (key == "bytes") {
                out->bytes = u;
                out->bytes_given = true;
            } else if (key == "seed") {
                out->seed = u;
            } else {
                if (u > UINT32_MAX)
                    return fail(err, CPN_E_INVALID_ARGUMENT,
                                "%s: param \"threads\" must fit a uint32", kind);
                out->threads = static_cast<uint32_t>(u);
            }
        } else {
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: unknown param \"%.64s\" (known: reps, bytes, seed, threads)", kind,
                        key.c_str());
        }
    }
    return CPN_OK;
}

/* ---- device facts ------------------------------------------------------------------------ */

struct DeviceFacts {
    std::string extensions;
    cl_device_fp_config fp64 = 0;
    cl_uint compute_units = 1;
    cl_ulong cache_bytes = 0;
    cl_ulong max_alloc = 0;
    cl_ulong global_mem = 0;
    size_t max_wg = 0;
    bool cpu = false;
};

DeviceFacts device_facts(cl_device_id d) {
    DeviceFacts f;
    device_string(d, CL_DEVICE_EXTENSIONS, &f.extensions);
    clGetDeviceInfo(d, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof f.fp64, &f.fp64, nullptr);
    clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof f.compute_units, &f.compute_units,
                    nullptr);
    if (f.compute_units == 0) f.compute_units = 1;
    clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, sizeof f.cache_bytes, &f.cache_bytes,
                    nullptr);
    clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof f.max_alloc, &f.max_alloc, nullptr);
    clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof f.global_mem, &f.global_mem, nullptr);
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof f.max_wg, &f.max_wg, nullptr);
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, nullptr);
    f.cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    return f;
}

bool has_fp64(const DeviceFacts& f) {
    return has_extension(f.extensions, "cl_khr_fp64") || f.fp64 != 0;
}
bool has_fp16(const DeviceFacts& f) { return has_extension(f.extensions, "cl_khr_fp16"); }
bool has_dot8(const DeviceFacts& f) {
    return has_extension(f.extensions, "cl_khr_integer_dot_product");
}

/* Why the device cannot run a known kind, or "" when it can. */
std::string unsupported_reason(const KindInfo& k, const DeviceFacts& f) {
    if (k.kind == Kind::Fp64 && !has_fp64(f))
        return std::string(k.name) +
               ": device has no fp64 units (no cl_khr_fp64, CL_DEVICE_DOUBLE_FP_CONFIG is 0)";
    if (k.kind == Kind::Fp16 && !has_fp16(f))
        return std::string(k.name) + ": device has no fp16 arithmetic (no cl_khr_fp16)";
    return "";
}

ComputeShape shape_for(Kind k, const DeviceFacts& f) {
    switch (k) {
        case Kind::Fp32:
            return f.cpu ? kCpuFp32 : kGpuFloat;
        case Kind::Fp64:
            return f.cpu ? kCpuFp64 : kGpuFloat;
        case Kind::Fp16:
            return f.cpu ? kCpuFp16 : kGpuFloat;
        default:
            return f.cpu ? kCpuInt8 : kGpuInt8;
    }
}

/* The default array size: 4x the global memory cache and at least 64 MiB, clamped to a
 * quarter of the largest allocation. */
uint64_t default_bytes(const DeviceFacts& f) {
    uint64_t b = std::max<uint64_t>(4 * f.cache_bytes, kMinDefaultBytes);
    if (f.max_alloc > 0) b = std::min<uint64_t>(b, f.max_alloc / 4);
    return b / kMemGranule * kMemGranule;
}

/* ---- kernel sources ---------------------------------------------------------------------- */

/* "(float16)((float)0.0f, (float)0.0078125f, ...)": lane l holds l/128 (exact in every type). */
std::string lane_vector(const char* t, int w) {
    std::string s = std::string("((") + t + std::to_string(w) + ")(";
    for (int l = 0; l < w; ++l) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s(%s)%.10ef", l ? ", " : "", t, l / 128.0);
        s += buf;
    }
    return s + "))";
}

/* Initial value of chain c for work-item pattern g (= gid & 3), before the lane offset. */
double chain_init(int c, uint32_t g) { return 1.0 + 0.25 * g + 0.125 * c; }

/* The floating-point FMA kernel: out[gid*W + l] = sum over chains (in order) of each chain's
 * lane l after ITERS*UN steps of x = fma(x, a, b). */
std::string fma_source(const char* t, const ComputeShape& s) {
    const std::string vt = std::string(t) + std::to_string(s.w);
    std::string src;
    if (std::strcmp(t, "double") == 0) src += "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n";
    if (std::strcmp(t, "half") == 0) src += "#pragma OPENCL EXTENSION cl_khr_fp16 : enable\n";
    const char* arg_t = std::strcmp(t, "double") == 0 ? "double" : "float";
    src += "__kernel __attribute__((reqd_work_group_size(" + std::to_string(s.wg) +
           ", 1, 1)))\nvoid cpn_bench_fma(__global " + t + "* restrict out, const " + arg_t +
           " a_in, const " + arg_t + " b_in, const uint iters) {\n";
    src += "    const uint gid = (uint)get_global_id(0);\n";
    src += "    const " + vt + " a = (" + vt + ")((" + t + ")a_in);\n";
    src += "    const " + vt + " b = (" + vt + ")((" + t + ")b_in);\n";
    src += "    const " + vt + " base = (" + vt + ")((" + t + ")(gid & 3u) * (" + t + ")0.25f) + " +
           lane_vector(t, s.w) + ";\n";
    for (int c = 0; c < s.ch; ++c) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "    %s x%d = base + (%s)((%s)%.10ef);\n", vt.c_str(), c,
                      vt.c_str(), t, 1.0 + 0.125 * c);
        src += buf;
    }
    src += "    for (uint i = 0; i < iters; ++i) {\n";
    for (int u = 0; u < s.un; ++u)
        for (int c = 0; c < s.ch; ++c)
            src += "        x" + std::to_string(c) + " = fma(x" + std::to_string(c) + ", a, b);\n";
    src += "    }\n    " + vt + " s = x0;\n";
    for (int c = 1; c < s.ch; ++c) src += "    s += x" + std::to_string(c) + ";\n";
    src += "    vstore" + std::to_string(s.w) + "(s, gid, out);\n}\n";
    return src;
}

/* The int8 kernel: 32-bit lanes x, each step x += dot(as_char4(x), k) (wrapping uint adds),
 * summed over chains and stored per lane. */
std::string int8_source(const ComputeShape& s, bool dot_ext) {
    const std::string vt = "uint" + std::to_string(s.w);
    const std::string it = "int" + std::to_string(s.w);
    std::string src;
    if (dot_ext) src += "#pragma OPENCL EXTENSION cl_khr_integer_dot_product : enable\n";
    src += "__kernel __attribute__((reqd_work_group_size(" + std::to_string(s.wg) +
           ", 1, 1)))\nvoid cpn_bench_int8(__global uint* restrict out, const uint kpack, "
           "const uint iters) {\n";
    src += "    const uint gid = (uint)get_global_id(0);\n";
    if (dot_ext) {
        src += "    const char4 k = as_char4(kpack);\n";
    } else {
        src += "    const " + it + " k0 = (" + it + ")((int)(char)(kpack));\n";
        src += "    const " + it + " k1 = (" + it + ")((int)(char)(kpack >> 8));\n";
        src += "    const " + it + " k2 = (" + it + ")((int)(char)(kpack >> 16));\n";
        src += "    const " + it + " k3 = (" + it + ")((int)(char)(kpack >> 24));\n";
    }
    std::string lanes = "(" + vt + ")(";
    for (int l = 0; l < s.w; ++l)
        lanes += (l ? ", " : "") + std::to_string(0x01000193u * static_cast<uint32_t>(l + 1)) + "u";
    lanes += ")";
    src += "    const " + vt + " base = (" + vt + ")((gid & 3u) * 0x9E3779B9u) + " + lanes + ";\n";
    for (int c = 0; c < s.ch; ++c)
        src += "    " + vt + " x" + std::to_string(c) + " = base + (" + vt + ")(" +
               std::to_string(0x7F4A7C15u * static_cast<uint32_t>(c + 1)) + "u);\n";
    src += "    for (uint i = 0; i < iters; ++i) {\n";
    static const char* comps = "0123456789abcdef";
    for (int u = 0; u < s.un; ++u)
        for (int c = 0; c < s.ch; ++c) {
            const std::string x = "x" + std::to_string(c);
            if (dot_ext) {
                for (int l = 0; l < s.w; ++l) {
                    const std::string xl = x + ".s" + comps[l];
                    src += "        " + xl + " += as_uint(dot(as_char4(" + xl + "), k));\n";
                }
            } else {
                src += "        " + x + " += as_" + vt + "((as_" + it + "(" + x +
                       " << 24) >> 24) * k0 + (as_" + it + "(" + x + " << 16) >> 24) * k1 + (as_" +
                       it + "(" + x + " << 8) >> 24) * k2 + (as_" + it + "(" + x +
                       ") >> 24) * k3);\n";
            }
        }
    src += "    }\n    " + vt + " s = x0;\n";
    for (int c = 1; c < s.ch; ++c) src += "    s += x" + std::to_string(c) + ";\n";
    src += "    vstore" + std::to_string(s.w) + "(s, gid, out);\n}\n";
    return src;
}

/* STREAM kernels over 64-byte vectors, one per work-item. The stores are non-temporal where
 * the compiler offers that (clang-based compilers: PoCL, ROCm, Intel): the arrays are far
 * larger than the caches, and write-allocate traffic would otherwise count against STREAM's
 * byte total. */
constexpr const char* kMemSource = R"CLC(
#if defined(CPN_NT) && defined(__has_builtin)
#if __has_builtin(__builtin_nontemporal_store)
#define CPN_STORE(v, p) __builtin_nontemporal_store((v), (p))
#endif
#endif
#ifndef CPN_STORE
#define CPN_STORE(v, p) (*(p) = (v))
#endif
__kernel __attribute__((reqd_work_group_size(CPN_WG, 1, 1)))
void cpn_bench_copy(__global const uint16* restrict a, __global uint16* restrict c,
                    const ulong n) {
    const size_t i = get_global_id(0);
    if (i < n) CPN_STORE(a[i], &c[i]);
}
__kernel __attribute__((reqd_work_group_size(CPN_WG, 1, 1)))
void cpn_bench_triad(__global float16* restrict a, __global const float16* restrict b,
                     __global const float16* restrict c, const float s, const ulong n) {
    const size_t i = get_global_id(0);
    if (i < n) CPN_STORE(fma((float16)(s), c[i], b[i]), &a[i]);
}
)CLC";

constexpr const char* kLaunchSource = R"CLC(
__kernel void cpn_bench_launch(__global uint* counter) { counter[0] += 1u; }
)CLC";

/* ---- host references --------------------------------------------------------------------- */

/* Expected sum over chains of lane l for work-item pattern g after `steps` steps. */
template <typename F>
F expect_fma_lane(const ComputeShape& s, uint32_t g, int l, uint64_t steps, F a, F b) {
    F sum = 0;
    for (int c = 0; c < s.ch; ++c) {
        F x = static_cast<F>(chain_init(c, g) + l / 128.0);
        for (uint64_t i = 0; i < steps; ++i) x = std::fma(x, a, b);
        sum = c == 0 ? x : sum + x;
    }
    return sum;
}

double expect_half_lane(const ComputeShape& s, uint32_t g, int l, uint64_t steps, double a,
                        double b) {
    double sum = 0;
    for (int c = 0; c < s.ch; ++c) {
        // base = half(g*0.25) + lane, then + chain constant, each rounded to half (all exact).
        double x = round_to_half(round_to_half(0.25 * g + l / 128.0) + (1.0 + 0.125 * c));
        for (uint64_t i = 0; i < steps; ++i) x = round_to_half(x * a + b);  // exact, then round
        sum = c == 0 ? x : round_to_half(sum + x);
    }
    return sum;
}

uint32_t expect_int8_lane(const ComputeShape& s, uint32_t g, int l, uint64_t steps,
                          uint32_t kpack) {
    const int k[4] = {static_cast<int8_t>(kpack), static_cast<int8_t>(kpack >> 8),
                      static_cast<int8_t>(kpack >> 16), static_cast<int8_t>(kpack >> 24)};
    uint32_t sum = 0;
    for (int c = 0; c < s.ch; ++c) {
        uint32_t x = g * 0x9E3779B9u + 0x01000193u * static_cast<uint32_t>(l + 1) +
                     0x7F4A7C15u * static_cast<uint32_t>(c + 1);
        for (uint64_t i = 0; i < steps; ++i) {
            const int d = static_cast<int8_t>(x) * k[0] + static_cast<int8_t>(x >> 8) * k[1] +
                          static_cast<int8_t>(x >> 16) * k[2] + static_cast<int8_t>(x >> 24) * k[3];
            x += static_cast<uint32_t>(d);
        }
        sum += x;
    }
    return sum;
}

/* ---- Bench ------------------------------------------------------------------------------- */

}  // namespace

struct Bench {
    const KindInfo* info = nullptr;
    std::string label;
    cl_device_id device = nullptr;
    cl_context context = nullptr;  // retained
    cl_command_queue queue = nullptr;
    bool profiling = false;        // the queue records event timestamps (bench.launch)
    cl_kernel kernel = nullptr;
    cl_mem bufs[3] = {nullptr, nullptr, nullptr};
    uint64_t reps = 1;
    uint64_t seed = 1;
    uint64_t runs = 0;  // completed runs, varies the sampled chunks

    // compute
    ComputeShape shape{};
    bool dot_ext = false;
    size_t global = 1, local = 1;
    std::vector<unsigned char> expected;  // per work-item pattern (4) x W lanes, element bytes
    size_t elem_bytes = 4;

    // memory and transfers
    uint64_t bytes = 0;         // per array / per transfer
    cl_mem host_buf = nullptr;  // pinned: the CL_MEM_ALLOC_HOST_PTR buffer ...
    void* host_ptr = nullptr;   // ... mapped once here; pageable: malloc'd
    bool host_malloced = false;
    bool nontemporal = false;
    uint32_t chunks = 1;  // transfers: concurrent pieces per repetition (out-of-order queue)

    ~Bench() {
        if (queue != nullptr) clFinish(queue);
        if (host_buf != nullptr && host_ptr != nullptr && queue != nullptr) {
            clEnqueueUnmapMemObject(queue, host_buf, host_ptr, 0, nullptr, nullptr);
            clFinish(queue);
        }
        if (host_malloced) std::free(host_ptr);
        if (host_buf != nullptr) clReleaseMemObject(host_buf);
        for (cl_mem m : bufs)
            if (m != nullptr) clReleaseMemObject(m);
        if (kernel != nullptr) clReleaseKernel(kernel);
        if (queue != nullptr) clReleaseCommandQueue(queue);
        if (context != nullptr) clReleaseContext(context);
    }
};

namespace {

const char* name_of(const Bench& b) { return b.info->name; }

/* Builds (or finds in the cache) a program; a failed build returns the compiler's log. */
cpn_status build_program(const DeviceView& dev, ProgramCache* cache, const char* kind,
                         const std::string& source, const std::string& options, cl_program* out,
                         cpn_msg* err) {
    const std::string key = options + "\n" + source;
    std::lock_guard<std::mutex> lock(cache->mu);
    if (auto it = cache->programs.find(key); it != cache->programs.end()) {
        *out = it->second;
        return CPN_OK;
    }
    cl_int rc = CL_SUCCESS;
    const char* src = source.c_str();
    cl_program prog = clCreateProgramWithSource(dev.context, 1, &src, nullptr, &rc);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, std::string(kind) + ": clCreateProgramWithSource on " + dev.label);
    rc = clBuildProgram(prog, 1, &dev.device, options.c_str(), nullptr, nullptr);
    if (rc != CL_SUCCESS) {
        std::string build_log;
        size_t n = 0;
        if (clGetProgramBuildInfo(prog, dev.device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &n) ==
                CL_SUCCESS &&
            n > 0) {
            build_log.assign(n, '\0');
            if (clGetProgramBuildInfo(prog, dev.device, CL_PROGRAM_BUILD_LOG, n, build_log.data(),
                                      nullptr) != CL_SUCCESS)
                build_log.clear();
            build_log = plugin::trim(build_log);
        }
        clReleaseProgram(prog);
        log(4, std::string(kind) + ": clBuildProgram failed on " + dev.label + ": " + build_log);
        const cpn_status st = rc == CL_BUILD_PROGRAM_FAILURE ? CPN_E_INTERNAL : status_from_cl(rc);
        return fail(err, st, "%s: clBuildProgram failed on %s: %s (%d); build log: %s", kind,
                    dev.label.c_str(), cl_error_name(rc), static_cast<int>(rc),
                    build_log.empty() ? "(empty)" : build_log.c_str());
    }
    cache->programs.emplace(key, prog);
    *out = prog;
    return CPN_OK;
}

cpn_status make_kernel(const DeviceView& dev, ProgramCache* cache, Bench* b,
                       const std::string& source, const std::string& options,
                       const char* kernel_name, cpn_msg* err) {
    cl_program prog = nullptr;
    cpn_status st = build_program(dev, cache, name_of(*b), source, options, &prog, err);
    if (st != CPN_OK) return st;
    cl_int rc = CL_SUCCESS;
    b->kernel = clCreateKernel(prog, kernel_name, &rc);
    if (rc != CL_SUCCESS)
        return cl_fail(
            err, rc,
            std::string(name_of(*b)) + ": clCreateKernel(" + kernel_name + ") on " + dev.label);
    return CPN_OK;
}

cpn_status create_buffer(Bench* b, cl_mem_flags flags, uint64_t bytes, const char* what,
                         cl_mem* out, cpn_msg* err) {
    cl_int rc = CL_SUCCESS;
    *out = clCreateBuffer(b->context, flags, static_cast<size_t>(bytes), nullptr, &rc);
    if (rc != CL_SUCCESS) {
        const cpn_status st = status_from_cl(rc);
        return fail(err, st == CPN_E_INTERNAL ? CPN_E_OUT_OF_MEMORY : st,
                    "%s: clCreateBuffer(%s, %" PRIu64 " bytes) on %s failed: %s (%d)", name_of(*b),
                    what, bytes, b->label.c_str(), cl_error_name(rc), static_cast<int>(rc));
    }
    return CPN_OK;
}

/* Fills device buffer `m` with array `array` of the seed: u32 bits, or floats in [-1, 1). */
cpn_status fill_random(Bench* b, cl_mem m, uint32_t array, bool as_float, cpn_msg* err) {
    cl_int rc = CL_SUCCESS;
    void* p = clEnqueueMapBuffer(b->queue, m, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0,
                                 static_cast<size_t>(b->bytes), 0, nullptr, nullptr, &rc);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueMapBuffer (fill)");
    const uint64_t n = b->bytes / 4;
    if (as_float) {
        float* f = static_cast<float*>(p);
        for (uint64_t i = 0; i < n; ++i) f[i] = rand_f32(b->seed, array, i);
    } else {
        uint32_t* u = static_cast<uint32_t*>(p);
        for (uint64_t i = 0; i < n; ++i) u[i] = rand_u32(b->seed, array, i);
    }
    rc = clEnqueueUnmapMemObject(b->queue, m, p, 0, nullptr, nullptr);
    if (rc == CL_SUCCESS) rc = clFinish(b->queue);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueUnmapMemObject (fill)");
    return CPN_OK;
}

/* ---- prepare per family ------------------------------------------------------------------ */

cpn_status prepare_compute(const DeviceView& dev, ProgramCache* cache, const DeviceFacts& f,
                           Bench* b, cpn_msg* err) {
    std::string source;
    const char* kname = "cpn_bench_fma";
    switch (b->info->kind) {
        case Kind::Fp32:
            b->shape = shape_for(Kind::Fp32, f);
            b->elem_bytes = 4;
            source = fma_source("float", b->shape);
            break;
        case Kind::Fp64:
            b->shape = shape_for(Kind::Fp64, f);
            b->elem_bytes = 8;
            source = fma_source("double", b->shape);
            break;
        case Kind::Fp16:
            b->shape = shape_for(Kind::Fp16, f);
            b->elem_bytes = 2;
            source = fma_source("half", b->shape);
            break;
        default:
            b->dot_ext = has_dot8(f);
            b->shape = shape_for(Kind::Int8, f);
            b->elem_bytes = 4;
            source = int8_source(b->shape, b->dot_ext);
            kname = "cpn_bench_int8";
            break;
    }
    // A device whose work-groups are smaller than the shape's cannot run it as written.
    if (f.max_wg != 0 && static_cast<size_t>(b->shape.wg) > f.max_wg)
        b->shape.wg = static_cast<int>(f.max_wg);
    cpn_status st = make_kernel(dev, cache, b, source, "", kname, err);
    if (st != CPN_OK && b->shape.wg != 1) {
        // reqd_work_group_size above what the kernel may use (register-heavy on a GPU): retry
        // with single-item groups rather than fail.
        const ComputeShape keep = b->shape;
        b->shape.wg = 1;
        source = b->info->kind == Kind::Int8   ? int8_source(b->shape, b->dot_ext)
                 : b->info->kind == Kind::Fp32 ? fma_source("float", b->shape)
                 : b->info->kind == Kind::Fp64 ? fma_source("double", b->shape)
                                               : fma_source("half", b->shape);
        st = make_kernel(dev, cache, b, source, "", kname, err);
        if (st != CPN_OK) b->shape = keep;
    }
    if (st != CPN_OK) return st;
    size_t kernel_wg = 0;
    if (clGetKernelWorkGroupInfo(b->kernel, b->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kernel_wg,
                                 &kernel_wg, nullptr) == CL_SUCCESS &&
        kernel_wg != 0 && kernel_wg < static_cast<size_t>(b->shape.wg))
        return fail(err, CPN_E_UNSUPPORTED,
                    "%s: the kernel allows work-groups of %zu items on %s, it needs %d",
                    name_of(*b), kernel_wg, dev.label.c_str(), b->shape.wg);
    b->local = static_cast<size_t>(b->shape.wg);
    b->global = b->local * static_cast<size_t>(b->shape.groups_per_cu) * f.compute_units;
    st = create_buffer(b, CL_MEM_WRITE_ONLY,
                       static_cast<uint64_t>(b->global) * b->shape.w * b->elem_bytes, "out",
                       &b->bufs[0], err);
    if (st != CPN_OK) return st;

    // The host reference: for each of the 4 work-item patterns, every lane.
    const uint64_t steps = static_cast<uint64_t>(b->shape.iters) * b->shape.un;
    const size_t lane_bytes = b->elem_bytes;
    b->expected.assign(4 * b->shape.w * lane_bytes, 0);
    for (uint32_t g = 0; g < 4; ++g)
        for (int l = 0; l < b->shape.w; ++l) {
            unsigned char* dst = &b->expected[(g * b->shape.w + l) * lane_bytes];
            switch (b->info->kind) {
                case Kind::Fp32: {
                    const float v =
                        expect_fma_lane<float>(b->shape, g, l, steps, 0.999999f, 0.001f);
                    std::memcpy(dst, &v, 4);
                    break;
                }
                case Kind::Fp64: {
                    const double v =
                        expect_fma_lane<double>(b->shape, g, l, steps, 0.999999, 0.001);
                    std::memcpy(dst, &v, 8);
                    break;
                }
                case Kind::Fp16: {
                    const double v =
                        expect_half_lane(b->shape, g, l, steps, 1.0 - 1.0 / 2048, 1.0 / 64);
                    const uint16_t h = half_bits(v);
                    std::memcpy(dst, &h, 2);
                    break;
                }
                default: {
                    const uint32_t v = expect_int8_lane(b->shape, g, l, steps, 0x7F05FD03u);
                    std::memcpy(dst, &v, 4);
                    break;
                }
            }
        }
    return CPN_OK;
}

cpn_status prepare_memory(const DeviceView& dev, ProgramCache* cache, Bench* b, cpn_msg* err) {
    const bool copy = b->info->kind == Kind::MemCopy;
    const char* kname = copy ? "cpn_bench_copy" : "cpn_bench_triad";
    const std::string wg = "-DCPN_WG=" + std::to_string(kMemWg);
    b->nontemporal = true;
    cl_int rc = CL_SUCCESS;
    cpn_status st = make_kernel(dev, cache, b, kMemSource, wg + " -DCPN_NT=1", kname, err);
    if (st != CPN_OK) {  // a compiler that rejects the builtin: plain stores
        b->nontemporal = false;
        st = make_kernel(dev, cache, b, kMemSource, wg, kname, err);
    }
    if (st != CPN_OK) return st;
    const char* names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; ++i) {
        st = create_buffer(b, CL_MEM_READ_WRITE, b->bytes, names[i], &b->bufs[i], err);
        if (st != CPN_OK) return st;
    }
    // copy: c = a (a random bits, c cleared); triad: a = b + s*c (b, c random floats).
    if (copy) {
        st = fill_random(b, b->bufs[0], 0, false, err);
        if (st != CPN_OK) return st;
        const cl_uint zero = 0;
        rc = clEnqueueFillBuffer(b->queue, b->bufs[2], &zero, sizeof zero, 0,
                                 static_cast<size_t>(b->bytes), 0, nullptr, nullptr);
    } else {
        st = fill_random(b, b->bufs[1], 1, true, err);
        if (st == CPN_OK) st = fill_random(b, b->bufs[2], 2, true, err);
        if (st != CPN_OK) return st;
        const cl_uint zero = 0;
        rc = clEnqueueFillBuffer(b->queue, b->bufs[0], &zero, sizeof zero, 0,
                                 static_cast<size_t>(b->bytes), 0, nullptr, nullptr);
    }
    if (rc == CL_SUCCESS) rc = clFinish(b->queue);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueFillBuffer");

    const cl_ulong n = b->bytes / kMemGranule;
    b->local = kMemWg;
    b->global = static_cast<size_t>((n + kMemWg - 1) / kMemWg * kMemWg);
    if (copy) {
        if ((rc = clSetKernelArg(b->kernel, 0, sizeof(cl_mem), &b->bufs[0])) != CL_SUCCESS ||
            (rc = clSetKernelArg(b->kernel, 1, sizeof(cl_mem), &b->bufs[2])) != CL_SUCCESS ||
            (rc = clSetKernelArg(b->kernel, 2, sizeof n, &n)) != CL_SUCCESS)
            return cl_fail(err, rc, std::string(name_of(*b)) + ": clSetKernelArg");
    } else {
        const cl_float s = kTriadScalar;
        if ((rc = clSetKernelArg(b->kernel, 0, sizeof(cl_mem), &b->bufs[0])) != CL_SUCCESS ||
            (rc = clSetKernelArg(b->kernel, 1, sizeof(cl_mem), &b->bufs[1])) != CL_SUCCESS ||
            (rc = clSetKernelArg(b->kernel, 2, sizeof(cl_mem), &b->bufs[2])) != CL_SUCCESS ||
            (rc = clSetKernelArg(b->kernel, 3, sizeof s, &s)) != CL_SUCCESS ||
            (rc = clSetKernelArg(b->kernel, 4, sizeof n, &n)) != CL_SUCCESS)
            return cl_fail(err, rc, std::string(name_of(*b)) + ": clSetKernelArg");
    }
    return CPN_OK;
}

cpn_status prepare_transfer(Bench* b, cpn_msg* err) {
    cpn_status st = create_buffer(b, CL_MEM_READ_WRITE, b->bytes, "device", &b->bufs[0], err);
    if (st != CPN_OK) return st;
    cl_int rc = CL_SUCCESS;
    if (b->info->pinned) {
        st = create_buffer(b, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, b->bytes,
                           "pinned host (CL_MEM_ALLOC_HOST_PTR)", &b->host_buf, err);
        if (st != CPN_OK) return st;
        b->host_ptr =
            clEnqueueMapBuffer(b->queue, b->host_buf, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0,
                               static_cast<size_t>(b->bytes), 0, nullptr, nullptr, &rc);
        if (rc != CL_SUCCESS) {
            b->host_ptr = nullptr;
            return cl_fail(err, rc,
                           std::string(name_of(*b)) + ": clEnqueueMapBuffer(pinned host buffer)");
        }
    } else {
        b->host_ptr = std::malloc(static_cast<size_t>(b->bytes));
        if (b->host_ptr == nullptr)
            return fail(err, CPN_E_OUT_OF_MEMORY, "%s: malloc(%" PRIu64 " bytes) failed",
                        name_of(*b), b->bytes);
        b->host_malloced = true;
    }
    // h2d: random host source; d2h: random device source, host destination cleared.
    const uint64_t words = b->bytes / 4;
    uint32_t* host = static_cast<uint32_t*>(b->host_ptr);
    if (b->info->kind == Kind::XferH2D) {
        for (uint64_t i = 0; i < words; ++i) host[i] = rand_u32(b->seed, 0, i);
        const cl_uint zero = 0;
        rc = clEnqueueFillBuffer(b->queue, b->bufs[0], &zero, sizeof zero, 0,
                                 static_cast<size_t>(b->bytes), 0, nullptr, nullptr);
        if (rc == CL_SUCCESS) rc = clFinish(b->queue);
        if (rc != CL_SUCCESS)
            return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueFillBuffer");
    } else {
        std::memset(host, 0, static_cast<size_t>(b->bytes));
        st = fill_random(b, b->bufs[0], 0, false, err);
        if (st != CPN_OK) return st;
    }
    return CPN_OK;
}

cpn_status prepare_launch(const DeviceView& dev, ProgramCache* cache, Bench* b, cpn_msg* err) {
    cpn_status st = make_kernel(dev, cache, b, kLaunchSource, "", "cpn_bench_launch", err);
    if (st != CPN_OK) return st;
    st = create_buffer(b, CL_MEM_READ_WRITE, sizeof(cl_uint), "counter", &b->bufs[0], err);
    if (st != CPN_OK) return st;
    const cl_int rc = clSetKernelArg(b->kernel, 0, sizeof(cl_mem), &b->bufs[0]);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, std::string(name_of(*b)) + ": clSetKernelArg");
    b->global = 1;
    b->local = 1;
    return CPN_OK;
}

cpn_status set_compute_args(Bench* b, cpn_msg* err) {
    cl_int rc = clSetKernelArg(b->kernel, 0, sizeof(cl_mem), &b->bufs[0]);
    const cl_uint iters = b->shape.iters;
    if (rc == CL_SUCCESS) {
        switch (b->info->kind) {
            case Kind::Fp64: {
                const cl_double a = 0.999999, c = 0.001;
                if ((rc = clSetKernelArg(b->kernel, 1, sizeof a, &a)) == CL_SUCCESS)
                    rc = clSetKernelArg(b->kernel, 2, sizeof c, &c);
                break;
            }
            case Kind::Fp32:
            case Kind::Fp16: {
                const bool half = b->info->kind == Kind::Fp16;
                const cl_float a = half ? 1.0f - 1.0f / 2048 : 0.999999f;
                const cl_float c = half ? 1.0f / 64 : 0.001f;
                if ((rc = clSetKernelArg(b->kernel, 1, sizeof a, &a)) == CL_SUCCESS)
                    rc = clSetKernelArg(b->kernel, 2, sizeof c, &c);
                break;
            }
            default: {
                const cl_uint kpack = 0x7F05FD03u;
                rc = clSetKernelArg(b->kernel, 1, sizeof kpack, &kpack);
                if (rc == CL_SUCCESS) {
                    rc = clSetKernelArg(b->kernel, 2, sizeof iters, &iters);
                    return rc == CL_SUCCESS
                               ? CPN_OK
                               : cl_fail(err, rc, std::string(name_of(*b)) + ": clSetKernelArg");
                }
                break;
            }
        }
    }
    if (rc == CL_SUCCESS) rc = clSetKernelArg(b->kernel, 3, sizeof iters, &iters);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, std::string(name_of(*b)) + ": clSetKernelArg");
    return CPN_OK;
}

/* ---- run --------------------------------------------------------------------------------- */

cpn_status check_control(const Bench& b, const cpn_run_control* control, uint64_t rep,
                         cpn_msg* err) {
    if (control == nullptr) return CPN_OK;
    if (control->cancel != nullptr && *control->cancel != 0)
        return fail(err, CPN_E_CANCELLED, "%s: cancelled before repetition %" PRIu64, name_of(b),
                    rep + 1);
    if (control->deadline_ns != 0 && monotonic_ns() >= control->deadline_ns)
        return fail(err, CPN_E_DEADLINE_EXCEEDED, "%s: deadline passed before repetition %" PRIu64,
                    name_of(b), rep + 1);
    return CPN_OK;
}

/* The repetitions "reps" of this run: params, or the "reps" input buffer when there is one. */
cpn_status run_reps(const Bench& b, const cpn_run_io& io, uint64_t* reps, cpn_msg* err) {
    *reps = b.reps;
    if (io.input_count > 0 && io.inputs == nullptr)
        return fail(err, CPN_E_INVALID_ARGUMENT, "%s: inputs is NULL", name_of(b));
    for (uint32_t i = 0; i < io.input_count; ++i) {
        const cpn_buffer& in = io.inputs[i];
        if (in.name == nullptr || std::strcmp(in.name, CPN_BENCH_REPS_INPUT) != 0)
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: unexpected input buffer \"%s\" (the only input is \"reps\")",
                        name_of(b), in.name != nullptr ? in.name : "(null)");
        if (in.size != sizeof(uint64_t) || in.data == nullptr)
            return fail(err, CPN_E_INVALID_ARGUMENT,
                        "%s: input buffer \"reps\" must hold one uint64 (8 bytes), it has %" PRIu64,
                        name_of(b), in.size);
        const unsigned char* p = static_cast<const unsigned char*>(in.data);
        uint64_t v = 0;
        for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];  // little-endian
        if (v == 0)
            return fail(err, CPN_E_INVALID_ARGUMENT, "%s: input buffer \"reps\" must be >= 1",
                        name_of(b));
        *reps = v;
    }
    if (io.output_count > 0)
        return fail(
            err, CPN_E_INVALID_ARGUMENT,
            "%s: takes no output buffers (got %u, the first named \"%s\")", name_of(b),
            io.output_count,
            io.outputs != nullptr && io.outputs[0].name != nullptr ? io.outputs[0].name : "(null)");
    return CPN_OK;
}

/*
 * The timed region: `reps` calls of enqueue(), host monotonic clock from before the first to
 * after the final clFinish. finish_each: clFinish after every enqueue (launch latency);
 * otherwise at most two repetitions are in flight (wait for the previous one after queuing the
 * next), so the device never idles and a cancel takes effect within one repetition.
 */
template <typename Enqueue>
cpn_status timed(Bench* b, uint64_t reps, const cpn_run_control* control, bool finish_each,
                 Enqueue&& enqueue, double* seconds, cpn_msg* err) {
    cl_int rc = clFinish(b->queue);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, std::string(name_of(*b)) + ": clFinish (setup)");
    cl_event prev = nullptr;
    auto drain = [&] {
        if (prev != nullptr) clReleaseEvent(prev);
        prev = nullptr;
        clFinish(b->queue);
    };
    const uint64_t t0 = monotonic_ns();
    for (uint64_t r = 0; r < reps; ++r) {
        cpn_status st = check_control(*b, control, r, err);
        if (st != CPN_OK) {
            drain();
            return st;
        }
        if (finish_each) {
            rc = enqueue(nullptr);
            if (rc == CL_SUCCESS) rc = clFinish(b->queue);
        } else {
            cl_event cur = nullptr;
            rc = enqueue(&cur);
            if (rc == CL_SUCCESS) rc = clFlush(b->queue);
            if (rc == CL_SUCCESS && prev != nullptr) rc = clWaitForEvents(1, &prev);
            if (prev != nullptr) clReleaseEvent(prev);
            prev = cur;
        }
        if (rc != CL_SUCCESS) {
            drain();
            return cl_fail(err, rc,
                           std::string(name_of(*b)) + ": repetition " + std::to_string(r + 1) +
                               " on " + b->label);
        }
    }
    rc = clFinish(b->queue);
    const uint64_t t1 = monotonic_ns();
    if (prev != nullptr) clReleaseEvent(prev);
    if (rc != CL_SUCCESS) return cl_fail(err, rc, std::string(name_of(*b)) + ": clFinish");
    *seconds = static_cast<double>(t1 - t0) / 1e9;
    return CPN_OK;
}

/* Byte offsets of the sampled chunks of a run: the first, the last and kSampleChunks spread
 * pseudo-randomly (by seed and run number), each chunk_bytes long, 64-byte aligned. */
std::vector<uint64_t> sample_offsets(const Bench& b, uint64_t chunk_bytes) {
    std::vector<uint64_t> out{0};
    const uint64_t last = (b.bytes - chunk_bytes) / kMemGranule * kMemGranule;
    if (last == 0) return out;
    out.push_back(last);
    for (int k = 0; k < kSampleChunks; ++k) {
        const uint64_t r = splitmix64(b.seed ^ (b.runs << 20) ^ static_cast<uint64_t>(k));
        out.push_back(r % (last / kMemGranule + 1) * kMemGranule);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

/* Overwrites the sampled chunks of the destination with 0xff bytes, so that what the check
 * finds there afterwards was written by this run. */
cpn_status clear_samples(Bench* b, cl_mem dst, const std::vector<uint64_t>& offsets, uint64_t chunk,
                         cpn_msg* err) {
    for (uint64_t off : offsets) {
        if (dst == nullptr) {
            std::memset(static_cast<unsigned char*>(b->host_ptr) + off, 0xff,
                        static_cast<size_t>(chunk));
            continue;
        }
        const cl_uint ones = 0xffffffffu;
        const cl_int rc =
            clEnqueueFillBuffer(b->queue, dst, &ones, sizeof ones, static_cast<size_t>(off),
                                static_cast<size_t>(chunk), 0, nullptr, nullptr);
        if (rc != CL_SUCCESS)
            return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueFillBuffer (sentinel)");
    }
    return CPN_OK;
}

/* Compares the sampled chunks of the destination (a device buffer, or the host memory when
 * dst is NULL) with expect(word index); fills *checksum with the FNV-1a of what arrived. */
template <typename Expect>
cpn_status check_samples(Bench* b, cl_mem dst, const std::vector<uint64_t>& offsets, uint64_t chunk,
                         Expect&& expect, uint64_t* checksum, uint64_t* expected_sum,
                         cpn_msg* err) {
    std::vector<uint32_t> got(static_cast<size_t>(chunk / 4));
    uint64_t h = 0xcbf29ce484222325ull, he = h;
    for (uint64_t off : offsets) {
        if (dst == nullptr) {
            std::memcpy(got.data(), static_cast<unsigned char*>(b->host_ptr) + off,
                        static_cast<size_t>(chunk));
        } else {
            const cl_int rc =
                clEnqueueReadBuffer(b->queue, dst, CL_TRUE, static_cast<size_t>(off),
                                    static_cast<size_t>(chunk), got.data(), 0, nullptr, nullptr);
            if (rc != CL_SUCCESS)
                return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueReadBuffer (check)");
        }
        for (size_t k = 0; k < got.size(); ++k) {
            const uint64_t word = off / 4 + k;
            const uint32_t want = expect(word);
            h = (h ^ got[k]) * 0x100000001b3ull;
            he = (he ^ want) * 0x100000001b3ull;
            if (got[k] != want)
                return fail(err, CPN_E_INTERNAL,
                            "%s: verification failed on %s: 32-bit word %" PRIu64 " (byte %" PRIu64
                            ") expected %s, got %s",
                            name_of(*b), b->label.c_str(), word, word * 4, hex_u32(want).c_str(),
                            hex_u32(got[k]).c_str());
        }
    }
    *checksum = h;
    *expected_sum = he;
    return CPN_OK;
}

cpn_status write_result(const Bench& b, cpn_run_io* io, double ops, double seconds,
                        const std::string& check, cpn_msg* err,
                        const nlohmann::json& detail = nlohmann::json()) {
    nlohmann::json j;
    j["ops"] = ops;
    j["seconds"] = seconds;
    j["verified"] = true;
    j["check"] = check;
    if (!detail.is_null()) j["detail"] = detail;
    const std::string text = j.dump();
    if (io->result_json == nullptr || io->result_json_capacity < text.size() + 1)
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "%s: result_json needs %zu bytes, the host gave %" PRIu64, name_of(b),
                    text.size() + 1, io->result_json != nullptr ? io->result_json_capacity : 0);
    std::memcpy(io->result_json, text.c_str(), text.size() + 1);
    return CPN_OK;
}

const char* timing_note() {
    return "host CLOCK_MONOTONIC around enqueue..clFinish of all repetitions";
}

cpn_status run_compute(Bench* b, cpn_run_io* io, uint64_t reps, const cpn_run_control* control,
                       cpn_msg* err) {
    const size_t out_bytes = b->global * b->shape.w * b->elem_bytes;
    const cl_uint ones = 0xffffffffu;
    cl_int rc = clEnqueueFillBuffer(b->queue, b->bufs[0], &ones, sizeof ones, 0, out_bytes, 0,
                                    nullptr, nullptr);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueFillBuffer (sentinel)");
    double seconds = 0;
    cpn_status st = timed(
        b, reps, control, false,
        [&](cl_event* ev) {
            return clEnqueueNDRangeKernel(b->queue, b->kernel, 1, nullptr, &b->global, &b->local, 0,
                                          nullptr, ev);
        },
        &seconds, err);
    if (st != CPN_OK) return st;

    std::vector<unsigned char> out(out_bytes);
    rc = clEnqueueReadBuffer(b->queue, b->bufs[0], CL_TRUE, 0, out_bytes, out.data(), 0, nullptr,
                             nullptr);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueReadBuffer");
    const size_t lane_bytes = b->elem_bytes;
    const int w = b->shape.w;
    for (size_t gid = 0; gid < b->global; ++gid)
        for (int l = 0; l < w; ++l) {
            const unsigned char* got = &out[(gid * w + l) * lane_bytes];
            const unsigned char* want = &b->expected[((gid & 3) * w + l) * lane_bytes];
            if (std::memcmp(got, want, lane_bytes) == 0) continue;
            std::string e, g;
            switch (b->info->kind) {
                case Kind::Fp32: {
                    float x = 0, y = 0;
                    std::memcpy(&x, want, 4);
                    std::memcpy(&y, got, 4);
                    e = fmt_double(x);
                    g = fmt_double(y);
                    break;
                }
                case Kind::Fp64: {
                    double x = 0, y = 0;
                    std::memcpy(&x, want, 8);
                    std::memcpy(&y, got, 8);
                    e = fmt_double(x);
                    g = fmt_double(y);
                    break;
                }
                case Kind::Fp16: {
                    uint16_t x = 0, y = 0;
                    std::memcpy(&x, want, 2);
                    std::memcpy(&y, got, 2);
                    e = fmt_double(half_bits_to_double(x));
                    g = fmt_double(half_bits_to_double(y));
                    break;
                }
                default: {
                    uint32_t x = 0, y = 0;
                    std::memcpy(&x, want, 4);
                    std::memcpy(&y, got, 4);
                    e = hex_u32(x);
                    g = hex_u32(y);
                    break;
                }
            }
            return fail(err, CPN_E_INTERNAL,
                        "%s: verification failed on %s: work-item %zu lane %d expected %s, got %s",
                        name_of(*b), b->label.c_str(), gid, l, e.c_str(), g.c_str());
        }

    const uint64_t steps = static_cast<uint64_t>(b->shape.iters) * b->shape.un;
    const double per_lane_step = b->info->kind == Kind::Int8 ? 8.0 : 2.0;
    const double ops = per_lane_step * static_cast<double>(b->global) * w * b->shape.ch *
                       static_cast<double>(steps) * static_cast<double>(reps);
    std::string check = "all " + std::to_string(b->global) + " work-items x " + std::to_string(w) +
                        " lanes (sum of " + std::to_string(b->shape.ch) + " chains x " +
                        std::to_string(steps) + " steps) match the host ";
    if (b->info->kind == Kind::Int8)
        check += std::string("recurrence x += dot(char4(x), k) exactly, via ") +
                 (b->dot_ext ? "cl_khr_integer_dot_product dot()"
                             : "plain char4 multiply-accumulate into int (no "
                               "cl_khr_integer_dot_product)");
    else
        check += "fma recurrence bit for bit";
    check += "; timing: ";
    check += timing_note();
    return write_result(*b, io, ops, seconds, check, err);
}

cpn_status run_memory(Bench* b, cpn_run_io* io, uint64_t reps, const cpn_run_control* control,
                      cpn_msg* err) {
    const bool copy = b->info->kind == Kind::MemCopy;
    cl_mem dst = copy ? b->bufs[2] : b->bufs[0];
    const uint64_t chunk = std::min<uint64_t>(kSampleChunkBytes, b->bytes);
    const std::vector<uint64_t> offsets = sample_offsets(*b, chunk);
    cpn_status st = clear_samples(b, dst, offsets, chunk, err);
    if (st != CPN_OK) return st;
    double seconds = 0;
    st = timed(
        b, reps, control, false,
        [&](cl_event* ev) {
            return clEnqueueNDRangeKernel(b->queue, b->kernel, 1, nullptr, &b->global, &b->local, 0,
                                          nullptr, ev);
        },
        &seconds, err);
    if (st != CPN_OK) return st;
    const uint64_t seed = b->seed;
    uint64_t sum = 0, want_sum = 0;
    if (copy) {
        st = check_samples(
            b, dst, offsets, chunk, [&](uint64_t i) { return rand_u32(seed, 0, i); }, &sum,
            &want_sum, err);
    } else {
        st = check_samples(
            b, dst, offsets, chunk,
            [&](uint64_t i) {
                const float v = std::fma(kTriadScalar, rand_f32(seed, 2, i), rand_f32(seed, 1, i));
                uint32_t u = 0;
                std::memcpy(&u, &v, 4);
                return u;
            },
            &sum, &want_sum, err);
    }
    ++b->runs;
    if (st != CPN_OK) return st;
    const double ops =
        (copy ? 2.0 : 3.0) * static_cast<double>(b->bytes) * static_cast<double>(reps);
    char check[768];
    std::snprintf(check, sizeof check,
                  "%zu sampled chunks of %" PRIu64
                  " bytes of %s (cleared before the run) match "
                  "%s exactly (STREAM counting: %d arrays of %" PRIu64
                  " bytes per repetition; "
                  "%s stores); timing: %s",
                  offsets.size(), chunk, copy ? "c" : "a", copy ? "c = a" : "a = fma(3, c, b)",
                  copy ? 2 : 3, b->bytes, b->nontemporal ? "non-temporal" : "plain", timing_note());
    return write_result(*b, io, ops, seconds, check, err);
}

cpn_status run_transfer(Bench* b, cpn_run_io* io, uint64_t reps, const cpn_run_control* control,
                        cpn_msg* err) {
    const bool h2d = b->info->kind == Kind::XferH2D;
    const uint64_t chunk = std::min<uint64_t>(kSampleChunkBytes, b->bytes);
    const std::vector<uint64_t> offsets = sample_offsets(*b, chunk);
    cl_mem dst = h2d ? b->bufs[0] : nullptr;  // NULL: the host memory
    cpn_status st = clear_samples(b, dst, offsets, chunk, err);
    if (st != CPN_OK) return st;
    double seconds = 0;
    // Piece k covers [bounds[k], bounds[k+1]), 64-byte aligned; one piece unless split.
    std::vector<size_t> bounds;
    for (uint32_t k = 0; k <= b->chunks; ++k)
        bounds.push_back(static_cast<size_t>(b->bytes / kMemGranule * k / b->chunks * kMemGranule));
    bounds.back() = static_cast<size_t>(b->bytes);
    unsigned char* host = static_cast<unsigned char*>(b->host_ptr);
    st = timed(
        b, reps, control, false,
        [&](cl_event* ev) {
            if (b->chunks == 1)
                return h2d ? clEnqueueWriteBuffer(b->queue, b->bufs[0], CL_FALSE, 0, bounds[1],
                                                  host, 0, nullptr, ev)
                           : clEnqueueReadBuffer(b->queue, b->bufs[0], CL_FALSE, 0, bounds[1], host,
                                                 0, nullptr, ev);
            for (uint32_t k = 0; k < b->chunks; ++k) {
                const size_t off = bounds[k], len = bounds[k + 1] - bounds[k];
                const cl_int rc = h2d ? clEnqueueWriteBuffer(b->queue, b->bufs[0], CL_FALSE, off,
                                                             len, host + off, 0, nullptr, nullptr)
                                      : clEnqueueReadBuffer(b->queue, b->bufs[0], CL_FALSE, off,
                                                            len, host + off, 0, nullptr, nullptr);
                if (rc != CL_SUCCESS) return rc;
            }
            // On the out-of-order queue a marker without a wait list completes after every
            // piece queued before it: the repetition's event.
            return clEnqueueMarkerWithWaitList(b->queue, 0, nullptr, ev);
        },
        &seconds, err);
    if (st != CPN_OK) return st;
    const uint64_t seed = b->seed;
    uint64_t sum = 0, want_sum = 0;
    st = check_samples(
        b, dst, offsets, chunk, [&](uint64_t i) { return rand_u32(seed, 0, i); }, &sum, &want_sum,
        err);
    ++b->runs;
    if (st != CPN_OK) return st;
    if (sum != want_sum)
        return fail(err, CPN_E_INTERNAL, "%s: checksum expected %016" PRIx64 ", got %016" PRIx64,
                    name_of(*b), want_sum, sum);
    char check[768];
    std::snprintf(check, sizeof check,
                  "FNV-1a checksum %016" PRIx64 " of %zu sampled chunks of %" PRIu64
                  " bytes (cleared before the run) that arrived %s matches the source; host "
                  "memory %s; each repetition one %s of all %" PRIu64
                  " bytes as %u concurrent piece(s); timing: %s",
                  sum, offsets.size(), chunk, h2d ? "on the device" : "in host memory",
                  b->info->pinned ? "CL_MEM_ALLOC_HOST_PTR buffer mapped once" : "malloc'd",
                  h2d ? "clEnqueueWriteBuffer" : "clEnqueueReadBuffer", b->bytes, b->chunks,
                  timing_note());
    return write_result(*b, io, static_cast<double>(b->bytes) * static_cast<double>(reps), seconds,
                        check, err);
}

cpn_status run_launch(Bench* b, cpn_run_io* io, uint64_t reps, const cpn_run_control* control,
                      cpn_msg* err) {
    const cl_uint zero = 0;
    cl_int rc = clEnqueueFillBuffer(b->queue, b->bufs[0], &zero, sizeof zero, 0, sizeof zero, 0,
                                    nullptr, nullptr);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueFillBuffer");
    double seconds = 0;
    // Also the device's own view of each launch (profiling: queued to end, which is what clpeak
    // calls kernel launch latency), beside the host-observed launch-to-completion the figure is.
    double queued_to_end_ns = 0;
    uint64_t profiled = 0;
    cpn_status st = timed(
        b, reps, control, true,
        [&](cl_event* ev) {
            cl_event e = nullptr;
            const cl_int r = clEnqueueNDRangeKernel(b->queue, b->kernel, 1, nullptr, &b->global, &b->local,
                                                    0, nullptr, b->profiling ? &e : ev);
            if (e != nullptr) {
                clWaitForEvents(1, &e);
                cl_ulong q = 0, end = 0;
                if (clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_QUEUED, sizeof q, &q, nullptr) == CL_SUCCESS &&
                    clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_END, sizeof end, &end, nullptr) == CL_SUCCESS &&
                    end >= q) {
                    queued_to_end_ns += static_cast<double>(end - q);
                    ++profiled;
                }
                clReleaseEvent(e);
            }
            return r;
        },
        &seconds, err);
    if (st != CPN_OK) return st;
    cl_uint counter = 0;
    rc = clEnqueueReadBuffer(b->queue, b->bufs[0], CL_TRUE, 0, sizeof counter, &counter, 0, nullptr,
                             nullptr);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, std::string(name_of(*b)) + ": clEnqueueReadBuffer");
    if (counter != static_cast<cl_uint>(reps))
        return fail(err, CPN_E_INTERNAL,
                    "%s: verification failed on %s: the kernel's counter expected %" PRIu64
                    " launches, got %u",
                    name_of(*b), b->label.c_str(), reps, counter);
    const std::string check =
        "the one-work-item kernel's counter equals the " + std::to_string(reps) +
        " launches (each clEnqueueNDRangeKernel + clFinish); timing: " + timing_note();
    nlohmann::json detail;
    if (profiled > 0) detail = {{"queued_to_end_s", queued_to_end_ns / static_cast<double>(profiled) / 1e9}};
    return write_result(*b, io, static_cast<double>(reps), seconds, check, err, detail);
}

/* One untimed launch of the kernel: PoCL finishes compiling a kernel for its work-group size at
 * the first launch, and the memory kernels touch every page of their arrays once. */
cpn_status warm_up(Bench* b, cpn_msg* err) {
    if (b->kernel == nullptr) return CPN_OK;  // transfers
    cl_int rc = clEnqueueNDRangeKernel(b->queue, b->kernel, 1, nullptr, &b->global, &b->local, 0,
                                       nullptr, nullptr);
    if (rc == CL_SUCCESS) rc = clFinish(b->queue);
    if (rc != CL_SUCCESS)
        return cl_fail(err, rc, std::string(name_of(*b)) + ": warm-up launch on " + b->label);
    return CPN_OK;
}

std::string known_kinds() {
    std::string s;
    for (const KindInfo& k : kKinds) s += (s.empty() ? "" : ", ") + std::string(k.name);
    return s;
}

/* Resolves the kind: *info for one this backend runs; otherwise *reason says why not. */
void resolve(const char* kind, const KindInfo** info, std::string* reason) {
    *info = find_kind(kind);
    if (*info != nullptr) return;
    for (const NoKind& n : kNoKinds)
        if (std::strcmp(n.name, kind) == 0) {
            *reason = std::string(kind) + ": not supported by the opencl backend: " + n.reason;
            return;
        }
    *reason = std::string("unknown benchmark kind \"") + kind +
              "\" (the opencl backend runs: " + known_kinds() + ")";
}

/* The array / transfer size for params on this device, or an error naming "bytes". */
cpn_status sized_bytes(const KindInfo& k, const Params& p, const DeviceFacts& f, uint64_t* out,
                       cpn_msg* err) {
    if (!p.bytes_given) {
        *out = default_bytes(f);
        return CPN_OK;
    }
    if (p.bytes < kMemGranule)
        return fail(err, CPN_E_INVALID_ARGUMENT,
                    "%s: param \"bytes\" must be at least %" PRIu64 ", got %" PRIu64, k.name,
                    kMemGranule, p.bytes);
    *out = p.bytes / kMemGranule * kMemGranule;  // whole 64-byte vectors
    return CPN_OK;
}

}  // namespace

/* ---- entry points ------------------------------------------------------------------------ */

cpn_status query(const DeviceView& dev, const cpn_workload* w, cpn_query_result* out,
                 cpn_msg* err) {
    const KindInfo* info = nullptr;
    std::string reason;
    resolve(w->kind, &info, &reason);
    if (info == nullptr) {
        plugin::copy_str(out->reason, reason);
        return CPN_OK;
    }
    Params p;
    cpn_status st = parse_params(w->kind, w->params_json, &p, err);
    if (st != CPN_OK) {
        plugin::copy_str(out->reason, err != nullptr ? err->text : "invalid params_json");
        return st;
    }
    const DeviceFacts f = device_facts(dev.device);
    reason = unsupported_reason(*info, f);
    if (!reason.empty()) {
        plugin::copy_str(out->reason, reason);
        return CPN_OK;
    }
    if (is_sized(info->kind)) {
        uint64_t bytes = 0;
        st = sized_bytes(*info, p, f, &bytes, err);
        if (st != CPN_OK) {
            plugin::copy_str(out->reason, err != nullptr ? err->text : "invalid bytes");
            return st;
        }
        if (f.max_alloc != 0 && bytes > f.max_alloc) {
            plugin::copy_str(out->reason, std::string(info->name) + ": " + std::to_string(bytes) +
                                              " bytes exceed CL_DEVICE_MAX_MEM_ALLOC_SIZE (" +
                                              std::to_string(f.max_alloc) + ") of " + dev.label);
            return CPN_OK;
        }
        out->device_memory_bytes =
            (info->kind == Kind::MemCopy || info->kind == Kind::MemTriad ? 3 : 1) * bytes;
    } else if (is_compute(info->kind)) {
        const ComputeShape s = shape_for(info->kind, f);  // the small output buffer
        out->device_memory_bytes =
            static_cast<uint64_t>(s.wg) * s.groups_per_cu * f.compute_units * s.w * 8;
    } else {
        out->device_memory_bytes = sizeof(cl_uint);
    }
    out->supported = 1;
    return CPN_OK;
}

cpn_status prepare(const DeviceView& dev, ProgramCache* cache, const cpn_workload* w, Bench** out,
                   cpn_msg* err) {
    const KindInfo* info = nullptr;
    std::string reason;
    resolve(w->kind, &info, &reason);
    if (info == nullptr) return fail(err, CPN_E_UNSUPPORTED, "%s", reason.c_str());
    Params p;
    cpn_status st = parse_params(w->kind, w->params_json, &p, err);
    if (st != CPN_OK) return st;
    const DeviceFacts f = device_facts(dev.device);
    reason = unsupported_reason(*info, f);
    if (!reason.empty()) return fail(err, CPN_E_UNSUPPORTED, "%s", reason.c_str());

    auto b = std::make_unique<Bench>();
    b->info = info;
    b->label = dev.label;
    b->device = dev.device;
    b->reps = p.reps;
    b->seed = p.seed;
    if (is_sized(info->kind)) {
        st = sized_bytes(*info, p, f, &b->bytes, err);
        if (st != CPN_OK) return st;
        const uint64_t arrays = info->kind == Kind::MemCopy || info->kind == Kind::MemTriad ? 3 : 1;
        if ((f.max_alloc != 0 && b->bytes > f.max_alloc) ||
            (f.global_mem != 0 && arrays * b->bytes > f.global_mem))
            return fail(err, CPN_E_OUT_OF_MEMORY,
                        "%s: tried %" PRIu64 " x %" PRIu64
                        " bytes on %s (CL_DEVICE_MAX_MEM_ALLOC_SIZE %" PRIu64
                        ", CL_DEVICE_GLOBAL_MEM_SIZE %" PRIu64 ")",
                        info->name, arrays, b->bytes, dev.label.c_str(),
                        static_cast<uint64_t>(f.max_alloc), static_cast<uint64_t>(f.global_mem));
    }

    clRetainContext(dev.context);
    b->context = dev.context;
    // Transfers on a CPU device are memcpy's by the runtime's worker threads: one piece per
    // compute unit on an out-of-order queue lets every core copy (a GPU's DMA engine needs no
    // such help). Everything else runs on an in-order queue.
    const bool split = info->kind == Kind::XferH2D || info->kind == Kind::XferD2H;
    cl_command_queue_properties qp =
        split && f.cpu && f.compute_units > 1 ? CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE : 0;
    if (info->kind == Kind::Launch) qp |= CL_QUEUE_PROFILING_ENABLE;
    cl_int rc = CL_SUCCESS;
    auto make_queue = [&] {
        if (dev.platform_version >= 200) {
            const cl_queue_properties qprops[] = {CL_QUEUE_PROPERTIES, qp, 0};
            return clCreateCommandQueueWithProperties(dev.context, dev.device, qprops, &rc);
        }
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
        return clCreateCommandQueue(dev.context, dev.device, qp, &rc);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    };
    b->queue = make_queue();
    if (rc != CL_SUCCESS && qp != 0) {  // no out-of-order queues: whole transfers in order
        qp = 0;
        b->queue = make_queue();
    }
    b->profiling = (qp & CL_QUEUE_PROFILING_ENABLE) != 0;
    if ((qp & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0) b->chunks = f.compute_units;
    if (rc != CL_SUCCESS) {
        b->queue = nullptr;
        return cl_fail(err, rc, std::string(info->name) + ": clCreateCommandQueue on " + dev.label);
    }

    if (is_compute(info->kind)) {
        st = prepare_compute(dev, cache, f, b.get(), err);
        if (st == CPN_OK) st = set_compute_args(b.get(), err);
    } else if (info->kind == Kind::MemCopy || info->kind == Kind::MemTriad) {
        st = prepare_memory(dev, cache, b.get(), err);
    } else if (info->kind == Kind::Launch) {
        st = prepare_launch(dev, cache, b.get(), err);
    } else {
        st = prepare_transfer(b.get(), err);
    }
    if (st != CPN_OK) return st;
    st = warm_up(b.get(), err);
    if (st != CPN_OK) return st;
    *out = b.release();
    return CPN_OK;
}

cpn_status run(Bench* b, cpn_run_io* io, const cpn_run_control* control, cpn_msg* err) {
    uint64_t reps = 0;
    cpn_status st = run_reps(*b, *io, &reps, err);
    if (st != CPN_OK) return st;
    if (io->result_json == nullptr || io->result_json_capacity < 256)
        return fail(
            err, CPN_E_INVALID_ARGUMENT,
            "%s: result_json must have room for the result (at least 256 bytes, got %" PRIu64 ")",
            name_of(*b), io->result_json != nullptr ? io->result_json_capacity : 0);
    switch (b->info->kind) {
        case Kind::Fp32:
        case Kind::Fp64:
        case Kind::Fp16:
        case Kind::Int8:
            st = run_compute(b, io, reps, control, err);
            break;
        case Kind::MemCopy:
        case Kind::MemTriad:
            st = run_memory(b, io, reps, control, err);
            break;
        case Kind::XferH2D:
        case Kind::XferD2H:
            st = run_transfer(b, io, reps, control, err);
            break;
        case Kind::Launch:
            st = run_launch(b, io, reps, control, err);
            break;
    }
    if (st == CPN_OK && control != nullptr && control->progress != nullptr)
        control->progress(control->user, 1.0, "done");
    return st;
}

void release(Bench* b) { delete b; }

}  // namespace cpn::opencl::bench
