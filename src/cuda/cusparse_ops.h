// cuSPARSE twins of cpu/csr_ops.h: the same names and formulas on device pointers, with the
// context first. All cuSPARSE code lives in cusparse_ops.cpp; this header is plain C++ and never
// includes cusparse.h (the handle is an opaque Cusparse object, as cuDNN's is in cudnn_ops.h).
//
// The product: y (batch, rows) row-major is Y^T (rows, batch) column-major with leading
// dimension rows, and x (batch, cols) row-major is X^T (cols, batch) column-major, so
// Y^T = b + W X^T is one cusparseSpMM with W (CSR, 32-bit indices, not transposed), B = X^T and
// C = Y^T both column-major: no transposes. One row (batch 1) goes through cusparseSpMV. The
// bias comes first, written by the dense layer's broadcast kernel (kernels/dense.cuh), and the
// product is added to it with beta = 1, as the CPU twin adds it.
//
// Precision: CUDA_R_32F compute type (FP32 multiply-adds); only the summation order differs from
// the CPU's Eigen product. cuSPARSE documents run-to-run differences only for products with the
// sparse matrix transposed, which these never ask for.
//
// Workspace: each matrix owns one, sized by cusparseSpMM_bufferSize / cusparseSpMV_bufferSize
// on the first product of each batch size and grown only when a size needs more (after
// synchronizing the stream, since queued products may still use the old one): in a steady
// stream of passes, allocated once. Every function queues its work on ctx.stream().
#pragma once

#include <cstddef>
#include <memory>

#include "core/csr.h"
#include "cuda/context.h"

namespace sparseprox {
namespace cuda {

// The cuSPARSE state of one CudaContext (created by CudaContext::cusparse()): the handle, bound
// to the context's stream. Neither copyable nor movable; destroying it never throws.
class Cusparse {
public:
    // Creates the handle on the current device and binds it to `stream`. Throws
    // sparseprox::Error naming the failing call.
    explicit Cusparse(cudaStream_t stream);
    ~Cusparse();
    Cusparse(const Cusparse&) = delete;
    Cusparse& operator=(const Cusparse&) = delete;

    struct Impl;  // the cuSPARSE-typed state, defined in cusparse_ops.cpp
    Impl& impl() { return *impl_; }

private:
    std::unique_ptr<Impl> impl_;
};

// W's arrays copied to the device and described to cuSPARSE (cusparseCreateConstCsr).
std::unique_ptr<CsrMatrix> csr_matrix(CudaContext& ctx, const CsrHost& W, std::size_t max_batch);

// y = x W^T + b: x (batch, cols), b (rows), y (batch, rows); W from csr_matrix on this context.
void csr_forward(CudaContext& ctx, const CsrMatrix& W, const float* x, const float* b, float* y, std::size_t batch);

}  // namespace cuda
}  // namespace sparseprox
