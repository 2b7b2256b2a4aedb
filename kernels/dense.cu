// Helper kernels of a dense layer y = x W^T + b (the GEMMs are cuBLAS):
//   broadcast_bias: y[r][j] = b[j]        4 bytes written per element (+ b, cached)
//   bias_grad:      dL_db[j] = sum_r dL_dy[r][j]   4 bytes read per element
// bias_grad gives one thread per column and adds the rows in order, exactly like the CPU twin,
// so the bias gradient is bit-identical across backends. A column sum is then a chain of
// `batch` dependent adds (batch 128: well under a microsecond; a 4096-row evaluation chunk a
// few microseconds), with eight loads issued ahead of their adds to hide the memory latency.
#include "kernels/dense.cuh"

#include <cstdint>

#include "cuda/common.h"

namespace sparseprox {
namespace cuda {

namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kBiasGradThreads = 128;
constexpr std::uint64_t kRowsAhead = 8;

__global__ void broadcast_bias_kernel(const float* __restrict__ b, float* __restrict__ y, std::uint64_t batch,
                                      std::uint64_t n_out) {
    const std::uint64_t n = batch * n_out;
    for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
         i += std::uint64_t{gridDim.x} * blockDim.x)
        y[i] = b[i % n_out];
}

__global__ void bias_grad_kernel(const float* __restrict__ dL_dy, float* __restrict__ dL_db, std::uint64_t batch,
                                 std::uint64_t n_out, bool accumulate) {
    const std::uint64_t j = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x;
    if (j >= n_out) return;
    const float* col = dL_dy + j;
    float sum = 0.0f;
    std::uint64_t r = 0;
    for (; r + kRowsAhead <= batch; r += kRowsAhead) {
        float v[kRowsAhead];
#pragma unroll
        for (std::uint64_t k = 0; k < kRowsAhead; ++k) v[k] = col[(r + k) * n_out];
#pragma unroll
        for (std::uint64_t k = 0; k < kRowsAhead; ++k) sum += v[k];
    }
    for (; r < batch; ++r) sum += col[r * n_out];
    dL_db[j] = accumulate ? dL_db[j] + sum : sum;
}

}  // namespace

void launch_broadcast_bias(const float* b, float* y, std::size_t batch, std::size_t n_out, cudaStream_t stream) {
    const std::size_t n = batch * n_out;
    if (n == 0) return;
    broadcast_bias_kernel<<<grid_size(n, kThreads), kThreads, 0, stream>>>(b, y, batch, n_out);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_bias_grad(const float* dL_dy, float* dL_db, std::size_t batch, std::size_t n_out, bool accumulate,
                      cudaStream_t stream) {
    if (n_out == 0) return;
    const auto blocks = static_cast<unsigned>((n_out + kBiasGradThreads - 1) / kBiasGradThreads);
    bias_grad_kernel<<<blocks, kBiasGradThreads, 0, stream>>>(dL_dy, dL_db, batch, n_out, accumulate);
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
