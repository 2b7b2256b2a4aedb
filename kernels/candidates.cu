// The candidate filter and lower median of the lambda search (docs/method.md §4), on the device with
// Thrust: one copy_if of |g| per weight range into a scratch array, one sort of what passed, one
// element copied back. The gradient itself never leaves the device; per call two scalars do.
// Sizes are small (at most the weight count, ~7e5 for CNN8), so sorting is cheaper than a
// selection pass would be to write and keep correct.
#include "kernels/candidates.cuh"

#include <thrust/copy.h>
#include <thrust/device_ptr.h>
#include <thrust/execution_policy.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/sort.h>

#include "cuda/common.h"

namespace sparseprox {
namespace cuda {

namespace {

struct AbsOp {
    __device__ float operator()(float g) const { return fabsf(g); }
};

// Strict on both sides; NaN fails both comparisons and is never a candidate (as on the CPU).
struct InsideOpen {
    float low, up;
    __device__ bool operator()(float a) const { return a > low && a < up; }
};

}  // namespace

CandidateSet select_candidates(const float* grads, const std::vector<std::pair<std::size_t, std::size_t>>& ranges,
                               float low, float up, float* scratch, cudaStream_t stream) {
    const auto policy = thrust::cuda::par.on(stream);
    const thrust::device_ptr<float> out = thrust::device_pointer_cast(scratch);
    std::size_t count = 0;
    for (const auto& [offset, n] : ranges) {
        if (n == 0) continue;
        const auto first = thrust::make_transform_iterator(thrust::device_pointer_cast(grads + offset), AbsOp{});
        const auto end = thrust::copy_if(policy, first, first + n, out + count, InsideOpen{low, up});
        count = static_cast<std::size_t>(end - out);
    }
    CandidateSet c;
    c.count = count;
    if (count > 0) {
        thrust::sort(policy, out, out + count);
        SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(&c.lower_median, scratch + (count - 1) / 2, sizeof(float),
                                              cudaMemcpyDeviceToHost, stream));
        SPARSEPROX_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    return c;
}

}  // namespace cuda
}  // namespace sparseprox
