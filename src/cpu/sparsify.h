// CPU operations of the l0, spred and gmp methods (core/sparsify.h): the engine's step and the
// oracle the CUDA kernels of kernels/sparsify.cu are compared against. Slabs are laid out by
// ParamLayout; log alpha and its Adam moments have one entry per gate (GateLayout); spred's v
// is a second slab (only its weight ranges are used); the GMP mask has one byte per slab entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/sparsify.h"

namespace sparseprox {
namespace cpu {

// ---- l0 ----
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
// w.r.t. the effective parameters. theta_w -= lr g z, biases -= lr g; each log alpha takes an
// Adam step on sum_{its weights} g theta dz/dlog_alpha + lambda_l per_gate p (1 - p).
void l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
               const sparsify::GateLayout& gates, const ParamLayout& layout, const gates::HardConcrete& hc,
               std::uint64_t seed, std::uint64_t step, float lr, const float* lambdas,
               const sparsify::AdamStep& adam);
// out = theta with the deterministic test-time gates (exact zeros where a gate is closed);
// nnz[l] = nonzero weights of layer l.
void l0_export(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
               const ParamLayout& layout, const gates::HardConcrete& hc, float* out, std::size_t* nnz);

// ---- spred ----
// u and v from a slab w by the balanced split; biases go to u.
void spred_split(const float* w, const ParamLayout& layout, float* u, float* v);
void spred_effective(const float* u, const float* v, const ParamLayout& layout, float* eff);
void spred_update(float* u, float* v, const float* grads, const ParamLayout& layout, float lr, const float* lambdas);
void spred_export(const float* u, const float* v, const ParamLayout& layout, float threshold, float* out,
                  std::size_t* nnz);

// ---- gmp ----
// SGD on the kept weights; pruned weights stay exact zeros; biases plain SGD. nnz per layer after.
void masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const ParamLayout& layout, float lr,
                std::size_t* nnz);
// Keeps the keep[k] largest |w| of each scope (one scope over all weight layers when keep has
// one entry, else one per layer) and zeroes the rest, in w and in mask. Ties go to the lower slab
// index, so the kept set is unique.
void gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout, const std::vector<std::size_t>& keep);

}  // namespace cpu
}  // namespace sparseprox
