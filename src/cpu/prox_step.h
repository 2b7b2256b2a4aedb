// The proximal l1 step on the CPU over the shared formula of core/elementwise.h (docs/method.md
// §3), the oracle of kernels/prox_step.cu: bitwise the same results (no FMA contraction on
// either side).
#pragma once

#include <cstddef>

#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

// The step over a whole parameter slab: every weight segment gets S_{lr*lambda_l}(w - lr g),
// every bias plain SGD; nnz[l] receives the nonzero weights of layer l afterwards. lambdas has
// one entry per segment.
void prox_step(float* params, const float* grads, const ParamLayout& layout, float lr, const float* lambdas,
               std::size_t* nnz);

// The same step in separate passes per layer (SGD, then the threshold, then a count): the
// benchmark's reference for what the fused loop saves.
void prox_step_unfused(float* params, const float* grads, const ParamLayout& layout, float lr,
                       const float* lambdas, std::size_t* nnz);

}  // namespace cpu
}  // namespace sparseprox
