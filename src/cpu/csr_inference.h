// The CPU's sparse inference engine (sparseprox/inference.h, format csr): every weight layer as
// a compressed-sparse-row matrix multiplied by the batch through Eigen's sparse x dense product,
// the other layers through the CPU backend's own operations.
#pragma once

#include <cstddef>
#include <memory>

#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

class CsrNetwork {
public:
    // Converts the model's weights to CSR (exact zeros dropped) and allocates the buffers of a
    // pass of max_batch rows.
    CsrNetwork(const Model& model, std::size_t max_batch);
    ~CsrNetwork();
    CsrNetwork(const CsrNetwork&) = delete;
    CsrNetwork& operator=(const CsrNetwork&) = delete;

    // y (rows, n_outputs) for x (rows, n_inputs); rows <= max_batch.
    void forward(const float* x, std::size_t rows, float* y);
    // Nonzero weights multiplied per sample (conv: times the output positions).
    std::size_t multiply_adds_per_sample() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cpu
}  // namespace sparseprox
