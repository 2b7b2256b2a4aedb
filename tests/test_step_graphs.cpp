// The network's step graphs (core/network.cpp, replay_or_record) without a GPU: a backend that
// wraps the CPU backend and records, like a stream capture, instead of running: between
// graph_capture_begin and graph_capture_end each operation of a training step is stored as a
// call with its arguments, and graph_launch makes those calls again. A graph that outlived what
// it baked in would replay onto stale buffers or constants, and the runs below would differ from
// the runs without graphs. Any other operation during a recording breaks it (as a synchronizing
// call breaks a CUDA capture). The CUDA backend's own graphs are tested in test_parity.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/layer_shapes.h"
#include "core/network.h"
#include "sparseprox/sparseprox.h"
#include "step_graph_util.h"

using namespace sparseprox;
using testing_util::expect_same_runs;
using testing_util::GraphRun;

namespace {

struct RecordedGraph final : StepGraph {
    std::vector<std::function<void()>> calls;
};

class RecordingBackend final : public Backend {
public:
    // fail_recordings: every recording breaks (an operation that cannot be recorded).
    explicit RecordingBackend(bool fail_recordings = false)
        : inner_(make_cpu_backend()), fail_recordings_(fail_recordings) {}

    std::size_t recordings = 0;       // recordings made (graph_capture_end with a graph)
    std::uint64_t scratch_epoch = 0;  // graph_scratch_epoch, moved by the test

    bool graph_capture_begin() override {
        recording_ = std::make_unique<RecordedGraph>();
        broken_ = false;
        return true;
    }
    std::unique_ptr<StepGraph> graph_capture_end() override {
        std::unique_ptr<RecordedGraph> g = std::move(recording_);
        if (broken_ || fail_recordings_) return nullptr;
        ++recordings;
        return g;
    }
    void graph_launch(const StepGraph& graph) override {
        for (const auto& call : static_cast<const RecordedGraph&>(graph).calls) call();
    }
    std::uint64_t graph_scratch_epoch() const override { return scratch_epoch; }

    std::string name() const override { return "recording " + inner_->name(); }
    void* allocate(std::size_t bytes) override { return direct("allocate"), inner_->allocate(bytes); }
    void deallocate(void* p) noexcept override { inner_->deallocate(p); }
    void upload(void* dst, const void* src, std::size_t bytes) override {
        direct("upload");
        inner_->upload(dst, src, bytes);
    }
    void download(void* dst, const void* src, std::size_t bytes) override {
        direct("download");
        inner_->download(dst, src, bytes);
    }
    void copy(void* dst, const void* src, std::size_t bytes) override {
        direct("copy");
        inner_->copy(dst, src, bytes);
    }
    void fill_zero(void* p, std::size_t bytes) override {
        record([=] { inner_->fill_zero(p, bytes); });
    }
    void synchronize() override {
        direct("synchronize");
        inner_->synchronize();
    }
    StagedRows stage_dataset(const Dataset& data) override { return direct("stage"), inner_->stage_dataset(data); }
    StagedRows stage_rows(const Dataset& data, std::size_t first, std::size_t n) override {
        return direct("stage"), inner_->stage_rows(data, first, n);
    }
    const std::uint32_t* stage_order(const std::vector<std::uint32_t>& order) override {
        return direct("stage"), inner_->stage_order(order);
    }
    // Like a queuing backend, never known to be stopped: the stop flag freezes the update instead.
    bool known_stopped(const StepState*) override { return false; }
    void begin_step() override { inner_->begin_step(); }
    void end_step() override { inner_->end_step(); }
    void require_image_ops() override { inner_->require_image_ops(); }

