// The cuDNN twins of cpu/conv_ops.h (the policy is described in cudnn_ops.h; the choice among
// cuDNN's candidates is in cudnn_choice.h). This is the only library translation unit that
// includes cudnn.h. Built without cuDNN, it compiles to functions that
// throw, so that the library links and the API stays the same.
#include "cuda/cudnn_ops.h"

#include <array>
#include <climits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda/common.h"
#include "sparseprox/error.h"

#if defined(SPARSEPROX_WITH_CUDNN)
#include <cudnn.h>

#include "cuda/cudnn_choice.h"

// cudnnGetLastErrorString and the v9 library split: CMake asks for cuDNN 9 (FindCUDNN.cmake);
// this catches a build that bypassed the check.
static_assert(CUDNN_MAJOR >= 9, "SparseProx needs cuDNN 9 or newer");
#endif

namespace sparseprox {
namespace cuda {

#if defined(SPARSEPROX_WITH_CUDNN)

// The cudnnStatus_t overload of the one check macro (common.h): SPARSEPROX_CUDA_CHECK covers
// cuDNN calls in this file. cudnnGetLastErrorString adds cuDNN's own explanation (which
// argument was rejected) to the status name.
void check_status(cudnnStatus_t status, const char* call, const char* file, int line) {
    if (status == CUDNN_STATUS_SUCCESS) return;
    char detail[512] = {};
    cudnnGetLastErrorString(detail, sizeof detail);
    throw_status(call, cudnnGetErrorString(status), detail[0] != '\0' ? detail : "no further detail from cuDNN",
                 file, line);
}

namespace {

using cudnn_choice::choose;

// A cuDNN object destroyed with its owner (neither copyable nor movable). It is created at the call
// site (SPARSEPROX_CUDA_CHECK(cudnnCreateXxx(d.out()))) so that a failure names the call.
template <class Handle, cudnnStatus_t (*Destroy)(Handle)>
class Owned {
public:
    Owned() = default;
    ~Owned() {
        if (handle_) Destroy(handle_);  // never throws; a failure here has nowhere to go
    }
    Owned(const Owned&) = delete;
    Owned& operator=(const Owned&) = delete;

