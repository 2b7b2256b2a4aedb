// The CUDA engine: Algorithm 3's step entirely on the device, mirroring cpu/cpu_engine.cpp.
//
// Memory: parameters and gradients of all layers in one slab each (ParamLayout, as on the host);
// the training set is uploaded once; batch buffers grow to the largest batch seen. A step queues
// gather -> forward (cuBLAS + bias + activation) -> loss and its gradient -> backward -> fused
// prox step -> per-layer count -> stop rule, with no host synchronization: lr, lambdas, the stop
// rule, the step counter, the loss accumulator and the stop flag all live on the device. The
// host reads them only in status(), which the trainer calls every few dozen steps.
//
// Image layers (conv2d, max/avg pooling) run through the cuDNN twins of cuda/cudnn_ops.h; a
// flatten layer moves no data (its output is its input, read as (batch, c*h*w) rows). A model
// with image layers needs a build with cuDNN: the engine checks at construction.
//
// The stop flag: the stop-rule kernel sets it after the first step whose NNZ is in the band.
// Every later step still runs its forward and backward passes (the host does not know yet), but
// the loss accumulator and the fused prox kernel test the flag and change nothing, so the
// parameters read back are those of the first in-band step and the step count stops there.
//
// The other methods (core/sparsify.h) run through the kernels of kernels/sparsify.cu, mirroring
// cpu/cpu_engine.cpp: params_ holds the exported weights between steps (what get_params,
// evaluate and gradient see, and what the stop rule counts); l0 and spred overwrite it with the
// effective weights before the forward pass and export again after their update. Every one of
// these kernels tests the stop flag too (the effective-weight kernels included, so a frozen
// params_ keeps the exported weights). The l0 gate noise and Adam's step number come from the
// host's count of steps queued since set_params: until the stop flag is set every queued step
// is applied, so it equals the device's count (set_stop_rule, which can clear a stop, re-reads
// the device count); after the stop nothing changes whatever the count. GMP's pruning steps are
// sparsify::gmp_keep of that count, decided on the host.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "core/backend_query.h"
#include "core/engine.h"
#include "core/layer_shapes.h"
#include "cuda/common.h"
#include "cuda/context.h"
#include "cuda/cudnn_ops.h"
#include "cuda/ops.h"
#include "cuda/step_state.h"
#include "kernels/gather.cuh"
#include "kernels/loss.cuh"
#include "kernels/prox_step.cuh"
#include "kernels/sparsify.cuh"
#include "sparseprox/error.h"

namespace sparseprox {
namespace cuda {
namespace {

static_assert(offsetof(StepState, loss_count) == offsetof(StepState, loss_sum) + sizeof(double),
              "status() resets loss_sum and loss_count with one memset");

// Uploads of the epoch order go through page-locked staging buffers, so the copy is truly
// asynchronous (from pageable memory the driver may synchronize the stream). A slot is reused
// only after its previous copy has left, so the host can run this many epochs ahead.
constexpr std::size_t kOrderSlots = 3;

class CudaEngine final : public Engine {
public:
    CudaEngine(const ModelSpec& spec, Loss loss, int device_index)
        : spec_(spec), loss_(loss), layout_(ParamLayout::of(spec)), n_layers_(layout_.segments.size()),
          ctx_(device_index), prox_(layout_, ctx_.stream()), sparsify_(layout_, ctx_.stream()) {
        if (spec_.layers.empty()) throw Error("CUDA engine: the model has no layers");
        spec_.validate();
        const cudaStream_t s = ctx_.stream();
        max_width_ = spec_.n_inputs;
        bool image_layers = false;
        for (std::size_t k = 0; k < spec_.layers.size(); ++k) {
            const LayerSpec& l = spec_.layers[k];
            max_width_ = std::max({max_width_, l.n_in, l.n_out});
            if (l.has_weights() && k < first_weight_layer_) first_weight_layer_ = k;
            image_layers |= l.kind == LayerKind::conv2d || l.kind == LayerKind::maxpool2d ||
                            l.kind == LayerKind::avgpool2d;
        }
        if (image_layers) {
            // Created now rather than at the first step: a build without cuDNN, or a cuDNN that
            // cannot start, fails here with the reason instead of in the middle of a run.
            try {
                ctx_.cudnn();
            } catch (const Error& e) {
                throw Error("cuda:" + std::to_string(device_index) +
                            ": the model has conv2d/pooling layers, which need cuDNN: " + e.what());
            }
        }
        params_.allocate(layout_.slab_size);
        params_.fill_zero(s);
        grads_.allocate(layout_.slab_size);
        grads_.fill_zero(s);  // the padding between segments stays zero for good
        hyper_.allocate(1 + n_layers_);
        hyper_.fill_zero(s);
        state_.allocate(1);
        state_.fill_zero(s);
        stop_config_.allocate(1);
        stop_config_.fill_zero(s);  // n_targets = 0: no rule
        stop_targets_.allocate(std::max<std::size_t>(n_layers_, 1));
        batch_loss_.allocate(1);
        eval_loss_sum_.allocate(1);
        eval_correct_sum_.allocate(1);
        state_host_.allocate(1);
        nnz_host_.allocate(std::max<std::size_t>(n_layers_, 1));
        prox_.count(params_.data(), s);
        ctx_.synchronize();
    }

