// The l0, spred and gmp operations on the device (docs/method.md §7), twins of cpu/sparsify.cpp with
// the per-element formulas of core/sparsify.h and core/gates.h:
//   l0     effective w = theta z (z the hard-concrete sample of the step's counter noise),
//          update (theta SGD, gate gradient, Adam on log alpha), export theta test_gate(log alpha)
//   spred  effective u v, update spred_step, export spred_readout
//   gmp    masked SGD, pruning to the k largest |w| (stable radix sort, ties to the lower index)
// Napkin math: the per-element kernels read 2-4 floats and write 1-2 per element, ~12-20 bytes,
// so they are memory-bound like the prox step (H200 4.8 TB/s: 1e8 weights in ~0.3-0.4 ms).
// The l0 kernels add ~60 flops per element (two 64-bit mixes, logf/expf of the gate sample),
// still below the H200's ~12 flops/byte ridge at 16 bytes per element. Group gates:
// a column gate (dense) is one thread walking its column row by row (coalesced across the warp,
// and the CPU's summation order, in double); a filter gate (conv, contiguous) is one block with a
// double tree reduction (deterministic, but another order than the CPU's index order, so its
// gate gradient may differ from the CPU's in the last bits of the double sum).
//
// Every per-element result is computed by the shared SP_HD formulas with one rounding per
// operation (the project builds device code with --fmad=false), so spred, gmp, the theta steps
// and the bias steps agree bit for bit with the CPU. The gate samples go through expf/logf, whose
// CUDA versions may differ from glibc's by an ulp or two: l0 values agree to float rounding.
//
// Nonzero counts: one per weight tile (block reduction), then CUB's segmented sum per layer,
// integers, exact and deterministic (as kernels/prox_step.cu). With the stop flag set every
// kernel of a training step returns at its first instruction, so the tile counts and the
// per-layer sums stay those of the last applied step.
#include "kernels/sparsify.cuh"

#include <cub/block/block_reduce.cuh>
#include <thrust/execution_policy.h>
#include <thrust/functional.h>
#include <thrust/sort.h>

#include <algorithm>
#include <climits>
#include <exception>
#include <string>

#include "core/elementwise.h"
#include "core/gates.h"
#include "kernels/prox_step.cuh"

namespace sparseprox {
namespace cuda {

namespace {

constexpr int kThreads = 256;
// Rows a column-gate thread loads before it uses them: 16 loads in flight per thread.
constexpr int kColumnRows = 8;

using sparsify::GateSegment;

__device__ bool stopped(const std::int32_t* stop_flag) { return stop_flag != nullptr && *stop_flag != 0; }

// Sum of one value per thread; thread 0 writes it.
__device__ void write_block_count(std::uint32_t count, std::uint32_t* out) {
    using BlockReduce = cub::BlockReduce<std::uint32_t, kThreads>;
    __shared__ typename BlockReduce::TempStorage temp;
    const std::uint32_t total = BlockReduce(temp).Sum(count);
    if (threadIdx.x == 0) *out = total;
}

// ---- l0 -------------------------------------------------------------------------------------------

__device__ float l0_gate_sample(const float* log_alpha, std::uint64_t gate, const gates::HardConcrete& hc,
                                std::uint64_t seed, std::uint64_t step) {
    return gates::sample_gate(sparsify::gate_noise(seed, step, gate), log_alpha[gate], hc);
}

// One block per tile: weights theta * z, biases copied.
__global__ void __launch_bounds__(kThreads)
l0_effective_kernel(const float* __restrict__ theta, const float* __restrict__ log_alpha,
                    const ProxTile* __restrict__ tiles, const GateSegment* __restrict__ segments,
                    gates::HardConcrete hc, std::uint64_t seed, std::uint64_t step, float* __restrict__ eff,
                    const std::int32_t* __restrict__ stop_flag) {
    const ProxTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float* t = theta + tile.begin;
    float* e = eff + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) e[i] = t[i];
        return;
    }
    const GateSegment seg = segments[tile.layer];
    const std::uint64_t local0 = tile.begin - seg.weight_offset;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) {
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
__global__ void __launch_bounds__(kThreads)
l0_update_tiles_kernel(float* __restrict__ theta, float* __restrict__ log_alpha, float* __restrict__ adam_m,
                       float* __restrict__ adam_v, const float* __restrict__ grads, const ProxTile* __restrict__ tiles,
                       const GateSegment* __restrict__ segments, gates::HardConcrete hc, std::uint64_t seed,
                       std::uint64_t step, const float* __restrict__ hyper, sparsify::AdamStep adam,
                       const std::int32_t* __restrict__ stop_flag) {
    const ProxTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    float* t = theta + tile.begin;
    const float* g = grads + tile.begin;
    const float lr = hyper[0];
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) t[i] = ew::sgd(t[i], g[i], lr);
        return;
    }
    const GateSegment seg = segments[tile.layer];
    if (seg.map != sparsify::kPerWeight) return;
    const float lambda = hyper[1 + tile.layer];
    const float per_gate = static_cast<float>(seg.per_gate);
    const std::uint64_t local0 = tile.begin - seg.weight_offset;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) {
        const std::uint64_t gate = seg.gate_offset + sparsify::gate_of(seg, local0 + i);
        const float u = sparsify::gate_noise(seed, step, gate);
        const float la = log_alpha[gate];
        const float z = gates::sample_gate(u, la, hc);
        const float dz = gates::sample_gate_grad(u, la, hc);
        const float gi = g[i], ti = t[i];
        // The CPU's one-term double sum: 0.0 + (g theta dz), exact, then back to float.
        const double loss_grad = 0.0 + static_cast<double>(gi * ti * dz);
        t[i] = ew::sgd(ti, gi * z, lr);
        l0_gate_adam(log_alpha, adam_m, adam_v, gate, la, loss_grad, lambda, per_gate, hc, adam);
    }
}

