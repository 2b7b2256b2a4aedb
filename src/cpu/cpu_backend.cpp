// The CPU backend: host memory, the data sets used in place, and every operation of
// core/backend.h as a call of its CPU twin (src/cpu/<op>.cpp). Runs synchronously, so the stop
// flag is always known and frozen steps are skipped whole.
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/backend.h"
#include "cpu/activation.h"
#include "cpu/axpy.h"
#include "cpu/candidates.h"
#include "cpu/conv_ops.h"
#include "cpu/count.h"
#include "cpu/csr_ops.h"
#include "cpu/dense.h"
#include "cpu/dense_chain.h"
#include "cpu/gather.h"
#include "cpu/gmp.h"
#include "cpu/l0_gates.h"
#include "cpu/loss.h"
#include "cpu/lazy_prox_step.h"
#include "cpu/optimizer_step.h"
#include "cpu/prox_step.h"
#include "cpu/spred.h"
#include "cpu/stop_rule.h"
#include "cpu/threads.h"
#include "sparseprox/error.h"

namespace sparseprox {
namespace {

bool stopped(const std::int32_t* stop) { return stop != nullptr && *stop != 0; }

class CpuBackend final : public Backend {
public:
    CpuBackend() {
        cpu::hold_blas_to_one_thread();
        tuner_.apply();
    }

    std::string name() const override { return "cpu"; }

