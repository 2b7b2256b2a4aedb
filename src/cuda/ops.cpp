// CUDA twins of the CPU operations: cuBLAS for the GEMMs (row-major through the transposition
// identity: a row-major (r, c) matrix is its column-major transpose), kernels/ for the rest.
#include "cuda/ops.h"

#include <climits>
#include <string>

#include "kernels/activation.cuh"
#include "kernels/candidates.cuh"
#include "kernels/dense.cuh"
#include "kernels/loss.cuh"
#include "kernels/prox_step.cuh"

namespace sparseprox {
namespace cuda {

namespace {

int blas_int(std::size_t n, const char* what) {
    if (n > static_cast<std::size_t>(INT_MAX))
        throw Error(std::string("cuBLAS dimension ") + what + " = " + std::to_string(n) + " exceeds INT_MAX");
    return static_cast<int>(n);
}

// Per-sample losses reduced to a host value: the synchronizing form the CPU twins have.
struct LossScratch {
    DeviceBuffer<double> sample_loss;
    DeviceBuffer<std::uint32_t> sample_correct;
    DeviceBuffer<double> loss_sum{1};
    DeviceBuffer<unsigned long long> correct_sum{1};
    DeviceBuffer<unsigned char> temp;
    explicit LossScratch(std::size_t batch)
        : sample_loss(batch), sample_correct(batch), temp(cub_temp_size(sum_temp_bytes(batch))) {}
};

}  // namespace

void dense_forward(CudaContext& ctx, const float* x, const float* W, const float* b, float* y, std::size_t batch,
                   std::size_t n_in, std::size_t n_out) {
    if (batch == 0 || n_out == 0) return;
    launch_broadcast_bias(b, y, batch, n_out, ctx.stream());
    if (n_in == 0) return;
    // Column-major: y^T (n_out, batch) = W (n_out, n_in) x^T (n_in, batch) + y^T, where W is the
    // transpose of the column-major (n_in, n_out) view of the row-major W.
    const float one = 1.0f;
    SPARSEPROX_CUDA_CHECK(cublasSgemm(ctx.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, blas_int(n_out, "n_out"),
                                      blas_int(batch, "batch"), blas_int(n_in, "n_in"), &one, W, blas_int(n_in, "n_in"),
                                      x, blas_int(n_in, "n_in"), &one, y, blas_int(n_out, "n_out")));
}

void dense_backward(CudaContext& ctx, const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db,
                    float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out, bool accumulate) {
    if (n_out == 0 || n_in == 0) return;
    const cudaStream_t stream = ctx.stream();
    if (batch == 0) {  // an empty batch contributes nothing; the CPU twin then writes zeros
        if (!accumulate) {
            SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(dL_dW, 0, n_out * n_in * sizeof(float), stream));
            SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(dL_db, 0, n_out * sizeof(float), stream));
        }
        return;
    }
    const int m_in = blas_int(n_in, "n_in"), m_out = blas_int(n_out, "n_out"), m_batch = blas_int(batch, "batch");
    const float one = 1.0f, zero = 0.0f, beta = accumulate ? 1.0f : 0.0f;
    // Column-major: dL_dW^T (n_in, n_out) = x^T (n_in, batch) * dL_dy (batch, n_out).
    SPARSEPROX_CUDA_CHECK(cublasSgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, m_in, m_out, m_batch, &one, x, m_in,
                                      dL_dy, m_out, &beta, dL_dW, m_in));
    launch_bias_grad(dL_dy, dL_db, batch, n_out, accumulate, stream);
    if (dL_dx) {
        // Column-major: dL_dx^T (n_in, batch) = W^T (n_in, n_out) * dL_dy^T (n_out, batch).
        SPARSEPROX_CUDA_CHECK(cublasSgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, m_in, m_batch, m_out, &one, W, m_in,
                                          dL_dy, m_out, &zero, dL_dx, m_in));
    }
}

void activation_forward(CudaContext& ctx, Activation a, const float* x, float* y, std::size_t n) {
    launch_activation_forward(a, x, y, n, ctx.stream());
}

void activation_backward(CudaContext& ctx, Activation a, const float* x, const float* y, const float* dL_dy,
                         float* dL_dx, std::size_t n) {
    launch_activation_backward(a, x, y, dL_dy, dL_dx, n, ctx.stream());
}

double mse_loss(CudaContext& ctx, const float* pred, const float* target, std::size_t batch, std::size_t n_out,
                float grad_scale, float* dL_dpred) {
    if (batch == 0) return 0.0;
    LossScratch s(batch);
    launch_mse_loss(pred, target, batch, n_out, grad_scale, dL_dpred, s.sample_loss.data(), ctx.stream());
    launch_sum(s.sample_loss.data(), batch, s.loss_sum.data(), s.temp.data(), s.temp.bytes(), ctx.stream());
    double sum = 0.0;
    s.loss_sum.copy_to_host(&sum, 1, ctx.stream());
    ctx.synchronize();
    return sum;
}