    void gather_rows(const float* src, std::size_t n_cols, const std::uint32_t* rows, std::size_t n_rows,
                     float* dst) override {
        record([=] { inner_->gather_rows(src, n_cols, rows, n_rows, dst); });
    }
    void gather_labels(const std::int32_t* src, const std::uint32_t* rows, std::size_t n_rows,
                       std::int32_t* dst) override {
        record([=] { inner_->gather_labels(src, rows, n_rows, dst); });
    }
    void dense_forward(const float* x, const float* W, const float* b, float* y, std::size_t batch, std::size_t n_in,
                       std::size_t n_out, Activation act) override {
        record([=] { inner_->dense_forward(x, W, b, y, batch, n_in, n_out, act); });
    }
    void dense_backward(const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db, float* dL_dx,
                        std::size_t batch, std::size_t n_in, std::size_t n_out, Activation act, const float* act_x,
                        const float* act_y) override {
        record([=] { inner_->dense_backward(x, W, dL_dy, dL_dW, dL_db, dL_dx, batch, n_in, n_out, act, act_x, act_y); });
    }
    std::unique_ptr<CsrMatrix> csr_matrix(const CsrHost& W, std::size_t max_batch) override {
        return direct("csr_matrix"), inner_->csr_matrix(W, max_batch);
    }
    void csr_forward(const CsrMatrix& W, const float* x, const float* b, float* y, std::size_t batch) override {
        direct("csr_forward");
        inner_->csr_forward(W, x, b, y, batch);
    }
    void conv2d_forward(const ConvShape& s, const float* x, const float* W, const float* b, float* y) override {
        record([=] { inner_->conv2d_forward(s, x, W, b, y); });
    }
    void conv2d_backward(const ConvShape& s, const float* x, const float* W, const float* dL_dy, float* dL_dW,
                         float* dL_db, float* dL_dx) override {
        record([=] { inner_->conv2d_backward(s, x, W, dL_dy, dL_dW, dL_db, dL_dx); });
    }
    void maxpool2d_forward(const PoolShape& s, const float* x, float* y) override {
        record([=] { inner_->maxpool2d_forward(s, x, y); });
    }
    void maxpool2d_backward(const PoolShape& s, const float* x, const float* y, const float* dL_dy,
                            float* dL_dx) override {
        record([=] { inner_->maxpool2d_backward(s, x, y, dL_dy, dL_dx); });
    }
    void avgpool2d_forward(const PoolShape& s, const float* x, float* y) override {
        record([=] { inner_->avgpool2d_forward(s, x, y); });
    }
    void avgpool2d_backward(const PoolShape& s, const float* x, const float* y, const float* dL_dy,
                            float* dL_dx) override {
        record([=] { inner_->avgpool2d_backward(s, x, y, dL_dy, dL_dx); });
    }
    void activation_forward(Activation a, const float* x, float* y, std::size_t n) override {
        record([=] { inner_->activation_forward(a, x, y, n); });
    }
    void activation_backward(Activation a, const float* x, const float* y, const float* dL_dy, float* dL_dx,
                             std::size_t n) override {
        record([=] { inner_->activation_backward(a, x, y, dL_dy, dL_dx, n); });
    }
    void mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out, float grad_scale,
                  float* dL_dpred, double* sample_loss) override {
        record([=] { inner_->mse_loss(pred, target, batch, n_out, grad_scale, dL_dpred, sample_loss); });
    }
    void cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch, std::size_t n_classes,
                            float grad_scale, float* dL_dlogits, double* sample_loss,
                            std::uint32_t* sample_correct) override {
        record([=] {
            inner_->cross_entropy_loss(logits, labels, batch, n_classes, grad_scale, dL_dlogits, sample_loss,
                                       sample_correct);
        });
    }
    void sum(const double* x, std::size_t n, double* out) override { record([=] { inner_->sum(x, n, out); }); }
    void sum(const std::uint32_t* x, std::size_t n, std::uint64_t* out) override {
        record([=] { inner_->sum(x, n, out); });
    }
    void accumulate_step_loss(const double* batch_loss, std::size_t batch, StepState* state) override {
        record([=] { inner_->accumulate_step_loss(batch_loss, batch, state); });
    }
    void axpy(float a, const float* x, float* y, std::size_t n) override { record([=] { inner_->axpy(a, x, y, n); }); }
    void allreduce_sum(float* data, std::size_t n, Collective& group) override {
        direct("allreduce_sum");
        inner_->allreduce_sum(data, n, group);
    }
    // The layouts are the network's members, which outlive its graphs: taken by reference.
    void count_nonzero(const float* params, const ParamLayout& layout, std::uint64_t* layer_nnz) override {
        record([=, &layout] { inner_->count_nonzero(params, layout, layer_nnz); });
    }
    void prox_step(float* params, const float* grads, const ParamLayout& layout, const float* hyper,
                   const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        record([=, &layout] { inner_->prox_step(params, grads, layout, hyper, stop, layer_nnz); });
    }
    void prox_step_unfused(float* params, const float* grads, const ParamLayout& layout, const float* hyper,
                           std::uint64_t* layer_nnz) override {
        direct("prox_step_unfused");
        inner_->prox_step_unfused(params, grads, layout, hyper, layer_nnz);
    }
    void prox_optimizer_step(float* params, const float* grads, const opt::State& state, const ParamLayout& layout,
                             const float* hyper, const opt::Step& step, const std::int32_t* stop,
                             std::uint64_t* layer_nnz) override {
        direct("prox_optimizer_step");
        inner_->prox_optimizer_step(params, grads, state, layout, hyper, step, stop, layer_nnz);
    }
    void lazy_prox_step(float* params, float* z, const float* grads, const opt::State& state,
                        const ParamLayout& layout, const float* hyper, const opt::Step& step, const std::int32_t* stop,
                        std::uint64_t* layer_nnz) override {
        record([=, &layout] { inner_->lazy_prox_step(params, z, grads, state, layout, hyper, step, stop, layer_nnz); });
    }
    void stop_rule(StepState* state, const StopConfig* config, const std::uint64_t* targets,
                   const std::uint64_t* layer_nnz) override {
        record([=] { inner_->stop_rule(state, config, targets, layer_nnz); });
    }
    CandidateSet gradient_candidates(const float* grads, const ParamLayout& layout,
                                     const std::vector<std::size_t>& layers, float low, float up) override {
        return direct("gradient_candidates"), inner_->gradient_candidates(grads, layout, layers, low, up);
    }
    // The other methods never reach a recording (their steps do not qualify): a call during one
    // breaks it, and direct() says so.
    void l0_effective(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
                      const ParamLayout& layout, const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step,
                      float* eff, const std::int32_t* stop) override {
        direct("l0_effective");
        inner_->l0_effective(theta, log_alpha, gates, layout, hc, seed, step, eff, stop);
    }
    void l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
                   const sparsify::GateLayout& gates, const ParamLayout& layout, const gates::HardConcrete& hc,
                   std::uint64_t seed, std::uint64_t step, const float* hyper, const sparsify::AdamStep& adam,
                   const opt::State& theta_state, const opt::Step& opt_step, const std::int32_t* stop) override {
        direct("l0_update");
        inner_->l0_update(theta, log_alpha, adam_m, adam_v, grads, gates, layout, hc, seed, step, hyper, adam,
                          theta_state, opt_step, stop);
    }
    void l0_export(const float* theta, const float* log_alpha, const sparsify::GateLayout& gates,
                   const ParamLayout& layout, const gates::HardConcrete& hc, float* out, const std::int32_t* stop,
                   std::uint64_t* layer_nnz) override {
        direct("l0_export");
        inner_->l0_export(theta, log_alpha, gates, layout, hc, out, stop, layer_nnz);
    }
    void spred_split(const float* w, const ParamLayout& layout, float* u, float* v) override {
        direct("spred_split");
        inner_->spred_split(w, layout, u, v);
    }
    void spred_effective(const float* u, const float* v, const ParamLayout& layout, float* eff,
                         const std::int32_t* stop) override {
        direct("spred_effective");
        inner_->spred_effective(u, v, layout, eff, stop);
    }
    void spred_update(float* u, float* v, const float* grads, const ParamLayout& layout, const float* hyper,
                      const opt::State& u_state, const opt::State& v_state, const opt::Step& opt_step,
                      const std::int32_t* stop) override {
        direct("spred_update");
        inner_->spred_update(u, v, grads, layout, hyper, u_state, v_state, opt_step, stop);
    }
    void spred_export(const float* u, const float* v, const ParamLayout& layout, float threshold, float* out,
                      const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        direct("spred_export");
        inner_->spred_export(u, v, layout, threshold, out, stop, layer_nnz);
    }
    void masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const ParamLayout& layout,
                    const float* hyper, const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        direct("masked_sgd");
        inner_->masked_sgd(w, grads, mask, layout, hyper, stop, layer_nnz);
    }
    void masked_optimizer_step(float* w, const float* grads, const std::uint8_t* mask, const opt::State& state,
                               const ParamLayout& layout, const float* hyper, const opt::Step& step,
                               const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        direct("masked_optimizer_step");
        inner_->masked_optimizer_step(w, grads, mask, state, layout, hyper, step, stop, layer_nnz);
    }
    void gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout, const std::vector<std::size_t>& keep,
                   const std::int32_t* stop, std::uint64_t* layer_nnz) override {
        direct("gmp_prune");
        inner_->gmp_prune(w, mask, layout, keep, stop, layer_nnz);
    }