    void* allocate(std::size_t bytes) override {
        // 64-byte aligned like the CUDA allocator's 256, so vectorized loops see aligned segments.
        void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!p) throw Error("cannot allocate " + std::to_string(bytes) + " bytes of host memory");
        return p;
    }
    void deallocate(void* p) noexcept override { std::free(p); }
    void upload(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
    void download(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
    void copy(void* dst, const void* src, std::size_t bytes) override { std::memmove(dst, src, bytes); }
    void fill_zero(void* p, std::size_t bytes) override { std::memset(p, 0, bytes); }
    void synchronize() override {}

    StagedRows stage_dataset(const Dataset& data) override { return rows_of(data, 0); }
    StagedRows stage_rows(const Dataset& data, std::size_t first, std::size_t) override { return rows_of(data, first); }
    const std::uint32_t* stage_order(const std::vector<std::uint32_t>& order) override {
        order_ = order;
        return order_.data();
    }
    bool known_stopped(const StepState* state) override { return state->stopped != 0; }
    void begin_step() override { tuner_.begin_step(); }
    void end_step() override { tuner_.end_step(); }

    void gather_rows(const float* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows,
                     float* dst) override {
        tuner_.apply();
        cpu::gather_rows(src, n_cols, rows, n_rows, dst);
    }
    void gather_labels(const std::int32_t* src, const std::uint32_t* rows, std::size_t n_rows,
                       std::int32_t* dst) override {
        cpu::gather_labels(src, rows, n_rows, dst);
    }

    void dense_forward(const float* x, const float* W, const float* b, float* y, std::size_t batch, std::size_t n_in,
                       std::size_t n_out, Activation act) override {
        tuner_.apply();  // passes outside training steps (evaluation) run at the current count too
        cpu::dense_forward(x, W, b, y, batch, n_in, n_out, act);
    }
    void dense_backward(const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db, float* dL_dx,
                        std::size_t batch, std::size_t n_in, std::size_t n_out, Activation act, const float* act_x,
                        const float* act_y) override {
        cpu::dense_backward(x, W, dL_dy, dL_dW, dL_db, dL_dx, batch, n_in, n_out, act, act_x, act_y);
    }

    void dense_forward_chain(const std::vector<DenseForwardLink>& links, std::size_t batch) override {
        tuner_.apply();
        cpu::dense_forward_chain(links, batch);
    }
    void dense_backward_chain(const std::vector<DenseBackwardLink>& links, std::size_t batch) override {
        cpu::dense_backward_chain(links, batch);
    }

    std::unique_ptr<CsrMatrix> csr_matrix(const CsrHost& W, std::size_t max_batch) override {
        return cpu::csr_matrix(W, max_batch);
    }
    void csr_forward(const CsrMatrix& W, const float* x, const float* b, float* y, std::size_t batch) override {
        tuner_.apply();
        const std::size_t need = cpu::csr_forward_workspace_floats(W, batch);
        if (workspace_.size() < need) workspace_.resize(need);
        cpu::csr_forward(W, x, b, y, batch, workspace_.data());
    }
    bool has_csr_conv2d() const override { return true; }
    void csr_conv2d_forward(const ConvShape& s, const CsrMatrix& W, const float* x, const float* b,
                            float* y) override {
        tuner_.apply();
        cpu::csr_conv2d_forward(s, W, x, b, y, workspace(s));
    }

    void conv2d_forward(const ConvShape& s, const float* x, const float* W, const float* b, float* y) override {
        tuner_.apply();
        cpu::conv2d_forward(s, x, W, b, y);
    }
    void conv2d_backward(const ConvShape& s, const float* x, const float* W, const float* dL_dy, float* dL_dW,
                         float* dL_db, float* dL_dx) override {
        cpu::conv2d_backward(s, x, W, dL_dy, dL_dW, dL_db, dL_dx);
    }
    bool has_conv2d_maxpool() const override { return true; }
    void conv2d_maxpool_forward(const ConvShape& s, const PoolShape& pool, const float* x, const float* W,
                                const float* b, float* pooled, std::int32_t* arg) override {
        tuner_.apply();
        cpu::conv2d_maxpool_forward(s, pool, x, W, b, pooled, arg);
    }
    void conv2d_maxpool_backward(const ConvShape& s, const PoolShape& pool, const float* x, const float* W,
                                 const std::int32_t* arg, const float* dL_dpooled, float* dL_dW, float* dL_db,
                                 float* dL_dx) override {
        cpu::conv2d_maxpool_backward(s, pool, x, W, arg, dL_dpooled, dL_dW, dL_db, dL_dx);
    }
    void maxpool2d_forward(const PoolShape& s, const float* x, float* y) override { cpu::maxpool2d_forward(s, x, y); }
    void maxpool2d_backward(const PoolShape& s, const float* x, const float* y, const float* dL_dy,
                            float* dL_dx) override {
        cpu::maxpool2d_backward(s, x, y, dL_dy, dL_dx);
    }
    void avgpool2d_forward(const PoolShape& s, const float* x, float* y) override { cpu::avgpool2d_forward(s, x, y); }
    void avgpool2d_backward(const PoolShape& s, const float*, const float*, const float* dL_dy,
                            float* dL_dx) override {
        cpu::avgpool2d_backward(s, dL_dy, dL_dx);
    }

    void activation_forward(Activation a, const float* x, float* y, std::size_t n) override {
        cpu::activation_forward(a, x, y, n);
    }
    void activation_backward(Activation a, const float* x, const float* y, const float* dL_dy, float* dL_dx,
                             std::size_t n) override {
        cpu::activation_backward(a, x, y, dL_dy, dL_dx, n);
    }

    void mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out, float grad_scale,
                  float* dL_dpred, double* sample_loss) override {
        cpu::mse_loss(pred, target, batch, n_out, grad_scale, dL_dpred, sample_loss);
    }
    void cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch, std::size_t n_classes,
                            float grad_scale, float* dL_dlogits, double* sample_loss,
                            std::uint32_t* sample_correct) override {
        cpu::cross_entropy_loss(logits, labels, batch, n_classes, grad_scale, dL_dlogits, sample_loss, sample_correct);
    }
    void sum(const double* x, std::size_t n, double* out) override { *out = cpu::sum(x, n); }
    void sum(const std::uint32_t* x, std::size_t n, std::uint64_t* out) override { *out = cpu::sum(x, n); }
    void accumulate_step_loss(const double* batch_loss, std::size_t batch, StepState* state) override {
        cpu::accumulate_step_loss(*batch_loss, batch, state);
    }

    void axpy(float a, const float* x, float* y, std::size_t n) override { cpu::axpy(a, x, y, n); }

    // Host memory: MPI sums it in place (the group polls its request against the timeout).
    void allreduce_sum(float* data, std::size_t n, Collective& group) override {
        if (n > 0) group.sum(data, n, "the gradient all-reduce");
    }

    void count_nonzero(const float* params, const ParamLayout& layout, std::uint64_t* layer_nnz) override {
        cpu::count_layers(params, layout, layer_nnz);
    }
    void prox_step(float* params, const float* grads, const ParamLayout& layout, const float* hyper,
                   const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        if (stopped(stop)) return;
        tuner_.apply();
        cpu::prox_step(params, grads, layout, hyper[0], hyper + 1, layer_nnz);
    }
    void prox_step_unfused(float* params, const float* grads, const ParamLayout& layout, const float* hyper,
                           std::uint64_t* layer_nnz) override {
        cpu::prox_step_unfused(params, grads, layout, hyper[0], hyper + 1, layer_nnz);
    }
    void prox_optimizer_step(float* params, const float* grads, const opt::State& state, const ParamLayout& layout,
                             const float* hyper, const opt::Step& step, const std::int32_t* stop,
                             std::uint64_t* layer_nnz) override {
        if (stopped(stop)) return;
        cpu::prox_optimizer_step(params, grads, state, layout, hyper[0], hyper + 1, step, layer_nnz);
    }
    void lazy_prox_step(float* params, float* z, const float* grads, const opt::State& state,
                        const ParamLayout& layout, const float* hyper, const opt::Step& step, const std::int32_t* stop,
                        std::uint64_t* layer_nnz) override {
        if (stopped(stop)) return;
        cpu::lazy_prox_step(params, z, grads, state, layout, hyper[0], hyper + 1, step, layer_nnz);
    }
    void stop_rule(StepState* state, const StopConfig* config, const std::uint64_t* targets,
                   const std::uint64_t* layer_nnz) override {
        cpu::stop_rule(state, *config, targets, layer_nnz);
    }
    CandidateSet gradient_candidates(const float* grads, const ParamLayout& layout,
                                     const std::vector<std::size_t>& layers, float low, float up) override {
        return cpu::gradient_candidates(grads, layout, layers, low, up);
    }

