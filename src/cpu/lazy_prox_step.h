// The lazy l1 step (L1Form::lazy, docs/method.md §3.1) on the CPU, the oracle of
// kernels/lazy_prox_step.cu: bitwise the same results (no FMA contraction on either side).
#pragma once

#include <cstddef>

#include "core/optimizer.h"
#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

// Weights: z[i] <- y (the optimizer's step from z[i]), w[i] = S_{lr lambda_l}(y); biases: the
// optimizer's step on w itself; nnz[l] receives the nonzero weights of layer l afterwards. z has
// the slab layout (its bias entries are not read).
void lazy_prox_step(float* params, float* z, const float* grads, const opt::State& state, const ParamLayout& layout,
                    float lr, const float* lambdas, const opt::Step& step, std::size_t* nnz);

}  // namespace cpu
}  // namespace sparseprox
