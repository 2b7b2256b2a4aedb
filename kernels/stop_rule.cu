// The stop rule on the device: one thread reads the per-layer counts the step left in device
// memory and applies the band of core/band.h (the same function the host uses), so the host
// never waits on a step to learn whether the run stopped.
#include "kernels/stop_rule.cuh"

#include "core/band.h"
#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

namespace {

__global__ void stop_rule_kernel(StepState* state, const StopConfig* config, const std::uint64_t* targets,
                                 const std::uint64_t* layer_nnz) {
    if (state->stopped) return;  // a frozen step is not counted
    state->steps += 1;
    if (band_holds(*config, targets, layer_nnz)) state->stopped = 1;
}

}  // namespace

void launch_stop_rule(StepState* state, const StopConfig* config, const std::uint64_t* targets,
                      const std::uint64_t* layer_nnz, cudaStream_t stream) {
    stop_rule_kernel<<<1, 1, 0, stream>>>(state, config, targets, layer_nnz);
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
