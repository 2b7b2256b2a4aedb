// The CPU's csr products. A dense layer computes y^T (rows, batch) = b + W (rows, cols, CSR) x^T
// (cols, batch): with the batch as the contiguous dimension of the right-hand side, each nonzero
// w_ij costs one axpy over the batch (Eigen's row-major sparse x row-major dense kernel, split
// over rows with OpenMP when the matrix is large). The transposes in and out cost batch*(cols +
// rows) copies against nnz*batch multiply-adds: for lenet300100 at 5% (13,300 nonzeros, 1,184
// activations per sample) about 9%. A conv layer computes y_n (c_out, h_out*w_out) = b + W
// (c_out, c_in*kh*kw, CSR) col_n per sample, col_n the im2col matrix (row-major).
//
// Both start from the bias and add the product to it, as the cuSPARSE twin does (y = b, then
// SpMM with beta = 1).
//
// Eigen was measured against librsb (bench/csr_libraries.cpp; README, Benchmarks) on the
// lenet300100 shapes and kept: faster for one sample, within noise of librsb at batch 32 and
// 256 on the loaded 2-core machine, and header-only.
#include "cpu/csr_ops.h"

#include <string>

#include <Eigen/Core>
#include <Eigen/SparseCore>

#include "cpu/conv_ops.h"
#include "sparseprox/error.h"

namespace sparseprox {
namespace cpu {
namespace {

using SparseRows = Eigen::SparseMatrix<float, Eigen::RowMajor, int>;
using DenseRows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using DenseRowsMap = Eigen::Map<DenseRows>;
using ConstDenseRowsMap = Eigen::Map<const DenseRows>;

class CsrRows final : public CsrMatrix {
public:
    CsrRows(const CsrHost& W, std::size_t max_batch) : CsrMatrix(W.rows, W.cols, W.nnz(), max_batch) {
        const auto rows = static_cast<Eigen::Index>(W.rows), cols = static_cast<Eigen::Index>(W.cols);
        const auto nnz = static_cast<Eigen::Index>(W.nnz());
        m = Eigen::Map<const SparseRows>(rows, cols, nnz, W.row_offsets.data(), W.col_indices.data(), W.values.data());
        m.makeCompressed();
    }
    SparseRows m;
};

const CsrRows& rows_of(const CsrMatrix& W, std::size_t batch) {
    const auto* m = dynamic_cast<const CsrRows*>(&W);
    if (!m) throw Error("csr product: the matrix was not built by the CPU backend");
    if (batch > W.max_batch())
        throw Error("csr product: " + std::to_string(batch) + " rows in one pass, the matrix was prepared for " +
                    std::to_string(W.max_batch()));
    return *m;
}

// Eigen splits a row-major sparse x dense product over OpenMP threads once nnz * batch passes
// 20,000 multiply-adds; below about a million (a millisecond on one core) the fork-join costs
// more than it saves, and on a loaded 2-core machine far more (lenet300100 at 5%, batch 32: 6.4
// ms with two threads, 0.6 ms with one). Eigen::setNbThreads is Eigen's own switch (0: OpenMP's
// default).
constexpr double kParallelMultiplyAdds = 1 << 20;

void choose_threads(const SparseRows& W, std::size_t columns) {
    Eigen::setNbThreads(static_cast<double>(W.nonZeros()) * static_cast<double>(columns) >= kParallelMultiplyAdds ? 0 : 1);
}

}  // namespace

std::unique_ptr<CsrMatrix> csr_matrix(const CsrHost& W, std::size_t max_batch) {
    if (W.row_offsets.size() != W.rows + 1 || W.col_indices.size() != W.nnz())
        throw Error("csr matrix: arrays do not describe a (" + std::to_string(W.rows) + ", " + std::to_string(W.cols) +
                    ") matrix");
    return std::make_unique<CsrRows>(W, max_batch < 1 ? 1 : max_batch);
}

std::size_t csr_forward_workspace_floats(const CsrMatrix& W, std::size_t batch) {
    return batch > 1 ? batch * (W.rows() + W.cols()) : 0;
}

void csr_forward(const CsrMatrix& W, const float* x, const float* b, float* y, std::size_t batch, float* workspace) {
    const SparseRows& m = rows_of(W, batch).m;
    if (batch == 0) return;
    const auto n_in = static_cast<Eigen::Index>(W.cols()), n_out = static_cast<Eigen::Index>(W.rows());
    const Eigen::Map<const Eigen::VectorXf> bias(b, n_out);
    if (batch == 1) {
        // One sample: x^T and y^T are x and y (sparse matrix x vector).
        Eigen::Map<Eigen::VectorXf> yv(y, n_out);
        yv = bias;
        yv.noalias() += m * Eigen::Map<const Eigen::VectorXf>(x, n_in);
        return;
    }
    const auto cols = static_cast<Eigen::Index>(batch);
    DenseRowsMap xt(workspace, n_in, cols);
    xt = ConstDenseRowsMap(x, cols, n_in).transpose();
    DenseRowsMap yt(workspace + batch * W.cols(), n_out, cols);
    yt.colwise() = bias;
    choose_threads(m, batch);
    yt.noalias() += m * xt;
    DenseRowsMap(y, cols, n_out) = yt.transpose();
}

void csr_conv2d_forward(const ConvShape& s, const CsrMatrix& W, const float* x, const float* b, float* y,
                        float* workspace) {
    const SparseRows& m = rows_of(W, s.batch).m;
    const std::size_t n_k = s.c_in * s.kh * s.kw, n_pix = s.h_out() * s.w_out();
    if (W.rows() != s.c_out || W.cols() != n_k)
        throw Error("csr conv2d: a (" + std::to_string(W.rows()) + ", " + std::to_string(W.cols()) +
                    ") kernel matrix for " + std::to_string(s.c_out) + " filters of " + std::to_string(n_k) +
                    " weights");
    const auto c_out = static_cast<Eigen::Index>(s.c_out);
    const Eigen::Map<const Eigen::VectorXf> bias(b, c_out);
    const std::size_t x_floats = s.c_in * s.h_in * s.w_in, y_floats = s.c_out * n_pix;
    choose_threads(m, n_pix);
    for (std::size_t n = 0; n < s.batch; ++n) {
        conv2d_im2col(s, x + n * x_floats, workspace);
        DenseRowsMap yn(y + n * y_floats, c_out, static_cast<Eigen::Index>(n_pix));
        yn.colwise() = bias;
        yn.noalias() += m * ConstDenseRowsMap(workspace, static_cast<Eigen::Index>(n_k), static_cast<Eigen::Index>(n_pix));
    }
}

}  // namespace cpu
}  // namespace sparseprox
