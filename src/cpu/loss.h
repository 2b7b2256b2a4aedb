// The losses on the CPU over the per-sample formulas of core/elementwise.h, the oracle of
// kernels/loss.cu: per-sample losses, their sums (added in index order) and the step's loss
// accumulator.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/records.h"

namespace sparseprox {
namespace cpu {

// Per sample r: sample_loss[r] = ||pred_r - target_r||^2 (no 1/2, in double). When dL_dpred is
// not null it receives 2 (pred - target) * grad_scale (grad_scale = 1/batch for a batch mean).
void mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out, float grad_scale,
              float* dL_dpred, double* sample_loss);
// The sum over the batch of the same (sample losses added in order).
double mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out,
                float grad_scale, float* dL_dpred);

// Per sample r: -log softmax(logits_r)[label_r]; dL_dlogits = (softmax - onehot) * grad_scale when
// not null; sample_correct[r] (when not null) = argmax == label (first max wins).
void cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch,
                        std::size_t n_classes, float grad_scale, float* dL_dlogits, double* sample_loss,
                        std::uint32_t* sample_correct);
// The sum over the batch of the same; n_correct (when not null) counts argmax == label.
double cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch,
                          std::size_t n_classes, float grad_scale, float* dL_dlogits,
                          std::size_t* n_correct);

// Sums in index order.
double sum(const double* x, std::size_t n);
std::uint64_t sum(const std::uint32_t* x, std::size_t n);

// Unless state->stopped: state->loss_sum += batch_loss / batch and ++state->loss_count.
void accumulate_step_loss(double batch_loss, std::size_t batch, StepState* state);

}  // namespace cpu
}  // namespace sparseprox
