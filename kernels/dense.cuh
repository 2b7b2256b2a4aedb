// Launchers of the dense-layer helper kernels (kernels/dense.cu); the GEMMs are cuBLAS calls in
// src/cuda/ops.cpp. Row-major matrices, as the CPU twins.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace sparseprox {
namespace cuda {

// y[r][j] = b[j] for every row r: y (batch, n_out), b (n_out). The GEMM then adds x W^T with
// beta = 1, as cpu::dense_forward does.
void launch_broadcast_bias(const float* b, float* y, std::size_t batch, std::size_t n_out, cudaStream_t stream);

// dL_db[j] = (accumulate ? dL_db[j] : 0) + sum over rows r of dL_dy[r][j], rows added in order:
// bit-identical to cpu::dense_backward's column sums. dL_dy (batch, n_out), dL_db (n_out).
void launch_bias_grad(const float* dL_dy, float* dL_db, std::size_t batch, std::size_t n_out, bool accumulate,
                      cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
