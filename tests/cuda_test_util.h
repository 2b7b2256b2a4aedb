// Shared pieces of the CUDA tests: the skip when no GPU is usable, host<->device copies and
// seeded random data. Only test_cuda*.cpp include it (they are built with the CUDA backend).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
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

// Bitwise equality of two float vectors, with the first difference in the message.
inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

inline ::testing::AssertionResult bitwise_equal(const std::vector<float>& got, const std::vector<float>& ref) {
    if (got.size() != ref.size())
        return ::testing::AssertionFailure() << "sizes differ: " << got.size() << " vs " << ref.size();
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
        if (!same_bits(got[i], ref[i]) && bad++ == 0) first = i;
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << bad << " of " << got.size() << " values differ; first at " << first
                                         << ": got " << got[first] << ", expected " << ref[first];
}

// |got - ref| <= atol + rtol |ref| everywhere, with the count, worst error and first miss.
inline ::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& ref, double atol,
                                     double rtol) {
    if (got.size() != ref.size())
        return ::testing::AssertionFailure() << "sizes differ: " << got.size() << " vs " << ref.size();
    std::size_t bad = 0, first = 0;
    double worst = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
        if (!(err <= atol + rtol * std::fabs(ref[i]))) {
            if (bad++ == 0) first = i;
            worst = std::max(worst, err);
        }
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << bad << " of " << got.size() << " values outside " << atol << " + " << rtol
                                         << "|ref| (worst error " << worst << "); first at " << first << ": got "
                                         << got[first] << ", expected " << ref[first];
}

}  // namespace testing_util
}  // namespace sparseprox
