// The operations a backend supplies to the shared network (core/network.h): memory, data
// staging, status polling and one virtual function per operation. The network walks the layers
// and runs every method's step once, for every backend, through this table; a backend never
// sees a layer kind or a method.
//
// Pointers: every pointer an operation takes is backend memory (host memory for the CPU,
// device memory for CUDA) from allocate(), from the staging calls or offsets into either; host
// values are passed by value or by const reference. The caller never dereferences backend
// memory: it moves data in and out with upload() and download().
//
// Ordering: operations run in the order they are called (a CUDA backend queues them on one
// stream and returns at once); upload() lets the caller reuse its source as soon as it returns,
// download() and the operations that return host values wait for everything queued before them.
//
// The stop flag: the update operations of a training step take `stop`, a pointer to
// StepState::stopped (may be null). When it is nonzero they write nothing, so the parameters,
// the method's state and the per-layer counts stay those of the last applied step however
// late the host notices (core/engine.h).
//
// Each operation is implemented once per backend, as kernels/<op>.cu(h) and src/cpu/<op>.cpp,
// and every one of them is compared with the CPU by the backend-parity harness
// (tests/test_parity.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/collective.h"
#include "core/csr.h"
#include "core/gates.h"
#include "core/layer_shapes.h"
#include "core/optimizer.h"
#include "core/records.h"
#include "core/sparsify.h"
#include "sparseprox/data.h"
#include "sparseprox/error.h"
#include "sparseprox/model.h"
#include "core/search_rules.h"
#include "sparseprox/search.h"

namespace sparseprox {

// A recorded step (Backend::graph_capture_end), owned by the network that recorded it.
struct StepGraph {
    virtual ~StepGraph() = default;
};

// Rows of a data set in backend memory: y for regression, labels for classification (the other
// is null).
struct StagedRows {
    const float* x = nullptr;              // (rows, n_features)
    const float* y = nullptr;              // (rows, n_outputs)
    const std::int32_t* labels = nullptr;  // (rows)
};

class Backend {
public:
    virtual ~Backend() = default;

    // "cpu", "cuda:0", ...
    virtual std::string name() const = 0;

    // ---- memory ----------------------------------------------------------------------------------
    virtual void* allocate(std::size_t bytes) = 0;  // throws sparseprox::Error naming the size
    virtual void deallocate(void* p) noexcept = 0;
    virtual void upload(void* dst, const void* src, std::size_t bytes) = 0;
    virtual void download(void* dst, const void* src, std::size_t bytes) = 0;  // waits
    virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;
    virtual void fill_zero(void* p, std::size_t bytes) = 0;
    virtual void synchronize() = 0;  // waits for all queued work; rethrows its errors

    // ---- data staging ------------------------------------------------------------------------------
    // The whole data set, kept until the next call (the training set of a run): the CPU points
    // into `data` itself, CUDA uploads it once (the same unchanged object again is not re-sent).
    virtual StagedRows stage_dataset(const Dataset& data) = 0;
    // Rows [first, first + n) of any data set, valid until the next stage_rows call.
    virtual StagedRows stage_rows(const Dataset& data, std::size_t first, std::size_t n) = 0;
    // An epoch's row order (indices into the staged data set), valid until the next call.
    virtual const std::uint32_t* stage_order(const std::vector<std::uint32_t>& order) = 0;

    // ---- status polling -----------------------------------------------------------------------------
    // True when the run is known to be stopped without waiting for queued work (the CPU reads the
    // flag; CUDA answers false and lets the frozen kernels skip the step).
    virtual bool known_stopped(const StepState* state) = 0;

    // A training step's operations start and end (Network::step brackets them). The CPU backend
    // times the steps here to choose its thread count (cpu/threads.h); queuing backends ignore it.
    virtual void begin_step() {}
    virtual void end_step() {}

    // Step graphs (a queuing backend's record and replay of one step's operations; Network::step
    // decides which steps). graph_capture_begin: true when the operations queued from now on are
    // being recorded instead of run (false: not supported or not enabled, nothing changed).
    // graph_capture_end: stops recording and returns the graph, or null when the recording failed
    // (an operation that cannot be recorded); either way nothing recorded has run. graph_launch
    // queues a recorded graph: the same operations, on the same buffers, as when recorded.
    // graph_scratch_epoch changes whenever backend-owned memory that queued operations use (sum
    // scratch, tile tables, convolution workspaces) is replaced, which outdates every graph.
    virtual bool graph_capture_begin() { return false; }
    virtual std::unique_ptr<StepGraph> graph_capture_end() { return nullptr; }
    virtual void graph_launch(const StepGraph& /*graph*/) {}
    virtual std::uint64_t graph_scratch_epoch() const { return 0; }

