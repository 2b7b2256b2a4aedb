#include "core/csr.h"

#include <limits>
#include <string>

#include "sparseprox/error.h"

namespace sparseprox {

CsrHost csr_from_dense(const float* w, std::size_t rows, std::size_t cols, const char* what) {
    constexpr auto kMaxIndex = static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
    if (rows > kMaxIndex || cols > kMaxIndex)
        throw Error(std::string(what) + ": a (" + std::to_string(rows) + ", " + std::to_string(cols) +
                    ") matrix exceeds the 32-bit indices of the csr format");
    CsrHost m;
    m.rows = rows;
    m.cols = cols;
    m.row_offsets.reserve(rows + 1);
    m.row_offsets.push_back(0);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) {
            const float v = w[r * cols + c];
            if (v == 0.0f) continue;
            if (m.values.size() == kMaxIndex)
                throw Error(std::string(what) + ": more than " + std::to_string(kMaxIndex) +
                            " nonzero weights exceed the 32-bit indices of the csr format");
            m.col_indices.push_back(static_cast<std::int32_t>(c));
            m.values.push_back(v);
        }
        m.row_offsets.push_back(static_cast<std::int32_t>(m.values.size()));
    }
    return m;
}

}  // namespace sparseprox
