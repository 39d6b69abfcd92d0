// bench.cu: device code of the "bench.*" workloads (backends/api/cpn_bench.h), except the
// Hopper wgmma kernels, which live in bench_sm90a.cu (they need the arch-specific sm_90a target).
//
// Compiled at build time by nvcc to a fatbin (see ../CMakeLists.txt), embedded in the plugin and
// loaded with cuModuleLoadData; like selftest.cu it includes no header. Every kernel is extern
// "C" so the host finds it by its plain name, and each one's arithmetic is mirrored exactly by a
// host model in ../cuda_bench.cpp: change one and you must change the other.
//
// Compute kernels: one launch = one fixed unit of work that starts from values derived from the
// thread index and writes one reduction per thread (vector kinds) or per warp (matrix kinds), so
// the host can check every thread/warp. Operands that stay constant (the multiplier, B) are
// kernel arguments, never compile-time constants, so the compiler cannot fold the work away.

typedef unsigned long long u64;

/* Chains per thread of the vector kernels, and the unroll of their iteration loop. The host
 * passes an iteration count that is a multiple of CPN_UNROLL. */
#define CPN_CHAINS 16
#define CPN_UNROLL 16

__device__ __forceinline__ unsigned global_thread() { return blockIdx.x * blockDim.x + threadIdx.x; }

/* ---- vector units ---------------------------------------------------------------------- */

/* fp32: 16 independent chains x <- fma(x, a, b) per thread; a loop trip is 256 FFMA. Chain j of
 * thread t starts at 1 + ((t & 15) * 16 + j) / 256. out[t] = sum of the chains in double (exact:
 * 16 floats in [1, 2) fit a double's 53 bits), so the order of the sum does not matter. */
extern "C" __global__ void __launch_bounds__(256) cpn_bench_fp32(unsigned iters, float a, float b,
                                                                 double* __restrict__ out) {
    const unsigned t = global_thread();
    float x[CPN_CHAINS];
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) x[j] = 1.0f + (float)((t & 15u) * 16u + j) * (1.0f / 256.0f);
    for (unsigned i = 0; i < iters; i += CPN_UNROLL) {
#pragma unroll
        for (int u = 0; u < CPN_UNROLL; ++u) {
#pragma unroll
            for (int j = 0; j < CPN_CHAINS; ++j) x[j] = __fmaf_rn(x[j], a, b);
        }
    }
    double s = 0.0;
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) s += (double)x[j];
    out[t] = s;
}

/* fp64: the same with DFMA; 64 DFMA a loop trip (unroll 4). The sum is in chain order with
 * __dadd_rn (not exact, so the host adds in the same order). */
extern "C" __global__ void __launch_bounds__(256) cpn_bench_fp64(unsigned iters, double a, double b,
                                                                 double* __restrict__ out) {
    const unsigned t = global_thread();
    double x[CPN_CHAINS];
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) x[j] = 1.0 + (double)((t & 15u) * 16u + j) * (1.0 / 256.0);
    for (unsigned i = 0; i < iters; i += 4) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
#pragma unroll
            for (int j = 0; j < CPN_CHAINS; ++j) x[j] = __fma_rn(x[j], a, b);
        }
    }
    double s = 0.0;
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) s = __dadd_rn(s, x[j]);
    out[t] = s;
}

/* Packed half / bfloat16 pairs are plain 32-bit registers in PTX; fma.rn.{f16x2,bf16x2} is one
 * HFMA2 with a single rounding per lane. */
