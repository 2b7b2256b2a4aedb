// Gathers the rows of a mini-batch from the device-resident training set by the epoch order:
// dst[r][c] = src[rows[r]][c]. 4 bytes read + 4 written per element (+ 4 bytes of index per row);
// memory-bound. Consecutive threads take consecutive columns of a row, so reads and writes are
// coalesced within a row.
#include "kernels/gather.cuh"

#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

namespace {

constexpr unsigned kThreads = 256;

template <class T>
__global__ void gather_rows_kernel(const T* __restrict__ src, std::uint64_t n_cols, const std::uint32_t* __restrict__ rows,
                                   std::uint64_t n_rows, T* __restrict__ dst) {
    const std::uint64_t n = n_rows * n_cols;
    for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
         i += std::uint64_t{gridDim.x} * blockDim.x) {
        const std::uint64_t r = i / n_cols, c = i - r * n_cols;
        dst[i] = src[std::uint64_t{rows[r]} * n_cols + c];
    }
}

template <class T>
void gather(const T* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows, T* dst,
            cudaStream_t stream) {
    const std::size_t n = n_rows * n_cols;
    if (n == 0) return;
    gather_rows_kernel<T><<<grid_size(n, kThreads), kThreads, 0, stream>>>(src, n_cols, rows, n_rows, dst);
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace

void launch_gather_rows(const float* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows,
                        float* dst, cudaStream_t stream) {
    gather(src, n_cols, rows, n_rows, dst, stream);
}

void launch_gather_rows(const std::int32_t* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows,
                        std::int32_t* dst, cudaStream_t stream) {
    gather(src, n_cols, rows, n_rows, dst, stream);
}

}  // namespace cuda
}  // namespace sparseprox
