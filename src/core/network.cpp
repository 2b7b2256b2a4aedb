// The one network over any backend (core/network.h).
//
// Memory: parameters and gradients of all layers in one slab each (ParamLayout); activations and
// deltas grow to the largest batch seen; the method's own state (l0: theta, log alpha and Adam's
// moments; spred: u and v; gmp: the mask; the lazy l1 form: the accumulated weights z, copied
// from the parameters by set_params) in slabs beside them. lr and the lambdas, the stop
// rule, the step counter, the loss accumulator and the stop flag all live in backend memory, so
// a step queues its operations without a host round trip; the host reads the state only in
// status(), which the trainer calls every few dozen steps.
//
// The stop flag: the stop-rule operation sets it after the first step whose NNZ is in the band.
// A backend that can see the flag without waiting (the CPU) skips every later step; otherwise
// the step's passes still run, but the loss accumulator and every update operation test the flag
// and change nothing, so the parameters read back are those of the first in-band step.
//
// The methods (core/sparsify.h): params_ holds the exported weights between steps (what
// get_params, evaluate and gradient see, and what the stop rule counts); l0 and spred overwrite
// it with the effective weights before the forward pass and export again after their update.
// The l0 gate noise and Adam's step number come from the host's count of steps queued since
// set_params: until the stop flag is set every queued step is applied, so it equals the applied
// count (set_stop_rule, which can clear a stop, re-reads it). GMP's pruning steps are
// sparsify::gmp_keep of that count, decided on the host.
//
// The optimizer (core/optimizer.h): plain SGD runs the methods' own fused steps (prox_step,
// masked_sgd; l0 and spred with opt::kSgd), so the default is the paper's arithmetic exactly.
// The lazy l1 form has one operation for every kind (lazy_prox_step, sgd included).
// Any other kind keeps its state in opt_state_, slots x slab_size floats per trained slab (the
// parameters; for spred u and then v), zeroed by set_params; the step's constants (Adam's bias
// corrections, the momentum threshold scale) come from the same applied-step count.
//
// Step graphs (replay_or_record): on a backend that records them (CUDA with
// SPARSEPROX_CUDA_GRAPHS=1), a step whose operations never change between steps is recorded
// once per batch size and replayed; everything above that lives in backend memory is what
// makes that possible.
//
// Three layer patterns run otherwise than written, with the same results: a ReLU followed by a
// max-pool runs after the pool (relu_then_maxpool); the activation after a dense layer runs in
// that layer's products' pass, forward, and its derivative in the input gradient's pass of the
// next dense layer, backward (Backend::dense_forward, dense_backward); and on a backend that has
// it, a conv2d followed by a max-pool (directly or through such a ReLU) is one operation
// (Backend::conv2d_maxpool_forward, conv2d_maxpool_backward), which keeps each pooling window's
// winner instead of the convolution's output.
//
// Data-parallel (set_collective, core/collective.h): each rank runs the forward and backward
// passes on its share of the batch, and the gradient slab is summed over the group right after
// backward, before anything reads it (weight decay, the optimizer, the methods' updates), so
// every later operation sees the same slab on every rank and computes the same parameters, NNZ
// counts and stop flag without communicating.
#include "core/network.h"

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/band.h"
#include "core/layer_shapes.h"
#include "core/train_loop.h"
#include "sparseprox/error.h"
#include "sparseprox/stop.h"

namespace sparseprox {
namespace {

// Rows per forward pass of evaluate() and gradient() for models with image layers: a pass holds
// at most this many bytes of activations (CNN8 keeps ~0.6 MB per row: 4096 rows would be
// 2.5 GB). A pass boundary only moves where partial sums are split. Dense-only models keep the
// caller's chunk exactly.
constexpr std::size_t kPassBytes = std::size_t{512} << 20;

bool is_image_layer(LayerKind k) {
    return k == LayerKind::conv2d || k == LayerKind::maxpool2d || k == LayerKind::avgpool2d;
}

// A ReLU followed by a max-pool whose every window holds an input tap (padding below the window
// size) runs as the pool and then the ReLU: max and ReLU commute (relu(max(a, b)) is
// max(relu(a), relu(b)), bit for bit), and the ReLU then passes over a quarter of the values
// (2x2 pools) forward and backward. The gradient is the same too: where a window's maximum is
// positive both orders route the gradient to its first maximal tap; where it is not, both give
// zeros (the pool-first order puts the window's signed zero g * 0 on the largest tap instead of
// the first). Only ReLU: for other monotone activations rounding can tie taps that differ,
// moving the gradient to another tap.
bool relu_then_maxpool(const LayerSpec& act, const LayerSpec& pool) {
    return act.kind == LayerKind::activation && act.activation == Activation::relu &&
           pool.kind == LayerKind::maxpool2d && pool.pad_h < pool.kh && pool.pad_w < pool.kw;
}

class Network final : public Engine {
public:
    Network(std::unique_ptr<Backend> backend, const ModelSpec& spec, Loss loss)
        : backend_(std::move(backend)), spec_(validated(spec)), loss_(loss), layout_(ParamLayout::of(spec_)),
          n_layers_(layout_.segments.size()) {
        Backend& b = *backend_;
        std::size_t row_floats = spec_.n_inputs;
        max_width_ = spec_.n_inputs;
        bool image_layers = false;
        for (std::size_t k = 0; k < spec_.layers.size(); ++k) {
            const LayerSpec& l = spec_.layers[k];
            if (l.has_weights() && k < first_weight_layer_) first_weight_layer_ = k;
            if (l.kind != LayerKind::flatten) row_floats += l.n_out;
            max_width_ = std::max({max_width_, l.n_in, l.n_out});
            image_layers |= is_image_layer(l.kind);
        }
        pool_first_.assign(spec_.layers.size(), 0);
        for (std::size_t k = 0; k + 1 < spec_.layers.size(); ++k)
            pool_first_[k] = relu_then_maxpool(spec_.layers[k], spec_.layers[k + 1]) ? 1 : 0;
        conv_pool_.assign(spec_.layers.size(), 0);
        if (b.has_conv2d_maxpool())
            for (std::size_t k = 0; k + 1 < spec_.layers.size(); ++k) {
                if (spec_.layers[k].kind != LayerKind::conv2d) continue;
                if (spec_.layers[k + 1].kind == LayerKind::maxpool2d) conv_pool_[k] = 1;
                else if (pool_first_[k + 1]) conv_pool_[k] = 2;
            }
        row_floats += 2 * max_width_;  // delta_ and delta_prev_
        if (image_layers) {
            max_pass_rows_ = std::max<std::size_t>(1, kPassBytes / (sizeof(float) * row_floats));
            b.require_image_ops();
        }

        params_.allocate(b, layout_.slab_size);
        params_.zero();
        grads_.allocate(b, layout_.slab_size);
        grads_.zero();  // the padding between segments stays zero for good
        hyper_.allocate(b, 1 + n_layers_);
        hyper_.zero();
        state_.allocate(b, 1);
        state_.zero();
        stop_config_.allocate(b, 1);
        stop_config_.zero();  // n_targets = 0: no rule
        stop_targets_.allocate(b, std::max<std::size_t>(n_layers_, 1));
        stop_targets_.zero();
        layer_nnz_.allocate(b, std::max<std::size_t>(n_layers_, 1));
        layer_nnz_.zero();
        batch_loss_.allocate(b, 1);
        b.count_nonzero(params_.data(), layout_, layer_nnz_.data());
        b.synchronize();
    }