    Handle* out() { return &handle_; }
    Handle get() const { return handle_; }

private:
    Handle handle_ = nullptr;
};

using HandleOwner = Owned<cudnnHandle_t, cudnnDestroy>;
using TensorDesc = Owned<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor>;
using FilterDesc = Owned<cudnnFilterDescriptor_t, cudnnDestroyFilterDescriptor>;
using ConvDesc = Owned<cudnnConvolutionDescriptor_t, cudnnDestroyConvolutionDescriptor>;
using PoolDesc = Owned<cudnnPoolingDescriptor_t, cudnnDestroyPoolingDescriptor>;

// Every field of the shape: plans differ when any of them does (the batch included, so a last
// partial batch gets a plan of its own).
using ConvKey = std::array<std::size_t, 11>;
using PoolKey = std::array<std::size_t, 11>;  // the ten shape fields and the pooling mode

ConvKey conv_key(const ConvShape& s) {
    return {s.batch, s.c_in, s.h_in, s.w_in, s.c_out, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_h, s.pad_w};
}

PoolKey pool_key(const PoolShape& s, cudnnPoolingMode_t mode) {
    return {s.batch,    s.channels, s.h_in,  s.w_in,  s.kh, s.kw, s.stride_h,
            s.stride_w, s.pad_h,    s.pad_w, static_cast<std::size_t>(mode)};
}

std::string dims(std::size_t h, std::size_t w) { return std::to_string(h) + "x" + std::to_string(w); }

std::string describe(const ConvShape& s) {
    return "convolution (batch " + std::to_string(s.batch) + ", c_in " + std::to_string(s.c_in) + ", input " +
           dims(s.h_in, s.w_in) + ", c_out " + std::to_string(s.c_out) + ", kernel " + dims(s.kh, s.kw) +
           ", stride " + dims(s.stride_h, s.stride_w) + ", pad " + dims(s.pad_h, s.pad_w) + ")";
}

std::string describe(const PoolShape& s) {
    return "pooling (batch " + std::to_string(s.batch) + ", channels " + std::to_string(s.channels) + ", input " +
           dims(s.h_in, s.w_in) + ", window " + dims(s.kh, s.kw) + ", stride " + dims(s.stride_h, s.stride_w) +
           ", pad " + dims(s.pad_h, s.pad_w) + ")";
}

int dim(std::size_t n, const std::string& what) {
    if (n > static_cast<std::size_t>(INT_MAX)) throw Error("cuDNN dimension over INT_MAX in " + what);
    return static_cast<int>(n);
}

// Sizes cuDNN accepts and for which the floor-mode output size is defined (h_out() would wrap
// around for a kernel larger than the padded input).
void check_shape(std::size_t batch, std::size_t channels, std::size_t h_in, std::size_t w_in, std::size_t kh,
                 std::size_t kw, std::size_t stride_h, std::size_t stride_w, std::size_t pad_h, std::size_t pad_w,
                 const std::string& what) {
    if (batch == 0 || channels == 0 || h_in == 0 || w_in == 0 || kh == 0 || kw == 0 || stride_h == 0 ||
        stride_w == 0)
        throw Error("cuDNN " + what + ": every size and stride must be positive");
    if (kh > h_in + 2 * pad_h || kw > w_in + 2 * pad_w)
        throw Error("cuDNN " + what + ": the window is larger than the padded input");
    for (std::size_t n : {batch, channels, h_in, w_in, kh, kw, stride_h, stride_w, pad_h, pad_w}) dim(n, what);
}

void set_nchw(const TensorDesc& desc, std::size_t n, std::size_t c, std::size_t h, std::size_t w,
              const std::string& what) {
    SPARSEPROX_CUDA_CHECK(cudnnSetTensor4dDescriptor(desc.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, dim(n, what),
                                                     dim(c, what), dim(h, what), dim(w, what)));
}

struct ConvPlan {
    Cudnn::ConvPlanInfo info;
    TensorDesc x;     // (batch, c_in, h_in, w_in); also dL_dx
    TensorDesc y;     // (batch, c_out, h_out, w_out); also dL_dy
    TensorDesc bias;  // (1, c_out, 1, 1); also dL_db
    FilterDesc w;     // (c_out, c_in, kh, kw); also dL_dW
    ConvDesc conv;
    cudnnConvolutionFwdAlgo_t forward_algo{};
    cudnnConvolutionBwdDataAlgo_t backward_data_algo{};
    cudnnConvolutionBwdFilterAlgo_t backward_filter_algo{};
};

struct PoolPlan {
    TensorDesc x;  // (batch, channels, h_in, w_in); also dL_dx
    TensorDesc y;  // (batch, channels, h_out, w_out); also dL_dy
    PoolDesc pool;
};

}  // namespace

struct Cudnn::Impl {
    // Declaration order is destruction order reversed: plans, then the workspace, then the handle.
    HandleOwner handle;
    cudaStream_t stream = nullptr;
    DeviceBuffer<unsigned char> workspace;
    std::uint64_t workspace_epoch = 0;  // replacements of workspace
    std::map<ConvKey, std::unique_ptr<ConvPlan>> conv_plans;
    std::map<PoolKey, std::unique_ptr<PoolPlan>> pool_plans;