private:
    // An operation queued now: stored while recording, else run.
    void record(std::function<void()> call) {
        if (recording_) recording_->calls.push_back(std::move(call));
        else call();
    }
    // An operation that cannot be recorded: during a recording it breaks it, like a synchronizing
    // call in a CUDA stream capture.
    void direct(const char* what) {
        if (!recording_) return;
        broken_ = true;
        throw Error(std::string(what) + " cannot be recorded");
    }

    std::unique_ptr<Backend> inner_;
    bool fail_recordings_ = false;
    std::unique_ptr<RecordedGraph> recording_;
    bool broken_ = false;
};

// 24 steps: 16 of 32 rows, then 8 of 16 (a second batch size); an evaluation over all 96 rows
// after step 5 (it grows the batch buffers), the weight decay changed after step 9, the scratch
// epoch moved after step 12, the learning rate set before every step.
GraphRun run(bool graphs, const std::string& spec_text, bool classify, bool lazy,
             bool fail_recordings = false) {
    auto backend = std::make_unique<RecordingBackend>(fail_recordings);
    RecordingBackend* rec = backend.get();
    std::unique_ptr<Backend> b;
    if (graphs) b = std::move(backend);
    else b = make_cpu_backend();
    const ModelSpec spec = spec_text[0] == '{' ? ModelSpec::from_json(spec_text) : ModelSpec::parse(spec_text);
    const Model init = Model::initialize(spec, 3);
    Dataset data;
    data.name = "graphs";
    data.n_samples = 96;
    data.n_features = spec.n_inputs;
    data.n_outputs = spec.n_outputs();
    for (std::size_t i = 0; i < data.n_samples * data.n_features; ++i)
        data.x.push_back(static_cast<float>((i * 37) % 101) / 50.0f - 1.0f);
    if (classify) {
        data.task = Task::classification;
        for (std::size_t r = 0; r < data.n_samples; ++r) data.labels.push_back(static_cast<std::int32_t>(r % data.n_outputs));
    } else {
        data.task = Task::regression;
        for (std::size_t r = 0; r < data.n_samples * data.n_outputs; ++r)
            data.y.push_back(static_cast<float>((r * 13) % 29) / 14.0f - 1.0f);
    }
    TrainOptions opt;
    opt.method.l1.form = lazy ? L1Form::lazy : L1Form::greedy;
    opt.lambdas = {1e-3f};
    opt.steps = 24;
    auto engine = make_network(std::move(b), spec, classify ? Loss::cross_entropy : Loss::mse);
    engine->set_method(sparsify::make_method_config(opt, opt.steps));
    engine->set_optimizer(OptimizerOptions{});
    engine->set_params(init.slab());
    engine->set_hyper(0.05f, std::vector<float>(spec.n_weight_layers(), 1e-3f));
    engine->set_weight_decay(1e-4f);
    engine->set_train_data(data);
    std::vector<std::uint32_t> order(data.n_samples);
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::uint32_t>((i * 41) % data.n_samples);
    engine->set_order(order);
    for (std::size_t s = 0; s < opt.steps; ++s) {
        engine->set_lr(0.05f * (1.0f - 0.02f * static_cast<float>(s)));
        const std::size_t batch = s < 16 ? 32 : 16;
        engine->step((s * batch) % data.n_samples, batch);
        if (s == 5) engine->evaluate(data, 96);
        if (s == 9) engine->set_weight_decay(2e-4f);
        if (s == 12 && graphs) ++rec->scratch_epoch;
    }
    GraphRun r;
    r.status = engine->status();
    r.eval_loss = engine->evaluate(data, 40).loss;
    r.params = engine->get_params();
    r.accumulated = engine->get_accumulated();
    r.recordings = graphs ? rec->recordings : 0;
    return r;
}

