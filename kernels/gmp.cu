// Gradual magnitude pruning on the device (docs/method.md §7), twin of src/cpu/gmp.cpp: masked
// SGD with counts (12 bytes per weight, memory-bound), and pruning to the k largest |w| of a
// scope by a stable descending radix sort of |w| (as bits) with the slab index as value, so
// ties go to the lower index exactly as on the CPU.
#include "kernels/gmp.cuh"

#include <thrust/execution_policy.h>
#include <thrust/functional.h>
#include <thrust/sort.h>

#include <algorithm>

#include "core/elementwise.h"
#include "kernels/common.cuh"
#include "kernels/slab_tiles.cuh"

namespace sparseprox {
namespace cuda {

namespace {

__device__ bool stopped(const std::int32_t* stop_flag) { return stop_flag != nullptr && *stop_flag != 0; }

__global__ void __launch_bounds__(kTileThreads)
masked_sgd_kernel(float* __restrict__ w, const float* __restrict__ grads, const std::uint8_t* __restrict__ mask,
                  const SlabTile* __restrict__ tiles, const float* __restrict__ hyper,
                  const std::int32_t* __restrict__ stop_flag, std::uint32_t* __restrict__ tile_nnz) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    float* p = w + tile.begin;
    const float* g = grads + tile.begin;
    const float lr = hyper[0];
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) p[i] = ew::sgd(p[i], g[i], lr);
        return;
    }
    const std::uint8_t* m = mask + tile.begin;
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const float v = m[i] ? ew::sgd(p[i], g[i], lr) : 0.0f;
        p[i] = v;
        nnz += v != 0.0f;
    }
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

// keys[j] = bits of |w| (non-negative floats order as their bit patterns; -0 becomes +0), index[j]
// = the slab index, for the n weights of one layer at slab `offset` (keys and index point at the
// layer's place in the scope's scratch).
__global__ void gather_magnitudes_kernel(const float* __restrict__ w, std::uint64_t offset, std::uint64_t n,
                                         std::uint32_t* __restrict__ keys, std::uint64_t* __restrict__ index,
                                         const std::int32_t* __restrict__ stop_flag) {
    if (stopped(stop_flag)) return;
    for (std::uint64_t i = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
        keys[i] = __float_as_uint(fabsf(w[offset + i]));
        index[i] = offset + i;
    }
}

// The first k entries of the sorted order are kept (mask 1), the rest pruned (mask 0, w = 0).
__global__ void mark_kept_kernel(float* __restrict__ w, std::uint8_t* __restrict__ mask,
                                 const std::uint64_t* __restrict__ index, std::uint64_t n, std::uint64_t k,
                                 const std::int32_t* __restrict__ stop_flag) {
    if (stopped(stop_flag)) return;
    for (std::uint64_t j = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n;
         j += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
        const std::uint64_t at = index[j];
        if (j < k) {
            mask[at] = 1;
        } else {
            mask[at] = 0;
            w[at] = 0.0f;
        }
    }
}

}  // namespace

void launch_masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const SlabTiles& t, const float* hyper,
                       const std::int32_t* stop_flag, cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    masked_sgd_kernel<<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(w, grads, mask, t.tiles, hyper,
                                                                                      stop_flag, t.tile_nnz);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout, const std::vector<std::size_t>& keep,
                      std::uint32_t* sort_keys, std::uint64_t* sort_index, const std::int32_t* stop_flag,
                      cudaStream_t stream) {
    const std::size_t n_layers = layout.segments.size();
    if (keep.empty() || n_layers == 0) return;
    // One scope: its layers, gathered in slab order (so equal keys stay in index order), sorted by
    // |w| descending with a stable sort, the first k kept.
    auto prune = [&](const std::vector<std::size_t>& layers, std::size_t keep_count) {
        std::uint64_t n = 0;
        for (std::size_t l : layers) {
            const ParamSegment& s = layout.segments[l];
            if (s.n_weights == 0) continue;
            gather_magnitudes_kernel<<<grid_size(s.n_weights, kTileThreads), kTileThreads, 0, stream>>>(
                w, s.weight_offset, s.n_weights, sort_keys + n, sort_index + n, stop_flag);
            SPARSEPROX_CHECK_LAUNCH();
            n += s.n_weights;
        }
        if (n == 0) return;
        const std::uint64_t k = std::min<std::uint64_t>(keep_count, n);
        if (k < n) {  // with every weight kept the order does not matter
            thrust_checked("thrust::stable_sort_by_key (gmp prune)", [&] {
                thrust::stable_sort_by_key(thrust::cuda::par.on(stream), sort_keys, sort_keys + n, sort_index,
                                           thrust::greater<std::uint32_t>());
            });
        }
        mark_kept_kernel<<<grid_size(n, kTileThreads), kTileThreads, 0, stream>>>(w, mask, sort_index, n, k,
                                                                                  stop_flag);
        SPARSEPROX_CHECK_LAUNCH();
    };
    if (keep.size() == 1 && n_layers != 1) {
        std::vector<std::size_t> all(n_layers);
        for (std::size_t l = 0; l < n_layers; ++l) all[l] = l;
        prune(all, keep[0]);
    } else {
        for (std::size_t l = 0; l < keep.size() && l < n_layers; ++l) prune({l}, keep[l]);
    }
}

}  // namespace cuda
}  // namespace sparseprox
