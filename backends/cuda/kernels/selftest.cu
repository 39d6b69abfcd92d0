// selftest.cu: the device code of the "selftest.saxpy" workload, y = a*x + y over float32.
//
// Compiled at build time by nvcc to a fatbin (see ../CMakeLists.txt) that the plugin embeds and
// loads with cuModuleLoadData; it uses no CUDA runtime and includes no header, so it builds with
// whatever C++ dialect nvcc accepts (C++20 at most for nvcc 13). The symbol is extern "C" so
// the host looks it up by its plain name.

/* Grid-stride loop: any grid size covers any n. __fmul_rn/__fadd_rn forbid the compiler from
 * contracting the two operations into one FMA, so the result is bit-identical to the host's
 * `a * x[i] + y[i]` in IEEE float and the self-test can compare exactly. */
extern "C" __global__ void cpn_selftest_saxpy(unsigned long long n, float a,
                                              const float* __restrict__ x, float* __restrict__ y) {
    const unsigned long long stride =
        static_cast<unsigned long long>(blockDim.x) * static_cast<unsigned long long>(gridDim.x);
    for (unsigned long long i =
             static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < n; i += stride) {
        y[i] = __fadd_rn(__fmul_rn(a, x[i]), y[i]);
    }
}
