// The lazy l1 step over a parameter slab (core/optimizer.h, opt::lazy_prox_descend_k), one block
// per tile:
//   weights:  z <- y, w <- S_{lr lambda_l}(y), nonzeros counted
//   biases:   w <- y
// Each optimizer kind is its own kernel instantiation. Napkin math: with sgd it reads z and g
// and writes z and w (16 bytes per weight, a third more than the greedy step's 12); momentum adds
// the velocity (24), Adam both moments (32): memory-bound.
#include "kernels/lazy_prox_step.cuh"

#include "core/elementwise.h"
#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

namespace {

template <std::int32_t K>
__global__ void __launch_bounds__(kTileThreads)
lazy_prox_kernel(float* __restrict__ params, float* __restrict__ z, const float* __restrict__ grads, opt::State st,
                 const SlabTile* __restrict__ tiles, const float* __restrict__ hyper, opt::Step s,
                 const std::int32_t* __restrict__ stop_flag, std::uint32_t* __restrict__ tile_nnz) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stop_flag != nullptr && *stop_flag != 0) return;
    const float lr = hyper[0];
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
            const std::uint64_t at = tile.begin + i;
            float eta;
            params[at] = opt::descend_k<K>(params[at], grads[at], st, at, s, lr, false, &eta);
        }
        return;
    }
    const float lambda = hyper[1 + tile.layer];
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const std::uint64_t at = tile.begin + i;
        const float v = opt::lazy_prox_descend_k<K>(z, grads[at], st, at, s, lr, lambda);
        params[at] = v;
        nnz += v != 0.0f;
    }
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

}  // namespace

void launch_lazy_prox_step(float* params, float* z, const float* grads, const opt::State& state, const SlabTiles& t,
                           const float* hyper, const opt::Step& step, const std::int32_t* stop_flag,
                           cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    opt::dispatch(step.kind, [&](auto kind) {
        lazy_prox_kernel<decltype(kind)::value><<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(
            params, z, grads, state, t.tiles, hyper, step, stop_flag, t.tile_nnz);
    });
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
