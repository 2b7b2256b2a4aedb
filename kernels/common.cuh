// What every kernel file shares: the one check macro for CUDA and cuBLAS statuses, the launch
// check, grid sizing, CUB's temp-storage rule, Thrust's error translation and the block-wide
// nonzero count of the tiled slab kernels. Plain C++ outside the __CUDACC__ section, so host
// translation units (src/cuda/) include it too.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "sparseprox/error.h"

#if defined(__CUDACC__)
#include <cub/block/block_reduce.cuh>
#endif

namespace sparseprox {
namespace cuda {

// Throws sparseprox::Error "<call> failed: <status name> (<status text>) at file:line".
[[noreturn]] inline void throw_status(const char* call, const char* status_name, const char* status_text,
                                      const char* file, int line) {
    throw Error(std::string(call) + " failed: " + status_name + " (" + status_text + ") at " + file + ":" +
                std::to_string(line));
}

// One overload per library status type (the cudnnStatus_t one lives beside cudnn.h, in
// src/cuda/cudnn_ops.cpp).
inline void check_status(cudaError_t status, const char* call, const char* file, int line) {
    if (status != cudaSuccess) throw_status(call, cudaGetErrorName(status), cudaGetErrorString(status), file, line);
}
inline void check_status(cublasStatus_t status, const char* call, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS)
        throw_status(call, cublasGetStatusName(status), cublasGetStatusString(status), file, line);
}

// After a kernel launch: the launch error, and in SPARSEPROX_SYNC_DEBUG builds the kernel's own
// error too (synchronizing the device so the failure points at its kernel).
inline void check_launch(const char* file, int line) {
    check_status(cudaGetLastError(), "kernel launch", file, line);
#if defined(SPARSEPROX_SYNC_DEBUG)
    check_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize after kernel launch", file, line);
#endif
}

// Blocks for a 1-D grid-stride loop over n elements: enough to fill any current GPU, capped so
// that the block count stays a plain int (the loops use 64-bit indices and stride over the rest).
inline unsigned grid_size(std::size_t n, unsigned threads) {
    constexpr std::size_t kMaxBlocks = std::size_t{1} << 20;
    const std::size_t blocks = (n + threads - 1) / threads;
    return static_cast<unsigned>(blocks == 0 ? 1 : (blocks < kMaxBlocks ? blocks : kMaxBlocks));
}

// CUB treats a null temp-storage pointer as "report the size and do nothing": never hand it a
// zero-byte (null) allocation.
inline std::size_t cub_temp_size(std::size_t bytes) { return bytes < 16 ? 16 : bytes; }

// Thrust reports failures as thrust::system_error (and bad_alloc); callers expect sparseprox::Error.
template <class F>
auto thrust_checked(const char* what, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error(std::string(what) + " failed: " + e.what());
    }
}

#if defined(__CUDACC__)
// Threads per block of the tiled slab kernels (one block per SlabTile).
constexpr int kTileThreads = 256;

// The block's sum of one count per thread; thread 0 writes it.
__device__ inline void write_block_count(std::uint32_t count, std::uint32_t* out) {
    using BlockReduce = cub::BlockReduce<std::uint32_t, kTileThreads>;
    __shared__ typename BlockReduce::TempStorage temp;
    const std::uint32_t total = BlockReduce(temp).Sum(count);
    if (threadIdx.x == 0) *out = total;
}
#endif

}  // namespace cuda
}  // namespace sparseprox

// Checks a cudaError_t or cublasStatus_t (or, in cudnn_ops.cpp, cudnnStatus_t) expression;
// throws sparseprox::Error naming the call.
#define SPARSEPROX_CUDA_CHECK(expr) ::sparseprox::cuda::check_status((expr), #expr, __FILE__, __LINE__)
// Checks the kernel launch just made (and, with SPARSEPROX_SYNC_DEBUG, its execution).
#define SPARSEPROX_CHECK_LAUNCH() ::sparseprox::cuda::check_launch(__FILE__, __LINE__)
