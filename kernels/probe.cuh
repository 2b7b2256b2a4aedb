// Whether this build's device code loads and runs on the current device: the CUDA architectures
// it was compiled for against the device's, and the PTX it carries against what the driver can
// compile. Plain C++, so device_query.cpp (a g++ translation unit) can call it.
#pragma once

#include <cuda_runtime_api.h>

namespace sparseprox {
namespace cuda {

// What the driver loaded for the probe kernel: cudaFuncAttributes' binaryVersion (e.g. 90 for
// sm_90 SASS, or the device's own version after a PTX JIT) and ptxVersion (the PTX it was built
// from, e.g. 90).
struct KernelImage {
    int binary_version = 0;
    int ptx_version = 0;
};

// Loads a one-thread kernel compiled like every kernel of the library, runs it on the current
// device and reads its result back. cudaSuccess when it ran and wrote what it should;
// otherwise the error (cudaErrorNoKernelImageForDevice, cudaErrorUnsupportedPtxVersion, ...),
// cleared from the runtime's last-error slot. Fills `image` when the kernel loaded.
cudaError_t probe_kernels(KernelImage* image);

// CMAKE_CUDA_ARCHITECTURES of this build, entries separated by spaces ("80-real 90").
const char* built_cuda_architectures();

}  // namespace cuda
}  // namespace sparseprox
