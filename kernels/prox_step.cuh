// Launchers of the fused proximal step (kernels/prox_step.cu). Plain C++ declarations.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/step_state.h"
#include "sparseprox/model.h"

namespace sparseprox {
namespace cuda {

// The fused step over a slab: one block per tile. hyper = [lr, lambda_0, ..., lambda_{L-1}] in
// device memory. When stop_flag (device, may be null) is nonzero every block returns at once and
// nothing is written. tile_nnz (n_tiles) receives each weight tile's nonzero count.
void launch_prox_step(float* params, const float* grads, const ProxTile* tiles, std::size_t n_tiles,
                      const float* hyper, const std::int32_t* stop_flag, std::uint32_t* tile_nnz,
                      cudaStream_t stream);

// tile_nnz of the current parameters, nothing changed (after an upload of parameters).
void launch_count_tiles(const float* params, const ProxTile* tiles, std::size_t n_tiles, std::uint32_t* tile_nnz,
                        cudaStream_t stream);

// Per-layer sums of tile_nnz over tiles [tile_begin[l], tile_end[l]) (device arrays) with CUB's
// segmented reduction; temp storage from layer_nnz_temp_bytes, allocated once.
std::size_t layer_nnz_temp_bytes(std::size_t n_layers);
void launch_layer_nnz(const std::uint32_t* tile_nnz, std::size_t n_layers, const std::int32_t* tile_begin,
                      const std::int32_t* tile_end, unsigned long long* layer_nnz, void* temp,
                      std::size_t temp_bytes, cudaStream_t stream);

// One thread: unless already stopped, counts the step and sets state->stopped when the rule
// holds for layer_nnz (the rule of StopRule::holds, in double).
void launch_stop_rule(StepState* state, const StopConfig* config, const unsigned long long* targets,
                      const unsigned long long* layer_nnz, cudaStream_t stream);

// The unfused reference: per layer an SGD pass, a threshold pass and a thrust::count_if (which
// synchronizes). Same formulas and the same device-resident hyper array; returns the NNZ per layer.
std::vector<std::size_t> prox_step_unfused(float* params, const float* grads, const ParamLayout& layout,
                                           const float* hyper, cudaStream_t stream);

// Nonzero floats among x[0, n) (synchronizes).
std::size_t count_nonzero(const float* x, std::size_t n, cudaStream_t stream);

// True when this build holds code the current device can run (an sm_75 card with a build for
// 80-real;90 has none); otherwise false with the CUDA error text in `why`.
bool kernels_runnable(std::string* why);

}  // namespace cuda
}  // namespace sparseprox
