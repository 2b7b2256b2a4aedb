// The dense layer on the device (kernels/dense.cu), twin of src/cpu/dense.cpp. Row-major
// matrices; every call queues its work on `stream` (the cuBLAS handle must be bound to it).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>

namespace sparseprox {
namespace cuda {

// y[r][j] = b[j] for every row r: y (batch, n_out), b (n_out). The GEMM then adds x W^T with
// beta = 1, as cpu::dense_forward does.
void launch_broadcast_bias(const float* b, float* y, std::size_t batch, std::size_t n_out, cudaStream_t stream);

// dL_db[j] = sum over rows r of dL_dy[r][j], rows added in order: bit-identical to
// cpu::dense_backward's column sums. dL_dy (batch, n_out), dL_db (n_out).
void launch_bias_grad(const float* dL_dy, float* dL_db, std::size_t batch, std::size_t n_out, cudaStream_t stream);

// y = x W^T + b.  x (batch, n_in), W (n_out, n_in), b (n_out), y (batch, n_out).
void dense_forward(cublasHandle_t handle, const float* x, const float* W, const float* b, float* y, std::size_t batch,
                   std::size_t n_in, std::size_t n_out, cudaStream_t stream);
// dL_dW = dL_dy^T x, dL_db = column sums of dL_dy (rows in order), dL_dx = dL_dy W (skipped when
// null). All overwritten.
void dense_backward(cublasHandle_t handle, const float* x, const float* W, const float* dL_dy, float* dL_dW,
                    float* dL_db, float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out,
                    cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
