// Gradual magnitude pruning on the device (kernels/gmp.cu), twin of src/cpu/gmp.cpp. With the
// stop flag (device, may be null) set, nothing is written.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/slab_tiles.cuh"
#include "sparseprox/model.h"

namespace sparseprox {
namespace cuda {

// w = mask ? w - lr g : 0 on the weights, plain SGD on the biases; weight tiles counted into
// tiles.tile_nnz. hyper = [lr, ...] in device memory.
void launch_masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const SlabTiles& tiles,
                       const float* hyper, const std::int32_t* stop_flag, cudaStream_t stream);
// Keeps the keep[k] largest |w| of each scope (all weight layers together when keep has one
// entry and there is more than one layer, else layer by layer), ties to the lower slab index,
// and zeroes the rest in w and mask. sort_keys and sort_index: scratch for every weight of the
// layout. Thrust's sort synchronizes the stream.
void launch_gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout, const std::vector<std::size_t>& keep,
                      std::uint32_t* sort_keys, std::uint64_t* sort_index, const std::int32_t* stop_flag,
                      cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
