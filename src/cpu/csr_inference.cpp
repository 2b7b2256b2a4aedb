// The CPU CSR engine. A dense layer computes y^T (n_out, batch) = W (n_out, n_in, CSR) x^T
// (n_in, batch): with the batch as the contiguous dimension of the right-hand side, each nonzero
// w_ij costs one axpy over the batch (Eigen's row-major sparse x row-major dense kernel, split
// over rows with OpenMP when the matrix is large). The transposes in and out cost
// batch*(n_in + n_out) copies against nnz*batch multiply-adds: for lenet300100 at 5% (13,300
// nonzeros, 1,184 activations per sample) about 9%. A conv layer computes y_n (c_out, h_out*w_out) =
// W (c_out, c_in*kh*kw, CSR) col_n per sample, col_n the im2col matrix (row-major).
//
// Eigen was measured against librsb (bench/csr_libraries.cpp; README, Benchmarks) on the
// lenet300100 shapes and kept: faster for one sample, within noise of librsb at batch 32 and
// 256 on the loaded 2-core machine, and header-only.
#include "cpu/csr_inference.h"

#include <algorithm>
#include <vector>

#include <Eigen/Core>
#include <Eigen/SparseCore>

#include "core/layer_shapes.h"
#include "cpu/activation.h"
#include "cpu/conv_ops.h"
#include "sparseprox/error.h"

