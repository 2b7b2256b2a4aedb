// The optimizers of every method (OptimizerKind, train.h) as per-element formulas shared by the
// CPU loops (src/cpu/optimizer_step.cpp and the l0 and spred updates) and the CUDA kernels
// (kernels/optimizer_step.cu, kernels/l0_gates.cu, kernels/spred.cu), like core/elementwise.h
// for the plain proximal step. README, "Optimizers and learning-rate schedules", derives them.
//
// One parameter w with gradient g (weight decay already added, except adamw's) and its state
// a (velocity, or Adam's first moment) and b (Adam's second moment) takes the step
//   sgd       y = w - lr g                                          eta = lr
//   momentum  a = mu a + g;                y = w - lr a             eta = lr c_t
//   nesterov  a = mu a + g;                y = w - lr (g + mu a)    eta = lr c_{t+1}
//   adam      a = b1 a + (1 - b1) g;  b = b2 b + (1 - b2) g^2;
//             eta = lr / (sqrt(b / (1 - b2^t)) + eps);  y = w - eta a / (1 - b1^t)
//   adamw     the same from w - (lr wd) w on weights (decoupled decay)
// with c_t = 1 + mu + ... + mu^(t-1) = (1 - mu^t) / (1 - mu). A weight under the l1 penalty
// then becomes S_{eta lambda}(y): the proximal step in the metric the optimizer's step implies
// (for Adam the diagonal one, lr / (sqrt(v_hat) + eps) per coordinate). eta is the total weight
// the step gives a constant gradient, so the fixed points of every optimizer are the stationary
// points of L + lambda ||w||_1 (at such a point g = -lambda sign(w) on the support, and the
// threshold takes back exactly what the step added).
//
// Every operation is one IEEE rounding on both backends (device code is compiled with
// --fmad=false and sqrtf/division are the correctly rounded ones), so CPU and CUDA agree bit
// for bit. The sgd kind is w - lr g exactly, the arithmetic of ew::sgd.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/elementwise.h"
#include "sparseprox/train.h"