// Column gates of a dense layer (n_out, n_in), gate k = index % n_in: one thread per column,
// rows in index order (the CPU's order of the double sum), theta stepped as it goes.
__global__ void __launch_bounds__(kThreads)
l0_update_columns_kernel(float* __restrict__ theta, float* __restrict__ log_alpha, float* __restrict__ adam_m,
                         float* __restrict__ adam_v, const float* __restrict__ grads, GateSegment seg,
                         gates::HardConcrete hc, std::uint64_t seed, std::uint64_t step,
                         const float* __restrict__ hyper, std::int32_t layer, sparsify::AdamStep adam,
                         const std::int32_t* __restrict__ stop_flag) {
    if (stopped(stop_flag)) return;
    const std::uint64_t k = static_cast<std::uint64_t>(blockIdx.x) * kThreads + threadIdx.x;
    if (k >= seg.n_gates) return;
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
                t[(r0 + j) * n_in] = ew::sgd(tv[j], gv[j] * z, lr);
            }
    }
    l0_gate_adam(log_alpha, adam_m, adam_v, gate, la, sum, hyper[1 + layer], static_cast<float>(seg.per_gate), hc,
                 adam);
}

// Filter gates of a conv layer, gate k = index / (c_in kh kw), contiguous: one block per gate,
// a per-thread double sum and a block tree reduction (fixed order: run-to-run deterministic).
__global__ void __launch_bounds__(kThreads)
l0_update_blocks_kernel(float* __restrict__ theta, float* __restrict__ log_alpha, float* __restrict__ adam_m,
                        float* __restrict__ adam_v, const float* __restrict__ grads, GateSegment seg,
                        gates::HardConcrete hc, std::uint64_t seed, std::uint64_t step,
                        const float* __restrict__ hyper, std::int32_t layer, sparsify::AdamStep adam,
                        const std::int32_t* __restrict__ stop_flag) {
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
    for (std::uint64_t i = threadIdx.x; i < n; i += kThreads) {
        const float gi = g[i], ti = t[i];
        sum += static_cast<double>(gi * ti * dz);
        t[i] = ew::sgd(ti, gi * z, lr);
    }
    using BlockReduce = cub::BlockReduce<double, kThreads>;
    __shared__ typename BlockReduce::TempStorage temp;
    const double total = BlockReduce(temp).Sum(sum);
    if (threadIdx.x == 0)
        l0_gate_adam(log_alpha, adam_m, adam_v, gate, la, total, hyper[1 + layer], static_cast<float>(seg.per_gate),
                     hc, adam);
}

__global__ void __launch_bounds__(kThreads)
l0_export_kernel(const float* __restrict__ theta, const float* __restrict__ log_alpha,
                 const ProxTile* __restrict__ tiles, const GateSegment* __restrict__ segments, gates::HardConcrete hc,
                 float* __restrict__ out, const std::int32_t* __restrict__ stop_flag,
                 std::uint32_t* __restrict__ tile_nnz) {
    const ProxTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float* t = theta + tile.begin;
    float* o = out + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) o[i] = t[i];
        return;
    }
    const GateSegment seg = segments[tile.layer];
    const std::uint64_t local0 = tile.begin - seg.weight_offset;
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) {
        const std::uint64_t gate = seg.gate_offset + sparsify::gate_of(seg, local0 + i);
        const float w = t[i] * gates::test_gate(log_alpha[gate], hc);
        o[i] = w;
        nnz += w != 0.0f;
    }
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