__device__ __forceinline__ unsigned hfma2_f16(unsigned x, unsigned a, unsigned b) {
    unsigned d;
    asm volatile("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(x), "r"(a), "r"(b));
    return d;
}

/* Bits of an fp16 / bf16 value k / 512 + 1 (fp16) or k / 128 + 1 (bf16), k < 512 / 128: 1.0 is
 * 0x3C00 / 0x3F80 and the k lands in the mantissa's top bits. */
__device__ __forceinline__ unsigned f16_one_plus(unsigned k) { return 0x3C00u | ((k & 511u) << 1); }
__device__ __forceinline__ unsigned bf16_one_plus(unsigned k) { return 0x3F80u | (k & 127u); }

/* Halves of a packed pair as float (exact), for the per-thread sum. */
__device__ __forceinline__ float f16_to_float(unsigned h) {
    float f;
    asm("{ .reg .f16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(f) : "h"((unsigned short)h));
    return f;
}
__device__ __forceinline__ float bf16_to_float(unsigned h) { return __uint_as_float((h & 0xFFFFu) << 16); }

/* fp16: 16 chains of half2 (32 lanes of x <- fma(x, a, b)) per thread, 256 HFMA2 a loop trip.
 * Lane h of chain j of thread t starts at 1 + ((t & 15) * 32 + 2j + h) / 512. out[t] = the sum of
 * the 32 lanes in float (exact: halves in [1, 2) need 11 bits, their sum 16). */
extern "C" __global__ void __launch_bounds__(256) cpn_bench_fp16(unsigned iters, unsigned a2, unsigned b2,
                                                                 float* __restrict__ out) {
    const unsigned t = global_thread();
    unsigned x[CPN_CHAINS];
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) {
        const unsigned k = (t & 15u) * 32u + 2u * j;
        x[j] = f16_one_plus(k) | (f16_one_plus(k + 1) << 16);
    }
    for (unsigned i = 0; i < iters; i += CPN_UNROLL) {
#pragma unroll
        for (int u = 0; u < CPN_UNROLL; ++u) {
#pragma unroll
            for (int j = 0; j < CPN_CHAINS; ++j) x[j] = hfma2_f16(x[j], a2, b2);
        }
    }
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) s += f16_to_float(x[j] & 0xFFFFu) + f16_to_float(x[j] >> 16);
    out[t] = s;
}

/* bf16: as fp16 with fma.rn.bf16x2 (sm_80+; the kernel is empty below, and the host never
 * launches it there). Lanes start at 1 + ((t & 15) * 32 + 2j + h mod 128) / 128. */
extern "C" __global__ void __launch_bounds__(256) cpn_bench_bf16(unsigned iters, unsigned a2, unsigned b2,
                                                                 float* __restrict__ out) {
#if __CUDA_ARCH__ >= 800
    const unsigned t = global_thread();
    unsigned x[CPN_CHAINS];
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) {
        const unsigned k = (t & 15u) * 32u + 2u * j;
        x[j] = bf16_one_plus(k) | (bf16_one_plus(k + 1) << 16);
    }
    for (unsigned i = 0; i < iters; i += CPN_UNROLL) {
#pragma unroll
        for (int u = 0; u < CPN_UNROLL; ++u) {
#pragma unroll
            for (int j = 0; j < CPN_CHAINS; ++j) {
                unsigned d;
                asm volatile("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(x[j]), "r"(a2), "r"(b2));
                x[j] = d;
            }
        }
    }
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) s += bf16_to_float(x[j] & 0xFFFFu) + bf16_to_float(x[j] >> 16);
    out[t] = s;
#else
    (void)iters; (void)a2; (void)b2; (void)out;
#endif
}

/* Mixes a 32-bit value (the host has the same function). */
__device__ __forceinline__ unsigned mix32(unsigned v) {
    v ^= v >> 16;
    v *= 0x7FEB352Du;
    v ^= v >> 15;
    v *= 0x846CA68Bu;
    v ^= v >> 16;
    return v;
}

/* int8: 16 chains acc_j <- dp4a(a_j, b, acc_j) per thread (4 signed byte products summed into
 * int32), 256 IDP4A a loop trip. a_j = mix32((t & 15) * 16 + j), acc_j starts at that index;
 * out[t] = the wrapping uint32 sum of the chains, which the host has in closed form. */
extern "C" __global__ void __launch_bounds__(256) cpn_bench_int8(unsigned iters, unsigned b,
                                                                 unsigned* __restrict__ out) {
    const unsigned t = global_thread();
    unsigned av[CPN_CHAINS];
    int acc[CPN_CHAINS];
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) {
        const unsigned idx = (t & 15u) * 16u + j;
        av[j] = mix32(idx);
        acc[j] = (int)idx;
    }
    for (unsigned i = 0; i < iters; i += CPN_UNROLL) {
#pragma unroll
        for (int u = 0; u < CPN_UNROLL; ++u) {
#pragma unroll
            for (int j = 0; j < CPN_CHAINS; ++j) {
                int d;
                asm volatile("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(av[j]), "r"(b), "r"(acc[j]));
                acc[j] = d;
            }
        }
    }
    unsigned s = 0;
#pragma unroll
    for (int j = 0; j < CPN_CHAINS; ++j) s += (unsigned)acc[j];
    out[t] = s;
}

