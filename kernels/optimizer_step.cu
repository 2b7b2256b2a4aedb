// The optimizer steps over a parameter slab (core/optimizer.h), one block per tile:
//   l1 weights:   w <- S_{eta lambda_l}(y), nonzeros counted     (opt::prox_descend_k)
//   gmp weights:  w <- mask ? y : 0 (state cleared), counted      (opt::descend_k)
//   biases:       w <- y
// Each kind is its own kernel instantiation (the kind is a template parameter, chosen on the host).
// Napkin math: momentum reads w, g, a and writes w, a (20 bytes per parameter), Adam also b (28):
// memory-bound, like the plain prox step (12 bytes).
#include "kernels/optimizer_step.cuh"

#include <type_traits>

#include "core/elementwise.h"
#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

namespace {

__device__ bool stopped(const std::int32_t* stop_flag) { return stop_flag != nullptr && *stop_flag != 0; }

// Bias tiles of both kernels: the optimizer's step without a penalty or a mask.
template <std::int32_t K>
__device__ void bias_tile(float* __restrict__ p, const float* __restrict__ g, const opt::State& st, const SlabTile& tile,
                          const opt::Step& s, float lr) {
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const std::uint64_t at = tile.begin + i;
        float eta;
        p[at] = opt::descend_k<K>(p[at], g[at], st, at, s, lr, false, &eta);
    }
}

template <std::int32_t K>
__global__ void __launch_bounds__(kTileThreads)
prox_optimizer_kernel(float* __restrict__ params, const float* __restrict__ grads, opt::State st,
                      const SlabTile* __restrict__ tiles, const float* __restrict__ hyper, opt::Step s,
                      const std::int32_t* __restrict__ stop_flag, std::uint32_t* __restrict__ tile_nnz) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float lr = hyper[0];
    if (tile.is_bias) return bias_tile<K>(params, grads, st, tile, s, lr);
    const float lambda = hyper[1 + tile.layer];
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const std::uint64_t at = tile.begin + i;
        const float v = opt::prox_descend_k<K>(params[at], grads[at], st, at, s, lr, lambda);
        params[at] = v;
        nnz += v != 0.0f;
    }
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

template <std::int32_t K>
__global__ void __launch_bounds__(kTileThreads)
masked_optimizer_kernel(float* __restrict__ w, const float* __restrict__ grads, const std::uint8_t* __restrict__ mask,
                        opt::State st, const SlabTile* __restrict__ tiles, const float* __restrict__ hyper,
                        opt::Step s, const std::int32_t* __restrict__ stop_flag,
                        std::uint32_t* __restrict__ tile_nnz) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float lr = hyper[0];
    if (tile.is_bias) return bias_tile<K>(w, grads, st, tile, s, lr);
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const std::uint64_t at = tile.begin + i;
        float v = 0.0f, eta;
        if (mask[at]) v = opt::descend_k<K>(w[at], grads[at], st, at, s, lr, true, &eta);
        else opt::clear(st, at);
        w[at] = v;
        nnz += v != 0.0f;
    }
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

}  // namespace

void launch_prox_optimizer_step(float* params, const float* grads, const opt::State& state, const SlabTiles& t,
                                const float* hyper, const opt::Step& step, const std::int32_t* stop_flag,
                                cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    opt::dispatch(step.kind, [&](auto kind) {
        prox_optimizer_kernel<decltype(kind)::value><<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(
            params, grads, state, t.tiles, hyper, step, stop_flag, t.tile_nnz);
    });
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_masked_optimizer_step(float* w, const float* grads, const std::uint8_t* mask, const opt::State& state,
                                  const SlabTiles& t, const float* hyper, const opt::Step& step,
                                  const std::int32_t* stop_flag, cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    opt::dispatch(step.kind, [&](auto kind) {
        masked_optimizer_kernel<decltype(kind)::value><<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(
            w, grads, mask, state, t.tiles, hyper, step, stop_flag, t.tile_nnz);
    });
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
