/* infer_args.h: the parameter blocks of the inference kernels (kernels/infer.cu), shared by the
 * device code and the host code that launches them (cuda_infer.cpp).
 *
 * Every kernel takes exactly one of these structs by value, so the host can never pass an
 * argument list that differs from the kernel's in count, order or width: both sides compile the
 * same declaration, and nvcc lays a kernel parameter struct out as the host compiler does.
 * Device pointers are CUdeviceptr-sized integers (the driver API's type), cast in the kernel.
 *
 * Plain C: no CUDA or C++ library header, so it builds in both compilers unchanged. */
#ifndef CPN_CUDA_INFER_ARGS_H
#define CPN_CUDA_INFER_ARGS_H

typedef unsigned long long cpn_dptr; /* a CUdeviceptr */

#define CPN_MAX_RANK 8

/* Elementwise function codes of cpn_unary (and the fused activations of Conv, Gemm and MatMul,
 * which use the first eight). */
enum {
    CPN_ACT_NONE = 0,
    CPN_ACT_RELU = 1,
    CPN_ACT_LEAKY = 2,       /* a: alpha */
    CPN_ACT_CLIP = 3,        /* a: min, b: max */
    CPN_ACT_SIGMOID = 4,
    CPN_ACT_HARDSIGMOID = 5, /* a: alpha, b: beta */
    CPN_ACT_TANH = 6,
    CPN_ACT_HARDSWISH = 7,
    CPN_FN_SQRT = 8,
    CPN_FN_EXP = 9,
    CPN_FN_LOG = 10,
    CPN_FN_NEG = 11,
    CPN_FN_ABS = 12,
    CPN_FN_ERF = 13,
    CPN_FN_GELU = 14,        /* approximate="none": 0.5 x (1 + erf(x / sqrt 2)) */
    CPN_FN_GELU_TANH = 15    /* approximate="tanh" */
};

/* Binary operator codes of cpn_binary. */
enum { CPN_BIN_ADD = 0, CPN_BIN_SUB = 1, CPN_BIN_MUL = 2, CPN_BIN_DIV = 3, CPN_BIN_POW = 4 };

/* An output index space of `rank` (<= 8) dims and, per operand, its element stride along each
 * output dim (0 where the operand is broadcast). */
typedef struct cpn_strides {
    int rank;
    int pad_;
    long long dims[CPN_MAX_RANK];
    long long s0[CPN_MAX_RANK];
    long long s1[CPN_MAX_RANK];
} cpn_strides;

/* y[i] = f(x[i]) for i < n (x and y may be the same buffer). */
typedef struct cpn_unary_args {
    cpn_dptr x, y;
    long long n;
    int op;
    float a, b;
} cpn_unary_args;

/* y[i] = a[..] op b[..] with NumPy broadcasting (s0: a's strides, s1: b's); `plain` when both
 * operands have the output's shape (no index arithmetic). */
typedef struct cpn_binary_args {
    cpn_dptr a, b, y;
    long long n;
    int op;
    int plain;
    cpn_strides st;
} cpn_binary_args;

/* y[i] = scale * x[sum(coord_d * s0_d)], coordinates of i in st.dims (Transpose, Gemm's C). */
typedef struct cpn_gather_args {
    cpn_dptr x, y;
    long long n;
    float scale;
    int pad_;
    cpn_strides st;
} cpn_gather_args;

/* The geometry of a 2-D convolution or pooling over [N, C, H, W] (1-D as H = 1). */
typedef struct cpn_geo {
    int N, C, H, W;  /* input */
    int M, G;        /* output channels, groups (convolution) */
    int KH, KW, OH, OW;
    int sh, sw;      /* strides */
    int phb, pwb;    /* pads at the beginning */
    int phe, pwe;    /* pads at the end */
    int dh, dw;      /* dilations */
} cpn_geo;

/* im2col of `nb` images from image n0, channels [c0, c0 + Cg): col[k][j], k = (c*KH + kh)*KW + kw,
 * j = n*OH*OW + oh*OW + ow. total = Cg*KH*KW * nb*OH*OW. */
typedef struct cpn_im2col_args {
    cpn_dptr x, col;
    long long total;
    int n0, nb, c0, Cg;
    cpn_geo g;
} cpn_im2col_args;

/* tmp[m][n*P + p] (one group's product for nb images) into y[n0 + n][m0 + m][p] with the bias
 * and the activation. total = Mg * nb * P. */
typedef struct cpn_scatter_args {
    cpn_dptr tmp, bias, y;
    long long total;
    long long P;
    int n0, nb, Mtot, m0;
    int has_bias, act;
    float a, b;
} cpn_scatter_args;

/* Direct convolution, one output element per thread (depthwise and other thin groups). */
typedef struct cpn_conv_direct_args {
    cpn_dptr x, w, bias, y;
    long long total;
    int has_bias, act;
    float a, b;
    cpn_geo g;
} cpn_conv_direct_args;

/* y[i] = act(y[i] + bias[(i / P) % M]) in place over [N, M, P] (the 1x1 convolution's GEMM
 * writes y directly; this adds what the scatter would have). */
typedef struct cpn_bias_act_args {
    cpn_dptr y, bias;
    long long total;
    long long P;
    int M, has_bias, act;
    float a, b;
} cpn_bias_act_args;

/* 2-D pooling over planes of H x W: kind 0 max, 1 average (count_pad: divide by the taps inside
 * the padded extent, else by the valid ones). */
typedef struct cpn_pool_args {
    cpn_dptr x, y;
    long long total;
    int kind, count_pad;
    cpn_geo g;
} cpn_pool_args;

/* The mean of each plane of `len` elements (GlobalAveragePool). */
typedef struct cpn_plane_mean_args {
    cpn_dptr x, y;
    long long planes, len;
} cpn_plane_mean_args;

/* y = x * scale[c] + shift[c] over [N, C, inner] (BatchNormalization for inference). */
typedef struct cpn_affine_args {
    cpn_dptr x, scale, shift, y;
    long long n, C, inner;
} cpn_affine_args;

/* Softmax (log_ 0) or LogSoftmax (log_ 1) along the middle axis of [outer, len, inner]. */
typedef struct cpn_softmax_args {
    cpn_dptr x, y;
    long long rows, len, inner;
    int log_;
    int pad_;
} cpn_softmax_args;

/* y[(i / row) * dst_row + dst_off + i % row] = x[i]: one input of a Concat into its place. */
typedef struct cpn_copy_rows_args {
    cpn_dptr x, y;
    long long total, row, dst_row, dst_off;
} cpn_copy_rows_args;

/* The built-in SGEMM (used when cuBLAS is not available): for each batch z of the launch,
 * C = alpha * op(A) * op(B) + beta * C, row-major, A at a + z*sa (M x K, or K x M when ta),
 * B at b + z*sb (K x N, or N x K when tb), C at c + z*sc (M x N). beta == 0 does not read C. */
typedef struct cpn_gemm_args {
    cpn_dptr a, b, c;
    long long lda, ldb, ldc;
    long long sa, sb, sc;
    int M, N, K;
    int ta, tb;
    float alpha, beta;
    int pad_;
} cpn_gemm_args;

/* The tile edge of cpn_sgemm: a block is CPN_GEMM_TILE x CPN_GEMM_TILE threads, one output each. */
#define CPN_GEMM_TILE 16

#endif /* CPN_CUDA_INFER_ARGS_H */
