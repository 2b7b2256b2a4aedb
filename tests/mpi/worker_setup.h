// The run the data-parallel tests train: the same options in the MPI worker (under mpirun)
// and in the test itself (one process), so that the two can be compared.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "sparseprox/sparseprox.h"

namespace sparseprox {
namespace test {

// The embedded Mackey-Glass series (no data files), a small ReLU network, mini-batches of 100
// shuffled rows, a lambda that prunes through the band within the budget.
inline DataSplit worker_data() { return mackey_glass(); }
inline Model worker_init() { return Model::initialize(ModelSpec::parse("dense:6-64-32-1"), 7); }
inline TrainOptions worker_options() {
    TrainOptions o;
    o.device = Device{};
    o.lr = 0.1f;
    o.lambdas = {2e-3f};
    o.batch_size = 100;
    o.steps = 1500;
    o.seed = 3;
    o.stop.targets = {600};
    o.stop.tolerance = 0.01;
    o.progress_seconds = 0.0;
    return o;
}

// FNV-1a over the parameter slab's bytes: equal hashes mean bit-identical weights.
inline std::uint64_t slab_hash(const std::vector<float>& slab) {
    std::uint64_t h = 1469598103934665603ull;
    for (float f : slab) {
        unsigned char b[sizeof f];
        std::memcpy(b, &f, sizeof f);
        for (unsigned char c : b) h = (h ^ c) * 1099511628211ull;
    }
    return h;
}

}  // namespace test
}  // namespace sparseprox