    ConvPlan& conv_plan(const ConvShape& s);
    PoolPlan& pool_plan(const PoolShape& s, cudnnPoolingMode_t mode);
    void reserve_workspace(std::size_t bytes);
    // The workspace for one call (null when the algorithm needs none).
    void* workspace_for(std::size_t bytes) { return bytes == 0 ? nullptr : workspace.data(); }
};

// Growing drops the old buffer, which work queued on the stream may still be using: wait for it
// first. Happens only when a plan needs more than any before it.
void Cudnn::Impl::reserve_workspace(std::size_t bytes) {
    if (bytes <= workspace.bytes()) return;
    SPARSEPROX_CUDA_CHECK(cudaStreamSynchronize(stream));
    workspace.allocate(bytes);
    ++workspace_epoch;
}

ConvPlan& Cudnn::Impl::conv_plan(const ConvShape& s) {
    const ConvKey key = conv_key(s);
    if (const auto it = conv_plans.find(key); it != conv_plans.end()) return *it->second;

    const std::string what = describe(s);
    if (s.c_out == 0) throw Error("cuDNN " + what + ": every size and stride must be positive");
    check_shape(s.batch, s.c_in, s.h_in, s.w_in, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_h, s.pad_w, what);
    dim(s.c_out, what);

    auto p = std::make_unique<ConvPlan>();
    SPARSEPROX_CUDA_CHECK(cudnnCreateTensorDescriptor(p->x.out()));
    SPARSEPROX_CUDA_CHECK(cudnnCreateTensorDescriptor(p->y.out()));
    SPARSEPROX_CUDA_CHECK(cudnnCreateTensorDescriptor(p->bias.out()));
    SPARSEPROX_CUDA_CHECK(cudnnCreateFilterDescriptor(p->w.out()));
    SPARSEPROX_CUDA_CHECK(cudnnCreateConvolutionDescriptor(p->conv.out()));

    set_nchw(p->x, s.batch, s.c_in, s.h_in, s.w_in, what);
    set_nchw(p->y, s.batch, s.c_out, s.h_out(), s.w_out(), what);
    set_nchw(p->bias, 1, s.c_out, 1, 1, what);
    SPARSEPROX_CUDA_CHECK(cudnnSetFilter4dDescriptor(p->w.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, dim(s.c_out, what),
                                                     dim(s.c_in, what), dim(s.kh, what), dim(s.kw, what)));
    // Cross-correlation (no kernel flip) as the CPU twin and PyTorch; FP32 accumulation.
    SPARSEPROX_CUDA_CHECK(cudnnSetConvolution2dDescriptor(p->conv.get(), dim(s.pad_h, what), dim(s.pad_w, what),
                                                          dim(s.stride_h, what), dim(s.stride_w, what), 1, 1,
                                                          CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    // FMA math only: CUDNN_DEFAULT_MATH would let cuDNN use TF32 tensor cores for float data on
    // Ampere and newer (and NVIDIA_TF32_OVERRIDE could force it), 2^-11 relative error per
    // product instead of float32's 2^-24.
    SPARSEPROX_CUDA_CHECK(cudnnSetConvolutionMathType(p->conv.get(), CUDNN_FMA_MATH));

    // cuDNN's own output size must be the floor-mode size of the CPU contract.
    int n = 0, c = 0, h = 0, w = 0;
    SPARSEPROX_CUDA_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv.get(), p->x.get(), p->w.get(), &n, &c, &h, &w));
    if (static_cast<std::size_t>(h) != s.h_out() || static_cast<std::size_t>(w) != s.w_out() ||
        static_cast<std::size_t>(c) != s.c_out || static_cast<std::size_t>(n) != s.batch)
        throw Error("cuDNN computes a " + dims(static_cast<std::size_t>(h), static_cast<std::size_t>(w)) +
                    " output for " + what + ", expected " + dims(s.h_out(), s.w_out()));

    const cudnnHandle_t cudnn = handle.get();
    bool deterministic = true;
    int n_max = 0, n_returned = 0;

    SPARSEPROX_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(cudnn, &n_max));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd(static_cast<std::size_t>(n_max > 0 ? n_max : 1));
    SPARSEPROX_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cudnn, p->x.get(), p->w.get(), p->conv.get(),
                                                                 p->y.get(), static_cast<int>(fwd.size()),
                                                                 &n_returned, fwd.data()));
    const auto& f = choose(fwd, n_returned, "forward", what, &deterministic);
    p->forward_algo = f.algo;
    SPARSEPROX_CUDA_CHECK(cudnnGetConvolutionForwardWorkspaceSize(cudnn, p->x.get(), p->w.get(), p->conv.get(),
                                                                  p->y.get(), f.algo,
                                                                  &p->info.forward_workspace_bytes));

    SPARSEPROX_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnn, &n_max));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> bwd_data(static_cast<std::size_t>(n_max > 0 ? n_max : 1));
    SPARSEPROX_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnn, p->w.get(), p->y.get(), p->conv.get(),
                                                                      p->x.get(), static_cast<int>(bwd_data.size()),
                                                                      &n_returned, bwd_data.data()));
    const auto& d = choose(bwd_data, n_returned, "backward-data", what, &deterministic);
    p->backward_data_algo = d.algo;
    SPARSEPROX_CUDA_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(cudnn, p->w.get(), p->y.get(), p->conv.get(),
                                                                       p->x.get(), d.algo,
                                                                       &p->info.backward_data_workspace_bytes));

    SPARSEPROX_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnn, &n_max));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> bwd_filter(static_cast<std::size_t>(n_max > 0 ? n_max : 1));
    SPARSEPROX_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        cudnn, p->x.get(), p->y.get(), p->conv.get(), p->w.get(), static_cast<int>(bwd_filter.size()), &n_returned,
        bwd_filter.data()));
    const auto& g = choose(bwd_filter, n_returned, "backward-filter", what, &deterministic);
    p->backward_filter_algo = g.algo;
    SPARSEPROX_CUDA_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnn, p->x.get(), p->y.get(), p->conv.get(),
                                                                         p->w.get(), g.algo,
                                                                         &p->info.backward_filter_workspace_bytes));

    // cuDNN runs an algorithm in the math type of the descriptor it is given, which must be the
    // chosen candidate's: set it (CUDNN_FMA_MATH, the only one choose() accepts) before any use.
    SPARSEPROX_CUDA_CHECK(cudnnSetConvolutionMathType(
        p->conv.get(), cudnn_choice::plan_math_type(f.mathType, d.mathType, g.mathType, what)));

    p->info.forward_algo = static_cast<int>(p->forward_algo);
    p->info.backward_data_algo = static_cast<int>(p->backward_data_algo);
    p->info.backward_filter_algo = static_cast<int>(p->backward_filter_algo);
    p->info.deterministic = deterministic;

    // Grown before the plan is stored, so a failed allocation leaves no plan behind.
    std::size_t need = p->info.forward_workspace_bytes;
    if (p->info.backward_data_workspace_bytes > need) need = p->info.backward_data_workspace_bytes;
    if (p->info.backward_filter_workspace_bytes > need) need = p->info.backward_filter_workspace_bytes;
    reserve_workspace(need);
    return *conv_plans.emplace(key, std::move(p)).first->second;
}

