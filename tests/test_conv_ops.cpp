// CPU convolution and pooling: forwards against naive double-precision loops, backwards against
// central differences, at odd and non-square sizes, with padding and strides > 1, plus the
// max-pool tie, padding and NaN rules, gradient accumulation and reproducibility.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <omp.h>

#include "cpu/conv_direct.h"
#include "cpu/conv_winograd.h"
#include "cpu/conv_ops.h"
#include "cpu/simd.h"
#include "sparseprox/error.h"
#include "test_util.h"

using namespace sparseprox;
using testing_util::randn;
using testing_util::SmallWinogradTiles;

namespace {

constexpr double kUnit = 1.0 / (1 << 24);  // float unit roundoff, 2^-24

// Winograd's F(4x4, 3x3) (cpu/winograd_f4.h) rounds more than a direct sum: its G holds 1/6 and
// 1/24 and its B^T and A^T scale by up to 8. Its outputs are held to 8 times the direct sum's
// bound (the largest error seen over these tests' shapes is about 3 times it); every other path
// to the bound itself.
double rounding_factor(const ConvShape& s) {
    const bool large = !cpu::conv_direct_applies(s) && cpu::conv_winograd_applies(s) && cpu::winograd_tile(s) == 4;
    return large ? 8.0 : 1.0;
}

// Integers in [lo, hi] times `step` (a power of two): products and sums of a few thousand of
// them are exact in float, so any summation order gives the same, exact result.
std::vector<float> dyadic(std::size_t n, std::mt19937& rng, int lo, int hi, float step) {
    std::uniform_int_distribution<int> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(d(rng)) * step;
    return v;
}

// n distinct values 0.01 apart in random order: no two max-pool candidates tie, and a finite
// difference step below 0.005 never changes an argmax.
std::vector<float> distinct_values(std::size_t n, std::mt19937& rng) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = 0.01f * (static_cast<float>(i) - static_cast<float>(n) / 2);
    std::shuffle(v.begin(), v.end(), rng);
    return v;
}

double weighted_sum(const std::vector<float>& y, const std::vector<float>& r) {
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * r[i];
    return s;
}

bool any_nonzero(const std::vector<float>& v) {
    return std::any_of(v.begin(), v.end(), [](float a) { return a != 0.0f; });
}

// Central differences of f with respect to the entries of x (all of them, or max_checks drawn at
// random when x is larger) against `analytic`: passes when |fd - g| <= atol + rtol * |g| for
// every checked entry and at least one checked g is nonzero.
::testing::AssertionResult matches_finite_differences(std::vector<float>& x, const std::vector<float>& analytic,
                                                      const std::function<double()>& f, double h, double atol,
                                                      double rtol, std::size_t max_checks = 400) {
    if (x.size() != analytic.size())
        return ::testing::AssertionFailure() << "size " << x.size() << " vs " << analytic.size();
    std::mt19937 rng(2024);
    const std::size_t n_checks = std::min(max_checks, x.size());
    double max_err = 0.0, max_abs = 0.0;
    for (std::size_t k = 0; k < n_checks; ++k) {
        const std::size_t i = x.size() <= max_checks ? k : rng() % x.size();
        const float saved = x[i];
        const float xp = saved + static_cast<float>(h), xm = saved - static_cast<float>(h);
        x[i] = xp;
        const double fp = f();
        x[i] = xm;
        const double fm = f();
        x[i] = saved;
        const double fd = (fp - fm) / (static_cast<double>(xp) - static_cast<double>(xm));
        const double g = analytic[i], err = std::fabs(fd - g);
        if (!(err <= atol + rtol * std::fabs(g)))
            return ::testing::AssertionFailure() << "entry " << i << ": finite difference " << fd << ", analytic " << g
                                                 << " (tolerance " << atol + rtol * std::fabs(g) << ")";
        max_err = std::max(max_err, err);
        max_abs = std::max(max_abs, std::fabs(g));
    }
    if (max_abs == 0.0) return ::testing::AssertionFailure() << "every checked gradient entry is zero";
    return ::testing::AssertionSuccess() << n_checks << " entries, max error " << max_err;
}

// ---- convolution ---------------------------------------------------------------------------------

ConvShape conv_shape(std::size_t batch, std::size_t c_in, std::size_t h_in, std::size_t w_in, std::size_t c_out,
                     std::size_t kh, std::size_t kw, std::size_t stride_h, std::size_t stride_w, std::size_t pad_h,
                     std::size_t pad_w) {
    return ConvShape{batch, c_in, h_in, w_in, c_out, kh, kw, stride_h, stride_w, pad_h, pad_w};
}

std::size_t x_size(const ConvShape& s) { return s.batch * s.c_in * s.h_in * s.w_in; }
std::size_t y_size(const ConvShape& s) { return s.batch * s.c_out * s.h_out() * s.w_out(); }

// The definition, seven loops in double: y[n,co,oy,ox] = b[co] + sum over (ci, i, j) of
// W[co,ci,i,j] * x[n, ci, oy*stride_h + i - pad_h, ox*stride_w + j - pad_w], out-of-range taps
// skipped. abs_sum receives |b| + sum |W x| per output, the scale of its rounding error.
std::vector<double> conv_reference(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& W,
                                   const std::vector<float>& b, std::vector<double>& abs_sum) {
    const std::size_t h_out = s.h_out(), w_out = s.w_out();
    std::vector<double> y(y_size(s));
    abs_sum.assign(y.size(), 0.0);
    for (std::size_t n = 0; n < s.batch; ++n)
        for (std::size_t co = 0; co < s.c_out; ++co)
            for (std::size_t oy = 0; oy < h_out; ++oy)
                for (std::size_t ox = 0; ox < w_out; ++ox) {
                    double acc = b[co], mag = std::fabs(static_cast<double>(b[co]));
                    for (std::size_t ci = 0; ci < s.c_in; ++ci)
                        for (std::size_t i = 0; i < s.kh; ++i)
                            for (std::size_t j = 0; j < s.kw; ++j) {
                                const long iy = static_cast<long>(oy * s.stride_h + i) - static_cast<long>(s.pad_h);
                                const long ix = static_cast<long>(ox * s.stride_w + j) - static_cast<long>(s.pad_w);
                                if (iy < 0 || ix < 0 || iy >= static_cast<long>(s.h_in) ||
                                    ix >= static_cast<long>(s.w_in))
                                    continue;
                                const double t =
                                    static_cast<double>(W[((co * s.c_in + ci) * s.kh + i) * s.kw + j]) *
                                    x[((n * s.c_in + ci) * s.h_in + static_cast<std::size_t>(iy)) * s.w_in +
                                      static_cast<std::size_t>(ix)];
                                acc += t;
                                mag += std::fabs(t);
                            }
                    const std::size_t o = ((n * s.c_out + co) * h_out + oy) * w_out + ox;
                    y[o] = acc;
                    abs_sum[o] = mag;
                }
    return y;
}

struct ConvCase {
    std::string name;
    ConvShape shape;
};

std::string conv_case_name(const ::testing::TestParamInfo<ConvCase>& info) { return info.param.name; }
void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

}  // namespace

TEST(ConvShapes, OutputSizesUseFloorMode) {
    ConvShape s = conv_shape(1, 3, 7, 7, 4, 2, 2, 2, 2, 0, 0);
    EXPECT_EQ(s.h_out(), 3u);  // (7 - 2) / 2 + 1 = 3.5 -> 3
    EXPECT_EQ(s.w_out(), 3u);
    EXPECT_EQ(s.n_weights(), 4u * 3u * 2u * 2u);
    EXPECT_EQ(cpu::conv2d_workspace_floats(s), 3u * 2u * 2u * 3u * 3u);
    s = conv_shape(1, 1, 28, 28, 1, 5, 5, 1, 1, 2, 2);  // "same" padding
    EXPECT_EQ(s.h_out(), 28u);
    s = conv_shape(1, 1, 28, 27, 1, 3, 3, 2, 2, 1, 1);
    EXPECT_EQ(s.h_out(), 14u);  // (28 + 2 - 3) / 2 + 1 = 14.5 -> 14
    EXPECT_EQ(s.w_out(), 14u);  // (27 + 2 - 3) / 2 + 1 = 14
    s = conv_shape(1, 2, 11, 9, 1, 5, 3, 3, 2, 2, 0);
    EXPECT_EQ(s.h_out(), 4u);  // (11 + 4 - 5) / 3 + 1 = 4.33 -> 4
    EXPECT_EQ(s.w_out(), 4u);  // (9 - 3) / 2 + 1 = 4
    EXPECT_EQ(cpu::conv2d_workspace_floats(s), 2u * 5u * 3u * 4u * 4u);
}

TEST(PoolShapes, OutputSizesUseFloorMode) {
    PoolShape s;  // defaults: 2x2 window, stride 2, no padding
    s.h_in = 7;
    s.w_in = 8;
    EXPECT_EQ(s.h_out(), 3u);  // 7 -> 3: the last row is dropped
    EXPECT_EQ(s.w_out(), 4u);
    s.kh = s.kw = 3;
    s.pad_h = s.pad_w = 1;
    EXPECT_EQ(s.h_out(), 4u);  // (7 + 2 - 3) / 2 + 1 = 4
    EXPECT_EQ(s.w_out(), 4u);  // (8 + 2 - 3) / 2 + 1 = 4.5 -> 4
    s.stride_h = 1;
    s.stride_w = 3;
    EXPECT_EQ(s.h_out(), 7u);
    EXPECT_EQ(s.w_out(), 3u);  // (8 + 2 - 3) / 3 + 1 = 3.33 -> 3
}

class ConvForward : public ::testing::TestWithParam<ConvCase> {};

