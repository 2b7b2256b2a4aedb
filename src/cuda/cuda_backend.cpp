// The CUDA backend: device memory, one stream (cuda/context.h) on which every operation of
// core/backend.h is queued (kernels/<op>.cu, cuBLAS, cuDNN through cuda/cudnn_ops.h and cuSPARSE
// through cuda/cusparse_ops.h), the training set uploaded once, and the host-side plans the
// kernels need: the tile table of each parameter layout, the device copy of the L0 gate layout
// and the GMP sort scratch.
//
// Only the operations that return host values wait for the stream (download, the candidate
// median, the GMP sort); a training step queues its work and returns.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/backend_query.h"
#include "cuda/common.h"
#include "cuda/context.h"
#include "cuda/cudnn_ops.h"
#include "cuda/cusparse_ops.h"
#include "cuda/nccl_group.h"
#include "cuda/tile_table.h"
#include "kernels/activation.cuh"
#include "kernels/axpy.cuh"
#include "kernels/candidates.cuh"
#include "kernels/dense.cuh"
#include "kernels/gather.cuh"
#include "kernels/gmp.cuh"
#include "kernels/l0_gates.cuh"
#include "kernels/loss.cuh"
#include "kernels/lazy_prox_step.cuh"
#include "kernels/optimizer_step.cuh"
#include "kernels/prox_step.cuh"
#include "kernels/spred.cuh"
#include "kernels/stop_rule.cuh"
#include "sparseprox/error.h"

namespace sparseprox {
namespace cuda {
namespace {

// SPARSEPROX_CUDA_GRAPHS=1 turns on step graphs (Backend::graph_capture_begin); anything else,
// or unset, leaves them off. Read by each backend when it is made.
bool graphs_requested() {
    const char* v = std::getenv("SPARSEPROX_CUDA_GRAPHS");
    return v != nullptr && std::strcmp(v, "1") == 0;
}

// Uploads of the epoch order go through page-locked staging buffers, so the copy is truly
// asynchronous (from pageable memory the driver may synchronize the stream). A slot is reused
// only after its previous copy has left, so the host can run this many epochs ahead.
constexpr std::size_t kOrderSlots = 3;

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(int device_index) : ctx_(device_index) {}

    ~CudaBackend() override {
        // Queued kernels may still use the buffers about to be freed.
        cudaSetDevice(ctx_.device());
        cudaStreamSynchronize(ctx_.stream());
    }

    std::string name() const override { return "cuda:" + std::to_string(ctx_.device()); }

