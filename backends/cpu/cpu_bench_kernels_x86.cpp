// cpu_bench_kernels_x86.cpp: x86-64 benchmark kernels. The file is compiled for the generic
// x86-64 baseline; each kernel carries its own target attribute and is only called when CPUID
// (and XCR0, i.e. the OS) says the instructions are there, so one plugin serves every x86 CPU.
// CPN_CPU_BENCH_PORTABLE_ONLY builds the portable set alone, to test it on an x86 machine.
#if defined(__x86_64__) && !defined(CPN_CPU_BENCH_PORTABLE_ONLY)

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cpu_bench_kernels.hpp"

namespace cpn::cpubench {

namespace {

/* ---- detection ------------------------------------------------------------------------ */

uint64_t xgetbv0() {
    uint32_t lo = 0, hi = 0;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (static_cast<uint64_t>(hi) << 32) | lo;
}

Features detect() {
    Features f;
    f.x86 = true;
    __builtin_cpu_init();
    /* libgcc's __builtin_cpu_supports already folds in XCR0 (OS-enabled AVX / AVX-512 state). */
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512_bf16 = f.avx512f && __builtin_cpu_supports("avx512bf16");
    f.avx512_vnni = f.avx512f && __builtin_cpu_supports("avx512vnni");
    f.avx_vnni = f.avx2 && __builtin_cpu_supports("avxvnni");
    f.avx512_fp16 = f.avx512bw && f.avx512vl && __builtin_cpu_supports("avx512fp16");
    /* AMX straight from CPUID leaf 7 (EDX bits 22, 24, 25) and XCR0 bits 17-18 (XTILECFG,
     * XTILEDATA), so it does not depend on how new libgcc's feature list is. */
    unsigned a = 0, b = 0, c = 0, d = 0;
    bool osxsave = false;
    if (__get_cpuid(1, &a, &b, &c, &d)) osxsave = (c & (1u << 27)) != 0;
    if (osxsave && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        const uint64_t xcr0 = xgetbv0();
        const bool tile_state = (xcr0 & (3ull << 17)) == (3ull << 17);
        f.amx_tile = tile_state && (d & (1u << 24)) != 0;
        f.amx_bf16 = f.amx_tile && (d & (1u << 22)) != 0;
        f.amx_int8 = f.amx_tile && (d & (1u << 25)) != 0;
    }
    return f;
}

/* ---- fp64 / fp32: x = fma(x, a, b) on many independent registers ------------------------
 * 4-cycle FMA latency x 2 pipes needs >= 8 chains in flight; AVX-512 has 32 registers, so 16
 * chains (2 constants stay in registers); AVX2 has 16, so 12 chains. */

constexpr unsigned kChains512 = 16;
constexpr unsigned kChains256 = 12;

__attribute__((target("avx512f"))) void fp64_avx512(void* state, uint64_t iters) {
    double* s = static_cast<double*>(state);
    __m512d acc[kChains512];
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c) acc[c] = _mm512_load_pd(s + 8 * c);
    const __m512d a = _mm512_set1_pd(kFmaA), b = _mm512_set1_pd(kFmaB);
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (unsigned c = 0; c < kChains512; ++c) acc[c] = _mm512_fmadd_pd(acc[c], a, b);
    }
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c) _mm512_store_pd(s + 8 * c, acc[c]);
}

__attribute__((target("avx512f"))) void fp32_avx512(void* state, uint64_t iters) {
    float* s = static_cast<float*>(state);
    __m512 acc[kChains512];
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c) acc[c] = _mm512_load_ps(s + 16 * c);
    const __m512 a = _mm512_set1_ps(static_cast<float>(kFmaA));
    const __m512 b = _mm512_set1_ps(static_cast<float>(kFmaB));
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (unsigned c = 0; c < kChains512; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c) _mm512_store_ps(s + 16 * c, acc[c]);
}

__attribute__((target("avx2,fma"))) void fp64_avx2(void* state, uint64_t iters) {
    double* s = static_cast<double*>(state);
    __m256d acc[kChains256];
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains256; ++c) acc[c] = _mm256_load_pd(s + 4 * c);
    const __m256d a = _mm256_set1_pd(kFmaA), b = _mm256_set1_pd(kFmaB);
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (unsigned c = 0; c < kChains256; ++c) acc[c] = _mm256_fmadd_pd(acc[c], a, b);
    }
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains256; ++c) _mm256_store_pd(s + 4 * c, acc[c]);
}

