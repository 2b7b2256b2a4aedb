// cuDNN twins of cpu/conv_ops.h: the same names, arguments and formulas on device pointers, with
// the context first and no workspace argument (the context owns cuDNN's). NCHW float32,
// contiguous; a cross-correlation as in PyTorch; floor-mode output sizes. Every function queues
// its work on ctx.stream() and returns without synchronizing; gradients are overwritten unless
// `accumulate` is set.
//
// All cuDNN code lives in cudnn_ops.cpp. This header is plain C++ and never includes cudnn.h:
// the per-context state is an opaque Cudnn object (pimpl), so other translation units, the tests
// and the public headers do not see cuDNN types. In a build without cuDNN (SPARSEPROX_WITH_CUDNN
// undefined) every function here throws sparseprox::Error "... built without cuDNN".
//
// Precision: convolutions run in CUDNN_FMA_MATH (plain FP32 FMAs, never TF32 tensor cores,
// whose 10-bit mantissa would put ~5e-4 relative error on each product), so results stay within
// float32 summation error of the CPU twin; only the summation order differs.
//
// Algorithm choice, once per shape: cuDNN's heuristic (cudnnGet*Algorithm_v7: a host-side
// query that runs no kernels and does not synchronize, so the first call with a new shape still
// just queues work and stays legal during stream capture), taking the first (expected fastest)
// candidate that is supported, has math type CUDNN_FMA_MATH (CUDNN_DEFAULT_MATH would allow
// TF32), needs at most 256 MiB of workspace and is deterministic; only when no deterministic
// candidate fits does it take the fastest non-deterministic one (ConvPlanInfo::deterministic
// then says so). The convolution descriptor is then set to the chosen candidates' math type
// (cudnnSetConvolutionMathType) before it is used. The rule is cudnn_choice.h. Deterministic backward
// filter/data algorithms make a training run bitwise reproducible on one GPU; the cost is
// giving up the atomics-based reductions, which are rarely the fastest at our sizes.
// cudnnFind*AlgorithmEx (timing every algorithm) was not used: it synchronizes, writes into the
// output buffers (clobbering an accumulated dL_dW) and cannot run inside a capture.
//
// Workspace: one buffer per context, grown to the largest plan's need when a plan is created.
// Growing frees the old buffer after synchronizing the stream (queued work may still use it):
// the only synchronization here, once per new larger shape, never in the steady state. Create
// the plans of all shapes (one warm-up step) before capturing a CUDA graph.
//
// Not thread-safe, like the context: one thread drives a context at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/layer_shapes.h"
#include "cuda/context.h"

namespace sparseprox {
namespace cuda {

// The cuDNN state of one CudaContext (created by CudaContext::cudnn()): the handle bound to the
// context's stream, the shared workspace and the caches of descriptors and chosen algorithms,
// keyed by shape. Neither copyable nor movable; destroying it never throws.
class Cudnn {
public:
    // Creates the handle on the current device and binds it to `stream`. Throws
    // sparseprox::Error naming the failing call (or "built without cuDNN").
    explicit Cudnn(cudaStream_t stream);
    ~Cudnn();

    Cudnn(const Cudnn&) = delete;
    Cudnn& operator=(const Cudnn&) = delete;

    // The algorithms chosen for one convolution shape (cuDNN's enum values as ints, so that this
    // header needs no cuDNN type) and the workspace each needs.
    struct ConvPlanInfo {
        int forward_algo = -1;
        int backward_data_algo = -1;
        int backward_filter_algo = -1;
        std::size_t forward_workspace_bytes = 0;
        std::size_t backward_data_workspace_bytes = 0;
        std::size_t backward_filter_workspace_bytes = 0;
        bool deterministic = true;  // all three algorithms are deterministic
    };

    // The cached plan for shape s, created (descriptors built, algorithms chosen, workspace
    // grown) on the first call with that shape. The reference stays valid as long as this
    // object. Throws sparseprox::Error for an invalid shape (a zero size, batch included: the
    // operations below return before planning an empty batch; a kernel larger than the padded
    // input; a dimension over INT_MAX) or a failing cuDNN call.
    const ConvPlanInfo& conv_plan(const ConvShape& s);
    // Plans held: one per distinct convolution shape plus one per distinct (pooling shape, mode).
    std::size_t cached_plans() const;
    // Bytes of the shared workspace now allocated.
    std::size_t workspace_bytes() const;
    // How many times the workspace was replaced by a larger one (step graphs hold its address).
    std::uint64_t workspace_epoch() const;

    // The cuDNN-typed state, defined in cudnn_ops.cpp and used only there.
    struct Impl;
    Impl& impl() { return *impl_; }

private:
    std::unique_ptr<Impl> impl_;
};

// y (batch, c_out, h_out, w_out) = W * x + b, for x (batch, c_in, h_in, w_in), W (c_out, c_in,
// kh, kw), b (c_out). cudnnConvolutionForward, then the bias through cudnnAddTensor.
void conv2d_forward(CudaContext& ctx, const ConvShape& s, const float* x, const float* W, const float* b,
                    float* y);

// dL_dW (c_out, c_in, kh, kw) and dL_db (c_out) summed over the batch (cudnnConvolutionBackward
// Filter / Bias, beta = 1 with accumulate); dL_dx (batch, c_in, h_in, w_in) skipped when null
// and always overwritten (cudnnConvolutionBackwardData). W is read only for dL_dx.
void conv2d_backward(CudaContext& ctx, const ConvShape& s, const float* x, const float* W, const float* dL_dy,
                     float* dL_dW, float* dL_db, float* dL_dx, bool accumulate = false);

// CUDNN_POOLING_MAX_DETERMINISTIC: padded positions never win, and each window's gradient goes
// to its first maximum, as on the CPU. NaN inputs are not propagated (CUDNN_NOT_PROPAGATE_NAN).
void maxpool2d_forward(CudaContext& ctx, const PoolShape& s, const float* x, float* y);
void maxpool2d_backward(CudaContext& ctx, const PoolShape& s, const float* x, const float* y,
                        const float* dL_dy, float* dL_dx);

// CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING: divides by kh*kw, padded positions included.
// The backward takes the layer's input x (batch, channels, h_in, w_in) and output y (batch,
// channels, h_out, w_out), as cudnnPoolingBackward asks for them, though averaging depends on
// dL_dy alone; x, y and dL_dy must not alias dL_dx.
void avgpool2d_forward(CudaContext& ctx, const PoolShape& s, const float* x, float* y);
void avgpool2d_backward(CudaContext& ctx, const PoolShape& s, const float* x, const float* y,
                        const float* dL_dy, float* dL_dx);
// The former signature, kept only until every caller passes x and y: it hands dL_dx and dL_dy
// to cuDNN in place of x and y.
[[deprecated("pass the layer's input x and output y: avgpool2d_backward(ctx, s, x, y, dL_dy, dL_dx)")]]
void avgpool2d_backward(CudaContext& ctx, const PoolShape& s, const float* dL_dy, float* dL_dx);

}  // namespace cuda
}  // namespace sparseprox
