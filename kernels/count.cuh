// Nonzero counts on the device (kernels/count.cu), twin of src/cpu/count.cpp: per tile of a
// parameter slab, then per layer (CUB's segmented sum: integers, exact and deterministic).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/records.h"

namespace sparseprox {
namespace cuda {

// tile_nnz[t] = nonzero floats of weight tile t of `params` (bias tiles are skipped).
void launch_count_tiles(const float* params, const SlabTile* tiles, std::size_t n_tiles, std::uint32_t* tile_nnz,
                        cudaStream_t stream);

// layer_nnz[l] = sum of tile_nnz over tiles [tile_begin[l], tile_end[l]) (device arrays); temp
// storage from layer_nnz_temp_bytes, allocated once.
std::size_t layer_nnz_temp_bytes(std::size_t n_layers);
void launch_layer_nnz(const std::uint32_t* tile_nnz, std::size_t n_layers, const std::int32_t* tile_begin,
                      const std::int32_t* tile_end, std::uint64_t* layer_nnz, void* temp, std::size_t temp_bytes,
                      cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
