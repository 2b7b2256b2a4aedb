// The optimizer steps of core/optimizer.h on the CPU, the oracle of kernels/optimizer_step.cu:
// bitwise the same results (no FMA contraction on either side). The l0 and spred updates
// (cpu/l0_gates.cpp, cpu/spred.cpp) take their optimizer through descend_range and dispatch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/optimizer.h"
#include "cpu/parallel.h"
#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

// p[i] = opt::descend_k<K>(p[i], g[i], ...) for the slab indices i in [first, first + n).
template <std::int32_t K>
void descend_range(float* p, const float* g, const opt::State& st, std::size_t first, std::size_t n,
                   const opt::Step& s, float lr, bool weight) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (idx k = 0; k < static_cast<idx>(n); ++k) {
        const std::size_t i = first + static_cast<std::size_t>(k);
        float eta;
        p[i] = opt::descend_k<K>(p[i], g[i], st, i, s, lr, weight, &eta);
    }
}

// The slab loop of the optimizer steps: for every weight segment l, params[i] = weight(l, i) for
// each of its weight indices i, counted into nnz[l], then its biases by descend_range<K>.
template <std::int32_t K, class F>
void counted_step(float* params, const float* grads, const opt::State& st, const ParamLayout& layout,
                  const opt::Step& step, float lr, std::size_t* nnz, F&& weight) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        const std::size_t off = s.weight_offset;
        std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (s.n_weights >= kParallelMin)
        for (idx k = 0; k < static_cast<idx>(s.n_weights); ++k) {
            const std::size_t i = off + static_cast<std::size_t>(k);
            const float v = weight(l, i);
            params[i] = v;
            count += v != 0.0f;
        }
        nnz[l] = count;
        descend_range<K>(params, grads, st, s.bias_offset, s.n_bias, step, lr, false);
    }
}

// The l1 step with the optimizer: weights S_{eta lambda_l}(y), biases y; nnz[l] afterwards.
void prox_optimizer_step(float* params, const float* grads, const opt::State& state, const ParamLayout& layout,
                         float lr, const float* lambdas, const opt::Step& step, std::size_t* nnz);

// gmp and fine-tuning with the optimizer: kept weights y, pruned ones 0 (state cleared), biases y.
void masked_optimizer_step(float* w, const float* grads, const std::uint8_t* mask, const opt::State& state,
                           const ParamLayout& layout, float lr, const opt::Step& step, std::size_t* nnz);

}  // namespace cpu
}  // namespace sparseprox
