// The kernel-load probe of kernels/probe.cuh. Compiled with the same flags and architectures as
// every kernel of the library, so when this one loads and runs, theirs do too.
#include "kernels/probe.cuh"

#include <cuda_runtime.h>

#ifndef SPARSEPROX_CUDA_ARCHITECTURES
#define SPARSEPROX_CUDA_ARCHITECTURES "unknown"
#endif

namespace sparseprox {
namespace cuda {

namespace {

__global__ void probe_kernel(int* out, int value) { *out = value + 1; }

// Returns `status` after clearing it from the last-error slot (none of these errors is sticky).
cudaError_t cleared(cudaError_t status) {
    if (status != cudaSuccess) cudaGetLastError();
    return status;
}

}  // namespace

cudaError_t probe_kernels(KernelImage* image) {
    cudaFuncAttributes attr{};
    // Loads the kernel's module (lazily loaded otherwise): no image for this device, or PTX
    // newer than the driver can compile, fails here.
    cudaError_t status = cudaFuncGetAttributes(&attr, probe_kernel);
    if (status != cudaSuccess) return cleared(status);
    if (image) {
        image->binary_version = attr.binaryVersion;
        image->ptx_version = attr.ptxVersion;
    }
    int* d_out = nullptr;
    status = cudaMalloc(&d_out, sizeof(int));
    if (status != cudaSuccess) return cleared(status);
    probe_kernel<<<1, 1>>>(d_out, 41);
    status = cudaGetLastError();
    int h_out = 0;
    if (status == cudaSuccess) status = cudaMemcpy(&h_out, d_out, sizeof(int), cudaMemcpyDeviceToHost);
    const cudaError_t freed = cudaFree(d_out);
    if (status == cudaSuccess) status = freed;
    if (status != cudaSuccess) return cleared(status);
    // A kernel that "ran" without writing its result: report it as an image that does not run.
    return h_out == 42 ? cudaSuccess : cudaErrorInvalidKernelImage;
}

const char* built_cuda_architectures() { return SPARSEPROX_CUDA_ARCHITECTURES; }

}  // namespace cuda
}  // namespace sparseprox
