// Shared pieces of the CUDA tests: the skip when no GPU is usable, host<->device copies and
// seeded random data. Only test_cuda*.cpp include it (they are built with the CUDA backend).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/backend_query.h"
#include "cuda/common.h"
#include "cuda/context.h"
#include "sparseprox/device.h"

// Skips the current test, with the reason, when no CUDA device is usable.
#define SKIP_WITHOUT_CUDA()                                                 \
    do {                                                                    \
        if (::sparseprox::cuda_device_count() == 0) {                       \
            std::string why_;                                               \
            ::sparseprox::detail::cuda_device_count_impl(&why_);            \
            GTEST_SKIP() << "no CUDA device: " << why_;                     \
        }                                                                   \
    } while (0)

namespace sparseprox {
namespace testing_util {

template <class T>
cuda::DeviceBuffer<T> upload(cuda::CudaContext& ctx, const std::vector<T>& v) {
    cuda::DeviceBuffer<T> d(v.size());
    d.copy_from_host(v.data(), v.size(), ctx.stream());
    return d;
}

template <class T>
std::vector<T> download(cuda::CudaContext& ctx, const cuda::DeviceBuffer<T>& d) {
    std::vector<T> v(d.size());
    d.copy_to_host(v.data(), v.size(), ctx.stream());
    ctx.synchronize();
    return v;
}

// n values ~ U(lo, hi) from a seeded stream.
inline std::vector<float> uniform(std::size_t n, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    return v;
}

}  // namespace testing_util
}  // namespace sparseprox
