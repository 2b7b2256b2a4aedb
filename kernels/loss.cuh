// Launchers of the loss kernels and their reductions (kernels/loss.cu).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/records.h"

namespace sparseprox {
namespace cuda {

// Per sample r: sample_loss[r] = sum_j (pred - target)^2 (in double, like cpu::mse_loss);
// dL_dpred = 2 (pred - target) * grad_scale when not null. pred, target, dL_dpred (batch, n_out).
void launch_mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out, float grad_scale,
                     float* dL_dpred, double* sample_loss, cudaStream_t stream);

// Per sample r: sample_loss[r] = -log softmax(logits_r)[label_r]; dL_dlogits = (softmax -
// onehot) * grad_scale when not null; sample_correct[r] = (argmax == label, first max wins)
// when not null. logits, dL_dlogits (batch, n_classes); labels, sample_loss, sample_correct (batch).
void launch_cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch,
                               std::size_t n_classes, float grad_scale, float* dL_dlogits, double* sample_loss,
                               std::uint32_t* sample_correct, cudaStream_t stream);

// Device-wide sums with CUB's two-phase temp storage: the temp size for n items (enough for
// both overloads), allocated once by the caller.
std::size_t sum_temp_bytes(std::size_t n);
void launch_sum(const double* x, std::size_t n, double* out, void* temp, std::size_t temp_bytes, cudaStream_t stream);
void launch_sum(const std::uint32_t* x, std::size_t n, std::uint64_t* out, void* temp, std::size_t temp_bytes,
                cudaStream_t stream);

// Unless state->stopped: state->loss_sum += *batch_loss / batch and ++state->loss_count (one
// thread; enqueue it before the step's stop rule so a stopping step's loss still counts).
void launch_accumulate_step_loss(const double* batch_loss, std::size_t batch, StepState* state, cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