    ~Network() override {
        try {
            backend_->synchronize();  // queued work may still use the buffers about to be freed
        } catch (...) {
        }
    }

    std::string device_name() const override { return backend_->name(); }

    void set_method(const sparsify::MethodConfig& config) override { next_method_ = config; }

    void set_optimizer(const OptimizerOptions& options) override {
        options.validate();
        next_optimizer_ = options;
    }

    void set_params(const std::vector<float>& slab) override {
        if (slab.size() != layout_.slab_size)
            throw Error("parameter slab has " + std::to_string(slab.size()) + " floats, the model needs " +
                        std::to_string(layout_.slab_size));
        Backend& b = *backend_;
        ++graph_epoch_;  // the method, optimizer and their buffers may all change
        graph_steps_ = 0;
        params_.upload(slab.data(), slab.size());
        method_ = next_method_;
        optimizer_ = next_optimizer_;
        steps_queued_ = 0;
        // The optimizer's state: zero, one slot per parameter for momentum, two for Adam, per
        // trained slab (spred trains two).
        const std::size_t slots = static_cast<std::size_t>(opt::slots(static_cast<std::int32_t>(optimizer_.kind)));
        const std::size_t slabs = method_.method == Method::spred ? 2 : 1;
        ensure_size(opt_state_, slots * slabs * layout_.slab_size);
        opt_state_.zero();
        // The method's own parameters from the slab, then params_ and the NNZ from them (the
        // export here is unconditional: the stop flag of the previous run is cleared below).
        switch (method_.method) {
            case Method::l1:
                // The lazy form's accumulated weights z start as the given parameters.
                if (method_.l1_lazy) {
                    ensure_size(master_, layout_.slab_size);
                    b.copy(master_.data(), params_.data(), layout_.slab_size * sizeof(float));
                }
                b.count_nonzero(params_.data(), layout_, layer_nnz_.data());
                break;
            case Method::l0: {
                gates_ = sparsify::GateLayout::of(spec_, layout_, method_.l0);
                ensure_size(master_, layout_.slab_size);
                b.copy(master_.data(), params_.data(), layout_.slab_size * sizeof(float));
                std::vector<float> log_alpha(gates_.n_gates, 0.0f);
                for (const sparsify::GateSegment& g : gates_.segments)
                    std::fill_n(log_alpha.begin() + static_cast<std::ptrdiff_t>(g.gate_offset), g.n_gates, g.log_alpha0);
                ensure_size(log_alpha_, gates_.n_gates);
                ensure_size(adam_m_, gates_.n_gates);
                ensure_size(adam_v_, gates_.n_gates);
                log_alpha_.upload(log_alpha.data(), log_alpha.size());
                adam_m_.zero();
                adam_v_.zero();
                b.l0_export(master_.data(), log_alpha_.data(), gates_, layout_, method_.hc, params_.data(), nullptr,
                            layer_nnz_.data());
                break;
            }
            case Method::spred:
                ensure_size(master_, layout_.slab_size);
                ensure_size(aux_, layout_.slab_size);
                master_.zero();
                aux_.zero();
                b.spred_split(params_.data(), layout_, master_.data(), aux_.data());
                b.spred_export(master_.data(), aux_.data(), layout_, method_.threshold, params_.data(), nullptr,
                               layer_nnz_.data());
                break;
            case Method::gmp: {
                // Weights that are exact zeros start pruned (all are kept from a random init).
                ensure_size(mask_, layout_.slab_size);
                std::vector<std::uint8_t> keep(layout_.slab_size, 1);
                for (const ParamSegment& seg : layout_.segments)
                    for (std::size_t i = 0; i < seg.n_weights; ++i)
                        keep[seg.weight_offset + i] = slab[seg.weight_offset + i] != 0.0f ? 1 : 0;
                mask_.upload(keep.data(), keep.size());
                b.count_nonzero(params_.data(), layout_, layer_nnz_.data());
                break;
            }
        }
        state_.zero();  // a new run starts: step count, loss sums and stop flag
    }

    std::vector<float> get_params() override { return params_.to_host(); }

    void set_lazy_state(const std::vector<float>& params, const std::vector<float>& z) override {
        if (!(method_.method == Method::l1 && method_.l1_lazy))
            throw Error("set_lazy_state: the run is not under the lazy l1 form");
        if (params.size() != layout_.slab_size || z.size() != layout_.slab_size)
            throw Error("set_lazy_state: " + std::to_string(params.size()) + " parameters and " +
                        std::to_string(z.size()) + " accumulated values, the model needs " +
                        std::to_string(layout_.slab_size));
        params_.upload(params.data(), params.size());
        master_.upload(z.data(), z.size());
        backend_->count_nonzero(params_.data(), layout_, layer_nnz_.data());
    }

    std::vector<float> get_accumulated() override {
        return method_.method == Method::l1 && method_.l1_lazy ? master_.to_host() : params_.to_host();
    }