PoolPlan& Cudnn::Impl::pool_plan(const PoolShape& s, cudnnPoolingMode_t mode) {
    const PoolKey key = pool_key(s, mode);
    if (const auto it = pool_plans.find(key); it != pool_plans.end()) return *it->second;

    const std::string what = describe(s);
    check_shape(s.batch, s.channels, s.h_in, s.w_in, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_h, s.pad_w, what);

    auto p = std::make_unique<PoolPlan>();
    SPARSEPROX_CUDA_CHECK(cudnnCreateTensorDescriptor(p->x.out()));
    SPARSEPROX_CUDA_CHECK(cudnnCreateTensorDescriptor(p->y.out()));
    SPARSEPROX_CUDA_CHECK(cudnnCreatePoolingDescriptor(p->pool.out()));
    set_nchw(p->x, s.batch, s.channels, s.h_in, s.w_in, what);
    set_nchw(p->y, s.batch, s.channels, s.h_out(), s.w_out(), what);
    SPARSEPROX_CUDA_CHECK(cudnnSetPooling2dDescriptor(p->pool.get(), mode, CUDNN_NOT_PROPAGATE_NAN, dim(s.kh, what),
                                                      dim(s.kw, what), dim(s.pad_h, what), dim(s.pad_w, what),
                                                      dim(s.stride_h, what), dim(s.stride_w, what)));
    int n = 0, c = 0, h = 0, w = 0;
    SPARSEPROX_CUDA_CHECK(cudnnGetPooling2dForwardOutputDim(p->pool.get(), p->x.get(), &n, &c, &h, &w));
    if (static_cast<std::size_t>(h) != s.h_out() || static_cast<std::size_t>(w) != s.w_out())
        throw Error("cuDNN computes a " + dims(static_cast<std::size_t>(h), static_cast<std::size_t>(w)) +
                    " output for " + what + ", expected " + dims(s.h_out(), s.w_out()));
    return *pool_plans.emplace(key, std::move(p)).first->second;
}

