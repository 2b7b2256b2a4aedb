// The CPU operations of spred, w = u (.) v with weight decay on the factors (docs/method.md §7),
// the oracle of kernels/spred.cu. Slabs are laid out by ParamLayout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/sparsify.h"

namespace sparseprox {
namespace cpu {

// u and v from a slab w by the balanced split; biases go to u.
void spred_split(const float* w, const ParamLayout& layout, float* u, float* v);

void spred_effective(const float* u, const float* v, const ParamLayout& layout, float* eff);

void spred_update(float* u, float* v, const float* grads, const ParamLayout& layout, float lr, const float* lambdas,
                  const opt::State& u_state, const opt::State& v_state, const opt::Step& opt_step);

void spred_export(const float* u, const float* v, const ParamLayout& layout, float threshold, float* out,
                  std::size_t* nnz);

}  // namespace cpu
}  // namespace sparseprox
