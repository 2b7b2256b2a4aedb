// CUDA twins of cpu/ops.h: the same names, arguments and formulas, on device pointers, with the
// context (stream and cuBLAS handle) first. Every function queues its work on ctx.stream() and
// returns at once, except those marked "synchronizes" (they return host values, like their
// CPU twins). Row-major matrices; gradients are overwritten unless `accumulate` is set.
// Plain C++: the tests (built by the host compiler) include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/common.h"
#include "cuda/context.h"
#include "cuda/step_state.h"
#include "cuda/tile_table.h"
#include "sparseprox/model.h"
#include "sparseprox/search.h"

namespace sparseprox {
namespace cuda {

// y = x W^T + b.  x (batch, n_in), W (n_out, n_in), b (n_out), y (batch, n_out).
void dense_forward(CudaContext& ctx, const float* x, const float* W, const float* b, float* y, std::size_t batch,
                   std::size_t n_in, std::size_t n_out);

// dL_dW = dL_dy^T x, dL_db = column sums of dL_dy, dL_dx = dL_dy W (skipped when null). With
// accumulate, dL_dW and dL_db are added to instead of overwritten (beta = 1 in the GEMM): the
// full-data gradient sums its chunks that way. dL_dx is always overwritten.
void dense_backward(CudaContext& ctx, const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db,
                    float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out, bool accumulate = false);

void activation_forward(CudaContext& ctx, Activation a, const float* x, float* y, std::size_t n);
// dL_dx = dL_dy * f'(x) (given y = f(x) too). dL_dx may alias dL_dy.
void activation_backward(CudaContext& ctx, Activation a, const float* x, const float* y, const float* dL_dy,
                         float* dL_dx, std::size_t n);

// Sum over the batch of ||pred - target||^2; dL_dpred (device, may be null) = 2 (pred - target)
// * grad_scale. Synchronizes.
double mse_loss(CudaContext& ctx, const float* pred, const float* target, std::size_t batch, std::size_t n_out,
                float grad_scale, float* dL_dpred);

// Sum over the batch of -log softmax(logits)[label]; dL_dlogits (device, may be null) =
// (softmax - onehot) * grad_scale; n_correct (host, may be null) counts argmax == label.
// Synchronizes.
double cross_entropy_loss(CudaContext& ctx, const float* logits, const std::int32_t* labels, std::size_t batch,
                          std::size_t n_classes, float grad_scale, float* dL_dlogits, std::size_t* n_correct);

// The fused prox step over a device slab (one kernel, then the per-layer count on the device).
// lr, lambdas (one per segment) and nnz (per segment) are host values, as for cpu::prox_step.
// Synchronizes.
void prox_step(CudaContext& ctx, float* params, const float* grads, const ParamLayout& layout, float lr,
               const float* lambdas, std::size_t* nnz);

// The unfused multi-pass reference of prox_step (an SGD pass, a threshold pass and a count per
// layer); same arguments and results. Synchronizes.
void prox_step_unfused(CudaContext& ctx, float* params, const float* grads, const ParamLayout& layout, float lr,
                       const float* lambdas, std::size_t* nnz);

// grads += wd * params over every weight segment (cublasSaxpy; biases untouched). Queued.
void add_weight_decay(CudaContext& ctx, float* grads, const float* params, const ParamLayout& layout, float wd);

// candidate_set (search.h) over the weight gradients of the given layers of a device gradient
// slab, on the device (Thrust copy_if + sort); scratch holds at least the layers' weight count.
// Only the count and the lower median reach the host. Synchronizes.
CandidateSet gradient_candidates(CudaContext& ctx, const float* grads, const ParamLayout& layout,
                                 const std::vector<std::size_t>& layers, float low, float up, float* scratch);

// Nonzero count of n device floats. Synchronizes.
std::size_t count_nonzero(CudaContext& ctx, const float* x, std::size_t n);

// [lr, lambdas[0], ..., lambdas[n_layers - 1]]: the device-resident hyper-parameter array that
// the fused step reads.
std::vector<float> hyper_array(float lr, const float* lambdas, std::size_t n_layers);

// The fused l1 step over the tile table of one layout (cuda/tile_table.h), built once.
class ProxPlan {
public:
    ProxPlan(const ParamLayout& layout, cudaStream_t stream);

    std::size_t n_layers() const { return table_.n_layers(); }
    std::size_t n_tiles() const { return table_.n_tiles(); }

    // Queues the fused step and the per-layer count into layer_nnz(). hyper: device array as
    // hyper_array. stop_flag: device int (may be null); when nonzero the step changes nothing
    // and layer_nnz() keeps the counts of the last applied step.
    void step(float* params, const float* grads, const float* hyper, const std::int32_t* stop_flag,
              cudaStream_t stream);
    // Queues a count of the current weights into layer_nnz() (after parameters are uploaded).
    void count(const float* params, cudaStream_t stream);
    // Device array (n_layers) of nonzero weights per layer.
    const unsigned long long* layer_nnz() const { return table_.layer_nnz(); }

private:
    TileTable table_;
};

}  // namespace cuda
}  // namespace sparseprox
