/* infer_kernels.cl: the OpenCL C kernels of the OpenCL backend's inference extension
 * (opencl_infer.cpp). float32 only; every kernel takes its element count and ignores work items
 * past it, so the host may launch any global size. Products (Gemm, MatMul, the GEMM half of
 * Conv) are CLBlast's, not here. */

/* Activation codes: as kAct* in opencl_infer.cpp. */
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_LEAKY 2
#define ACT_CLIP 3
#define ACT_SIGMOID 4
#define ACT_HARDSIGMOID 5
#define ACT_TANH 6
#define ACT_HARDSWISH 7

inline float cpn_act(float v, int act, float a, float b) {
    switch (act) {
        case ACT_RELU: return v < 0.0f ? 0.0f : v;  // NaN stays NaN, as on the CPU
        case ACT_LEAKY: return v >= 0.0f ? v : a * v;
        case ACT_CLIP: return fmin(fmax(v, a), b);
        case ACT_SIGMOID: return 1.0f / (1.0f + exp(-v));
        case ACT_HARDSIGMOID: return fmax(0.0f, fmin(1.0f, a * v + b));
        case ACT_TANH: return tanh(v);
        case ACT_HARDSWISH: return v * fmax(0.0f, fmin(1.0f, v / 6.0f + 0.5f));
        default: return v;
    }
}

/* y = act(x) elementwise (x and y may be the same buffer). */
__kernel void cpn_unary(__global const float* x, __global float* y, const long n, const int act, const float a,
                        const float b) {
    const long i = get_global_id(0);
    if (i < n) y[i] = cpn_act(x[i], act, a, b);
}

/* NumPy broadcasting binary op over an output of `rank` dims (<= 8): astr / bstr are the
 * inputs' strides per output dim (0 where broadcast). op: 0 add, 1 sub, 2 mul, 3 div. */
__kernel void cpn_binary(__global const float* a, __global const float* b, __global float* y, const long n, const int op,
                         const int rank, const long8 dims8, const long8 astr8, const long8 bstr8, const int plain) {
    const long i = get_global_id(0);
    if (i >= n) return;
    long ia = i, ib = i;
    if (!plain) {
        long dims[8], as[8], bs[8];
        vstore8(dims8, 0, dims);
        vstore8(astr8, 0, as);
        vstore8(bstr8, 0, bs);
        long rem = i;
        ia = 0;
        ib = 0;
        for (int d = rank - 1; d >= 0; --d) {
            const long c = rem % dims[d];
            rem /= dims[d];
            ia += c * as[d];
            ib += c * bs[d];
        }
    }
    const float u = a[ia], v = b[ib];
    float r;
    switch (op) {
        case 0: r = u + v; break;
        case 1: r = u - v; break;
        case 2: r = u * v; break;
        default: r = u / v; break;
    }
    y[i] = r;
}

/* Generic strided gather over <= 8 dims: y[i] = x[sum(coord_d * xstr_d)] with coords of i in
 * `dims`. Transpose, and filling Gemm's C broadcast (beta scaled). */
__kernel void cpn_gather(__global const float* x, __global float* y, const long n, const int rank, const long8 dims8,
                         const long8 xstr8, const float scale) {
    const long i = get_global_id(0);
    if (i >= n) return;
    long dims[8], xs[8];
    vstore8(dims8, 0, dims);
    vstore8(xstr8, 0, xs);
    long rem = i, ix = 0;
    for (int d = rank - 1; d >= 0; --d) {
        const long c = rem % dims[d];
        rem /= dims[d];
        ix += c * xs[d];
    }
    y[i] = scale * x[ix];
}

/* im2col of `nb` images starting at image n0, channels [c0, c0 + C) of a [*, Ctot, H, W]
 * input: col[k][j], k = (c*KH + kh)*KW + kw, j = n*OH*OW + oh*OW + ow. */
__kernel void cpn_im2col(__global const float* x, __global float* col, const long total, const int n0, const int nb,
                         const int Ctot, const int c0, const int C, const int H, const int W, const int KH, const int KW,
                         const int OH, const int OW, const int sh, const int sw, const int ph, const int pw, const int dh,
                         const int dw) {
    const long i = get_global_id(0);
    if (i >= total) return;
    const long P = (long)OH * OW;
    const long J = (long)nb * P;
    const long k = i / J, j = i % J;
    const int kw = (int)(k % KW);
    const int kh = (int)((k / KW) % KH);
    const int c = (int)(k / ((long)KW * KH));
    const int n = (int)(j / P);
    const long p = j % P;
    const int oh = (int)(p / OW), ow = (int)(p % OW);
    const int ih = oh * sh - ph + kh * dh, iw = ow * sw - pw + kw * dw;
    float v = 0.0f;
    if (ih >= 0 && ih < H && iw >= 0 && iw < W)
        v = x[(((long)(n0 + n) * Ctot + c0 + c) * H + ih) * W + iw];
    col[i] = v;
}

/* The GEMM result tmp[m][n*P + p] of one group into y[n0 + n][m0 + m][p], with bias and the
 * fused activation. */
