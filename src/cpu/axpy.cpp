// y += a x on the CPU through OpenBLAS's saxpy (in chunks of at most INT_MAX elements).
#include "cpu/axpy.h"

#include <cblas.h>

#include <algorithm>
#include <climits>

namespace sparseprox {
namespace cpu {

void axpy(float a, const float* x, float* y, std::size_t n) {
    constexpr std::size_t kChunk = static_cast<std::size_t>(INT_MAX);
    for (std::size_t first = 0; first < n; first += kChunk)
        cblas_saxpy(static_cast<int>(std::min(kChunk, n - first)), a, x + first, 1, y + first, 1);
}

void add_weight_decay(float* grads, const float* params, const ParamLayout& layout, float wd) {
    if (wd == 0.0f) return;
    for (const ParamSegment& s : layout.segments) axpy(wd, params + s.weight_offset, grads + s.weight_offset, s.n_weights);
}

}  // namespace cpu
}  // namespace sparseprox
