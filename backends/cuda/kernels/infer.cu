// infer.cu: the kernels of the CUDA backend's inference extension (cuda_infer.cpp), float32
// only. The CUDA counterpart of backends/opencl/infer_kernels.cl, with the same semantics, plus
// the elementwise functions and the built-in SGEMM that the OpenCL set lacks.
//
// Each kernel takes one parameter block of infer_args.h by value (shared with the host, so the
// argument lists cannot drift apart) and walks its elements with a grid-stride loop: any grid
// covers any element count, so the host may cap the grid. extern "C" keeps the names plain for
// cuModuleGetFunction. No CUDA runtime and no library header: like the other fatbins, this is
// loaded with the driver API only.
//
// Products (Gemm, MatMul, the GEMM half of Conv) go through cuBLAS when the host has it; the
// tiled cpn_sgemm at the end is the fallback when it has not.
#include "infer_args.h"

#define CPN_GRID_STRIDE(i, n)                                                                         \
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);         \
         i += static_cast<long long>(blockDim.x) * gridDim.x)

/* The elementwise functions, as the CPU operators define them (workloads/infer/ops_*.cpp). */
__device__ __forceinline__ float cpn_fn(float v, int op, float a, float b) {
    switch (op) {
        case CPN_ACT_RELU: return v < 0.0f ? 0.0f : v;  // NaN stays NaN, as on the CPU
        case CPN_ACT_LEAKY: return v < 0.0f ? a * v : v;
        case CPN_ACT_CLIP: {
            const float lo = v < a ? a : v;  // NaN passes through, as the CPU's comparisons do
            return lo > b ? b : lo;
        }
        case CPN_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
        case CPN_ACT_HARDSIGMOID: return fmaxf(0.0f, fminf(1.0f, a * v + b));
        case CPN_ACT_TANH: return tanhf(v);
        case CPN_ACT_HARDSWISH: {
            const float t = v / 6.0f + 0.5f;
            return v * (t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t));
        }
        case CPN_FN_SQRT: return sqrtf(v);
        case CPN_FN_EXP: return expf(v);
        case CPN_FN_LOG: return logf(v);
        case CPN_FN_NEG: return -v;
        case CPN_FN_ABS: return fabsf(v);
        case CPN_FN_ERF: return erff(v);
        case CPN_FN_GELU: return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
        case CPN_FN_GELU_TANH: {
            const float k = 0.7978845608028654f;  // sqrt(2/pi)
            return 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        }
        default: return v;
    }
}

/* The offsets into two operands of output element i (strides 0 where broadcast). */
__device__ __forceinline__ void cpn_offsets(const cpn_strides& st, long long i, long long* o0, long long* o1) {
    long long rem = i, a = 0, b = 0;
    for (int d = st.rank - 1; d >= 0; --d) {
        const long long c = rem % st.dims[d];
        rem /= st.dims[d];
        a += c * st.s0[d];
        b += c * st.s1[d];
    }
    *o0 = a;
    *o1 = b;
}

extern "C" __global__ void cpn_unary(const cpn_unary_args p) {
    const float* x = reinterpret_cast<const float*>(p.x);
    float* y = reinterpret_cast<float*>(p.y);
    CPN_GRID_STRIDE(i, p.n) y[i] = cpn_fn(x[i], p.op, p.a, p.b);
}

extern "C" __global__ void cpn_binary(const cpn_binary_args p) {
    const float* a = reinterpret_cast<const float*>(p.a);
    const float* b = reinterpret_cast<const float*>(p.b);
    float* y = reinterpret_cast<float*>(p.y);
    CPN_GRID_STRIDE(i, p.n) {
        long long ia = i, ib = i;
        if (!p.plain) cpn_offsets(p.st, i, &ia, &ib);
        const float u = a[ia], v = b[ib];
        float r;
        switch (p.op) {
            case CPN_BIN_ADD: r = u + v; break;
            case CPN_BIN_SUB: r = u - v; break;
            case CPN_BIN_MUL: r = u * v; break;
            case CPN_BIN_DIV: r = u / v; break;
            default: r = powf(u, v); break;
        }
        y[i] = r;
    }
}

extern "C" __global__ void cpn_gather(const cpn_gather_args p) {
    const float* x = reinterpret_cast<const float*>(p.x);
    float* y = reinterpret_cast<float*>(p.y);
    CPN_GRID_STRIDE(i, p.n) {
        long long ix = 0, unused = 0;
        cpn_offsets(p.st, i, &ix, &unused);
        y[i] = p.scale * x[ix];
    }
}