// Random normal data: the float result must lie within the rounding bound of a sum of
// n_k + 1 terms in any order, (n_k + 2) * 2^-24 * (|b| + sum |W x|) with n_k = c_in*kh*kw.
TEST_P(ConvForward, MatchesNaiveReference) {
    const ConvShape s = GetParam().shape;
    std::mt19937 rng(static_cast<unsigned>(x_size(s) * 31 + s.n_weights()));
    const auto x = randn(x_size(s), rng), W = randn(s.n_weights(), rng, 0.5f), b = randn(s.c_out, rng);
    std::vector<float> y(y_size(s), std::numeric_limits<float>::quiet_NaN());
    cpu::conv2d_forward(s, x.data(), W.data(), b.data(), y.data());
    std::vector<double> mag;
    const auto ref = conv_reference(s, x, W, b, mag);
    const double rel = rounding_factor(s) * static_cast<double>(s.c_in * s.kh * s.kw + 2) * kUnit;
    for (std::size_t i = 0; i < y.size(); ++i)
        ASSERT_NEAR(y[i], ref[i], rel * mag[i]) << "output " << i;
    EXPECT_TRUE(any_nonzero(y));
}

// im2col is a gather: every entry of every sample's column matrix is the input value its tap
// reads, or +0 for a padded tap, bit for bit (the bits of the random input, NaN-free).
TEST_P(ConvForward, Im2colIsTheTapFormulaBitForBit) {
    const ConvShape s = GetParam().shape;
    std::mt19937 rng(static_cast<unsigned>(x_size(s) * 7 + 1));
    const auto x = randn(x_size(s), rng);
    const std::size_t h_out = s.h_out(), w_out = s.w_out(), n_col = cpu::conv2d_workspace_floats(s);
    std::vector<float> col(n_col);
    for (std::size_t n = 0; n < s.batch; ++n) {
        std::fill(col.begin(), col.end(), std::numeric_limits<float>::quiet_NaN());
        cpu::conv2d_im2col(s, x.data() + n * s.c_in * s.h_in * s.w_in, col.data());
        for (std::size_t ci = 0; ci < s.c_in; ++ci)
            for (std::size_t i = 0; i < s.kh; ++i)
                for (std::size_t j = 0; j < s.kw; ++j)
                    for (std::size_t oy = 0; oy < h_out; ++oy)
                        for (std::size_t ox = 0; ox < w_out; ++ox) {
                            const long iy = static_cast<long>(oy * s.stride_h + i) - static_cast<long>(s.pad_h);
                            const long ix = static_cast<long>(ox * s.stride_w + j) - static_cast<long>(s.pad_w);
                            const bool inside = iy >= 0 && ix >= 0 && iy < static_cast<long>(s.h_in) &&
                                                ix < static_cast<long>(s.w_in);
                            const float want =
                                inside ? x[((n * s.c_in + ci) * s.h_in + static_cast<std::size_t>(iy)) * s.w_in +
                                           static_cast<std::size_t>(ix)]
                                       : 0.0f;
                            const float got = col[(((ci * s.kh + i) * s.kw + j) * h_out + oy) * w_out + ox];
                            std::uint32_t a, b;
                            std::memcpy(&a, &got, 4);
                            std::memcpy(&b, &want, 4);
                            ASSERT_EQ(a, b) << "sample " << n << " channel " << ci << " tap (" << i << ", " << j
                                            << ") output (" << oy << ", " << ox << ")";
                        }
    }
}

// im2col keeps its zero-bordered plane between calls: a 14 x 14 input padded by 1 and a 12 x 12
// input padded by 2 share the padded size 16 x 16 but not the border, so a plane left by the first
// must not lend its interior to the second's padding. The calls alternate on one thread.
TEST(ConvIm2col, PlanesOfTheSamePaddedSizeWithOtherPaddingsStayApart) {
    const ConvShape a = conv_shape(1, 2, 14, 14, 3, 3, 3, 1, 1, 1, 1);
    const ConvShape b = conv_shape(1, 2, 12, 12, 3, 5, 5, 1, 1, 2, 2);
    std::mt19937 rng(21);
    const auto xa = randn(x_size(a), rng), xb = randn(x_size(b), rng);
    const auto Wa = randn(a.n_weights(), rng, 0.5f), Wb = randn(b.n_weights(), rng, 0.5f);
    const auto ba = randn(a.c_out, rng), bb = randn(b.c_out, rng);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int round = 0; round < 2; ++round)
        for (const ConvShape* s : {&a, &b}) {
            const auto& x = s == &a ? xa : xb;
            const auto& W = s == &a ? Wa : Wb;
            const auto& bias = s == &a ? ba : bb;
            std::vector<float> y(y_size(*s));
            cpu::conv2d_forward(*s, x.data(), W.data(), bias.data(), y.data());
            std::vector<double> mag;
            const auto ref = conv_reference(*s, x, W, bias, mag);
            const double rel = rounding_factor(*s) * static_cast<double>(s->c_in * s->kh * s->kw + 2) * kUnit;
            for (std::size_t i = 0; i < y.size(); ++i)
                ASSERT_NEAR(y[i], ref[i], rel * mag[i]) << "round " << round << ", pad " << s->pad_h << ", output " << i;
        }
    omp_set_num_threads(saved);
}

// Dyadic data: every product and partial sum is exact in float, so the result equals the
// reference bitwise whatever order the GEMM sums in (Winograd layers on F(2x2, 3x3)).
TEST_P(ConvForward, ExactOnDyadicInputs) {
    const SmallWinogradTiles small;
    const ConvShape s = GetParam().shape;
    std::mt19937 rng(static_cast<unsigned>(y_size(s) * 17 + 3));
    const auto x = dyadic(x_size(s), rng, -4, 4, 1.0f);
    const auto W = dyadic(s.n_weights(), rng, -4, 4, 0.25f);
    const auto b = dyadic(s.c_out, rng, -4, 4, 0.5f);
    std::vector<float> y(y_size(s), std::numeric_limits<float>::quiet_NaN());
    cpu::conv2d_forward(s, x.data(), W.data(), b.data(), y.data());
    std::vector<double> mag;
    const auto ref = conv_reference(s, x, W, b, mag);
    for (std::size_t i = 0; i < y.size(); ++i) ASSERT_EQ(static_cast<double>(y[i]), ref[i]) << "output " << i;
    EXPECT_TRUE(any_nonzero(y));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvForward,
    ::testing::Values(
        // name, shape: batch, c_in, h_in, w_in, c_out, kh, kw, stride_h, stride_w, pad_h, pad_w
        ConvCase{"k3_same_b1", conv_shape(1, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1)},
        ConvCase{"k3_stride2_pad1_b3", conv_shape(3, 2, 11, 13, 5, 3, 3, 2, 2, 1, 1)},
        ConvCase{"k5_stride2_pad2_b2", conv_shape(2, 3, 19, 17, 3, 5, 5, 2, 2, 2, 2)},
        ConvCase{"k5_no_pad_b1", conv_shape(1, 2, 9, 11, 3, 5, 5, 1, 1, 0, 0)},
        ConvCase{"k1_pointwise_b1", conv_shape(1, 5, 7, 9, 6, 1, 1, 1, 1, 0, 0)},
        ConvCase{"k1_pointwise_b3", conv_shape(3, 4, 5, 3, 2, 1, 1, 1, 1, 0, 0)},
        ConvCase{"k1_stride2_b3", conv_shape(3, 4, 9, 11, 2, 1, 1, 2, 2, 0, 0)},
        ConvCase{"k1_pad1_b2", conv_shape(2, 3, 5, 6, 2, 1, 1, 1, 1, 1, 1)},
        ConvCase{"k5x3_stride3x1_pad2x0_b2", conv_shape(2, 2, 12, 5, 3, 5, 3, 3, 1, 2, 0)},
        ConvCase{"k3_on_1x1_input_b2", conv_shape(2, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1)},
        ConvCase{"k4_stride3_pad1_floor_b2", conv_shape(2, 2, 10, 8, 2, 4, 4, 3, 3, 1, 1)},
        // Large enough that im2col and col2im take their threaded path.
        ConvCase{"k5_same_28x28_b2", conv_shape(2, 1, 28, 28, 8, 5, 5, 1, 1, 2, 2)},
        // Several chunks of samples and a short last one (7x7 outputs, Winograd: 8 samples per
        // chunk forward, 32 backward).
        ConvCase{"k3_same_7x7_b37_chunks", conv_shape(37, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1)},
        // Winograd F(2x2, 3x3) (3x3, stride 1, several input channels): odd and even output
        // sizes, no padding and padding 2, rows of more than 8 tiles (17 and 36 wide), and a
        // sample per chunk on a large plane.
        ConvCase{"winograd_pad0_odd_b3", conv_shape(3, 4, 9, 10, 5, 3, 3, 1, 1, 0, 0)},
        ConvCase{"winograd_pad2_b2", conv_shape(2, 3, 6, 5, 4, 3, 3, 1, 1, 2, 2)},
        ConvCase{"winograd_17_wide_b2", conv_shape(2, 2, 5, 17, 3, 3, 3, 1, 1, 1, 1)},
        ConvCase{"winograd_36_wide_b3", conv_shape(3, 2, 12, 36, 3, 3, 3, 1, 1, 1, 1)},
        ConvCase{"winograd_2x1_output_b2", conv_shape(2, 3, 2, 1, 2, 3, 3, 1, 1, 1, 1)},
        ConvCase{"winograd_40x40_b1", conv_shape(1, 2, 40, 40, 3, 3, 3, 1, 1, 1, 1)},
        ConvCase{"winograd_rows_of_4_tiles_b3", conv_shape(3, 3, 5, 7, 4, 3, 3, 1, 1, 1, 1)},
        ConvCase{"winograd_8x8_b2", conv_shape(2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1)},
        ConvCase{"k2_stride2_9x9_b23_chunks", conv_shape(23, 2, 9, 9, 3, 2, 2, 2, 2, 0, 0)},
        // Output widths 8 and 14 (with 7 above: the run widths im2col copies with loops of their own).
        ConvCase{"k5_no_pad_12x12_b2", conv_shape(2, 3, 12, 12, 4, 5, 5, 1, 1, 0, 0)},
        ConvCase{"k3_same_14x14_b2", conv_shape(2, 3, 14, 14, 4, 3, 3, 1, 1, 1, 1)},
        // One input channel at stride 1, outputs 16+ wide: the direct kernels (cpu/conv_direct.h)
        // on a CPU with AVX2 and FMA; channels in fours and the rest, rows in strips of 16 with
        // the last moved back (28 and 20 wide) or exact (16, 24); 15 wide takes the GEMM.
        ConvCase{"one_channel_k3_same_28x28_b3", conv_shape(3, 1, 28, 28, 6, 3, 3, 1, 1, 1, 1)},
        ConvCase{"one_channel_k5_no_pad_28x28_b2", conv_shape(2, 1, 28, 28, 5, 5, 5, 1, 1, 0, 0)},
        ConvCase{"one_channel_k2x4_pad1x2_b2", conv_shape(2, 1, 9, 19, 3, 2, 4, 1, 1, 1, 2)},
        ConvCase{"one_channel_16_wide_b1", conv_shape(1, 1, 5, 18, 3, 3, 3, 1, 1, 0, 0)},
        ConvCase{"one_channel_15_wide_b1", conv_shape(1, 1, 5, 17, 3, 3, 3, 1, 1, 0, 0)}),
    conv_case_name);