    void* allocate(std::size_t bytes) override {
        ctx_.activate();
        void* p = nullptr;
        const cudaError_t status = cudaMalloc(&p, bytes);
        if (status != cudaSuccess) {
            cudaGetLastError();
            throw Error(name() + ": cannot allocate " + std::to_string(bytes) + " bytes of device memory: " +
                        cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
        }
        return p;
    }
    void deallocate(void* p) noexcept override { cudaFree(p); }
    void upload(void* dst, const void* src, std::size_t bytes) override {
        if (bytes == 0) return;
        ctx_.activate();
        SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_.stream()));
    }
    void download(void* dst, const void* src, std::size_t bytes) override {
        if (bytes == 0) return;
        ctx_.activate();
        SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream()));
        ctx_.synchronize();
    }
    void copy(void* dst, const void* src, std::size_t bytes) override {
        if (bytes == 0) return;
        SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_.stream()));
    }
    void fill_zero(void* p, std::size_t bytes) override {
        if (bytes == 0) return;
        SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, ctx_.stream()));
    }
    void synchronize() override {
        ctx_.activate();
        ctx_.synchronize();
    }

    StagedRows stage_dataset(const Dataset& data) override {
        // The same, unchanged set again (every run of a lambda search): already on the device.
        if (&data == train_host_ && data.x.data() == train_host_x_ && data.n_samples == n_train_) return train_rows_;
        ctx_.activate();
        ctx_.synchronize();  // the old training set may still be read by queued steps
        const cudaStream_t s = ctx_.stream();
        train_x_.allocate(data.x.size());
        train_x_.copy_from_host(data.x.data(), data.x.size(), s);
        train_y_.allocate(data.y.size());
        train_y_.copy_from_host(data.y.data(), data.y.size(), s);
        train_labels_.allocate(data.labels.size());
        train_labels_.copy_from_host(data.labels.data(), data.labels.size(), s);
        train_host_ = &data;
        train_host_x_ = data.x.data();
        n_train_ = data.n_samples;
        order_host_.clear();
        train_rows_ = StagedRows{train_x_.data(), train_y_.empty() ? nullptr : train_y_.data(),
                                 train_labels_.empty() ? nullptr : train_labels_.data()};
        return train_rows_;
    }

    StagedRows stage_rows(const Dataset& data, std::size_t first, std::size_t n) override {
        const cudaStream_t s = ctx_.stream();
        const std::size_t nf = data.n_features, no = data.n_outputs;
        if (rows_x_.size() < n * nf || (!data.y.empty() && rows_y_.size() < n * no) ||
            (!data.labels.empty() && rows_labels_.size() < n)) {
            ctx_.synchronize();  // queued work may still read the old chunk buffers
            rows_x_.reserve(n * nf);
            if (!data.y.empty()) rows_y_.reserve(n * no);
            if (!data.labels.empty()) rows_labels_.reserve(n);
        }
        StagedRows r;
        rows_x_.copy_from_host(data.x.data() + first * nf, n * nf, s);
        r.x = rows_x_.data();
        if (!data.y.empty()) {
            rows_y_.copy_from_host(data.y.data() + first * no, n * no, s);
            r.y = rows_y_.data();
        }
        if (!data.labels.empty()) {
            rows_labels_.copy_from_host(data.labels.data() + first, n, s);
            r.labels = rows_labels_.data();
        }
        return r;
    }

    const std::uint32_t* stage_order(const std::vector<std::uint32_t>& order) override {
        if (order == order_host_) return order_.data();  // unchanged (the full-batch trainer repeats it)
        ctx_.activate();
        const cudaStream_t s = ctx_.stream();
        if (order.size() > order_.size()) {
            ctx_.synchronize();
            order_.allocate(order.size());
        }
        OrderSlot& slot = order_slots_[next_order_slot_];
        next_order_slot_ = (next_order_slot_ + 1) % kOrderSlots;
        if (slot.in_flight) slot.copied.synchronize();
        slot.host.reserve(order.size());
        if (!order.empty()) {
            std::memcpy(slot.host.data(), order.data(), order.size() * sizeof(std::uint32_t));
            SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(order_.data(), slot.host.data(), order.size() * sizeof(std::uint32_t),
                                                  cudaMemcpyHostToDevice, s));
        }
        slot.copied.record(s);
        slot.in_flight = true;
        order_host_ = order;
        return order_.data();
    }

    void require_image_ops() override {
        try {
            ctx_.cudnn();
        } catch (const Error& e) {
            throw Error(name() + ": the model has conv2d/pooling layers, which need cuDNN: " + e.what());
        }
    }

    bool known_stopped(const StepState*) override { return false; }  // the frozen kernels skip the step

    // Step graphs, when SPARSEPROX_CUDA_GRAPHS=1 (graphs_enabled): stream capture on this
    // thread's stream, instantiated once, launched as one unit. A capture that any operation
    // breaks (a synchronization, a pageable copy) ends with an error, which is cleared here.
    bool graph_capture_begin() override {
        if (!graphs_enabled_) return false;
        ctx_.activate();
        if (cudaStreamBeginCapture(ctx_.stream(), cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        return true;
    }
    std::unique_ptr<StepGraph> graph_capture_end() override {
        ctx_.activate();
        cudaGraph_t graph = nullptr;
        const cudaError_t ended = cudaStreamEndCapture(ctx_.stream(), &graph);
        std::unique_ptr<CudaStepGraph> out;
        if (ended == cudaSuccess && graph) {
            cudaGraphExec_t exec = nullptr;
            if (cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess) out = std::make_unique<CudaStepGraph>(exec);
        }
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();  // a failed capture's or instantiation's error is answered by the null graph
        return out;
    }
    void graph_launch(const StepGraph& graph) override {
        SPARSEPROX_CUDA_CHECK(cudaGraphLaunch(static_cast<const CudaStepGraph&>(graph).exec, ctx_.stream()));
    }
    std::uint64_t graph_scratch_epoch() const override { return scratch_epoch_ + ctx_.cudnn_workspace_epoch(); }

    void gather_rows(const float* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows,
                     float* dst) override {
        launch_gather_rows(src, n_cols, rows, n_rows, dst, ctx_.stream());
    }
    void gather_labels(const std::int32_t* src, const std::uint32_t* rows, std::size_t n_rows,
                       std::int32_t* dst) override {
        launch_gather_rows(src, 1, rows, n_rows, dst, ctx_.stream());
    }

    // The bias, and a ReLU, in the product's cuBLASLt epilogue; any other activation as its own
    // kernel over y, in place. Without a cuBLASLt algorithm for the shape: the cuBLAS path.
    void dense_forward(const float* x, const float* W, const float* b, float* y, std::size_t batch, std::size_t n_in,
                       std::size_t n_out, Activation act) override {
        const cuda::Fused fused =
            dense_epilogues_.forward(ctx_.cublaslt(), x, W, b, y, batch, n_in, n_out, act, ctx_.blas_workspace(),
                                     ctx_.blas_workspace_bytes(), ctx_.stream());
        if (fused == cuda::Fused::none) cuda::dense_forward(ctx_.cublas(), x, W, b, y, batch, n_in, n_out, ctx_.stream());
        if (act != Activation::identity && fused != cuda::Fused::bias_relu)
            launch_activation_forward(act, y, y, batch * n_out, ctx_.stream());
    }
    // The activation's derivative as its own kernel over dL_dx, in place.
    void dense_backward(const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db, float* dL_dx,
                        std::size_t batch, std::size_t n_in, std::size_t n_out, Activation act, const float* act_x,
                        const float* act_y) override {
        cuda::dense_backward(ctx_.cublas(), x, W, dL_dy, dL_dW, dL_db, dL_dx, batch, n_in, n_out, ctx_.stream());
        if (dL_dx && act != Activation::identity)
            launch_activation_backward(act, act_x, act_y, dL_dx, dL_dx, batch * n_in, ctx_.stream());
    }

    // The csr engine's dense layers; its conv layers run dense through cuDNN (has_csr_conv2d is
    // false here).
    std::unique_ptr<CsrMatrix> csr_matrix(const CsrHost& W, std::size_t max_batch) override {
        return cuda::csr_matrix(ctx_, W, max_batch);
    }
    void csr_forward(const CsrMatrix& W, const float* x, const float* b, float* y, std::size_t batch) override {
        cuda::csr_forward(ctx_, W, x, b, y, batch);
    }

    void conv2d_forward(const ConvShape& s, const float* x, const float* W, const float* b, float* y) override {
        cuda::conv2d_forward(ctx_, s, x, W, b, y);
    }
    void conv2d_backward(const ConvShape& s, const float* x, const float* W, const float* dL_dy, float* dL_dW,
                         float* dL_db, float* dL_dx) override {
        cuda::conv2d_backward(ctx_, s, x, W, dL_dy, dL_dW, dL_db, dL_dx);
    }
    void maxpool2d_forward(const PoolShape& s, const float* x, float* y) override {
        cuda::maxpool2d_forward(ctx_, s, x, y);
    }
    void maxpool2d_backward(const PoolShape& s, const float* x, const float* y, const float* dL_dy,
                            float* dL_dx) override {
        cuda::maxpool2d_backward(ctx_, s, x, y, dL_dy, dL_dx);
    }
    void avgpool2d_forward(const PoolShape& s, const float* x, float* y) override {
        cuda::avgpool2d_forward(ctx_, s, x, y);
    }
    void avgpool2d_backward(const PoolShape& s, const float* x, const float* y, const float* dL_dy,
                            float* dL_dx) override {
        cuda::avgpool2d_backward(ctx_, s, x, y, dL_dy, dL_dx);
    }

    void activation_forward(Activation a, const float* x, float* y, std::size_t n) override {
        launch_activation_forward(a, x, y, n, ctx_.stream());
    }
    void activation_backward(Activation a, const float* x, const float* y, const float* dL_dy, float* dL_dx,
                             std::size_t n) override {
        launch_activation_backward(a, x, y, dL_dy, dL_dx, n, ctx_.stream());
    }

    void mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out, float grad_scale,
                  float* dL_dpred, double* sample_loss) override {
        launch_mse_loss(pred, target, batch, n_out, grad_scale, dL_dpred, sample_loss, ctx_.stream());
    }
    void cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch, std::size_t n_classes,
                            float grad_scale, float* dL_dlogits, double* sample_loss,
                            std::uint32_t* sample_correct) override {
        launch_cross_entropy_loss(logits, labels, batch, n_classes, grad_scale, dL_dlogits, sample_loss, sample_correct,
                                  ctx_.stream());
    }
    // sum_temp(n) may grow the scratch, so it runs before its size is read (as two arguments of
    // one call the order of the two would be unspecified, and CUB refuses a scratch smaller than
    // it needs with cudaErrorInvalidValue).
    void sum(const double* x, std::size_t n, double* out) override {
        if (n == 0) return fill_zero(out, sizeof(double));
        void* temp = sum_temp(n);
        launch_sum(x, n, out, temp, sum_temp_.bytes(), ctx_.stream());
    }
    void sum(const std::uint32_t* x, std::size_t n, std::uint64_t* out) override {
        if (n == 0) return fill_zero(out, sizeof(std::uint64_t));
        void* temp = sum_temp(n);
        launch_sum(x, n, out, temp, sum_temp_.bytes(), ctx_.stream());
    }
    void accumulate_step_loss(const double* batch_loss, std::size_t batch, StepState* state) override {
        launch_accumulate_step_loss(batch_loss, batch, state, ctx_.stream());
    }

    void axpy(float a, const float* x, float* y, std::size_t n) override { cuda::axpy(ctx_.cublas(), a, x, y, n); }

    // NCCL on the stream, one communicator per group (made on the first call, collectively).
    void allreduce_sum(float* data, std::size_t n, Collective& group) override {
        ctx_.activate();
        if (!nccl_ || nccl_->group() != &group) nccl_ = std::make_unique<NcclGroup>(group, ctx_.device());
        nccl_->sum(data, n, ctx_.stream());
    }

    void count_nonzero(const float* params, const ParamLayout& layout, std::uint64_t* layer_nnz) override {
        table(layout).count(params, layer_nnz, ctx_.stream());
    }
    void prox_step(float* params, const float* grads, const ParamLayout& layout, const float* hyper,
                   const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        TileTable& t = table(layout);
        const SlabTiles v = t.tiles();
        launch_prox_step(params, grads, v.tiles, v.n_tiles, hyper, stop, v.tile_nnz, ctx_.stream());
        t.sum_per_layer(layer_nnz, ctx_.stream());
    }
    void prox_step_unfused(float* params, const float* grads, const ParamLayout& layout, const float* hyper,
                           std::uint64_t* layer_nnz) override {
        launch_prox_step_unfused(params, grads, layout, hyper, ctx_.stream());
        table(layout).count(params, layer_nnz, ctx_.stream());
    }
    void prox_optimizer_step(float* params, const float* grads, const opt::State& state, const ParamLayout& layout,
                             const float* hyper, const opt::Step& step, const std::int32_t* stop,
                             std::uint64_t* layer_nnz) override {
        TileTable& t = table(layout);
        launch_prox_optimizer_step(params, grads, state, t.tiles(), hyper, step, stop, ctx_.stream());
        t.sum_per_layer(layer_nnz, ctx_.stream());
    }
    void lazy_prox_step(float* params, float* z, const float* grads, const opt::State& state,
                        const ParamLayout& layout, const float* hyper, const opt::Step& step, const std::int32_t* stop,
                        std::uint64_t* layer_nnz) override {
        TileTable& t = table(layout);
        launch_lazy_prox_step(params, z, grads, state, t.tiles(), hyper, step, stop, ctx_.stream());
        t.sum_per_layer(layer_nnz, ctx_.stream());
    }
    void stop_rule(StepState* state, const StopConfig* config, const std::uint64_t* targets,
                   const std::uint64_t* layer_nnz) override {
        launch_stop_rule(state, config, targets, layer_nnz, ctx_.stream());
    }
    CandidateSet gradient_candidates(const float* grads, const ParamLayout& layout,
                                     const std::vector<std::size_t>& layers, float low, float up) override {
        std::vector<std::pair<std::size_t, std::size_t>> ranges;
        std::size_t need = 0;
        for (std::size_t l : layers) {
            const ParamSegment& s = layout.segments.at(l);
            ranges.emplace_back(s.weight_offset, s.n_weights);
            need += s.n_weights;
        }
        if (candidate_scratch_.size() < need) {
            ctx_.synchronize();
            candidate_scratch_.allocate(need);
        }
        return select_candidates(grads, ranges, low, up, candidate_scratch_.data(), ctx_.stream());
    }

    void l0_effective(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
                      const ParamLayout& layout, const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step,
                      float* eff, const std::int32_t* stop) override {
        launch_l0_effective(theta, log_alpha, table(layout).tiles(), gate_segments(gates, layout), hc, seed, step, eff,
                            stop, ctx_.stream());
    }
    void l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
                   const sparsify::GateLayout& gates, const ParamLayout& layout, const gates::HardConcrete& hc,
                   std::uint64_t seed, std::uint64_t step, const float* hyper, const sparsify::AdamStep& adam,
                   const opt::State& theta_state, const opt::Step& opt_step, const std::int32_t* stop) override {
        launch_l0_update(theta, log_alpha, adam_m, adam_v, grads, table(layout).tiles(), gate_segments(gates, layout),
                         gates_host_, hc, seed, step, hyper, adam, theta_state, opt_step, stop, ctx_.stream());
    }
    void l0_export(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
                   const ParamLayout& layout, const gates::HardConcrete& hc, float* out, const std::int32_t* stop,
                   std::uint64_t* layer_nnz) override {
        TileTable& t = table(layout);
        launch_l0_export(theta, log_alpha, t.tiles(), gate_segments(gates, layout), hc, out, stop, ctx_.stream());
        t.sum_per_layer(layer_nnz, ctx_.stream());
    }

    void spred_split(const float* w, const ParamLayout& layout, float* u, float* v) override {
        launch_spred_split(w, table(layout).tiles(), u, v, ctx_.stream());
    }
    void spred_effective(const float* u, const float* v, const ParamLayout& layout, float* eff,
                         const std::int32_t* stop) override {
        launch_spred_effective(u, v, table(layout).tiles(), eff, stop, ctx_.stream());
    }
    void spred_update(float* u, float* v, const float* grads, const ParamLayout& layout, const float* hyper,
                      const opt::State& u_state, const opt::State& v_state, const opt::Step& opt_step,
                      const std::int32_t* stop) override {
        launch_spred_update(u, v, grads, table(layout).tiles(), hyper, u_state, v_state, opt_step, stop,
                            ctx_.stream());
    }
    void spred_export(const float* u, const float* v, const ParamLayout& layout, float threshold, float* out,
                      const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        TileTable& t = table(layout);
        launch_spred_export(u, v, t.tiles(), threshold, out, stop, ctx_.stream());
        t.sum_per_layer(layer_nnz, ctx_.stream());
    }

    void masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const ParamLayout& layout,
                    const float* hyper, const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        TileTable& t = table(layout);
        launch_masked_sgd(w, grads, mask, t.tiles(), hyper, stop, ctx_.stream());
        t.sum_per_layer(layer_nnz, ctx_.stream());
    }
    void masked_optimizer_step(float* w, const float* grads, const std::uint8_t* mask, const opt::State& state,
                               const ParamLayout& layout, const float* hyper, const opt::Step& step,
                               const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        TileTable& t = table(layout);
        launch_masked_optimizer_step(w, grads, mask, state, t.tiles(), hyper, step, stop, ctx_.stream());
        t.sum_per_layer(layer_nnz, ctx_.stream());
    }
    void gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout, const std::vector<std::size_t>& keep,
                   const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        std::size_t n_weights = 0;
        for (const ParamSegment& s : layout.segments) n_weights += s.n_weights;
        if (sort_keys_.size() < n_weights) {
            ctx_.synchronize();  // queued prunes may still use the old scratch
            sort_keys_.allocate(n_weights);
            sort_index_.allocate(n_weights);
        }
        launch_gmp_prune(w, mask, layout, keep, sort_keys_.data(), sort_index_.data(), stop, ctx_.stream());
        count_nonzero(w, layout, layer_nnz);
    }