    void set_hyper(float lr, const std::vector<float>& lambdas) override {
        if (lambdas.size() != n_layers_)
            throw Error("set_hyper: " + std::to_string(lambdas.size()) + " lambdas for " + std::to_string(n_layers_) +
                        " weight layers");
        std::vector<float> hyper(1 + n_layers_);
        hyper[0] = lr;
        std::copy(lambdas.begin(), lambdas.end(), hyper.begin() + 1);
        hyper_.upload(hyper.data(), hyper.size());
    }

    void set_lr(float lr) override { hyper_.upload(&lr, 1); }

    void set_weight_decay(float wd) override {
        if (wd != weight_decay_) ++graph_epoch_;
        weight_decay_ = wd;
    }

    void set_stop_rule(const StopRule& rule) override {
        if (rule.targets.size() > stop_targets_.size()) {
            ++graph_epoch_;
            backend_->synchronize();  // the old array may still be read by queued stop rules
            stop_targets_.allocate(*backend_, rule.targets.size());
        }
        if (!rule.targets.empty()) {
            const std::vector<std::uint64_t> targets(rule.targets.begin(), rule.targets.end());
            stop_targets_.upload(targets.data(), targets.size());
        }
        const StopConfig config = stop_config(rule, n_layers_);
        stop_config_.upload(&config, 1);
        if (method_.method != Method::l1) {
            // Clearing a stop lets steps apply again: they must continue from the applied count,
            // not from the steps queued while frozen (see the file comment).
            StepState st;
            state_.download(&st, 1);
            steps_queued_ = static_cast<std::size_t>(st.steps);
        }
        backend_->fill_zero(stop_flag(), sizeof(std::int32_t));  // clears a previous stop
    }

    void set_collective(std::shared_ptr<Collective> group) override {
        ++graph_epoch_;
        group_ = group && group->size() > 1 ? std::move(group) : nullptr;
    }

    void set_train_data(const Dataset& data) override {
        check_data(data, "set_train_data");
        if (data.n_samples > std::numeric_limits<std::uint32_t>::max())
            throw Error("set_train_data: " + std::to_string(data.n_samples) +
                        " rows exceed the 2^32 - 1 that a uint32 epoch order can index");
        train_rows_ = backend_->stage_dataset(data);
        train_host_ = &data;
        train_host_x_ = data.x.data();
        n_train_ = data.n_samples;
        order_ = nullptr;
        order_size_ = 0;
    }

    void set_order(const std::vector<std::uint32_t>& order) override {
        if (!train_host_) throw Error("set_order: no training data set");
        for (std::uint32_t row : order)
            if (row >= n_train_)
                throw Error("set_order: row " + std::to_string(row) + " is outside the " + std::to_string(n_train_) +
                            " training rows");
        order_ = backend_->stage_order(order);
        order_size_ = order.size();
    }

    void step(std::size_t first, std::size_t count) override {
        Backend& b = *backend_;
        if (b.known_stopped(state_.data())) return;  // frozen at the first in-band iterate
        if (!train_host_) throw Error("step: no training data set");
        if (count == 0 || first + count > order_size_)
            throw Error("step: empty batch or batch beyond the epoch order");
        // Data-parallel: this rank's contiguous share [local_first, local_first + local) of the
        // global batch; the gradient is scaled by 1/count (the global batch) so that the sum over
        // the ranks is the one-process gradient. A rank whose share is empty (a batch smaller than
        // the group) adds a zero gradient and no loss.
        std::size_t local_first = first, local = count;
        if (group_) {
            const auto r = static_cast<std::size_t>(group_->rank()), p = static_cast<std::size_t>(group_->size());
            const std::size_t begin = count * r / p, end = count * (r + 1) / p;
            local_first = first + begin;
            local = end - begin;
        }
        reserve_rows(std::max<std::size_t>(local, 1));
        b.begin_step();
        const std::size_t n_in = spec_.n_inputs, n_out = spec_.n_outputs();
        const std::uint32_t* rows = order_ + local_first;
        if (local > 0) {
            b.gather_rows(train_rows_.x, n_in, rows, local, batch_x_.data());
            if (loss_ == Loss::mse) b.gather_rows(train_rows_.y, n_out, rows, local, batch_y_.data());
            else b.gather_labels(train_rows_.labels, rows, local, batch_labels_.data());
        }
        if (!replay_or_record(local, count)) queue_step(local, count);
        b.end_step();
        ++steps_queued_;
    }

    // Step graphs (Backend::graph_capture_begin). A step whose operations are the same every time
    // (l1 with plain SGD, one process, a whole batch: no host-side constant changes from step to
    // step) is recorded once per batch size, after one step of that size has run directly (it
    // sizes every lazily grown scratch), and replayed from then on; the batch's gather stays
    // outside, so a graph reads the same buffers every time. A graph is dropped when anything it
    // baked in may have changed: graph_epoch_ (set_params, the weight decay, the stop targets'
    // buffer, batch buffers grown, the data-parallel group) or the backend's scratch epoch. A
    // recording that fails turns graphs off for this network; the step then runs directly.
    // Returns true when the step was queued as a graph.
    bool replay_or_record(std::size_t local, std::size_t count) {
        Backend& b = *backend_;
        if (graphs_off_ || group_ || local != count || local == 0 || method_.method != Method::l1 ||
            optimizer_.kind != OptimizerKind::sgd)
            return false;
        const std::uint64_t scratch = b.graph_scratch_epoch();
        GraphSlot& slot = graphs_[count];
        if (slot.epoch != graph_epoch_ || slot.scratch_epoch != scratch) slot = GraphSlot{graph_epoch_, scratch, nullptr, 0};
        if (slot.graph) {
            b.graph_launch(*slot.graph);
            ++graph_steps_;
            return true;
        }
        if (slot.direct_steps++ == 0 || !b.graph_capture_begin()) return false;
        bool queued = true;
        try {
            queue_step(local, count);
        } catch (const Error&) {
            queued = false;  // an operation that cannot be recorded; the direct run says why, if it fails
        } catch (...) {
            b.graph_capture_end();  // never leave the backend recording
            throw;
        }
        std::unique_ptr<StepGraph> graph = b.graph_capture_end();
        if (!queued || !graph || b.graph_scratch_epoch() != scratch) {
            graphs_off_ = true;
            return false;
        }
        slot.graph = std::move(graph);
        b.graph_launch(*slot.graph);
        ++graph_steps_;
        return true;
    }