__kernel void cpn_conv_scatter(__global const float* tmp, __global const float* bias, const int has_bias,
                               __global float* y, const long total, const int n0, const int nb, const int Mtot,
                               const int m0, const long P, const int act, const float a, const float b) {
    const long i = get_global_id(0);
    if (i >= total) return;
    const long J = (long)nb * P;
    const int m = (int)(i / J);
    const long j = i % J;
    const int n = (int)(j / P);
    const long p = j % P;
    float v = tmp[i];
    if (has_bias) v += bias[m0 + m];
    y[((long)(n0 + n) * Mtot + m0 + m) * P + p] = cpn_act(v, act, a, b);
}

/* Direct convolution, one output element per work item (depthwise and other thin groups). */
__kernel void cpn_conv_direct(__global const float* x, __global const float* w, __global const float* bias,
                              const int has_bias, __global float* y, const long total, const int C, const int H,
                              const int W, const int M, const int G, const int KH, const int KW, const int OH,
                              const int OW, const int sh, const int sw, const int ph, const int pw, const int dh,
                              const int dw, const int act, const float a, const float b) {
    const long i = get_global_id(0);
    if (i >= total) return;
    const int ow = (int)(i % OW);
    const int oh = (int)((i / OW) % OH);
    const int m = (int)((i / ((long)OW * OH)) % M);
    const long n = i / ((long)OW * OH * M);
    const int Cg = C / G, Mg = M / G, g = m / Mg;
    float acc = has_bias ? bias[m] : 0.0f;
    for (int c = 0; c < Cg; ++c) {
        __global const float* xp = x + ((n * C + g * Cg + c) * (long)H) * W;
        __global const float* wp = w + (((long)m * Cg + c) * KH) * KW;
        for (int kh = 0; kh < KH; ++kh) {
            const int ih = oh * sh - ph + kh * dh;
            if (ih < 0 || ih >= H) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int iw = ow * sw - pw + kw * dw;
                if (iw < 0 || iw >= W) continue;
                acc += xp[(long)ih * W + iw] * wp[kh * KW + kw];
            }
        }
    }
    y[i] = cpn_act(acc, act, a, b);
}

/* 2-D pooling over planes of H x W (1-D as H = 1): kind 0 max, 1 average. The window of an
 * output starts at o*s - pb; taps step by the dilation; the average divides by the valid taps,
 * or with count_pad by the taps inside [-pb, in + pe) (as the CPU operator). */
__kernel void cpn_pool(__global const float* x, __global float* y, const long total, const int H, const int W,
                       const int OH, const int OW, const int KH, const int KW, const int sh, const int sw, const int phb,
                       const int pwb, const int phe, const int pwe, const int dh, const int dw, const int kind,
                       const int count_pad) {
    const long i = get_global_id(0);
    if (i >= total) return;
    const int ow = (int)(i % OW);
    const int oh = (int)((i / OW) % OH);
    const long plane = i / ((long)OW * OH);
    __global const float* xp = x + plane * (long)H * W;
    const int hs = oh * sh - phb, ws = ow * sw - pwb;
    float mx = -INFINITY, sum = 0.0f;
    int cnt = 0, hin = 0, win = 0;
    for (int kh = 0; kh < KH; ++kh) {
        const int ih = hs + kh * dh;
        if (ih <= H + phe - 1) ++hin;
        if (ih < 0 || ih >= H) continue;
        for (int kw = 0; kw < KW; ++kw) {
            const int iw = ws + kw * dw;
            if (iw < 0 || iw >= W) continue;
            const float v = xp[(long)ih * W + iw];
            mx = fmax(mx, v);
            sum += v;
            ++cnt;
        }
    }
    for (int kw = 0; kw < KW; ++kw)
        if (ws + kw * dw <= W + pwe - 1) ++win;
    if (kind == 0) {
        y[i] = mx;
    } else {
        const int div = count_pad ? hin * win : cnt;
        y[i] = div > 0 ? sum / (float)div : 0.0f;
    }
}

/* Mean over each plane of `len` elements (GlobalAveragePool). */
__kernel void cpn_plane_mean(__global const float* x, __global float* y, const long planes, const long len) {
    const long i = get_global_id(0);
    if (i >= planes) return;
    __global const float* xp = x + i * len;
    float s = 0.0f;
    for (long k = 0; k < len; ++k) s += xp[k];
    y[i] = s / (float)len;
}

/* y = x * scale[c] + shift[c] over [N, C, inner] (BatchNormalization for inference). */
__kernel void cpn_channel_affine(__global const float* x, __global const float* scale, __global const float* shift,
                                 __global float* y, const long n, const long C, const long inner) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const long c = (i / inner) % C;
    y[i] = x[i] * scale[c] + shift[c];
}

/* Softmax along the middle axis of [outer, len, inner]; one work item per (outer, inner). */
__kernel void cpn_softmax(__global const float* x, __global float* y, const long rows, const long len, const long inner) {
    const long i = get_global_id(0);
    if (i >= rows) return;
    const long o = i / inner, in = i % inner;
    const long base = o * len * inner + in;
    float mx = -INFINITY;
    for (long k = 0; k < len; ++k) mx = fmax(mx, x[base + k * inner]);
    float s = 0.0f;
    for (long k = 0; k < len; ++k) {
        const float e = exp(x[base + k * inner] - mx);
        y[base + k * inner] = e;
        s += e;
    }
    const float r = 1.0f / s;
    for (long k = 0; k < len; ++k) y[base + k * inner] *= r;
}
