// The one network: the engine of core/engine.h over any backend. It walks the layers forward and
// backward and runs every method's step (effective weights -> forward -> loss -> backward ->
// weight decay -> update -> count -> stop rule) through the operations of core/backend.h, so
// the CPU and the CUDA backends run the same orchestration and differ only in their operations,
// memory, data staging and polling.
#pragma once

#include <memory>

#include "core/backend.h"
#include "core/engine.h"

namespace sparseprox {

std::unique_ptr<Engine> make_network(std::unique_ptr<Backend> backend, const ModelSpec& spec, Loss loss);

}  // namespace sparseprox