private:
    struct CudaStepGraph final : StepGraph {
        explicit CudaStepGraph(cudaGraphExec_t e) : exec(e) {}
        ~CudaStepGraph() override { cudaGraphExecDestroy(exec); }
        cudaGraphExec_t exec;
    };

    struct OrderSlot {
        PinnedBuffer<std::uint32_t> host;
        Event copied;
        bool in_flight = false;
    };

    // The tile table of a layout, built on first use (an engine uses one layout; the tests a few).
    TileTable& table(const ParamLayout& layout) {
        for (const auto& t : tables_)
            if (same_layout(t->layout(), layout)) return *t;
        if (tables_.size() >= 8) {  // bounded: drop the oldest after its queued work is done
            ctx_.synchronize();
            tables_.erase(tables_.begin());
            ++scratch_epoch_;
        }
        tables_.push_back(std::make_unique<TileTable>(layout, ctx_.stream()));
        return *tables_.back();
    }

    // The device copy of a gate layout, re-uploaded (in stream order) when it changes.
    const sparsify::GateSegment* gate_segments(const sparsify::GateLayout& gates, const ParamLayout& layout) {
        const std::vector<sparsify::GateSegment>& g = gates.segments;
        if (g.size() != layout.segments.size())
            throw Error("l0: " + std::to_string(g.size()) + " gate segments for " +
                        std::to_string(layout.segments.size()) + " weight layers");
        const bool same = g.size() == gates_host_.size() &&
                          (g.empty() || std::memcmp(g.data(), gates_host_.data(), g.size() * sizeof(g[0])) == 0);
        if (!same) {
            for (std::size_t l = 0; l < g.size(); ++l) {
                const ParamSegment& s = layout.segments[l];
                const bool shape_ok = g[l].weight_offset == s.weight_offset && g[l].n_weights == s.n_weights &&
                                      (g[l].map == sparsify::kPerWeight
                                           ? g[l].n_gates == g[l].n_weights
                                           : g[l].divisor > 0 && g[l].n_weights % g[l].divisor == 0);
                if (!shape_ok) throw Error("l0: gate segment " + std::to_string(l) + " does not match the layout");
            }
            if (gates_.size() < std::max<std::size_t>(g.size(), 1)) {
                ctx_.synchronize();
                gates_.allocate(std::max<std::size_t>(g.size(), 1));
            }
            gates_.copy_from_host(g.data(), g.size(), ctx_.stream());
            gates_host_ = g;
        }
        return gates_.data();
    }

    // CUB temp storage for sums of up to n items (CUB's size query only when n grows: it runs on
    // every training step).
    void* sum_temp(std::size_t n) {
        if (n <= sum_temp_items_) return sum_temp_.data();
        const std::size_t need = cub_temp_size(sum_temp_bytes(n));
        if (sum_temp_.bytes() < need) {
            ctx_.synchronize();
            sum_temp_.allocate(need);
            ++scratch_epoch_;
        }
        sum_temp_items_ = n;
        return sum_temp_.data();
    }

    CudaContext ctx_;  // before every device member: built first, destroyed last
    cuda::DenseEpilogues dense_epilogues_;  // the dense forward's cuBLASLt plans
    const bool graphs_enabled_ = graphs_requested();
    std::uint64_t scratch_epoch_ = 0;  // replacements of the scratch below (graph_scratch_epoch)
    std::unique_ptr<NcclGroup> nccl_;  // data-parallel: the gradient all-reduce (null until used)
    std::vector<std::unique_ptr<TileTable>> tables_;
    std::vector<sparsify::GateSegment> gates_host_;
    DeviceBuffer<sparsify::GateSegment> gates_;
    DeviceBuffer<std::uint32_t> sort_keys_;        // gmp: |w| as bits
    DeviceBuffer<std::uint64_t> sort_index_;       // gmp: slab index
    DeviceBuffer<float> candidate_scratch_;        // the lambda search's candidates
    DeviceBuffer<unsigned char> sum_temp_;
    std::size_t sum_temp_items_ = 0;               // the most items sum_temp_ was sized for

    const Dataset* train_host_ = nullptr;
    const float* train_host_x_ = nullptr;
    std::size_t n_train_ = 0;
    StagedRows train_rows_;
    DeviceBuffer<float> train_x_, train_y_;        // (n_train, n_in), (n_train, n_out)
    DeviceBuffer<std::int32_t> train_labels_;      // (n_train)
    DeviceBuffer<float> rows_x_, rows_y_;          // a staged chunk of another data set
    DeviceBuffer<std::int32_t> rows_labels_;
    DeviceBuffer<std::uint32_t> order_;            // the epoch order
    std::vector<std::uint32_t> order_host_;        // what order_ holds (once its copy lands)
    std::array<OrderSlot, kOrderSlots> order_slots_;
    std::size_t next_order_slot_ = 0;
};

}  // namespace
}  // namespace cuda

namespace cuda {

std::unique_ptr<Backend> create_backend(int device_index) {
    // The full check (driver, device, this build's kernels run there): a failure names its kind
    // and the versions involved, so a runner that cannot use its GPU says why.
    const detail::CudaStatus st = detail::cuda_status(device_index);
    if (st.issue != detail::CudaIssue::none)
        throw Error("cuda:" + std::to_string(device_index) + " requested but " + detail::cuda_issue_name(st.issue) +
                    ": " + st.message);
    return std::make_unique<CudaBackend>(device_index);
}

}  // namespace cuda
}  // namespace sparseprox
