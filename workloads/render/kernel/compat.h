/*
 * compat.h: the few qualifiers, types and math names the render kernel needs, for each compiler
 * that builds it: C++ (the CPU backend), OpenCL C (the OpenCL backend) and CUDA (the CUDA
 * backend). In the manner of Cycles' ccl_device / ccl_global: the kernel is written once in a
 * restricted C subset against these names, and every backend computes the same image.
 *
 * Rules for code under kernel/: plain C structs of 32-bit scalars only (their layout is the same
 * in every language and on the host), no recursion, no dynamic memory, no library calls but the
 * cpn_* math below, no vector types in buffers. Floating-point contraction is off everywhere so
 * the same arithmetic is done on every device.
 */
#ifndef CPN_RENDER_COMPAT_H
#define CPN_RENDER_COMPAT_H

#if defined(__OPENCL_VERSION__)
/* ---- OpenCL C ---- */
#pragma OPENCL FP_CONTRACT OFF
#define CPN_DEVICE static inline
#define CPN_GLOBAL __global
#define CPN_KERNEL_OPENCL 1
typedef uint cpn_u32;
#define cpn_sqrtf(x) sqrt(x)
#define cpn_fabsf(x) fabs(x)
#define cpn_sinf(x) sin(x)
#define cpn_cosf(x) cos(x)
#define cpn_powf(a, b) pow(a, b)
#define cpn_acosf(x) acos(x)
#define cpn_atan2f(y, x) atan2(y, x)
#define cpn_floorf(x) floor(x)
#define cpn_isfinite(x) isfinite(x)

#else
#if defined(__CUDACC__)
/* ---- CUDA ---- (built with --fmad=false) */
#define CPN_DEVICE static __device__ __forceinline__
#define CPN_KERNEL_CUDA 1
typedef unsigned int cpn_u32;
#else
/* ---- C++ on the host and in the CPU backend (built with -ffp-contract=off) ---- */
#include <math.h>
#include <stdint.h>
#define CPN_DEVICE static inline
#define CPN_KERNEL_CPU 1
typedef uint32_t cpn_u32;
#endif
/* CUDA and C++ share the C library's float names. */
#define CPN_GLOBAL
#define cpn_sqrtf(x) sqrtf(x)
#define cpn_fabsf(x) fabsf(x)
#define cpn_sinf(x) sinf(x)
#define cpn_cosf(x) cosf(x)
#define cpn_powf(a, b) powf(a, b)
#define cpn_acosf(x) acosf(x)
#define cpn_atan2f(y, x) atan2f(y, x)
#define cpn_floorf(x) floorf(x)
#define cpn_isfinite(x) isfinite(x)
#endif

#define CPN_PI 3.14159265358979323846f
#define CPN_INF 3.0e38f

/* min/max that never propagate a NaN from the second operand into a box test */
CPN_DEVICE float cpn_min(float a, float b) { return a < b ? a : b; }
CPN_DEVICE float cpn_max(float a, float b) { return a > b ? a : b; }

typedef struct cpn_vec3 {
    float x, y, z;
} cpn_vec3;

CPN_DEVICE cpn_vec3 v3(float x, float y, float z) {
    cpn_vec3 r;
    r.x = x;
    r.y = y;
    r.z = z;
    return r;
}
CPN_DEVICE cpn_vec3 v3_load(CPN_GLOBAL const float* p) { return v3(p[0], p[1], p[2]); }
CPN_DEVICE cpn_vec3 v3_add(cpn_vec3 a, cpn_vec3 b) { return v3(a.x + b.x, a.y + b.y, a.z + b.z); }
CPN_DEVICE cpn_vec3 v3_sub(cpn_vec3 a, cpn_vec3 b) { return v3(a.x - b.x, a.y - b.y, a.z - b.z); }
CPN_DEVICE cpn_vec3 v3_mul(cpn_vec3 a, cpn_vec3 b) { return v3(a.x * b.x, a.y * b.y, a.z * b.z); }
CPN_DEVICE cpn_vec3 v3_scale(cpn_vec3 a, float s) { return v3(a.x * s, a.y * s, a.z * s); }
CPN_DEVICE float v3_dot(cpn_vec3 a, cpn_vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
CPN_DEVICE cpn_vec3 v3_cross(cpn_vec3 a, cpn_vec3 b) {
    return v3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x);
}
CPN_DEVICE float v3_length(cpn_vec3 a) { return cpn_sqrtf(v3_dot(a, a)); }
CPN_DEVICE cpn_vec3 v3_normalize(cpn_vec3 a) {
    const float l = v3_length(a);
    return l > 0.0f ? v3_scale(a, 1.0f / l) : v3(0.0f, 0.0f, 1.0f);
}
CPN_DEVICE float v3_max_component(cpn_vec3 a) { return cpn_max(a.x, cpn_max(a.y, a.z)); }

#endif /* CPN_RENDER_COMPAT_H */
