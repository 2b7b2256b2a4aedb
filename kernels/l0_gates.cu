// L0 training with hard-concrete gates on the device (docs/method.md §7), twin of
// src/cpu/l0_gates.cpp with the per-element formulas of core/sparsify.h and core/gates.h:
// effective w = theta z (z the hard-concrete sample of the step's counter noise), the update
// (theta by the optimizer of core/optimizer.h, SGD by default; gate gradient; Adam on log alpha)
// and the export theta test_gate(log alpha).
// Napkin math: ~16 bytes per weight and ~60 flops (two 64-bit mixes, logf/expf of the gate
// sample), below the H200's ~12 flops/byte ridge, so memory-bound like the prox step. Group
// gates: a column gate (dense) is one thread walking its column row by row (coalesced across the
// warp, and the CPU's summation order, in double); a filter gate (conv, contiguous) is one block
// with a double tree reduction (deterministic, but another order than the CPU's index order, so
// its gate gradient may differ from the CPU's in the last bits of the double sum). The gate
// samples go through expf/logf, whose CUDA versions may differ from glibc's by an ulp or two:
// l0 values agree with the CPU to float rounding, not bitwise.
#include "kernels/l0_gates.cuh"

#include <cub/block/block_reduce.cuh>

#include <climits>
#include <string>

#include "core/elementwise.h"
#include "core/gates.h"
#include "kernels/common.cuh"
#include "kernels/slab_tiles.cuh"

namespace sparseprox {
namespace cuda {

namespace {

using sparsify::GateSegment;

// Rows a column-gate thread loads before it uses them: 16 loads in flight per thread.
constexpr int kColumnRows = 8;

__device__ bool stopped(const std::int32_t* stop_flag) { return stop_flag != nullptr && *stop_flag != 0; }

__device__ float l0_gate_sample(const float* log_alpha, std::uint64_t gate, const gates::HardConcrete& hc,
                                std::uint64_t seed, std::uint64_t step) {
    return gates::sample_gate(sparsify::gate_noise(seed, step, gate), log_alpha[gate], hc);
}

// One block per tile: weights theta * z, biases copied.
__global__ void __launch_bounds__(kTileThreads)
l0_effective_kernel(const float* __restrict__ theta, const float* __restrict__ log_alpha,
                    const SlabTile* __restrict__ tiles, const GateSegment* __restrict__ segments,
                    gates::HardConcrete hc, std::uint64_t seed, std::uint64_t step, float* __restrict__ eff,
                    const std::int32_t* __restrict__ stop_flag) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float* t = theta + tile.begin;
    float* e = eff + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) e[i] = t[i];
        return;
    }
    const GateSegment seg = segments[tile.layer];
    const std::uint64_t local0 = tile.begin - seg.weight_offset;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const std::uint64_t gate = seg.gate_offset + sparsify::gate_of(seg, local0 + i);
        e[i] = t[i] * l0_gate_sample(log_alpha, gate, hc, seed, step);
    }
}

// One gate's log-alpha step from the loss part of its gradient (the CPU's double sum, rounded to
// float) and the penalty part.
__device__ void l0_gate_adam(float* log_alpha, float* adam_m, float* adam_v, std::uint64_t gate, float log_alpha_old,
                             double loss_grad, float lambda, float per_gate, const gates::HardConcrete& hc,
                             const sparsify::AdamStep& adam) {
    const float ga = static_cast<float>(loss_grad) + sparsify::l0_penalty_grad(log_alpha_old, lambda, per_gate, hc);
    log_alpha[gate] = sparsify::adam_apply(log_alpha_old, ga, adam_m[gate], adam_v[gate], adam);
}

// One block per tile: the whole update of per-weight gates (theta step, gate gradient, Adam) and
// the bias steps of every layer. Tiles of group-gate layers are left to the kernels below.
__global__ void __launch_bounds__(kTileThreads)
l0_update_tiles_kernel(float* __restrict__ theta, float* __restrict__ log_alpha, float* __restrict__ adam_m,
                       float* __restrict__ adam_v, const float* __restrict__ grads, const SlabTile* __restrict__ tiles,
                       const GateSegment* __restrict__ segments, gates::HardConcrete hc, std::uint64_t seed,
                       std::uint64_t step, const float* __restrict__ hyper, sparsify::AdamStep adam,
                       opt::State ost, opt::Step os, const std::int32_t* __restrict__ stop_flag) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    float* t = theta + tile.begin;
    const float* g = grads + tile.begin;
    const float lr = hyper[0];
    float eta;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads)
            t[i] = opt::descend(t[i], g[i], ost, tile.begin + i, os, lr, false, &eta);
        return;
    }
    const GateSegment seg = segments[tile.layer];
    if (seg.map != sparsify::kPerWeight) return;
    const float lambda = hyper[1 + tile.layer];
    const float per_gate = static_cast<float>(seg.per_gate);
    const std::uint64_t local0 = tile.begin - seg.weight_offset;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const std::uint64_t gate = seg.gate_offset + sparsify::gate_of(seg, local0 + i);
        const float u = sparsify::gate_noise(seed, step, gate);
        const float la = log_alpha[gate];
        const float z = gates::sample_gate(u, la, hc);
        const float dz = gates::sample_gate_grad(u, la, hc);
        const float gi = g[i], ti = t[i];
        // The CPU's one-term double sum: 0.0 + (g theta dz), exact, then back to float.
        const double loss_grad = 0.0 + static_cast<double>(gi * ti * dz);
        t[i] = opt::descend(ti, gi * z, ost, tile.begin + i, os, lr, true, &eta);
        l0_gate_adam(log_alpha, adam_m, adam_v, gate, la, loss_grad, lambda, per_gate, hc, adam);
    }
}

