// One CUDA device as the backend uses it: the device index, one stream for all work, a cuBLAS
// handle bound to that stream with its own workspace, a cuBLASLt handle (its products are queued
// on the same stream and use the same workspace) and, created on first use, the cuDNN state
// (handle, workspace, descriptor and algorithm caches: cuda/cudnn_ops.h) and the cuSPARSE handle
// (cuda/cusparse_ops.h), both bound to the same stream. Non-copyable.
#pragma once

#include <cuda_runtime_api.h>
#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstdint>
#include <memory>

#include "cuda/common.h"

namespace sparseprox {
namespace cuda {

class Cudnn;     // cuda/cudnn_ops.h; opaque here so that this header never needs cudnn.h
class Cusparse;  // cuda/cusparse_ops.h; likewise for cusparse.h

class CudaContext {
public:
    // Selects the device, creates a non-blocking stream and a cuBLAS handle on it. Throws
    // sparseprox::Error (naming the call) when any of that fails.
    explicit CudaContext(int device_index);
    ~CudaContext();

    CudaContext(const CudaContext&) = delete;
    CudaContext& operator=(const CudaContext&) = delete;

    int device() const { return device_; }
    cudaStream_t stream() const { return stream_; }
    cublasHandle_t cublas() const { return cublas_; }
    cublasLtHandle_t cublaslt() const { return cublaslt_; }
    // The cuBLAS workspace, which cuBLASLt products share (one stream: never two at once).
    void* blas_workspace() { return cublas_workspace_.data(); }
    std::size_t blas_workspace_bytes() const { return cublas_workspace_.bytes(); }
    // The cuDNN state of this context, created on the first call (cudnnCreate loads cuDNN's
    // kernels and costs tens to hundreds of milliseconds and some device memory, which contexts
    // that never convolve or pool should not pay). Throws sparseprox::Error when that fails or
    // when the library was built without cuDNN.
    Cudnn& cudnn();
    // The cuSPARSE handle of this context, created on the first call (only the csr inference
    // format multiplies sparse matrices; training never pays for the handle). Throws
    // sparseprox::Error when that fails.
    Cusparse& cusparse();
    // Cudnn::workspace_epoch of the cuDNN state, 0 while there is none (its creation is not a
    // replacement: nothing queued can use a workspace that did not exist).
    std::uint64_t cudnn_workspace_epoch() const;

    // Makes this context's device current for the calling thread (cheap; every engine entry
    // point calls it so that several engines on several devices can share a thread).
    void activate() const;
    // Waits for all work queued on the stream; rethrows an asynchronous kernel error.
    void synchronize() const;

private:
    void release() noexcept;

    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t cublas_ = nullptr;
    cublasLtHandle_t cublaslt_ = nullptr;
    DeviceBuffer<unsigned char> cublas_workspace_;
    std::unique_ptr<Cudnn> cudnn_;        // null until cudnn() is first called
    std::unique_ptr<Cusparse> cusparse_;  // null until cusparse() is first called
};

}  // namespace cuda
}  // namespace sparseprox