Cudnn::Cudnn(cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
    impl_->stream = stream;
    SPARSEPROX_CUDA_CHECK(cudnnCreate(impl_->handle.out()));
    SPARSEPROX_CUDA_CHECK(cudnnSetStream(impl_->handle.get(), stream));
}

Cudnn::~Cudnn() = default;

const Cudnn::ConvPlanInfo& Cudnn::conv_plan(const ConvShape& s) { return impl_->conv_plan(s).info; }

std::size_t Cudnn::cached_plans() const { return impl_->conv_plans.size() + impl_->pool_plans.size(); }

std::size_t Cudnn::workspace_bytes() const { return impl_->workspace.bytes(); }

std::uint64_t Cudnn::workspace_epoch() const { return impl_->workspace_epoch; }

// ---- convolution ---------------------------------------------------------------------------------

void conv2d_forward(CudaContext& ctx, const ConvShape& s, const float* x, const float* W, const float* b,
                    float* y) {
    if (s.batch == 0) return;
    Cudnn::Impl& cd = ctx.cudnn().impl();
    const ConvPlan& p = cd.conv_plan(s);
    const float one = 1.0f, zero = 0.0f;
    SPARSEPROX_CUDA_CHECK(cudnnConvolutionForward(cd.handle.get(), &one, p.x.get(), x, p.w.get(), W, p.conv.get(),
                                                  p.forward_algo, cd.workspace_for(p.info.forward_workspace_bytes),
                                                  p.info.forward_workspace_bytes, &zero, p.y.get(), y));
    // y += b, broadcast over batch and pixels.
    SPARSEPROX_CUDA_CHECK(cudnnAddTensor(cd.handle.get(), &one, p.bias.get(), b, &one, p.y.get(), y));
}

void conv2d_backward(CudaContext& ctx, const ConvShape& s, const float* x, const float* W, const float* dL_dy,
                     float* dL_dW, float* dL_db, float* dL_dx, bool accumulate) {
    if (s.batch == 0) {  // an empty batch contributes nothing; the CPU twin then writes zeros
        if (!accumulate) {
            SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(dL_dW, 0, s.n_weights() * sizeof(float), ctx.stream()));
            SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(dL_db, 0, s.c_out * sizeof(float), ctx.stream()));
        }
        return;
    }
    Cudnn::Impl& cd = ctx.cudnn().impl();
    const ConvPlan& p = cd.conv_plan(s);
    const cudnnHandle_t cudnn = cd.handle.get();
    // beta = 0 overwrites without reading the old contents (NaN-safe); beta = 1 adds to them.
    const float one = 1.0f, zero = 0.0f, beta = accumulate ? 1.0f : 0.0f;
    SPARSEPROX_CUDA_CHECK(cudnnConvolutionBackwardBias(cudnn, &one, p.y.get(), dL_dy, &beta, p.bias.get(), dL_db));
    SPARSEPROX_CUDA_CHECK(cudnnConvolutionBackwardFilter(
        cudnn, &one, p.x.get(), x, p.y.get(), dL_dy, p.conv.get(), p.backward_filter_algo,
        cd.workspace_for(p.info.backward_filter_workspace_bytes), p.info.backward_filter_workspace_bytes, &beta,
        p.w.get(), dL_dW));
    if (dL_dx)
        SPARSEPROX_CUDA_CHECK(cudnnConvolutionBackwardData(
            cudnn, &one, p.w.get(), W, p.y.get(), dL_dy, p.conv.get(), p.backward_data_algo,
            cd.workspace_for(p.info.backward_data_workspace_bytes), p.info.backward_data_workspace_bytes, &zero,
            p.x.get(), dL_dx));
}

// ---- pooling ---------------------------------------------------------------------------------------

