// The cuSPARSE twins of cpu/csr_ops.h (the policy is described in cusparse_ops.h). The only
// library translation unit that includes cusparse.h.
#include "cuda/cusparse_ops.h"

#include <cusparse.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cuda/common.h"
#include "kernels/dense.cuh"
#include "sparseprox/error.h"

namespace sparseprox {
namespace cuda {

// The cusparseStatus_t overload of the one check macro (common.h): SPARSEPROX_CUDA_CHECK covers
// cuSPARSE calls in this file.
void check_status(cusparseStatus_t status, const char* call, const char* file, int line) {
    if (status != CUSPARSE_STATUS_SUCCESS)
        throw_status(call, cusparseGetErrorName(status), cusparseGetErrorString(status), file, line);
}

struct Cusparse::Impl {
    cusparseHandle_t handle = nullptr;
};

Cusparse::Cusparse(cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
    SPARSEPROX_CUDA_CHECK(cusparseCreate(&impl_->handle));
    try {
        SPARSEPROX_CUDA_CHECK(cusparseSetStream(impl_->handle, stream));
    } catch (...) {
        cusparseDestroy(impl_->handle);
        impl_->handle = nullptr;
        throw;
    }
}

Cusparse::~Cusparse() {
    if (impl_ && impl_->handle) cusparseDestroy(impl_->handle);  // never throws
}

namespace {

// The dense descriptors of one product, destroyed with it (created at the call site, so that a
// failure names the call).
struct DnMat {
    cusparseDnMatDescr_t mat = nullptr;
    cusparseConstDnMatDescr_t const_mat = nullptr;
    DnMat() = default;
    DnMat(const DnMat&) = delete;
    DnMat& operator=(const DnMat&) = delete;
    ~DnMat() {
        if (mat) cusparseDestroyDnMat(mat);
        if (const_mat) cusparseDestroyDnMat(const_mat);
    }
};
struct DnVec {
    cusparseDnVecDescr_t vec = nullptr;
    cusparseConstDnVecDescr_t const_vec = nullptr;
    DnVec() = default;
    DnVec(const DnVec&) = delete;
    DnVec& operator=(const DnVec&) = delete;
    ~DnVec() {
        if (vec) cusparseDestroyDnVec(vec);
        if (const_vec) cusparseDestroyDnVec(const_vec);
    }
};

// A CSR matrix in device memory with its cuSPARSE descriptor and workspace. A matrix without
// nonzeros has neither: its product is the bias alone.
class DeviceCsr final : public CsrMatrix {
public:
    DeviceCsr(const CudaContext& ctx, const CsrHost& W, std::size_t max_batch)
        : CsrMatrix(W.rows, W.cols, W.nnz(), max_batch), context(&ctx) {}
    ~DeviceCsr() override {
        if (descr) cusparseDestroySpMat(descr);  // never throws
    }

    // The workspace for a product of `batch` rows whose cuSPARSE query answered `need` bytes,
    // grown (after the queued products that may use the old one) when it holds fewer.
    void* workspace_for(const CudaContext& ctx, std::size_t batch, std::size_t need) const {
        if (need > workspace.bytes()) {
            ctx.synchronize();
            workspace.allocate(need);
        }
        sized_batches.push_back(batch);
        return workspace.data();
    }
    bool sized_for(std::size_t batch) const {
        return std::find(sized_batches.begin(), sized_batches.end(), batch) != sized_batches.end();
    }