    // Called once by a network whose model has conv2d or pooling layers: throws, naming the
    // reason, when this backend cannot run them (CUDA without cuDNN), so the failure comes at
    // construction rather than in the middle of a run.
    virtual void require_image_ops() {}

    // ---- gather ---------------------------------------------------------------------------------------
    // dst[r][c] = src[rows[r]][c]: src (any, n_cols), dst (n_rows, n_cols).
    virtual void gather_rows(const float* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows,
                             float* dst) = 0;
    virtual void gather_labels(const std::int32_t* src, const std::uint32_t* rows, std::size_t n_rows,
                               std::int32_t* dst) = 0;

    // ---- dense ------------------------------------------------------------------------------------------
    // y = act(x W^T + b): x (batch, n_in), W (n_out, n_in), b (n_out), y (batch, n_out). The
    // activation (identity: none) gives the values activation_forward would give over y.
    virtual void dense_forward(const float* x, const float* W, const float* b, float* y, std::size_t batch,
                               std::size_t n_in, std::size_t n_out, Activation act) = 0;
    // dL_dW = dL_dy^T x, dL_db = column sums of dL_dy (rows in order), dL_dx = dL_dy W (skipped
    // when null), times act'(act_x) unless act is identity (act_y = act(act_x), both (batch,
    // n_in): the activation before this layer, activation_backward's values). All overwritten.
    virtual void dense_backward(const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db,
                                float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out, Activation act,
                                const float* act_x, const float* act_y) = 0;

    // A run of dense layers, the bottom layer first: the values of dense_forward over each link in
    // order. dense_backward_chain, the top layer first: the values of dense_backward over each
    // link in order. A backend that runs a chain in fewer passes than its layers overrides them
    // (the CPU: one parallel region a chain, cpu/dense_chain.h); the others run the links one by
    // one, as here (CUDA, whose step graph already leaves no host work between the launches).
    virtual void dense_forward_chain(const std::vector<DenseForwardLink>& links, std::size_t batch) {
        for (const DenseForwardLink& l : links) dense_forward(l.x, l.W, l.b, l.y, batch, l.n_in, l.n_out, l.act);
    }
    virtual void dense_backward_chain(const std::vector<DenseBackwardLink>& links, std::size_t batch) {
        for (const DenseBackwardLink& l : links)
            dense_backward(l.x, l.W, l.dL_dy, l.dL_dW, l.dL_db, l.dL_dx, batch, l.n_in, l.n_out, l.act, l.act_x,
                           l.act_y);
    }

    // ---- csr products (the csr inference format, core/csr_network.h) --------------------------------
    // W as this backend's sparse matrix (its arrays copied into backend memory), for products with
    // batches of up to max_batch rows (max_batch >= 1). Setup only: may wait for queued work.
    virtual std::unique_ptr<CsrMatrix> csr_matrix(const CsrHost& W, std::size_t max_batch) = 0;
    // y = x W^T + b, computed as y = b, then y += x W^T: x (batch, W.cols()), b (W.rows()),
    // y (batch, W.rows()); batch <= W.max_batch(), W from this backend's csr_matrix.
    virtual void csr_forward(const CsrMatrix& W, const float* x, const float* b, float* y, std::size_t batch) = 0;
    // Whether this backend multiplies convolutions by sparse kernels (csr_conv2d_forward); where it
    // does not, the csr engine runs conv layers through the dense conv2d_forward.
    virtual bool has_csr_conv2d() const { return false; }
    // y (batch, c_out, h_out, w_out) = W col_n + b for each sample n: W (c_out, c_in*kh*kw) from
    // csr_matrix, col_n the im2col matrix (c_in*kh*kw, h_out*w_out) of sample n of x (batch, c_in,
    // h_in, w_in). Throws where has_csr_conv2d() is false.
    virtual void csr_conv2d_forward(const ConvShape& s, const CsrMatrix& W, const float* x, const float* b,
                                    float* y);