    // One step's operations after the batch's gather, from the effective weights to the stop rule.
    void queue_step(std::size_t local, std::size_t count) {
        Backend& b = *backend_;
        // params_ holds the exported weights between steps; l0 and spred train at effective ones.
        const std::int32_t* stop = stop_flag();
        const std::uint64_t step_index = steps_queued_;  // applied steps before this one (file comment)
        if (method_.method == Method::l0)
            b.l0_effective(master_.data(), log_alpha_.data(), gates_, layout_, method_.hc, method_.seed, step_index,
                           params_.data(), stop);
        else if (method_.method == Method::spred)
            b.spred_effective(master_.data(), aux_.data(), layout_, params_.data(), stop);

        if (local > 0) {
            forward(batch_x_.data(), local);
            loss_and_grad(batch_y_.data(), batch_labels_.data(), local, 1.0f / static_cast<float>(count), true,
                          sample_loss_.data(), nullptr);
            b.sum(sample_loss_.data(), local, batch_loss_.data());
            backward(batch_x_.data(), local, grads_.data());
        } else {
            b.fill_zero(batch_loss_.data(), sizeof(double));
            b.fill_zero(grads_.data(), layout_.slab_size * sizeof(float));
        }
        // This rank's loss sum over the global count: status() sums the ranks' accumulators.
        b.accumulate_step_loss(batch_loss_.data(), count, state_.data());
        // The one collective of a data-parallel step: the gradient slab summed over the group
        // (its padding is zero everywhere). Every rank then applies the same update.
        if (group_) b.allreduce_sum(grads_.data(), layout_.slab_size, *group_);
        // The weight decay enters the gradient, except adamw's, which the optimizer applies decoupled.
        if (weight_decay_ != 0.0f && optimizer_.kind != OptimizerKind::adamw)
            for (const ParamSegment& s : layout_.segments)
                b.axpy(weight_decay_, params_.data() + s.weight_offset, grads_.data() + s.weight_offset, s.n_weights);
        std::uint64_t* nnz = layer_nnz_.data();
        const bool sgd = optimizer_.kind == OptimizerKind::sgd;
        const opt::Step ostep = opt::make_step(optimizer_, weight_decay_, step_index + 1);
        switch (method_.method) {
            case Method::l1:
                if (method_.l1_lazy)
                    b.lazy_prox_step(params_.data(), master_.data(), grads_.data(), opt_state(0), layout_,
                                     hyper_.data(), ostep, stop, nnz);
                else if (sgd) b.prox_step(params_.data(), grads_.data(), layout_, hyper_.data(), stop, nnz);
                else b.prox_optimizer_step(params_.data(), grads_.data(), opt_state(0), layout_, hyper_.data(), ostep,
                                           stop, nnz);
                break;
            case Method::l0:
                b.l0_update(master_.data(), log_alpha_.data(), adam_m_.data(), adam_v_.data(), grads_.data(), gates_,
                            layout_, method_.hc, method_.seed, step_index, hyper_.data(),
                            sparsify::adam_step(method_.l0.gate_lr, step_index + 1), opt_state(0), ostep, stop);
                b.l0_export(master_.data(), log_alpha_.data(), gates_, layout_, method_.hc, params_.data(), stop, nnz);
                break;
            case Method::spred:
                b.spred_update(master_.data(), aux_.data(), grads_.data(), layout_, hyper_.data(), opt_state(0),
                               opt_state(1), ostep, stop);
                b.spred_export(master_.data(), aux_.data(), layout_, method_.threshold, params_.data(), stop, nnz);
                break;
            case Method::gmp: {
                if (sgd) b.masked_sgd(params_.data(), grads_.data(), mask_.data(), layout_, hyper_.data(), stop, nnz);
                else b.masked_optimizer_step(params_.data(), grads_.data(), mask_.data(), opt_state(0), layout_,
                                             hyper_.data(), ostep, stop, nnz);
                const std::vector<std::size_t> keep = sparsify::gmp_keep(method_, layout_, step_index + 1);
                if (!keep.empty()) b.gmp_prune(params_.data(), mask_.data(), layout_, keep, stop, nnz);
                break;
            }
        }
        b.stop_rule(state_.data(), stop_config_.data(), stop_targets_.data(), nnz);
    }

    EngineStatus status() override {
        StepState st;
        state_.download(&st, 1);
        std::vector<std::uint64_t> nnz(n_layers_);
        layer_nnz_.download(nnz.data(), n_layers_);
        // Reset the loss accumulator; queued after the copy, before any later step.
        auto* base = reinterpret_cast<unsigned char*>(state_.data());
        backend_->fill_zero(base + offsetof(StepState, loss_sum), sizeof(double) + sizeof(std::uint64_t));
        EngineStatus out;
        out.steps_run = static_cast<std::size_t>(st.steps);
        out.stopped = st.stopped != 0;
        out.nnz.assign(nnz.begin(), nnz.end());
        out.loss_sum = st.loss_sum;
        out.loss_count = static_cast<std::size_t>(st.loss_count);
        out.graph_steps = graph_steps_;
        // Every rank holds its rows' share of each step's mean loss (the count is the same on
        // every rank): their sum is the mean over the global batches. A NaN on any rank reaches
        // every rank, so all of them see a divergence together.
        // A stop request on any rank (sparseprox/stop.h) travels with it, so that every rank
        // ends the run at the same step.
        if (group_) {
            double sums[2] = {out.loss_sum, stop_requested() ? 1.0 : 0.0};
            group_->sum(sums, 2, "the loss all-reduce");
            out.loss_sum = sums[0];
            out.stop_requested = sums[1] > 0.0;
        } else {
            out.stop_requested = stop_requested();
        }
        return out;
    }

