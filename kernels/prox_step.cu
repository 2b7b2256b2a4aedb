// The fused proximal SGD step over a whole parameter slab (docs/method.md §3), in one pass:
//   weights of layer l:  w <- S_{lr*lambda_l}(w - lr*g)   (ew::prox_sgd), nonzeros counted
//   biases:              b <- b - lr*g                     (ew::sgd)
// Napkin math: per element read w and g, write w = 12 bytes for ~4 flops, so the kernel is
// memory-bound and its ceiling is the copy bandwidth (H200 datasheet 4.8 TB/s: 1e8 parameters
// in ~0.25 ms). The count adds 4 bytes per 2048-element tile.
//
// Then, still on the device and without a host round trip: CUB's segmented reduction sums the
// tile counts per layer (integers: exact and deterministic) and a one-thread kernel applies the
// stop rule and counts the step. lr and the lambdas are read from device memory, so a captured
// graph stays valid when they change. Once the stop flag is set, the fused kernel returns at its
// first instruction: the parameters stay those of the first in-band step.
#include "kernels/prox_step.cuh"

#include <cub/block/block_reduce.cuh>
#include <cub/device/device_segmented_reduce.cuh>
#include <thrust/count.h>
#include <thrust/execution_policy.h>
#include <thrust/transform.h>

#include <cmath>
#include <exception>
#include <string>

#include "core/elementwise.h"
#include "cuda/common.h"

