// Nonzero counts on the CPU: an OpenMP reduction per weight segment (integers: exact).
#include "cpu/count.h"

#include "cpu/parallel.h"

namespace sparseprox {
namespace cpu {

std::size_t count_nonzero(const float* x, std::size_t n) {
    std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (n >= kParallelMin)
    for (idx i = 0; i < static_cast<idx>(n); ++i) count += x[i] != 0.0f;
    return count;
}

void count_layers(const float* params, const ParamLayout& layout, std::size_t* nnz) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l)
        nnz[l] = count_nonzero(params + layout.segments[l].weight_offset, layout.segments[l].n_weights);
}

}  // namespace cpu
}  // namespace sparseprox
