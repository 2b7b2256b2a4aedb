// L0 training with hard-concrete gates on the device (kernels/l0_gates.cu), twin of
// src/cpu/l0_gates.cpp. Every launcher queues its work on `stream`; with the stop flag (device,
// may be null) set, nothing is written.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/gates.h"
#include "core/records.h"
#include "core/sparsify.h"
#include "kernels/slab_tiles.cuh"

namespace sparseprox {
namespace cuda {

// eff = theta * sample_gate(gate_noise(seed, step, gate), log_alpha[gate]) per weight (the noise
// recomputed from the counter, never stored); biases copied. segments: device copy of the gate
// layout (one per weight layer).
void launch_l0_effective(const float* theta, const float* log_alpha, const SlabTiles& tiles,
                         const sparsify::GateSegment* segments, const gates::HardConcrete& hc, std::uint64_t seed,
                         std::uint64_t step, float* eff, const std::int32_t* stop_flag, cudaStream_t stream);
// theta_w by the optimizer on g z, biases on g (core/optimizer.h; theta_state in the slab
// layout), Adam on each log alpha with the gradient sum_{its weights} g theta dz + lambda_l
// per_gate p (1 - p). hyper = [lr, lambda_0, ...] in device memory; host_segments: the same gate
// layout on the host (the group layers get kernels of their own).
void launch_l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
                      const SlabTiles& tiles, const sparsify::GateSegment* segments,
                      const std::vector<sparsify::GateSegment>& host_segments, const gates::HardConcrete& hc,
                      std::uint64_t seed, std::uint64_t step, const float* hyper, const sparsify::AdamStep& adam,
                      const opt::State& theta_state, const opt::Step& opt_step, const std::int32_t* stop_flag,
                      cudaStream_t stream);
// out = theta * test_gate(log_alpha) (biases copied); weight tiles counted into tiles.tile_nnz.
void launch_l0_export(const float* theta, const float* log_alpha, const SlabTiles& tiles,
                      const sparsify::GateSegment* segments, const gates::HardConcrete& hc, float* out,
                      const std::int32_t* stop_flag, cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
