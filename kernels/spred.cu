// spred on the device (docs/method.md §7), twin of src/cpu/spred.cpp: the balanced split, the
// effective weights u v, the step of core/sparsify.h's spred_descend (spred_step with plain SGD,
// any optimizer of core/optimizer.h otherwise) and the thresholded read-out
// with counts, one tile per block. Every per-element result is one rounding per operation
// (--fmad=false), so spred agrees with the CPU bit for bit. ~12-20 bytes per weight: memory-bound.
#include "kernels/spred.cuh"

#include "core/elementwise.h"
#include "core/sparsify.h"
#include "kernels/common.cuh"
#include "kernels/slab_tiles.cuh"

namespace sparseprox {
namespace cuda {

namespace {

__device__ bool stopped(const std::int32_t* stop_flag) { return stop_flag != nullptr && *stop_flag != 0; }

__global__ void __launch_bounds__(kTileThreads)
spred_split_kernel(const float* __restrict__ w, const SlabTile* __restrict__ tiles, float* __restrict__ u,
                   float* __restrict__ v) {
    const SlabTile tile = tiles[blockIdx.x];
    const float* x = w + tile.begin;
    float* a = u + tile.begin;
    float* b = v + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) a[i] = x[i];
        return;
    }
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const float xi = x[i];
        a[i] = sparsify::spred_split_u(xi);
        b[i] = sparsify::spred_split_v(xi);
    }
}

__global__ void __launch_bounds__(kTileThreads)
spred_effective_kernel(const float* __restrict__ u, const float* __restrict__ v, const SlabTile* __restrict__ tiles,
                       float* __restrict__ eff, const std::int32_t* __restrict__ stop_flag) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float* a = u + tile.begin;
    const float* b = v + tile.begin;
    float* e = eff + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) e[i] = a[i];
        return;
    }
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) e[i] = a[i] * b[i];
}

__global__ void __launch_bounds__(kTileThreads)
spred_update_kernel(float* __restrict__ u, float* __restrict__ v, const float* __restrict__ grads,
                    const SlabTile* __restrict__ tiles, const float* __restrict__ hyper, opt::State su,
                    opt::State sv, opt::Step os, const std::int32_t* __restrict__ stop_flag) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    float* a = u + tile.begin;
    float* b = v + tile.begin;
    const float* g = grads + tile.begin;
    const float lr = hyper[0];
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
            float eta;
            a[i] = opt::descend(a[i], g[i], su, tile.begin + i, os, lr, false, &eta);
        }
        return;
    }
    const float lambda = hyper[1 + tile.layer];
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        float ai = a[i], bi = b[i];
        sparsify::spred_descend(ai, bi, g[i], lambda, su, sv, tile.begin + i, os, lr);
        a[i] = ai;
        b[i] = bi;
    }
}

__global__ void __launch_bounds__(kTileThreads)
spred_export_kernel(const float* __restrict__ u, const float* __restrict__ v, const SlabTile* __restrict__ tiles,
                    float threshold, float* __restrict__ out, const std::int32_t* __restrict__ stop_flag,
                    std::uint32_t* __restrict__ tile_nnz) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float* a = u + tile.begin;
    const float* b = v + tile.begin;
    float* o = out + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) o[i] = a[i];
        return;
    }
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const float w = sparsify::spred_readout(a[i], b[i], threshold);
        o[i] = w;
        nnz += w != 0.0f;
    }
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

}  // namespace

void launch_spred_split(const float* w, const SlabTiles& t, float* u, float* v, cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    spred_split_kernel<<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(w, t.tiles, u, v);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_spred_effective(const float* u, const float* v, const SlabTiles& t, float* eff,
                            const std::int32_t* stop_flag, cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    spred_effective_kernel<<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(u, v, t.tiles, eff,
                                                                                           stop_flag);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_spred_update(float* u, float* v, const float* grads, const SlabTiles& t, const float* hyper,
                         const opt::State& u_state, const opt::State& v_state, const opt::Step& opt_step,
                         const std::int32_t* stop_flag, cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    spred_update_kernel<<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(
        u, v, grads, t.tiles, hyper, u_state, v_state, opt_step, stop_flag);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_spred_export(const float* u, const float* v, const SlabTiles& t, float threshold, float* out,
                         const std::int32_t* stop_flag, cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    spred_export_kernel<<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(u, v, t.tiles, threshold, out,
                                                                                        stop_flag, t.tile_nnz);
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
