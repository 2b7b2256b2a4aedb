// The plain records that host code fills and the operations of both backends read: the state of
// a training run, the stop rule's configuration, the tiles of the fused slab kernels and the
// gate segments of L0 training. Plain C++ structs with the same layout on host and device; the
// CUDA backend copies them to device memory as they are.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/elementwise.h"
#include "sparseprox/model.h"

namespace sparseprox {

// Progress of a training run, written only by the backend's operations (the loss accumulator and
// the stop rule); the network reads it when it polls.
struct StepState {
    std::uint64_t steps = 0;       // steps applied (a frozen step does not count)
    std::int32_t stopped = 0;      // the stop rule held after step `steps`: later steps change nothing
    std::int32_t unused = 0;
    double loss_sum = 0.0;         // sum of batch-mean losses since the last poll
    std::uint64_t loss_count = 0;  // steps in loss_sum (loss_sum and loss_count are reset together)
};
static_assert(offsetof(StepState, loss_count) == offsetof(StepState, loss_sum) + sizeof(double),
              "a poll resets loss_sum and loss_count with one fill");

// The stop rule (StopRule, targets already expanded), with the targets in a separate array of
// n_targets entries.
struct StopConfig {
    std::uint32_t n_targets = 0;   // 0: no rule; 1: total NNZ; else one per weight layer
    std::uint32_t n_layers = 0;    // entries of the per-layer NNZ array
    std::uint64_t min_layers = 0;  // multi rule: layers that must be in band (0: all)
    double tolerance = 0.0;        // rho
};

// The fused slab kernels give each block one tile; a tile lies inside one weight or one bias
// range, so its block needs no per-element segment lookup. Segments start on ParamLayout::kAlign
// boundaries, so with this tile size every full weight tile starts 16-byte aligned.
constexpr std::size_t kTileSize = ParamLayout::kAlign;  // 2048 floats

struct SlabTile {
    std::uint64_t begin = 0;  // slab offset of the tile's first element
    std::uint32_t count = 0;  // elements, 1..kTileSize
    std::int32_t layer = 0;   // weight layer (index into ParamLayout::segments)
    std::int32_t is_bias = 0; // 1: a bias range (plain SGD, not counted); 0: weights, counted
    std::int32_t unused = 0;
};

namespace sparsify {

// How a layer's weights map to its L0 gates.
enum GateMap : std::int32_t {
    kPerWeight = 0,  // gate = weight index
    kColumn = 1,     // dense (n_out x n_in), one gate per input neuron: gate = index % n_in
    kBlock = 2,      // conv (c_out x c_in x kh x kw), one gate per output filter: gate = index / (c_in kh kw)
};

// One weight layer's gates.
struct GateSegment {
    std::uint64_t weight_offset = 0;  // slab offset of the layer's weights
    std::uint64_t n_weights = 0;
    std::uint64_t gate_offset = 0;    // index of the layer's first gate among all gates
    std::uint64_t n_gates = 0;
    std::uint64_t per_gate = 0;       // weights one gate controls
    std::uint64_t divisor = 1;        // n_in (kColumn) or c_in kh kw (kBlock); 1 for kPerWeight
    std::int32_t map = kPerWeight;
    float log_alpha0 = 0.0f;          // initial log alpha
};

SP_HD std::uint64_t gate_of(const GateSegment& g, std::uint64_t local) {
    return g.map == kPerWeight ? local : (g.map == kColumn ? local % g.divisor : local / g.divisor);
}

}  // namespace sparsify
}  // namespace sparseprox