class ConvBackward : public ::testing::TestWithParam<ConvCase> {};

// J = sum(y * r) for a fixed random r, so dJ/dy = r. J is linear in each of W, b and x, so a
// large step h = 0.5 leaves only float rounding of y: about (n_k + 2) * 2^-24 * |W x| per
// output, summed over at most a few hundred outputs and divided by 2h = 1, well under the
// stated atol = 2e-3, rtol = 1e-3.
TEST_P(ConvBackward, MatchesFiniteDifferences) {
    const ConvShape s = GetParam().shape;
    std::mt19937 rng(static_cast<unsigned>(x_size(s) + 101 * s.n_weights()));
    auto x = randn(x_size(s), rng), W = randn(s.n_weights(), rng, 0.5f), b = randn(s.c_out, rng);
    const auto r = randn(y_size(s), rng);
    std::vector<float> y(y_size(s));
    auto J = [&]() {
        cpu::conv2d_forward(s, x.data(), W.data(), b.data(), y.data());
        return weighted_sum(y, r);
    };
    const float poison = std::numeric_limits<float>::quiet_NaN();  // outputs must be overwritten
    std::vector<float> dW(W.size(), poison), db(b.size(), poison), dx(x.size(), poison);
    cpu::conv2d_backward(s, x.data(), W.data(), r.data(), dW.data(), db.data(), dx.data());
    const double h = 0.5, atol = 2e-3, rtol = 1e-3;
    EXPECT_TRUE(matches_finite_differences(W, dW, J, h, atol, rtol)) << "dL_dW";
    EXPECT_TRUE(matches_finite_differences(b, db, J, h, atol, rtol)) << "dL_db";
    EXPECT_TRUE(matches_finite_differences(x, dx, J, h, atol, rtol)) << "dL_dx";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvBackward,
    ::testing::Values(ConvCase{"k3_stride2_pad1_b1", conv_shape(1, 2, 9, 7, 3, 3, 3, 2, 2, 1, 1)},
                      ConvCase{"k5_stride2_pad2_b1", conv_shape(1, 3, 11, 9, 2, 5, 5, 2, 2, 2, 2)},
                      ConvCase{"k3x2_stride2x3_pad1x0_b1", conv_shape(1, 2, 7, 10, 3, 3, 2, 2, 3, 1, 0)},
                      ConvCase{"k3_same_b1", conv_shape(1, 3, 5, 7, 2, 3, 3, 1, 1, 1, 1)},
                      ConvCase{"k1_pointwise_b1", conv_shape(1, 3, 5, 7, 4, 1, 1, 1, 1, 0, 0)},
                      ConvCase{"k1_stride2_b1", conv_shape(1, 3, 7, 5, 2, 1, 1, 2, 2, 0, 0)},
                      ConvCase{"k3_stride2_pad1_b3", conv_shape(3, 2, 7, 9, 2, 3, 3, 2, 2, 1, 1)},
                      ConvCase{"k1_pointwise_b3", conv_shape(3, 2, 3, 5, 3, 1, 1, 1, 1, 0, 0)},
                      ConvCase{"winograd_pad0_odd_b2", conv_shape(2, 2, 6, 7, 3, 3, 3, 1, 1, 0, 0)},
                      ConvCase{"winograd_pad2_b1", conv_shape(1, 2, 4, 3, 2, 3, 3, 1, 1, 2, 2)},
                      ConvCase{"winograd_17_wide_b1", conv_shape(1, 2, 3, 17, 2, 3, 3, 1, 1, 1, 1)}),
    conv_case_name);

// With accumulate, dL_dW and dL_db add to what is there (two steps: dy1 then dy2 must equal one
// step on dy1 + dy2, as the gradient is linear in dy) and dL_dx is still overwritten. Tolerance
// 1e-5 * (|a| + |b|) + 1e-6 covers the extra roundings of summing in another order.
TEST(ConvBackwardAccumulate, AddsToWeightAndBiasGradients) {
    for (const ConvShape& s : {conv_shape(2, 2, 9, 7, 3, 3, 3, 2, 2, 1, 1), conv_shape(2, 3, 4, 5, 2, 1, 1, 1, 1, 0, 0)}) {
        std::mt19937 rng(99);
        const auto x = randn(x_size(s), rng), W = randn(s.n_weights(), rng, 0.5f);
        const auto dy1 = randn(y_size(s), rng), dy2 = randn(y_size(s), rng);
        std::vector<float> dy12(dy1.size());
        for (std::size_t i = 0; i < dy1.size(); ++i) dy12[i] = dy1[i] + dy2[i];

        const auto prior_W = randn(s.n_weights(), rng), prior_b = randn(s.c_out, rng);
        std::vector<float> dW = prior_W, db = prior_b, dx(x.size(), 12345.0f);
        cpu::conv2d_backward(s, x.data(), W.data(), dy1.data(), dW.data(), db.data(), dx.data(), true);
        cpu::conv2d_backward(s, x.data(), W.data(), dy2.data(), dW.data(), db.data(), dx.data(), true);

        // References: one step on dy1 + dy2 for dL_dW and dL_db, the dy2 step alone for dL_dx.
        std::vector<float> dW12(dW.size()), db12(db.size()), dW2(dW.size()), db2(db.size()), dx2(x.size());
        cpu::conv2d_backward(s, x.data(), W.data(), dy12.data(), dW12.data(), db12.data(), nullptr);
        cpu::conv2d_backward(s, x.data(), W.data(), dy2.data(), dW2.data(), db2.data(), dx2.data());

        for (std::size_t i = 0; i < dW.size(); ++i)
            ASSERT_NEAR(dW[i], static_cast<double>(prior_W[i]) + dW12[i],
                        1e-5 * (std::fabs(prior_W[i]) + std::fabs(dW12[i])) + 1e-6)
                << "dL_dW " << i;
        for (std::size_t i = 0; i < db.size(); ++i)
            ASSERT_NEAR(db[i], static_cast<double>(prior_b[i]) + db12[i],
                        1e-5 * (std::fabs(prior_b[i]) + std::fabs(db12[i])) + 1e-6)
                << "dL_db " << i;
        // dx belongs to the last call only (dy2), whatever accumulate says.
        for (std::size_t i = 0; i < dx.size(); ++i) ASSERT_EQ(dx[i], dx2[i]) << "dL_dx " << i;
        EXPECT_TRUE(any_nonzero(dW12));
        EXPECT_TRUE(any_nonzero(dx2));
    }
}

// The batch sums of dL_dW and dL_db are the sums of per-sample gradients, and each sample's
// dL_dx is that sample's own (tolerance 1e-5 * sum of |per-sample terms| + 1e-6).
TEST(ConvBackwardBatch, EqualsSumOfPerSampleGradients) {
    const ConvShape s = conv_shape(3, 2, 8, 9, 3, 3, 3, 2, 2, 1, 1);
    ConvShape one = s;
    one.batch = 1;
    std::mt19937 rng(5);
    const auto x = randn(x_size(s), rng), W = randn(s.n_weights(), rng, 0.5f), dy = randn(y_size(s), rng);
    std::vector<float> dW(W.size()), db(s.c_out), dx(x.size());
    cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW.data(), db.data(), dx.data());

    std::vector<double> sum_W(W.size()), mag_W(W.size()), sum_b(s.c_out), mag_b(s.c_out);
    std::vector<float> dW1(W.size()), db1(s.c_out), dx1(x_size(one));
    for (std::size_t n = 0; n < s.batch; ++n) {
        cpu::conv2d_backward(one, x.data() + n * x_size(one), W.data(), dy.data() + n * y_size(one), dW1.data(),
                             db1.data(), dx1.data());
        for (std::size_t i = 0; i < W.size(); ++i) {
            sum_W[i] += dW1[i];
            mag_W[i] += std::fabs(dW1[i]);
        }
        for (std::size_t i = 0; i < s.c_out; ++i) {
            sum_b[i] += db1[i];
            mag_b[i] += std::fabs(db1[i]);
        }
        for (std::size_t i = 0; i < dx1.size(); ++i)
            ASSERT_NEAR(dx[n * x_size(one) + i], dx1[i], 1e-5 * std::fabs(dx1[i]) + 1e-6) << "sample " << n;
    }
    for (std::size_t i = 0; i < W.size(); ++i) ASSERT_NEAR(dW[i], sum_W[i], 1e-5 * mag_W[i] + 1e-6) << "dL_dW " << i;
    for (std::size_t i = 0; i < s.c_out; ++i) ASSERT_NEAR(db[i], sum_b[i], 1e-5 * mag_b[i] + 1e-6) << "dL_db " << i;
}

// The weight gradient sums over the batch in a fixed order: repeated calls agree bitwise, and
// skipping dL_dx changes nothing else. The shape is large enough for the threaded paths.
TEST(ConvBackwardBatch, IsReproducible) {
    const ConvShape s = conv_shape(4, 3, 28, 28, 8, 5, 5, 1, 1, 2, 2);
    std::mt19937 rng(8);
    const auto x = randn(x_size(s), rng), W = randn(s.n_weights(), rng, 0.2f), dy = randn(y_size(s), rng);
    std::vector<float> dW_a(W.size()), db_a(s.c_out), dx_a(x.size()), dW_b(W.size()), db_b(s.c_out),
        dx_b(x.size());
    cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW_a.data(), db_a.data(), dx_a.data());
    cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW_b.data(), db_b.data(), dx_b.data());
    EXPECT_EQ(dW_a, dW_b);
    EXPECT_EQ(db_a, db_b);
    EXPECT_EQ(dx_a, dx_b);
    cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW_b.data(), db_b.data(), nullptr);
    EXPECT_EQ(dW_a, dW_b);
    EXPECT_EQ(db_a, db_b);
    EXPECT_TRUE(any_nonzero(dW_a));
}