namespace sparseprox {
namespace cuda {

namespace {

constexpr int kProxThreads = 256;
constexpr int kVectorsPerThread = static_cast<int>(kProxTileSize) / (4 * kProxThreads);  // 2 float4
static_assert(kProxTileSize % (4 * kProxThreads) == 0, "a full tile must split into float4 per thread");

__device__ bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

__device__ std::uint32_t nonzero4(const float4& v) {
    return static_cast<std::uint32_t>(v.x != 0.0f) + static_cast<std::uint32_t>(v.y != 0.0f) +
           static_cast<std::uint32_t>(v.z != 0.0f) + static_cast<std::uint32_t>(v.w != 0.0f);
}

// Sum of one value per thread; thread 0 writes it.
__device__ void write_block_count(std::uint32_t count, std::uint32_t* out) {
    using BlockReduce = cub::BlockReduce<std::uint32_t, kProxThreads>;
    __shared__ typename BlockReduce::TempStorage temp;
    const std::uint32_t total = BlockReduce(temp).Sum(count);
    if (threadIdx.x == 0) *out = total;
}

// One block per tile. A full, 16-byte aligned tile (every tile of a segment but its last) goes
// through float4: each thread issues its 4 loads before any arithmetic, so 64 bytes per thread
// are in flight.
__global__ void __launch_bounds__(kProxThreads)
prox_step_kernel(float* __restrict__ params, const float* __restrict__ grads, const ProxTile* __restrict__ tiles,
                 const float* __restrict__ hyper, const std::int32_t* __restrict__ stop_flag,
                 std::uint32_t* __restrict__ tile_nnz) {
    const ProxTile tile = tiles[blockIdx.x];              // issued before the flag is tested:
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
    if (tile.count == kProxTileSize && aligned16(p) && aligned16(g)) {
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

__global__ void __launch_bounds__(kProxThreads)
count_tiles_kernel(const float* __restrict__ params, const ProxTile* __restrict__ tiles,
                   std::uint32_t* __restrict__ tile_nnz) {
    const ProxTile tile = tiles[blockIdx.x];
    if (tile.is_bias) return;
    const float* p = params + tile.begin;
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kProxThreads) nnz += p[i] != 0.0f;
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

// |n - t| <= rho * t in double, as StopRule::holds computes it.
__device__ bool in_band(unsigned long long n, unsigned long long t, double tolerance) {
    const double nd = static_cast<double>(n), td = static_cast<double>(t);
    return fabs(nd - td) <= tolerance * td;
}

__global__ void stop_rule_kernel(StepState* state, const StopConfig* config, const unsigned long long* targets,
                                 const unsigned long long* layer_nnz) {
    if (state->stopped) return;  // a frozen step is not counted
    state->steps += 1;
    const StopConfig c = *config;
    if (c.n_targets == 0) return;
    bool holds = false;
    if (c.n_targets == 1) {
        unsigned long long total = 0;
        for (std::uint32_t l = 0; l < c.n_layers; ++l) total += layer_nnz[l];
        holds = in_band(total, targets[0], c.tolerance);
    } else {
        std::uint64_t hits = 0;
        for (std::uint32_t l = 0; l < c.n_targets && l < c.n_layers; ++l)
            hits += in_band(layer_nnz[l], targets[l], c.tolerance);
        const std::uint64_t need = c.min_layers == 0 ? c.n_targets : c.min_layers;
        holds = hits >= need;
    }
    if (holds) state->stopped = 1;
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
struct NonzeroOp {
    __device__ bool operator()(float v) const { return v != 0.0f; }
};

__global__ void probe_kernel() {}

// Thrust reports failures as thrust::system_error; the library's callers expect sparseprox::Error.
template <class F>
auto thrust_checked(const char* what, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const std::exception& e) {
        throw Error(std::string(what) + " failed: " + e.what());
    }
}

}  // namespace

void launch_prox_step(float* params, const float* grads, const ProxTile* tiles, std::size_t n_tiles,
                      const float* hyper, const std::int32_t* stop_flag, std::uint32_t* tile_nnz,
                      cudaStream_t stream) {
    if (n_tiles == 0) return;
    prox_step_kernel<<<static_cast<unsigned>(n_tiles), kProxThreads, 0, stream>>>(params, grads, tiles, hyper,
                                                                                  stop_flag, tile_nnz);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_count_tiles(const float* params, const ProxTile* tiles, std::size_t n_tiles, std::uint32_t* tile_nnz,
                        cudaStream_t stream) {
    if (n_tiles == 0) return;
    count_tiles_kernel<<<static_cast<unsigned>(n_tiles), kProxThreads, 0, stream>>>(params, tiles, tile_nnz);
    SPARSEPROX_CHECK_LAUNCH();
}

std::size_t layer_nnz_temp_bytes(std::size_t n_layers) {
    std::size_t bytes = 0;
    if (n_layers == 0) return 0;
    // With a null temp pointer CUB only computes the size: the data pointers are not read.
    SPARSEPROX_CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(
        nullptr, bytes, static_cast<const std::uint32_t*>(nullptr), static_cast<unsigned long long*>(nullptr),
        static_cast<std::int64_t>(n_layers), static_cast<const std::int32_t*>(nullptr),
        static_cast<const std::int32_t*>(nullptr)));
    return bytes;
}

void launch_layer_nnz(const std::uint32_t* tile_nnz, std::size_t n_layers, const std::int32_t* tile_begin,
                      const std::int32_t* tile_end, unsigned long long* layer_nnz, void* temp,
                      std::size_t temp_bytes, cudaStream_t stream) {
    if (n_layers == 0) return;
    SPARSEPROX_CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(temp, temp_bytes, tile_nnz, layer_nnz,
                                                          static_cast<std::int64_t>(n_layers), tile_begin, tile_end,
                                                          stream));
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_stop_rule(StepState* state, const StopConfig* config, const unsigned long long* targets,
                      const unsigned long long* layer_nnz, cudaStream_t stream) {
    stop_rule_kernel<<<1, 1, 0, stream>>>(state, config, targets, layer_nnz);
    SPARSEPROX_CHECK_LAUNCH();
}

std::vector<std::size_t> prox_step_unfused(float* params, const float* grads, const ParamLayout& layout,
                                           const float* hyper, cudaStream_t stream) {
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
    std::vector<std::size_t> nnz(layout.segments.size());
    for (std::size_t l = 0; l < layout.segments.size(); ++l)
        nnz[l] = count_nonzero(params + layout.segments[l].weight_offset, layout.segments[l].n_weights, stream);
    return nnz;
}

std::size_t count_nonzero(const float* x, std::size_t n, cudaStream_t stream) {
    if (n == 0) return 0;
    const auto count = thrust_checked("thrust::count_if",
                                      [&] { return thrust::count_if(thrust::cuda::par.on(stream), x, x + n, NonzeroOp{}); });
    SPARSEPROX_CHECK_LAUNCH();
    return static_cast<std::size_t>(count);
}

bool kernels_runnable(std::string* why) {
    cudaFuncAttributes attributes{};
    const cudaError_t status = cudaFuncGetAttributes(&attributes, probe_kernel);
    if (status == cudaSuccess) return true;
    cudaGetLastError();
    if (why) *why = std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
    return false;
}

}  // namespace cuda
}  // namespace sparseprox