// ---- spred ----------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
spred_split_kernel(const float* __restrict__ w, const ProxTile* __restrict__ tiles, float* __restrict__ u,
                   float* __restrict__ v) {
    const ProxTile tile = tiles[blockIdx.x];
    const float* x = w + tile.begin;
    float* a = u + tile.begin;
    float* b = v + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) a[i] = x[i];
        return;
    }
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) {
        const float xi = x[i];
        a[i] = sparsify::spred_split_u(xi);
        b[i] = sparsify::spred_split_v(xi);
    }
}

__global__ void __launch_bounds__(kThreads)
spred_effective_kernel(const float* __restrict__ u, const float* __restrict__ v, const ProxTile* __restrict__ tiles,
                       float* __restrict__ eff, const std::int32_t* __restrict__ stop_flag) {
    const ProxTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float* a = u + tile.begin;
    const float* b = v + tile.begin;
    float* e = eff + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) e[i] = a[i];
        return;
    }
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) e[i] = a[i] * b[i];
}

__global__ void __launch_bounds__(kThreads)
spred_update_kernel(float* __restrict__ u, float* __restrict__ v, const float* __restrict__ grads,
                    const ProxTile* __restrict__ tiles, const float* __restrict__ hyper,
                    const std::int32_t* __restrict__ stop_flag) {
    const ProxTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    float* a = u + tile.begin;
    float* b = v + tile.begin;
    const float* g = grads + tile.begin;
    const float lr = hyper[0];
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) a[i] = ew::sgd(a[i], g[i], lr);
        return;
    }
    const float lambda = hyper[1 + tile.layer];
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) {
        float ai = a[i], bi = b[i];
        sparsify::spred_step(ai, bi, g[i], lr, lambda);
        a[i] = ai;
        b[i] = bi;
    }
}

__global__ void __launch_bounds__(kThreads)
spred_export_kernel(const float* __restrict__ u, const float* __restrict__ v, const ProxTile* __restrict__ tiles,
                    float threshold, float* __restrict__ out, const std::int32_t* __restrict__ stop_flag,
                    std::uint32_t* __restrict__ tile_nnz) {
    const ProxTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    const float* a = u + tile.begin;
    const float* b = v + tile.begin;
    float* o = out + tile.begin;
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) o[i] = a[i];
        return;
    }
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) {
        const float w = sparsify::spred_readout(a[i], b[i], threshold);
        o[i] = w;
        nnz += w != 0.0f;
    }
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

// ---- gmp ------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
masked_sgd_kernel(float* __restrict__ w, const float* __restrict__ grads, const std::uint8_t* __restrict__ mask,
                  const ProxTile* __restrict__ tiles, const float* __restrict__ hyper,
                  const std::int32_t* __restrict__ stop_flag, std::uint32_t* __restrict__ tile_nnz) {
    const ProxTile tile = tiles[blockIdx.x];
    if (stopped(stop_flag)) return;
    float* p = w + tile.begin;
    const float* g = grads + tile.begin;
    const float lr = hyper[0];
    if (tile.is_bias) {
        for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) p[i] = ew::sgd(p[i], g[i], lr);
        return;
    }
    const std::uint8_t* m = mask + tile.begin;
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kThreads) {
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

// Thrust reports failures as thrust::system_error; the library's callers expect sparseprox::Error.
template <class F>
void thrust_checked(const char* what, F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        throw Error(std::string(what) + " failed: " + e.what());
    }
}

}  // namespace

SparsifyPlan::SparsifyPlan(const ParamLayout& layout, cudaStream_t stream)
    : layout_(layout), n_layers_(layout.segments.size()), table_(layout, stream) {
    for (const ParamSegment& s : layout.segments) n_weights_ += s.n_weights;
    gates_.allocate(std::max<std::size_t>(n_layers_, 1));
}

void SparsifyPlan::count(const float* params, cudaStream_t stream) { table_.count(params, stream); }

// ---- l0 -------------------------------------------------------------------------------------------

