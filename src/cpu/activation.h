// Element-wise activations on the CPU over the shared formulas of core/elementwise.h, the
// oracle of kernels/activation.cu.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

void activation_forward(Activation a, const float* x, float* y, std::size_t n);
// y = f(y) in place over a (rows, cols) block with row stride ld, on the calling thread alone:
// the epilogue of a GEMM block (cpu/gemm.h), applied while the block is in cache. With a bias,
// y = f(y + bias), the bias per column of the block, or per row when bias_rows is true (the
// epilogue when the bias follows the product).
void activation_block(Activation a, float* y, std::size_t ld, std::size_t rows, std::size_t cols,
                      const float* bias = nullptr, bool bias_rows = false);
// d = d * f'(x) in place over a (rows, cols) block, x, y = f(x) and d with the same row stride ld,
// on the calling thread alone: activation_backward's values, as a GEMM block's epilogue.
void activation_backward_block(Activation a, const float* x, const float* y, float* d, std::size_t ld,
                               std::size_t rows, std::size_t cols);
// dL_dx = dL_dy * f'(x) (given y = f(x) too). dL_dx may alias dL_dy.
void activation_backward(Activation a, const float* x, const float* y, const float* dL_dy,
                         float* dL_dx, std::size_t n);

}  // namespace cpu
}  // namespace sparseprox
