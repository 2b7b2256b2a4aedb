// The lazy l1 step on the CPU: one OpenMP loop per weight segment that reads z, g (and the
// optimizer's state), writes z and w and counts the nonzeros (16 bytes per weight with sgd:
// read z and g, write z and w), then the biases.
#include "cpu/lazy_prox_step.h"

#include "cpu/optimizer_step.h"
#include "cpu/parallel.h"

namespace sparseprox {
namespace cpu {

void lazy_prox_step(float* params, float* z, const float* grads, const opt::State& st, const ParamLayout& layout,
                    float lr, const float* lambdas, const opt::Step& step, std::size_t* nnz) {
    opt::dispatch(step.kind, [&](auto kind) {
        constexpr std::int32_t K = decltype(kind)::value;
        for (std::size_t l = 0; l < layout.segments.size(); ++l) {
            const ParamSegment& s = layout.segments[l];
            const float lambda = lambdas[l];
            const std::size_t off = s.weight_offset;
            std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (s.n_weights >= kParallelMin)
            for (idx k = 0; k < static_cast<idx>(s.n_weights); ++k) {
                const std::size_t i = off + static_cast<std::size_t>(k);
                const float v = opt::lazy_prox_descend_k<K>(z, grads[i], st, i, step, lr, lambda);
                params[i] = v;
                count += v != 0.0f;
            }
            nnz[l] = count;
            descend_range<K>(params, grads, st, s.bias_offset, s.n_bias, step, lr, false);
        }
    });
}

}  // namespace cpu
}  // namespace sparseprox
