// The tiles of a parameter slab as the tiled kernels take them (built once per layout by
// src/cuda/tile_table.h): one block per tile, per-tile nonzero counts written into tile_nnz.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/records.h"

namespace sparseprox {
namespace cuda {

struct SlabTiles {
    const SlabTile* tiles = nullptr;   // (n_tiles) device
    std::size_t n_tiles = 0;
    std::uint32_t* tile_nnz = nullptr; // (n_tiles) device: weight tiles' nonzero counts
};

}  // namespace cuda
}  // namespace sparseprox