double cross_entropy_loss(CudaContext& ctx, const float* logits, const std::int32_t* labels, std::size_t batch,
                          std::size_t n_classes, float grad_scale, float* dL_dlogits, std::size_t* n_correct) {
    if (batch == 0) {
        if (n_correct) *n_correct = 0;
        return 0.0;
    }
    LossScratch s(batch);
    const cudaStream_t stream = ctx.stream();
    launch_cross_entropy_loss(logits, labels, batch, n_classes, grad_scale, dL_dlogits, s.sample_loss.data(),
                              s.sample_correct.data(), stream);
    launch_sum(s.sample_loss.data(), batch, s.loss_sum.data(), s.temp.data(), s.temp.bytes(), stream);
    launch_sum(s.sample_correct.data(), batch, s.correct_sum.data(), s.temp.data(), s.temp.bytes(), stream);
    double sum = 0.0;
    unsigned long long correct = 0;
    s.loss_sum.copy_to_host(&sum, 1, stream);
    s.correct_sum.copy_to_host(&correct, 1, stream);
    ctx.synchronize();
    if (n_correct) *n_correct = static_cast<std::size_t>(correct);
    return sum;
}

std::vector<float> hyper_array(float lr, const float* lambdas, std::size_t n_layers) {
    std::vector<float> hyper(1 + n_layers);
    hyper[0] = lr;
    for (std::size_t l = 0; l < n_layers; ++l) hyper[1 + l] = lambdas[l];
    return hyper;
}

void prox_step(CudaContext& ctx, float* params, const float* grads, const ParamLayout& layout, float lr,
               const float* lambdas, std::size_t* nnz) {
    const cudaStream_t stream = ctx.stream();
    ProxPlan plan(layout, stream);
    const std::vector<float> hyper = hyper_array(lr, lambdas, layout.segments.size());
    DeviceBuffer<float> hyper_device(hyper.size());
    hyper_device.copy_from_host(hyper.data(), hyper.size(), stream);
    plan.step(params, grads, hyper_device.data(), nullptr, stream);
    std::vector<unsigned long long> counts(plan.n_layers());
    if (!counts.empty())
        SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(counts.data(), plan.layer_nnz(), counts.size() * sizeof(counts[0]),
                                              cudaMemcpyDeviceToHost, stream));
    ctx.synchronize();
    for (std::size_t l = 0; l < counts.size(); ++l) nnz[l] = static_cast<std::size_t>(counts[l]);
}

void prox_step_unfused(CudaContext& ctx, float* params, const float* grads, const ParamLayout& layout, float lr,
                       const float* lambdas, std::size_t* nnz) {
    const std::vector<float> hyper = hyper_array(lr, lambdas, layout.segments.size());
    DeviceBuffer<float> hyper_device(hyper.size());
    hyper_device.copy_from_host(hyper.data(), hyper.size(), ctx.stream());
    const std::vector<std::size_t> counts =
        cuda::prox_step_unfused(params, grads, layout, hyper_device.data(), ctx.stream());
    ctx.synchronize();
    for (std::size_t l = 0; l < counts.size(); ++l) nnz[l] = counts[l];
}

void add_weight_decay(CudaContext& ctx, float* grads, const float* params, const ParamLayout& layout, float wd) {
    if (wd == 0.0f) return;
    for (const ParamSegment& s : layout.segments)
        SPARSEPROX_CUDA_CHECK(cublasSaxpy(ctx.cublas(), blas_int(s.n_weights, "n_weights"), &wd,
                                          params + s.weight_offset, 1, grads + s.weight_offset, 1));
}

CandidateSet gradient_candidates(CudaContext& ctx, const float* grads, const ParamLayout& layout,
                                 const std::vector<std::size_t>& layers, float low, float up, float* scratch) {
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    for (std::size_t l : layers) {
        const ParamSegment& s = layout.segments.at(l);
        ranges.emplace_back(s.weight_offset, s.n_weights);
    }
    return select_candidates(grads, ranges, low, up, scratch, ctx.stream());
}

std::size_t count_nonzero(CudaContext& ctx, const float* x, std::size_t n) {
    return cuda::count_nonzero(x, n, ctx.stream());
}

// ---- ProxPlan ------------------------------------------------------------------------------------

ProxPlan::ProxPlan(const ParamLayout& layout, cudaStream_t stream) : table_(layout, stream) {}

void ProxPlan::step(float* params, const float* grads, const float* hyper, const std::int32_t* stop_flag,
                    cudaStream_t stream) {
    launch_prox_step(params, grads, table_.tiles(), table_.n_tiles(), hyper, stop_flag, table_.tile_nnz(), stream);
    table_.sum_per_layer(stream);
}

void ProxPlan::count(const float* params, cudaStream_t stream) { table_.count(params, stream); }

}  // namespace cuda
}  // namespace sparseprox
