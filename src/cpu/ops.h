// CPU backend operations: the oracle every CUDA operation is compared against. Matrices are
// row-major; a batch of activations is (batch, features). Gradients are overwritten, not
// accumulated.
#pragma once

#include <cstddef>
#include <cstdint>

#include <vector>

#include "sparseprox/model.h"
#include "sparseprox/search.h"

namespace sparseprox {
namespace cpu {

// y = x W^T + b.  x (batch, n_in), W (n_out, n_in), b (n_out), y (batch, n_out).
void dense_forward(const float* x, const float* W, const float* b, float* y, std::size_t batch,
                   std::size_t n_in, std::size_t n_out);

// dL_dW = dL_dy^T x, dL_db = column sums of dL_dy, dL_dx = dL_dy W (skipped when null).
void dense_backward(const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db,
                    float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out);

void activation_forward(Activation a, const float* x, float* y, std::size_t n);
// dL_dx = dL_dy * f'(x) (given y = f(x) too). dL_dx may alias dL_dy.
void activation_backward(Activation a, const float* x, const float* y, const float* dL_dy,
                         float* dL_dx, std::size_t n);

// Sum over the batch of per-sample losses ||pred - target||^2 (no 1/2). When dL_dpred is not
// null it receives 2 (pred - target) * grad_scale (grad_scale = 1/batch for a batch mean).
double mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out,
                float grad_scale, float* dL_dpred);

// Sum over the batch of -log softmax(logits)[label]. dL_dlogits = (softmax - onehot) *
// grad_scale when not null; n_correct (when not null) counts argmax == label (first max wins).
double cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch,
                          std::size_t n_classes, float grad_scale, float* dL_dlogits,
                          std::size_t* n_correct);

// The fused step over a whole parameter slab: every weight segment gets
// S_{lr*lambda_l}(w - lr g), every bias plain SGD; nnz[l] receives the nonzero weights of layer
// l afterwards. lambdas has one entry per segment.
void prox_step(float* params, const float* grads, const ParamLayout& layout, float lr,
               const float* lambdas, std::size_t* nnz);

// grads += wd * params over every weight segment (l2 weight decay; biases untouched).
void add_weight_decay(float* grads, const float* params, const ParamLayout& layout, float wd);

// candidate_set (search.h) over the weight gradients of the given layers of a gradient slab,
// taken together.
CandidateSet gradient_candidates(const float* grads, const ParamLayout& layout, const std::vector<std::size_t>& layers,
                                 float low, float up);

// Nonzero count of n floats.
std::size_t count_nonzero(const float* x, std::size_t n);

}  // namespace cpu
}  // namespace sparseprox
