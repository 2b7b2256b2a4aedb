// The CPU operations of gradual magnitude pruning (Zhu & Gupta 2017; docs/method.md §7),
// the oracle of kernels/gmp.cu. Slabs are laid out by ParamLayout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/sparsify.h"

namespace sparseprox {
namespace cpu {

// SGD on the kept weights; pruned weights stay exact zeros; biases plain SGD. nnz per layer after.
void masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const ParamLayout& layout, float lr,
                std::size_t* nnz);

// Keeps the keep[k] largest |w| of each scope (one scope over all weight layers when keep has
// one entry, else one per layer) and zeroes the rest, in w and in mask. Ties go to the lower slab
// index, so the kept set is unique.
void gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout, const std::vector<std::size_t>& keep);

}  // namespace cpu
}  // namespace sparseprox