const char* const kConv = R"({"input_shape": [2, 8, 8], "layers": [
    {"type": "conv2d", "filters": 4, "kernel": 3, "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel": 2}, {"type": "flatten"}, {"type": "dense", "units": 3}]})";

}  // namespace

TEST(StepGraphs, ReplayedStepsGiveTheBitsOfDirectSteps) {
    struct Case { const char* name; const char* spec; bool classify, lazy; };
    for (const Case& c : {Case{"dense greedy", "dense:6-20-10-1", false, false},
                          Case{"dense lazy", "dense:6-20-10-1", false, true}, Case{"conv", kConv, true, false}}) {
        SCOPED_TRACE(c.name);
        const GraphRun with = run(true, c.spec, c.classify, c.lazy);
        const GraphRun without = run(false, c.spec, c.classify, c.lazy);
        EXPECT_EQ(without.status.graph_steps, 0u);
        // Recorded at steps 1 (32 rows), after the evaluation (7), after the weight decay (11),
        // after the scratch epoch (14) and for 16 rows (17); each after one direct step of its kind
        // (0, 6, 10, 13, 16); the rest replayed.
        EXPECT_EQ(with.recordings, 5u);
        EXPECT_EQ(with.status.graph_steps, 24u - 5u);
        expect_same_runs(with, without);
    }
}

