// The stop rule's step on the CPU: the shared band of core/band.h.
#include "cpu/stop_rule.h"

#include "core/band.h"

namespace sparseprox {
namespace cpu {

void stop_rule(StepState* state, const StopConfig& config, const std::uint64_t* targets,
               const std::uint64_t* layer_nnz) {
    if (state->stopped) return;  // a frozen step is not counted
    state->steps += 1;
    if (band_holds(config, targets, layer_nnz)) state->stopped = 1;
}

}  // namespace cpu
}  // namespace sparseprox