    // ---- conv2d, pool2d (NCHW; core/layer_shapes.h) ------------------------------------------------
    virtual void conv2d_forward(const ConvShape& s, const float* x, const float* W, const float* b, float* y) = 0;
    // dL_dW, dL_db summed over the batch; dL_dx skipped when null. All overwritten.
    virtual void conv2d_backward(const ConvShape& s, const float* x, const float* W, const float* dL_dy,
                                 float* dL_dW, float* dL_db, float* dL_dx) = 0;
    virtual void maxpool2d_forward(const PoolShape& s, const float* x, float* y) = 0;
    virtual void maxpool2d_backward(const PoolShape& s, const float* x, const float* y, const float* dL_dy,
                                    float* dL_dx) = 0;
    // A conv2d and the max-pool over its output as one operation, for a conv2d layer followed by
    // a max-pool (directly, or through a ReLU run after the pool; cpu/conv_ops.h): pooled as
    // conv2d_forward then maxpool2d_forward would give it, and arg (pooled's size) the winner of
    // each window, which the backward reads with the pooled output's gradient to give the
    // gradients of maxpool2d_backward then conv2d_backward (dL_dx skipped when null; all
    // overwritten). The convolution's full output and its gradient are never in memory. Where
    // has_conv2d_maxpool() is false these throw and the network calls the separate operations
    // (the CUDA backend, where cuDNN runs each).
    virtual bool has_conv2d_maxpool() const { return false; }
    virtual void conv2d_maxpool_forward(const ConvShape& s, const PoolShape& pool, const float* x, const float* W,
                                        const float* b, float* pooled, std::int32_t* arg);
    virtual void conv2d_maxpool_backward(const ConvShape& s, const PoolShape& pool, const float* x, const float* W,
                                         const std::int32_t* arg, const float* dL_dpooled, float* dL_dW,
                                         float* dL_db, float* dL_dx);
    virtual void avgpool2d_forward(const PoolShape& s, const float* x, float* y) = 0;
    virtual void avgpool2d_backward(const PoolShape& s, const float* x, const float* y, const float* dL_dy,
                                    float* dL_dx) = 0;

    // ---- activation ----------------------------------------------------------------------------------
    virtual void activation_forward(Activation a, const float* x, float* y, std::size_t n) = 0;
    // dL_dx = dL_dy * f'(x) given y = f(x); dL_dx may alias dL_dy.
    virtual void activation_backward(Activation a, const float* x, const float* y, const float* dL_dy,
                                     float* dL_dx, std::size_t n) = 0;