extern "C" __global__ void cpn_im2col(const cpn_im2col_args p) {
    const float* x = reinterpret_cast<const float*>(p.x);
    float* col = reinterpret_cast<float*>(p.col);
    const cpn_geo& g = p.g;
    const long long P = static_cast<long long>(g.OH) * g.OW;
    const long long J = static_cast<long long>(p.nb) * P;
    CPN_GRID_STRIDE(i, p.total) {
        const long long k = i / J, j = i % J;
        const int kw = static_cast<int>(k % g.KW);
        const int kh = static_cast<int>((k / g.KW) % g.KH);
        const int c = static_cast<int>(k / (static_cast<long long>(g.KW) * g.KH));
        const int n = static_cast<int>(j / P);
        const long long q = j % P;
        const int oh = static_cast<int>(q / g.OW), ow = static_cast<int>(q % g.OW);
        const int ih = oh * g.sh - g.phb + kh * g.dh, iw = ow * g.sw - g.pwb + kw * g.dw;
        float v = 0.0f;
        if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W)
            v = x[((static_cast<long long>(p.n0 + n) * g.C + p.c0 + c) * g.H + ih) * g.W + iw];
        col[i] = v;
    }
}

extern "C" __global__ void cpn_conv_scatter(const cpn_scatter_args p) {
    const float* tmp = reinterpret_cast<const float*>(p.tmp);
    const float* bias = reinterpret_cast<const float*>(p.bias);
    float* y = reinterpret_cast<float*>(p.y);
    const long long J = static_cast<long long>(p.nb) * p.P;
    CPN_GRID_STRIDE(i, p.total) {
        const int m = static_cast<int>(i / J);
        const long long j = i % J;
        const int n = static_cast<int>(j / p.P);
        const long long q = j % p.P;
        float v = tmp[i];
        if (p.has_bias) v += bias[p.m0 + m];
        y[(static_cast<long long>(p.n0 + n) * p.Mtot + p.m0 + m) * p.P + q] = cpn_fn(v, p.act, p.a, p.b);
    }
}

extern "C" __global__ void cpn_conv_direct(const cpn_conv_direct_args p) {
    const float* x = reinterpret_cast<const float*>(p.x);
    const float* w = reinterpret_cast<const float*>(p.w);
    const float* bias = reinterpret_cast<const float*>(p.bias);
    float* y = reinterpret_cast<float*>(p.y);
    const cpn_geo& g = p.g;
    const int Cg = g.C / g.G, Mg = g.M / g.G;
    CPN_GRID_STRIDE(i, p.total) {
        const int ow = static_cast<int>(i % g.OW);
        const int oh = static_cast<int>((i / g.OW) % g.OH);
        const int m = static_cast<int>((i / (static_cast<long long>(g.OW) * g.OH)) % g.M);
        const long long n = i / (static_cast<long long>(g.OW) * g.OH * g.M);
        const int grp = m / Mg;
        float acc = p.has_bias ? bias[m] : 0.0f;
        for (int c = 0; c < Cg; ++c) {
            const float* xp = x + ((n * g.C + grp * Cg + c) * static_cast<long long>(g.H)) * g.W;
            const float* wp = w + ((static_cast<long long>(m) * Cg + c) * g.KH) * g.KW;
            for (int kh = 0; kh < g.KH; ++kh) {
                const int ih = oh * g.sh - g.phb + kh * g.dh;
                if (ih < 0 || ih >= g.H) continue;
                for (int kw = 0; kw < g.KW; ++kw) {
                    const int iw = ow * g.sw - g.pwb + kw * g.dw;
                    if (iw < 0 || iw >= g.W) continue;
                    acc += xp[static_cast<long long>(ih) * g.W + iw] * wp[kh * g.KW + kw];
                }
            }
        }
        y[i] = cpn_fn(acc, p.act, p.a, p.b);
    }
}

extern "C" __global__ void cpn_bias_act(const cpn_bias_act_args p) {
    const float* bias = reinterpret_cast<const float*>(p.bias);
    float* y = reinterpret_cast<float*>(p.y);
    CPN_GRID_STRIDE(i, p.total) {
        float v = y[i];
        if (p.has_bias) v += bias[(i / p.P) % p.M];
        y[i] = cpn_fn(v, p.act, p.a, p.b);
    }
}

/* The window of an output starts at o*s - pb and steps by the dilation. Max ignores NaN and
 * starts from the lowest float, as the CPU operator; the average divides by the valid taps, or
 * with count_pad by the taps inside [-pb, in + pe). */
extern "C" __global__ void cpn_pool(const cpn_pool_args p) {
    const float* x = reinterpret_cast<const float*>(p.x);
    float* y = reinterpret_cast<float*>(p.y);
    const cpn_geo& g = p.g;
    CPN_GRID_STRIDE(i, p.total) {
        const int ow = static_cast<int>(i % g.OW);
        const int oh = static_cast<int>((i / g.OW) % g.OH);
        const long long plane = i / (static_cast<long long>(g.OW) * g.OH);
        const float* xp = x + plane * static_cast<long long>(g.H) * g.W;
        const int hs = oh * g.sh - g.phb, ws = ow * g.sw - g.pwb;
        float mx = -3.402823466e38f, sum = 0.0f;
        int cnt = 0, hin = 0, win = 0;
        for (int kh = 0; kh < g.KH; ++kh) {
            const int ih = hs + kh * g.dh;
            if (ih <= g.H + g.phe - 1) ++hin;
            if (ih < 0 || ih >= g.H) continue;
            for (int kw = 0; kw < g.KW; ++kw) {
                const int iw = ws + kw * g.dw;
                if (iw < 0 || iw >= g.W) continue;
                const float v = xp[static_cast<long long>(ih) * g.W + iw];
                mx = mx < v ? v : mx;
                sum += v;
                ++cnt;
            }
        }
        for (int kw = 0; kw < g.KW; ++kw)
            if (ws + kw * g.dw <= g.W + g.pwe - 1) ++win;
        if (p.kind == 0) {
            y[i] = mx;
        } else {
            const int div = p.count_pad ? hin * win : cnt;
            y[i] = div > 0 ? sum / static_cast<float>(div) : 0.0f;
        }
    }
}