/* ---- matrix units (mma.sync) ----------------------------------------------------------- */
//
// Each warp keeps its A fragment and B fragment in registers and runs 8 independent accumulator
// tiles; one loop trip is 8 mma.sync. A's elements are small integers that differ by lane and
// register (mm_val), every element of B is the kernel argument beta, and every element of
// accumulator tile j starts at init_j = (warp & 7) + j + 1. Since each element of A appears
// exactly once in the fragments whatever their layout, the sum of all elements of all tiles is
//   sum_j (M*N) * init_j + iters * 8 * N * beta * sum(A)
// which the host knows exactly (all values are integers far below 2^24, so the fp32 accumulators
// are exact). Each warp writes that sum (int64) to out[warp].

#define CPN_MM_TILES 8

/* The A element of fragment register r, sub-element e, of lane l: in [-2, 2]. */
__device__ __forceinline__ int mm_val(unsigned l, unsigned r, unsigned e) {
    return (int)((l * 7u + r * 3u + e * 5u) % 5u) - 2;
}
__device__ __forceinline__ unsigned f16_small(int v) {  /* exact fp16 bits of v in [-2, 2] */
    const unsigned m = v < 0 ? (unsigned)-v : (unsigned)v;
    return m == 0 ? 0u : ((v < 0 ? 0x8000u : 0u) | (m == 1 ? 0x3C00u : 0x4000u));
}
__device__ __forceinline__ unsigned bf16_small(int v) {
    const unsigned m = v < 0 ? (unsigned)-v : (unsigned)v;
    return m == 0 ? 0u : ((v < 0 ? 0x8000u : 0u) | (m == 1 ? 0x3F80u : 0x4000u));
}

