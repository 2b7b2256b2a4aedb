// libFuzzer harness: the LIBSVM text reader. Every input either reads as a valid data set or
// throws sparseprox::Error; anything else (a crash, another exception, a sanitizer report, an
// allocation past -rss_limit_mb) is a finding.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "sparseprox/data.h"
#include "sparseprox/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string path = sparseprox_fuzz::put("input.txt", data, size);
    // The default feature limit, a smaller dense limit (64 MiB) so runs stay fast.
    sparseprox::LibsvmLimits limits;
    limits.max_dense_values = std::size_t{1} << 24;
    for (std::size_t n_features : {std::size_t{0}, std::size_t{8}}) {
        try {
            const sparseprox::Dataset d = sparseprox::read_libsvm(path, n_features, limits);
            d.validate();  // throws on an inconsistent set: the reader must never build one
            SPARSEPROX_FUZZ_CHECK(d.n_samples > 0 && d.n_features > 0 && d.y.size() == d.n_samples);
            SPARSEPROX_FUZZ_CHECK(n_features == 0 || d.n_features == n_features);
        } catch (const sparseprox::Error&) {
        }
    }
    return 0;
}
