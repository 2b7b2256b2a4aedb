// Nonzero counts on the CPU: an OpenMP reduction per weight segment (integers: exact).
#include "cpu/count.h"

#include <algorithm>
#include <cstdint>

#include "cpu/parallel.h"

namespace sparseprox {
namespace cpu {

std::size_t count_nonzero(const float* x, std::size_t n) {
    const idx n_elems = static_cast<idx>(n), n_blocks = (n_elems + kBlock - 1) / kBlock;
    std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (n >= kParallelMin)
    for (idx blk = 0; blk < n_blocks; ++blk) {
        const idx lo = blk * static_cast<idx>(kBlock), hi = std::min(n_elems, lo + static_cast<idx>(kBlock));
        std::uint32_t block_count = 0;  // by blocks so the count vectorizes (cpu/parallel.h)
        for (idx i = lo; i < hi; ++i) block_count += x[i] != 0.0f;
        count += block_count;
    }
    return count;
}

void count_layers(const float* params, const ParamLayout& layout, std::size_t* nnz) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l)
        nnz[l] = count_nonzero(params + layout.segments[l].weight_offset, layout.segments[l].n_weights);
}

}  // namespace cpu
}  // namespace sparseprox