    const CudaContext* context;
    DeviceBuffer<std::int32_t> row_offsets;  // (rows + 1)
    DeviceBuffer<std::int32_t> col_indices;  // (nnz)
    DeviceBuffer<float> values;              // (nnz)
    cusparseConstSpMatDescr_t descr = nullptr;
    mutable DeviceBuffer<unsigned char> workspace;
    mutable std::vector<std::size_t> sized_batches;  // batch sizes whose query the workspace covers
};

const DeviceCsr& device_csr(const CudaContext& ctx, const CsrMatrix& W, std::size_t batch) {
    const auto* m = dynamic_cast<const DeviceCsr*>(&W);
    if (!m || m->context != &ctx) throw Error("csr product: the matrix was not built by this CUDA backend");
    if (batch > W.max_batch())
        throw Error("csr product: " + std::to_string(batch) + " rows in one pass, the matrix was prepared for " +
                    std::to_string(W.max_batch()));
    return *m;
}

}  // namespace

std::unique_ptr<CsrMatrix> csr_matrix(CudaContext& ctx, const CsrHost& W, std::size_t max_batch) {
    if (W.row_offsets.size() != W.rows + 1 || W.col_indices.size() != W.nnz())
        throw Error("csr matrix: arrays do not describe a (" + std::to_string(W.rows) + ", " + std::to_string(W.cols) +
                    ") matrix");
    constexpr auto kMaxIndex = static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
    if (W.rows > kMaxIndex || W.cols > kMaxIndex || W.nnz() > kMaxIndex)
        throw Error("csr matrix: (" + std::to_string(W.rows) + ", " + std::to_string(W.cols) + ") with " +
                    std::to_string(W.nnz()) + " nonzeros exceeds cuSPARSE's 32-bit indices");
    ctx.activate();
    ctx.cusparse();  // the handle now, at setup, not in the first pass
    auto m = std::make_unique<DeviceCsr>(ctx, W, max_batch < 1 ? 1 : max_batch);
    if (W.nnz() == 0) return m;
    const cudaStream_t s = ctx.stream();
    m->row_offsets.allocate(W.row_offsets.size());
    m->row_offsets.copy_from_host(W.row_offsets.data(), W.row_offsets.size(), s);
    m->col_indices.allocate(W.nnz());
    m->col_indices.copy_from_host(W.col_indices.data(), W.nnz(), s);
    m->values.allocate(W.nnz());
    m->values.copy_from_host(W.values.data(), W.nnz(), s);
    SPARSEPROX_CUDA_CHECK(cusparseCreateConstCsr(&m->descr, static_cast<std::int64_t>(W.rows),
                                                 static_cast<std::int64_t>(W.cols), static_cast<std::int64_t>(W.nnz()),
                                                 m->row_offsets.data(), m->col_indices.data(), m->values.data(),
                                                 CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I, CUSPARSE_INDEX_BASE_ZERO,
                                                 CUDA_R_32F));
    return m;
}

void csr_forward(CudaContext& ctx, const CsrMatrix& W_, const float* x, const float* b, float* y, std::size_t batch) {
    const DeviceCsr& W = device_csr(ctx, W_, batch);
    if (batch == 0) return;
    const cudaStream_t stream = ctx.stream();
    launch_broadcast_bias(b, y, batch, W.rows(), stream);  // y = b
    if (W.nnz() == 0) return;
    cusparseHandle_t handle = ctx.cusparse().impl().handle;
    const float alpha = 1.0f, beta = 1.0f;  // y += W x^T
    const auto rows = static_cast<std::int64_t>(W.rows()), cols = static_cast<std::int64_t>(W.cols());
    if (batch == 1) {
        DnVec xv, yv;
        SPARSEPROX_CUDA_CHECK(cusparseCreateConstDnVec(&xv.const_vec, cols, x, CUDA_R_32F));
        SPARSEPROX_CUDA_CHECK(cusparseCreateDnVec(&yv.vec, rows, y, CUDA_R_32F));
        void* workspace = W.workspace.data();
        if (!W.sized_for(1)) {
            std::size_t need = 0;
            SPARSEPROX_CUDA_CHECK(cusparseSpMV_bufferSize(handle, CUSPARSE_OPERATION_NON_TRANSPOSE, &alpha, W.descr,
                                                          xv.const_vec, &beta, yv.vec, CUDA_R_32F,
                                                          CUSPARSE_SPMV_ALG_DEFAULT, &need));
            workspace = W.workspace_for(ctx, 1, need);
        }
        SPARSEPROX_CUDA_CHECK(cusparseSpMV(handle, CUSPARSE_OPERATION_NON_TRANSPOSE, &alpha, W.descr, xv.const_vec,
                                           &beta, yv.vec, CUDA_R_32F, CUSPARSE_SPMV_ALG_DEFAULT, workspace));
        return;
    }
    // X^T (cols, batch) and Y^T (rows, batch), column-major: the row-major x and y as they are.
    const auto n = static_cast<std::int64_t>(batch);
    DnMat B, C;
    SPARSEPROX_CUDA_CHECK(cusparseCreateConstDnMat(&B.const_mat, cols, n, cols, x, CUDA_R_32F, CUSPARSE_ORDER_COL));
    SPARSEPROX_CUDA_CHECK(cusparseCreateDnMat(&C.mat, rows, n, rows, y, CUDA_R_32F, CUSPARSE_ORDER_COL));
    void* workspace = W.workspace.data();
    if (!W.sized_for(batch)) {
        std::size_t need = 0;
        SPARSEPROX_CUDA_CHECK(cusparseSpMM_bufferSize(handle, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                                      CUSPARSE_OPERATION_NON_TRANSPOSE, &alpha, W.descr, B.const_mat,
                                                      &beta, C.mat, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, &need));
        workspace = W.workspace_for(ctx, batch, need);
    }
    SPARSEPROX_CUDA_CHECK(cusparseSpMM(handle, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                       &alpha, W.descr, B.const_mat, &beta, C.mat, CUDA_R_32F,
                                       CUSPARSE_SPMM_ALG_DEFAULT, workspace));
}

}  // namespace cuda
}  // namespace sparseprox
