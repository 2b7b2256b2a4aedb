// The sparsifier formulas of core/gates.h against closed forms, finite differences and
// statistics: hard-concrete gates (docs/method.md §7), the counter-based uniform, the GMP schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <set>

#include "core/gates.h"

using namespace sparseprox;
using namespace sparseprox::gates;

namespace {

const HardConcrete kHc;

double logit(double p) { return std::log(p / (1.0 - p)); }
double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The stretched, clamped sample in double precision, written from its definition.
double sample_ref(double u, double log_alpha) {
    const double s = sigmoid_d((logit(u) + log_alpha) / kHc.beta);
    const double s_bar = s * (kHc.zeta - kHc.gamma) + kHc.gamma;
    return std::min(1.0, std::max(0.0, s_bar));
}

TEST(HardConcrete, SampleMatchesItsDefinition) {
    EXPECT_NEAR(sample_gate(0.5f, 0.0f, kHc), 0.5f, 1e-7f);  // s = 1/2, s_bar = 0.6 - 0.1
    for (float u : {0.01f, 0.2f, 0.5f, 0.77f, 0.99f})
        for (float la : {-6.0f, -1.5f, 0.0f, 0.7f, 2.3f, 8.0f})
            EXPECT_NEAR(sample_gate(u, la, kHc), sample_ref(u, la), 2e-6) << "u " << u << " log_alpha " << la;
}

TEST(HardConcrete, StretchAndClampGiveExactZerosAndOnes) {
    // s_bar < 0 exactly when s < -gamma / (zeta - gamma) = 1/12: the gate is an exact 0.
    EXPECT_EQ(sample_gate(0.01f, -6.0f, kHc), 0.0f);
    EXPECT_EQ(sample_gate(0.99f, 8.0f, kHc), 1.0f);
    // Just around the lower edge: u with s = 1/12 exactly at log_alpha = 0.
    const double u_edge = sigmoid_d(kHc.beta * logit(1.0 / 12.0));
    EXPECT_EQ(sample_gate(static_cast<float>(u_edge * 0.99), 0.0f, kHc), 0.0f);
    EXPECT_GT(sample_gate(static_cast<float>(u_edge * 1.01), 0.0f, kHc), 0.0f);
}

TEST(HardConcrete, SampleGradientMatchesFiniteDifferences) {
    // Fixed noise u: d z / d log_alpha by central differences of the double-precision sample.
    for (float u : {0.1f, 0.35f, 0.5f, 0.8f})
        for (float la : {-1.0f, -0.2f, 0.0f, 0.4f, 1.3f}) {
            const double h = 1e-4;
            const double fd = (sample_ref(u, la + h) - sample_ref(u, la - h)) / (2 * h);
            EXPECT_NEAR(sample_gate_grad(u, la, kHc), fd, 1e-4 + 1e-3 * std::fabs(fd)) << u << " " << la;
        }
    EXPECT_EQ(sample_gate_grad(0.01f, -6.0f, kHc), 0.0f);  // clamped: no gradient
    EXPECT_EQ(sample_gate_grad(0.99f, 8.0f, kHc), 0.0f);
}

TEST(HardConcrete, ExpectedL0IsTheProbabilityOfANonzeroGate) {
    for (float la : {-3.0f, -0.5f, 0.0f, 1.0f, 4.0f}) {
        // P(z > 0) = P(u > sigmoid(beta logit(1/12) - log_alpha)), in closed form.
        const double p = 1.0 - sigmoid_d(kHc.beta * logit(1.0 / 12.0) - la);
        EXPECT_NEAR(expected_l0(la, kHc), p, 1e-6) << la;
        // And by sampling with the counter-based uniform: within 4 standard errors.
        const int n = 200000;
        int nonzero = 0;
        for (int i = 0; i < n; ++i) nonzero += sample_gate(uniform_open(7, 3, i), la, kHc) > 0.0f;
        const double se = std::sqrt(p * (1 - p) / n);
        EXPECT_NEAR(nonzero / double(n), p, 4 * se + 1e-9) << la;
        const double h = 1e-3;
        const double fd = (expected_l0(la + h, kHc) - expected_l0(la - h, kHc)) / (2 * h);
        EXPECT_NEAR(expected_l0_grad(la, kHc), fd, 1e-3) << la;
    }
}

TEST(HardConcrete, TestTimeGateAndInitialization) {
    EXPECT_NEAR(test_gate(0.0f, kHc), 0.5f, 1e-7f);
    EXPECT_EQ(test_gate(10.0f, kHc), 1.0f);
    EXPECT_EQ(test_gate(-10.0f, kHc), 0.0f);
    // Zero exactly when sigmoid(log_alpha) <= 1/12.
    EXPECT_EQ(test_gate(static_cast<float>(logit(1.0 / 12.0)) - 1e-3f, kHc), 0.0f);
    EXPECT_GT(test_gate(static_cast<float>(logit(1.0 / 12.0)) + 1e-3f, kHc), 0.0f);
    EXPECT_NEAR(initial_log_alpha(0.5f), 0.0f, 1e-7f);
    EXPECT_NEAR(initial_log_alpha(0.2f), std::log(4.0f), 1e-6f);
}

TEST(CounterUniform, OpenIntervalDeterministicAndUniform) {
    const int n = 100000, bins = 20;
    int count[bins] = {};
    double sum = 0, sq = 0;
    for (int i = 0; i < n; ++i) {
        const float u = uniform_open(42, 9, static_cast<std::uint64_t>(i));
        ASSERT_GT(u, 0.0f);
        ASSERT_LT(u, 1.0f);
        ASSERT_EQ(u, uniform_open(42, 9, static_cast<std::uint64_t>(i)));
        sum += u;
        sq += double(u) * u;
        ++count[static_cast<int>(u * bins)];
    }
    EXPECT_NEAR(sum / n, 0.5, 0.005);
    EXPECT_NEAR(sq / n - (sum / n) * (sum / n), 1.0 / 12.0, 0.002);
    double chi2 = 0;
    for (int b = 0; b < bins; ++b) chi2 += std::pow(count[b] - n / double(bins), 2) / (n / double(bins));
    EXPECT_LT(chi2, 43.8);  // the 0.999 quantile of chi-square with 19 degrees of freedom
    // Seed, step and index all change the draw.
    std::set<float> v{uniform_open(1, 1, 1), uniform_open(2, 1, 1), uniform_open(1, 2, 1), uniform_open(1, 1, 2)};
    EXPECT_EQ(v.size(), 4u);
}

// The extreme counter values: every 24-bit k maps strictly inside (0, 1), in order, and the
// counters whose bits are all zeros or all ones (found by search: 1 in 2^24 each) give the
// smallest and the largest draw. k = 2^24 - 1 used to round to exactly 1.0f, where
// log(1 - u) in sample_gate is -inf.
TEST(CounterUniform, ExtremeCountersStayInsideTheOpenInterval) {
    EXPECT_EQ(uniform_from_bits(0), 0x1p-25f);
    EXPECT_EQ(uniform_from_bits(0xFFFFFFu), 0x1.fffffep-1f);
    EXPECT_EQ(uniform_from_bits(0xFFFFFEu), 0x1.fffffcp-1f);  // k + 0.5 rounds to even: k
    EXPECT_EQ(uniform_from_bits((1u << 23) - 1), 0.5f - 0x1p-25f);
    float previous = 0.0f;
    for (std::uint32_t k = 0; k <= 0xFFFFFFu; ++k) {
        const float u = uniform_from_bits(k);
        ASSERT_GT(u, 0.0f) << "k = " << k;
        ASSERT_LT(u, 1.0f) << "k = " << k;
        ASSERT_GE(u, previous) << "k = " << k;
        previous = u;
    }
    // Whole draws through the counter: (seed 1, step 0) reaches both ends.
    ASSERT_EQ(uniform_bits(1, 0, 7855647), 0xFFFFFFu);
    ASSERT_EQ(uniform_bits(1, 0, 44373536), 0u);
    const float top = uniform_open(1, 0, 7855647), bottom = uniform_open(1, 0, 44373536);
    EXPECT_LT(top, 1.0f);
    EXPECT_EQ(top, 0x1.fffffep-1f);
    EXPECT_GT(bottom, 0.0f);
    EXPECT_EQ(bottom, 0x1p-25f);
    // Both give finite gate samples (log u and log(1 - u) finite).
    EXPECT_TRUE(std::isfinite(std::log(top) - std::log(1.0f - top)));
    EXPECT_TRUE(std::isfinite(std::log(bottom) - std::log(1.0f - bottom)));
    const float z_top = sample_gate(top, 0.0f, kHc), z_bottom = sample_gate(bottom, 0.0f, kHc);
    EXPECT_TRUE(z_top >= 0.0f && z_top <= 1.0f) << z_top;
    EXPECT_TRUE(z_bottom >= 0.0f && z_bottom <= 1.0f) << z_bottom;
    // Every other draw is the formula (k + 0.5) / 2^24 rounded to float, as before.
    for (std::uint64_t i = 0; i < 1000; ++i) {
        const std::uint32_t k = uniform_bits(42, 9, i);
        if (k == 0xFFFFFFu) continue;
        ASSERT_EQ(uniform_open(42, 9, i), (static_cast<float>(k) + 0.5f) * (1.0f / 16777216.0f));
    }
}

TEST(GmpSchedule, CubicSparsityAtChosenSteps) {
    // s_i = 0, s_f = 0.9, pruning from step 100 every 50 steps for 10 updates.
    EXPECT_EQ(gmp_sparsity(0, 0.0, 0.9, 100, 10, 50), 0.0);
    EXPECT_EQ(gmp_sparsity(100, 0.0, 0.9, 100, 10, 50), 0.0);
    EXPECT_NEAR(gmp_sparsity(350, 0.0, 0.9, 100, 10, 50), 0.9 - 0.9 * 0.125, 1e-12);  // half way
    EXPECT_NEAR(gmp_sparsity(150, 0.0, 0.9, 100, 10, 50), 0.9 - 0.9 * 0.729, 1e-12);  // (1 - 0.1)^3
    EXPECT_EQ(gmp_sparsity(600, 0.0, 0.9, 100, 10, 50), 0.9);
    EXPECT_EQ(gmp_sparsity(10000, 0.0, 0.9, 100, 10, 50), 0.9);
    // Monotone between the ends.
    for (int t = 100; t < 600; t += 10)
        EXPECT_LE(gmp_sparsity(t, 0.0, 0.9, 100, 10, 50), gmp_sparsity(t + 10, 0.0, 0.9, 100, 10, 50));
}

}  // namespace
