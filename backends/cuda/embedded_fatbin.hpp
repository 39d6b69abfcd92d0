// embedded_fatbin.hpp: the self-test kernel fatbin that the build embeds into the plugin
// (kernels/selftest.cu -> nvcc -> selftest.fatbin -> embed_binary.cmake -> selftest_fatbin.cpp).
#pragma once

namespace cpn::cuda::embedded {

extern const unsigned char selftest_fatbin[];
extern const unsigned long long selftest_fatbin_size;

}  // namespace cpn::cuda::embedded
