// image.hpp: linear-RGB float images: 8-bit sRGB PNG (libspng) and PFM in and out, and PSNR.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace cpn::render {

struct Image {
    uint32_t width = 0, height = 0;
    std::vector<float> rgb;  // linear, row-major, top row first, 3 floats per pixel
};

/* sRGB transfer function, one channel, clamped to [0, 1]. */
float linear_to_srgb(float v);
float srgb_to_linear(float v);

/* 8-bit sRGB PNG bytes of the image (values clamped to [0, 1]). */
Result<std::string> encode_png(const Image& img);
/* Portable float map ("PF", little-endian, bottom row first as the format says). */
std::string encode_pfm(const Image& img);

/* Decoders for environment maps and reference images; `source` names the data in messages.
 * Images larger than max_pixels are refused before their pixels are allocated. */
Result<Image> decode_png(const std::string& bytes, const std::string& source, uint64_t max_pixels);
Result<Image> decode_pfm(const std::string& bytes, const std::string& source, uint64_t max_pixels);

/* Peak signal-to-noise ratio in dB of `b` against `a` after the sRGB 8-bit-style mapping
 * (values clamped to [0, 1] and sRGB encoded), peak 1; +infinity when equal. */
double psnr_srgb(const Image& a, const Image& b);

}  // namespace cpn::render
