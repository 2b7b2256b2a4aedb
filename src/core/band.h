// The NNZ band of the early stop (docs/method.md §3), written once for the host (StopRule::holds,
// the lambda search's verdicts) and for the stop-rule operation of both backends:
//   single target t:  |sum_l n_l - t| <= rho t
//   per-layer t_l:    at least m layers with |n_l - t_l| <= rho t_l (m = 0: all of them)
// Evaluated in double, so every caller gets the same verdict for the same counts.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/elementwise.h"
#include "core/records.h"

namespace sparseprox {

SP_HD bool in_band(std::uint64_t n, std::uint64_t target, double tolerance) {
    const double nd = static_cast<double>(n), td = static_cast<double>(target);
    return fabs(nd - td) <= tolerance * td;
}

// The rule over per-layer counts: `nnz` has config.n_layers entries, `targets` config.n_targets.
// Both are indexable arrays of integers (device arrays on the GPU, vectors on the host).
template <class Counts, class Targets>
SP_HD bool band_holds(const StopConfig& config, const Targets& targets, const Counts& nnz) {
    if (config.n_targets == 0) return false;
    if (config.n_targets == 1) {
        std::uint64_t total = 0;
        for (std::uint32_t l = 0; l < config.n_layers; ++l) total += static_cast<std::uint64_t>(nnz[l]);
        return in_band(total, static_cast<std::uint64_t>(targets[0]), config.tolerance);
    }
    std::uint64_t hits = 0;
    for (std::uint32_t l = 0; l < config.n_targets && l < config.n_layers; ++l)
        hits += in_band(static_cast<std::uint64_t>(nnz[l]), static_cast<std::uint64_t>(targets[l]), config.tolerance);
    const std::uint64_t need = config.min_layers == 0 ? config.n_targets : config.min_layers;
    return hits >= need;
}

}  // namespace sparseprox
