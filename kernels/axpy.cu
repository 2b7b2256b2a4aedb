// y += a x through cuBLAS saxpy, in chunks of at most INT_MAX elements. Memory-bound: 12 bytes
// per element (read x and y, write y).
#include "kernels/axpy.cuh"

#include <algorithm>
#include <climits>

#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

void axpy(cublasHandle_t handle, float a, const float* x, float* y, std::size_t n) {
    constexpr std::size_t kChunk = static_cast<std::size_t>(INT_MAX);
    for (std::size_t first = 0; first < n; first += kChunk)
        SPARSEPROX_CUDA_CHECK(cublasSaxpy(handle, static_cast<int>(std::min(kChunk, n - first)), &a, x + first, 1,
                                          y + first, 1));
}

}  // namespace cuda
}  // namespace sparseprox
