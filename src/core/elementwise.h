// Per-element formulas shared by the CPU backend and the CUDA kernels. Under nvcc the functions
// are __host__ __device__; under a plain C++ compiler they are ordinary inline functions.
//
// Bitwise agreement between backends: the prox step is written with explicitly rounded products
// on the device (__fmul_rn/__fsub_rn) so nvcc cannot contract it into an FMA; the host compiler
// is not allowed to contract either (no -ffast-math, -ffp-contract=off for this project).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SP_HD __host__ __device__ __forceinline__
#else
#define SP_HD inline
#endif

namespace sparseprox {
namespace ew {

// S_tau(x) = sign(x) * max(|x| - tau, 0). Returns +0 when |x| <= tau, never flips a sign and is
// exact whenever |x| - tau is representable (e.g. dyadic inputs).
SP_HD float soft_threshold(float x, float tau) {
    const float a = fabsf(x) - tau;
    return a > 0.0f ? copysignf(a, x) : 0.0f;
}

// w - lr * g with one rounding per operation on both backends.
SP_HD float sgd(float w, float g, float lr) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(w, __fmul_rn(lr, g));
#else
    return w - lr * g;
#endif
}

// One proximal gradient step of a penalized weight: S_{lr*lambda}(w - lr * g); tau = lr*lambda
// is computed once per layer by the caller.
SP_HD float prox_sgd(float w, float g, float lr, float tau) { return soft_threshold(sgd(w, g, lr), tau); }

// ---- activations: y = f(x); df(x, y) is the derivative at x, given y = f(x) as well ------------
// Codes follow sparseprox::Activation: 0 identity, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid.
constexpr float kLeakySlope = 0.01f;

SP_HD float act_forward(int kind, float x) {
    switch (kind) {
        case 1: return x > 0.0f ? x : 0.0f;
        case 2: return x > 0.0f ? x : kLeakySlope * x;
        case 3: return tanhf(x);
        case 4: return 1.0f / (1.0f + expf(-x));
        default: return x;
    }
}

SP_HD float act_derivative(int kind, float x, float y) {
    switch (kind) {
        case 1: return x > 0.0f ? 1.0f : 0.0f;
        case 2: return x > 0.0f ? 1.0f : kLeakySlope;
        case 3: return 1.0f - y * y;
        case 4: return y * (1.0f - y);
        default: return 1.0f;
    }
}

// ---- per-sample losses (one row of a batch) ------------------------------------------------------

// sum_j (pred_j - target_j)^2 over n outputs, accumulated in double (each square is exact there);
// g (may be null) receives 2 (pred - target) * grad_scale.
SP_HD double squared_error_row(const float* pred, const float* target, std::uint64_t n, float grad_scale, float* g) {
    double sum = 0.0;
    for (std::uint64_t j = 0; j < n; ++j) {
        const float d = pred[j] - target[j];
        sum += static_cast<double>(d) * d;
        if (g) g[j] = 2.0f * d * grad_scale;
    }
    return sum;
}

// -log softmax(z)[label] over n logits, the log-sum-exp shifted by the row max, in float. g (may
// be null) receives (softmax - onehot) * grad_scale; *argmax the first maximal logit.
SP_HD float cross_entropy_row(const float* z, std::uint64_t label, std::uint64_t n, float grad_scale, float* g,
                              std::uint64_t* argmax) {
    std::uint64_t arg = 0;
    for (std::uint64_t c = 1; c < n; ++c)
        if (z[c] > z[arg]) arg = c;
    const float zmax = z[arg];
    float denom = 0.0f;
    for (std::uint64_t c = 0; c < n; ++c) denom += expf(z[c] - zmax);
    const float log_denom = logf(denom);
    if (g)
        for (std::uint64_t c = 0; c < n; ++c) {
            const float p = expf(z[c] - zmax - log_denom);
            g[c] = (p - (c == label ? 1.0f : 0.0f)) * grad_scale;
        }
    *argmax = arg;
    return log_denom - (z[label] - zmax);
}

}  // namespace ew
}  // namespace sparseprox