__attribute__((target("avx2,fma"))) void fp32_avx2(void* state, uint64_t iters) {
    float* s = static_cast<float*>(state);
    __m256 acc[kChains256];
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains256; ++c) acc[c] = _mm256_load_ps(s + 8 * c);
    const __m256 a = _mm256_set1_ps(static_cast<float>(kFmaA));
    const __m256 b = _mm256_set1_ps(static_cast<float>(kFmaB));
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (unsigned c = 0; c < kChains256; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains256; ++c) _mm256_store_ps(s + 8 * c, acc[c]);
}

/* ---- fp16 (AVX512-FP16): the same recurrence on 32 half-precision lanes -------------------- */

__attribute__((target("avx512f,avx512bw,avx512vl,avx512fp16"))) void fp16_avx512(void* state,
                                                                                   uint64_t iters) {
    uint16_t* s = static_cast<uint16_t*>(state);
    __m512h acc[kChains512];
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c)
        acc[c] = _mm512_castsi512_ph(_mm512_load_si512(s + 32 * c));
    const __m512h a = _mm512_castsi512_ph(
        _mm512_set1_epi16(static_cast<short>(fp16_from_double(kFmaA))));
    const __m512h b = _mm512_castsi512_ph(
        _mm512_set1_epi16(static_cast<short>(fp16_from_double(kFmaB))));
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (unsigned c = 0; c < kChains512; ++c) acc[c] = _mm512_fmadd_ph(acc[c], a, b);
    }
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c)
        _mm512_store_si512(s + 32 * c, _mm512_castph_si512(acc[c]));
}

/* ---- bf16 (AVX512_BF16): acc += x*y + y*(-x) per lane ------------------------------------ */

uint16_t bf16_bits(float v) {  // the values used are exact in bf16: truncation is exact
    uint32_t u = 0;
    std::memcpy(&u, &v, sizeof u);
    return static_cast<uint16_t>(u >> 16);
}

__attribute__((target("avx512f,avx512bf16"))) void bf16_avx512(void* state, uint64_t iters) {
    float* s = static_cast<float*>(state);
    alignas(64) uint16_t p[32], q[32];
    for (unsigned l = 0; l < 16; ++l) {
        p[2 * l] = bf16_bits(bf16_x(l));
        p[2 * l + 1] = bf16_bits(bf16_y(l));
        q[2 * l] = bf16_bits(bf16_y(l));
        q[2 * l + 1] = bf16_bits(-bf16_x(l));
    }
    const __m512bh x = (__m512bh)_mm512_load_si512(p);
    const __m512bh y = (__m512bh)_mm512_load_si512(q);
    __m512 acc[kChains512];
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c) acc[c] = _mm512_load_ps(s + 16 * c);
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (unsigned c = 0; c < kChains512; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], x, y);
    }
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c) _mm512_store_ps(s + 16 * c, acc[c]);
}

/* ---- int8 (VNNI): acc += dot4(u8, s8) per 32-bit lane, wrapping ------------------------- */

__attribute__((target("avx512f,avx512vnni"))) void int8_avx512(void* state, uint64_t iters) {
    uint32_t* s = static_cast<uint32_t*>(state);
    alignas(64) uint8_t u[64];
    alignas(64) int8_t v[64];
    for (unsigned j = 0; j < 64; ++j) {
        u[j] = int8_u(j);
        v[j] = int8_s(j);
    }
    const __m512i x = _mm512_load_si512(u), y = _mm512_load_si512(v);
    __m512i acc[kChains512];
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c) acc[c] = _mm512_load_si512(s + 16 * c);
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (unsigned c = 0; c < kChains512; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], x, y);
    }
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains512; ++c) _mm512_store_si512(s + 16 * c, acc[c]);
}

__attribute__((target("avx2,avxvnni"))) void int8_avxvnni(void* state, uint64_t iters) {
    uint32_t* s = static_cast<uint32_t*>(state);
    alignas(32) uint8_t u[32];
    alignas(32) int8_t v[32];
    for (unsigned j = 0; j < 32; ++j) {
        u[j] = int8_u(j);
        v[j] = int8_s(j);
    }
    const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(u));
    const __m256i y = _mm256_load_si256(reinterpret_cast<const __m256i*>(v));
    __m256i acc[kChains256];
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains256; ++c)
        acc[c] = _mm256_load_si256(reinterpret_cast<const __m256i*>(s + 8 * c));
    for (uint64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (unsigned c = 0; c < kChains256; ++c) acc[c] = _mm256_dpbusd_avx_epi32(acc[c], x, y);
    }
