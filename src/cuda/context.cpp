#include "cuda/context.h"

#include "cuda/cudnn_ops.h"
#include "cuda/cusparse_ops.h"

namespace sparseprox {
namespace cuda {

namespace {
// cuBLAS asks for 32 MiB of workspace on Hopper (4 MiB before). An explicit workspace also
// keeps cuBLAS from allocating inside a stream capture.
constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;
}  // namespace

CudaContext::CudaContext(int device_index) : device_(device_index) {
    try {
        SPARSEPROX_CUDA_CHECK(cudaSetDevice(device_));
        SPARSEPROX_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        SPARSEPROX_CUDA_CHECK(cublasCreate(&cublas_));
        // cublasSetStream resets the workspace to cuBLAS's own pool: bind the stream first.
        SPARSEPROX_CUDA_CHECK(cublasSetStream(cublas_, stream_));
        cublas_workspace_.allocate(kCublasWorkspaceBytes);
        SPARSEPROX_CUDA_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_.data(), cublas_workspace_.bytes()));
        // Plain FP32 FMA GEMMs, never TF32 (10-bit mantissa): results must stay comparable with
        // the CPU's float32 GEMM at FP32 tolerances.
        SPARSEPROX_CUDA_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
        SPARSEPROX_CUDA_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
        SPARSEPROX_CUDA_CHECK(cublasLtCreate(&cublaslt_));
    } catch (...) {
        release();
        throw;
    }
}

CudaContext::~CudaContext() { release(); }

Cudnn& CudaContext::cudnn() {
    if (!cudnn_) {
        activate();  // cudnnCreate binds the handle to the current device
        cudnn_ = std::make_unique<Cudnn>(stream_);
    }
    return *cudnn_;
}

std::uint64_t CudaContext::cudnn_workspace_epoch() const { return cudnn_ ? cudnn_->workspace_epoch() : 0; }

Cusparse& CudaContext::cusparse() {
    if (!cusparse_) {
        activate();  // cusparseCreate binds the handle to the current device
        cusparse_ = std::make_unique<Cusparse>(stream_);
    }
    return *cusparse_;
}

void CudaContext::release() noexcept {
    if (stream_) cudaStreamSynchronize(stream_);  // let queued work finish before its memory goes
    cudnn_.reset();  // its handle and workspace are bound to the stream: they go first
    cusparse_.reset();
    if (cublaslt_) cublasLtDestroy(cublaslt_);
    cublaslt_ = nullptr;
    if (cublas_) cublasDestroy(cublas_);
    cublas_ = nullptr;
    cublas_workspace_ = DeviceBuffer<unsigned char>();
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
}

void CudaContext::activate() const { SPARSEPROX_CUDA_CHECK(cudaSetDevice(device_)); }

void CudaContext::synchronize() const { SPARSEPROX_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

}  // namespace cuda
}  // namespace sparseprox