__device__ __forceinline__ long long warp_sum(long long v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

__device__ __forceinline__ unsigned global_warp() { return global_thread() >> 5; }

#define MMA_F32_4(OP, A_LIST, B_LIST)                                                       \
    asm volatile(OP " {%0, %1, %2, %3}, " A_LIST ", " B_LIST ", {%0, %1, %2, %3};"          \
                 : "+f"(c[j][0]), "+f"(c[j][1]), "+f"(c[j][2]), "+f"(c[j][3])

/* fp16 inputs, fp32 accumulators: m16n8k16 on sm_80+, m16n8k8 on sm_75. */
extern "C" __global__ void __launch_bounds__(128) cpn_bench_mm_fp16(unsigned iters, unsigned beta2,
                                                                    long long* __restrict__ out) {
    const unsigned lane = threadIdx.x & 31u;
    const unsigned w = global_warp();
    float c[CPN_MM_TILES][4];
#pragma unroll
    for (int j = 0; j < CPN_MM_TILES; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) c[j][e] = (float)((w & 7u) + j + 1);
#if __CUDA_ARCH__ >= 800
    unsigned a[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) a[r] = f16_small(mm_val(lane, r, 0)) | (f16_small(mm_val(lane, r, 1)) << 16);
    for (unsigned i = 0; i < iters; ++i) {
#pragma unroll
        for (int j = 0; j < CPN_MM_TILES; ++j) {
            MMA_F32_4("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", "{%4, %5, %6, %7}", "{%8, %9}")
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(beta2), "r"(beta2));
        }
    }
#else
    unsigned a[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) a[r] = f16_small(mm_val(lane, r, 0)) | (f16_small(mm_val(lane, r, 1)) << 16);
    for (unsigned i = 0; i < iters; ++i) {
#pragma unroll
        for (int j = 0; j < CPN_MM_TILES; ++j) {
            MMA_F32_4("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32", "{%4, %5}", "{%6}")
                         : "r"(a[0]), "r"(a[1]), "r"(beta2));
        }
    }
#endif
    long long s = 0;
#pragma unroll
    for (int j = 0; j < CPN_MM_TILES; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s += (long long)c[j][e];
    s = warp_sum(s);
    if (lane == 0) out[w] = s;
}

/* bf16 inputs, fp32 accumulators: m16n8k16, sm_80+ only (empty below; never launched there). */
extern "C" __global__ void __launch_bounds__(128) cpn_bench_mm_bf16(unsigned iters, unsigned beta2,
                                                                    long long* __restrict__ out) {
#if __CUDA_ARCH__ >= 800
    const unsigned lane = threadIdx.x & 31u;
    const unsigned w = global_warp();
    float c[CPN_MM_TILES][4];
#pragma unroll
    for (int j = 0; j < CPN_MM_TILES; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) c[j][e] = (float)((w & 7u) + j + 1);
    unsigned a[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) a[r] = bf16_small(mm_val(lane, r, 0)) | (bf16_small(mm_val(lane, r, 1)) << 16);
    for (unsigned i = 0; i < iters; ++i) {
#pragma unroll
        for (int j = 0; j < CPN_MM_TILES; ++j) {
            MMA_F32_4("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", "{%4, %5, %6, %7}", "{%8, %9}")
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(beta2), "r"(beta2));
        }
    }
    long long s = 0;
#pragma unroll
    for (int j = 0; j < CPN_MM_TILES; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s += (long long)c[j][e];
    s = warp_sum(s);
    if (lane == 0) out[w] = s;
#else
    (void)iters; (void)beta2; (void)out;
#endif
}

/* tf32 inputs (fp32 registers, low 13 bits ignored; small integers are exact), fp32
 * accumulators: m16n8k8, sm_80+ only. */
extern "C" __global__ void __launch_bounds__(128) cpn_bench_mm_tf32(unsigned iters, unsigned beta,
                                                                    long long* __restrict__ out) {
#if __CUDA_ARCH__ >= 800
    const unsigned lane = threadIdx.x & 31u;
    const unsigned w = global_warp();
    float c[CPN_MM_TILES][4];
#pragma unroll
    for (int j = 0; j < CPN_MM_TILES; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) c[j][e] = (float)((w & 7u) + j + 1);
    unsigned a[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) a[r] = __float_as_uint((float)mm_val(lane, r, 0));
    for (unsigned i = 0; i < iters; ++i) {
#pragma unroll
        for (int j = 0; j < CPN_MM_TILES; ++j) {
            MMA_F32_4("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", "{%4, %5, %6, %7}", "{%8, %9}")
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(beta), "r"(beta));
        }
    }
    long long s = 0;
#pragma unroll
    for (int j = 0; j < CPN_MM_TILES; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s += (long long)c[j][e];
    s = warp_sum(s);
    if (lane == 0) out[w] = s;
#else
    (void)iters; (void)beta; (void)out;
#endif
}

/* int8 inputs, int32 accumulators: m16n8k32 on sm_80+, m8n8k16 on sm_75 (2 accumulator
 * registers a tile there; the other two stay at their start value and count as such). */
extern "C" __global__ void __launch_bounds__(128) cpn_bench_mm_int8(unsigned iters, unsigned beta4,
                                                                    long long* __restrict__ out) {
    const unsigned lane = threadIdx.x & 31u;
    const unsigned w = global_warp();
    int c[CPN_MM_TILES][4];
#pragma unroll
    for (int j = 0; j < CPN_MM_TILES; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) c[j][e] = (int)((w & 7u) + j + 1);
#if __CUDA_ARCH__ >= 800
    unsigned a[4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
        a[r] = ((unsigned)mm_val(lane, r, 0) & 0xFFu) | (((unsigned)mm_val(lane, r, 1) & 0xFFu) << 8) |
               (((unsigned)mm_val(lane, r, 2) & 0xFFu) << 16) | (((unsigned)mm_val(lane, r, 3) & 0xFFu) << 24);
    for (unsigned i = 0; i < iters; ++i) {
#pragma unroll
        for (int j = 0; j < CPN_MM_TILES; ++j) {
            asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                         "{%8, %9}, {%0, %1, %2, %3};"
                         : "+r"(c[j][0]), "+r"(c[j][1]), "+r"(c[j][2]), "+r"(c[j][3])
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(beta4), "r"(beta4));
        }
    }
#else
    const unsigned a0 = ((unsigned)mm_val(lane, 0, 0) & 0xFFu) | (((unsigned)mm_val(lane, 0, 1) & 0xFFu) << 8) |
                        (((unsigned)mm_val(lane, 0, 2) & 0xFFu) << 16) | (((unsigned)mm_val(lane, 0, 3) & 0xFFu) << 24);
    for (unsigned i = 0; i < iters; ++i) {
#pragma unroll
        for (int j = 0; j < CPN_MM_TILES; ++j) {
            asm volatile("mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};"
                         : "+r"(c[j][0]), "+r"(c[j][1])
                         : "r"(a0), "r"(beta4));
        }
    }
#endif
    long long s = 0;
#pragma unroll
    for (int j = 0; j < CPN_MM_TILES; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s += (long long)c[j][e];
    s = warp_sum(s);
    if (lane == 0) out[w] = s;
}

/* ---- device memory (STREAM) ------------------------------------------------------------ */

/* The random value of element i of an array seeded with `seed`: splitmix64 of seed + i * golden,
 * top 53 bits as a double in [0, 1). The host has the same function. */
__device__ __forceinline__ double seeded_double(u64 seed, u64 i) {
    u64 z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

extern "C" __global__ void __launch_bounds__(256) cpn_bench_fill(double* __restrict__ p, u64 n, u64 seed) {
    const u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) p[i] = seeded_double(seed, i);
}

/* c = a over n2 double2 elements: grid-stride, 4 independent 16-byte loads in flight a thread. */
extern "C" __global__ void __launch_bounds__(256) cpn_bench_copy(const double2* __restrict__ a,
                                                                 double2* __restrict__ c, u64 n2) {
    const u64 stride = (u64)gridDim.x * blockDim.x;
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n2; i += 4 * stride) {
        const double2 v0 = a[i], v1 = a[i + stride], v2 = a[i + 2 * stride], v3 = a[i + 3 * stride];
        c[i] = v0;
        c[i + stride] = v1;
        c[i + 2 * stride] = v2;
        c[i + 3 * stride] = v3;
    }
    for (; i < n2; i += stride) c[i] = a[i];
}

/* a = b + s * c (one rounding: fma(s, c, b), as the host model) over n2 double2 elements. */
extern "C" __global__ void __launch_bounds__(256) cpn_bench_triad(double2* __restrict__ a,
                                                                  const double2* __restrict__ b,
                                                                  const double2* __restrict__ c, double s,
                                                                  u64 n2) {
    const u64 stride = (u64)gridDim.x * blockDim.x;
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n2; i += 4 * stride) {
        double2 b0 = b[i], b1 = b[i + stride], b2 = b[i + 2 * stride], b3 = b[i + 3 * stride];
        const double2 c0 = c[i], c1 = c[i + stride], c2 = c[i + 2 * stride], c3 = c[i + 3 * stride];
        b0.x = __fma_rn(s, c0.x, b0.x); b0.y = __fma_rn(s, c0.y, b0.y);
        b1.x = __fma_rn(s, c1.x, b1.x); b1.y = __fma_rn(s, c1.y, b1.y);
        b2.x = __fma_rn(s, c2.x, b2.x); b2.y = __fma_rn(s, c2.y, b2.y);
        b3.x = __fma_rn(s, c3.x, b3.x); b3.y = __fma_rn(s, c3.y, b3.y);
        a[i] = b0;
        a[i + stride] = b1;
        a[i + 2 * stride] = b2;
        a[i + 3 * stride] = b3;
    }
    for (; i < n2; i += stride) {
        double2 v = b[i];
        const double2 w = c[i];
        v.x = __fma_rn(s, w.x, v.x);
        v.y = __fma_rn(s, w.y, v.y);
        a[i] = v;
    }
}

/* ---- dispatch latency ------------------------------------------------------------------- */

/* The "empty" kernel: one thread bumps a counter, so the host can check every launch ran. */
extern "C" __global__ void cpn_bench_launch(unsigned* __restrict__ counter) {
    if (threadIdx.x == 0 && blockIdx.x == 0) *counter += 1u;
}
