// The lazy l1 step (L1Form::lazy, docs/method.md §3.1) on the device
// (kernels/lazy_prox_step.cu), twin of src/cpu/lazy_prox_step.cpp: bitwise the same results.
// With the stop flag (device, may be null) set, nothing is written.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/optimizer.h"
#include "kernels/slab_tiles.cuh"

namespace sparseprox {
namespace cuda {

// Weights: z <- y (the optimizer's step from z), w = S_{lr lambda_l}(y); biases y from w; one
// block per tile, weight tiles counted into tiles.tile_nnz. hyper = [lr, lambda_0, ...] in device
// memory; z and the optimizer's state: device arrays in the slab layout.
void launch_lazy_prox_step(float* params, float* z, const float* grads, const opt::State& state,
                           const SlabTiles& tiles, const float* hyper, const opt::Step& step,
                           const std::int32_t* stop_flag, cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
