// Nonzero counts on the CPU, the oracle of kernels/count.cu.
#pragma once

#include <cstddef>

#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

// Nonzero count of n floats.
std::size_t count_nonzero(const float* x, std::size_t n);
// nnz[l] = nonzero weights of layer l of a parameter slab.
void count_layers(const float* params, const ParamLayout& layout, std::size_t* nnz);

}  // namespace cpu
}  // namespace sparseprox
