// The stop rule's step on the device (kernels/stop_rule.cu), twin of src/cpu/stop_rule.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/records.h"

namespace sparseprox {
namespace cuda {

// One thread: unless already stopped, counts the step and sets state->stopped when band_holds
// (core/band.h) for layer_nnz.
void launch_stop_rule(StepState* state, const StopConfig* config, const std::uint64_t* targets,
                      const std::uint64_t* layer_nnz, cudaStream_t stream);

}  // namespace cuda
}  // namespace sparseprox
