// fuzz_image: image files from outside (a scene's environment map: PNG through libspng, or PFM)
// through the decoders. Contract: a Result error or an image whose pixel buffer matches its
// size and the pixel limit; never an exception, a crash or an allocation past the limit.
#include <string>

#include "fuzz_support.hpp"
#include "image.hpp"

using namespace cpn::render;

namespace {

void check(const cpn::Result<Image>& r, const char* what, uint64_t limit) {
    if (!r.ok()) return;
    const Image& img = r.value();
    const uint64_t px = uint64_t{img.width} * img.height;
    if (px > limit) cpn::fuzz::broken("image", std::string(what) + " accepted an image past the pixel limit");
    if (img.rgb.size() != px * 3)
        cpn::fuzz::broken("image", std::string(what) + " returned " + std::to_string(img.rgb.size()) + " floats for " +
                                       std::to_string(img.width) + "x" + std::to_string(img.height) + " RGB");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string bytes = cpn::fuzz::as_string(data, size);
    constexpr uint64_t kLimit = 1u << 16;
    cpn::fuzz::expect_no_escape("image", [&] {
        check(decode_png(bytes, "fuzz.png", kLimit), "decode_png", kLimit);
        check(decode_pfm(bytes, "fuzz.pfm", kLimit), "decode_pfm", kLimit);
    });
    return 0;
}