TEST(ConvBackwardBatch, EmptyBatchZeroesOrKeepsGradients) {
    ConvShape s = conv_shape(0, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1);
    std::vector<float> W(s.n_weights(), 1.0f), dW(W.size(), 7.0f), db(s.c_out, 7.0f);
    cpu::conv2d_backward(s, nullptr, W.data(), nullptr, dW.data(), db.data(), nullptr, true);
    EXPECT_EQ(dW, std::vector<float>(W.size(), 7.0f));
    EXPECT_EQ(db, std::vector<float>(s.c_out, 7.0f));
    cpu::conv2d_backward(s, nullptr, W.data(), nullptr, dW.data(), db.data(), nullptr);
    EXPECT_EQ(dW, std::vector<float>(W.size(), 0.0f));
    EXPECT_EQ(db, std::vector<float>(s.c_out, 0.0f));
}

namespace {

// The gradients by definition, in double: for every tap of every output, dL_dW += dy * x,
// dL_dx += dy * W, dL_db += dy.
void conv_backward_reference(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& W,
                             const std::vector<float>& dy, std::vector<double>& dW, std::vector<double>& db,
                             std::vector<double>& dx) {
    const std::size_t h_out = s.h_out(), w_out = s.w_out();
    dW.assign(s.n_weights(), 0.0);
    db.assign(s.c_out, 0.0);
    dx.assign(x_size(s), 0.0);
    for (std::size_t n = 0; n < s.batch; ++n)
        for (std::size_t co = 0; co < s.c_out; ++co)
            for (std::size_t oy = 0; oy < h_out; ++oy)
                for (std::size_t ox = 0; ox < w_out; ++ox) {
                    const double g = dy[((n * s.c_out + co) * h_out + oy) * w_out + ox];
                    db[co] += g;
                    for (std::size_t ci = 0; ci < s.c_in; ++ci)
                        for (std::size_t i = 0; i < s.kh; ++i)
                            for (std::size_t j = 0; j < s.kw; ++j) {
                                const long iy = static_cast<long>(oy * s.stride_h + i) - static_cast<long>(s.pad_h);
                                const long ix = static_cast<long>(ox * s.stride_w + j) - static_cast<long>(s.pad_w);
                                if (iy < 0 || ix < 0 || iy >= static_cast<long>(s.h_in) ||
                                    ix >= static_cast<long>(s.w_in))
                                    continue;
                                const std::size_t xi = ((n * s.c_in + ci) * s.h_in + static_cast<std::size_t>(iy)) *
                                                           s.w_in +
                                                       static_cast<std::size_t>(ix);
                                const std::size_t wi = ((co * s.c_in + ci) * s.kh + i) * s.kw + j;
                                dW[wi] += g * x[xi];
                                dx[xi] += g * W[wi];
                            }
                }
}

}  // namespace

class ConvBackwardExact : public ::testing::TestWithParam<ConvCase> {};

// Dyadic data (x and dy multiples of 1/4 up to 4, W multiples of 1/4 up to 1): every product
// and every partial sum (at most a few thousand terms of at most 4) is exact in float, so the
// gradients equal the definition bitwise however the batch is cut into chunks and summed.
TEST_P(ConvBackwardExact, ExactOnDyadicInputs) {
    const SmallWinogradTiles small;  // F(2x2, 3x3): exact on these data
    const ConvShape s = GetParam().shape;
    std::mt19937 rng(static_cast<unsigned>(x_size(s) * 7 + s.n_weights()));
    const auto x = dyadic(x_size(s), rng, -16, 16, 0.25f);
    const auto W = dyadic(s.n_weights(), rng, -4, 4, 0.25f);
    const auto dy = dyadic(y_size(s), rng, -16, 16, 0.25f);
    const float poison = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> dW(W.size(), poison), db(s.c_out, poison), dx(x.size(), poison);
    cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW.data(), db.data(), dx.data());
    std::vector<double> rW, rb, rx;
    conv_backward_reference(s, x, W, dy, rW, rb, rx);
    for (std::size_t i = 0; i < dW.size(); ++i) ASSERT_EQ(static_cast<double>(dW[i]), rW[i]) << "dL_dW " << i;
    for (std::size_t i = 0; i < db.size(); ++i) ASSERT_EQ(static_cast<double>(db[i]), rb[i]) << "dL_db " << i;
    for (std::size_t i = 0; i < dx.size(); ++i) ASSERT_EQ(static_cast<double>(dx[i]), rx[i]) << "dL_dx " << i;
    EXPECT_TRUE(any_nonzero(dW));
    EXPECT_TRUE(any_nonzero(dx));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvBackwardExact,
    ::testing::Values(ConvCase{"k3_same_b1", conv_shape(1, 3, 5, 7, 2, 3, 3, 1, 1, 1, 1)},
                      ConvCase{"k3_stride2_pad1_b3", conv_shape(3, 2, 7, 9, 2, 3, 3, 2, 2, 1, 1)},
                      ConvCase{"k1_pointwise_b5", conv_shape(5, 3, 4, 6, 2, 1, 1, 1, 1, 0, 0)},
                      // 7x7, Winograd: chunks of 32 samples backward, one full and one of 5.
                      ConvCase{"k3_same_7x7_b37_chunks", conv_shape(37, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1)},
                      // 32 samples per chunk at 5x5 (stride 2): one full chunk and one of 9.
                      ConvCase{"k5_stride2_pad2_b41_chunks", conv_shape(41, 2, 9, 10, 3, 5, 5, 2, 2, 2, 2)},
                      // Outputs 14 and 8 wide: col2im's fixed-width rows for 3x3 and 5x5 kernels
                      // (7 wide is the 7x7 case above).
                      ConvCase{"k3_same_14x14_b2", conv_shape(2, 3, 14, 14, 4, 3, 3, 1, 1, 1, 1)},
                      ConvCase{"winograd_pad0_odd_b3", conv_shape(3, 4, 9, 10, 5, 3, 3, 1, 1, 0, 0)},
                      ConvCase{"winograd_36_wide_b3", conv_shape(3, 2, 12, 36, 3, 3, 3, 1, 1, 1, 1)},
                      ConvCase{"winograd_pad2_b2", conv_shape(2, 3, 6, 5, 4, 3, 3, 1, 1, 2, 2)},
                      ConvCase{"k5_no_pad_12x12_b2", conv_shape(2, 3, 12, 12, 4, 5, 5, 1, 1, 0, 0)},
                      // One input channel: the direct weight gradient (cpu/conv_direct.h), taps in
                      // passes of up to 12 (9 and 12 in one, 25 as 8 + 8 + 9), rows with masked
                      // tails (28 = 3 * 8 + 4, 17, 21), chunks of 1 and of 2 samples.
                      ConvCase{"one_channel_k3_same_28x28_b3", conv_shape(3, 1, 28, 28, 6, 3, 3, 1, 1, 1, 1)},
                      ConvCase{"one_channel_k5_no_pad_b5_chunks", conv_shape(5, 1, 20, 21, 3, 5, 5, 1, 1, 0, 0)},
                      ConvCase{"one_channel_k3x4_pad1x2_b2", conv_shape(2, 1, 10, 20, 2, 3, 4, 1, 1, 1, 2)}),
    conv_case_name);

// The direct kernels take exactly the layers they are written for: one input channel, stride 1,
// outputs at least 16 wide, on a CPU with AVX2 and FMA (the first layers of cnn8 and lenet5).
TEST(ConvDirect, TakesOneChannelStrideOneLayersOnAvx2) {
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    EXPECT_EQ(cpu::conv_direct_applies(conv_shape(128, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1)), avx2);  // cnn8
    EXPECT_EQ(cpu::conv_direct_applies(conv_shape(128, 1, 28, 28, 20, 5, 5, 1, 1, 0, 0)), avx2);  // lenet5
    EXPECT_FALSE(cpu::conv_direct_applies(conv_shape(1, 2, 28, 28, 4, 3, 3, 1, 1, 1, 1)));        // 2 channels
    EXPECT_FALSE(cpu::conv_direct_applies(conv_shape(1, 1, 40, 40, 4, 3, 3, 2, 2, 1, 1)));        // stride 2
    EXPECT_FALSE(cpu::conv_direct_applies(conv_shape(1, 1, 5, 17, 4, 3, 3, 1, 1, 0, 0)));         // 15 wide
}