    ~CudaEngine() override {
        // Queued kernels may still use the buffers about to be freed.
        cudaSetDevice(ctx_.device());
        cudaStreamSynchronize(ctx_.stream());
    }

    std::string device_name() const override { return "cuda:" + std::to_string(ctx_.device()); }

    void set_method(const sparsify::MethodConfig& config) override { next_method_ = config; }

    void set_params(const std::vector<float>& slab) override {
        if (slab.size() != layout_.slab_size)
            throw Error("parameter slab has " + std::to_string(slab.size()) + " floats, the model needs " +
                        std::to_string(layout_.slab_size));
        ctx_.activate();
        const cudaStream_t s = ctx_.stream();
        params_.copy_from_host(slab.data(), slab.size(), s);
        method_ = next_method_;
        steps_queued_ = 0;
        // The method's own parameters from the slab, then params_ and the NNZ from them (the
        // export here is unconditional: the stop flag of the previous run is cleared below).
        switch (method_.method) {
            case Method::l1: prox_.count(params_.data(), s); break;
            case Method::l0: {
                gates_ = sparsify::GateLayout::of(spec_, layout_, method_.l0);
                sparsify_.set_gates(gates_, s);
                ensure_size(master_, layout_.slab_size);
                SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(master_.data(), params_.data(), params_.bytes(),
                                                      cudaMemcpyDeviceToDevice, s));
                std::vector<float> log_alpha(gates_.n_gates, 0.0f);
                for (const sparsify::GateSegment& g : gates_.segments)
                    std::fill_n(log_alpha.begin() + static_cast<std::ptrdiff_t>(g.gate_offset), g.n_gates, g.log_alpha0);
                ensure_size(log_alpha_, gates_.n_gates);
                ensure_size(adam_m_, gates_.n_gates);
                ensure_size(adam_v_, gates_.n_gates);
                log_alpha_.copy_from_host(log_alpha.data(), log_alpha.size(), s);
                adam_m_.fill_zero(s);
                adam_v_.fill_zero(s);
                sparsify_.l0_export(master_.data(), log_alpha_.data(), method_.hc, params_.data(), nullptr, s);
                break;
            }
            case Method::spred:
                ensure_size(master_, layout_.slab_size);
                ensure_size(aux_, layout_.slab_size);
                master_.fill_zero(s);
                aux_.fill_zero(s);
                sparsify_.spred_split(params_.data(), master_.data(), aux_.data(), s);
                sparsify_.spred_export(master_.data(), aux_.data(), method_.threshold, params_.data(), nullptr, s);
                break;
            case Method::gmp:
                // Weights that are exact zeros start pruned (all are kept from a random init).
                ensure_size(mask_, layout_.slab_size);
                if (!mask_.empty()) {
                    std::vector<std::uint8_t> keep(layout_.slab_size, 1);
                    for (const ParamSegment& seg : layout_.segments)
                        for (std::size_t i = 0; i < seg.n_weights; ++i)
                            keep[seg.weight_offset + i] = slab[seg.weight_offset + i] != 0.0f ? 1 : 0;
                    mask_.copy_from_host(keep.data(), keep.size(), s);
                    SPARSEPROX_CUDA_CHECK(cudaStreamSynchronize(s));  // `keep` is a local
                }
                sparsify_.count(params_.data(), s);
                break;
        }
        state_.fill_zero(s);  // a new run starts: step count, loss sums and stop flag
    }