namespace sparseprox {
namespace cpu {
namespace {

using SparseRows = Eigen::SparseMatrix<float, Eigen::RowMajor, int>;
using DenseRows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using DenseRowsMap = Eigen::Map<DenseRows>;
using ConstDenseRowsMap = Eigen::Map<const DenseRows>;

// A (rows, cols) row-major float array as CSR, exact zeros dropped.
SparseRows to_csr(const float* w, std::size_t rows, std::size_t cols) {
    std::vector<Eigen::Triplet<float, int>> entries;
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c)
            if (w[r * cols + c] != 0.0f)
                entries.emplace_back(static_cast<int>(r), static_cast<int>(c), w[r * cols + c]);
    SparseRows m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    m.setFromTriplets(entries.begin(), entries.end());
    m.makeCompressed();
    return m;
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

struct CsrNetwork::Impl {
    struct Layer {
        LayerSpec spec;
        SparseRows W;                 // dense: (n_out, n_in); conv: (c_out, c_in*kh*kw)
        std::vector<float> b;
    };
    std::vector<Layer> layers;
    std::size_t max_batch = 1;
    std::size_t n_inputs = 0, n_outputs = 0;
    std::vector<float> a, b;          // ping-pong activations (max_batch, widest layer)
    std::vector<float> xt, yt;        // the transposes of a dense layer's input and output
    std::vector<float> col;           // one sample's im2col matrix
};

CsrNetwork::CsrNetwork(const Model& model, std::size_t max_batch) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    const ModelSpec& spec = model.spec();
    m.max_batch = std::max<std::size_t>(max_batch, 1);
    m.n_inputs = spec.n_inputs;
    m.n_outputs = spec.n_outputs();
    std::size_t widest = spec.n_inputs, widest_dense = 0, widest_col = 0;
    for (std::size_t k = 0, w = 0; k < spec.layers.size(); ++k) {
        const LayerSpec& l = spec.layers[k];
        Impl::Layer layer;
        layer.spec = l;
        widest = std::max({widest, l.n_in, l.n_out});
        if (l.has_weights()) {
            const std::size_t rows = l.kind == LayerKind::dense ? l.n_out : l.out_shape.channels;
            const std::size_t cols = model.weights(w).size() / std::max<std::size_t>(rows, 1);
            layer.W = to_csr(model.weights(w).data(), rows, cols);
            layer.b.assign(model.biases(w).begin(), model.biases(w).end());
            if (l.kind == LayerKind::dense) widest_dense = std::max({widest_dense, l.n_in, l.n_out});
            else widest_col = std::max(widest_col, conv2d_workspace_floats(conv_shape(l, 1)));
            ++w;
        }
        m.layers.push_back(std::move(layer));
    }
    m.a.resize(m.max_batch * widest);
    m.b.resize(m.max_batch * widest);
    m.xt.resize(m.max_batch * widest_dense);
    m.yt.resize(m.max_batch * widest_dense);
    m.col.resize(widest_col);
}

CsrNetwork::~CsrNetwork() = default;

std::size_t CsrNetwork::multiply_adds_per_sample() const {
    std::size_t n = 0;
    for (const Impl::Layer& l : impl_->layers) {
        if (!l.spec.has_weights()) continue;
        const std::size_t positions = l.spec.kind == LayerKind::conv2d ? l.spec.out_shape.height * l.spec.out_shape.width : 1;
        n += static_cast<std::size_t>(l.W.nonZeros()) * positions;
    }
    return n;
}

void CsrNetwork::forward(const float* x, std::size_t rows, float* y) {
    Impl& m = *impl_;
    if (rows > m.max_batch)
        throw Error("csr inference: " + std::to_string(rows) + " rows in one pass, the engine holds " +
                    std::to_string(m.max_batch));
    if (rows == 0) return;
    const float* in = x;
    float* bufs[2] = {m.a.data(), m.b.data()};
    int next = 0;
    const auto batch = static_cast<Eigen::Index>(rows);
    for (std::size_t k = 0; k < m.layers.size(); ++k) {
        const Impl::Layer& layer = m.layers[k];
        const LayerSpec& l = layer.spec;
        const bool last = k + 1 == m.layers.size();
        if (l.kind == LayerKind::flatten) {
            if (last) std::copy_n(in, rows * l.n_out, y);
            continue;
        }
        float* out = last ? y : bufs[next];
        switch (l.kind) {
            case LayerKind::dense: {
                const auto n_in = static_cast<Eigen::Index>(l.n_in), n_out = static_cast<Eigen::Index>(l.n_out);
                const Eigen::Map<const Eigen::VectorXf> bias(layer.b.data(), n_out);
                if (rows == 1) {
                    // One sample: x^T and y^T are x and y (sparse matrix x vector).
                    Eigen::Map<Eigen::VectorXf> yv(out, n_out);
                    yv.noalias() = layer.W * Eigen::Map<const Eigen::VectorXf>(in, n_in);
                    yv += bias;
                } else {
                    DenseRowsMap xt(m.xt.data(), n_in, batch);
                    xt = ConstDenseRowsMap(in, batch, n_in).transpose();
                    DenseRowsMap yt(m.yt.data(), n_out, batch);
                    choose_threads(layer.W, rows);
                    yt.noalias() = layer.W * xt;
                    yt.colwise() += bias;
                    DenseRowsMap(out, batch, n_out) = yt.transpose();
                }
                break;
            }
            case LayerKind::conv2d: {
                const ConvShape s = conv_shape(l, 1);
                const auto n_k = static_cast<Eigen::Index>(s.c_in * s.kh * s.kw);
                const auto n_pix = static_cast<Eigen::Index>(s.h_out() * s.w_out());
                const auto c_out = static_cast<Eigen::Index>(s.c_out);
                const Eigen::Map<const Eigen::VectorXf> bias(layer.b.data(), c_out);
                choose_threads(layer.W, static_cast<std::size_t>(n_pix));
                for (std::size_t n = 0; n < rows; ++n) {
                    conv2d_im2col(s, in + n * l.n_in, m.col.data());
                    DenseRowsMap yn(out + n * l.n_out, c_out, n_pix);
                    yn.noalias() = layer.W * ConstDenseRowsMap(m.col.data(), n_k, n_pix);
                    yn.colwise() += bias;
                }
                break;
            }
            case LayerKind::activation: activation_forward(l.activation, in, out, rows * l.n_in); break;
            case LayerKind::maxpool2d: maxpool2d_forward(pool_shape(l, rows), in, out); break;
            case LayerKind::avgpool2d: avgpool2d_forward(pool_shape(l, rows), in, out); break;
            case LayerKind::flatten: break;
        }
        in = out;
        next ^= 1;
    }
    if (m.layers.empty()) std::copy_n(x, rows * m.n_inputs, y);
}

}  // namespace cpu
}  // namespace sparseprox
