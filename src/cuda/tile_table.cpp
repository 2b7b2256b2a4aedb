// The tile table of a parameter layout (cuda/tile_table.h).
#include "cuda/tile_table.h"

#include <climits>
#include <string>
#include <vector>

#include "kernels/count.cuh"
#include "sparseprox/error.h"

namespace sparseprox {
namespace cuda {

TileTable::TileTable(const ParamLayout& layout, cudaStream_t stream) : layout_(layout) {
    const std::size_t n_layers = layout.segments.size();
    std::vector<SlabTile> tiles;
    std::vector<std::int32_t> begin(n_layers), end(n_layers);
    auto add_range = [&tiles](std::size_t offset, std::size_t n, std::size_t layer, bool is_bias) {
        for (std::size_t first = 0; first < n; first += kTileSize) {
            SlabTile t;
            t.begin = offset + first;
            t.count = static_cast<std::uint32_t>(n - first < kTileSize ? n - first : kTileSize);
            t.layer = static_cast<std::int32_t>(layer);
            t.is_bias = is_bias ? 1 : 0;
            tiles.push_back(t);
        }
    };
    for (std::size_t l = 0; l < n_layers; ++l) {
        const ParamSegment& s = layout.segments[l];
        begin[l] = static_cast<std::int32_t>(tiles.size());
        add_range(s.weight_offset, s.n_weights, l, false);
        end[l] = static_cast<std::int32_t>(tiles.size());
        add_range(s.bias_offset, s.n_bias, l, true);
        if (tiles.size() > static_cast<std::size_t>(INT_MAX))
            throw Error("parameter slab of " + std::to_string(layout.slab_size) + " floats: too many tiles");
    }
    n_tiles_ = tiles.size();
    tiles_.allocate(n_tiles_);
    tiles_.copy_from_host(tiles.data(), n_tiles_, stream);
    tile_begin_.allocate(n_layers);
    tile_begin_.copy_from_host(begin.data(), n_layers, stream);
    tile_end_.allocate(n_layers);
    tile_end_.copy_from_host(end.data(), n_layers, stream);
    tile_nnz_.allocate(n_tiles_);
    tile_nnz_.fill_zero(stream);
    temp_.allocate(cub_temp_size(layer_nnz_temp_bytes(n_layers)));
    // The host vectors are pageable: copy_from_host has staged them before returning.
}

void TileTable::sum_per_layer(std::uint64_t* layer_nnz, cudaStream_t stream) {
    launch_layer_nnz(tile_nnz_.data(), n_layers(), tile_begin_.data(), tile_end_.data(), layer_nnz, temp_.data(),
                     temp_.bytes(), stream);
}

void TileTable::count(const float* params, std::uint64_t* layer_nnz, cudaStream_t stream) {
    launch_count_tiles(params, tiles_.data(), n_tiles_, tile_nnz_.data(), stream);
    sum_per_layer(layer_nnz, stream);
}

bool same_layout(const ParamLayout& a, const ParamLayout& b) {
    if (a.slab_size != b.slab_size || a.segments.size() != b.segments.size()) return false;
    for (std::size_t l = 0; l < a.segments.size(); ++l) {
        const ParamSegment &x = a.segments[l], &y = b.segments[l];
        if (x.weight_offset != y.weight_offset || x.n_weights != y.n_weights || x.bias_offset != y.bias_offset ||
            x.n_bias != y.n_bias)
            return false;
    }
    return true;
}

}  // namespace cuda
}  // namespace sparseprox