    std::vector<float> get_params() override {
        ctx_.activate();
        std::vector<float> slab(layout_.slab_size);
        params_.copy_to_host(slab.data(), slab.size(), ctx_.stream());
        ctx_.synchronize();
        return slab;
    }

    void set_hyper(float lr, const std::vector<float>& lambdas) override {
        if (lambdas.size() != n_layers_)
            throw Error("set_hyper: " + std::to_string(lambdas.size()) + " lambdas for " + std::to_string(n_layers_) +
                        " weight layers");
        ctx_.activate();
        const std::vector<float> hyper = hyper_array(lr, lambdas.data(), n_layers_);
        hyper_.copy_from_host(hyper.data(), hyper.size(), ctx_.stream());
    }

    void set_weight_decay(float wd) override { weight_decay_ = wd; }

    void set_stop_rule(const StopRule& rule) override {
        ctx_.activate();
        const cudaStream_t s = ctx_.stream();
        StopConfig config;
        config.n_targets = static_cast<std::uint32_t>(rule.targets.size());
        config.n_layers = static_cast<std::uint32_t>(n_layers_);
        config.min_layers = rule.min_layers;
        config.tolerance = rule.tolerance;
        if (!rule.targets.empty()) {
            if (rule.targets.size() > stop_targets_.size()) {
                ctx_.synchronize();  // the old array may still be read by queued stop kernels
                stop_targets_.allocate(rule.targets.size());
            }
            const std::vector<unsigned long long> targets(rule.targets.begin(), rule.targets.end());
            stop_targets_.copy_from_host(targets.data(), targets.size(), s);
        }
        stop_config_.copy_from_host(&config, 1, s);
        if (method_.method != Method::l1) {
            // Clearing a stop lets steps apply again: they must continue from the applied count,
            // not from the steps queued while frozen (see the file comment).
            state_.copy_to_host(state_host_.data(), 1, s);
            ctx_.synchronize();
            steps_queued_ = static_cast<std::size_t>(state_host_[0].steps);
        }
        SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(stop_flag(), 0, sizeof(std::int32_t), s));  // clears a previous stop
    }

    void set_train_data(const Dataset& data) override {
        check_data(data, "set_train_data");
        if (data.n_samples > std::numeric_limits<std::uint32_t>::max())
            throw Error("set_train_data: " + std::to_string(data.n_samples) +
                        " rows exceed the 2^32 - 1 that a uint32 epoch order can index");
        // The same, unchanged set again (every run of a lambda search): already on the device.
        if (&data == train_host_ && data.x.data() == train_host_x_ && data.n_samples == n_train_) return;
        ctx_.activate();
        ctx_.synchronize();  // the old training set may still be read by queued steps
        const cudaStream_t s = ctx_.stream();
        train_x_.allocate(data.x.size());
        train_x_.copy_from_host(data.x.data(), data.x.size(), s);
        train_y_.allocate(loss_ == Loss::mse ? data.y.size() : 0);
        train_y_.copy_from_host(data.y.data(), train_y_.size(), s);
        train_labels_.allocate(loss_ == Loss::cross_entropy ? data.labels.size() : 0);
        train_labels_.copy_from_host(data.labels.data(), train_labels_.size(), s);
        train_host_ = &data;
        train_host_x_ = data.x.data();
        n_train_ = data.n_samples;
        order_host_.clear();
    }

    void set_order(const std::vector<std::uint32_t>& order) override {
        if (!train_host_) throw Error("set_order: no training data set");
        if (order == order_host_) return;  // unchanged (the full-batch trainer repeats it every epoch)
        for (std::uint32_t row : order)
            if (row >= n_train_)
                throw Error("set_order: row " + std::to_string(row) + " is outside the " + std::to_string(n_train_) +
                            " training rows");
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
    }

