// The csr inference engine (sparseprox/inference.h, format csr) over any backend: every dense
// layer a CSR matrix in backend memory multiplied through Backend::csr_forward (CPU: Eigen;
// CUDA: cuSPARSE SpMM, SpMV for one row); conv layers through Backend::csr_conv2d_forward where
// the backend has it (CPU: the sparse kernel times the im2col patches of each sample) and through
// the dense conv2d_forward elsewhere (CUDA: cuDNN); activations, pools and flatten through the
// operations the dense engine uses. The layer walk is written once, here.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/backend.h"
#include "sparseprox/model.h"

namespace sparseprox {

class CsrNetwork {
public:
    // Converts the weights (exact zeros dropped) and allocates every buffer of a pass of
    // max_batch rows in the backend's memory, once.
    CsrNetwork(std::unique_ptr<Backend> backend, const Model& model, std::size_t max_batch);
    ~CsrNetwork();
    CsrNetwork(const CsrNetwork&) = delete;
    CsrNetwork& operator=(const CsrNetwork&) = delete;

    // y (rows, n_outputs) for x (rows, n_inputs), host memory; rows <= max_batch. One upload of
    // x, the layers queued, one download of y (which waits for them).
    void forward(const float* x, std::size_t rows, float* y);
    // Weights multiplied per sample: the nonzeros of the sparse layers, every weight of a conv
    // layer run dense; conv layers times their output positions.
    std::size_t multiply_adds_per_sample() const;
    std::string device_name() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace sparseprox
