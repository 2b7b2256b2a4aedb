// Mini-batch rows gathered by the epoch order on the CPU, the twin of kernels/gather.cu.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sparseprox {
namespace cpu {

// dst[r][c] = src[rows[r]][c] for r < n_rows, c < n_cols: src (any, n_cols), dst (n_rows, n_cols).
void gather_rows(const float* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows, float* dst);
// dst[r] = src[rows[r]] (class labels).
void gather_labels(const std::int32_t* src, const std::uint32_t* rows, std::size_t n_rows, std::int32_t* dst);

}  // namespace cpu
}  // namespace sparseprox