    void step(std::size_t first, std::size_t count) override {
        if (!train_host_) throw Error("step: no training data set");
        if (first + count > order_host_.size()) throw Error("step: batch beyond the epoch order");
        if (count == 0) throw Error("step: empty batch");
        ctx_.activate();
        reserve_rows(count);
        const cudaStream_t s = ctx_.stream();
        const std::uint32_t* rows = order_.data() + first;
        const std::size_t n_in = spec_.n_inputs, n_out = spec_.n_outputs();
        launch_gather_rows(train_x_.data(), n_in, rows, count, batch_x_.data(), s);
        if (loss_ == Loss::mse) launch_gather_rows(train_y_.data(), n_out, rows, count, batch_y_.data(), s);
        else launch_gather_rows(train_labels_.data(), 1, rows, count, batch_labels_.data(), s);

        // params_ holds the exported weights between steps; l0 and spred train at effective ones.
        const std::int32_t* stop = stop_flag();
        const std::uint64_t step_index = steps_queued_;  // applied steps before this one (file comment)
        if (method_.method == Method::l0)
            sparsify_.l0_effective(master_.data(), log_alpha_.data(), method_.hc, method_.seed, step_index,
                                   params_.data(), stop, s);
        else if (method_.method == Method::spred)
            sparsify_.spred_effective(master_.data(), aux_.data(), params_.data(), stop, s);

        forward(batch_x_.data(), count);
        loss_and_grad(batch_y_.data(), batch_labels_.data(), count, 1.0f / static_cast<float>(count), true,
                      sample_loss_.data(), nullptr);
        launch_sum(sample_loss_.data(), count, batch_loss_.data(), sum_temp_.data(), sum_temp_.bytes(), s);
        launch_accumulate_step_loss(batch_loss_.data(), count, state_.data(), s);
        backward(batch_x_.data(), count, false);
        add_weight_decay(ctx_, grads_.data(), params_.data(), layout_, weight_decay_);
        switch (method_.method) {
            case Method::l1: prox_.step(params_.data(), grads_.data(), hyper_.data(), stop, s); break;
            case Method::l0:
                sparsify_.l0_update(master_.data(), log_alpha_.data(), adam_m_.data(), adam_v_.data(), grads_.data(),
                                    method_.hc, method_.seed, step_index, hyper_.data(),
                                    sparsify::adam_step(method_.l0.gate_lr, step_index + 1), stop, s);
                sparsify_.l0_export(master_.data(), log_alpha_.data(), method_.hc, params_.data(), stop, s);
                break;
            case Method::spred:
                sparsify_.spred_update(master_.data(), aux_.data(), grads_.data(), hyper_.data(), stop, s);
                sparsify_.spred_export(master_.data(), aux_.data(), method_.threshold, params_.data(), stop, s);
                break;
            case Method::gmp: {
                sparsify_.masked_sgd(params_.data(), grads_.data(), mask_.data(), hyper_.data(), stop, s);
                const std::vector<std::size_t> keep = sparsify::gmp_keep(method_, layout_, step_index + 1);
                if (!keep.empty()) sparsify_.gmp_prune(params_.data(), mask_.data(), keep, stop, s);
                break;
            }
        }
        launch_stop_rule(state_.data(), stop_config_.data(), stop_targets_.data(), layer_nnz(), s);
        ++steps_queued_;
    }