namespace sparseprox {
namespace opt {

// Codes of OptimizerKind (train.h), in its order.
enum Kind : std::int32_t { kSgd = 0, kMomentum = 1, kNesterov = 2, kAdam = 3, kAdamW = 4 };

// One step's constants, built on the host for applied step t >= 1 (make_step, core/optimizer.cpp)
// and passed by value to the operations.
struct Step {
    std::int32_t kind = kSgd;
    float momentum = 0.0f;         // mu
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float correction1 = 1.0f;      // 1 - beta1^t (computed in double)
    float correction2 = 1.0f;      // 1 - beta2^t
    float threshold_scale = 1.0f;  // eta / lr for momentum (c_t) and nesterov (c_{t+1}); 1 otherwise
    float decay = 0.0f;            // adamw: the decoupled weight decay wd (weights only)
};

// Per-element state arrays, in the layout of the parameters they belong to (a slab), or null
// where the kind needs none (sgd: both; momentum and nesterov: b).
struct State {
    float* a = nullptr;
    float* b = nullptr;
};

// The constants of applied step t >= 1 of a run with these options; weight_decay is the run's
// (only adamw reads it here: the other kinds add it to the gradient).
Step make_step(const OptimizerOptions& options, float weight_decay, std::uint64_t t);

// The state slots a kind keeps per parameter.
SP_HD int slots(std::int32_t kind) { return kind == kSgd ? 0 : (kind == kMomentum || kind == kNesterov ? 1 : 2); }

// One optimizer step of parameter i without the penalty: returns y and sets *eta to the step size
// the l1 threshold is scaled by (eta lambda; see the file comment). weight: false for biases
// (no decoupled decay).
template <std::int32_t K>
SP_HD float descend_k(float w, float g, const State& st, std::uint64_t i, const Step& s, float lr, bool weight,
                      float* eta) {
    if (K == kMomentum || K == kNesterov) {
        const float a = s.momentum * st.a[i] + g;
        st.a[i] = a;
        *eta = lr * s.threshold_scale;
        return K == kMomentum ? w - lr * a : w - lr * (g + s.momentum * a);
    } else if (K == kAdam || K == kAdamW) {
        const float m = s.beta1 * st.a[i] + (1.0f - s.beta1) * g;
        const float v = s.beta2 * st.b[i] + (1.0f - s.beta2) * (g * g);
        st.a[i] = m;
        st.b[i] = v;
        const float m_hat = m / s.correction1;
        const float v_hat = v / s.correction2;
        const float step = lr / (sqrtf(v_hat) + s.eps);
        *eta = step;
        const float from = (K == kAdamW && weight) ? w - (lr * s.decay) * w : w;
        return from - step * m_hat;
    } else {
        *eta = lr;
        return w - lr * g;
    }
}

SP_HD float descend(float w, float g, const State& st, std::uint64_t i, const Step& s, float lr, bool weight,
                    float* eta) {
    switch (s.kind) {
        case kMomentum: return descend_k<kMomentum>(w, g, st, i, s, lr, weight, eta);
        case kNesterov: return descend_k<kNesterov>(w, g, st, i, s, lr, weight, eta);
        case kAdam: return descend_k<kAdam>(w, g, st, i, s, lr, weight, eta);
        case kAdamW: return descend_k<kAdamW>(w, g, st, i, s, lr, weight, eta);
        default: return descend_k<kSgd>(w, g, st, i, s, lr, weight, eta);
    }
}

// The step of a weight under the l1 penalty lambda: S_{eta lambda}(y). With sgd this is
// ew::prox_sgd(w, g, lr, lr * lambda) bit for bit.
template <std::int32_t K>
SP_HD float prox_descend_k(float w, float g, const State& st, std::uint64_t i, const Step& s, float lr, float lambda) {
    float eta = 0.0f;
    const float y = descend_k<K>(w, g, st, i, s, lr, true, &eta);
    return ew::soft_threshold(y, eta * lambda);
}

// The lazy l1 step (L1Form::lazy, docs/method.md §3.1) of a weight: its accumulated copy z takes
// the optimizer's step, z[i] <- y, and the weight becomes S_{lr lambda}(y), a threshold at a fixed
// level in the weights' units whatever step size the optimizer gives the coordinate. With sgd,
// y = z - lr g exactly.
template <std::int32_t K>
SP_HD float lazy_prox_descend_k(float* z, float g, const State& st, std::uint64_t i, const Step& s, float lr,
                                float lambda) {
    float eta = 0.0f;
    const float y = descend_k<K>(z[i], g, st, i, s, lr, true, &eta);
    z[i] = y;
    return ew::soft_threshold(y, lr * lambda);
}

// A pruned weight (mask 0) of gmp and fine-tuning: held at zero with its state cleared, so that
// nothing of it carries over.
SP_HD void clear(const State& st, std::uint64_t i) {
    if (st.a) st.a[i] = 0.0f;
    if (st.b) st.b[i] = 0.0f;
}

// Calls f(std::integral_constant<std::int32_t, K>{}) for a step's kind, so that the loops (CPU)
// and kernels (CUDA) are compiled once per kind with the kind known. Host code.
template <class F>
void dispatch(std::int32_t kind, F&& f) {
    switch (kind) {
        case kMomentum: return f(std::integral_constant<std::int32_t, kMomentum>{});
        case kNesterov: return f(std::integral_constant<std::int32_t, kNesterov>{});
        case kAdam: return f(std::integral_constant<std::int32_t, kAdam>{});
        case kAdamW: return f(std::integral_constant<std::int32_t, kAdamW>{});
        default: return f(std::integral_constant<std::int32_t, kSgd>{});
    }
}

}  // namespace opt
}  // namespace sparseprox