#pragma GCC unroll 16
    for (unsigned c = 0; c < kChains256; ++c)
        _mm256_store_si256(reinterpret_cast<__m256i*>(s + 8 * c), acc[c]);
}

/* ---- AMX: C[i][j] += A[i] x B[j] on four accumulator tiles ------------------------------- */

struct alignas(64) TileConfig {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* Palette 1: eight 16-row x 64-byte tiles: 0-3 accumulators, 4-5 A, 6-7 B. */
TileConfig amx_config() {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (unsigned t = 0; t < 8; ++t) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    return cfg;
}

__attribute__((target("amx-tile,amx-bf16"))) void mm_bf16_amx(void* state, uint64_t iters) {
    AmxState* s = static_cast<AmxState*>(state);
    const TileConfig cfg = amx_config();
    _tile_loadconfig(&cfg);
    _tile_loadd(0, s->c[0], 64);
    _tile_loadd(1, s->c[1], 64);
    _tile_loadd(2, s->c[2], 64);
    _tile_loadd(3, s->c[3], 64);
    _tile_loadd(4, s->a[0], 64);
    _tile_loadd(5, s->a[1], 64);
    _tile_loadd(6, s->b[0], 64);
    _tile_loadd(7, s->b[1], 64);
    for (uint64_t i = 0; i < iters; ++i) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, s->c[0], 64);
    _tile_stored(1, s->c[1], 64);
    _tile_stored(2, s->c[2], 64);
    _tile_stored(3, s->c[3], 64);
    _tile_release();
}

__attribute__((target("amx-tile,amx-int8"))) void mm_int8_amx(void* state, uint64_t iters) {
    AmxState* s = static_cast<AmxState*>(state);
    const TileConfig cfg = amx_config();
    _tile_loadconfig(&cfg);
    _tile_loadd(0, s->c[0], 64);
    _tile_loadd(1, s->c[1], 64);
    _tile_loadd(2, s->c[2], 64);
    _tile_loadd(3, s->c[3], 64);
    _tile_loadd(4, s->a[0], 64);
    _tile_loadd(5, s->a[1], 64);
    _tile_loadd(6, s->b[0], 64);
    _tile_loadd(7, s->b[1], 64);
    for (uint64_t i = 0; i < iters; ++i) {
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 4, 7);
        _tile_dpbusd(2, 5, 6);
        _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(0, s->c[0], 64);
    _tile_stored(1, s->c[1], 64);
    _tile_stored(2, s->c[2], 64);
    _tile_stored(3, s->c[3], 64);
    _tile_release();
}

/* ---- memory: STREAM copy and triad ------------------------------------------------------
 * Non-temporal stores (when asked: arrays far larger than the last-level cache) write whole
 * lines without reading them first, so the traffic is what STREAM counts. */

__attribute__((target("avx512f"))) void copy_avx512(double* __restrict dst,
                                                    const double* __restrict src, size_t n,
                                                    bool nt) {
    size_t i = 0;
    if (nt && (reinterpret_cast<uintptr_t>(dst) & 63) == 0) {
        for (; i + 32 <= n; i += 32) {
            const __m512d x0 = _mm512_loadu_pd(src + i), x1 = _mm512_loadu_pd(src + i + 8);
            const __m512d x2 = _mm512_loadu_pd(src + i + 16), x3 = _mm512_loadu_pd(src + i + 24);
            _mm512_stream_pd(dst + i, x0);
            _mm512_stream_pd(dst + i + 8, x1);
            _mm512_stream_pd(dst + i + 16, x2);
            _mm512_stream_pd(dst + i + 24, x3);
        }
        _mm_sfence();
    } else {
        for (; i + 32 <= n; i += 32) {
            const __m512d x0 = _mm512_loadu_pd(src + i), x1 = _mm512_loadu_pd(src + i + 8);
            const __m512d x2 = _mm512_loadu_pd(src + i + 16), x3 = _mm512_loadu_pd(src + i + 24);
            _mm512_storeu_pd(dst + i, x0);
            _mm512_storeu_pd(dst + i + 8, x1);
            _mm512_storeu_pd(dst + i + 16, x2);
            _mm512_storeu_pd(dst + i + 24, x3);
        }
    }
    for (; i < n; ++i) dst[i] = src[i];
}

