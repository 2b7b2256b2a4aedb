// The csr products of the CPU backend (cpu/csr_ops.h), the oracle of the cuSPARSE twins: the
// conversion (exact zeros dropped, rows in order), y = x W^T + b and the sparse convolution
// against the dense operations on dyadic inputs (every product and partial sum exact in float,
// so any summation order gives the same result bitwise), at odd sizes, one row and empty rows;
// and the errors of a wrong batch or a foreign matrix.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/csr.h"
#include "cpu/conv_ops.h"
#include "cpu/conv_winograd.h"
#include "cpu/csr_ops.h"
#include "cpu/dense.h"
#include "sparseprox/error.h"
#include "test_util.h"

using namespace sparseprox;

namespace {

// Integers in [lo, hi] times `step`, about `density` of them nonzero.
std::vector<float> sparse_dyadic(std::size_t n, std::uint32_t seed, double density, float step) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> v(-4, 4);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<float> x(n);
    for (float& w : x) w = u(rng) < density ? static_cast<float>(v(rng)) * step : 0.0f;
    return x;
}

bool any_nonzero(const std::vector<float>& v) {
    for (float x : v)
        if (x != 0.0f) return true;
    return false;
}

TEST(CsrFromDense, DropsExactZerosAndKeepsRowOrder) {
    const std::vector<float> w = {0.0f, 2.0f, -0.0f, 0.5f,  //
                                  0.0f, 0.0f, 0.0f, 0.0f,   //
                                  -1.0f, 0.0f, 3.0f, 0.0f};
    const CsrHost m = csr_from_dense(w.data(), 3, 4, "w");
    EXPECT_EQ(m.rows, 3u);
    EXPECT_EQ(m.cols, 4u);
    EXPECT_EQ(m.row_offsets, (std::vector<std::int32_t>{0, 2, 2, 4}));
    EXPECT_EQ(m.col_indices, (std::vector<std::int32_t>{1, 3, 0, 2}));
    EXPECT_EQ(m.values, (std::vector<float>{2.0f, 0.5f, -1.0f, 3.0f}));
    EXPECT_EQ(m.nnz(), 4u);
}

class CsrForward : public ::testing::TestWithParam<std::size_t> {};

// Against cpu::dense_forward on the same (sparse) weights: bitwise on dyadic inputs.
TEST_P(CsrForward, EqualsDenseForwardOnDyadicInputs) {
    const std::size_t batch = GetParam(), n_in = 37, n_out = 19;
    auto W = sparse_dyadic(n_out * n_in, 1, 0.3, 0.25f);
    for (std::size_t c = 0; c < n_in; ++c) W[4 * n_in + c] = 0.0f;  // an empty row
    const auto x = sparse_dyadic(batch * n_in, 2, 1.0, 1.0f);
    const auto b = sparse_dyadic(n_out, 3, 1.0, 0.5f);
    std::vector<float> want(batch * n_out), got(batch * n_out, -7.0f);
    cpu::dense_forward(x.data(), W.data(), b.data(), want.data(), batch, n_in, n_out);
    const auto m = cpu::csr_matrix(csr_from_dense(W.data(), n_out, n_in, "W"), 64);
    std::vector<float> ws(cpu::csr_forward_workspace_floats(*m, batch));
    cpu::csr_forward(*m, x.data(), b.data(), got.data(), batch, ws.data());
    EXPECT_EQ(got, want);
    EXPECT_TRUE(any_nonzero(want));
}

// One row (the matrix x vector path) and odd batches (the transposed product).
INSTANTIATE_TEST_SUITE_P(Batches, CsrForward, ::testing::Values(1, 2, 19, 64));

