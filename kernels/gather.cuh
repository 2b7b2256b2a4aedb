// Launchers of the batch gather (kernels/gather.cu).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace sparseprox {
namespace cuda {

// dst[r][c] = src[rows[r]][c] for r < n_rows, c < n_cols: src (any, n_cols), dst (n_rows, n_cols),
// rows (n_rows) device indices (the epoch order from the batch's first position on).
void launch_gather_rows(const float* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows,
                        float* dst, cudaStream_t stream);
// dst[r] = src[rows[r]] (class labels).
void launch_gather_rows(const std::int32_t* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows,
                        std::int32_t* dst, cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
