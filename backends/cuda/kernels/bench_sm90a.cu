// bench_sm90a.cu: the Hopper (compute capability 9.0) tensor-core kernels of bench.mm.*, built
// with wgmma.mma_async, which exists only for the arch-specific target sm_90a. Compiled into a
// fatbin of its own holding nothing but sm_90a SASS (see ../CMakeLists.txt), which the host
// loads only on a 9.0 device; everywhere else the mma.sync kernels of bench.cu run.
//
// Scheme (mirrored by the host model in ../cuda_bench.cpp): a block is two warpgroups; each
// warpgroup keeps A (64 x K) in registers, 4 per thread, with small integer elements that differ
// by thread and register (mm_val), and reads B (N x K) from shared memory, where every element is
// the kernel argument beta. B is filled uniformly, so the descriptor's layout (no swizzle, K-major
// core matrices 128 bytes apart along K and 256 along N) cannot change a value it reads; and
// every element of A appears exactly once in the fragments whatever their layout. So after
// `iters` trips of 4 wgmma, the sum of all 64 x N accumulators of a warpgroup is
//   64 * N * init + iters * 4 * N * beta * sum(A),   init = (warpgroup & 7) + 1,
// exact in the fp32 accumulators (integers well below 2^24). Each warp writes its part of that
// sum (int64) to out[warp]; the host adds the four warps of each warpgroup.
//
// Each trip issues 4 wgmma on the same accumulators (in-order for wgmma of one shape, no fence
// needed between them), commits them as a group and waits until at most one group is in flight,
// so the tensor cores always have the next group queued.

typedef unsigned long long u64;

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define CPN_HAVE_WGMMA 1
#else
#define CPN_HAVE_WGMMA 0
#endif

#define CPN_WGMMA_UNROLL 4
#define CPN_WGMMA_SMEM_WORDS 4096 /* 16 KiB of B: twice the largest tile read (8 KiB) */

__device__ __forceinline__ int mm_val(unsigned l, unsigned r, unsigned e) {
    return (int)((l * 7u + r * 3u + e * 5u) % 5u) - 2;
}
__device__ __forceinline__ unsigned f16_small(int v) {
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

#if CPN_HAVE_WGMMA

/* wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16: D(128 regs a thread) += A(4 registers a thread) * B(shared memory, descriptor). */
__device__ __forceinline__ void wgmma_fp16(float (&d)[128], const unsigned (&a)[4], u64 desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
        "{%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}


/* Keeps the compiler from moving accumulator reads or writes across a wgmma fence or wait. */
__device__ __forceinline__ void fence_operands(float (&d)[128]) {
#pragma unroll
    for (int i = 0; i < 128; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

/* wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16: D(128 regs a thread) += A(4 registers a thread) * B(shared memory, descriptor). */
__device__ __forceinline__ void wgmma_bf16(float (&d)[128], const unsigned (&a)[4], u64 desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
        "{%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}


/* wgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32: D(128 regs a thread) += A(4 registers a thread) * B(shared memory, descriptor). */
__device__ __forceinline__ void wgmma_tf32(float (&d)[128], const unsigned (&a)[4], u64 desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
        "{%128, %129, %130, %131}, %132, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}


/* wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8: D(64 regs a thread) += A(4 registers a thread) * B(shared memory, descriptor). */
__device__ __forceinline__ void wgmma_int8(int (&d)[64], const unsigned (&a)[4], u64 desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}


/* Keeps the compiler from moving accumulator reads or writes across a wgmma fence or wait. */
__device__ __forceinline__ void fence_operands(int (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }

/* Fills the block's B tile with `word` (beta in every element), makes the generic-proxy writes
 * visible to the async proxy wgmma reads through, and returns the matrix descriptor: start
 * address >> 4 in bits 0-13, leading (K) byte offset 128 >> 4 in 16-29, stride (N) byte offset
 * 256 >> 4 in 32-45, base offset 0, layout 0 (no swizzle) in bits 62-63. */
__device__ __forceinline__ u64 fill_b(unsigned* smem, unsigned word) {
    for (unsigned i = threadIdx.x; i < CPN_WGMMA_SMEM_WORDS; i += blockDim.x) smem[i] = word;
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    const unsigned addr = (unsigned)__cvta_generic_to_shared(smem);
    return (u64)((addr & 0x3FFFFu) >> 4) | ((u64)(128u >> 4) << 16) | ((u64)(256u >> 4) << 32);
}

template <typename T, int NACC>
__device__ __forceinline__ void finish(T (&d)[NACC], long long* out) {
    long long s = 0;
#pragma unroll
    for (int i = 0; i < NACC; ++i) s += (long long)d[i];
    s = warp_sum(s);
    if ((threadIdx.x & 31u) == 0) out[(blockIdx.x * blockDim.x + threadIdx.x) >> 5] = s;
}
#endif

#define CPN_WGMMA_KERNEL(NAME, CTYPE, NACC, PACK_A)                                                 \
    extern "C" __global__ void __launch_bounds__(256, 1)                                            \
        cpn_bench_wgmma_##NAME(unsigned iters, unsigned beta_word, long long* __restrict__ out) {   \
        WGMMA_BODY(NAME, CTYPE, NACC, PACK_A)                                                       \
    }

#if CPN_HAVE_WGMMA
#define WGMMA_BODY(NAME, CTYPE, NACC, PACK_A)                                                       \
    __shared__ __align__(1024) unsigned smem_b[CPN_WGMMA_SMEM_WORDS];                               \
    const u64 desc = fill_b(smem_b, beta_word);                                                     \
    const unsigned t = threadIdx.x & 127u;                                                          \
    const unsigned wg = (blockIdx.x * blockDim.x + threadIdx.x) >> 7;                               \
    unsigned a[4];                                                                                  \
    _Pragma("unroll") for (int r = 0; r < 4; ++r) a[r] = PACK_A;                                    \
    CTYPE d[NACC];                                                                                  \
    _Pragma("unroll") for (int i = 0; i < NACC; ++i) d[i] = (CTYPE)((wg & 7u) + 1u);                \
    fence_operands(d);                                                                              \
    for (unsigned it = 0; it < iters; ++it) {                                                       \
        wgmma_fence();                                                                              \
        _Pragma("unroll") for (int u = 0; u < CPN_WGMMA_UNROLL; ++u) wgmma_##NAME(d, a, desc);      \
        wgmma_commit();                                                                             \
        wgmma_wait<1>();                                                                            \
    }                                                                                               \
    wgmma_wait<0>();                                                                                \
    fence_operands(d);                                                                              \
    finish(d, out);
#else
/* Not sm_90a: never launched (the host loads this fatbin only on 9.0 devices). */
#define WGMMA_BODY(NAME, CTYPE, NACC, PACK_A) (void)iters; (void)beta_word; (void)out;
#endif

CPN_WGMMA_KERNEL(fp16, float, 128, f16_small(mm_val(t, r, 0)) | (f16_small(mm_val(t, r, 1)) << 16))
CPN_WGMMA_KERNEL(bf16, float, 128, bf16_small(mm_val(t, r, 0)) | (bf16_small(mm_val(t, r, 1)) << 16))
CPN_WGMMA_KERNEL(tf32, float, 128, __float_as_uint((float)mm_val(t, r, 0)))
CPN_WGMMA_KERNEL(int8, int, 64,
                 ((unsigned)mm_val(t, r, 0) & 0xFFu) | (((unsigned)mm_val(t, r, 1) & 0xFFu) << 8) |
                     (((unsigned)mm_val(t, r, 2) & 0xFFu) << 16) | (((unsigned)mm_val(t, r, 3) & 0xFFu) << 24))
