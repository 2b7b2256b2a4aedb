// The soft-threshold and the fused CPU prox step: exact arithmetic on dyadic inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/elementwise.h"
#include "cpu/activation.h"
#include "cpu/axpy.h"
#include "cpu/count.h"
#include "cpu/dense.h"
#include "cpu/loss.h"
#include "cpu/prox_step.h"

using namespace sparseprox;

namespace {
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
// The ReLU backward loop picks d or d * 0 by a bit mask (so that it vectorizes): the same bits
// as dL_dy * act_derivative for every sign, zero, infinity and NaN, in place as the network
// calls it, over enough elements to take the threaded path too.
TEST(Activation, ReluBackwardIsTheFormulaBitForBit) {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const float xs[] = {-1.0f, -0.0f, 0.0f, 1e-30f, 2.0f, inf, -inf, nan};
    const float ds[] = {3.0f, -3.0f, 0.0f, -0.0f, inf, -inf, nan, 1e-20f};
    std::vector<float> x, d;
    for (int rep = 0; rep < 4096; ++rep)
        for (float xv : xs)
            for (float dv : ds) {
                x.push_back(xv * (rep % 2 ? 1.0f : 0.5f));
                d.push_back(dv);
            }
    std::vector<float> got = d;
    cpu::activation_backward(Activation::relu, x.data(), x.data(), got.data(), got.data(), x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const float want = d[i] * ew::act_derivative(1, x[i], x[i]);
        std::uint32_t a, b;
        std::memcpy(&a, &got[i], 4);
        std::memcpy(&b, &want, 4);
        if (std::isnan(want)) EXPECT_TRUE(std::isnan(got[i])) << i;
        else ASSERT_EQ(a, b) << "x " << x[i] << " d " << d[i];
    }
}

}  // namespace

TEST(SoftThreshold, ExactOnDyadicInputs) {
    // Every input and tau is k/2^10 with small k, so |x| - tau is exact in float.
    std::mt19937 rng(1);
    for (int trial = 0; trial < 20000; ++trial) {
        const int kx = static_cast<int>(rng() % 8193) - 4096;
        const int kt = static_cast<int>(rng() % 2049);
        const float x = std::ldexp(static_cast<float>(kx), -10);
        const float tau = std::ldexp(static_cast<float>(kt), -10);
        const int mag = std::abs(kx) - kt;
        const float expected = mag > 0 ? std::ldexp(static_cast<float>(kx > 0 ? mag : -mag), -10) : 0.0f;
        const float got = ew::soft_threshold(x, tau);
        ASSERT_TRUE(same_bits(got, expected)) << "x=" << x << " tau=" << tau << " got " << got;
    }
}

TEST(SoftThreshold, NeverFlipsSignAndGivesPositiveZero) {
    std::mt19937 rng(2);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (int i = 0; i < 100000; ++i) {
        const float x = n(rng), tau = std::fabs(n(rng));
        const float y = ew::soft_threshold(x, tau);
        ASSERT_TRUE(y == 0.0f || std::signbit(y) == std::signbit(x)) << x << " " << tau;
        ASSERT_LE(std::fabs(y), std::fabs(x));
        if (std::fabs(x) <= tau) ASSERT_TRUE(same_bits(y, 0.0f)) << "expected +0 for x=" << x;
    }
    EXPECT_TRUE(same_bits(ew::soft_threshold(-0.25f, 0.25f), 0.0f));
    EXPECT_TRUE(same_bits(ew::soft_threshold(-0.0f, 0.0f), 0.0f));
    EXPECT_EQ(ew::soft_threshold(-0.75f, 0.25f), -0.5f);
    EXPECT_EQ(ew::soft_threshold(0.75f, 0.0f), 0.75f);
}

