// The sparsifiers other than l1 (docs/method.md §7) as the engines run them: the per-run
// configuration, the gate layout of L0 training, the GMP pruning schedule, and the per-element
// update formulas shared by the CPU loops (src/cpu/l0_gates.cpp, spred.cpp, gmp.cpp) and the CUDA
// kernels (kernels/l0_gates.cu, spred.cu, gmp.cu), like core/elementwise.h for the l1 step.
//
// A training step of every method works on "effective" weights, the dense-shaped weights the
// network's forward and backward passes use, and on the method's own parameters:
//   l0     theta (the slab) and log alpha per gate:    effective w = theta * z,  z the gate's
//          hard-concrete sample for (seed, step, gate); exported w = theta * test_gate(log alpha)
//   spred  u (the slab) and v (one per weight):         effective w = u * v;
//          exported w = u * v where |u * v| > threshold, else 0
//   gmp    w (the slab) and a keep mask:                effective = exported = w (pruned = 0)
// Biases are plain SGD parameters in every method. The NNZ the engine reports, and the stop
// rule sees, is that of the exported weights.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/elementwise.h"
#include "core/gates.h"
#include "core/optimizer.h"
#include "core/records.h"
#include "sparseprox/model.h"
#include "sparseprox/train.h"

namespace sparseprox {
namespace sparsify {

struct GateLayout {
    std::vector<GateSegment> segments;  // one per weight layer
    std::size_t n_gates = 0;

    static GateLayout of(const ModelSpec& spec, const ParamLayout& layout, const L0Options& options);
};

// Everything an engine needs to run one method; built by make_method_config from the run's
// options and step budget.
struct MethodConfig {
    Method method = Method::l1;
    // l1: the lazy form (MethodOptions::l1; automatic has been resolved to greedy or lazy)
    bool l1_lazy = false;
    // l0
    gates::HardConcrete hc;
    L0Options l0;
    std::uint64_t seed = 0;  // gate noise: u = uniform_open(seed, step, gate)
    // spred
    float threshold = 0.0f;
    // gmp: the NNZ to reach (one total, or one per weight layer), the scope and the schedule in
    // steps (1-based counts of applied steps)
    std::vector<std::size_t> gmp_targets;
    bool gmp_per_layer = false;
    std::size_t gmp_begin = 0, gmp_end = 0, gmp_interval = 1;
};

// max_steps: the run's step budget (the GMP schedule is laid out on it).
MethodConfig make_method_config(const TrainOptions& options, std::size_t max_steps);

// The weights to keep after applied step t (t >= 1), one count per pruning scope (one scope for
// global pruning, else one per weight layer); empty when t is not a pruning step.
std::vector<std::size_t> gmp_keep(const MethodConfig& config, const ParamLayout& layout, std::size_t t);

// Adam's bias corrections 1 - beta^t for step t >= 1, computed in double on the host.
struct AdamStep {
    float lr = 0.0f;
    float correction1 = 1.0f;  // 1 - beta1^t
    float correction2 = 1.0f;  // 1 - beta2^t
};
constexpr float kAdamBeta1 = 0.9f, kAdamBeta2 = 0.999f, kAdamEps = 1e-8f;
AdamStep adam_step(float lr, std::uint64_t t);

// ---- per-element formulas -------------------------------------------------------------------------

// Adam on one parameter: updates the moments, returns the new value.
SP_HD float adam_apply(float p, float g, float& m, float& v, const AdamStep& a) {
    m = kAdamBeta1 * m + (1.0f - kAdamBeta1) * g;
    v = kAdamBeta2 * v + (1.0f - kAdamBeta2) * (g * g);
    const float m_hat = m / a.correction1;
    const float v_hat = v / a.correction2;
    return p - a.lr * m_hat / (sqrtf(v_hat) + kAdamEps);
}

// The gate's noise draw of a training step.
SP_HD float gate_noise(std::uint64_t seed, std::uint64_t step, std::uint64_t gate) {
    return gates::uniform_open(seed, step, gate);
}

// d(penalty)/d(log alpha) of one gate: lambda * per_gate * d sigmoid(...)/d log alpha.
SP_HD float l0_penalty_grad(float log_alpha, float lambda, float per_gate, const gates::HardConcrete& hc) {
    return lambda * per_gate * gates::expected_l0_grad(log_alpha, hc);
}

// spred: one SGD step of u and v on the loss gradient g (w.r.t. w = u v) plus the weight decay
// (lambda / 2)(u^2 + v^2); both from the old values.
SP_HD void spred_step(float& u, float& v, float g, float lr, float lambda) {
    const float gu = g * v + lambda * u;
    const float gv = g * u + lambda * v;
    u = u - lr * gu;
    v = v - lr * gv;
}

// spred with an optimizer (core/optimizer.h): u and v each take the optimizer's step on their
// gradients g v + lambda u and g u + lambda v, both from the old values; their states are slabs,
// i the slab index. With opt::kSgd this is spred_step bit for bit.
template <std::int32_t K>
SP_HD void spred_descend_k(float& u, float& v, float g, float lambda, const opt::State& su, const opt::State& sv,
                           std::uint64_t i, const opt::Step& s, float lr) {
    const float gu = g * v + lambda * u;
    const float gv = g * u + lambda * v;
    float eta = 0.0f;
    const float u_new = opt::descend_k<K>(u, gu, su, i, s, lr, true, &eta);
    v = opt::descend_k<K>(v, gv, sv, i, s, lr, true, &eta);
    u = u_new;
}

SP_HD void spred_descend(float& u, float& v, float g, float lambda, const opt::State& su, const opt::State& sv,
                         std::uint64_t i, const opt::Step& s, float lr) {
    switch (s.kind) {
        case opt::kMomentum: return spred_descend_k<opt::kMomentum>(u, v, g, lambda, su, sv, i, s, lr);
        case opt::kNesterov: return spred_descend_k<opt::kNesterov>(u, v, g, lambda, su, sv, i, s, lr);
        case opt::kAdam: return spred_descend_k<opt::kAdam>(u, v, g, lambda, su, sv, i, s, lr);
        case opt::kAdamW: return spred_descend_k<opt::kAdamW>(u, v, g, lambda, su, sv, i, s, lr);
        default: return spred_descend_k<opt::kSgd>(u, v, g, lambda, su, sv, i, s, lr);
    }
}

// spred's read-out of a weight: u v, or an exact zero at or below the threshold.
SP_HD float spred_readout(float u, float v, float threshold) {
    const float w = u * v;
    return fabsf(w) > threshold ? w : 0.0f;
}

// The balanced split of an initial weight: u = sign(w) sqrt|w|, v = sqrt|w| (so u v = w up to
// rounding, and |u| = |v|: the point where spred's penalty equals lambda |w|).
SP_HD float spred_split_u(float w) { return copysignf(sqrtf(fabsf(w)), w); }
SP_HD float spred_split_v(float w) { return sqrtf(fabsf(w)); }

}  // namespace sparsify
}  // namespace sparseprox
