// The lambda search's candidates on the CPU: a gather of |g| strictly inside (low, up), then
// candidate_set's selection (nth_element) for the lower median.
#include "cpu/candidates.h"

#include <cmath>

namespace sparseprox {
namespace cpu {

CandidateSet gradient_candidates(const float* grads, const ParamLayout& layout, const std::vector<std::size_t>& layers,
                                 float low, float up) {
    std::vector<float> inside;
    for (std::size_t l : layers) {
        const ParamSegment& s = layout.segments.at(l);
        const float* g = grads + s.weight_offset;
        for (std::size_t i = 0; i < s.n_weights; ++i) {
            const float a = std::fabs(g[i]);
            if (a > low && a < up) inside.push_back(a);
        }
    }
    return candidate_set(inside.data(), inside.size(), low, up);
}

}  // namespace cpu
}  // namespace sparseprox
