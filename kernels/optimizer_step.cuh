// The optimizer steps of core/optimizer.h on the device (kernels/optimizer_step.cu), twin of
// src/cpu/optimizer_step.cpp: bitwise the same results. With the stop flag (device, may be null)
// set, nothing is written.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/optimizer.h"
#include "kernels/slab_tiles.cuh"

namespace sparseprox {
namespace cuda {

// The l1 step with the optimizer: weights S_{eta lambda_l}(y), biases y, one block per tile;
// weight tiles counted into tiles.tile_nnz. hyper = [lr, lambda_0, ...] in device memory;
// state: device arrays in the slab layout.
void launch_prox_optimizer_step(float* params, const float* grads, const opt::State& state, const SlabTiles& tiles,
                                const float* hyper, const opt::Step& step, const std::int32_t* stop_flag,
                                cudaStream_t stream);
// gmp and fine-tuning with the optimizer: kept weights y, pruned ones 0 (state cleared), biases y.
void launch_masked_optimizer_step(float* w, const float* grads, const std::uint8_t* mask, const opt::State& state,
                                  const SlabTiles& tiles, const float* hyper, const opt::Step& step,
                                  const std::int32_t* stop_flag, cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
