// Element-wise activations on the CPU: OpenMP loops over core/elementwise.h.
#include "cpu/activation.h"

#include "core/elementwise.h"
#include "cpu/parallel.h"

namespace sparseprox {
namespace cpu {

void activation_forward(Activation a, const float* x, float* y, std::size_t n) {
    const int kind = static_cast<int>(a);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (idx i = 0; i < static_cast<idx>(n); ++i) y[i] = ew::act_forward(kind, x[i]);
}

void activation_backward(Activation a, const float* x, const float* y, const float* dL_dy, float* dL_dx,
                         std::size_t n) {
    const int kind = static_cast<int>(a);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (idx i = 0; i < static_cast<idx>(n); ++i) dL_dx[i] = dL_dy[i] * ew::act_derivative(kind, x[i], y[i]);
}

}  // namespace cpu
}  // namespace sparseprox
