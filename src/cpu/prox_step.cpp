// The proximal l1 step on the CPU: one OpenMP region over every weight segment that reads w and
// g, writes w and counts the nonzeros (12 bytes per weight), by blocks so the count vectorizes
// (cpu/parallel.h), and the biases.
#include "cpu/prox_step.h"

#include <algorithm>
#include <cstdint>

#include "core/elementwise.h"
#include "cpu/count.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace sparseprox {
namespace cpu {

namespace {

// One block of a segment: w = prox(w - lr g), its nonzeros counted in a 32-bit counter.
__attribute__((always_inline)) inline std::uint32_t prox_block_body(float* w, const float* g, idx n, float lr,
                                                                    float tau) {
    std::uint32_t count = 0;
    for (idx i = 0; i < n; ++i) {
        const float v = ew::prox_sgd(w[i], g[i], lr, tau);
        w[i] = v;
        count += v != 0.0f;
    }
    return count;
}

std::uint32_t prox_block_sse(float* w, const float* g, idx n, float lr, float tau) {
    return prox_block_body(w, g, n, lr, tau);
}

// The same operations at 8 floats a vector (no contraction: -ffp-contract=off), so the same bits.
__attribute__((target("avx2,fma"))) std::uint32_t prox_block_avx2(float* w, const float* g, idx n, float lr,
                                                                  float tau) {
    return prox_block_body(w, g, n, lr, tau);
}

}  // namespace

void prox_step(float* params, const float* grads, const ParamLayout& layout, float lr, const float* lambdas,
               std::size_t* nnz) {
    // One parallel region for every segment (a region per segment cost a fork each, and left the
    // small layers to one thread): each thread takes its share of every segment's blocks without
    // waiting between the segments, adds its counts to the segment's, and the biases are shared
    // out the same way. The counts are whole numbers, so their order of addition does not
    // matter.
    const std::size_t n_segments = layout.segments.size();
    std::size_t total = 0;
    for (std::size_t l = 0; l < n_segments; ++l) {
        nnz[l] = 0;
        total += layout.segments[l].n_weights;
    }
    const bool avx2 = cpu_has_avx2_fma();
#pragma omp parallel if (total >= kParallelMin)
    {
        for (std::size_t l = 0; l < n_segments; ++l) {
            const ParamSegment& s = layout.segments[l];
            const float tau = lr * lambdas[l];
            float* w = params + s.weight_offset;
            const float* g = grads + s.weight_offset;
            const idx n = static_cast<idx>(s.n_weights), n_blocks = (n + kBlock - 1) / kBlock;
            std::size_t count = 0;
#pragma omp for schedule(static) nowait
            for (idx blk = 0; blk < n_blocks; ++blk) {
                const idx lo = blk * static_cast<idx>(kBlock), hi = std::min(n, lo + static_cast<idx>(kBlock));
                count += avx2 ? prox_block_avx2(w + lo, g + lo, hi - lo, lr, tau)
                              : prox_block_sse(w + lo, g + lo, hi - lo, lr, tau);
            }
            if (count != 0) {
#pragma omp atomic
                nnz[l] += count;
            }
            float* b = params + s.bias_offset;
            const float* gb = grads + s.bias_offset;
#pragma omp for schedule(static) nowait
            for (idx i = 0; i < static_cast<idx>(s.n_bias); ++i) b[i] = ew::sgd(b[i], gb[i], lr);
        }
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
