// Nonzero counts of a parameter slab: one block per weight tile (a block reduction of one count
// per thread), then CUB's segmented sum of the tile counts per layer. Napkin math: 4 bytes read
// per weight and 4 written per 2048-weight tile, so the count runs at the copy bandwidth.
#include "kernels/count.cuh"

#include <cub/device/device_segmented_reduce.cuh>

#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

namespace {

__global__ void __launch_bounds__(kTileThreads)
count_tiles_kernel(const float* __restrict__ params, const SlabTile* __restrict__ tiles,
                   std::uint32_t* __restrict__ tile_nnz) {
    const SlabTile tile = tiles[blockIdx.x];
    if (tile.is_bias) return;  // bias tiles are not counted (their tile_nnz entry is never read)
    const float* p = params + tile.begin;
    std::uint32_t nnz = 0;
    for (std::uint32_t i = threadIdx.x; i < tile.count; i += kTileThreads) nnz += p[i] != 0.0f;
    write_block_count(nnz, tile_nnz + blockIdx.x);
}

}  // namespace

void launch_count_tiles(const float* params, const SlabTile* tiles, std::size_t n_tiles, std::uint32_t* tile_nnz,
                        cudaStream_t stream) {
    if (n_tiles == 0) return;
    count_tiles_kernel<<<static_cast<unsigned>(n_tiles), kTileThreads, 0, stream>>>(params, tiles, tile_nnz);
    SPARSEPROX_CHECK_LAUNCH();
}

std::size_t layer_nnz_temp_bytes(std::size_t n_layers) {
    std::size_t bytes = 0;
    if (n_layers == 0) return 0;
    // With a null temp pointer CUB only computes the size: the data pointers are not read.
    SPARSEPROX_CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(
        nullptr, bytes, static_cast<const std::uint32_t*>(nullptr), static_cast<std::uint64_t*>(nullptr),
        static_cast<std::int64_t>(n_layers), static_cast<const std::int32_t*>(nullptr),
        static_cast<const std::int32_t*>(nullptr)));
    return bytes;
}

void launch_layer_nnz(const std::uint32_t* tile_nnz, std::size_t n_layers, const std::int32_t* tile_begin,
                      const std::int32_t* tile_end, std::uint64_t* layer_nnz, void* temp, std::size_t temp_bytes,
                      cudaStream_t stream) {
    if (n_layers == 0) return;
    SPARSEPROX_CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(temp, temp_bytes, tile_nnz, layer_nnz,
                                                          static_cast<std::int64_t>(n_layers), tile_begin, tile_end,
                                                          stream));
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
