// The dense layer y = x W^T + b on the device: the GEMMs through cuBLAS (row-major through the
// transposition identity: a row-major (r, c) matrix is its column-major transpose; FP32 math,
// never TF32, so results stay within float32 summation error of the CPU twin), and two kernels:
//   broadcast_bias: y[r][j] = b[j]        4 bytes written per element (+ b, cached)
//   bias_grad:      dL_db[j] = sum_r dL_dy[r][j]   4 bytes read per element
// DenseEpilogues replaces the bias pass and the activation pass of the forward by cuBLASLt's
// epilogue when the activation is the identity or a ReLU (other activations keep their kernel).
// bias_grad gives one thread per column and adds the rows in order, exactly like the CPU twin,
// so the bias gradient is bit-identical across backends. A column sum is then a chain of
// `batch` dependent adds (batch 128: well under a microsecond; a 4096-row evaluation chunk a
// few microseconds), with eight loads issued ahead of their adds to hide the memory latency.
#include "kernels/dense.cuh"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "kernels/common.cuh"

namespace sparseprox {
namespace cuda {

namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kBiasGradThreads = 128;
constexpr std::uint64_t kRowsAhead = 8;

__global__ void broadcast_bias_kernel(const float* __restrict__ b, float* __restrict__ y, std::uint64_t batch,
                                      std::uint64_t n_out) {
    const std::uint64_t n = batch * n_out;
    for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
         i += std::uint64_t{gridDim.x} * blockDim.x)
        y[i] = b[i % n_out];
}

__global__ void bias_grad_kernel(const float* __restrict__ dL_dy, float* __restrict__ dL_db, std::uint64_t batch,
                                 std::uint64_t n_out) {
    const std::uint64_t j = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x;
    if (j >= n_out) return;
    const float* col = dL_dy + j;
    float sum = 0.0f;
    std::uint64_t r = 0;
    for (; r + kRowsAhead <= batch; r += kRowsAhead) {
        float v[kRowsAhead];
#pragma unroll
        for (std::uint64_t k = 0; k < kRowsAhead; ++k) v[k] = col[(r + k) * n_out];
#pragma unroll
        for (std::uint64_t k = 0; k < kRowsAhead; ++k) sum += v[k];
    }
    for (; r < batch; ++r) sum += col[r * n_out];
    dL_db[j] = sum;
}

int blas_int(std::size_t n, const char* what) {
    if (n > static_cast<std::size_t>(INT_MAX))
        throw Error(std::string("cuBLAS dimension ") + what + " = " + std::to_string(n) + " exceeds INT_MAX");
    return static_cast<int>(n);
}

// The largest power of two from 4 to 256 bytes that divides p's address (cuBLASLt's heuristic
// assumes 256 unless told otherwise, and a weight segment of the slab is only float-aligned). Not
// capped lower: the heuristic reads the bias pointer's alignment from the pointer itself, so a
// plan is only valid for biases aligned as the one it was made with.
unsigned alignment(const void* p) {
    const auto v = reinterpret_cast<std::uintptr_t>(p);
    unsigned a = 4;
    while (a < 256 && v % (2 * a) == 0) a *= 2;
    return a;
}

template <typename T>
void set_attr(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& value) {
    SPARSEPROX_CUDA_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof value));
}

}  // namespace

DenseEpilogues::~DenseEpilogues() {
    for (auto& [key, p] : plans_) {
        if (p.y) cublasLtMatrixLayoutDestroy(p.y);
        if (p.x) cublasLtMatrixLayoutDestroy(p.x);
        if (p.w) cublasLtMatrixLayoutDestroy(p.w);
        if (p.op) cublasLtMatmulDescDestroy(p.op);
    }
}

DenseEpilogues::Plan& DenseEpilogues::plan(cublasLtHandle_t handle, const Key& key, const float* b,
                                           std::size_t workspace_bytes) {
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    Plan& p = plans_[key];
    const auto [batch, n_in, n_out, epilogue, a_x, a_w, a_y, a_b] = key;
    (void)a_b;  // the heuristic reads the bias alignment from the pointer b itself
    // Column-major, as dense_forward: y^T (n_out, batch) = op(W) (n_out, n_in) x^T (n_in, batch),
    // W stored as the column-major (n_in, n_out) matrix and transposed.
    SPARSEPROX_CUDA_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    set_attr(p.op, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    set_attr(p.op, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    set_attr(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<cublasLtEpilogue_t>(epilogue));
    set_attr(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(b));
    SPARSEPROX_CUDA_CHECK(cublasLtMatrixLayoutCreate(&p.w, CUDA_R_32F, n_in, n_out, static_cast<std::int64_t>(n_in)));
    SPARSEPROX_CUDA_CHECK(cublasLtMatrixLayoutCreate(&p.x, CUDA_R_32F, n_in, batch, static_cast<std::int64_t>(n_in)));
    SPARSEPROX_CUDA_CHECK(
        cublasLtMatrixLayoutCreate(&p.y, CUDA_R_32F, n_out, batch, static_cast<std::int64_t>(n_out)));

    cublasLtMatmulPreference_t pref = nullptr;
    SPARSEPROX_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const auto pref_set = [&](cublasLtMatmulPreferenceAttributes_t attr, const auto& value) {
        return cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value);
    };
    const std::uint64_t ws = workspace_bytes;
    cublasStatus_t status = pref_set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws);
    if (status == CUBLAS_STATUS_SUCCESS) status = pref_set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, std::uint32_t{a_w});
    if (status == CUBLAS_STATUS_SUCCESS) status = pref_set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, std::uint32_t{a_x});
    if (status == CUBLAS_STATUS_SUCCESS) status = pref_set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, std::uint32_t{a_y});
    if (status == CUBLAS_STATUS_SUCCESS) status = pref_set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, std::uint32_t{a_y});
    cublasLtMatmulHeuristicResult_t result{};
    int n_results = 0;
    if (status == CUBLAS_STATUS_SUCCESS)
        status = cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.w, p.x, p.y, p.y, pref, 1, &result, &n_results);
    cublasLtMatmulPreferenceDestroy(pref);
    // No algorithm (CUBLAS_STATUS_NOT_SUPPORTED or none returned) is not an error: the plan is
    // remembered as absent and the cuBLAS path runs instead.
    if (status != CUBLAS_STATUS_SUCCESS && status != CUBLAS_STATUS_NOT_SUPPORTED)
        check_status(status, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    p.found = status == CUBLAS_STATUS_SUCCESS && n_results > 0 && result.state == CUBLAS_STATUS_SUCCESS &&
              result.workspaceSize <= workspace_bytes;
    if (p.found) p.algo = result.algo;
    return p;
}