__attribute__((target("avx512f"))) void triad_avx512(double* __restrict a,
                                                     const double* __restrict b,
                                                     const double* __restrict c, double s,
                                                     size_t n, bool nt) {
    const __m512d vs = _mm512_set1_pd(s);
    size_t i = 0;
    if (nt && (reinterpret_cast<uintptr_t>(a) & 63) == 0) {
        for (; i + 16 <= n; i += 16) {
            const __m512d r0 = _mm512_fmadd_pd(vs, _mm512_loadu_pd(c + i), _mm512_loadu_pd(b + i));
            const __m512d r1 =
                _mm512_fmadd_pd(vs, _mm512_loadu_pd(c + i + 8), _mm512_loadu_pd(b + i + 8));
            _mm512_stream_pd(a + i, r0);
            _mm512_stream_pd(a + i + 8, r1);
        }
        _mm_sfence();
    } else {
        for (; i + 16 <= n; i += 16) {
            const __m512d r0 = _mm512_fmadd_pd(vs, _mm512_loadu_pd(c + i), _mm512_loadu_pd(b + i));
            const __m512d r1 =
                _mm512_fmadd_pd(vs, _mm512_loadu_pd(c + i + 8), _mm512_loadu_pd(b + i + 8));
            _mm512_storeu_pd(a + i, r0);
            _mm512_storeu_pd(a + i + 8, r1);
        }
    }
    for (; i < n; ++i) a[i] = __builtin_fma(s, c[i], b[i]);
}

__attribute__((target("avx2,fma"))) void copy_avx2(double* __restrict dst,
                                                   const double* __restrict src, size_t n,
                                                   bool nt) {
    size_t i = 0;
    if (nt && (reinterpret_cast<uintptr_t>(dst) & 31) == 0) {
        for (; i + 16 <= n; i += 16) {
            const __m256d x0 = _mm256_loadu_pd(src + i), x1 = _mm256_loadu_pd(src + i + 4);
            const __m256d x2 = _mm256_loadu_pd(src + i + 8), x3 = _mm256_loadu_pd(src + i + 12);
            _mm256_stream_pd(dst + i, x0);
            _mm256_stream_pd(dst + i + 4, x1);
            _mm256_stream_pd(dst + i + 8, x2);
            _mm256_stream_pd(dst + i + 12, x3);
        }
        _mm_sfence();
    } else {
        for (; i + 16 <= n; i += 16) {
            const __m256d x0 = _mm256_loadu_pd(src + i), x1 = _mm256_loadu_pd(src + i + 4);
            const __m256d x2 = _mm256_loadu_pd(src + i + 8), x3 = _mm256_loadu_pd(src + i + 12);
            _mm256_storeu_pd(dst + i, x0);
            _mm256_storeu_pd(dst + i + 4, x1);
            _mm256_storeu_pd(dst + i + 8, x2);
            _mm256_storeu_pd(dst + i + 12, x3);
        }
    }
    for (; i < n; ++i) dst[i] = src[i];
}

__attribute__((target("avx2,fma"))) void triad_avx2(double* __restrict a,
                                                    const double* __restrict b,
                                                    const double* __restrict c, double s,
                                                    size_t n, bool nt) {
    const __m256d vs = _mm256_set1_pd(s);
    size_t i = 0;
    if (nt && (reinterpret_cast<uintptr_t>(a) & 31) == 0) {
        for (; i + 8 <= n; i += 8) {
            const __m256d r0 = _mm256_fmadd_pd(vs, _mm256_loadu_pd(c + i), _mm256_loadu_pd(b + i));
            const __m256d r1 =
                _mm256_fmadd_pd(vs, _mm256_loadu_pd(c + i + 4), _mm256_loadu_pd(b + i + 4));
            _mm256_stream_pd(a + i, r0);
            _mm256_stream_pd(a + i + 4, r1);
        }
        _mm_sfence();
    } else {
        for (; i + 8 <= n; i += 8) {
            const __m256d r0 = _mm256_fmadd_pd(vs, _mm256_loadu_pd(c + i), _mm256_loadu_pd(b + i));
            const __m256d r1 =
                _mm256_fmadd_pd(vs, _mm256_loadu_pd(c + i + 4), _mm256_loadu_pd(b + i + 4));
            _mm256_storeu_pd(a + i, r0);
            _mm256_storeu_pd(a + i + 4, r1);
        }
    }
    for (; i < n; ++i) a[i] = __builtin_fma(s, c[i], b[i]);
}

/* ---- clock: 64 dependent `add reg, reg` per iteration ------------------------------------
 * A register operand, not an immediate: some cores fold add-immediate chains at rename. The
 * loop counter is a separate chain that runs alongside on another ALU. */