    EngineStatus status() override {
        ctx_.activate();
        const cudaStream_t s = ctx_.stream();
        state_.copy_to_host(state_host_.data(), 1, s);
        if (n_layers_ > 0)
            SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(nnz_host_.data(), layer_nnz(),
                                                  n_layers_ * sizeof(unsigned long long), cudaMemcpyDeviceToHost, s));
        ctx_.synchronize();
        // Reset the loss accumulator; queued after the copy, before any later step.
        auto* base = reinterpret_cast<unsigned char*>(state_.data());
        SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(base + offsetof(StepState, loss_sum), 0,
                                              sizeof(double) + sizeof(std::uint64_t), s));
        const StepState& st = state_host_[0];
        EngineStatus out;
        out.steps_run = static_cast<std::size_t>(st.steps);
        out.stopped = st.stopped != 0;
        out.nnz.resize(n_layers_);
        for (std::size_t l = 0; l < n_layers_; ++l) out.nnz[l] = static_cast<std::size_t>(nnz_host_[l]);
        out.loss_sum = st.loss_sum;
        out.loss_count = static_cast<std::size_t>(st.loss_count);
        return out;
    }

    Evaluation evaluate(const Dataset& data, std::size_t chunk) override {
        check_data(data, "evaluate");
        chunk = std::max<std::size_t>(chunk, 1);
        ctx_.activate();
        const cudaStream_t s = ctx_.stream();
        const std::size_t n = data.n_samples;
        Evaluation e;
        if (n == 0) {
            e.loss = std::numeric_limits<double>::quiet_NaN();
            return e;
        }
        reserve_rows(std::min(chunk, n));
        reserve_eval(n);
        const bool classify = loss_ == Loss::cross_entropy;
        for (std::size_t first = 0; first < n; first += chunk) {
            const std::size_t m = std::min(chunk, n - first);
            const Rows rows = rows_of(data, first, m);
            forward(rows.x, m);
            loss_and_grad(rows.y, rows.labels, m, 0.0f, false, eval_loss_.data() + first,
                          classify ? eval_correct_.data() + first : nullptr);
        }
        // One sum over all samples (run-to-run deterministic; see kernels/loss.cu).
        launch_sum(eval_loss_.data(), n, eval_loss_sum_.data(), eval_temp_.data(), eval_temp_.bytes(), s);
        if (classify)
            launch_sum(eval_correct_.data(), n, eval_correct_sum_.data(), eval_temp_.data(), eval_temp_.bytes(), s);
        double sum = 0.0;
        unsigned long long correct = 0;
        eval_loss_sum_.copy_to_host(&sum, 1, s);
        if (classify) eval_correct_sum_.copy_to_host(&correct, 1, s);
        ctx_.synchronize();
        e.loss = sum / static_cast<double>(n);
        if (data.task == Task::classification) e.accuracy = static_cast<double>(correct) / static_cast<double>(n);
        return e;
    }

    std::vector<float> gradient(const Dataset& data, std::size_t chunk) override {
        full_gradient(data, chunk);
        std::vector<float> out(layout_.slab_size);
        grads_.copy_to_host(out.data(), out.size(), ctx_.stream());
        ctx_.synchronize();
        return out;
    }

    std::vector<CandidateSet> gradient_candidates(const Dataset& data, std::size_t chunk,
                                                  const std::vector<CandidateQuery>& queries) override {
        full_gradient(data, chunk);
        std::size_t need = 0;
        for (const ParamSegment& sg : layout_.segments) need += sg.n_weights;
        if (candidate_scratch_.size() < need) candidate_scratch_.allocate(need);
        std::vector<CandidateSet> out;
        for (const CandidateQuery& q : queries)
            out.push_back(cuda::gradient_candidates(ctx_, grads_.data(), layout_, q.layers, q.low, q.up,
                                                    candidate_scratch_.data()));
        return out;
    }