/* One thread per plane, summing in order (the planes of a global pool are many and short). */
extern "C" __global__ void cpn_plane_mean(const cpn_plane_mean_args p) {
    const float* x = reinterpret_cast<const float*>(p.x);
    float* y = reinterpret_cast<float*>(p.y);
    CPN_GRID_STRIDE(i, p.planes) {
        const float* xp = x + i * p.len;
        float s = 0.0f;
        for (long long k = 0; k < p.len; ++k) s += xp[k];
        y[i] = s / static_cast<float>(p.len);
    }
}

extern "C" __global__ void cpn_channel_affine(const cpn_affine_args p) {
    const float* x = reinterpret_cast<const float*>(p.x);
    const float* scale = reinterpret_cast<const float*>(p.scale);
    const float* shift = reinterpret_cast<const float*>(p.shift);
    float* y = reinterpret_cast<float*>(p.y);
    CPN_GRID_STRIDE(i, p.n) {
        const long long c = (i / p.inner) % p.C;
        y[i] = x[i] * scale[c] + shift[c];
    }
}

/* One thread per (outer, inner) row: max, exp(x - max) and its sum, then the scaling; LogSoftmax
 * as (x - max) - log(sum), as the CPU operator. */
extern "C" __global__ void cpn_softmax(const cpn_softmax_args p) {
    const float* x = reinterpret_cast<const float*>(p.x);
    float* y = reinterpret_cast<float*>(p.y);
    CPN_GRID_STRIDE(i, p.rows) {
        const long long o = i / p.inner, in = i % p.inner;
        const long long base = o * p.len * p.inner + in;
        float mx = -INFINITY;
        for (long long k = 0; k < p.len; ++k) mx = fmaxf(mx, x[base + k * p.inner]);
        float s = 0.0f;
        for (long long k = 0; k < p.len; ++k) {
            const float e = expf(x[base + k * p.inner] - mx);
            if (!p.log_) y[base + k * p.inner] = e;
            s += e;
        }
        if (p.log_) {
            const float ls = logf(s);
            for (long long k = 0; k < p.len; ++k) y[base + k * p.inner] = (x[base + k * p.inner] - mx) - ls;
        } else {
            const float r = 1.0f / s;
            for (long long k = 0; k < p.len; ++k) y[base + k * p.inner] *= r;
        }
    }
}

extern "C" __global__ void cpn_copy_rows(const cpn_copy_rows_args p) {
    const float* x = reinterpret_cast<const float*>(p.x);
    float* y = reinterpret_cast<float*>(p.y);
    CPN_GRID_STRIDE(i, p.total) y[(i / p.row) * p.dst_row + p.dst_off + i % p.row] = x[i];
}

/* The built-in SGEMM: a CPN_GEMM_TILE-square block of threads computes a tile of C, one element
 * per thread, staging tiles of op(A) and op(B) through shared memory. Plain and portable rather
 * than fast: it is what runs where cuBLAS cannot be loaded. Grid: x over N, y over M, z over the
 * batch (each launch's batch starts at the pointers given). */
extern "C" __global__ void cpn_sgemm(const cpn_gemm_args p) {
    __shared__ float As[CPN_GEMM_TILE][CPN_GEMM_TILE + 1];
    __shared__ float Bs[CPN_GEMM_TILE][CPN_GEMM_TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const long long row = static_cast<long long>(blockIdx.y) * CPN_GEMM_TILE + ty;
    const long long col = static_cast<long long>(blockIdx.x) * CPN_GEMM_TILE + tx;
    const long long z = blockIdx.z;
    const float* A = reinterpret_cast<const float*>(p.a) + z * p.sa;
    const float* B = reinterpret_cast<const float*>(p.b) + z * p.sb;
    float* C = reinterpret_cast<float*>(p.c) + z * p.sc;
    float acc = 0.0f;
    for (int k0 = 0; k0 < p.K; k0 += CPN_GEMM_TILE) {
        const int ka = k0 + tx, kb = k0 + ty;
        As[ty][tx] = (row < p.M && ka < p.K) ? (p.ta ? A[static_cast<long long>(ka) * p.lda + row] : A[row * p.lda + ka]) : 0.0f;
        Bs[ty][tx] = (kb < p.K && col < p.N) ? (p.tb ? B[col * p.ldb + kb] : B[static_cast<long long>(kb) * p.ldb + col]) : 0.0f;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < CPN_GEMM_TILE; ++k) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    if (row < p.M && col < p.N) {
        float v = p.alpha * acc;
        if (p.beta != 0.0f) v += p.beta * C[row * p.ldc + col];
        C[row * p.ldc + col] = v;
    }
}
