// The proximal l1 step on the CPU: one OpenMP loop per weight segment that reads w and g, writes
// w and counts the nonzeros (12 bytes per weight), by blocks so the count vectorizes
// (cpu/parallel.h), then the biases.
#include "cpu/prox_step.h"

#include <algorithm>
#include <cstdint>

#include "core/elementwise.h"
#include "cpu/count.h"
#include "cpu/parallel.h"

namespace sparseprox {
namespace cpu {

void prox_step(float* params, const float* grads, const ParamLayout& layout, float lr, const float* lambdas,
               std::size_t* nnz) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        const float tau = lr * lambdas[l];
        float* w = params + s.weight_offset;
        const float* g = grads + s.weight_offset;
        const idx n = static_cast<idx>(s.n_weights), n_blocks = (n + kBlock - 1) / kBlock;
        std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (s.n_weights >= kParallelMin)
        for (idx blk = 0; blk < n_blocks; ++blk) {
            const idx lo = blk * static_cast<idx>(kBlock), hi = std::min(n, lo + static_cast<idx>(kBlock));
            std::uint32_t block_count = 0;
            for (idx i = lo; i < hi; ++i) {
                const float v = ew::prox_sgd(w[i], g[i], lr, tau);
                w[i] = v;
                block_count += v != 0.0f;
            }
            count += block_count;
        }
        nnz[l] = count;
        float* b = params + s.bias_offset;
        const float* gb = grads + s.bias_offset;
        for (std::size_t i = 0; i < s.n_bias; ++i) b[i] = ew::sgd(b[i], gb[i], lr);
    }
}

void prox_step_unfused(float* params, const float* grads, const ParamLayout& layout, float lr,
                       const float* lambdas, std::size_t* nnz) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        const float tau = lr * lambdas[l];
        float* w = params + s.weight_offset;
        const float* g = grads + s.weight_offset;
#pragma omp parallel for schedule(static) if (s.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(s.n_weights); ++i) w[i] = ew::sgd(w[i], g[i], lr);
#pragma omp parallel for schedule(static) if (s.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(s.n_weights); ++i) w[i] = ew::soft_threshold(w[i], tau);
        nnz[l] = count_nonzero(w, s.n_weights);
        float* b = params + s.bias_offset;
        const float* gb = grads + s.bias_offset;
        for (std::size_t i = 0; i < s.n_bias; ++i) b[i] = ew::sgd(b[i], gb[i], lr);
    }
}

}  // namespace cpu
}  // namespace sparseprox
