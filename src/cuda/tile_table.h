// The tiles of one parameter layout on the device, shared by the fused l1 step (ProxPlan) and
// the other sparsifiers' kernels (SparsifyPlan): every weight and bias range cut into tiles of
// kProxTileSize elements, one block per tile, so a block needs no per-element segment lookup;
// per-tile nonzero counts and their per-layer sums (CUB segmented reduction). Built once.
// Plain C++: host code and the kernels' translation units include it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "cuda/common.h"
#include "cuda/step_state.h"
#include "sparseprox/model.h"

namespace sparseprox {
namespace cuda {

class TileTable {
public:
    TileTable(const ParamLayout& layout, cudaStream_t stream);

    std::size_t n_layers() const { return n_layers_; }
    std::size_t n_tiles() const { return n_tiles_; }
    const ProxTile* tiles() const { return tiles_.data(); }
    // Per-tile nonzero counts, written by the kernels (weight tiles; bias tiles are not summed).
    std::uint32_t* tile_nnz() { return tile_nnz_.data(); }
    // Device array (n_layers) of nonzero weights per layer, from the last sum_per_layer.
    const unsigned long long* layer_nnz() const { return layer_nnz_.data(); }

    // Queues the per-layer sums of tile_nnz() into layer_nnz().
    void sum_per_layer(cudaStream_t stream);
    // Queues a count of the weights of `params` into tile_nnz() and layer_nnz().
    void count(const float* params, cudaStream_t stream);

private:
    std::size_t n_layers_ = 0;
    std::size_t n_tiles_ = 0;
    DeviceBuffer<ProxTile> tiles_;               // (n_tiles)
    DeviceBuffer<std::int32_t> tile_begin_;      // (n_layers) first weight tile of each layer
    DeviceBuffer<std::int32_t> tile_end_;        // (n_layers) one past its last weight tile
    DeviceBuffer<std::uint32_t> tile_nnz_;       // (n_tiles)
    DeviceBuffer<unsigned long long> layer_nnz_; // (n_layers, at least 1)
    DeviceBuffer<unsigned char> temp_;           // CUB segmented-sum temp storage
};

}  // namespace cuda
}  // namespace sparseprox
