// Queries answered by the CUDA backend when it is compiled in (src/cuda/device_query.cpp).
#pragma once

#include <string>

namespace sparseprox {
namespace detail {

// Number of usable CUDA devices; 0 when the driver is missing or no device is visible (never
// throws). `why` (when not null) receives the CUDA error text when the count is 0.
int cuda_device_count_impl(std::string* why);
// "NVIDIA H200, sm_90, 139 GiB"; throws sparseprox::Error for a bad index.
std::string cuda_device_description(int index);

}  // namespace detail
}  // namespace sparseprox