// Winograd's F(2x2, 3x3) takes the 3x3 stride-1 layers with several input channels (cnn8's second
// and third), on any CPU; not one-channel layers (the direct kernels or im2col), other kernels or
// strides.
TEST(ConvWinograd, TakesThreeByThreeStrideOneLayers) {
    EXPECT_TRUE(cpu::conv_winograd_applies(conv_shape(128, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1)));
    EXPECT_TRUE(cpu::conv_winograd_applies(conv_shape(128, 64, 7, 7, 128, 3, 3, 1, 1, 1, 1)));
    EXPECT_TRUE(cpu::conv_winograd_applies(conv_shape(1, 2, 5, 5, 1, 3, 3, 1, 1, 0, 0)));
    EXPECT_FALSE(cpu::conv_winograd_applies(conv_shape(128, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1)));  // 1 channel
    EXPECT_FALSE(cpu::conv_winograd_applies(conv_shape(1, 4, 14, 14, 4, 3, 3, 2, 2, 1, 1)));     // stride 2
    EXPECT_FALSE(cpu::conv_winograd_applies(conv_shape(1, 20, 12, 12, 50, 5, 5, 1, 1, 0, 0)));   // 5x5
    EXPECT_FALSE(cpu::conv_winograd_applies(conv_shape(1, 4, 1, 1, 4, 3, 3, 1, 1, 0, 0)));       // no output
    // F(4x4, 3x3) where its products are smaller, on CPUs with AVX2 and FMA: every output plane
    // larger than 2x2 (cnn8's 14x14: 36 x 16 against 16 x 49 multiply-adds per channel pair;
    // 7x7: 36 x 4 against 16 x 16); a 2x2 or 1-wide plane keeps F(2x2, 3x3).
    const ConvShape cnn8_2 = conv_shape(128, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1);
    const ConvShape cnn8_3 = conv_shape(128, 64, 7, 7, 128, 3, 3, 1, 1, 1, 1);
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    EXPECT_EQ(cpu::winograd_tile(cnn8_2), avx2 ? 4u : 2u);
    EXPECT_EQ(cpu::winograd_tile(cnn8_3), avx2 ? 4u : 2u);
    EXPECT_EQ(cpu::winograd_tile(conv_shape(1, 4, 2, 2, 4, 3, 3, 1, 1, 1, 1)), 2u);
    EXPECT_EQ(cpu::winograd_tile(conv_shape(1, 4, 9, 1, 4, 3, 3, 1, 1, 1, 1)), 2u);
    // A chunk is a power of two of samples, at most the batch; a plane of more tiles than the
    // most is a chunk alone. F(2x2, 3x3): at most 128 tiles forward and 512 backward, 2 and 8 at
    // 14x14 (49 tiles each), 8 and 32 at 7x7 (16 each). F(4x4, 3x3): 64 and 256, 4 and 16 at
    // 14x14 (16 tiles each), 16 and 64 at 7x7 (4 each).
    EXPECT_EQ(cpu::winograd_chunk_samples(cnn8_2, false), avx2 ? 4u : 2u);
    EXPECT_EQ(cpu::winograd_chunk_samples(cnn8_2, true), avx2 ? 16u : 8u);
    EXPECT_EQ(cpu::winograd_chunk_samples(cnn8_3, false), avx2 ? 16u : 8u);
    EXPECT_EQ(cpu::winograd_chunk_samples(cnn8_3, true), avx2 ? 64u : 32u);
    EXPECT_EQ(cpu::winograd_chunk_samples(conv_shape(3, 64, 7, 7, 128, 3, 3, 1, 1, 1, 1), true), 3u);
    EXPECT_EQ(cpu::winograd_chunk_samples(conv_shape(5, 2, 40, 40, 3, 3, 3, 1, 1, 1, 1), false), 1u);
    EXPECT_EQ(cpu::chunk_samples(cnn8_3, true), avx2 ? 64u : 32u);
    {
        const SmallWinogradTiles small;
        EXPECT_EQ(cpu::winograd_tile(cnn8_3), 2u);
        EXPECT_EQ(cpu::winograd_chunk_samples(cnn8_2, false), 2u);
        EXPECT_EQ(cpu::winograd_chunk_samples(cnn8_3, true), 32u);
    }
}

// F(4x4, 3x3)'s rounding, as the backend-parity harness sees it (tests/test_parity.cpp compares
// convolutions with cuDNN's at a normalized RMS error of 1e-5): its outputs and gradients, against
// the double reference on the harness's data (uniform in [-1, 1], weights in [-0.3, 0.3]), stay
// below 5e-6 on cnn8's layers and the harness's Winograd shapes (0.6e-6 to 1.9e-6 measured).
TEST(ConvWinograd, LargeTilesKeepTheNormalizedErrorSmall) {
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        GTEST_SKIP() << "F(4x4, 3x3) needs AVX2 and FMA";
    auto nrmse = [](const std::vector<float>& a, const std::vector<double>& r) {
        double num = 0.0, den = 0.0;
        for (std::size_t i = 0; i < a.size(); ++i) {
            num += (a[i] - r[i]) * (a[i] - r[i]);
            den += r[i] * r[i];
        }
        return std::sqrt(num / den);
    };
    for (const ConvShape& s : {conv_shape(3, 32, 7, 7, 16, 3, 3, 1, 1, 1, 1), conv_shape(2, 4, 37, 37, 5, 3, 3, 1, 1, 0, 0),
                               conv_shape(4, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1), conv_shape(4, 64, 7, 7, 128, 3, 3, 1, 1, 1, 1)}) {
        SCOPED_TRACE(std::to_string(s.c_in) + " channels, " + std::to_string(s.h_in) + " x " + std::to_string(s.w_in));
        ASSERT_EQ(cpu::winograd_tile(s), 4u);
        std::mt19937 rng(13);
        std::uniform_real_distribution<float> u(-1.0f, 1.0f), uw(-0.3f, 0.3f);
        std::vector<float> x(x_size(s)), W(s.n_weights()), b(s.c_out), dy(y_size(s));
        for (auto& v : x) v = u(rng);
        for (auto& v : W) v = uw(rng);
        for (auto& v : b) v = u(rng);
        for (auto& v : dy) v = u(rng);
        std::vector<float> y(y_size(s)), dW(W.size()), db(s.c_out), dx(x.size());
        cpu::conv2d_forward(s, x.data(), W.data(), b.data(), y.data());
        cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW.data(), db.data(), dx.data());
        std::vector<double> mag, rW, rb, rx;
        const auto ry = conv_reference(s, x, W, b, mag);
        conv_backward_reference(s, x, W, dy, rW, rb, rx);
        EXPECT_LT(nrmse(y, ry), 5e-6);
        EXPECT_LT(nrmse(dW, rW), 5e-6);
        EXPECT_LT(nrmse(dx, rx), 5e-6);
    }
}

// The chunks of a batch spread over the threads (and, for a single chunk, the blocks of its
// GEMMs): forward and backward must give the same bits at 1, 2 and 3 threads. The first shape
// has 5 chunks forward (8 samples each, the last 5) and 2 backward (32, 5), enough work for the
// threaded loop over chunks; the second has chunks of 2 samples forward and is one chunk of 3
// backward, whose GEMMs and transforms spread over the threads (both are Winograd layers); the third has one input channel (the direct kernels), a sample per
// chunk; the fourth is 5x5 (im2col and col2im), one chunk of 3.
TEST(ConvThreads, SameBitsAtAnyThreadCount) {
    for (const ConvShape& s :
         {conv_shape(37, 8, 7, 7, 16, 3, 3, 1, 1, 1, 1), conv_shape(3, 8, 16, 16, 16, 3, 3, 1, 1, 1, 1),
          conv_shape(9, 1, 28, 28, 8, 3, 3, 1, 1, 1, 1), conv_shape(3, 8, 12, 12, 16, 5, 5, 1, 1, 2, 2)}) {
        std::mt19937 rng(11);
        const auto x = randn(x_size(s), rng), W = randn(s.n_weights(), rng, 0.2f), b = randn(s.c_out, rng);
        const auto dy = randn(y_size(s), rng);
        std::vector<std::vector<float>> ys, dWs, dbs, dxs;
        const int saved = omp_get_max_threads();
        for (int threads : {1, 2, 3}) {
            omp_set_num_threads(threads);
            std::vector<float> y(y_size(s)), dW(W.size()), db(s.c_out), dx(x.size());
            cpu::conv2d_forward(s, x.data(), W.data(), b.data(), y.data());
            cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW.data(), db.data(), dx.data());
            ys.push_back(y);
            dWs.push_back(dW);
            dbs.push_back(db);
            dxs.push_back(dx);
        }
        omp_set_num_threads(saved);
        EXPECT_TRUE(any_nonzero(ys[0]));
        EXPECT_TRUE(any_nonzero(dWs[0]));
        for (std::size_t r = 1; r < ys.size(); ++r) {
            EXPECT_EQ(ys[r], ys[0]) << "y, run " << r;
            EXPECT_EQ(dWs[r], dWs[0]) << "dL_dW, run " << r;
            EXPECT_EQ(dbs[r], dbs[0]) << "dL_db, run " << r;
            EXPECT_EQ(dxs[r], dxs[0]) << "dL_dx, run " << r;
        }
    }
}

// ---- pooling -----------------------------------------------------------------------------------------

namespace {

PoolShape pool_shape(std::size_t batch, std::size_t channels, std::size_t h_in, std::size_t w_in, std::size_t kh,
                     std::size_t kw, std::size_t stride_h, std::size_t stride_w, std::size_t pad_h, std::size_t pad_w) {
    return PoolShape{batch, channels, h_in, w_in, kh, kw, stride_h, stride_w, pad_h, pad_w};
}

std::size_t x_size(const PoolShape& s) { return s.batch * s.channels * s.h_in * s.w_in; }
std::size_t y_size(const PoolShape& s) { return s.batch * s.channels * s.h_out() * s.w_out(); }

// Calls visit(plane, oy, ox, iy, ix) for every input position inside the window of every output,
// in row-major window order; padded positions are not visited.
template <class Visit>
void for_each_window_tap(const PoolShape& s, Visit visit) {
    for (std::size_t p = 0; p < s.batch * s.channels; ++p)
        for (std::size_t oy = 0; oy < s.h_out(); ++oy)
            for (std::size_t ox = 0; ox < s.w_out(); ++ox)
                for (std::size_t i = 0; i < s.kh; ++i)
                    for (std::size_t j = 0; j < s.kw; ++j) {
                        const long iy = static_cast<long>(oy * s.stride_h + i) - static_cast<long>(s.pad_h);
                        const long ix = static_cast<long>(ox * s.stride_w + j) - static_cast<long>(s.pad_w);
                        if (iy >= 0 && ix >= 0 && iy < static_cast<long>(s.h_in) && ix < static_cast<long>(s.w_in))
                            visit(p, oy, ox, static_cast<std::size_t>(iy), static_cast<std::size_t>(ix));
                    }
}

std::vector<double> maxpool_reference(const PoolShape& s, const std::vector<float>& x) {
    std::vector<double> y(y_size(s), -std::numeric_limits<double>::infinity());
    for_each_window_tap(s, [&](std::size_t p, std::size_t oy, std::size_t ox, std::size_t iy, std::size_t ix) {
        double& out = y[(p * s.h_out() + oy) * s.w_out() + ox];
        out = std::max(out, static_cast<double>(x[(p * s.h_in + iy) * s.w_in + ix]));
    });
    return y;
}

// abs_mean receives sum |x| / (kh*kw) per output, the scale of its rounding error.
std::vector<double> avgpool_reference(const PoolShape& s, const std::vector<float>& x, std::vector<double>& abs_mean) {
    std::vector<double> y(y_size(s), 0.0);
    abs_mean.assign(y.size(), 0.0);
    const double area = static_cast<double>(s.kh * s.kw);
    for_each_window_tap(s, [&](std::size_t p, std::size_t oy, std::size_t ox, std::size_t iy, std::size_t ix) {
        const std::size_t o = (p * s.h_out() + oy) * s.w_out() + ox;
        const double v = x[(p * s.h_in + iy) * s.w_in + ix];
        y[o] += v / area;
        abs_mean[o] += std::fabs(v) / area;
    });
    return y;
}

struct PoolCase {
    std::string name;
    PoolShape shape;
};

std::string pool_case_name(const ::testing::TestParamInfo<PoolCase>& info) { return info.param.name; }
void PrintTo(const PoolCase& c, std::ostream* os) { *os << c.name; }

}  // namespace