    Evaluation evaluate(const Dataset& data, std::size_t chunk) override {
        check_data(data, "evaluate");
        Evaluation e;
        const std::size_t n = data.n_samples;
        if (n == 0) {
            e.loss = std::numeric_limits<double>::quiet_NaN();
            return e;
        }
        chunk = std::min(std::max<std::size_t>(chunk, 1), max_pass_rows_);
        const std::size_t n_chunks = (n + chunk - 1) / chunk;
        const bool classify = loss_ == Loss::cross_entropy;
        reserve_rows(std::min(chunk, n));
        Buffer<double> chunk_loss(*backend_, n_chunks);
        Buffer<std::uint64_t> chunk_correct(*backend_, classify ? n_chunks : 0);
        // Data-parallel: chunk i is computed by rank i mod P; the others leave its sums at zero.
        const std::size_t n_ranks = group_ ? static_cast<std::size_t>(group_->size()) : 1;
        const std::size_t my_rank = group_ ? static_cast<std::size_t>(group_->rank()) : 0;
        chunk_loss.zero();
        if (classify) chunk_correct.zero();
        for (std::size_t i = 0, first = 0; first < n; ++i, first += chunk) {
            if (i % n_ranks != my_rank) continue;
            const std::size_t m = std::min(chunk, n - first);
            const StagedRows rows = rows_of(data, first, m);
            forward(rows.x, m);
            loss_and_grad(rows.y, rows.labels, m, 0.0f, false, sample_loss_.data(),
                          classify ? sample_correct_.data() : nullptr);
            backend_->sum(sample_loss_.data(), m, chunk_loss.data() + i);
            if (classify) backend_->sum(sample_correct_.data(), m, chunk_correct.data() + i);
        }
        std::vector<double> losses = chunk_loss.to_host();
        std::vector<std::uint64_t> corrects = classify ? chunk_correct.to_host() : std::vector<std::uint64_t>{};
        if (group_) {
            // One all-reduce of every chunk's sums (x + 0 == x exactly, and counts below 2^53 are
            // exact doubles): every rank gets the chunk sums one process computes.
            std::vector<double> sums(losses);
            for (std::uint64_t c : corrects) sums.push_back(static_cast<double>(c));
            group_->sum(sums.data(), sums.size(), "the evaluation all-reduce");
            std::copy_n(sums.begin(), n_chunks, losses.begin());
            for (std::size_t i = 0; i < corrects.size(); ++i) corrects[i] = static_cast<std::uint64_t>(sums[n_chunks + i]);
        }
        // Chunk sums added in order on the host: the same sum for the same chunking on every backend.
        double sum = 0.0;
        for (double v : losses) sum += v;
        e.loss = sum / static_cast<double>(n);
        if (classify) {
            std::uint64_t correct = 0;
            for (std::uint64_t c : corrects) correct += c;
            if (data.task == Task::classification) e.accuracy = static_cast<double>(correct) / static_cast<double>(n);
        }
        return e;
    }

    std::vector<float> predict(const Dataset& data, std::size_t chunk) override {
        if (data.n_features != spec_.n_inputs)
            throw Error("predict: data set '" + data.name + "' has " + std::to_string(data.n_features) +
                        " features, the model expects " + std::to_string(spec_.n_inputs));
        const std::size_t n = data.n_samples, n_out = spec_.n_outputs();
        if (data.x.size() != n * data.n_features) throw Error("predict: data set '" + data.name + "' has an x of the wrong size");
        std::vector<float> out(n * n_out);
        chunk = std::min(std::max<std::size_t>(chunk, 1), max_pass_rows_);
        if (n > 0) reserve_rows(std::min(chunk, n));
        for (std::size_t first = 0; first < n; first += chunk) {
            const std::size_t m = std::min(chunk, n - first);
            const StagedRows rows = rows_of(data, first, m);
            forward(rows.x, m);
            backend_->download(out.data() + first * n_out, outs_.back(), m * n_out * sizeof(float));
        }
        return out;
    }

    std::vector<float> gradient(const Dataset& data, std::size_t chunk) override {
        full_gradient(data, chunk);
        return grad_total_.to_host();
    }

    std::vector<CandidateSet> gradient_candidates(const Dataset& data, std::size_t chunk,
                                                  const std::vector<CandidateQuery>& queries) override {
        full_gradient(data, chunk);
        std::vector<CandidateSet> out;
        for (const CandidateQuery& q : queries)
            out.push_back(backend_->gradient_candidates(grad_total_.data(), layout_, q.layers, q.low, q.up));
        return out;
    }

private:
    static const ModelSpec& validated(const ModelSpec& spec) {
        spec.validate();
        return spec;
    }

    // The full-data mean gradient of the current parameters into grad_total_: each chunk's share
    // (grad_scale 1/N) computed into grads_ and added.
    void full_gradient(const Dataset& data, std::size_t chunk) {
        check_data(data, "gradient");
        chunk = std::min(std::max<std::size_t>(chunk, 1), max_pass_rows_);
        if (grad_total_.size() != layout_.slab_size) grad_total_.allocate(*backend_, layout_.slab_size);
        grad_total_.zero();
        grads_.zero();
        const std::size_t n = data.n_samples;
        const float scale = 1.0f / static_cast<float>(std::max<std::size_t>(n, 1));
        if (n > 0) reserve_rows(std::min(chunk, n));
        for (std::size_t first = 0; first < n; first += chunk) {
            const std::size_t m = std::min(chunk, n - first);
            const StagedRows rows = rows_of(data, first, m);
            forward(rows.x, m);
            loss_and_grad(rows.y, rows.labels, m, scale, true, sample_loss_.data(), nullptr);
            backward(rows.x, m, grads_.data());
            backend_->axpy(1.0f, grads_.data(), grad_total_.data(), layout_.slab_size);
        }
    }

    // Buffers of the method's state: (re)allocated only when their size changes (a new method or
    // gate layout); queued work of the previous run may still use the old ones.
    template <class T>
    void ensure_size(Buffer<T>& buffer, std::size_t n) {
        if (buffer.size() == n) return;
        backend_->synchronize();
        buffer.allocate(*backend_, n);
    }

    // The optimizer's state of trained slab k (0: the parameters, or l0's theta, or spred's u;
    // 1: spred's v): slots a and b, each slab_size floats, or null where the kind keeps none.
    opt::State opt_state(std::size_t k) {
        const std::size_t slots = static_cast<std::size_t>(opt::slots(static_cast<std::int32_t>(optimizer_.kind)));
        opt::State st;
        if (slots == 0) return st;
        float* base = opt_state_.data() + k * slots * layout_.slab_size;
        st.a = base;
        if (slots > 1) st.b = base + layout_.slab_size;
        return st;
    }

    std::int32_t* stop_flag() {
        return reinterpret_cast<std::int32_t*>(reinterpret_cast<unsigned char*>(state_.data()) +
                                               offsetof(StepState, stopped));
    }

