// The stop rule's step on the CPU (core/band.h), the twin of kernels/stop_rule.cu.
#pragma once

#include <cstdint>

#include "core/records.h"

namespace sparseprox {
namespace cpu {

// Unless state->stopped: counts the step, and sets state->stopped when band_holds for layer_nnz.
void stop_rule(StepState* state, const StopConfig& config, const std::uint64_t* targets,
               const std::uint64_t* layer_nnz);

}  // namespace cpu
}  // namespace sparseprox
