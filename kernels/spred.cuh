// spred on the device (kernels/spred.cu), twin of src/cpu/spred.cpp. Every launcher queues its
// work on `stream`; with the stop flag (device, may be null) set, nothing is written.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/optimizer.h"
#include "kernels/slab_tiles.cuh"

namespace sparseprox {
namespace cuda {

// u, v from the slab w by the balanced split (biases to u; v's bias entries untouched).
void launch_spred_split(const float* w, const SlabTiles& tiles, float* u, float* v, cudaStream_t stream);
void launch_spred_effective(const float* u, const float* v, const SlabTiles& tiles, float* eff,
                            const std::int32_t* stop_flag, cudaStream_t stream);
// u, v (and the biases, in u) by the optimizer (core/sparsify.h's spred_descend; the states in
// the slab layout). hyper = [lr, lambda_0, ...] in device memory.
void launch_spred_update(float* u, float* v, const float* grads, const SlabTiles& tiles, const float* hyper,
                         const opt::State& u_state, const opt::State& v_state, const opt::Step& opt_step,
                         const std::int32_t* stop_flag, cudaStream_t stream);
// out = spred_readout(u, v, threshold) (biases = u); weight tiles counted into tiles.tile_nnz.
void launch_spred_export(const float* u, const float* v, const SlabTiles& tiles, float threshold, float* out,
                         const std::int32_t* stop_flag, cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