namespace {

void pool_forward(CudaContext& ctx, const PoolShape& s, cudnnPoolingMode_t mode, const float* x, float* y) {
    if (s.batch == 0) return;
    Cudnn::Impl& cd = ctx.cudnn().impl();
    const PoolPlan& p = cd.pool_plan(s, mode);
    const float one = 1.0f, zero = 0.0f;
    SPARSEPROX_CUDA_CHECK(cudnnPoolingForward(cd.handle.get(), p.pool.get(), &one, p.x.get(), x, &zero, p.y.get(), y));
}

void pool_backward(CudaContext& ctx, const PoolShape& s, cudnnPoolingMode_t mode, const float* x,
                   const float* y, const float* dL_dy, float* dL_dx) {
    if (s.batch == 0) return;
    Cudnn::Impl& cd = ctx.cudnn().impl();
    const PoolPlan& p = cd.pool_plan(s, mode);
    const float one = 1.0f, zero = 0.0f;
    SPARSEPROX_CUDA_CHECK(cudnnPoolingBackward(cd.handle.get(), p.pool.get(), &one, p.y.get(), y, p.y.get(), dL_dy,
                                               p.x.get(), x, &zero, p.x.get(), dL_dx));
}

}  // namespace

void maxpool2d_forward(CudaContext& ctx, const PoolShape& s, const float* x, float* y) {
    pool_forward(ctx, s, CUDNN_POOLING_MAX_DETERMINISTIC, x, y);
}

void maxpool2d_backward(CudaContext& ctx, const PoolShape& s, const float* x, const float* y,
                        const float* dL_dy, float* dL_dx) {
    pool_backward(ctx, s, CUDNN_POOLING_MAX_DETERMINISTIC, x, y, dL_dy, dL_dx);
}

void avgpool2d_forward(CudaContext& ctx, const PoolShape& s, const float* x, float* y) {
    pool_forward(ctx, s, CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING, x, y);
}

void avgpool2d_backward(CudaContext& ctx, const PoolShape& s, const float* x, const float* y,
                        const float* dL_dy, float* dL_dx) {
    pool_backward(ctx, s, CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING, x, y, dL_dy, dL_dx);
}

void avgpool2d_backward(CudaContext& ctx, const PoolShape& s, const float* dL_dy, float* dL_dx) {
    // Stand-ins of the right shapes for x and y (the former behaviour), until callers pass them.
    pool_backward(ctx, s, CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING, dL_dx, dL_dy, dL_dy, dL_dx);
}

#else  // !SPARSEPROX_WITH_CUDNN

namespace {
[[noreturn]] void no_cudnn(const char* what) {
    throw Error(std::string(what) + ": SparseProx was built without cuDNN (CMake did not find it; set "
                                    "CUDNN_INCLUDE_DIR and CUDNN_LIBRARY and rebuild)");
}
}  // namespace

struct Cudnn::Impl {};

Cudnn::Cudnn(cudaStream_t) { no_cudnn("cuda::Cudnn"); }
Cudnn::~Cudnn() = default;
const Cudnn::ConvPlanInfo& Cudnn::conv_plan(const ConvShape&) { no_cudnn("cuda::Cudnn::conv_plan"); }
std::size_t Cudnn::cached_plans() const { return 0; }
std::size_t Cudnn::workspace_bytes() const { return 0; }
std::uint64_t Cudnn::workspace_epoch() const { return 0; }

void conv2d_forward(CudaContext&, const ConvShape&, const float*, const float*, const float*, float*) {
    no_cudnn("cuda::conv2d_forward");
}
void conv2d_backward(CudaContext&, const ConvShape&, const float*, const float*, const float*, float*, float*,
                     float*, bool) {
    no_cudnn("cuda::conv2d_backward");
}
void maxpool2d_forward(CudaContext&, const PoolShape&, const float*, float*) {
    no_cudnn("cuda::maxpool2d_forward");
}
void maxpool2d_backward(CudaContext&, const PoolShape&, const float*, const float*, const float*, float*) {
    no_cudnn("cuda::maxpool2d_backward");
}
void avgpool2d_forward(CudaContext&, const PoolShape&, const float*, float*) {
    no_cudnn("cuda::avgpool2d_forward");
}
void avgpool2d_backward(CudaContext&, const PoolShape&, const float*, const float*, const float*, float*) {
    no_cudnn("cuda::avgpool2d_backward");
}
void avgpool2d_backward(CudaContext&, const PoolShape&, const float*, float*) {
    no_cudnn("cuda::avgpool2d_backward");
}

#endif  // SPARSEPROX_WITH_CUDNN

}  // namespace cuda
}  // namespace sparseprox
