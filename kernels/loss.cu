// Losses of a batch, one thread per sample, through the per-row formulas of core/elementwise.h
// that the CPU twins (cpu::mse_loss, cpu::cross_entropy_loss) use too:
//   MSE:  per sample sum_j (p - t)^2 accumulated in double (each square is exact in double);
//         gradient 2 (p - t) * grad_scale, bit-identical to the CPU.
//   CE:   log-sum-exp shifted by the row max, in float as on the CPU; expf/logf of the CUDA
//         math library are within 2 ulp of glibc's, so losses and gradients differ by ulps.
// Bytes per sample: read n_out (+ n_out targets or 1 label), write n_out gradients + 8 bytes;
// the CE flops are ~2 expf per class. One thread per sample suits the small output widths used
// here (regression targets, 10 classes); thousands of classes would want a warp per sample.
//
// The per-sample losses are then summed by CUB's DeviceReduce into a device scalar. That sum
// is run-to-run deterministic on one GPU (a fixed reduction tree, no atomics) but adds in a
// different order from the CPU's sequential double sum, so the two agree to ~1e-15 relative,
// not bitwise. Correct-answer counts are integers: exact.
#include "kernels/loss.cuh"

#include <cub/device/device_reduce.cuh>

#include <algorithm>
#include <limits>
#include <string>

#include "core/elementwise.h"
#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

namespace {

constexpr unsigned kThreads = 128;

__global__ void mse_loss_kernel(const float* __restrict__ pred, const float* __restrict__ target, std::uint64_t batch,
                                std::uint64_t n_out, float grad_scale, float* __restrict__ dL_dpred,
                                double* __restrict__ sample_loss) {
    for (std::uint64_t r = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; r < batch;
         r += std::uint64_t{gridDim.x} * blockDim.x)
        sample_loss[r] = ew::squared_error_row(pred + r * n_out, target + r * n_out, n_out, grad_scale,
                                               dL_dpred ? dL_dpred + r * n_out : nullptr);
}

__global__ void cross_entropy_loss_kernel(const float* __restrict__ logits, const std::int32_t* __restrict__ labels,
                                          std::uint64_t batch, std::uint64_t n_classes, float grad_scale,
                                          float* __restrict__ dL_dlogits, double* __restrict__ sample_loss,
                                          std::uint32_t* __restrict__ sample_correct) {
    for (std::uint64_t r = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; r < batch;
         r += std::uint64_t{gridDim.x} * blockDim.x) {
        const auto label = static_cast<std::uint64_t>(labels[r]);
        std::uint64_t arg = 0;
        sample_loss[r] = static_cast<double>(ew::cross_entropy_row(
            logits + r * n_classes, label, n_classes, grad_scale, dL_dlogits ? dL_dlogits + r * n_classes : nullptr,
            &arg));
        if (sample_correct) sample_correct[r] = arg == label ? 1u : 0u;
    }
}

__global__ void accumulate_step_loss_kernel(const double* batch_loss, double batch, StepState* state) {
    if (state->stopped) return;  // a frozen step adds nothing, as on the CPU
    state->loss_sum += *batch_loss / batch;
    state->loss_count += 1;
}

// CUB picks its offset type from the count's type: 32-bit counts (every batch here, whose rows
// are indexed by uint32) keep the faster 32-bit kernels.
std::uint32_t item_count(std::size_t n) {
    if (n > std::numeric_limits<std::uint32_t>::max())
        throw Error("device sum over " + std::to_string(n) + " items: more than 2^32 - 1");
    return static_cast<std::uint32_t>(n);
}

}  // namespace

void launch_mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out, float grad_scale,
                     float* dL_dpred, double* sample_loss, cudaStream_t stream) {
    if (batch == 0) return;
    mse_loss_kernel<<<grid_size(batch, kThreads), kThreads, 0, stream>>>(pred, target, batch, n_out, grad_scale,
                                                                         dL_dpred, sample_loss);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch,
                               std::size_t n_classes, float grad_scale, float* dL_dlogits, double* sample_loss,
                               std::uint32_t* sample_correct, cudaStream_t stream) {
    if (batch == 0) return;
    if (n_classes == 0) throw Error("cross-entropy loss over 0 classes");
    cross_entropy_loss_kernel<<<grid_size(batch, kThreads), kThreads, 0, stream>>>(
        logits, labels, batch, n_classes, grad_scale, dL_dlogits, sample_loss, sample_correct);
    SPARSEPROX_CHECK_LAUNCH();
}

std::size_t sum_temp_bytes(std::size_t n) {
    const std::uint32_t items = item_count(std::max<std::size_t>(n, 1));
    std::size_t bytes_double = 0, bytes_count = 0;
    SPARSEPROX_CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, bytes_double, static_cast<const double*>(nullptr),
                                                 static_cast<double*>(nullptr), items));
    SPARSEPROX_CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, bytes_count, static_cast<const std::uint32_t*>(nullptr),
                                                 static_cast<std::uint64_t*>(nullptr), items));
    return std::max(bytes_double, bytes_count);
}

void launch_sum(const double* x, std::size_t n, double* out, void* temp, std::size_t temp_bytes, cudaStream_t stream) {
    SPARSEPROX_CUDA_CHECK(cub::DeviceReduce::Sum(temp, temp_bytes, x, out, item_count(n), stream));
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_sum(const std::uint32_t* x, std::size_t n, std::uint64_t* out, void* temp, std::size_t temp_bytes,
                cudaStream_t stream) {
    SPARSEPROX_CUDA_CHECK(cub::DeviceReduce::Sum(temp, temp_bytes, x, out, item_count(n), stream));
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_accumulate_step_loss(const double* batch_loss, std::size_t batch, StepState* state, cudaStream_t stream) {
    accumulate_step_loss_kernel<<<1, 1, 0, stream>>>(batch_loss, static_cast<double>(batch), state);
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
