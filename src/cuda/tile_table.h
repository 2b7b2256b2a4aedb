// The tiles of one parameter layout on the device, built once per layout and shared by every
// tiled slab kernel (the fused l1 step, the sparsifiers' kernels, the counts): every weight and
// bias range cut into tiles of kTileSize elements, one block per tile, so a block needs no
// per-element segment lookup; per-tile nonzero counts and their per-layer sums (CUB segmented
// reduction). Plain C++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/records.h"
#include "cuda/common.h"
#include "kernels/slab_tiles.cuh"
#include "sparseprox/model.h"

namespace sparseprox {
namespace cuda {

class TileTable {
public:
    TileTable(const ParamLayout& layout, cudaStream_t stream);

    const ParamLayout& layout() const { return layout_; }
    std::size_t n_layers() const { return layout_.segments.size(); }
    std::size_t n_tiles() const { return n_tiles_; }
    SlabTiles tiles() { return SlabTiles{tiles_.data(), n_tiles_, tile_nnz_.data()}; }

    // Queues the per-layer sums of the tile counts into layer_nnz (device, n_layers).
    void sum_per_layer(std::uint64_t* layer_nnz, cudaStream_t stream);
    // Queues a count of the weights of `params` into layer_nnz.
    void count(const float* params, std::uint64_t* layer_nnz, cudaStream_t stream);

private:
    ParamLayout layout_;
    std::size_t n_tiles_ = 0;
    DeviceBuffer<SlabTile> tiles_;               // (n_tiles)
    DeviceBuffer<std::int32_t> tile_begin_;      // (n_layers) first weight tile of each layer
    DeviceBuffer<std::int32_t> tile_end_;        // (n_layers) one past its last weight tile
    DeviceBuffer<std::uint32_t> tile_nnz_;       // (n_tiles)
    DeviceBuffer<unsigned char> temp_;           // CUB segmented-sum temp storage
};

// Two layouts with the same segments (a table built for one serves the other).
bool same_layout(const ParamLayout& a, const ParamLayout& b);

}  // namespace cuda
}  // namespace sparseprox