class Pool : public ::testing::TestWithParam<PoolCase> {};

// Max selects an input, so it must equal the reference exactly. Mostly negative inputs (mean
// -1) make a padded position counted as 0 win visibly.
TEST_P(Pool, MaxForwardMatchesNaiveReference) {
    const PoolShape s = GetParam().shape;
    std::mt19937 rng(static_cast<unsigned>(x_size(s) + 1));
    auto x = randn(x_size(s), rng);
    for (auto& v : x) v -= 1.0f;
    std::vector<float> y(y_size(s), std::numeric_limits<float>::quiet_NaN());
    cpu::maxpool2d_forward(s, x.data(), y.data());
    const auto ref = maxpool_reference(s, x);
    for (std::size_t i = 0; i < y.size(); ++i) ASSERT_EQ(static_cast<double>(y[i]), ref[i]) << "output " << i;
    EXPECT_TRUE(any_nonzero(y));
}

// A float sum of kh*kw terms and one division: within (kh*kw + 1) * 2^-24 * sum |x| / (kh*kw).
TEST_P(Pool, AvgForwardMatchesNaiveReference) {
    const PoolShape s = GetParam().shape;
    std::mt19937 rng(static_cast<unsigned>(x_size(s) + 2));
    const auto x = randn(x_size(s), rng);
    std::vector<float> y(y_size(s), std::numeric_limits<float>::quiet_NaN());
    cpu::avgpool2d_forward(s, x.data(), y.data());
    std::vector<double> mag;
    const auto ref = avgpool_reference(s, x, mag);
    const double rel = static_cast<double>(s.kh * s.kw + 1) * kUnit;
    for (std::size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], rel * mag[i]) << "output " << i;
    EXPECT_TRUE(any_nonzero(y));
}

// Distinct inputs 0.01 apart and h = 1e-3: no argmax changes under the step, each output moves
// by exactly the step of its winning input, so the differences are exact up to double rounding
// (atol 1e-5, rtol 1e-5).
TEST_P(Pool, MaxBackwardMatchesFiniteDifferences) {
    const PoolShape s = GetParam().shape;
    std::mt19937 rng(static_cast<unsigned>(x_size(s) + 3));
    auto x = distinct_values(x_size(s), rng);
    const auto r = randn(y_size(s), rng);
    std::vector<float> y(y_size(s)), dx(x.size(), std::numeric_limits<float>::quiet_NaN());
    cpu::maxpool2d_forward(s, x.data(), y.data());
    cpu::maxpool2d_backward(s, x.data(), y.data(), r.data(), dx.data());
    auto J = [&]() {
        cpu::maxpool2d_forward(s, x.data(), y.data());
        return weighted_sum(y, r);
    };
    EXPECT_TRUE(matches_finite_differences(x, dx, J, 1e-3, 1e-5, 1e-5, 300));
}

// Linear, so h = 0.5; float rounding of y over the outputs stays well under atol = 1e-4,
// rtol = 1e-4.
TEST_P(Pool, AvgBackwardMatchesFiniteDifferences) {
    const PoolShape s = GetParam().shape;
    std::mt19937 rng(static_cast<unsigned>(x_size(s) + 4));
    auto x = randn(x_size(s), rng);
    const auto r = randn(y_size(s), rng);
    std::vector<float> y(y_size(s)), dx(x.size(), std::numeric_limits<float>::quiet_NaN());
    cpu::avgpool2d_backward(s, r.data(), dx.data());
    auto J = [&]() {
        cpu::avgpool2d_forward(s, x.data(), y.data());
        return weighted_sum(y, r);
    };
    EXPECT_TRUE(matches_finite_differences(x, dx, J, 0.5, 1e-4, 1e-4, 300));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Pool,
    ::testing::Values(
        // name, shape: batch, channels, h_in, w_in, kh, kw, stride_h, stride_w, pad_h, pad_w
        PoolCase{"k2_stride2_odd_floor", pool_shape(2, 3, 7, 7, 2, 2, 2, 2, 0, 0)},
        PoolCase{"k3_stride2_pad1", pool_shape(1, 2, 9, 11, 3, 3, 2, 2, 1, 1)},
        PoolCase{"k3_stride1_pad1", pool_shape(2, 1, 8, 7, 3, 3, 1, 1, 1, 1)},
        PoolCase{"k2_stride3_gaps", pool_shape(1, 3, 10, 9, 2, 2, 3, 3, 0, 0)},
        PoolCase{"k3x2_stride2x1_pad1x0", pool_shape(2, 2, 11, 13, 3, 2, 2, 1, 1, 0)},
        PoolCase{"k5_stride1_pad2", pool_shape(1, 2, 5, 5, 5, 5, 1, 1, 2, 2)},
        PoolCase{"k3_pad1_on_1x1_input", pool_shape(3, 1, 1, 1, 3, 3, 1, 1, 1, 1)},
        PoolCase{"k4_stride3_pad2", pool_shape(1, 1, 13, 10, 4, 4, 3, 3, 2, 2)},
        // Large enough for the threaded loop over planes.
        PoolCase{"k2_stride2_28x28_threaded", pool_shape(2, 16, 28, 28, 2, 2, 2, 2, 0, 0)}),
    pool_case_name);

// Equal maxima in a window: the first in row-major order gets the whole gradient, also where
// overlapping windows (stride 1) share tied positions.
TEST(MaxPoolTies, FirstMaximumInRowMajorOrderGetsTheGradient) {
    {
        const PoolShape s = pool_shape(1, 1, 4, 4, 2, 2, 2, 2, 0, 0);
        // clang-format off
        const std::vector<float> x = {5, 5, 1, 3,
                                      5, 5, 3, 2,
                                      0, 0, 4, 1,
                                      7, 7, 2, 4};
        // clang-format on
        const std::vector<float> dy = {1, 2, 4, 8};
        std::vector<float> y(4), dx(16, -1.0f);
        cpu::maxpool2d_forward(s, x.data(), y.data());
        EXPECT_EQ(y, (std::vector<float>{5, 3, 7, 4}));
        cpu::maxpool2d_backward(s, x.data(), y.data(), dy.data(), dx.data());
        // clang-format off
        EXPECT_EQ(dx, (std::vector<float>{1, 0, 0, 2,
                                          0, 0, 0, 0,
                                          0, 0, 8, 0,
                                          4, 0, 0, 0}));
        // clang-format on
    }
    {
        // 3x3 input of equal values, 2x2 windows at stride 1: every window's first position wins.
        const PoolShape s = pool_shape(1, 1, 3, 3, 2, 2, 1, 1, 0, 0);
        const std::vector<float> x(9, 2.0f), dy = {1, 2, 4, 8};
        std::vector<float> y(4), dx(9, -1.0f);
        cpu::maxpool2d_forward(s, x.data(), y.data());
        cpu::maxpool2d_backward(s, x.data(), y.data(), dy.data(), dx.data());
        EXPECT_EQ(dx, (std::vector<float>{1, 2, 0, 4, 8, 0, 0, 0, 0}));
    }
}

// All inputs negative with padding 1: a padded position counted as 0 would win every border
// window. The maxima must be real inputs and the gradient must land on real inputs only.
TEST(MaxPoolPadding, PaddedPositionsNeverWin) {
    const PoolShape s = pool_shape(1, 1, 3, 3, 3, 3, 2, 2, 1, 1);  // 2x2 outputs, all at borders
    const std::vector<float> x = {-9, -8, -7, -6, -5, -4, -3, -2, -1};
    const std::vector<float> dy = {1, 2, 4, 8};
    std::vector<float> y(4), dx(9);
    cpu::maxpool2d_forward(s, x.data(), y.data());
    EXPECT_EQ(y, (std::vector<float>{-5, -4, -2, -1}));
    cpu::maxpool2d_backward(s, x.data(), y.data(), dy.data(), dx.data());
    EXPECT_EQ(dx, (std::vector<float>{0, 0, 0, 0, 1, 2, 0, 4, 8}));

    // A window whose real inputs are all -infinity still outputs -infinity and routes its
    // gradient to its first real position.
    const PoolShape s1 = pool_shape(1, 1, 1, 2, 3, 3, 1, 1, 1, 1);
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> x1 = {-inf, -inf}, dy1 = {1, 2};
    std::vector<float> y1(2), dx1(2);
    cpu::maxpool2d_forward(s1, x1.data(), y1.data());
    EXPECT_EQ(y1, (std::vector<float>{-inf, -inf}));
    cpu::maxpool2d_backward(s1, x1.data(), y1.data(), dy1.data(), dx1.data());
    EXPECT_EQ(dx1, (std::vector<float>{3, 0}));
}

TEST(MaxPoolNan, NanWinsItsWindow) {
    const PoolShape s = pool_shape(1, 1, 2, 4, 2, 2, 2, 2, 0, 0);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> x = {1, nan, 1, 2, 9, 3, 3, 0}, dy = {1, 2};
    std::vector<float> y(2), dx(8);
    cpu::maxpool2d_forward(s, x.data(), y.data());
    EXPECT_TRUE(std::isnan(y[0]));
    EXPECT_EQ(y[1], 3.0f);
    cpu::maxpool2d_backward(s, x.data(), y.data(), dy.data(), dx.data());
    EXPECT_EQ(dx, (std::vector<float>{0, 1, 0, 0, 0, 0, 2, 0}));
}

