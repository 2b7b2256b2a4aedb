// Per-element formulas of the sparsifiers users compare l1 training with (docs/method.md §7), shared
// by the CPU backend and the CUDA kernels like core/elementwise.h:
//  - hard-concrete gates of L0 training (Louizos, Welling, Kingma 2018),
//  - the cubic sparsity schedule of gradual magnitude pruning (Zhu & Gupta 2017),
//  - a counter-based uniform draw, so that the CPU and the GPU sample the same gate noise for
//    the same seed, step and element, whatever order the elements are processed in.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/elementwise.h"

namespace sparseprox {
namespace gates {

// The hard-concrete distribution's defaults (docs/method.md §7).
struct HardConcrete {
    float beta = 2.0f / 3.0f;  // temperature
    float gamma = -0.1f;       // stretch interval (gamma, zeta)
    float zeta = 1.1f;
};

SP_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
SP_HD float clamp01(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }

// The training sample of a gate from u ~ U(0, 1):
//   s = sigmoid((log u - log(1 - u) + log_alpha) / beta),  s_bar = s (zeta - gamma) + gamma,
//   z = min(1, max(0, s_bar)).
SP_HD float sample_gate(float u, float log_alpha, const HardConcrete& hc) {
    const float s = sigmoid((logf(u) - logf(1.0f - u) + log_alpha) / hc.beta);
    return clamp01(s * (hc.zeta - hc.gamma) + hc.gamma);
}

// dz/d(log_alpha) of sample_gate at the same u: 0 where the clamp is active, else
// (zeta - gamma) s (1 - s) / beta.
SP_HD float sample_gate_grad(float u, float log_alpha, const HardConcrete& hc) {
    const float s = sigmoid((logf(u) - logf(1.0f - u) + log_alpha) / hc.beta);
    const float s_bar = s * (hc.zeta - hc.gamma) + hc.gamma;
    if (s_bar <= 0.0f || s_bar >= 1.0f) return 0.0f;
    return (hc.zeta - hc.gamma) * s * (1.0f - s) / hc.beta;
}

// P(z != 0) = sigmoid(log_alpha - beta log(-gamma / zeta)): the expected L0 contribution of one
// gate (times the number of weights it controls, times lambda, in the penalty).
SP_HD float expected_l0(float log_alpha, const HardConcrete& hc) {
    return sigmoid(log_alpha - hc.beta * logf(-hc.gamma / hc.zeta));
}

// d expected_l0 / d log_alpha = p (1 - p).
SP_HD float expected_l0_grad(float log_alpha, const HardConcrete& hc) {
    const float p = expected_l0(log_alpha, hc);
    return p * (1.0f - p);
}

// The deterministic test-time gate: min(1, max(0, sigmoid(log_alpha) (zeta - gamma) + gamma)).
SP_HD float test_gate(float log_alpha, const HardConcrete& hc) {
    return clamp01(sigmoid(log_alpha) * (hc.zeta - hc.gamma) + hc.gamma);
}

// log((1 - p) / p): the initial log_alpha for an initial drop rate p (0.5, or 0.2 for the input
// layer in the reference code).
inline float initial_log_alpha(float drop_rate) { return std::log((1.0f - drop_rate) / drop_rate); }

// ---- a counter-based uniform -------------------------------------------------------------------

// SplitMix64's finalizer: a bijective mix of 64 bits with full avalanche.
SP_HD std::uint64_t mix64(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// The 24 random bits behind uniform_open: the top bits of a double mix of (seed, step, index).
SP_HD std::uint32_t uniform_bits(std::uint64_t seed, std::uint64_t step, std::uint64_t index) {
    const std::uint64_t h = mix64(mix64(seed ^ mix64(step)) ^ index);
    return static_cast<std::uint32_t>(h >> 40);  // top 24 bits
}

// u = (k + 0.5) / 2^24 for 24 bits k, rounded to float, never 0 or 1. For k >= 2^23 the float
// sum k + 0.5 rounds (to even) onto an integer, and for k = 2^24 - 1 onto 2^24, i.e. u = 1:
// that one value is moved down to 1 - 2^-24 (which no other k gives), so every other draw is
// unchanged. The smallest value is 2^-25.
SP_HD float uniform_from_bits(std::uint32_t k) {
    const float u = (static_cast<float>(k & 0xFFFFFFu) + 0.5f) * (1.0f / 16777216.0f);
    return u < 1.0f ? u : 0x1.fffffep-1f;  // the largest float below 1
}

// u in (0, 1), never 0 or 1, from (seed, step, index): the same value on every backend and for
// every processing order. 24 random bits, centred in their cell (see uniform_from_bits).
SP_HD float uniform_open(std::uint64_t seed, std::uint64_t step, std::uint64_t index) {
    return uniform_from_bits(uniform_bits(seed, step, index));
}

// ---- gradual magnitude pruning -----------------------------------------------------------------

// The cubic schedule s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3 for t0 <= t <= t0 + n dt,
// s_i before and s_f after. Sparsities are fractions of zero weights.
inline double gmp_sparsity(double t, double s_initial, double s_final, double t0, double n, double dt) {
    if (t <= t0) return s_initial;
    const double span = n * dt;
    if (span <= 0.0 || t >= t0 + span) return s_final;
    const double left = 1.0 - (t - t0) / span;
    return s_final + (s_initial - s_final) * left * left * left;
}

}  // namespace gates
}  // namespace sparseprox
