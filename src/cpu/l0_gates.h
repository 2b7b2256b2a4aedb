// The CPU operations of L0 training with hard-concrete gates (Louizos et al. 2018; docs/method.md §7),
// the oracle of kernels/l0_gates.cu. Slabs are laid out by ParamLayout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/optimizer.h"
#include "core/sparsify.h"

namespace sparseprox {
namespace cpu {

// eff = theta with every weight multiplied by its gate's training sample for (seed, step);
// biases copied.
void l0_effective(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
                  const ParamLayout& layout, const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step,
                  float* eff);

// The gradients of one step: theta_grad (slab layout, weights only) = g z, and gate_grad (one per
// gate) = sum over the gate's weights of g theta dz/dlog_alpha, plus lambda_l per_gate p (1 - p),
// the derivative of the expected-L0 penalty. grads are w.r.t. the effective weights.
void l0_gradients(const float* theta, const float* log_alpha, const float* grads, const sparsify::GateLayout& gates,
                  const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step, const float* lambdas,
                  float* theta_grad, float* gate_grad);

// The update after a backward pass at the effective weights of the same (seed, step); grads are
// w.r.t. the effective parameters. theta_w takes the optimizer's step (core/optimizer.h) on g z,
// the biases on g (plain SGD with opt::kSgd); each log alpha takes an Adam step on
// sum_{its weights} g theta dz/dlog_alpha + lambda_l per_gate p (1 - p).
void l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
               const sparsify::GateLayout& gates, const ParamLayout& layout, const gates::HardConcrete& hc,
               std::uint64_t seed, std::uint64_t step, float lr, const float* lambdas,
               const sparsify::AdamStep& adam, const opt::State& theta_state, const opt::Step& opt_step);

// out = theta with the deterministic test-time gates (exact zeros where a gate is closed);
// nnz[l] = nonzero weights of layer l.
void l0_export(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
               const ParamLayout& layout, const gates::HardConcrete& hc, float* out, std::size_t* nnz);

}  // namespace cpu
}  // namespace sparseprox
