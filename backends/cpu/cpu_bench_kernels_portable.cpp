// cpu_bench_kernels_portable.cpp: benchmark kernels in plain C++ and GCC vector extensions, for
// every architecture (arm64, riscv64, ...) and as the fallback of x86-64 without AVX2. On
// arm64 the clock chain is inline asm; elsewhere a register chain the compiler cannot fold.
#include <cmath>
#include <cstring>

#include "cpu_bench_kernels.hpp"

#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

namespace cpn::cpubench {

namespace {

/* Two NEON q registers per chain on arm64 (32 registers: 12 chains fit with the constants);
 * one xmm on baseline x86-64 (16 registers); whatever the target's vector unit is elsewhere
 * (or scalar code, which is still correct). */
#if defined(__x86_64__)
constexpr unsigned kVecBytes = 16;
#else
constexpr unsigned kVecBytes = 32;
#endif
typedef double vd __attribute__((vector_size(kVecBytes)));
typedef float vf __attribute__((vector_size(kVecBytes)));

constexpr unsigned kPortableChains = 12;

template <typename V, typename T>
void fma_chains(void* state, uint64_t iters) {
    V acc[kPortableChains];
    std::memcpy(acc, state, sizeof acc);
    const V a = V{} + static_cast<T>(kFmaA);
    const V b = V{} + static_cast<T>(kFmaB);
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (unsigned c = 0; c < kPortableChains; ++c) acc[c] = acc[c] * a + b;
    }
    std::memcpy(state, acc, sizeof acc);
}

void copy_portable(double* __restrict dst, const double* __restrict src, size_t n, bool) {
    for (size_t i = 0; i < n; ++i) dst[i] = src[i];
}

void triad_portable(double* __restrict a, const double* __restrict b, const double* __restrict c,
                    double s, size_t n, bool) {
    for (size_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

uint64_t clock_portable(uint64_t x, uint64_t iters) {
#if defined(__aarch64__)
    const uint64_t one = 1;
    asm volatile(
        "1:\n\t"
        ".rept 64\n\t"
        "add %0, %0, %2\n\t"
        ".endr\n\t"
        "subs %1, %1, #1\n\t"
        "b.ne 1b\n\t"
        : "+r"(x), "+r"(iters)
        : "r"(one)
        : "cc");
    return x;
#else
    /* The empty asm makes x opaque after every add: the compiler can neither fold the 64 adds
     * into one nor keep x anywhere but a register. */
    uint64_t one = 1;
    asm volatile("" : "+r"(one));
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 64
        for (int k = 0; k < 64; ++k) {
            x += one;
            asm volatile("" : "+r"(x));
        }
    }
    return x;
#endif
}

}  // namespace

ComputeKernel portable_fp64() {
    ComputeKernel k;
    k.isa = "portable";
    k.fn = fma_chains<vd, double>;
    k.lanes = kVecBytes / 8;
    k.chains = kPortableChains;
    k.ops_per_iter = 2.0 * k.lanes * k.chains;
    k.fused = false;  // whatever the compiler contracted to; verification accepts either
    return k;
}

ComputeKernel portable_fp32() {
    ComputeKernel k;
    k.isa = "portable";
    k.fn = fma_chains<vf, float>;
    k.lanes = kVecBytes / 4;
    k.chains = kPortableChains;
    k.ops_per_iter = 2.0 * k.lanes * k.chains;
    k.fused = false;
    return k;
}

MemKernels portable_mem() {
    MemKernels m;
    m.isa = "portable";
    m.copy = copy_portable;
    m.triad = triad_portable;
    m.has_nontemporal = false;
    m.fused = false;
    return m;
}

ClockKernel portable_clock() {
    ClockKernel k;
#if defined(__aarch64__)
    k.isa = "aarch64";
#else
    k.isa = "portable";
#endif
    k.fn = clock_portable;
    k.exact = true;
    return k;
}

uint16_t fp16_from_double(double v) {
    uint16_t sign = std::signbit(v) ? 0x8000u : 0u;
    v = std::fabs(v);
    if (v == 0) return sign;
    int e = 0;
    double m = std::frexp(v, &e);               // v = m * 2^e, m in [0.5, 1)
    double q = std::nearbyint(std::ldexp(m, 11));  // 11 significant bits, nearest even
    if (q >= 2048.0) {
        q /= 2.0;
        ++e;
    }
    const int biased = e - 1 + 15;              // v = (q / 1024) * 2^(e-1)
    if (biased <= 0 || biased >= 31) return static_cast<uint16_t>(sign | 0x7c00u);  // outside use
    return static_cast<uint16_t>(sign | (static_cast<unsigned>(biased) << 10) |
                                 (static_cast<unsigned>(q) - 1024u));
}

double fp16_to_double(uint16_t h) {
    const int biased = (h >> 10) & 0x1f;
    const unsigned frac = h & 0x3ffu;
    double v = biased == 0 ? std::ldexp(static_cast<double>(frac), -24)
                           : std::ldexp(static_cast<double>(1024u + frac), biased - 25);
    if (biased == 31) v = frac != 0 ? NAN : INFINITY;
    return (h & 0x8000u) != 0 ? -v : v;
}

#if !defined(__x86_64__) || defined(CPN_CPU_BENCH_PORTABLE_ONLY)

const Features& features() {
    static const Features f = [] {
        Features out;
#if defined(__aarch64__)
        out.aarch64 = true;
        const unsigned long hw = getauxval(AT_HWCAP);
        out.fphp = (hw & (1ul << 9)) != 0;      // HWCAP_FPHP
        out.asimddp = (hw & (1ul << 20)) != 0;  // HWCAP_ASIMDDP
#endif
        return out;
    }();
    return f;
}

ComputeKernel select_fp64(std::string&) { return portable_fp64(); }
ComputeKernel select_fp32(std::string&) { return portable_fp32(); }

ComputeKernel select_fp16(std::string& why) {
    why = features().fphp ? "bench.fp16: no fp16 benchmark kernel for this ISA yet (fphp present)"
                          : "bench.fp16: this CPU has no native fp16 arithmetic (fphp absent)";
    return {};
}
ComputeKernel select_bf16(std::string& why) {
    why = "bench.bf16: no bf16 dot-product instructions on this CPU (avx512_bf16 is x86 only)";
    return {};
}
ComputeKernel select_int8(std::string& why) {
    why = features().asimddp
              ? "bench.int8: no int8 dot-product benchmark kernel for this ISA yet (asimddp present)"
              : "bench.int8: this CPU has no int8 dot-product instructions (asimddp absent)";
    return {};
}
ComputeKernel select_mm_bf16(std::string& why) {
    why = "bench.mm.bf16: no matrix unit on this CPU (AMX is x86 only)";
    return {};
}
ComputeKernel select_mm_int8(std::string& why) {
    why = "bench.mm.int8: no matrix unit on this CPU (AMX is x86 only)";
    return {};
}
std::string amx_enable() { return "AMX is x86 only"; }
MemKernels select_mem() { return portable_mem(); }
ClockKernel select_clock() { return portable_clock(); }

#endif

}  // namespace cpn::cpubench
