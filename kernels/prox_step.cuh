// The fused proximal l1 step on the device (kernels/prox_step.cu), twin of
// src/cpu/prox_step.cpp: bitwise the same results.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/records.h"
#include "sparseprox/model.h"

namespace sparseprox {
namespace cuda {

// The fused step over a slab: one block per tile. hyper = [lr, lambda_0, ..., lambda_{L-1}] in
// device memory. When stop_flag (device, may be null) is nonzero every block returns at once and
// nothing is written. tile_nnz (n_tiles) receives each weight tile's nonzero count.
void launch_prox_step(float* params, const float* grads, const SlabTile* tiles, std::size_t n_tiles,
                      const float* hyper, const std::int32_t* stop_flag, std::uint32_t* tile_nnz,
                      cudaStream_t stream);

// The unfused reference: per layer an SGD pass, a threshold pass and the bias pass (Thrust);
// the same formulas and the same device-resident hyper array. Counts are the caller's.
void launch_prox_step_unfused(float* params, const float* grads, const ParamLayout& layout, const float* hyper,
                              cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
