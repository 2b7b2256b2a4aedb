// The dense layer on the CPU (OpenBLAS sgemm), the oracle of kernels/dense.cu. Matrices are
// row-major; a batch of activations is (batch, features). Gradients are overwritten.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

// y = act(x W^T + b).  x (batch, n_in), W (n_out, n_in), b (n_out), y (batch, n_out). The
// activation is applied to each output block right after its product (cpu/gemm.h): the same
// values as activation_forward over y afterwards, without that pass over memory.
void dense_forward(const float* x, const float* W, const float* b, float* y, std::size_t batch,
                   std::size_t n_in, std::size_t n_out, Activation act = Activation::identity);

// dL_dW = dL_dy^T x, dL_db = column sums of dL_dy, dL_dx = dL_dy W (skipped when null). With an
// activation act, dL_dx is that times act'(act_x) (act_y = act(act_x); both (batch, n_in)): the
// gradient through the activation before this layer, in the product's pass, with the values of
// activation_backward over dL_dy W.
void dense_backward(const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db,
                    float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out,
                    Activation act = Activation::identity, const float* act_x = nullptr,
                    const float* act_y = nullptr);

// dL_db = the column sums of dL_dy (batch, n_out), rows in order: part `part` of `parts` equal
// shares of its 16-column blocks (dense_backward runs them beside its weight-gradient blocks).
void bias_column_sums(const float* dL_dy, std::size_t batch, std::size_t n_out, float* dL_db, std::size_t part,
                      std::size_t parts);

}  // namespace cpu
}  // namespace sparseprox
