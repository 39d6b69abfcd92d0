// embedded_fatbin.hpp: the kernel fatbins that the build embeds into the plugin
// (kernels/selftest.cu -> nvcc -> selftest.fatbin -> embed_binary.cmake -> selftest_fatbin.cpp;
// likewise kernels/bench.cu -> bench_fatbin, kernels/infer.cu -> infer_fatbin, and
// kernels/bench_sm90a.cu -> bench_sm90a_fatbin when CPN_CUDA_HAVE_SM90A is 1). Every array needs
// its declaration here: the generated definitions are const, so without an extern declaration in
// scope they would have internal linkage.
#pragma once

namespace cpn::cuda::embedded {

extern const unsigned char selftest_fatbin[];
extern const unsigned long long selftest_fatbin_size;

extern const unsigned char render_fatbin[];
extern const unsigned long long render_fatbin_size;

extern const unsigned char bench_fatbin[];
extern const unsigned long long bench_fatbin_size;

extern const unsigned char infer_fatbin[];
extern const unsigned long long infer_fatbin_size;

#if defined(CPN_CUDA_HAVE_SM90A) && CPN_CUDA_HAVE_SM90A
extern const unsigned char bench_sm90a_fatbin[];
extern const unsigned long long bench_sm90a_fatbin_size;
#endif

}  // namespace cpn::cuda::embedded
