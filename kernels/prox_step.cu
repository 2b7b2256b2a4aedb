// The fused proximal SGD step over a whole parameter slab (docs/method.md §3), in one pass:
//   weights of layer l:  w <- S_{lr*lambda_l}(w - lr*g)   (ew::prox_sgd), nonzeros counted
//   biases:              b <- b - lr*g                     (ew::sgd)
// Napkin math: per element read w and g, write w = 12 bytes for ~4 flops, so the kernel is
// memory-bound and its ceiling is the copy bandwidth (H200 datasheet 4.8 TB/s: 1e8 parameters
// in ~0.25 ms). The count adds 4 bytes per 2048-element tile.
//
// The per-layer sums of the tile counts are kernels/count.cu's (CUB, on the device); lr and the
// lambdas are read from device memory, so a captured graph stays valid when they change. Once
// the stop flag is set, the fused kernel returns at its first instruction: the parameters stay
// those of the first in-band step.
#include "kernels/prox_step.cuh"

#include <thrust/execution_policy.h>
#include <thrust/transform.h>

#include "core/elementwise.h"
#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

namespace {

constexpr int kProxThreads = kTileThreads;
constexpr int kVectorsPerThread = static_cast<int>(kTileSize) / (4 * kProxThreads);  // 2 float4
static_assert(kTileSize % (4 * kProxThreads) == 0, "a full tile must split into float4 per thread");

__device__ bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

__device__ std::uint32_t nonzero4(const float4& v) {
    return static_cast<std::uint32_t>(v.x != 0.0f) + static_cast<std::uint32_t>(v.y != 0.0f) +
           static_cast<std::uint32_t>(v.z != 0.0f) + static_cast<std::uint32_t>(v.w != 0.0f);
}

// One block per tile. A full, 16-byte aligned tile (every tile of a segment but its last) goes
// through float4: each thread issues its 4 loads before any arithmetic, so 64 bytes per thread
// are in flight.
__global__ void __launch_bounds__(kProxThreads)
prox_step_kernel(float* __restrict__ params, const float* __restrict__ grads, const SlabTile* __restrict__ tiles,
                 const float* __restrict__ hyper, const std::int32_t* __restrict__ stop_flag,
                 std::uint32_t* __restrict__ tile_nnz) {
    const SlabTile tile = tiles[blockIdx.x];              // issued before the flag is tested:
    if (stop_flag != nullptr && *stop_flag != 0) return;  // frozen (uniform over the grid)
    float* p = params + tile.begin;
    const float* g = grads + tile.begin;
    const float lr = hyper[0];

    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kProxThreads) p[i] = ew::sgd(p[i], g[i], lr);
        return;  // bias tiles are not counted (their tile_nnz entry is never read)
    }
    // The CPU computes tau = lr * lambda as one float product; so does __fmul_rn (never an FMA).
    const float tau = __fmul_rn(lr, hyper[1 + tile.layer]);
    std::uint32_t nnz = 0;
    if (tile.count == kTileSize && aligned16(p) && aligned16(g)) {
        float4* p4 = reinterpret_cast<float4*>(p);
        const float4* g4 = reinterpret_cast<const float4*>(g);
        float4 w[kVectorsPerThread], d[kVectorsPerThread];
#pragma unroll
        for (int k = 0; k < kVectorsPerThread; ++k) {
            w[k] = p4[threadIdx.x + k * kProxThreads];
            d[k] = g4[threadIdx.x + k * kProxThreads];
        }
#pragma unroll
        for (int k = 0; k < kVectorsPerThread; ++k) {
            w[k].x = ew::prox_sgd(w[k].x, d[k].x, lr, tau);
            w[k].y = ew::prox_sgd(w[k].y, d[k].y, lr, tau);
            w[k].z = ew::prox_sgd(w[k].z, d[k].z, lr, tau);
            w[k].w = ew::prox_sgd(w[k].w, d[k].w, lr, tau);
            nnz += nonzero4(w[k]);
            p4[threadIdx.x + k * kProxThreads] = w[k];
        }
    } else {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kProxThreads) {
            const float v = ew::prox_sgd(p[i], g[i], lr, tau);
            p[i] = v;
            nnz += v != 0.0f;
        }
    }
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

// ---- the unfused reference: the same formulas in separate passes ---------------------------------
struct SgdOp {
    const float* hyper;
    __device__ float operator()(float w, float g) const { return ew::sgd(w, g, hyper[0]); }
};
struct ThresholdOp {
    const float* hyper;
    int layer;
    __device__ float operator()(float v) const { return ew::soft_threshold(v, __fmul_rn(hyper[0], hyper[1 + layer])); }
};
}  // namespace

void launch_prox_step(float* params, const float* grads, const SlabTile* tiles, std::size_t n_tiles,
                      const float* hyper, const std::int32_t* stop_flag, std::uint32_t* tile_nnz,
                      cudaStream_t stream) {
    if (n_tiles == 0) return;
    prox_step_kernel<<<static_cast<unsigned>(n_tiles), kProxThreads, 0, stream>>>(params, grads, tiles, hyper,
                                                                                  stop_flag, tile_nnz);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_prox_step_unfused(float* params, const float* grads, const ParamLayout& layout, const float* hyper,
                              cudaStream_t stream) {
    const auto policy = thrust::cuda::par_nosync.on(stream);
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        float* w = params + s.weight_offset;
        const float* gw = grads + s.weight_offset;
        float* b = params + s.bias_offset;
        const float* gb = grads + s.bias_offset;
        thrust_checked("thrust::transform (unfused prox step)", [&] {
            thrust::transform(policy, w, w + s.n_weights, gw, w, SgdOp{hyper});
            thrust::transform(policy, w, w + s.n_weights, w, ThresholdOp{hyper, static_cast<int>(l)});
            thrust::transform(policy, b, b + s.n_bias, gb, b, SgdOp{hyper});
        });
    }
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
