// Mini-batch rows gathered by the epoch order on the CPU: one row copy per sample.
#include "cpu/gather.h"

#include <algorithm>

namespace sparseprox {
namespace cpu {

void gather_rows(const float* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows, float* dst) {
    // Short rows (Mackey-Glass: 6 features and 1 target) are copied in place: a call to memmove
    // per row cost 1% of a full-batch step.
    if (n_cols <= 16) {
        for (std::size_t r = 0; r < n_rows; ++r) {
            const float* s = src + std::size_t{rows[r]} * n_cols;
            float* d = dst + r * n_cols;
            for (std::size_t i = 0; i < n_cols; ++i) d[i] = s[i];
        }
        return;
    }
    for (std::size_t r = 0; r < n_rows; ++r) std::copy_n(src + std::size_t{rows[r]} * n_cols, n_cols, dst + r * n_cols);
}

void gather_labels(const std::int32_t* src, const std::uint32_t* rows, std::size_t n_rows, std::int32_t* dst) {
    for (std::size_t r = 0; r < n_rows; ++r) dst[r] = src[rows[r]];
}

}  // namespace cpu
}  // namespace sparseprox
