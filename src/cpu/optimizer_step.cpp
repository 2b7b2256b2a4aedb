// The optimizer steps on the CPU: one OpenMP loop per weight segment that reads w, g and the
// state, writes them and counts the nonzeros, then the biases.
#include "cpu/optimizer_step.h"

namespace sparseprox {
namespace cpu {

void prox_optimizer_step(float* params, const float* grads, const opt::State& st, const ParamLayout& layout, float lr,
                         const float* lambdas, const opt::Step& step, std::size_t* nnz) {
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
                const float v = opt::prox_descend_k<K>(params[i], grads[i], st, i, step, lr, lambda);
                params[i] = v;
                count += v != 0.0f;
            }
            nnz[l] = count;
            descend_range<K>(params, grads, st, s.bias_offset, s.n_bias, step, lr, false);
        }
    });
}

void masked_optimizer_step(float* w, const float* grads, const std::uint8_t* mask, const opt::State& st,
                           const ParamLayout& layout, float lr, const opt::Step& step, std::size_t* nnz) {
    opt::dispatch(step.kind, [&](auto kind) {
        constexpr std::int32_t K = decltype(kind)::value;
        for (std::size_t l = 0; l < layout.segments.size(); ++l) {
            const ParamSegment& s = layout.segments[l];
            const std::size_t off = s.weight_offset;
            std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (s.n_weights >= kParallelMin)
            for (idx k = 0; k < static_cast<idx>(s.n_weights); ++k) {
                const std::size_t i = off + static_cast<std::size_t>(k);
                float v = 0.0f, eta;
                if (mask[i]) v = opt::descend_k<K>(w[i], grads[i], st, i, step, lr, true, &eta);
                else opt::clear(st, i);
                w[i] = v;
                count += v != 0.0f;
            }
            nnz[l] = count;
            descend_range<K>(w, grads, st, s.bias_offset, s.n_bias, step, lr, false);
        }
    });
}

}  // namespace cpu
}  // namespace sparseprox
