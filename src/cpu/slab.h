// Bias ranges of a parameter slab, shared by the CPU operations of the sparsifiers.
#pragma once

#include <algorithm>

#include "core/elementwise.h"
#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

// Plain SGD on one layer's biases.
inline void sgd_biases(float* params, const float* grads, const ParamSegment& s, float lr) {
    for (std::size_t i = 0; i < s.n_bias; ++i)
        params[s.bias_offset + i] = ew::sgd(params[s.bias_offset + i], grads[s.bias_offset + i], lr);
}

// Every layer's biases copied from one slab to another.
inline void copy_biases(const float* from, const ParamLayout& layout, float* to) {
    for (const ParamSegment& s : layout.segments) std::copy_n(from + s.bias_offset, s.n_bias, to + s.bias_offset);
}

}  // namespace cpu
}  // namespace sparseprox