private:
    // The full-data mean gradient of the current parameters into grads_ (queued).
    void full_gradient(const Dataset& data, std::size_t chunk) {
        check_data(data, "gradient");
        chunk = std::max<std::size_t>(chunk, 1);
        ctx_.activate();
        const cudaStream_t s = ctx_.stream();
        const std::size_t n = data.n_samples;
        // Each chunk adds its share of the full-data mean: grad_scale 1/N, GEMMs with beta = 1.
        const float scale = 1.0f / static_cast<float>(std::max<std::size_t>(n, 1));
        grads_.fill_zero(s);
        if (n > 0) reserve_rows(std::min(chunk, n));
        for (std::size_t first = 0; first < n; first += chunk) {
            const std::size_t m = std::min(chunk, n - first);
            const Rows rows = rows_of(data, first, m);
            forward(rows.x, m);
            loss_and_grad(rows.y, rows.labels, m, scale, true, sample_loss_.data(), nullptr);
            backward(rows.x, m, true);
        }
    }

    struct OrderSlot {
        PinnedBuffer<std::uint32_t> host;
        Event copied;
        bool in_flight = false;
    };

    // Device pointers to a chunk of rows of a data set.
    struct Rows {
        const float* x = nullptr;
        const float* y = nullptr;
        const std::int32_t* labels = nullptr;
    };

    // The per-layer NNZ of params_ that the stop rule and status() read.
    const unsigned long long* layer_nnz() const {
        return method_.method == Method::l1 ? prox_.layer_nnz() : sparsify_.layer_nnz();
    }

    // Buffers of the method's state: (re)allocated only when their size changes (a new method or
    // gate layout); queued work of the previous run may still use the old ones.
    template <class T>
    void ensure_size(DeviceBuffer<T>& buffer, std::size_t n) {
        if (buffer.size() == n) return;
        ctx_.synchronize();
        buffer.allocate(n);
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

    // Rows [first, first + m) of `data` on the device: the resident copy when `data` is the
    // training set (the trainer evaluates it after training), else uploaded into the batch buffers.
    Rows rows_of(const Dataset& data, std::size_t first, std::size_t m) {
        const std::size_t n_in = spec_.n_inputs, n_out = spec_.n_outputs();
        Rows r;
        if (&data == train_host_ && data.x.data() == train_host_x_ && data.n_samples == n_train_) {
            r.x = train_x_.data() + first * n_in;
            if (loss_ == Loss::mse) r.y = train_y_.data() + first * n_out;
            else r.labels = train_labels_.data() + first;
            return r;
        }
        const cudaStream_t s = ctx_.stream();
        batch_x_.copy_from_host(data.x.data() + first * n_in, m * n_in, s);
        r.x = batch_x_.data();
        if (loss_ == Loss::mse) {
            batch_y_.copy_from_host(data.y.data() + first * n_out, m * n_out, s);
            r.y = batch_y_.data();
        } else {
            batch_labels_.copy_from_host(data.labels.data() + first, m, s);
            r.labels = batch_labels_.data();
        }
        return r;
    }

    // Batch buffers for up to `rows` rows (grown, never shrunk).
    void reserve_rows(std::size_t rows) {
        if (rows <= capacity_) return;
        ctx_.synchronize();  // queued work may still use the buffers being replaced
        capacity_ = rows;
        const std::size_t n_out = spec_.n_outputs();
        batch_x_.allocate(rows * spec_.n_inputs);
        batch_y_.allocate(loss_ == Loss::mse ? rows * n_out : 0);
        batch_labels_.allocate(loss_ == Loss::cross_entropy ? rows : 0);
        acts_.resize(spec_.layers.size());
        for (std::size_t k = 0; k < spec_.layers.size(); ++k)  // flatten layers output their input
            acts_[k].allocate(spec_.layers[k].kind == LayerKind::flatten ? 0 : rows * spec_.layers[k].n_out);
        delta_.allocate(rows * max_width_);
        delta_prev_.allocate(rows * max_width_);
        sample_loss_.allocate(rows);
        sum_temp_.allocate(cub_temp_size(sum_temp_bytes(rows)));
    }

    // Per-sample results of a whole evaluated data set, summed once at the end.
    void reserve_eval(std::size_t n) {
        if (n <= eval_capacity_) return;
        ctx_.synchronize();
        eval_capacity_ = n;
        eval_loss_.allocate(n);
        eval_correct_.allocate(loss_ == Loss::cross_entropy ? n : 0);
        eval_temp_.allocate(cub_temp_size(sum_temp_bytes(n)));
    }

    // outs_[k] is the output of layer k, (batch, n_out_k): acts_[k], or for a flatten layer its
    // input. The input x is the caller's.
    void forward(const float* x, std::size_t batch) {
        outs_.resize(spec_.layers.size());
        const float* in = x;
        std::size_t seg = 0;
        for (std::size_t k = 0; k < spec_.layers.size(); ++k) {
            const LayerSpec& l = spec_.layers[k];
            if (l.kind == LayerKind::flatten) {
                outs_[k] = in;
                continue;
            }
            float* out = acts_[k].data();
            switch (l.kind) {
                case LayerKind::dense: {
                    const ParamSegment& sg = layout_.segments[seg++];
                    dense_forward(ctx_, in, params_.data() + sg.weight_offset, params_.data() + sg.bias_offset, out,
                                  batch, l.n_in, l.n_out);
                    break;
                }
                case LayerKind::conv2d: {
                    const ParamSegment& sg = layout_.segments[seg++];
                    conv2d_forward(ctx_, conv_shape(l, batch), in, params_.data() + sg.weight_offset,
                                   params_.data() + sg.bias_offset, out);
                    break;
                }
                case LayerKind::maxpool2d: maxpool2d_forward(ctx_, pool_shape(l, batch), in, out); break;
                case LayerKind::avgpool2d: avgpool2d_forward(ctx_, pool_shape(l, batch), in, out); break;
                case LayerKind::activation: activation_forward(ctx_, l.activation, in, out, batch * l.n_out); break;
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
        if (loss_ == Loss::mse)
            launch_mse_loss(out, y, batch, n_out, grad_scale, d, sample_loss, ctx_.stream());
        else
            launch_cross_entropy_loss(out, labels, batch, n_out, grad_scale, d, sample_loss, sample_correct,
                                      ctx_.stream());
    }

    // Back-propagates delta_ through every layer into grads_ (added to it with accumulate). Stops
    // at the first weight layer: nothing before it has parameters, so dL_dx is not needed there.
    void backward(const float* x, std::size_t batch, bool accumulate) {
        float* delta = delta_.data();
        float* delta_prev = delta_prev_.data();
        std::size_t seg = n_layers_;
        for (std::size_t k = spec_.layers.size(); k-- > first_weight_layer_;) {
            const LayerSpec& l = spec_.layers[k];
            const float* in = k == 0 ? x : outs_[k - 1];
            const bool want_dx = k > first_weight_layer_;
            switch (l.kind) {
                case LayerKind::dense: {
                    const ParamSegment& sg = layout_.segments[--seg];
                    dense_backward(ctx_, in, params_.data() + sg.weight_offset, delta,
                                   grads_.data() + sg.weight_offset, grads_.data() + sg.bias_offset,
                                   want_dx ? delta_prev : nullptr, batch, l.n_in, l.n_out, accumulate);
                    break;
                }
                case LayerKind::conv2d: {
                    const ParamSegment& sg = layout_.segments[--seg];
                    conv2d_backward(ctx_, conv_shape(l, batch), in, params_.data() + sg.weight_offset, delta,
                                    grads_.data() + sg.weight_offset, grads_.data() + sg.bias_offset,
                                    want_dx ? delta_prev : nullptr, accumulate);
                    break;
                }
                case LayerKind::maxpool2d:
                    maxpool2d_backward(ctx_, pool_shape(l, batch), in, outs_[k], delta, delta_prev);
                    break;
                case LayerKind::avgpool2d: avgpool2d_backward(ctx_, pool_shape(l, batch), delta, delta_prev); break;
                case LayerKind::activation:
                    activation_backward(ctx_, l.activation, in, outs_[k], delta, delta, batch * l.n_out);
                    continue;  // in place
                case LayerKind::flatten: continue;  // the same rows, read as (batch, c*h*w)
            }
            if (want_dx) std::swap(delta, delta_prev);
        }
    }

    ModelSpec spec_;
    Loss loss_;
    ParamLayout layout_;
    std::size_t n_layers_ = 0;  // weight layers
    std::size_t max_width_ = 0;
    std::size_t first_weight_layer_ = std::numeric_limits<std::size_t>::max();  // index into spec_.layers

    CudaContext ctx_;  // before every device member: built first, destroyed last
    ProxPlan prox_;
    SparsifyPlan sparsify_;                         // l0, spred and gmp kernels' tables and counts
    DeviceBuffer<float> params_, grads_;            // (slab_size) each
    sparsify::MethodConfig next_method_;            // set_method: for the next set_params
    sparsify::MethodConfig method_;                 // the method of the current run
    sparsify::GateLayout gates_;                    // l0
    DeviceBuffer<float> master_;                    // l0: theta; spred: u (slab layout)
    DeviceBuffer<float> aux_;                       // spred: v (slab layout)
    DeviceBuffer<float> log_alpha_, adam_m_, adam_v_;  // l0: (n_gates) each
    DeviceBuffer<std::uint8_t> mask_;               // gmp: 1 = kept (slab layout)
    std::size_t steps_queued_ = 0;                  // steps queued since set_params (file comment)
    DeviceBuffer<float> hyper_;                     // [lr, lambda_0, ...]
    float weight_decay_ = 0.0f;
    DeviceBuffer<float> candidate_scratch_;         // (weights) the lambda search's candidates
    DeviceBuffer<StepState> state_;                 // (1)
    DeviceBuffer<StopConfig> stop_config_;          // (1)
    DeviceBuffer<unsigned long long> stop_targets_; // (n_targets)
    PinnedBuffer<StepState> state_host_;
    PinnedBuffer<unsigned long long> nnz_host_;

    const Dataset* train_host_ = nullptr;
    const float* train_host_x_ = nullptr;
    std::size_t n_train_ = 0;
    DeviceBuffer<float> train_x_, train_y_;         // (n_train, n_in), (n_train, n_out)
    DeviceBuffer<std::int32_t> train_labels_;       // (n_train)
    DeviceBuffer<std::uint32_t> order_;             // the epoch order
    std::vector<std::uint32_t> order_host_;         // what order_ holds (once its copy lands)
    std::array<OrderSlot, kOrderSlots> order_slots_;
    std::size_t next_order_slot_ = 0;

    std::size_t capacity_ = 0;                      // rows the batch buffers hold
    DeviceBuffer<float> batch_x_, batch_y_;         // (rows, n_in), (rows, n_out)
    DeviceBuffer<std::int32_t> batch_labels_;       // (rows)
    std::vector<DeviceBuffer<float>> acts_;         // per layer (rows, n_out_k); empty for flatten
    std::vector<const float*> outs_;                // per layer: its output rows (set by forward)
    DeviceBuffer<float> delta_, delta_prev_;        // (rows, max_width)
    DeviceBuffer<double> sample_loss_;              // (rows)
    DeviceBuffer<unsigned char> sum_temp_;
    DeviceBuffer<double> batch_loss_;               // (1)

    std::size_t eval_capacity_ = 0;
    DeviceBuffer<double> eval_loss_;                // (n_samples)
    DeviceBuffer<std::uint32_t> eval_correct_;      // (n_samples)
    DeviceBuffer<unsigned char> eval_temp_;
    DeviceBuffer<double> eval_loss_sum_;            // (1)
    DeviceBuffer<unsigned long long> eval_correct_sum_;  // (1)
};

}  // namespace
}  // namespace cuda

std::unique_ptr<Engine> make_cuda_engine(const ModelSpec& spec, Loss loss, int device_index) {
    const std::string name = "cuda:" + std::to_string(device_index);
    std::string why;
    const int count = detail::cuda_device_count_impl(&why);
    if (count == 0) throw Error(name + " requested but there is no usable CUDA device (" + why + ")");
    if (device_index < 0 || device_index >= count)
        throw Error(name + " requested but " + std::to_string(count) + " CUDA device" + (count == 1 ? " is" : "s are") +
                    " visible");
    const cudaError_t status = cudaSetDevice(device_index);
    if (status != cudaSuccess) {
        cudaGetLastError();
        throw Error(name + " is not usable: cudaSetDevice: " + cudaGetErrorName(status) + " (" +
                    cudaGetErrorString(status) + ")");
    }
    if (!cuda::kernels_runnable(&why))
        throw Error(name + " (" + detail::cuda_device_description(device_index) +
                    ") cannot run this build's kernels: " + why +
                    "; rebuild with CMAKE_CUDA_ARCHITECTURES including this device");
    return std::make_unique<cuda::CudaEngine>(spec, loss, device_index);
}

}  // namespace sparseprox
