// The CPU operations of spred, w = u (.) v with weight decay on the factors (docs/method.md §7).
#include "cpu/spred.h"

#include "core/elementwise.h"
#include "cpu/optimizer_step.h"
#include "cpu/parallel.h"
#include "cpu/slab.h"

namespace sparseprox {
namespace cpu {

void spred_split(const float* w, const ParamLayout& layout, float* u, float* v) {
    for (const ParamSegment& s : layout.segments) {
        for (std::size_t i = 0; i < s.n_weights; ++i) {
            u[s.weight_offset + i] = sparsify::spred_split_u(w[s.weight_offset + i]);
            v[s.weight_offset + i] = sparsify::spred_split_v(w[s.weight_offset + i]);
        }
    }
    copy_biases(w, layout, u);
}

void spred_effective(const float* u, const float* v, const ParamLayout& layout, float* eff) {
    for (const ParamSegment& s : layout.segments) {
        const float* a = u + s.weight_offset;
        const float* b = v + s.weight_offset;
        float* e = eff + s.weight_offset;
#pragma omp parallel for schedule(static) if (s.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(s.n_weights); ++i) e[i] = a[i] * b[i];
    }
    copy_biases(u, layout, eff);
}

void spred_update(float* u, float* v, const float* grads, const ParamLayout& layout, float lr, const float* lambdas,
                  const opt::State& u_state, const opt::State& v_state, const opt::Step& opt_step) {
    opt::dispatch(opt_step.kind, [&](auto kind) {
        constexpr std::int32_t K = decltype(kind)::value;
        for (std::size_t l = 0; l < layout.segments.size(); ++l) {
            const ParamSegment& s = layout.segments[l];
            const float lambda = lambdas[l];
            const std::size_t off = s.weight_offset;
#pragma omp parallel for schedule(static) if (s.n_weights >= kParallelMin)
            for (idx k = 0; k < static_cast<idx>(s.n_weights); ++k) {
                const std::size_t i = off + static_cast<std::size_t>(k);
                sparsify::spred_descend_k<K>(u[i], v[i], grads[i], lambda, u_state, v_state, i, opt_step, lr);
            }
            descend_range<K>(u, grads, u_state, s.bias_offset, s.n_bias, opt_step, lr, false);
        }
    });
}

void spred_export(const float* u, const float* v, const ParamLayout& layout, float threshold, float* out,
                  std::size_t* nnz) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        std::size_t count = 0;
        for (std::size_t i = 0; i < s.n_weights; ++i) {
            const float w = sparsify::spred_readout(u[s.weight_offset + i], v[s.weight_offset + i], threshold);
            out[s.weight_offset + i] = w;
            count += w != 0.0f;
        }
        nnz[l] = count;
    }
    copy_biases(u, layout, out);
}

}  // namespace cpu
}  // namespace sparseprox