    // ---- loss ------------------------------------------------------------------------------------------
    // Per sample: sample_loss[r] = ||pred_r - target_r||^2 (double); dL_dpred = 2 (pred - target)
    // grad_scale when not null.
    virtual void mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out,
                          float grad_scale, float* dL_dpred, double* sample_loss) = 0;
    // Per sample: -log softmax(logits_r)[label_r]; dL_dlogits = (softmax - onehot) grad_scale when
    // not null; sample_correct[r] = argmax == label (first max wins) when not null.
    virtual void cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch,
                                    std::size_t n_classes, float grad_scale, float* dL_dlogits, double* sample_loss,
                                    std::uint32_t* sample_correct) = 0;
    // *out = sum of x[0, n). The CPU adds in index order; CUDA's tree order is deterministic.
    virtual void sum(const double* x, std::size_t n, double* out) = 0;
    virtual void sum(const std::uint32_t* x, std::size_t n, std::uint64_t* out) = 0;
    // Unless state->stopped: state->loss_sum += *batch_loss / batch, ++state->loss_count.
    virtual void accumulate_step_loss(const double* batch_loss, std::size_t batch, StepState* state) = 0;

    // ---- axpy --------------------------------------------------------------------------------------------
    // y += a x over n floats (BLAS saxpy: the weight decay and the full-data gradient's chunks).
    virtual void axpy(float a, const float* x, float* y, std::size_t n) = 0;

    // ---- data-parallel training ------------------------------------------------------------------------
    // data[i] = sum over the ranks of `group` of data[i], n floats of backend memory, after the
    // work queued before it (the gradient slab of a data-parallel step: core/collective.h). The
    // CPU sums host memory through the group (MPI); CUDA sums device memory with NCCL on its
    // stream, one communicator per group, its id broadcast through the group.
    virtual void allreduce_sum(float* data, std::size_t n, Collective& group) = 0;

    // ---- slab operations: parameter slabs laid out by `layout` ------------------------------------------
    // hyper = [lr, lambda_0, ..., lambda_{L-1}] in backend memory; layer_nnz (L) receives the
    // nonzero weights of every layer after the operation.
    virtual void count_nonzero(const float* params, const ParamLayout& layout, std::uint64_t* layer_nnz) = 0;
    // The fused l1 step: weights S_{lr lambda_l}(w - lr g), biases w - lr g, counted.
    virtual void prox_step(float* params, const float* grads, const ParamLayout& layout, const float* hyper,
                           const std::int32_t* stop, std::uint64_t* layer_nnz) = 0;
    // The same step in separate passes (an SGD pass, a threshold pass, a count per layer): the
    // benchmark's reference for what the fusion saves.
    virtual void prox_step_unfused(float* params, const float* grads, const ParamLayout& layout,
                                   const float* hyper, std::uint64_t* layer_nnz) = 0;
    // The l1 step with another optimizer (core/optimizer.h): weights S_{eta lambda_l}(y), biases y,
    // where y and eta are opt::descend's for each parameter with its state (slab layout), counted.
    virtual void prox_optimizer_step(float* params, const float* grads, const opt::State& state,
                                     const ParamLayout& layout, const float* hyper, const opt::Step& step,
                                     const std::int32_t* stop, std::uint64_t* layer_nnz) = 0;
    // The lazy l1 step (L1Form::lazy) with any optimizer kind (sgd included): every weight's
    // accumulated copy z (slab layout) takes opt::descend's step y, z = y, and the weight becomes
    // S_{lr lambda_l}(y); biases y; counted (opt::lazy_prox_descend_k).
    virtual void lazy_prox_step(float* params, float* z, const float* grads, const opt::State& state,
                                const ParamLayout& layout, const float* hyper, const opt::Step& step,
                                const std::int32_t* stop, std::uint64_t* layer_nnz) = 0;
    // Unless state->stopped: counts the step and sets state->stopped when band_holds (core/band.h)
    // for layer_nnz. targets: config->n_targets entries.
    virtual void stop_rule(StepState* state, const StopConfig* config, const std::uint64_t* targets,
                           const std::uint64_t* layer_nnz) = 0;
    // candidate_set (search.h) over |g| of the given layers' weight gradients, taken together.
    // Only the count and the lower median come back. Waits.
    virtual CandidateSet gradient_candidates(const float* grads, const ParamLayout& layout,
                                             const std::vector<std::size_t>& layers, float low, float up) = 0;

    // ---- l0 gates (core/sparsify.h) -------------------------------------------------------------------
    // eff = theta * sample_gate(gate_noise(seed, step, gate), log_alpha[gate]) per weight; biases copied.
    virtual void l0_effective(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
                              const ParamLayout& layout, const gates::HardConcrete& hc, std::uint64_t seed,
                              std::uint64_t step, float* eff, const std::int32_t* stop) = 0;
    // theta_w by the optimizer on g z, biases on g (opt::descend; theta_state in the slab layout),
    // and an Adam step on each log alpha.
    virtual void l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
                           const sparsify::GateLayout& gates, const ParamLayout& layout,
                           const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step,
                           const float* hyper, const sparsify::AdamStep& adam, const opt::State& theta_state,
                           const opt::Step& opt_step, const std::int32_t* stop) = 0;
    // out = theta * test_gate(log_alpha) (biases copied), counted.
    virtual void l0_export(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
                           const ParamLayout& layout, const gates::HardConcrete& hc, float* out,
                           const std::int32_t* stop, std::uint64_t* layer_nnz) = 0;

    // ---- spred ---------------------------------------------------------------------------------------------
    // u, v from w by the balanced split (biases to u).
    virtual void spred_split(const float* w, const ParamLayout& layout, float* u, float* v) = 0;
    virtual void spred_effective(const float* u, const float* v, const ParamLayout& layout, float* eff,
                                 const std::int32_t* stop) = 0;
    // u and v by the optimizer on their gradients g v + lambda u and g u + lambda v (biases, in u,
    // on g); u_state and v_state in the slab layout.
    virtual void spred_update(float* u, float* v, const float* grads, const ParamLayout& layout, const float* hyper,
                              const opt::State& u_state, const opt::State& v_state, const opt::Step& opt_step,
                              const std::int32_t* stop) = 0;
    virtual void spred_export(const float* u, const float* v, const ParamLayout& layout, float threshold, float* out,
                              const std::int32_t* stop, std::uint64_t* layer_nnz) = 0;

    // ---- gmp -----------------------------------------------------------------------------------------------
    // w = mask ? w - lr g : 0 on the weights, plain SGD on the biases, counted.
    virtual void masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const ParamLayout& layout,
                            const float* hyper, const std::int32_t* stop, std::uint64_t* layer_nnz) = 0;
    // The same with another optimizer (core/optimizer.h): kept weights and biases y, pruned weights
    // 0 with their state cleared, counted.
    virtual void masked_optimizer_step(float* w, const float* grads, const std::uint8_t* mask,
                                       const opt::State& state, const ParamLayout& layout, const float* hyper,
                                       const opt::Step& step, const std::int32_t* stop,
                                       std::uint64_t* layer_nnz) = 0;
    // Keeps the keep[k] largest |w| of each scope (all layers together when keep has one entry,
    // else layer by layer; ties to the lower slab index), zeroes the rest in w and mask, counted.
    virtual void gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout,
                           const std::vector<std::size_t>& keep, const std::int32_t* stop,
                           std::uint64_t* layer_nnz) = 0;
};

