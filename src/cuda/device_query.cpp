// The CUDA answers to core/backend_query.h: how many devices, and what each one is.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include "core/backend_query.h"
#include "cuda/common.h"

namespace sparseprox {
namespace detail {

int cuda_device_count_impl(std::string* why) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        // cudaErrorNoDevice, cudaErrorInsufficientDriver, ...: not an error for the caller, who
        // falls back to the CPU. Clear it so a later CUDA call does not report it again.
        cudaGetLastError();
        if (why) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(status) + " (" +
                        cudaGetErrorString(status) + ")";
        return 0;
    }
    if (count == 0 && why) *why = "cudaGetDeviceCount reports no CUDA device";
    return count;
}

std::string cuda_device_description(int index) {
    std::string why;
    const int count = cuda_device_count_impl(&why);
    if (count == 0) throw Error("cuda:" + std::to_string(index) + ": no usable CUDA device (" + why + ")");
    if (index < 0 || index >= count)
        throw Error("cuda:" + std::to_string(index) + " requested but " + std::to_string(count) + " CUDA device" +
                    (count == 1 ? " is" : "s are") + " visible");
    cudaDeviceProp prop{};
    SPARSEPROX_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
    char memory[32];
    std::snprintf(memory, sizeof memory, "%.0f GiB", static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
    return std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
           memory;
}

}  // namespace detail
}  // namespace sparseprox
