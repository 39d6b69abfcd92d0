// cuda_errors.hpp: CUresult codes as text, and which of them mean the device faulted.
#pragma once

#include "cuda_driver.hpp"

#include <string>

namespace cpn::cuda {

/* "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)". The name comes from the driver
 * (cuGetErrorName) or, when it cannot give one (the toolkit's stub library, an old driver),
 * from the names cuda.h defines; the text in parentheses only when the driver supplies it. */
std::string error_text(const DriverApi* api, CUresult r);

/* The name cuda.h gives the code ("CUDA_ERROR_STUB_LIBRARY"), or nullptr for an unknown one. */
const char* error_name(CUresult r);

/* True for the errors after which the context is unusable (the device faulted). */
bool is_sticky(CUresult r);

}  // namespace cpn::cuda