uint64_t clock_x86(uint64_t x, uint64_t iters) {
    if (iters == 0) return x;
    const uint64_t one = 1;
    asm volatile(
        "1:\n\t"
        ".rept 64\n\t"
        "addq %2, %0\n\t"
        ".endr\n\t"
        "decq %1\n\t"
        "jnz 1b\n\t"
        : "+r"(x), "+r"(iters)
        : "r"(one)
        : "cc");
    return x;
}

}  // namespace

const Features& features() {
    static const Features f = detect();
    return f;
}

std::string amx_enable() {
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
        return std::string("arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) failed: ") +
               std::strerror(errno);
    return {};
}

ComputeKernel select_fp64(std::string&) {
    const Features& f = features();
    ComputeKernel k;
    if (f.avx512f) {
        k = {"avx512f", fp64_avx512, 8, kChains512, 0, true};
    } else if (f.avx2 && f.fma) {
        k = {"avx2+fma", fp64_avx2, 4, kChains256, 0, true};
    } else {
        return portable_fp64();
    }
    k.ops_per_iter = 2.0 * k.lanes * k.chains;
    return k;
}

ComputeKernel select_fp32(std::string&) {
    const Features& f = features();
    ComputeKernel k;
    if (f.avx512f) {
        k = {"avx512f", fp32_avx512, 16, kChains512, 0, true};
    } else if (f.avx2 && f.fma) {
        k = {"avx2+fma", fp32_avx2, 8, kChains256, 0, true};
    } else {
        return portable_fp32();
    }
    k.ops_per_iter = 2.0 * k.lanes * k.chains;
    return k;
}

ComputeKernel select_fp16(std::string& why) {
    if (!features().avx512_fp16) {
        why = "bench.fp16: this CPU has no native fp16 arithmetic (avx512_fp16 absent)";
        return {};
    }
    return {"avx512_fp16", fp16_avx512, 32, kChains512, 2.0 * 32 * kChains512, true};
}

ComputeKernel select_bf16(std::string& why) {
    if (!features().avx512_bf16) {
        why = "bench.bf16: this CPU has no bf16 dot-product instructions (avx512_bf16 absent)";
        return {};
    }
    /* one vdpbf16ps: 16 lanes x 2 pairs x (multiply + add) = 64 flops */
    return {"avx512_bf16", bf16_avx512, 16, kChains512, 64.0 * kChains512, true};
}

ComputeKernel select_int8(std::string& why) {
    const Features& f = features();
    /* one vpdpbusd: lanes x 4 MACs x 2 ops */
    if (f.avx512_vnni) return {"avx512_vnni", int8_avx512, 16, kChains512, 128.0 * kChains512, true};
    if (f.avx_vnni) return {"avx_vnni", int8_avxvnni, 8, kChains256, 64.0 * kChains256, true};
    why = "bench.int8: this CPU has no int8 dot-product instructions (avx512_vnni and avx_vnni "
          "absent)";
    return {};
}

ComputeKernel select_mm_bf16(std::string& why) {
    if (!features().amx_bf16) {
        why = "bench.mm.bf16: no matrix unit on this CPU (amx_tile/amx_bf16 absent)";
        return {};
    }
    /* one tdpbf16ps: 16 x 16 outputs x 32 bf16 products x 2 = 16384 flops; 4 per iteration */
    return {"amx_bf16", mm_bf16_amx, 256, 4, 4.0 * 16384, true};
}

ComputeKernel select_mm_int8(std::string& why) {
    if (!features().amx_int8) {
        why = "bench.mm.int8: no matrix unit on this CPU (amx_tile/amx_int8 absent)";
        return {};
    }
    /* one tdpbusd: 16 x 16 outputs x 64 int8 products x 2 = 32768 ops; 4 per iteration */
    return {"amx_int8", mm_int8_amx, 256, 4, 4.0 * 32768, true};
}

MemKernels select_mem() {
    const Features& f = features();
    if (f.avx512f) return {"avx512f", copy_avx512, triad_avx512, true, true};
    if (f.avx2 && f.fma) return {"avx2+fma", copy_avx2, triad_avx2, true, true};
    return portable_mem();
}

ClockKernel select_clock() { return {"x86-64", clock_x86, true}; }

}  // namespace cpn::cpubench

#endif  // __x86_64__ && !CPN_CPU_BENCH_PORTABLE_ONLY
