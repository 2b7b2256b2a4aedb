// Device-resident records of the CUDA training step, shared by the kernels (kernels/*.cu) and the
// host code that fills and reads them. Plain C++ structs: identical layout on host and device.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sparseprox/model.h"

namespace sparseprox {
namespace cuda {

// The fused prox kernel gives each block one tile; a tile lies inside one weight or one bias
// range, so its block needs no per-element segment lookup. Segments start on
// ParamLayout::kAlign boundaries, so with this tile size weight tiles start 16-byte aligned.
constexpr std::size_t kProxTileSize = ParamLayout::kAlign;  // 2048 floats

struct ProxTile {
    std::uint64_t begin = 0;  // slab offset of the tile's first element
    std::uint32_t count = 0;  // elements, 1..kProxTileSize
    std::int32_t layer = 0;   // weight layer (index into ParamLayout::segments)
    std::int32_t is_bias = 0; // 1: plain SGD, not counted; 0: prox step, counted
    std::int32_t unused = 0;
};

// Progress of a training run, written only by the device. status() copies it to the host.
struct StepState {
    std::uint64_t steps = 0;       // steps applied (a frozen step does not count)
    std::int32_t stopped = 0;      // the stop rule held after step `steps`: later steps change nothing
    std::int32_t unused = 0;
    double loss_sum = 0.0;         // sum of batch-mean losses since the last status()
    std::uint64_t loss_count = 0;  // steps in loss_sum (loss_sum and loss_count are reset together)
};

// The stop rule on the device (core StopRule, targets already expanded), with the targets in a
// separate array of n_targets entries.
struct StopConfig {
    std::uint32_t n_targets = 0;   // 0: no rule; 1: total NNZ; else one per weight layer
    std::uint32_t n_layers = 0;    // entries of the per-layer NNZ array
    std::uint64_t min_layers = 0;  // multi rule: layers that must be in band (0: all)
    double tolerance = 0.0;        // rho
};

}  // namespace cuda
}  // namespace sparseprox
