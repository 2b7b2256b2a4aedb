// CPU twins of the CUDA operations: OpenBLAS for the GEMMs, OpenMP loops over the shared
// per-element formulas of core/elementwise.h for everything else.
#include "cpu/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "core/elementwise.h"

namespace sparseprox {
namespace cpu {

namespace {
using idx = std::ptrdiff_t;  // OpenMP loops want a signed index
constexpr std::size_t kParallelMin = 1 << 14;  // below this, threading costs more than it saves
}  // namespace

void dense_forward(const float* x, const float* W, const float* b, float* y, std::size_t batch,
                   std::size_t n_in, std::size_t n_out) {
    if (batch == 0 || n_out == 0) return;
    for (std::size_t r = 0; r < batch; ++r) std::copy(b, b + n_out, y + r * n_out);
    // y (batch, n_out) += x (batch, n_in) * W^T (n_in, n_out)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(batch), static_cast<int>(n_out),
                static_cast<int>(n_in), 1.0f, x, static_cast<int>(n_in), W, static_cast<int>(n_in), 1.0f, y,
                static_cast<int>(n_out));
}

void dense_backward(const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db,
                    float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out) {
    if (n_out == 0 || n_in == 0) return;
    if (batch == 0) {
        std::fill(dL_dW, dL_dW + n_out * n_in, 0.0f);
        std::fill(dL_db, dL_db + n_out, 0.0f);
        return;
    }
    // dL_dW (n_out, n_in) = dL_dy^T (n_out, batch) * x (batch, n_in)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(n_out), static_cast<int>(n_in),
                static_cast<int>(batch), 1.0f, dL_dy, static_cast<int>(n_out), x, static_cast<int>(n_in), 0.0f,
                dL_dW, static_cast<int>(n_in));
    for (std::size_t j = 0; j < n_out; ++j) dL_db[j] = 0.0f;
    for (std::size_t r = 0; r < batch; ++r)
        for (std::size_t j = 0; j < n_out; ++j) dL_db[j] += dL_dy[r * n_out + j];
    if (dL_dx) {
        // dL_dx (batch, n_in) = dL_dy (batch, n_out) * W (n_out, n_in)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(batch), static_cast<int>(n_in),
                    static_cast<int>(n_out), 1.0f, dL_dy, static_cast<int>(n_out), W, static_cast<int>(n_in), 0.0f,
                    dL_dx, static_cast<int>(n_in));
    }
}

void activation_forward(Activation a, const float* x, float* y, std::size_t n) {
    const int kind = static_cast<int>(a);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (idx i = 0; i < static_cast<idx>(n); ++i) y[i] = ew::act_forward(kind, x[i]);
}

void activation_backward(Activation a, const float* x, const float* y, const float* dL_dy, float* dL_dx,
                         std::size_t n) {
    const int kind = static_cast<int>(a);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (idx i = 0; i < static_cast<idx>(n); ++i) dL_dx[i] = dL_dy[i] * ew::act_derivative(kind, x[i], y[i]);
}

double mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out, float grad_scale,
                float* dL_dpred) {
    double sum = 0.0;
    for (std::size_t r = 0; r < batch; ++r)
        sum += ew::squared_error_row(pred + r * n_out, target + r * n_out, n_out, grad_scale,
                                     dL_dpred ? dL_dpred + r * n_out : nullptr);
    return sum;
}

double cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch, std::size_t n_classes,
                          float grad_scale, float* dL_dlogits, std::size_t* n_correct) {
    double sum = 0.0;
    std::size_t correct = 0;
    for (std::size_t r = 0; r < batch; ++r) {
        const auto label = static_cast<std::uint64_t>(labels[r]);
        std::uint64_t arg = 0;
        sum += static_cast<double>(ew::cross_entropy_row(logits + r * n_classes, label, n_classes, grad_scale,
                                                         dL_dlogits ? dL_dlogits + r * n_classes : nullptr, &arg));
        correct += arg == label;
    }
    if (n_correct) *n_correct = correct;
    return sum;
}

std::size_t count_nonzero(const float* x, std::size_t n) {
    std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (n >= kParallelMin)
    for (idx i = 0; i < static_cast<idx>(n); ++i) count += x[i] != 0.0f;
    return count;
}

void prox_step(float* params, const float* grads, const ParamLayout& layout, float lr, const float* lambdas,
               std::size_t* nnz) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        const float tau = lr * lambdas[l];
        float* w = params + s.weight_offset;
        const float* g = grads + s.weight_offset;
        std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (s.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(s.n_weights); ++i) {
            const float v = ew::prox_sgd(w[i], g[i], lr, tau);
            w[i] = v;
            count += v != 0.0f;
        }
        nnz[l] = count;
        float* b = params + s.bias_offset;
        const float* gb = grads + s.bias_offset;
        for (std::size_t i = 0; i < s.n_bias; ++i) b[i] = ew::sgd(b[i], gb[i], lr);
    }
}

void add_weight_decay(float* grads, const float* params, const ParamLayout& layout, float wd) {
    if (wd == 0.0f) return;
    for (const ParamSegment& s : layout.segments)
        cblas_saxpy(static_cast<int>(s.n_weights), wd, params + s.weight_offset, 1, grads + s.weight_offset, 1);
}

CandidateSet gradient_candidates(const float* grads, const ParamLayout& layout, const std::vector<std::size_t>& layers,
                                 float low, float up) {
    std::vector<float> inside;
    for (std::size_t l : layers) {
        const ParamSegment& s = layout.segments.at(l);
        const float* g = grads + s.weight_offset;
        for (std::size_t i = 0; i < s.n_weights; ++i) {
            const float a = std::fabs(g[i]);
            if (a > low && a < up) inside.push_back(a);
        }
    }
    return candidate_set(inside.data(), inside.size(), low, up);
}

}  // namespace cpu
}  // namespace sparseprox