// The 2x2 stride-2 pool (both presets' pool) has a loop of its own; it must keep the window
// rule bit for bit: the first maximum in row-major order wins (so -0 before +0 gives -0, and
// the gradient goes to the first of equal maxima), infinities are ordinary values, a NaN wins
// its window (planes holding one take the general loop), and odd sizes drop the last row and
// column, whose gradient is 0. Inputs from {-inf, -1, -0, +0, 1, inf} tie often.
// Two shapes: outputs 4 wide (the scalar loop), and 18 wide (with AVX2: two vectors of 8 windows
// and a scalar tail of 2 per row).
TEST(MaxPool2x2, KeepsTheWindowRuleBitForBit) {
    for (const PoolShape& s :
         {pool_shape(3, 4, 7, 9, 2, 2, 2, 2, 0, 0), pool_shape(2, 3, 6, 37, 2, 2, 2, 2, 0, 0)}) {
        const float inf = std::numeric_limits<float>::infinity();
        const float values[] = {-inf, -1.0f, -0.0f, 0.0f, 1.0f, inf};
        std::mt19937 rng(21);
        std::vector<float> x(x_size(s));
        for (auto& v : x) v = values[rng() % 6];
        // plane 5, row 1, column 1: window (0, 0)
        x[5 * s.h_in * s.w_in + s.w_in + 1] = std::numeric_limits<float>::quiet_NaN();
        const auto dy = randn(y_size(s), rng);

        // The rule, spelled out: scan the window in row-major order; the first NaN wins, otherwise a
        // tap wins only when strictly greater than the best so far.
        std::vector<float> want_y(y_size(s)), want_dx(x.size(), 0.0f);
        const std::size_t h_out = s.h_out(), w_out = s.w_out();
        for (std::size_t p = 0; p < s.batch * s.channels; ++p)
            for (std::size_t oy = 0; oy < h_out; ++oy)
                for (std::size_t ox = 0; ox < w_out; ++ox) {
                    std::size_t arg = 0;
                    bool first = true;
                    for (std::size_t i = 0; i < 2; ++i)
                        for (std::size_t j = 0; j < 2; ++j) {
                            const std::size_t at = (p * s.h_in + 2 * oy + i) * s.w_in + 2 * ox + j;
                            if (first || (!std::isnan(x[arg]) && (std::isnan(x[at]) || x[at] > x[arg]))) arg = at;
                            first = false;
                        }
                    const std::size_t o = (p * h_out + oy) * w_out + ox;
                    want_y[o] = x[arg];
                    want_dx[arg] += dy[o];
                }
        std::vector<float> y(y_size(s), 7.0f), dx(x.size(), 7.0f);
        cpu::maxpool2d_forward(s, x.data(), y.data());
        cpu::maxpool2d_backward(s, x.data(), y.data(), dy.data(), dx.data());
        auto bits = [](float v) {
            std::uint32_t u;
            std::memcpy(&u, &v, sizeof u);
            return u;
        };
        std::size_t signed_zeros = 0;
        for (std::size_t i = 0; i < y.size(); ++i) {
            ASSERT_EQ(bits(y[i]), bits(want_y[i])) << "output " << i << ": " << y[i] << " vs " << want_y[i];
            signed_zeros += want_y[i] == 0.0f && std::signbit(want_y[i]);
        }
        for (std::size_t i = 0; i < dx.size(); ++i) ASSERT_EQ(bits(dx[i]), bits(want_dx[i])) << "dL_dx " << i;
        EXPECT_GT(signed_zeros, 0u);  // the data did produce -0 maxima
        EXPECT_TRUE(std::isnan(y[5 * h_out * w_out]));
    }
}

// Padding counts in the divisor: a corner window of a 3x3 pool with padding 1 averages 4 real
// inputs over 9 positions. Dyadic sums make the expected values exact up to one division.
TEST(AvgPoolPadding, DividesByFullWindowArea) {
    const PoolShape s = pool_shape(1, 1, 2, 2, 3, 3, 1, 1, 1, 1);  // 2x2 outputs, each sees all 4 inputs
    const std::vector<float> x = {1, 2, 4, 8}, dy = {9, 18, 27, 36};
    std::vector<float> y(4), dx(4);
    cpu::avgpool2d_forward(s, x.data(), y.data());
    EXPECT_EQ(y, std::vector<float>(4, 15.0f / 9.0f));
    cpu::avgpool2d_backward(s, dy.data(), dx.data());
    EXPECT_EQ(dx, std::vector<float>(4, 1.0f + 2.0f + 3.0f + 4.0f));
}

// ---- convolution and max-pool as one operation ------------------------------------------------------

