// The CPU operations of gradual magnitude pruning (Zhu & Gupta 2017; docs/method.md §7).
#include "cpu/gmp.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/elementwise.h"
#include "cpu/parallel.h"
#include "cpu/slab.h"

namespace sparseprox {
namespace cpu {

void masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const ParamLayout& layout, float lr,
                std::size_t* nnz) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        float* p = w + s.weight_offset;
        const float* g = grads + s.weight_offset;
        const std::uint8_t* m = mask + s.weight_offset;
        std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (s.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(s.n_weights); ++i) {
            const float v = m[i] ? ew::sgd(p[i], g[i], lr) : 0.0f;
            p[i] = v;
            count += v != 0.0f;
        }
        nnz[l] = count;
        sgd_biases(w, grads, s, lr);
    }
}

void gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout, const std::vector<std::size_t>& keep) {
    auto prune = [&](const std::vector<std::size_t>& layers, std::size_t k) {
        std::vector<std::uint64_t> order;
        for (std::size_t l : layers) {
            const ParamSegment& s = layout.segments[l];
            for (std::size_t i = 0; i < s.n_weights; ++i) order.push_back(s.weight_offset + i);
        }
        k = std::min(k, order.size());
        // Larger |w| first; among equal magnitudes the lower slab index first.
        auto before = [w](std::uint64_t a, std::uint64_t b) {
            const float x = std::fabs(w[a]), y = std::fabs(w[b]);
            return x > y || (x == y && a < b);
        };
        if (k < order.size()) std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(), before);
        for (std::size_t j = 0; j < order.size(); ++j) {
            const bool kept = j < k;
            mask[order[j]] = kept ? 1 : 0;
            if (!kept) w[order[j]] = 0.0f;
        }
    };
    if (keep.size() == 1 && layout.segments.size() != 1) {
        std::vector<std::size_t> all(layout.segments.size());
        std::iota(all.begin(), all.end(), std::size_t{0});
        prune(all, keep[0]);
    } else {
        for (std::size_t l = 0; l < keep.size() && l < layout.segments.size(); ++l) prune({l}, keep[l]);
    }
}

}  // namespace cpu
}  // namespace sparseprox
