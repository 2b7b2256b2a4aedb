// The dense layer on the device (kernels/dense.cu), twin of src/cpu/dense.cpp. Row-major
// matrices; every call queues its work on `stream` (the cuBLAS handle must be bound to it).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

#include "sparseprox/model.h"

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

// What a cuBLASLt epilogue applied to the product: nothing (no call was queued), the bias, or the
// bias and then a ReLU.
enum class Fused { none, bias, bias_relu };

// The forward y = act(x W^T + b) as one cuBLASLt product whose epilogue adds the bias and, for a
// ReLU, applies it (CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_RELU_BIAS), in place of
// dense_forward's bias pass before the product and the activation pass after it. FP32 compute as
// the cuBLAS path. Each (shape, epilogue, pointer alignments) gets a plan on first use: the
// descriptors and the algorithm of cuBLASLt's heuristic (a host query, never inside the step
// that replays), kept for the object's life.
class DenseEpilogues {
public:
    DenseEpilogues() = default;
    ~DenseEpilogues();
    DenseEpilogues(const DenseEpilogues&) = delete;
    DenseEpilogues& operator=(const DenseEpilogues&) = delete;

    // Queues the product on `stream` and returns what its epilogue applied (the caller applies
    // any other activation, e.g. tanh, after a Fused::bias). Fused::none, with nothing queued:
    // an empty dimension, a dimension over INT_MAX, or no cuBLASLt algorithm for the plan; the
    // caller then uses dense_forward. `workspace` (workspace_bytes) is only used in stream order.
    Fused forward(cublasLtHandle_t handle, const float* x, const float* W, const float* b, float* y,
                  std::size_t batch, std::size_t n_in, std::size_t n_out, Activation act, void* workspace,
                  std::size_t workspace_bytes, cudaStream_t stream);

private:
    struct Plan {
        cublasLtMatmulDesc_t op = nullptr;
        cublasLtMatrixLayout_t w = nullptr, x = nullptr, y = nullptr;
        cublasLtMatmulAlgo_t algo{};
        bool found = false;
    };
    // batch, n_in, n_out, epilogue, and the alignments (bytes: 4 to 256) of x, W, y and b.
    using Key = std::tuple<std::size_t, std::size_t, std::size_t, int, unsigned, unsigned, unsigned, unsigned>;
    Plan& plan(cublasLtHandle_t handle, const Key& key, const float* b, std::size_t workspace_bytes);

    std::map<Key, Plan> plans_;
};

}  // namespace cuda
}  // namespace sparseprox