__device__ void l0_update_column(float* __restrict__ theta, float* __restrict__ log_alpha, float* __restrict__ adam_m,
                                 float* __restrict__ adam_v, const float* __restrict__ grads, const GateSegment& seg,
                                 const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step,
                                 const float* __restrict__ hyper, std::int32_t layer, const sparsify::AdamStep& adam,
                                 const opt::State& ost, const opt::Step& os, std::uint64_t k);

// Column gates of a dense layer (n_out, n_in), gate k = index % n_in: one thread per column (grid-stride
// over the columns), rows in index order (the CPU's order of the double sum), theta stepped as it goes.
__global__ void __launch_bounds__(kTileThreads)
l0_update_columns_kernel(float* __restrict__ theta, float* __restrict__ log_alpha, float* __restrict__ adam_m,
                         float* __restrict__ adam_v, const float* __restrict__ grads, GateSegment seg,
                         gates::HardConcrete hc, std::uint64_t seed, std::uint64_t step,
                         const float* __restrict__ hyper, std::int32_t layer, sparsify::AdamStep adam,
                         opt::State ost, opt::Step os, const std::int32_t* __restrict__ stop_flag) {
    if (stopped(stop_flag)) return;
    for (std::uint64_t k = static_cast<std::uint64_t>(blockIdx.x) * kTileThreads + threadIdx.x; k < seg.n_gates;
         k += static_cast<std::uint64_t>(gridDim.x) * kTileThreads)
        l0_update_column(theta, log_alpha, adam_m, adam_v, grads, seg, hc, seed, step, hyper, layer, adam, ost, os,
                         k);
}

// The update of column gate k (see l0_update_columns_kernel).
__device__ void l0_update_column(float* __restrict__ theta, float* __restrict__ log_alpha, float* __restrict__ adam_m,
                                 float* __restrict__ adam_v, const float* __restrict__ grads, const GateSegment& seg,
                                 const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step,
                                 const float* __restrict__ hyper, std::int32_t layer, const sparsify::AdamStep& adam,
                                 const opt::State& ost, const opt::Step& os, std::uint64_t k) {
    const std::uint64_t gate = seg.gate_offset + k;
    const float u = sparsify::gate_noise(seed, step, gate);
    const float la = log_alpha[gate];
    const float z = gates::sample_gate(u, la, hc);
    const float dz = gates::sample_gate_grad(u, la, hc);
    const float lr = hyper[0];
    const std::uint64_t n_in = seg.divisor, n_rows = seg.n_weights / seg.divisor;
    float* t = theta + seg.weight_offset + k;
    const float* g = grads + seg.weight_offset + k;
    double sum = 0.0;
    for (std::uint64_t r0 = 0; r0 < n_rows; r0 += kColumnRows) {
        float tv[kColumnRows], gv[kColumnRows];
#pragma unroll
        for (int j = 0; j < kColumnRows; ++j)
            if (r0 + j < n_rows) {
                tv[j] = t[(r0 + j) * n_in];
                gv[j] = g[(r0 + j) * n_in];
            }
#pragma unroll
        for (int j = 0; j < kColumnRows; ++j)
            if (r0 + j < n_rows) {
                sum += static_cast<double>(gv[j] * tv[j] * dz);
                const std::uint64_t at = seg.weight_offset + k + (r0 + j) * n_in;  // the slab index
                float eta;
                t[(r0 + j) * n_in] = opt::descend(tv[j], gv[j] * z, ost, at, os, lr, true, &eta);
            }
    }
    l0_gate_adam(log_alpha, adam_m, adam_v, gate, la, sum, hyper[1 + layer], static_cast<float>(seg.per_gate), hc,
                 adam);
}