void SparsifyPlan::set_gates(const sparsify::GateLayout& gates, cudaStream_t stream) {
    if (gates.segments.size() != n_layers_)
        throw Error("SparsifyPlan::set_gates: " + std::to_string(gates.segments.size()) + " gate segments for " +
                    std::to_string(n_layers_) + " weight layers");
    for (std::size_t l = 0; l < n_layers_; ++l) {
        const GateSegment& g = gates.segments[l];
        const ParamSegment& s = layout_.segments[l];
        const bool shape_ok = g.weight_offset == s.weight_offset && g.n_weights == s.n_weights &&
                              (g.map == sparsify::kPerWeight ? g.n_gates == g.n_weights
                                                             : g.divisor > 0 && g.n_weights % g.divisor == 0);
        if (!shape_ok) throw Error("SparsifyPlan::set_gates: gate segment " + std::to_string(l) + " does not match the layout");
    }
    gates_host_ = gates.segments;
    gates_.copy_from_host(gates_host_.data(), n_layers_, stream);
}

void SparsifyPlan::l0_effective(const float* theta, const float* log_alpha, const gates::HardConcrete& hc,
                                std::uint64_t seed, std::uint64_t step, float* eff, const std::int32_t* stop_flag,
                                cudaStream_t stream) {
    if (table_.n_tiles() == 0) return;
    if (gates_host_.size() != n_layers_) throw Error("SparsifyPlan::l0_effective: no gate segments (set_gates)");
    l0_effective_kernel<<<static_cast<unsigned>(table_.n_tiles()), kThreads, 0, stream>>>(
        theta, log_alpha, table_.tiles(), gates_.data(), hc, seed, step, eff, stop_flag);
    SPARSEPROX_CHECK_LAUNCH();
}

void SparsifyPlan::l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
                             const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step,
                             const float* hyper, const sparsify::AdamStep& adam, const std::int32_t* stop_flag,
                             cudaStream_t stream) {
    if (table_.n_tiles() == 0) return;
    if (gates_host_.size() != n_layers_) throw Error("SparsifyPlan::l0_update: no gate segments (set_gates)");
    // Per-weight gates and all biases; the group layers' tiles return at once.
    l0_update_tiles_kernel<<<static_cast<unsigned>(table_.n_tiles()), kThreads, 0, stream>>>(
        theta, log_alpha, adam_m, adam_v, grads, table_.tiles(), gates_.data(), hc, seed, step, hyper, adam, stop_flag);
    SPARSEPROX_CHECK_LAUNCH();
    for (std::size_t l = 0; l < n_layers_; ++l) {
        const GateSegment& g = gates_host_[l];
        if (g.map == sparsify::kPerWeight || g.n_gates == 0 || g.n_weights == 0) continue;
        const auto layer = static_cast<std::int32_t>(l);
        if (g.map == sparsify::kColumn) {
            l0_update_columns_kernel<<<grid_size(g.n_gates, kThreads), kThreads, 0, stream>>>(
                theta, log_alpha, adam_m, adam_v, grads, g, hc, seed, step, hyper, layer, adam, stop_flag);
        } else {
            if (g.n_gates > static_cast<std::uint64_t>(INT_MAX))
                throw Error("l0 update: " + std::to_string(g.n_gates) + " filter gates in one layer");
            l0_update_blocks_kernel<<<static_cast<unsigned>(g.n_gates), kThreads, 0, stream>>>(
                theta, log_alpha, adam_m, adam_v, grads, g, hc, seed, step, hyper, layer, adam, stop_flag);
        }
        SPARSEPROX_CHECK_LAUNCH();
    }
}

void SparsifyPlan::l0_export(const float* theta, const float* log_alpha, const gates::HardConcrete& hc, float* out,
                             const std::int32_t* stop_flag, cudaStream_t stream) {
    if (table_.n_tiles() == 0) return;
    if (gates_host_.size() != n_layers_) throw Error("SparsifyPlan::l0_export: no gate segments (set_gates)");
    l0_export_kernel<<<static_cast<unsigned>(table_.n_tiles()), kThreads, 0, stream>>>(
        theta, log_alpha, table_.tiles(), gates_.data(), hc, out, stop_flag, table_.tile_nnz());
    SPARSEPROX_CHECK_LAUNCH();
    table_.sum_per_layer(stream);
}

// ---- spred ----------------------------------------------------------------------------------------

void SparsifyPlan::spred_split(const float* w, float* u, float* v, cudaStream_t stream) {
    if (table_.n_tiles() == 0) return;
    spred_split_kernel<<<static_cast<unsigned>(table_.n_tiles()), kThreads, 0, stream>>>(w, table_.tiles(), u, v);
    SPARSEPROX_CHECK_LAUNCH();
}