    void l0_effective(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
                      const ParamLayout& layout, const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step,
                      float* eff, const std::int32_t* stop) override {
        if (stopped(stop)) return;
        cpu::l0_effective(theta, log_alpha, gates, layout, hc, seed, step, eff);
    }
    void l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
                   const sparsify::GateLayout& gates, const ParamLayout& layout, const gates::HardConcrete& hc,
                   std::uint64_t seed, std::uint64_t step, const float* hyper, const sparsify::AdamStep& adam,
                   const opt::State& theta_state, const opt::Step& opt_step, const std::int32_t* stop) override {
        if (stopped(stop)) return;
        cpu::l0_update(theta, log_alpha, adam_m, adam_v, grads, gates, layout, hc, seed, step, hyper[0], hyper + 1,
                       adam, theta_state, opt_step);
    }
    void l0_export(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
                   const ParamLayout& layout, const gates::HardConcrete& hc, float* out, const std::int32_t* stop,
                   std::uint64_t* layer_nnz) override {
        if (stopped(stop)) return;
        cpu::l0_export(theta, log_alpha, gates, layout, hc, out, layer_nnz);
    }

    void spred_split(const float* w, const ParamLayout& layout, float* u, float* v) override {
        cpu::spred_split(w, layout, u, v);
    }
    void spred_effective(const float* u, const float* v, const ParamLayout& layout, float* eff,
                         const std::int32_t* stop) override {
        if (stopped(stop)) return;
        cpu::spred_effective(u, v, layout, eff);
    }
    void spred_update(float* u, float* v, const float* grads, const ParamLayout& layout, const float* hyper,
                      const opt::State& u_state, const opt::State& v_state, const opt::Step& opt_step,
                      const std::int32_t* stop) override {
        if (stopped(stop)) return;
        cpu::spred_update(u, v, grads, layout, hyper[0], hyper + 1, u_state, v_state, opt_step);
    }
    void spred_export(const float* u, const float* v, const ParamLayout& layout, float threshold, float* out,
                      const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        if (stopped(stop)) return;
        cpu::spred_export(u, v, layout, threshold, out, layer_nnz);
    }

    void masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const ParamLayout& layout,
                    const float* hyper, const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        if (stopped(stop)) return;
        cpu::masked_sgd(w, grads, mask, layout, hyper[0], layer_nnz);
    }
    void masked_optimizer_step(float* w, const float* grads, const std::uint8_t* mask, const opt::State& state,
                               const ParamLayout& layout, const float* hyper, const opt::Step& step,
                               const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        if (stopped(stop)) return;
        cpu::masked_optimizer_step(w, grads, mask, state, layout, hyper[0], step, layer_nnz);
    }
    void gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout, const std::vector<std::size_t>& keep,
                   const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        if (stopped(stop)) return;
        cpu::gmp_prune(w, mask, layout, keep);
        cpu::count_layers(w, layout, layer_nnz);
    }

private:
    static StagedRows rows_of(const Dataset& data, std::size_t first) {
        StagedRows r;
        r.x = data.x.data() + first * data.n_features;
        if (!data.y.empty()) r.y = data.y.data() + first * data.n_outputs;
        if (!data.labels.empty()) r.labels = data.labels.data() + first;
        return r;
    }

    // The csr convolution's im2col scratch of one sample (and the csr products' transposes), grown to
    // the largest need seen.
    float* workspace(const ConvShape& s) {
        const std::size_t need = cpu::conv2d_workspace_floats(s);
        if (workspace_.size() < need) workspace_.resize(need);
        return workspace_.data();
    }

    std::vector<std::uint32_t> order_;
    std::vector<float> workspace_;
    cpu::ThreadTuner tuner_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace sparseprox
