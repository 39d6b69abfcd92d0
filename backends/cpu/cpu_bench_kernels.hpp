// cpu_bench_kernels.hpp: the inner loops of the CPU benchmark kinds, one set per ISA, and the
// run-time detection that picks among them. The x86 set (cpu_bench_kernels_x86.cpp) is built
// for the generic x86-64 baseline with a target attribute per function, so one binary carries
// AVX2, AVX-512, VNNI, BF16, FP16 and AMX kernels and uses whichever this CPU has; the portable
// set (cpu_bench_kernels_portable.cpp) builds everywhere (GCC vector extensions, plain C++, and
// an inline-asm clock chain on aarch64).
//
// Every compute kernel works on a state block of `chains` independent vector accumulators of
// `lanes` elements each (element e = chain * lanes + lane), loads it, runs `iters` iterations of
// one instruction per chain, and stores it back, so the host can recompute every element.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cpn::cpubench {

/* What the CPU and the OS together allow (CPUID and XCR0 on x86, HWCAP on arm64). */
struct Features {
    bool x86 = false;
    bool avx2 = false, fma = false;
    bool avx512f = false, avx512bw = false, avx512vl = false;
    bool avx512_bf16 = false, avx512_vnni = false, avx_vnni = false, avx512_fp16 = false;
    bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
    bool aarch64 = false, asimddp = false, fphp = false;
};
const Features& features();

/* ---- compute: constants of the recurrences, shared by kernels and host verification ---- */

/* fp64 / fp32 / fp16: x = fma(x, kFmaA, kFmaB) per element. a slightly below 1 keeps every
 * value in [1, 2) (the fixed point is b / (1 - a) = 1.5): no overflow, no denormal. */
constexpr double kFmaA = 0.99609375;          // 1 - 2^-8, exact in fp16, bf16, fp32, fp64
constexpr double kFmaB = 0.005859375;         // 1.5 * 2^-8
inline double fma_start(unsigned e) { return 1.0 + e / 512.0; }  // e < 512: exact in fp16

/* bf16 dot product: acc += x*y + y*(-x) per lane, so the pair products cancel exactly and every
 * partial sum is exact whatever order the hardware adds them in: each accumulator must come
 * back holding its start value, bit for bit. */
inline float bf16_acc_start(unsigned e) { return 1.0f + static_cast<float>(e) / 1024.0f; }
inline float bf16_x(unsigned lane) { return 1.0f + static_cast<float>(lane % 16) / 8.0f; }
inline float bf16_y(unsigned lane) { return 2.0f - static_cast<float>(lane % 16) / 16.0f; }

/* int8 dot product (u8 x s8 -> s32, 4 per lane, wrapping): acc += dot(u[lane], s[lane]). */
inline uint8_t int8_u(unsigned byte) { return static_cast<uint8_t>(byte * 37u + 11u); }
inline int8_t int8_s(unsigned byte) { return static_cast<int8_t>(static_cast<uint8_t>(byte * 53u + 156u)); }
inline uint32_t int8_acc_start(unsigned e) { return e * 2654435761u; }

/* One compute kernel: `fn(state, iters)` with state as described above (64-byte aligned). */
using ComputeFn = void (*)(void* state, uint64_t iters);
struct ComputeKernel {
    const char* isa = nullptr;   // what the result names: "avx512f", "avx2+fma", "portable"
    ComputeFn fn = nullptr;
    unsigned lanes = 0;          // elements per vector
    unsigned chains = 0;         // independent accumulators
    double ops_per_iter = 0;     // operations of one iteration over all chains
    bool fused = true;           // fp kernels: fma (true) or multiply then add (false)
};

/* ---- AMX: 4 accumulator tiles C0..C3 (16x16 s32/fp32), A0,A1 (16 x 64 bytes), B0,B1 ------ */
struct AmxState {
    alignas(64) uint8_t c[4][16 * 64];
    alignas(64) uint8_t a[2][16 * 64];
    alignas(64) uint8_t b[2][16 * 64];
};
/* Asks the kernel for permission to use AMX tile data in this process (arch_prctl
 * ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA). Empty on success, else why not. */
std::string amx_enable();

/* ---- memory: STREAM copy (dst = src) and triad (a = b + s * c) over n doubles ----------- */
using CopyFn = void (*)(double* dst, const double* src, size_t n, bool nontemporal);
using TriadFn = void (*)(double* a, const double* b, const double* c, double s, size_t n,
                         bool nontemporal);
struct MemKernels {
    const char* isa = nullptr;
    CopyFn copy = nullptr;
    TriadFn triad = nullptr;
    bool has_nontemporal = false;
    bool fused = false;          // triad computes fma(s, c, b) (true) or s*c + b rounded twice
};

/* ---- clock: `iters` iterations of 64 dependent integer adds of 1, from `start` ----------- */
using ClockFn = uint64_t (*)(uint64_t start, uint64_t iters);
struct ClockKernel {
    const char* isa = nullptr;
    ClockFn fn = nullptr;
    bool exact = false;          // a true dependent add chain (one add per cycle)
};

/* Selection: the best kernel this CPU runs, or a kernel with fn == nullptr and `why` set. */
ComputeKernel select_fp64(std::string& why);
ComputeKernel select_fp32(std::string& why);
ComputeKernel select_fp16(std::string& why);
ComputeKernel select_bf16(std::string& why);
ComputeKernel select_int8(std::string& why);
ComputeKernel select_mm_bf16(std::string& why);   // fn takes an AmxState*
ComputeKernel select_mm_int8(std::string& why);
MemKernels select_mem();
ClockKernel select_clock();

/* Portable set, also the fallback on x86 without AVX2 (defined in the portable file). */
ComputeKernel portable_fp64();
ComputeKernel portable_fp32();
MemKernels portable_mem();
ClockKernel portable_clock();

/* The select_* functions and features() are defined by the x86 file on x86-64 and by the
 * portable file elsewhere (and on x86-64 too when built with CPN_CPU_BENCH_PORTABLE_ONLY). */

/* fp16 helpers for the host side of the fp16 recurrence (binary16 bit patterns). */
uint16_t fp16_from_double(double v);   // round to nearest even; normal range only
double fp16_to_double(uint16_t h);

}  // namespace cpn::cpubench
