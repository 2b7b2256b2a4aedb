// Compressed sparse row matrices for the csr inference format (core/csr_network.h): the host
// arrays a weight layer is converted to once, and the opaque matrix a backend builds from them
// (Backend::csr_matrix) and multiplies by (Backend::csr_forward).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sparseprox {

// A (rows, cols) matrix in CSR form, in host memory: row r holds the entries
// [row_offsets[r], row_offsets[r + 1]) of col_indices and values, columns ascending. 32-bit
// indices, as cuSPARSE's CUSPARSE_INDEX_32I and Eigen's default storage index take them.
struct CsrHost {
    std::size_t rows = 0, cols = 0;
    std::vector<std::int32_t> row_offsets;  // (rows + 1)
    std::vector<std::int32_t> col_indices;  // (nnz)
    std::vector<float> values;              // (nnz)

    std::size_t nnz() const { return values.size(); }
};

// The (rows, cols) row-major array w as CSR, exact zeros (and negative zeros) dropped. Throws
// sparseprox::Error, naming `what` and the size, when rows, cols or the nonzeros exceed 32-bit
// indices.
CsrHost csr_from_dense(const float* w, std::size_t rows, std::size_t cols, const char* what);

// A CSR matrix in one backend's memory, ready for products with batches of up to max_batch rows
// (its workspaces sized for them). Only the backend that built it can use it; it must be
// destroyed before that backend.
class CsrMatrix {
public:
    virtual ~CsrMatrix() = default;
    CsrMatrix(const CsrMatrix&) = delete;
    CsrMatrix& operator=(const CsrMatrix&) = delete;

    std::size_t rows() const { return rows_; }
    std::size_t cols() const { return cols_; }
    std::size_t nnz() const { return nnz_; }
    std::size_t max_batch() const { return max_batch_; }

protected:
    CsrMatrix(std::size_t rows, std::size_t cols, std::size_t nnz, std::size_t max_batch)
        : rows_(rows), cols_(cols), nnz_(nnz), max_batch_(max_batch) {}

private:
    std::size_t rows_, cols_, nnz_, max_batch_;
};

}  // namespace sparseprox
