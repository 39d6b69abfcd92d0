// image.cpp: PNG through libspng, PFM by hand (a ten-line format), PSNR.
#include "image.hpp"

#include <spng.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

namespace cpn::render {

float linear_to_srgb(float v) {
    if (!(v > 0.0f)) return 0.0f;
    if (v >= 1.0f) return 1.0f;
    return v <= 0.0031308f ? 12.92f * v : 1.055f * std::pow(v, 1.0f / 2.4f) - 0.055f;
}

float srgb_to_linear(float v) {
    return v <= 0.04045f ? v / 12.92f : std::pow((v + 0.055f) / 1.055f, 2.4f);
}

namespace {

struct SpngDeleter {
    void operator()(spng_ctx* c) const { spng_ctx_free(c); }
};
using SpngCtx = std::unique_ptr<spng_ctx, SpngDeleter>;

}  // namespace

Result<std::string> encode_png(const Image& img) {
    if (img.width == 0 || img.height == 0 || img.rgb.size() != size_t{img.width} * img.height * 3)
        return Status(Code::invalid_argument, "png: the image is empty or its pixel count does not match its size");
    std::vector<uint8_t> px(img.rgb.size());
    for (size_t i = 0; i < px.size(); ++i)
        px[i] = static_cast<uint8_t>(std::lround(linear_to_srgb(img.rgb[i]) * 255.0f));
    SpngCtx ctx(spng_ctx_new(SPNG_CTX_ENCODER));
    if (!ctx) return Status(Code::out_of_memory, "png: cannot create an encoder");
    spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1);
    spng_ihdr ihdr{};
    ihdr.width = img.width;
    ihdr.height = img.height;
    ihdr.bit_depth = 8;
    ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
    spng_set_ihdr(ctx.get(), &ihdr);
    spng_set_srgb(ctx.get(), 0);  // sRGB chunk, perceptual rendering intent
    if (int rc = spng_encode_image(ctx.get(), px.data(), px.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE); rc != 0)
        return Status(Code::internal, std::string("png: encode: ") + spng_strerror(rc));
    size_t len = 0;
    int rc = 0;
    void* buf = spng_get_png_buffer(ctx.get(), &len, &rc);
    if (buf == nullptr) return Status(Code::internal, std::string("png: encode: ") + spng_strerror(rc));
    std::string out(static_cast<const char*>(buf), len);
    std::free(buf);
    return out;
}

std::string encode_pfm(const Image& img) {
    std::string out = "PF\n" + std::to_string(img.width) + " " + std::to_string(img.height) + "\n-1.0\n";
    const size_t row = size_t{img.width} * 3;
    const size_t head = out.size();
    out.resize(head + row * img.height * sizeof(float));
    for (uint32_t y = 0; y < img.height; ++y)  // PFM stores the bottom row first
        std::memcpy(out.data() + head + size_t{y} * row * sizeof(float),
                    img.rgb.data() + size_t{img.height - 1 - y} * row, row * sizeof(float));
    return out;
}

Result<Image> decode_png(const std::string& bytes, const std::string& source, uint64_t max_pixels) {
    SpngCtx ctx(spng_ctx_new(0));
    if (!ctx) return Status(Code::out_of_memory, source + ": cannot create a PNG decoder");
    spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size());
    spng_ihdr ihdr{};
    if (int rc = spng_get_ihdr(ctx.get(), &ihdr); rc != 0)
        return Status(Code::invalid_argument, source + ": not a readable PNG: " + spng_strerror(rc));
    if (uint64_t{ihdr.width} * ihdr.height > max_pixels)
        return Status(Code::invalid_argument, source + ": the image is " + std::to_string(ihdr.width) + "x" +
                                                  std::to_string(ihdr.height) + ", more than the limit of " +
                                                  std::to_string(max_pixels) + " pixels");
    size_t size = 0;
    if (int rc = spng_decoded_image_size(ctx.get(), SPNG_FMT_RGB8, &size); rc != 0)
        return Status(Code::invalid_argument, source + ": " + spng_strerror(rc));
    std::vector<uint8_t> px(size);
    if (int rc = spng_decode_image(ctx.get(), px.data(), px.size(), SPNG_FMT_RGB8, 0); rc != 0)
        return Status(Code::invalid_argument, source + ": PNG decode: " + spng_strerror(rc));
    Image img;
    img.width = ihdr.width;
    img.height = ihdr.height;
    img.rgb.resize(px.size());
    for (size_t i = 0; i < px.size(); ++i) img.rgb[i] = srgb_to_linear(px[i] / 255.0f);
    return img;
}

