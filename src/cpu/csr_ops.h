// The CPU's csr products (core/backend.h, csr_matrix .. csr_conv2d_forward), the oracle of the
// cuSPARSE twins (cuda/cusparse_ops.h): Eigen's row-major sparse matrix times a dense block whose
// rows are the contiguous dimension, so each nonzero w_ij costs one axpy over a row of the
// right-hand side. Eigen stays inside csr_ops.cpp.
#pragma once

#include <cstddef>
#include <memory>

#include "core/csr.h"
#include "core/layer_shapes.h"

namespace sparseprox {
namespace cpu {

// W as Eigen's compressed row-major matrix (its arrays copied).
std::unique_ptr<CsrMatrix> csr_matrix(const CsrHost& W, std::size_t max_batch);

// Floats of scratch csr_forward needs for a batch: the transposes of its input and output
// (batch * (cols + rows)), none for one row.
std::size_t csr_forward_workspace_floats(const CsrMatrix& W, std::size_t batch);
// y = x W^T + b as y^T (rows, batch) = b + W x^T (cols, batch): x (batch, cols), y (batch, rows).
// One row is a sparse matrix x vector product. W from csr_matrix; workspace:
// csr_forward_workspace_floats(W, batch).
void csr_forward(const CsrMatrix& W, const float* x, const float* b, float* y, std::size_t batch, float* workspace);

// y_n (c_out, h_out*w_out) = b + W col_n per sample, col_n the im2col matrix of x_n
// (cpu/conv_ops.h, conv2d_im2col). W (c_out, c_in*kh*kw) from csr_matrix; workspace:
// conv2d_workspace_floats(s).
void csr_conv2d_forward(const ConvShape& s, const CsrMatrix& W, const float* x, const float* b, float* y,
                        float* workspace);

}  // namespace cpu
}  // namespace sparseprox