Fused DenseEpilogues::forward(cublasLtHandle_t handle, const float* x, const float* W, const float* b, float* y,
                              std::size_t batch, std::size_t n_in, std::size_t n_out, Activation act, void* workspace,
                              std::size_t workspace_bytes, cudaStream_t stream) {
    constexpr std::size_t kMax = static_cast<std::size_t>(INT_MAX);
    if (batch == 0 || n_in == 0 || n_out == 0 || std::max({batch, n_in, n_out}) > kMax) return Fused::none;
    const bool relu = act == Activation::relu;
    const cublasLtEpilogue_t epilogue = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    const Key key{batch,        n_in,         n_out,        static_cast<int>(epilogue),
                  alignment(x), alignment(W), alignment(y), alignment(b)};
    Plan& p = plan(handle, key, b, workspace_bytes);
    if (!p.found) return Fused::none;
    set_attr(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(b));
    const float one = 1.0f, zero = 0.0f;
    SPARSEPROX_CUDA_CHECK(cublasLtMatmul(handle, p.op, &one, W, p.w, x, p.x, &zero, y, p.y, y, p.y, &p.algo,
                                         workspace, workspace_bytes, stream));
    return relu ? Fused::bias_relu : Fused::bias;
}

void launch_broadcast_bias(const float* b, float* y, std::size_t batch, std::size_t n_out, cudaStream_t stream) {
    const std::size_t n = batch * n_out;
    if (n == 0) return;
    broadcast_bias_kernel<<<grid_size(n, kThreads), kThreads, 0, stream>>>(b, y, batch, n_out);
    SPARSEPROX_CHECK_LAUNCH();
}

void launch_bias_grad(const float* dL_dy, float* dL_db, std::size_t batch, std::size_t n_out,
                      cudaStream_t stream) {
    if (n_out == 0) return;
    const auto blocks = static_cast<unsigned>((n_out + kBiasGradThreads - 1) / kBiasGradThreads);
    bias_grad_kernel<<<blocks, kBiasGradThreads, 0, stream>>>(dL_dy, dL_db, batch, n_out);
    SPARSEPROX_CHECK_LAUNCH();
}

void dense_forward(cublasHandle_t handle, const float* x, const float* W, const float* b, float* y, std::size_t batch,
                   std::size_t n_in, std::size_t n_out, cudaStream_t stream) {
    if (batch == 0 || n_out == 0) return;
    launch_broadcast_bias(b, y, batch, n_out, stream);
    if (n_in == 0) return;
    // Column-major: y^T (n_out, batch) = W (n_out, n_in) x^T (n_in, batch) + y^T, where W is the
    // transpose of the column-major (n_in, n_out) view of the row-major W.
    const float one = 1.0f;
    SPARSEPROX_CUDA_CHECK(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, blas_int(n_out, "n_out"),
                                      blas_int(batch, "batch"), blas_int(n_in, "n_in"), &one, W, blas_int(n_in, "n_in"),
                                      x, blas_int(n_in, "n_in"), &one, y, blas_int(n_out, "n_out")));
}

void dense_backward(cublasHandle_t handle, const float* x, const float* W, const float* dL_dy, float* dL_dW,
                    float* dL_db, float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out,
                    cudaStream_t stream) {
    if (n_out == 0 || n_in == 0) return;
    if (batch == 0) {  // an empty batch contributes nothing; the CPU twin then writes zeros
        SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(dL_dW, 0, n_out * n_in * sizeof(float), stream));
        SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(dL_db, 0, n_out * sizeof(float), stream));
        return;
    }
    const int m_in = blas_int(n_in, "n_in"), m_out = blas_int(n_out, "n_out"), m_batch = blas_int(batch, "batch");
    const float one = 1.0f, zero = 0.0f;
    // Column-major: dL_dW^T (n_in, n_out) = x^T (n_in, batch) * dL_dy (batch, n_out).
    SPARSEPROX_CUDA_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, m_in, m_out, m_batch, &one, x, m_in, dL_dy,
                                      m_out, &zero, dL_dW, m_in));
    launch_bias_grad(dL_dy, dL_db, batch, n_out, stream);
    if (dL_dx) {
        // Column-major: dL_dx^T (n_in, batch) = W^T (n_in, n_out) * dL_dy^T (n_out, batch).
        SPARSEPROX_CUDA_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m_in, m_batch, m_out, &one, W, m_in,
                                          dL_dy, m_out, &zero, dL_dx, m_in));
    }
}

}  // namespace cuda
}  // namespace sparseprox