    void check_data(const Dataset& data, const char* what) const {
        const std::size_t n = data.n_samples, n_out = spec_.n_outputs();
        auto fail = [&](const std::string& why) {
            throw Error(std::string(what) + ": data set '" + data.name + "' " + why);
        };
        if (data.n_features != spec_.n_inputs)
            fail("has " + std::to_string(data.n_features) + " features, the model expects " +
                 std::to_string(spec_.n_inputs));
        if (data.n_outputs != n_out)
            fail("has " + std::to_string(data.n_outputs) + " outputs, the model has " + std::to_string(n_out));
        if (data.x.size() != n * data.n_features) fail("has an x of the wrong size");
        if (loss_ == Loss::mse && data.y.size() != n * n_out) fail("has no regression targets for the MSE loss");
        if (loss_ == Loss::cross_entropy) {
            if (data.labels.size() != n) fail("has no class labels for the cross-entropy loss");
            for (std::int32_t label : data.labels)  // an out-of-range label would read past a logits row
                if (label < 0 || static_cast<std::size_t>(label) >= n_out)
                    fail("has label " + std::to_string(label) + " outside [0, " + std::to_string(n_out) + ")");
        }
    }

    // Rows [first, first + m) of `data` in backend memory: the staged copy when `data` is the
    // training set (the trainer evaluates it after training), else staged chunk by chunk.
    StagedRows rows_of(const Dataset& data, std::size_t first, std::size_t m) {
        if (&data == train_host_ && data.x.data() == train_host_x_ && data.n_samples == n_train_) {
            StagedRows r;
            r.x = train_rows_.x + first * spec_.n_inputs;
            if (train_rows_.y) r.y = train_rows_.y + first * spec_.n_outputs();
            if (train_rows_.labels) r.labels = train_rows_.labels + first;
            return r;
        }
        return backend_->stage_rows(data, first, m);
    }

    // Batch buffers for up to `rows` rows (grown, never shrunk).
    void reserve_rows(std::size_t rows) {
        if (rows <= capacity_) return;
        backend_->synchronize();  // queued work may still use the buffers being replaced
        ++graph_epoch_;
        Backend& b = *backend_;
        capacity_ = rows;
        const std::size_t n_out = spec_.n_outputs();
        batch_x_.allocate(b, rows * spec_.n_inputs);
        batch_y_.allocate(b, loss_ == Loss::mse ? rows * n_out : 0);
        batch_labels_.allocate(b, loss_ == Loss::cross_entropy ? rows : 0);
        acts_.resize(spec_.layers.size());
        pool_arg_.resize(spec_.layers.size());
        for (std::size_t k = 0; k < spec_.layers.size(); ++k) {
            // flatten layers output their input; a conv2d run with its max-pool keeps no output
            // but the winner of each pooling window
            const bool none = spec_.layers[k].kind == LayerKind::flatten || conv_pool_[k] != 0;
            acts_[k].allocate(b, none ? 0 : rows * spec_.layers[k].n_out);
            pool_arg_[k].allocate(b, conv_pool_[k] ? rows * spec_.layers[k + conv_pool_[k]].n_out : 0);
        }
        delta_.allocate(b, rows * max_width_);
        delta_prev_.allocate(b, rows * max_width_);
        std::size_t chain_width = 0;  // the input gradients inside runs of dense layers (backward())
        for (const LayerSpec& l : spec_.layers)
            if (l.kind == LayerKind::dense) chain_width += l.n_in;
        chain_delta_.allocate(b, rows * chain_width);
        sample_loss_.allocate(b, rows);
        sample_correct_.allocate(b, loss_ == Loss::cross_entropy ? rows : 0);
    }

    // outs_[k] is the output of layer k, (batch, n_out_k): acts_[k], or for a flatten layer its
    // input (flatten moves no data). The input x is the caller's.
    void forward(const float* x, std::size_t batch) {
        Backend& b = *backend_;
        outs_.resize(spec_.layers.size());
        const float* in = x;
        std::size_t seg = 0;
        const float* p = params_.data();
        for (std::size_t k = 0; k < spec_.layers.size(); ++k) {
            const LayerSpec& l = spec_.layers[k];
            if (l.kind == LayerKind::flatten) {
                outs_[k] = in;
                continue;
            }
            float* out = acts_[k].data();
            if (pool_first_[k]) {
                // relu_then_maxpool: the pool into the ReLU's buffer, then the ReLU into the
                // pool's. outs_[k] is then the pooled pre-activation, which backward() reads.
                const LayerSpec& pool = spec_.layers[k + 1];
                b.maxpool2d_forward(pool_shape(pool, batch), in, out);
                outs_[k] = out;
                float* relu_out = acts_[k + 1].data();
                b.activation_forward(l.activation, out, relu_out, batch * pool.n_out);
                outs_[++k] = relu_out;
                in = relu_out;
                continue;
            }
            switch (l.kind) {
                case LayerKind::dense: {
                    // The run of dense layers from here, each with the activation after it fused
                    // into its products' pass: one dense_forward_chain. A fused activation's
                    // output is outs_ of both layers, so backward() hands the activation f(x)
                    // where it asks for x, which gives each derivative unchanged
                    // (activation_fused_in_dense).
                    forward_links_.clear();
                    const std::size_t n = spec_.layers.size();
                    for (; k < n && spec_.layers[k].kind == LayerKind::dense; ++k) {
                        const LayerSpec& d = spec_.layers[k];
                        const ParamSegment& s = layout_.segments[seg++];
                        const bool fuse =
                            k + 1 < n && spec_.layers[k + 1].kind == LayerKind::activation && !pool_first_[k + 1];
                        out = acts_[k].data();
                        forward_links_.push_back({in, p + s.weight_offset, p + s.bias_offset, out, d.n_in, d.n_out,
                                                  fuse ? spec_.layers[k + 1].activation : Activation::identity});
                        outs_[k] = out;
                        if (fuse) outs_[++k] = out;
                        in = out;
                    }
                    b.dense_forward_chain(forward_links_, batch);
                    --k;  // the loop's ++k: the layer after the run
                    continue;
                }
                case LayerKind::conv2d: {
                    const ParamSegment& s = layout_.segments[seg++];
                    if (const std::size_t to_pool = conv_pool_[k]) {
                        // The convolution and its max-pool in one operation: the pooled values go
                        // where the pool (or, for a ReLU run after the pool, the ReLU) puts them.
                        const LayerSpec& pool = spec_.layers[k + to_pool];
                        float* pooled = acts_[k + 1].data();
                        b.conv2d_maxpool_forward(conv_shape(l, batch), pool_shape(pool, batch), in,
                                                 p + s.weight_offset, p + s.bias_offset, pooled, pool_arg_[k].data());
                        outs_[k] = nullptr;  // not kept
                        outs_[k + 1] = pooled;
                        in = pooled;
                        if (to_pool == 2) {  // then the ReLU into the pool's buffer, as relu_then_maxpool
                            float* relu_out = acts_[k + 2].data();
                            b.activation_forward(spec_.layers[k + 1].activation, pooled, relu_out, batch * pool.n_out);
                            outs_[k + 2] = relu_out;
                            in = relu_out;
                        }
                        k += to_pool;
                        continue;
                    }
                    b.conv2d_forward(conv_shape(l, batch), in, p + s.weight_offset, p + s.bias_offset, out);
                    break;
                }
                case LayerKind::maxpool2d: b.maxpool2d_forward(pool_shape(l, batch), in, out); break;
                case LayerKind::avgpool2d: b.avgpool2d_forward(pool_shape(l, batch), in, out); break;
                case LayerKind::activation: b.activation_forward(l.activation, in, out, batch * l.n_out); break;
                case LayerKind::flatten: break;
            }
            outs_[k] = out;
            in = out;
        }
    }