void SparsifyPlan::spred_effective(const float* u, const float* v, float* eff, const std::int32_t* stop_flag,
                                   cudaStream_t stream) {
    if (table_.n_tiles() == 0) return;
    spred_effective_kernel<<<static_cast<unsigned>(table_.n_tiles()), kThreads, 0, stream>>>(u, v, table_.tiles(), eff,
                                                                                      stop_flag);
    SPARSEPROX_CHECK_LAUNCH();
}

void SparsifyPlan::spred_update(float* u, float* v, const float* grads, const float* hyper,
                                const std::int32_t* stop_flag, cudaStream_t stream) {
    if (table_.n_tiles() == 0) return;
    spred_update_kernel<<<static_cast<unsigned>(table_.n_tiles()), kThreads, 0, stream>>>(u, v, grads, table_.tiles(), hyper,
                                                                                   stop_flag);
    SPARSEPROX_CHECK_LAUNCH();
}

void SparsifyPlan::spred_export(const float* u, const float* v, float threshold, float* out,
                                const std::int32_t* stop_flag, cudaStream_t stream) {
    if (table_.n_tiles() == 0) return;
    spred_export_kernel<<<static_cast<unsigned>(table_.n_tiles()), kThreads, 0, stream>>>(
        u, v, table_.tiles(), threshold, out, stop_flag, table_.tile_nnz());
    SPARSEPROX_CHECK_LAUNCH();
    table_.sum_per_layer(stream);
}

// ---- gmp ------------------------------------------------------------------------------------------

void SparsifyPlan::masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const float* hyper,
                              const std::int32_t* stop_flag, cudaStream_t stream) {
    if (table_.n_tiles() == 0) return;
    masked_sgd_kernel<<<static_cast<unsigned>(table_.n_tiles()), kThreads, 0, stream>>>(w, grads, mask, table_.tiles(), hyper,
                                                                                 stop_flag, table_.tile_nnz());
    SPARSEPROX_CHECK_LAUNCH();
    table_.sum_per_layer(stream);
}

void SparsifyPlan::gmp_prune(float* w, std::uint8_t* mask, const std::vector<std::size_t>& keep,
                             const std::int32_t* stop_flag, cudaStream_t stream) {
    if (keep.empty() || n_layers_ == 0) return;
    if (sort_keys_.size() < n_weights_) {
        SPARSEPROX_CUDA_CHECK(cudaStreamSynchronize(stream));  // queued prunes may still use the old scratch
        sort_keys_.allocate(n_weights_);
        sort_index_.allocate(n_weights_);
    }
    // One scope: its layers, gathered in slab order (so equal keys stay in index order), sorted by
    // |w| descending with a stable sort, the first k kept.
    auto prune = [&](const std::vector<std::size_t>& layers, std::size_t keep_count) {
        std::uint64_t n = 0;
        for (std::size_t l : layers) {
            const ParamSegment& s = layout_.segments[l];
            if (s.n_weights == 0) continue;
            gather_magnitudes_kernel<<<grid_size(s.n_weights, kThreads), kThreads, 0, stream>>>(
                w, s.weight_offset, s.n_weights, sort_keys_.data() + n, sort_index_.data() + n, stop_flag);
            SPARSEPROX_CHECK_LAUNCH();
            n += s.n_weights;
        }
        if (n == 0) return;
        const std::uint64_t k = std::min<std::uint64_t>(keep_count, n);
        if (k < n) {  // with every weight kept the order does not matter
            std::uint32_t* keys = sort_keys_.data();
            std::uint64_t* index = sort_index_.data();
            thrust_checked("thrust::stable_sort_by_key (gmp prune)", [&] {
                thrust::stable_sort_by_key(thrust::cuda::par.on(stream), keys, keys + n, index,
                                           thrust::greater<std::uint32_t>());
            });
        }
        mark_kept_kernel<<<grid_size(n, kThreads), kThreads, 0, stream>>>(w, mask, sort_index_.data(), n, k,
                                                                          stop_flag);
        SPARSEPROX_CHECK_LAUNCH();
    };
    if (keep.size() == 1 && n_layers_ != 1) {
        std::vector<std::size_t> all(n_layers_);
        for (std::size_t l = 0; l < n_layers_; ++l) all[l] = l;
        prune(all, keep[0]);
    } else {
        for (std::size_t l = 0; l < keep.size() && l < n_layers_; ++l) prune({l}, keep[l]);
    }
    count(w, stream);
}

}  // namespace cuda
}  // namespace sparseprox
