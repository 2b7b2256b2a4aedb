// libFuzzer harness: the IDX (MNIST) reader, plain or gzipped. The input is split in two files:
// bytes 0-3 (little-endian, modulo the rest's length) give the images file's length, the
// remainder is the labels file; byte 4 picks the pixel scale.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "sparseprox/data.h"
#include "sparseprox/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 5) return 0;
    const std::uint32_t cut =
        std::uint32_t(data[0]) | (std::uint32_t(data[1]) << 8) | (std::uint32_t(data[2]) << 16) | (std::uint32_t(data[3]) << 24);
    const auto scale = static_cast<sparseprox::PixelScale>(data[4] % 3);
    data += 5;
    size -= 5;
    const std::size_t images_len = size ? cut % (size + 1) : 0;
    const std::string images = sparseprox_fuzz::put("images-idx3-ubyte", data, images_len);
    const std::string labels = sparseprox_fuzz::put("labels-idx1-ubyte", data + images_len, size - images_len);
    try {
        const sparseprox::Dataset d = sparseprox::read_idx(images, labels, scale);
        d.validate();
        SPARSEPROX_FUZZ_CHECK(d.labels.size() == d.n_samples && d.x.size() == d.n_samples * d.n_features);
    } catch (const sparseprox::Error&) {
    }
    return 0;
}