TEST(ProxStep, FusedStepMatchesFormulaAndCountsPerLayer) {
    // Layers of odd sizes (1, 19x1, 111x19): dyadic weights, gradients, lr = 1/4 and
    // lambda = k/16, so every product and difference is exact.
    ModelSpec spec = ModelSpec::parse("dense:1-19-111-1:tanh");
    const ParamLayout layout = ParamLayout::of(spec);
    std::vector<float> params(layout.slab_size, 0.0f), grads(layout.slab_size, 0.0f);
    std::mt19937 rng(3);
    auto dyadic = [&rng]() { return std::ldexp(static_cast<float>(static_cast<int>(rng() % 257) - 128), -6); };
    for (const auto& s : layout.segments) {
        for (std::size_t i = 0; i < s.n_weights; ++i) params[s.weight_offset + i] = dyadic(), grads[s.weight_offset + i] = dyadic();
        for (std::size_t i = 0; i < s.n_bias; ++i) params[s.bias_offset + i] = dyadic(), grads[s.bias_offset + i] = dyadic();
    }
    // Marks in the padding must stay untouched.
    std::vector<float> before = params;
    for (std::size_t i = 0; i < params.size(); ++i) {
        bool inside = false;
        for (const auto& s : layout.segments)
            inside |= (i >= s.weight_offset && i < s.weight_offset + s.n_weights) ||
                      (i >= s.bias_offset && i < s.bias_offset + s.n_bias);
        if (!inside) params[i] = before[i] = 7.0f;
    }
    const float lr = 0.25f;
    const std::vector<float> lambdas = {0.5f, 0.125f, 1.0f};
    std::vector<std::size_t> nnz(3, 99);
    cpu::prox_step(params.data(), grads.data(), layout, lr, lambdas.data(), nnz.data());

    std::size_t nonzero_seen = 0;
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const auto& s = layout.segments[l];
        std::size_t count = 0;
        for (std::size_t i = 0; i < s.n_weights; ++i) {
            const double v = static_cast<double>(before[s.weight_offset + i]) - 0.25 * grads[s.weight_offset + i];
            const double t = 0.25 * lambdas[l];
            const double expect = std::fabs(v) > t ? std::copysign(std::fabs(v) - t, v) : 0.0;
            ASSERT_EQ(static_cast<double>(params[s.weight_offset + i]), expect) << "layer " << l << " i " << i;
            count += expect != 0.0;
        }
        EXPECT_EQ(nnz[l], count) << "layer " << l;
        nonzero_seen += count;
        for (std::size_t i = 0; i < s.n_bias; ++i)
            ASSERT_EQ(params[s.bias_offset + i], before[s.bias_offset + i] - 0.25f * grads[s.bias_offset + i]);
    }
    EXPECT_GT(nonzero_seen, 0u);
    EXPECT_LT(nonzero_seen, spec.n_weights());
    for (std::size_t i = 0; i < params.size(); ++i)
        if (before[i] == 7.0f) ASSERT_EQ(params[i], 7.0f) << "padding changed at " << i;
}

TEST(ProxStep, ZeroLambdaIsPlainSgdAndCountNonzero) {
    ModelSpec spec = ModelSpec::parse("dense:3-2");
    const ParamLayout layout = ParamLayout::of(spec);
    std::vector<float> p(layout.slab_size, 0.0f), g(layout.slab_size, 0.0f);
    for (std::size_t i = 0; i < 6; ++i) p[i] = 0.5f * static_cast<float>(i), g[i] = 1.0f;
    const float lambda = 0.0f;
    std::size_t nnz = 0;
    cpu::prox_step(p.data(), g.data(), layout, 0.5f, &lambda, &nnz);
    for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(p[i], 0.5f * static_cast<float>(i) - 0.5f);
    EXPECT_EQ(nnz, 5u);  // 0.5 - 0.5 = 0 exactly
    EXPECT_EQ(cpu::count_nonzero(p.data(), 6), 5u);
    EXPECT_EQ(cpu::count_nonzero(p.data(), 0), 0u);
}