TEST(CsrForward, ABackendRunsItsOwnMatricesOnly) {
    const std::vector<float> W = {1.0f, 0.0f, 0.0f, 2.0f}, x = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f}, b = {0.0f, 0.0f};
    auto backend = make_cpu_backend();
    const auto m = backend->csr_matrix(csr_from_dense(W.data(), 2, 2, "W"), 2);
    std::vector<float> y(6);
    // More rows than the matrix was prepared for.
    EXPECT_THROW(backend->csr_forward(*m, x.data(), b.data(), y.data(), 3), Error);
    backend->csr_forward(*m, x.data(), b.data(), y.data(), 2);
    EXPECT_EQ(y[0], 1.0f);
    EXPECT_EQ(y[1], 2.0f);
    // A matrix of another kind (not the CPU's).
    struct Foreign final : CsrMatrix {
        Foreign() : CsrMatrix(2, 2, 0, 2) {}
    } foreign;
    EXPECT_THROW(backend->csr_forward(foreign, x.data(), b.data(), y.data(), 1), Error);
}

struct ConvCase {
    const char* name;
    ConvShape s;
};

using testing_util::square_conv;

class CsrConv : public ::testing::TestWithParam<ConvCase> {};

// Against cpu::conv2d_forward (dense im2col GEMM) on the same sparse kernels: bitwise on dyadic
// inputs, through the backend (which sizes the im2col scratch).
TEST_P(CsrConv, EqualsDenseConvOnDyadicInputs) {
    // The dense reference exact: Winograd layers on F(2x2, 3x3), whose constants keep dyadic sums
    // exact (F(4x4, 3x3)'s 1/6 and 1/24 do not).
    const testing_util::SmallWinogradTiles small;
    const ConvShape s = GetParam().s;
    auto W = sparse_dyadic(s.n_weights(), 4, 0.4, 0.25f);
    const std::size_t n_k = s.c_in * s.kh * s.kw;
    for (std::size_t i = 0; i < n_k; ++i) W[i] = 0.0f;  // filter 0 empty: the bias alone
    const auto x = sparse_dyadic(s.batch * s.c_in * s.h_in * s.w_in, 5, 1.0, 1.0f);
    const auto b = sparse_dyadic(s.c_out, 6, 1.0, 0.5f);
    const std::size_t n_y = s.batch * s.c_out * s.h_out() * s.w_out();
    std::vector<float> want(n_y), got(n_y, -7.0f);
    cpu::conv2d_forward(s, x.data(), W.data(), b.data(), want.data());
    auto backend = make_cpu_backend();
    ASSERT_TRUE(backend->has_csr_conv2d());
    const auto m = backend->csr_matrix(csr_from_dense(W.data(), s.c_out, n_k, "W"), s.batch);
    backend->csr_conv2d_forward(s, *m, x.data(), b.data(), got.data());
    EXPECT_EQ(got, want);
    EXPECT_TRUE(any_nonzero(want));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CsrConv,
                         ::testing::Values(ConvCase{"k3_pad1_b1", square_conv(1, 2, 9, 7, 5, 3, 1, 1)},
                                           ConvCase{"k3_stride2_b3", square_conv(3, 3, 11, 13, 4, 3, 2, 0)},
                                           ConvCase{"k5_same_28x28_b2", square_conv(2, 1, 28, 28, 8, 5, 1, 2)}),
                         [](const ::testing::TestParamInfo<ConvCase>& i) { return std::string(i.param.name); });

TEST(CsrConv, WrongKernelShapeIsAnError) {
    const ConvShape s = square_conv(1, 2, 5, 5, 3, 3, 1, 0);
    const std::vector<float> W(3 * 2 * 2 * 2, 1.0f), x(2 * 25, 1.0f), b(3, 0.0f);
    std::vector<float> y(3 * 9);
    auto backend = make_cpu_backend();
    const auto m = backend->csr_matrix(csr_from_dense(W.data(), 3, 8, "W"), 1);  // 2x2 kernels, not 3x3
    EXPECT_THROW(backend->csr_conv2d_forward(s, *m, x.data(), b.data(), y.data()), Error);
}

}  // namespace
