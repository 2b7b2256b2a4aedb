// Element-wise activations with the formulas of core/elementwise.h (ew::act_forward,
// ew::act_derivative), shared with the CPU twins.
//   forward:  read x, write y                    8 bytes per element
//   backward: read x, y, dL_dy, write dL_dx     16 bytes per element
// Memory-bound; one kernel per activation kind (a template argument), so the switch inside the
// shared formulas folds away. identity, relu and leaky_relu match the CPU bit for bit; tanhf and
// expf of the CUDA math library are within 2 ulp of glibc's, so tanh and sigmoid differ by ulps.
#include "kernels/activation.cuh"

#include <cstdint>

#include "core/elementwise.h"
#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

namespace {

constexpr unsigned kThreads = 256;

// y may alias x (the dense layer's activation runs in place over its output).
template <int kKind>
__global__ void activation_forward_kernel(const float* x, float* y, std::uint64_t n) {
    for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
         i += std::uint64_t{gridDim.x} * blockDim.x)
        y[i] = ew::act_forward(kKind, x[i]);
}

// dL_dx may alias dL_dy (each element is read before it is written by the same thread).
template <int kKind>
__global__ void activation_backward_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                           const float* dL_dy, float* dL_dx, std::uint64_t n) {
    for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
         i += std::uint64_t{gridDim.x} * blockDim.x)
        dL_dx[i] = dL_dy[i] * ew::act_derivative(kKind, x[i], y[i]);
}

template <int kKind>
void forward(const float* x, float* y, std::size_t n, cudaStream_t stream) {
    activation_forward_kernel<kKind><<<grid_size(n, kThreads), kThreads, 0, stream>>>(x, y, n);
}

template <int kKind>
void backward(const float* x, const float* y, const float* dL_dy, float* dL_dx, std::size_t n, cudaStream_t stream) {
    activation_backward_kernel<kKind><<<grid_size(n, kThreads), kThreads, 0, stream>>>(x, y, dL_dy, dL_dx, n);
}

}  // namespace

void launch_activation_forward(Activation a, const float* x, float* y, std::size_t n, cudaStream_t stream) {
    if (n == 0) return;
    switch (a) {
        case Activation::identity: forward<0>(x, y, n, stream); break;
        case Activation::relu: forward<1>(x, y, n, stream); break;
        case Activation::leaky_relu: forward<2>(x, y, n, stream); break;
        case Activation::tanh: forward<3>(x, y, n, stream); break;
        case Activation::sigmoid: forward<4>(x, y, n, stream); break;
        default: throw Error("activation_forward: unknown activation code " + std::to_string(static_cast<int>(a)));
    }
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_activation_backward(Activation a, const float* x, const float* y, const float* dL_dy, float* dL_dx,
                                std::size_t n, cudaStream_t stream) {
    if (n == 0) return;
    switch (a) {
        case Activation::identity: backward<0>(x, y, dL_dy, dL_dx, n, stream); break;
        case Activation::relu: backward<1>(x, y, dL_dy, dL_dx, n, stream); break;
        case Activation::leaky_relu: backward<2>(x, y, dL_dy, dL_dx, n, stream); break;
        case Activation::tanh: backward<3>(x, y, dL_dy, dL_dx, n, stream); break;
        case Activation::sigmoid: backward<4>(x, y, dL_dy, dL_dx, n, stream); break;
        default: throw Error("activation_backward: unknown activation code " + std::to_string(static_cast<int>(a)));
    }
    SPARSEPROX_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace sparseprox