namespace {

struct ConvPoolCase {
    std::string name;
    ConvShape conv;
    std::size_t kh, kw, stride, pad;  // the max-pool over the convolution's output
    bool nan;                         // a NaN in one input: NaN planes take the general window loop
    bool ties = false;                // small dyadic inputs and weights, no bias: windows tie often
};

PoolShape pool_of(const ConvPoolCase& c) {
    return pool_shape(c.conv.batch, c.conv.c_out, c.conv.h_out(), c.conv.w_out(), c.kh, c.kw, c.stride, c.stride,
                      c.pad, c.pad);
}

std::string conv_pool_case_name(const ::testing::TestParamInfo<ConvPoolCase>& info) { return info.param.name; }
void PrintTo(const ConvPoolCase& c, std::ostream* os) { *os << c.name; }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

class ConvMaxPool : public ::testing::TestWithParam<ConvPoolCase> {};

// The fused operation gives the bits of the two operations it replaces, forward and backward, at
// 1, 2 and 3 threads; each window's recorded winner holds the window's maximum; only the windows
// of NaN planes may hold a NaN.
TEST_P(ConvMaxPool, IsConvThenPoolBitForBit) {
    for (const bool large : {true, false}) {
    SCOPED_TRACE(large ? "Winograd tiles as winograd_tile gives" : "Winograd F(2x2, 3x3)");
    cpu::winograd_large_tiles_allowed() = large;
    const ConvPoolCase& c = GetParam();
    const ConvShape s = c.conv;
    const PoolShape p = pool_of(c);
    std::mt19937 rng(static_cast<unsigned>(x_size(s) * 13 + s.n_weights()));
    auto x = c.ties ? dyadic(x_size(s), rng, -2, 2, 0.5f) : randn(x_size(s), rng);
    if (c.nan) x[x.size() / 3] = std::numeric_limits<float>::quiet_NaN();
    const auto W = c.ties ? dyadic(s.n_weights(), rng, -1, 1, 1.0f) : randn(s.n_weights(), rng, 0.3f);
    const auto b = c.ties ? std::vector<float>(s.c_out, 0.0f) : randn(s.c_out, rng);
    const auto g = randn(y_size(p), rng);  // the pooled output's gradient

    std::vector<float> y(y_size(s)), pooled(y_size(p)), dy(y_size(s)), dW(W.size()), db(s.c_out), dx(x.size());
    cpu::conv2d_forward(s, x.data(), W.data(), b.data(), y.data());
    cpu::maxpool2d_forward(p, y.data(), pooled.data());
    cpu::maxpool2d_backward(p, y.data(), pooled.data(), g.data(), dy.data());
    cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW.data(), db.data(), dx.data());
    ASSERT_TRUE(any_nonzero(pooled));
    ASSERT_TRUE(any_nonzero(dx));

    const int saved = omp_get_max_threads();
    for (int threads : {1, 2, 3}) {
        SCOPED_TRACE("threads " + std::to_string(threads));
        omp_set_num_threads(threads);
        const float poison = std::numeric_limits<float>::quiet_NaN();
        std::vector<float> f_pooled(pooled.size(), poison), f_dW(W.size(), poison), f_db(s.c_out, poison),
            f_dx(x.size(), poison);
        std::vector<std::int32_t> arg(pooled.size(), -7);
        cpu::conv2d_maxpool_forward(s, p, x.data(), W.data(), b.data(), f_pooled.data(), arg.data());
        cpu::conv2d_maxpool_backward(s, p, x.data(), W.data(), arg.data(), g.data(), f_dW.data(), f_db.data(),
                                     f_dx.data());
        EXPECT_TRUE(same_bits(f_pooled, pooled));
        EXPECT_TRUE(same_bits(f_dW, dW));
        EXPECT_TRUE(same_bits(f_db, db));
        EXPECT_TRUE(same_bits(f_dx, dx));
        const std::size_t plane_in = p.h_in * p.w_in, plane_out = p.h_out() * p.w_out();
        for (std::size_t o = 0; o < arg.size(); ++o) {
            ASSERT_GE(arg[o], 0) << "window " << o;  // every window here holds input taps
            ASSERT_LT(static_cast<std::size_t>(arg[o]), plane_in) << "window " << o;
            const float at = y[o / plane_out * plane_in + static_cast<std::size_t>(arg[o])];
            if (std::isnan(pooled[o])) EXPECT_TRUE(std::isnan(at)) << "window " << o;
            else EXPECT_EQ(at, pooled[o]) << "window " << o;
        }
    }
    omp_set_num_threads(saved);
    std::size_t nans = 0;
    for (float v : pooled) nans += std::isnan(v);
    if (c.nan) EXPECT_GT(nans, 0u);
    else EXPECT_EQ(nans, 0u);
    }
    cpu::winograd_large_tiles_allowed() = true;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvMaxPool,
    ::testing::Values(
        // CNN8's three blocks at a small batch: 3x3 same convolutions, 2x2 pools (7x7 -> 3x3 drops
        // a row and a column), one-sample chunks at 28x28.
        ConvPoolCase{"cnn8_block1_b2", conv_shape(2, 1, 28, 28, 4, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, false},
        ConvPoolCase{"cnn8_block2_b5", conv_shape(5, 3, 14, 14, 4, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, false},
        ConvPoolCase{"cnn8_block3_odd_b37_chunks", conv_shape(37, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, false},
        // lenet5's: 5x5 valid convolutions, 2x2 pools.
        ConvPoolCase{"lenet5_block2_b3", conv_shape(3, 4, 12, 12, 6, 5, 5, 1, 1, 0, 0), 2, 2, 2, 0, false},
        // Overlapping padded windows (the general loop), and NaN planes.
        ConvPoolCase{"pool3_stride2_pad1_b3", conv_shape(3, 2, 9, 9, 3, 3, 3, 1, 1, 1, 1), 3, 3, 2, 1, false},
        ConvPoolCase{"nan_2x2_b4", conv_shape(4, 2, 10, 10, 3, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, true},
        ConvPoolCase{"nan_2x2_one_sample_chunks", conv_shape(2, 1, 28, 28, 2, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, true},
        // Ties in most windows, pools 14 and 18 wide (with AVX2: vectors of 8 windows and a tail):
        // the recorded winner must be the first maximum, as the separate pool's backward picks it.
        ConvPoolCase{"ties_cnn8_block1_b2", conv_shape(2, 1, 28, 28, 3, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, false, true},
        ConvPoolCase{"ties_2x2_18_wide_b3", conv_shape(3, 2, 12, 36, 3, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, false, true},
        // The pool inside Winograd's output transform (several input channels): rows of 4 tiles
        // two to a vector with pools 4 and 3 wide (the packing of the 3-wide ones), without
        // padding, with ties, and with NaN planes (pooled again by the general loop).
        ConvPoolCase{"winograd_8x8_b3", conv_shape(3, 2, 8, 8, 3, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, false},
        ConvPoolCase{"winograd_pad0_10x10_b2", conv_shape(2, 3, 10, 10, 4, 3, 3, 1, 1, 0, 0), 2, 2, 2, 0, false},
        ConvPoolCase{"ties_winograd_7x7_b5", conv_shape(5, 2, 7, 7, 3, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, false, true},
        ConvPoolCase{"nan_winograd_7x7_b3", conv_shape(3, 2, 7, 7, 3, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, true},
        ConvPoolCase{"nan_winograd_14x14_b2", conv_shape(2, 2, 14, 14, 3, 3, 3, 1, 1, 1, 1), 2, 2, 2, 0, true}),
    conv_pool_case_name);

// The AVX2 bodies of the 2x2 max-pool (with and without winners) and of the bias gradient's sums
// make the same comparisons and additions in the same order as the portable loops: with the
// convolution itself through the GEMM in both (two input channels), the fused operation gives
// the same bits either way, on data that ties often, and so does the plain pool on random data.
TEST(CpuSimd, PoolAndBiasSumsGiveTheSameBitsWithoutAvx2) {
    const SmallWinogradTiles small;  // the pools inside F(2x2, 3x3)'s transforms, with and without AVX2
    // Pools 18 wide (two vectors, the second moved back), 7 and 3 wide (one vector a row, the
    // last rows' stores masked), 3 wide from an odd 7 x 7 plane and 4 wide from an 8 x 8 one (the
    // last two in Winograd's transform of rows of 4 tiles, the others in its 8-tile blocks).
    for (const ConvShape& s : {conv_shape(3, 2, 12, 36, 3, 3, 3, 1, 1, 1, 1), conv_shape(5, 2, 14, 14, 3, 3, 3, 1, 1, 1, 1),
                               conv_shape(4, 2, 6, 6, 3, 3, 3, 1, 1, 1, 1), conv_shape(6, 3, 7, 7, 2, 3, 3, 1, 1, 1, 1),
                               conv_shape(3, 2, 8, 8, 3, 3, 3, 1, 1, 1, 1)}) {
        SCOPED_TRACE("pool " + std::to_string(s.h_out() / 2) + " x " + std::to_string(s.w_out() / 2));
        const PoolShape p = pool_shape(s.batch, s.c_out, s.h_out(), s.w_out(), 2, 2, 2, 2, 0, 0);
        std::mt19937 rng(5);
        const auto x = dyadic(x_size(s), rng, -2, 2, 0.5f), W = dyadic(s.n_weights(), rng, -1, 1, 1.0f);
        const std::vector<float> b(s.c_out, 0.0f);
        const auto g = randn(y_size(p), rng), r = randn(x_size(p), rng);
        struct Run {
            std::vector<float> pooled, dW, db, dx, plain;
            std::vector<std::int32_t> arg;
        };
        auto run = [&] {
            Run o{std::vector<float>(y_size(p)), std::vector<float>(W.size()), std::vector<float>(s.c_out),
                  std::vector<float>(x.size()), std::vector<float>(y_size(p)), std::vector<std::int32_t>(y_size(p))};
            cpu::conv2d_maxpool_forward(s, p, x.data(), W.data(), b.data(), o.pooled.data(), o.arg.data());
            cpu::conv2d_maxpool_backward(s, p, x.data(), W.data(), o.arg.data(), g.data(), o.dW.data(), o.db.data(),
                                         o.dx.data());
            cpu::maxpool2d_forward(p, r.data(), o.plain.data());
            return o;
        };
        const Run with = run();
        cpu::avx2_allowed() = false;
        const Run without = run();
        cpu::avx2_allowed() = true;
        EXPECT_TRUE(same_bits(with.pooled, without.pooled));
        EXPECT_EQ(with.arg, without.arg);
        EXPECT_TRUE(same_bits(with.dW, without.dW));
        EXPECT_TRUE(same_bits(with.db, without.db));
        EXPECT_TRUE(same_bits(with.dx, without.dx));
        EXPECT_TRUE(same_bits(with.plain, without.plain));
        EXPECT_TRUE(any_nonzero(with.db));
    }
}

// Winograd's transforms without AVX2 make the same operations in the same order as their AVX2
// loops (8 tiles at a time, masked at the planes' ends, overlapping input-gradient tiles added
// in the same order): the same bits on random data, for odd and even sizes, paddings 0 to 2, and
// rows of 1 to 3 blocks of tiles or of 4 tiles (two rows a block; an odd count of rows last); a
// single sample without a pool writes its output in place.
TEST(CpuSimd, WinogradGivesTheSameBitsWithoutAvx2) {
    const SmallWinogradTiles small;  // F(4x4, 3x3) has AVX2 loops only, and is not taken without them
    for (const ConvShape& s : {conv_shape(3, 3, 9, 10, 5, 3, 3, 1, 1, 0, 0), conv_shape(2, 2, 12, 36, 3, 3, 3, 1, 1, 1, 1),
                               conv_shape(1, 4, 7, 7, 6, 3, 3, 1, 1, 1, 1), conv_shape(2, 2, 5, 17, 3, 3, 3, 1, 1, 2, 2),
                               conv_shape(5, 3, 2, 3, 2, 3, 3, 1, 1, 1, 1), conv_shape(2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1),
                               conv_shape(3, 3, 5, 7, 4, 3, 3, 1, 1, 1, 1)}) {
        SCOPED_TRACE(std::to_string(s.h_in) + " x " + std::to_string(s.w_in) + ", pad " + std::to_string(s.pad_h));
        ASSERT_TRUE(cpu::conv_winograd_applies(s));
        std::mt19937 rng(9);
        const auto x = randn(x_size(s), rng), W = randn(s.n_weights(), rng, 0.3f), b = randn(s.c_out, rng);
        const auto dy = randn(y_size(s), rng);
        auto run = [&] {
            std::vector<std::vector<float>> o{std::vector<float>(y_size(s)), std::vector<float>(W.size()),
                                              std::vector<float>(s.c_out), std::vector<float>(x.size())};
            cpu::conv2d_forward(s, x.data(), W.data(), b.data(), o[0].data());
            cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), o[1].data(), o[2].data(), o[3].data());
            return o;
        };
        const auto with = run();
        cpu::avx2_allowed() = false;
        const auto without = run();
        cpu::avx2_allowed() = true;
        for (std::size_t k = 0; k < with.size(); ++k) {
            EXPECT_TRUE(same_bits(with[k], without[k])) << "output " << k << " (y, dW, db, dx)";
            EXPECT_TRUE(any_nonzero(with[k]));
        }
    }
}

// Without AVX2 a one-channel convolution goes through im2col and the GEMM: it must agree with the
// direct kernels within the rounding of a 9-term sum.
TEST(CpuSimd, OneChannelConvolutionAgreesWithoutAvx2) {
    const ConvShape s = conv_shape(2, 1, 28, 28, 6, 3, 3, 1, 1, 1, 1);
    std::mt19937 rng(9);
    const auto x = randn(x_size(s), rng), W = randn(s.n_weights(), rng, 0.5f), b = randn(s.c_out, rng);
    const auto dy = randn(y_size(s), rng);
    std::vector<float> y1(y_size(s)), y2(y_size(s)), dW1(W.size()), dW2(W.size()), db1(s.c_out), db2(s.c_out);
    cpu::conv2d_forward(s, x.data(), W.data(), b.data(), y1.data());
    cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW1.data(), db1.data(), nullptr);
    cpu::avx2_allowed() = false;
    cpu::conv2d_forward(s, x.data(), W.data(), b.data(), y2.data());
    cpu::conv2d_backward(s, x.data(), W.data(), dy.data(), dW2.data(), db2.data(), nullptr);
    cpu::avx2_allowed() = true;
    for (std::size_t i = 0; i < y1.size(); ++i) ASSERT_NEAR(y1[i], y2[i], 1e-5f * (1.0f + std::fabs(y2[i]))) << i;
    for (std::size_t i = 0; i < dW1.size(); ++i) ASSERT_NEAR(dW1[i], dW2[i], 1e-4f * (1.0f + std::fabs(dW2[i]))) << i;
    EXPECT_TRUE(same_bits(db1, db2));
}

TEST(ConvMaxPoolShapes, APoolNotOverTheConvolutionsOutputThrows) {
    const ConvShape s = conv_shape(2, 1, 8, 8, 3, 3, 3, 1, 1, 1, 1);  // output (2, 3, 8, 8)
    std::vector<float> x(x_size(s)), W(s.n_weights()), b(s.c_out), pooled(2 * 3 * 16), dW(W.size()), db(3);
    std::vector<std::int32_t> arg(pooled.size());
    for (const PoolShape& p : {pool_shape(2, 4, 8, 8, 2, 2, 2, 2, 0, 0), pool_shape(2, 3, 8, 7, 2, 2, 2, 2, 0, 0),
                               pool_shape(1, 3, 8, 8, 2, 2, 2, 2, 0, 0)}) {
        EXPECT_THROW(cpu::conv2d_maxpool_forward(s, p, x.data(), W.data(), b.data(), pooled.data(), arg.data()),
                     Error);
        EXPECT_THROW(cpu::conv2d_maxpool_backward(s, p, x.data(), W.data(), arg.data(), pooled.data(), dW.data(),
                                                  db.data(), nullptr),
                     Error);
    }
}
