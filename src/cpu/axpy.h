// y += a x on the CPU (OpenBLAS saxpy), the twin of kernels/axpy.cu (cuBLAS saxpy): the l2
// weight decay (g += wd w on the weights) and the chunks of the full-data gradient.
#pragma once

#include <cstddef>

#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

void axpy(float a, const float* x, float* y, std::size_t n);
// grads += wd * params over every weight segment (biases untouched).
void add_weight_decay(float* grads, const float* params, const ParamLayout& layout, float wd);

}  // namespace cpu
}  // namespace sparseprox
