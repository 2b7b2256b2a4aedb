// The CPU operations of spred, w = u (.) v with weight decay on the factors (docs/method.md §7).
#include "cpu/spred.h"

#include "core/elementwise.h"
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

void spred_update(float* u, float* v, const float* grads, const ParamLayout& layout, float lr, const float* lambdas) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        float* a = u + s.weight_offset;
        float* b = v + s.weight_offset;
        const float* g = grads + s.weight_offset;
        const float lambda = lambdas[l];
#pragma omp parallel for schedule(static) if (s.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(s.n_weights); ++i) sparsify::spred_step(a[i], b[i], g[i], lr, lambda);
        sgd_biases(u, grads, s, lr);
    }
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