// Filter gates of a conv layer, gate k = index / (c_in kh kw), contiguous: one block per gate,
// a per-thread double sum and a block tree reduction (fixed order: run-to-run deterministic).
__global__ void __launch_bounds__(kTileThreads)
l0_update_blocks_kernel(float* __restrict__ theta, float* __restrict__ log_alpha, float* __restrict__ adam_m,
                        float* __restrict__ adam_v, const float* __restrict__ grads, GateSegment seg,
                        gates::HardConcrete hc, std::uint64_t seed, std::uint64_t step,
                        const float* __restrict__ hyper, std::int32_t layer, sparsify::AdamStep adam,
                        opt::State ost, opt::Step os, const std::int32_t* __restrict__ stop_flag) {
    if (stopped(stop_flag)) return;  // uniform over the grid
    const std::uint64_t k = blockIdx.x;
    const std::uint64_t gate = seg.gate_offset + k;
    const float u = sparsify::gate_noise(seed, step, gate);
    const float la = log_alpha[gate];  // read by every thread before thread 0 writes it
    const float z = gates::sample_gate(u, la, hc);
    const float dz = gates::sample_gate_grad(u, la, hc);
    const float lr = hyper[0];
    const std::uint64_t n = seg.divisor;
    float* t = theta + seg.weight_offset + k * n;
    const float* g = grads + seg.weight_offset + k * n;
    double sum = 0.0;
    for (std::uint64_t i = threadIdx.x; i < n; i += kTileThreads) {
        const float gi = g[i], ti = t[i];
        sum += static_cast<double>(gi * ti * dz);
        float eta;
        t[i] = opt::descend(ti, gi * z, ost, seg.weight_offset + k * n + i, os, lr, true, &eta);
    }
    using BlockReduce = cub::BlockReduce<double, kTileThreads>;
    __shared__ typename BlockReduce::TempStorage temp;
    const double total = BlockReduce(temp).Sum(sum);
    if (threadIdx.x == 0)
        l0_gate_adam(log_alpha, adam_m, adam_v, gate, la, total, hyper[1 + layer], static_cast<float>(seg.per_gate),
                     hc, adam);
}

__global__ void __launch_bounds__(kTileThreads)
l0_export_kernel(const float* __restrict__ theta, const float* __restrict__ log_alpha,
                 const SlabTile* __restrict__ tiles, const GateSegment* __restrict__ segments, gates::HardConcrete hc,
                 float* __restrict__ out, const std::int32_t* __restrict__ stop_flag,
                 std::uint32_t* __restrict__ tile_nnz) {
    const SlabTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float* t = theta + tile.begin;
    float* o = out + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) o[i] = t[i];
        return;
    }
    const GateSegment seg = segments[tile.layer];
    const std::uint64_t local0 = tile.begin - seg.weight_offset;
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) {
        const std::uint64_t gate = seg.gate_offset + sparsify::gate_of(seg, local0 + i);
        const float w = t[i] * gates::test_gate(log_alpha[gate], hc);
        o[i] = w;
        nnz += w != 0.0f;
    }
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

}  // namespace

void launch_l0_effective(const float* theta, const float* log_alpha, const SlabTiles& t,
                         const GateSegment* segments, const gates::HardConcrete& hc, std::uint64_t seed,
                         std::uint64_t step, float* eff, const std::int32_t* stop_flag, cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    l0_effective_kernel<<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(
        theta, log_alpha, t.tiles, segments, hc, seed, step, eff, stop_flag);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
                      const SlabTiles& t, const GateSegment* segments, const std::vector<GateSegment>& host_segments,
                      const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step, const float* hyper,
                      const sparsify::AdamStep& adam, const opt::State& theta_state, const opt::Step& opt_step,
                      const std::int32_t* stop_flag, cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    // Per-weight gates and all biases; the group layers' tiles return at once.
    l0_update_tiles_kernel<<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(
        theta, log_alpha, adam_m, adam_v, grads, t.tiles, segments, hc, seed, step, hyper, adam, theta_state, opt_step,
        stop_flag);
    SPARSEPROX_CHECK_LAUNCH();
    for (std::size_t l = 0; l < host_segments.size(); ++l) {
        const GateSegment& g = host_segments[l];
        if (g.map == sparsify::kPerWeight || g.n_gates == 0 || g.n_weights == 0) continue;
        const auto layer = static_cast<std::int32_t>(l);
        if (g.map == sparsify::kColumn) {
            l0_update_columns_kernel<<<grid_size(g.n_gates, kTileThreads), kTileThreads, 0, stream>>>(
                theta, log_alpha, adam_m, adam_v, grads, g, hc, seed, step, hyper, layer, adam, theta_state, opt_step,
                stop_flag);
        } else {
            if (g.n_gates > static_cast<std::uint64_t>(INT_MAX))
                throw Error("l0 update: " + std::to_string(g.n_gates) + " filter gates in one layer");
            l0_update_blocks_kernel<<<static_cast<unsigned>(g.n_gates), kTileThreads, 0, stream>>>(
                theta, log_alpha, adam_m, adam_v, grads, g, hc, seed, step, hyper, layer, adam, theta_state, opt_step,
                stop_flag);
        }
        SPARSEPROX_CHECK_LAUNCH();
    }
}

void launch_l0_export(const float* theta, const float* log_alpha, const SlabTiles& t, const GateSegment* segments,
                      const gates::HardConcrete& hc, float* out, const std::int32_t* stop_flag, cudaStream_t stream) {
    if (t.n_tiles == 0) return;
    l0_export_kernel<<<static_cast<unsigned>(t.n_tiles), kTileThreads, 0, stream>>>(
        theta, log_alpha, t.tiles, segments, hc, out, stop_flag, t.tile_nnz);
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
