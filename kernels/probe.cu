// An empty kernel whose attributes exist only when the build carries code for the device.
#include "kernels/probe.cuh"

#include <cuda_runtime_api.h>

namespace sparseprox {
namespace cuda {

namespace {
__global__ void probe_kernel() {}
}  // namespace

bool kernels_runnable(std::string* why) {
    cudaFuncAttributes attributes{};
    const cudaError_t status = cudaFuncGetAttributes(&attributes, probe_kernel);
    if (status == cudaSuccess) return true;
    cudaGetLastError();
    if (why) *why = std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
    return false;
}

}  // namespace cuda
}  // namespace sparseprox
