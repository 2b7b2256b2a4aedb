// The lambda search's candidates on the CPU (docs/method.md §4), the oracle of kernels/candidates.cu.
#pragma once

#include <cstddef>
#include <vector>

#include "sparseprox/model.h"
#include "core/search_rules.h"
#include "sparseprox/search.h"

namespace sparseprox {
namespace cpu {

// candidate_set (search.h) over |g| of the weight gradients of the given layers of a gradient
// slab, taken together.
CandidateSet gradient_candidates(const float* grads, const ParamLayout& layout, const std::vector<std::size_t>& layers,
                                 float low, float up);

}  // namespace cpu
}  // namespace sparseprox