inline void Backend::csr_conv2d_forward(const ConvShape&, const CsrMatrix&, const float*, const float*, float*) {
    throw Error(name() + ": no sparse convolution on this backend (has_csr_conv2d() is false)");
}
inline void Backend::conv2d_maxpool_forward(const ConvShape&, const PoolShape&, const float*, const float*,
                                            const float*, float*, std::int32_t*) {
    throw Error(name() + ": no fused convolution and max-pool on this backend (has_conv2d_maxpool() is false)");
}
inline void Backend::conv2d_maxpool_backward(const ConvShape&, const PoolShape&, const float*, const float*,
                                             const std::int32_t*, const float*, float*, float*, float*) {
    throw Error(name() + ": no fused convolution and max-pool on this backend (has_conv2d_maxpool() is false)");
}

// The CPU backend (src/cpu/cpu_backend.cpp).
std::unique_ptr<Backend> make_cpu_backend();
// The CUDA backend on device `index` (src/cuda/cuda_backend.cpp); throws sparseprox::Error naming
// the reason when CUDA is not compiled in or the device is not usable.
std::unique_ptr<Backend> make_cuda_backend(int index);

// n elements of T in one backend's memory (move-only; the backend must outlive it).
template <class T>
class Buffer {
public:
    Buffer() = default;
    Buffer(Backend& backend, std::size_t n) { allocate(backend, n); }
    ~Buffer() { release(); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept
        : backend_(std::exchange(o.backend_, nullptr)), data_(std::exchange(o.data_, nullptr)),
          size_(std::exchange(o.size_, 0)) {}
    Buffer& operator=(Buffer&& o) noexcept {
        if (this != &o) {
            release();
            backend_ = std::exchange(o.backend_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }

    // Drops the old contents; n == 0 frees.
    void allocate(Backend& backend, std::size_t n) {
        release();
        backend_ = &backend;
        if (n == 0) return;
        data_ = static_cast<T*>(backend.allocate(n * sizeof(T)));
        size_ = n;
    }
    // The whole buffer zeroed (queued).
    void zero() {
        if (size_) backend_->fill_zero(data_, size_ * sizeof(T));
    }
    void upload(const T* src, std::size_t n, std::size_t offset = 0) {
        if (n) backend_->upload(data_ + offset, src, n * sizeof(T));
    }
    void download(T* dst, std::size_t n, std::size_t offset = 0) const {
        if (n) backend_->download(dst, data_ + offset, n * sizeof(T));
    }
    std::vector<T> to_host() const {
        std::vector<T> v(size_);
        download(v.data(), size_);
        return v;
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }

private:
    void release() noexcept {
        if (data_ && backend_) backend_->deallocate(data_);
        data_ = nullptr;
        size_ = 0;
    }

    Backend* backend_ = nullptr;
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace sparseprox