    // Per-sample losses into sample_loss; the gradient w.r.t. the network output into delta_.
    void loss_and_grad(const float* y, const std::int32_t* labels, std::size_t batch, float grad_scale, bool want_grad,
                       double* sample_loss, std::uint32_t* sample_correct) {
        const float* out = outs_.back();
        const std::size_t n_out = spec_.n_outputs();
        float* d = want_grad ? delta_.data() : nullptr;
        if (loss_ == Loss::mse) {
            if (!y) throw Error("MSE loss needs regression targets");
            backend_->mse_loss(out, y, batch, n_out, grad_scale, d, sample_loss);
        } else {
            if (!labels) throw Error("cross-entropy loss needs class labels");
            backend_->cross_entropy_loss(out, labels, batch, n_out, grad_scale, d, sample_loss, sample_correct);
        }
    }

    // Back-propagates delta_ through every layer, writing parameter gradients into `grads`. Stops
    // at the first weight layer: nothing before it has parameters, so dL_dx is not needed there.
    void backward(const float* x, std::size_t batch, float* grads) {
        Backend& b = *backend_;
        float* delta = delta_.data();
        float* delta_prev = delta_prev_.data();
        const float* p = params_.data();
        std::size_t seg = n_layers_;
        for (std::size_t k = spec_.layers.size(); k-- > first_weight_layer_;) {
            const LayerSpec& l = spec_.layers[k];
            const float* in = k == 0 ? x : outs_[k - 1];
            const bool want_dx = k > first_weight_layer_;
            if (k > 0 && pool_first_[k - 1]) {
                // relu_then_maxpool, second of the pair: the ReLU on the pooled values, in place.
                b.activation_backward(spec_.layers[k - 1].activation, outs_[k - 1], outs_[k], delta, delta,
                                      batch * l.n_out);
                continue;
            }
            if (k > 0 && conv_pool_[k - 1]) continue;  // the max-pool of conv layer k - 1: done with it
            if (pool_first_[k]) {
                // First of the pair: the pool, from the ReLU's input to the pooled values.
                b.maxpool2d_backward(pool_shape(spec_.layers[k + 1], batch), in, outs_[k], delta, delta_prev);
                std::swap(delta, delta_prev);
                continue;
            }
            switch (l.kind) {
                case LayerKind::dense: {
                    // The run of dense layers from here down (an activation between two of them
                    // fused into the input gradient's pass of the one above it): one
                    // dense_backward_chain. Inside the run each layer's input gradient gets a
                    // buffer of its own (chain_delta_), since every one of them is still read
                    // for the weight gradient after the layers below; the bottom one goes into
                    // delta_prev as before.
                    backward_links_.clear();
                    float* spare = chain_delta_.data();
                    const float* dy = delta;
                    bool fuse = false;
                    for (std::size_t j = k;; j = fuse ? j - 2 : j - 1) {
                        const LayerSpec& d = spec_.layers[j];
                        const ParamSegment& s = layout_.segments[--seg];
                        const bool dx = j > first_weight_layer_;
                        // An activation before the layer: its derivative goes into the input
                        // gradient's pass, and its own backward step is skipped.
                        fuse = dx && spec_.layers[j - 1].kind == LayerKind::activation;
                        const std::size_t below = fuse ? j - 2 : j - 1;
                        const bool more = dx && below < j && below >= first_weight_layer_ &&
                                          spec_.layers[below].kind == LayerKind::dense;
                        float* dx_out = !dx ? nullptr : more ? spare : delta_prev;
                        DenseBackwardLink link;
                        link.x = j == 0 ? x : outs_[j - 1];
                        link.W = p + s.weight_offset;
                        link.dL_dy = dy;
                        link.dL_dW = grads + s.weight_offset;
                        link.dL_db = grads + s.bias_offset;
                        link.dL_dx = dx_out;
                        link.n_in = d.n_in;
                        link.n_out = d.n_out;
                        if (fuse) {
                            link.act = spec_.layers[j - 1].activation;
                            link.act_x = j - 1 == 0 ? x : outs_[j - 2];
                            link.act_y = outs_[j - 1];
                        }
                        backward_links_.push_back(link);
                        k = j;
                        if (!more) break;
                        dy = spare;
                        spare += batch * d.n_in;
                    }
                    b.dense_backward_chain(backward_links_, batch);
                    if (fuse) {
                        std::swap(delta, delta_prev);
                        --k;  // the activation, done
                        continue;
                    }
                    if (k > first_weight_layer_) std::swap(delta, delta_prev);
                    continue;
                }
                case LayerKind::conv2d: {
                    const ParamSegment& s = layout_.segments[--seg];
                    if (const std::size_t to_pool = conv_pool_[k]) {
                        // delta holds the gradient of the pooled values (after the ReLU's, for a
                        // ReLU run after the pool).
                        b.conv2d_maxpool_backward(conv_shape(l, batch), pool_shape(spec_.layers[k + to_pool], batch),
                                                  in, p + s.weight_offset, pool_arg_[k].data(), delta,
                                                  grads + s.weight_offset, grads + s.bias_offset,
                                                  want_dx ? delta_prev : nullptr);
                        break;
                    }
                    b.conv2d_backward(conv_shape(l, batch), in, p + s.weight_offset, delta, grads + s.weight_offset,
                                      grads + s.bias_offset, want_dx ? delta_prev : nullptr);
                    break;
                }
                case LayerKind::maxpool2d:
                    b.maxpool2d_backward(pool_shape(l, batch), in, outs_[k], delta, delta_prev);
                    break;
                case LayerKind::avgpool2d:
                    b.avgpool2d_backward(pool_shape(l, batch), in, outs_[k], delta, delta_prev);
                    break;
                case LayerKind::activation:
                    b.activation_backward(l.activation, in, outs_[k], delta, delta, batch * l.n_out);
                    continue;  // in place
                case LayerKind::flatten: continue;  // the same rows, read as (batch, c*h*w)
            }
            if (want_dx) std::swap(delta, delta_prev);
        }
    }

