// A run of dense layers on the CPU in one parallel region (Backend::dense_forward_chain and
// dense_backward_chain): the rows of the batch are cut into blocks and each block goes through
// every layer of the run on one thread, with no barrier between the layers; backward, the input
// gradients go down the run that way, then one barrier, then every layer's weight gradient.
//
// Why: a Mackey-Glass step (full batch, 6-128-128-64-1) made eight two-block products in eight
// parallel regions, and at every region's end the faster thread waited for the slower one (a
// few microseconds of jitter per product, 7% of the step) or, between them, for the serial
// work of the last layer (1 output: one block). Forward, a row of layer k + 1 needs only the
// same row of layer k, and backward, a row of the input gradient only the same row of the
// output gradient, so the threads meet twice a step instead of eight times.
//
// The chain runs only where every forward and input-gradient product would be cut by rows
// anyway (batch >= the widths: sgemm cuts the larger side, cpu/gemm.h); otherwise each link runs
// as dense_forward or dense_backward does. The blocks depend on the shapes and on
// available_cores() only, never on the thread count in force, so the bits are the same at any
// thread count, as with sgemm.
#pragma once

#include <cstddef>
#include <vector>

#include "core/layer_shapes.h"

namespace sparseprox {
namespace cpu {

void dense_forward_chain(const std::vector<DenseForwardLink>& links, std::size_t batch);
void dense_backward_chain(const std::vector<DenseBackwardLink>& links, std::size_t batch);

// The row blocks of a chain over `batch` rows that makes `macs_per_row` multiply-adds a row per
// product pass, or 0 when the chain does not apply to widths up to `widest` (exposed for tests).
std::size_t dense_chain_blocks(std::size_t batch, std::size_t widest, std::size_t macs_per_row);

}  // namespace cpu
}  // namespace sparseprox
