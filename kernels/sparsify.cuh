// Launchers of the l0, spred and gmp kernels (kernels/sparsify.cu), the CUDA twins of
// cpu/sparsify.h: the same formulas (core/sparsify.h, core/gates.h), on device slabs laid out by
// ParamLayout. Plain C++ declarations.
//
// SparsifyPlan holds the device tables of one layout, built once: the tile table it shares with
// ProxPlan (cuda/tile_table.h: one block per tile of kProxTileSize elements inside one weight or
// bias range, per-tile and per-layer nonzero counts), the gate segments of L0 training and the
// GMP sort scratch. Every operation queues its work on `stream`
// and returns at once, except gmp_prune (Thrust's sort synchronizes the stream).
//
// The stop flag: every operation of a training step takes the engine's device stop flag (may be
// null). When it is nonzero the operation writes nothing, so the parameters, the method's state
// and layer_nnz() stay those of the last applied step, as ProxPlan::step does for l1.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/sparsify.h"
#include "cuda/common.h"
#include "cuda/step_state.h"
#include "cuda/tile_table.h"
#include "sparseprox/model.h"

namespace sparseprox {
namespace cuda {

class SparsifyPlan {
public:
    SparsifyPlan(const ParamLayout& layout, cudaStream_t stream);

    std::size_t n_layers() const { return n_layers_; }
    std::size_t n_tiles() const { return table_.n_tiles(); }

    // Device array (n_layers) of nonzero weights per layer, written by the *_export operations,
    // masked_sgd, gmp_prune and count.
    const unsigned long long* layer_nnz() const { return table_.layer_nnz(); }
    // Queues a count of the weights of `params` into layer_nnz().
    void count(const float* params, cudaStream_t stream);

    // ---- l0 ----
    // Uploads the gate segments (one per weight layer, as GateLayout::of; queued, so a new run's
    // table replaces the old one in stream order). Needed before the l0 operations.
    void set_gates(const sparsify::GateLayout& gates, cudaStream_t stream);
    // eff = theta * sample_gate(gate_noise(seed, step, gate), log_alpha[gate]) per weight (the
    // noise recomputed from the counter, never stored); biases copied.
    void l0_effective(const float* theta, const float* log_alpha, const gates::HardConcrete& hc, std::uint64_t seed,
                      std::uint64_t step, float* eff, const std::int32_t* stop_flag, cudaStream_t stream);
    // cpu::l0_update: theta_w -= lr g z, biases -= lr g, Adam on each log alpha with the gradient
    // sum_{its weights} g theta dz + lambda_l per_gate p (1 - p). hyper = [lr, lambda_0, ...] in
    // device memory (hyper_array); adam from sparsify::adam_step(gate_lr, t) on the host.
    void l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
                   const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step, const float* hyper,
                   const sparsify::AdamStep& adam, const std::int32_t* stop_flag, cudaStream_t stream);
    // out = theta * test_gate(log_alpha) (biases copied); counts into layer_nnz().
    void l0_export(const float* theta, const float* log_alpha, const gates::HardConcrete& hc, float* out,
                   const std::int32_t* stop_flag, cudaStream_t stream);

    // ---- spred ----
    // u, v from the slab w by the balanced split (biases to u; v's bias entries untouched).
    void spred_split(const float* w, float* u, float* v, cudaStream_t stream);
    void spred_effective(const float* u, const float* v, float* eff, const std::int32_t* stop_flag,
                         cudaStream_t stream);
    void spred_update(float* u, float* v, const float* grads, const float* hyper, const std::int32_t* stop_flag,
                      cudaStream_t stream);
    // out = spred_readout(u, v, threshold) (biases = u); counts into layer_nnz().
    void spred_export(const float* u, const float* v, float threshold, float* out, const std::int32_t* stop_flag,
                      cudaStream_t stream);

    // ---- gmp ----
    // w = mask ? w - lr g : 0 on the weights, plain SGD on the biases; counts into layer_nnz().
    void masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const float* hyper,
                    const std::int32_t* stop_flag, cudaStream_t stream);
    // cpu::gmp_prune: keeps the keep[k] largest |w| of each scope (all weight layers together when
    // keep has one entry and there is more than one layer, else layer by layer), ties to the
    // lower slab index, zeroes the rest in w and mask; then counts into layer_nnz(). A stable
    // descending radix sort of |w| (as bits) with the slab index as value. Synchronizes.
    void gmp_prune(float* w, std::uint8_t* mask, const std::vector<std::size_t>& keep,
                   const std::int32_t* stop_flag, cudaStream_t stream);

private:
    ParamLayout layout_;
    std::size_t n_layers_ = 0;
    std::size_t n_weights_ = 0;                   // weights of all layers (no biases, no padding)
    TileTable table_;                             // the tiles and the per-tile / per-layer counts
    std::vector<sparsify::GateSegment> gates_host_;
    DeviceBuffer<sparsify::GateSegment> gates_;   // (n_layers)
    DeviceBuffer<std::uint32_t> sort_keys_;       // (n_weights) gmp: |w| as bits
    DeviceBuffer<std::uint64_t> sort_index_;      // (n_weights) gmp: slab index
};

}  // namespace cuda
}  // namespace sparseprox