TEST(StepGraphs, AFailedRecordingLeavesTheStepsDirect) {
    const GraphRun failing = run(true, "dense:6-20-10-1", false, false, true);
    const GraphRun without = run(false, "dense:6-20-10-1", false, false);
    EXPECT_EQ(failing.recordings, 0u);
    EXPECT_EQ(failing.status.graph_steps, 0u);
    expect_same_runs(failing, without);
}

// A backend without the fused convolution and max-pool (this one, like CUDA, leaves
// has_conv2d_maxpool() false, so the conv case above runs the two operations) refuses the fused
// calls with an error that names the query, rather than running something else.
TEST(BackendDefaults, TheFusedConvPoolThrowsWhereTheBackendHasNone) {
    RecordingBackend b;
    ASSERT_FALSE(b.has_conv2d_maxpool());
    const ConvShape c{1, 1, 4, 4, 1, 3, 3, 1, 1, 1, 1};
    const PoolShape p{1, 1, 4, 4, 2, 2, 2, 2, 0, 0};
    std::vector<float> x(16), W(9), bias(1), pooled(4), dW(9), db(1);
    std::vector<std::int32_t> arg(4);
    for (int backward = 0; backward < 2; ++backward) {
        try {
            if (backward)
                b.conv2d_maxpool_backward(c, p, x.data(), W.data(), arg.data(), pooled.data(), dW.data(), db.data(),
                                          nullptr);
            else
                b.conv2d_maxpool_forward(c, p, x.data(), W.data(), bias.data(), pooled.data(), arg.data());
            ADD_FAILURE() << "no error (backward " << backward << ")";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("has_conv2d_maxpool() is false"), std::string::npos) << e.what();
        }
    }
}