    std::unique_ptr<Backend> backend_;  // first: built first, destroyed last
    std::shared_ptr<Collective> group_;  // data-parallel group (null: one process)
    ModelSpec spec_;
    Loss loss_;
    ParamLayout layout_;
    std::size_t n_layers_ = 0;  // weight layers
    std::size_t max_width_ = 0;
    std::size_t first_weight_layer_ = std::numeric_limits<std::size_t>::max();  // index into spec_.layers
    std::size_t max_pass_rows_ = std::numeric_limits<std::size_t>::max();

    Buffer<float> params_, grads_, grad_total_;    // (slab_size) each
    sparsify::MethodConfig next_method_;           // set_method: for the next set_params
    sparsify::MethodConfig method_;                // the method of the current run
    sparsify::GateLayout gates_;                   // l0
    Buffer<float> master_;                         // l0: theta; spred: u; lazy l1: z (slab layout)
    Buffer<float> aux_;                            // spred: v (slab layout)
    Buffer<float> log_alpha_, adam_m_, adam_v_;    // l0: (n_gates) each
    Buffer<std::uint8_t> mask_;                    // gmp: 1 = kept (slab layout)
    OptimizerOptions next_optimizer_;              // set_optimizer: for the next set_params
    OptimizerOptions optimizer_;                   // the optimizer of the current run
    Buffer<float> opt_state_;                      // its state (opt_state())
    std::size_t steps_queued_ = 0;                 // steps queued since set_params (file comment)
    Buffer<float> hyper_;                          // [lr, lambda_0, ...]
    float weight_decay_ = 0.0f;
    Buffer<StepState> state_;                      // (1)
    Buffer<StopConfig> stop_config_;               // (1)
    Buffer<std::uint64_t> stop_targets_;           // (n_targets)
    Buffer<std::uint64_t> layer_nnz_;              // (n_layers) after the last applied step
    Buffer<double> batch_loss_;                    // (1)

    const Dataset* train_host_ = nullptr;
    const float* train_host_x_ = nullptr;
    std::size_t n_train_ = 0;
    StagedRows train_rows_;
    const std::uint32_t* order_ = nullptr;         // the epoch order, staged
    std::size_t order_size_ = 0;

    std::size_t capacity_ = 0;                     // rows the batch buffers hold
    Buffer<float> batch_x_, batch_y_;              // (rows, n_in), (rows, n_out)
    Buffer<std::int32_t> batch_labels_;            // (rows)
    std::vector<Buffer<float>> acts_;              // per layer (rows, n_out_k); empty for flatten and conv_pool_
    std::vector<Buffer<std::int32_t>> pool_arg_;   // per conv_pool_ layer: each pooling window's winner
    std::vector<const float*> outs_;               // per layer: its output rows (set by forward)
    struct GraphSlot {
        std::uint64_t epoch = 0;            // graph_epoch_ when made
        std::uint64_t scratch_epoch = 0;    // the backend's graph_scratch_epoch() when made
        std::unique_ptr<StepGraph> graph;   // null until recorded
        std::size_t direct_steps = 0;       // steps of this size run directly at this epoch
    };
    std::map<std::size_t, GraphSlot> graphs_;  // by batch size (replay_or_record)
    std::uint64_t graph_epoch_ = 1;
    bool graphs_off_ = false;
    std::size_t graph_steps_ = 0;  // EngineStatus::graph_steps
    std::vector<char> pool_first_;                 // per layer: a ReLU run after its max-pool (relu_then_maxpool)
    // per conv2d layer k: 0, or the distance to the max-pool it runs with (Backend::
    // conv2d_maxpool_forward): 1 for a pool right after it, 2 for a ReLU then a pool (pool_first_)
    std::vector<std::size_t> conv_pool_;
    Buffer<float> delta_, delta_prev_;             // (rows, max_width)
    Buffer<float> chain_delta_;                    // (rows, sum of the dense layers' n_in): backward()
    std::vector<DenseForwardLink> forward_links_;  // forward(): a run of dense layers
    std::vector<DenseBackwardLink> backward_links_;
    Buffer<double> sample_loss_;                   // (rows)
    Buffer<std::uint32_t> sample_correct_;         // (rows)
};

}  // namespace

std::unique_ptr<Engine> make_network(std::unique_ptr<Backend> backend, const ModelSpec& spec, Loss loss) {
    return std::make_unique<Network>(std::move(backend), spec, loss);
}

std::unique_ptr<Engine> make_cpu_engine(const ModelSpec& spec, Loss loss) {
    return make_network(make_cpu_backend(), spec, loss);
}

std::unique_ptr<Engine> make_cuda_engine(const ModelSpec& spec, Loss loss, int device_index) {
    return make_network(make_cuda_backend(device_index), spec, loss);
}

std::unique_ptr<Engine> make_engine(const Device& device, const ModelSpec& spec, Loss loss) {
    if (device.kind == DeviceKind::cpu) return make_cpu_engine(spec, loss);
    return make_cuda_engine(spec, loss, device.index);
}

}  // namespace sparseprox
