// Mini-batch rows gathered by the epoch order on the CPU: one row copy per sample.
#include "cpu/gather.h"

#include <algorithm>

namespace sparseprox {
namespace cpu {

void gather_rows(const float* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows, float* dst) {
    for (std::size_t r = 0; r < n_rows; ++r) std::copy_n(src + rows[r] * n_cols, n_cols, dst + r * n_cols);
}

void gather_labels(const std::int32_t* src, const std::uint32_t* rows, std::size_t n_rows, std::int32_t* dst) {
    for (std::size_t r = 0; r < n_rows; ++r) dst[r] = src[rows[r]];
}

}  // namespace cpu
}  // namespace sparseprox