Result<Image> decode_pfm(const std::string& bytes, const std::string& source, uint64_t max_pixels) {
    // "PF\n<w> <h>\n<scale>\n" then binary floats, bottom row first; negative scale = little-endian.
    size_t pos = 0;
    auto token = [&]() -> std::string {
        while (pos < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[pos]))) ++pos;
        size_t start = pos;
        while (pos < bytes.size() && !std::isspace(static_cast<unsigned char>(bytes[pos]))) ++pos;
        return bytes.substr(start, pos - start);
    };
    const std::string magic = token();
    if (magic != "PF")
        return Status(Code::invalid_argument, source + ": not a colour PFM (it must start with \"PF\")");
    const std::string ws = token(), hs = token(), ss = token();
    char* end = nullptr;
    const unsigned long long w = std::strtoull(ws.c_str(), &end, 10);
    const bool w_ok = !ws.empty() && *end == '\0';
    const unsigned long long h = std::strtoull(hs.c_str(), &end, 10);
    const bool h_ok = !hs.empty() && *end == '\0';
    const double scale = std::strtod(ss.c_str(), &end);
    if (!w_ok || !h_ok || w == 0 || h == 0 || ss.empty() || *end != '\0' || scale == 0)
        return Status(Code::invalid_argument, source + ": a malformed PFM header (width height scale)");
    if (scale > 0) return Status(Code::unsupported, source + ": big-endian PFM is not supported");
    if (w > 1u << 20 || h > 1u << 20 || w * h > max_pixels)
        return Status(Code::invalid_argument, source + ": the image is " + ws + "x" + hs +
                                                  ", more than the limit of " + std::to_string(max_pixels) + " pixels");
    ++pos;  // the single whitespace after the scale
    const size_t need = static_cast<size_t>(w * h * 3 * sizeof(float));
    if (bytes.size() < pos || bytes.size() - pos < need)
        return Status(Code::invalid_argument, source + ": the PFM data is truncated (" +
                                                  std::to_string(bytes.size() - std::min(pos, bytes.size())) +
                                                  " bytes of " + std::to_string(need) + ")");
    Image img;
    img.width = static_cast<uint32_t>(w);
    img.height = static_cast<uint32_t>(h);
    img.rgb.resize(static_cast<size_t>(w * h * 3));
    const size_t row = static_cast<size_t>(w) * 3;
    for (size_t y = 0; y < h; ++y)
        std::memcpy(img.rgb.data() + (h - 1 - y) * row, bytes.data() + pos + y * row * sizeof(float), row * sizeof(float));
    for (float& v : img.rgb)
        if (!std::isfinite(v)) return Status(Code::invalid_argument, source + ": the PFM holds a NaN or infinite value");
    return img;
}

double psnr_srgb(const Image& a, const Image& b) {
    if (a.width != b.width || a.height != b.height || a.rgb.size() != b.rgb.size() || a.rgb.empty()) return 0;
    double se = 0;
    for (size_t i = 0; i < a.rgb.size(); ++i) {
        const double d = double{linear_to_srgb(a.rgb[i])} - double{linear_to_srgb(b.rgb[i])};
        se += d * d;
    }
    const double mse = se / static_cast<double>(a.rgb.size());
    if (mse == 0) return std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(1.0 / mse);
}

}  // namespace cpn::render
