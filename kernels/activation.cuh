// Launchers of the element-wise activation kernels (kernels/activation.cu).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "sparseprox/model.h"

namespace sparseprox {
namespace cuda {

// y = f(x) over n elements.
void launch_activation_forward(Activation a, const float* x, float* y, std::size_t n, cudaStream_t stream);
// dL_dx = dL_dy * f'(x) (given y = f(x)); dL_dx may alias dL_dy.
void launch_activation_backward(Activation a, const float* x, const float* y, const float* dL_dy, float* dL_dx,
                                std::size_t n, cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
