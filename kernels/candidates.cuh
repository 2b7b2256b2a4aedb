// Launchers of the lambda search's candidate selection (kernels/candidates.cu). Plain C++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "core/search_rules.h"
#include "sparseprox/search.h"

namespace sparseprox {
namespace cuda {

// The candidates of docs/method.md §4 on the device: |g| of the slab ranges [offset, offset + n) of
// `grads` that lie strictly inside (low, up) are gathered into `scratch` (room for every entry
// of the ranges), sorted there, and only their count and lower median come back to the host.
// Synchronizes.
CandidateSet select_candidates(const float* grads, const std::vector<std::pair<std::size_t, std::size_t>>& ranges,
                               float low, float up, float* scratch, cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
