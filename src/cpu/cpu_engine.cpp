// The CPU engine: Algorithm 3's step on the host, through the operations of cpu/ops.h and
// cpu/conv_ops.h. A batch is (batch, n) rows between layers; for image layers each row is the
// sample's NCHW tensor, so flatten moves no data.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/engine.h"
#include "core/layer_shapes.h"
#include "cpu/conv_ops.h"
#include "cpu/ops.h"
#include "cpu/sparsify.h"
#include "sparseprox/error.h"

namespace sparseprox {
namespace {

class CpuEngine final : public Engine {
public:
    CpuEngine(const ModelSpec& spec, Loss loss)
        : spec_(spec), loss_(loss), layout_(ParamLayout::of(spec)), params_(layout_.slab_size, 0.0f),
          grads_(layout_.slab_size, 0.0f), lambdas_(layout_.segments.size(), 0.0f),
          nnz_(layout_.segments.size(), 0) {
        spec_.validate();
        std::size_t row_floats = spec_.n_inputs, workspace = 0, max_width = spec_.n_inputs;
        bool image_layers = false;
        for (std::size_t k = 0; k < spec_.layers.size(); ++k) {
            const LayerSpec& l = spec_.layers[k];
            if (l.has_weights() && k < first_weight_layer_) first_weight_layer_ = k;
            if (l.kind != LayerKind::flatten) row_floats += l.n_out;
            max_width = std::max({max_width, l.n_in, l.n_out});
            if (l.kind == LayerKind::conv2d) workspace = std::max(workspace, cpu::conv2d_workspace_floats(conv_shape(l, 1)));
            image_layers |= l.kind == LayerKind::conv2d || l.kind == LayerKind::maxpool2d ||
                            l.kind == LayerKind::avgpool2d;
        }
        row_floats += 2 * max_width;  // delta_ and delta_prev_
        workspace_.resize(workspace);
        // Rows per forward pass of evaluate() and gradient(): the caller's chunk, capped for
        // models with image layers so that a pass holds at most kPassBytes of activations (CNN8
        // keeps ~0.6 MB per row: 4096 rows would be 2.5 GB). A pass boundary only moves where
        // partial sums are split. Dense-only models keep the caller's chunk exactly.
        if (image_layers) max_pass_rows_ = std::max<std::size_t>(1, kPassBytes / (sizeof(float) * row_floats));
    }

    std::string device_name() const override { return "cpu"; }

    void set_method(const sparsify::MethodConfig& config) override { next_method_ = config; }

    void set_params(const std::vector<float>& slab) override {
        if (slab.size() != layout_.slab_size)
            throw Error("parameter slab has " + std::to_string(slab.size()) + " floats, the model needs " +
                        std::to_string(layout_.slab_size));
        steps_ = 0;  // a new run starts
        loss_sum_ = 0.0;
        loss_count_ = 0;
        params_ = slab;
        method_ = next_method_;  // set_method takes effect here, with the method's fresh state
        if (method_.method == Method::l0) gates_ = sparsify::GateLayout::of(spec_, layout_, method_.l0);
        switch (method_.method) {
            case Method::l1: break;
            case Method::l0:
                master_ = slab;
                log_alpha_.assign(gates_.n_gates, 0.0f);
                for (const sparsify::GateSegment& g : gates_.segments)
                    std::fill_n(log_alpha_.begin() + static_cast<std::ptrdiff_t>(g.gate_offset), g.n_gates, g.log_alpha0);
                adam_m_.assign(gates_.n_gates, 0.0f);
                adam_v_.assign(gates_.n_gates, 0.0f);
                break;
            case Method::spred:
                master_.assign(layout_.slab_size, 0.0f);
                aux_.assign(layout_.slab_size, 0.0f);
                cpu::spred_split(slab.data(), layout_, master_.data(), aux_.data());
                break;
            case Method::gmp:  // weights that are exact zeros start pruned (all are kept from a random init)
                mask_.assign(layout_.slab_size, 1);
                for (const ParamSegment& seg : layout_.segments)
                    for (std::size_t i = 0; i < seg.n_weights; ++i)
                        mask_[seg.weight_offset + i] = slab[seg.weight_offset + i] != 0.0f ? 1 : 0;
                break;
        }
        export_params();
    }
    std::vector<float> get_params() override { return params_; }

    void set_hyper(float lr, const std::vector<float>& lambdas) override {
        if (lambdas.size() != lambdas_.size())
            throw Error("set_hyper: " + std::to_string(lambdas.size()) + " lambdas for " +
                        std::to_string(lambdas_.size()) + " weight layers");
        lr_ = lr;
        lambdas_ = lambdas;
    }

    void set_weight_decay(float wd) override { weight_decay_ = wd; }

    void set_stop_rule(const StopRule& rule) override {
        rule_ = rule;
        stopped_ = false;
    }

    void set_train_data(const Dataset& data) override { train_ = &data; }
    void set_order(const std::vector<std::uint32_t>& order) override { order_ = order; }

    void step(std::size_t first, std::size_t count) override {
        if (stopped_) return;  // frozen at the first in-band iterate
        if (!train_) throw Error("step: no training data set");
        if (count == 0 || first + count > order_.size()) throw Error("step: empty batch or batch beyond the epoch order");
        const Dataset& d = *train_;
        const std::size_t nf = d.n_features, no = d.n_outputs;
        batch_x_.resize(count * nf);
        if (d.task == Task::regression) batch_y_.resize(count * no);
        else batch_labels_.resize(count);
        for (std::size_t r = 0; r < count; ++r) {
            const std::size_t row = order_[first + r];
            std::copy_n(d.x.data() + row * nf, nf, batch_x_.data() + r * nf);
            if (d.task == Task::regression) std::copy_n(d.y.data() + row * no, no, batch_y_.data() + r * no);
            else batch_labels_[r] = d.labels[row];
        }
        // params_ holds the exported weights between steps; l0 and spred train at effective ones.
        if (method_.method == Method::l0)
            cpu::l0_effective(master_.data(), log_alpha_.data(), gates_, layout_, method_.hc, method_.seed, steps_,
                              params_.data());
        else if (method_.method == Method::spred)
            cpu::spred_effective(master_.data(), aux_.data(), layout_, params_.data());
        forward(batch_x_.data(), count);
        const double loss_sum = loss_and_grad(batch_y_.data(), batch_labels_.data(), count,
                                              1.0f / static_cast<float>(count), true, nullptr);
        backward(batch_x_.data(), count, grads_.data());
        cpu::add_weight_decay(grads_.data(), params_.data(), layout_, weight_decay_);
        switch (method_.method) {
            case Method::l1:
                cpu::prox_step(params_.data(), grads_.data(), layout_, lr_, lambdas_.data(), nnz_.data());
                break;
            case Method::l0:
                cpu::l0_update(master_.data(), log_alpha_.data(), adam_m_.data(), adam_v_.data(), grads_.data(), gates_,
                               layout_, method_.hc, method_.seed, steps_, lr_, lambdas_.data(),
                               sparsify::adam_step(method_.l0.gate_lr, steps_ + 1));
                export_params();
                break;
            case Method::spred:
                cpu::spred_update(master_.data(), aux_.data(), grads_.data(), layout_, lr_, lambdas_.data());
                export_params();
                break;
            case Method::gmp: {
                cpu::masked_sgd(params_.data(), grads_.data(), mask_.data(), layout_, lr_, nnz_.data());
                const std::vector<std::size_t> keep = sparsify::gmp_keep(method_, layout_, steps_ + 1);
                if (!keep.empty()) {
                    cpu::gmp_prune(params_.data(), mask_.data(), layout_, keep);
                    export_params();
                }
                break;
            }
        }
        ++steps_;
        loss_sum_ += loss_sum / static_cast<double>(count);
        ++loss_count_;
        if (rule_.enabled() && rule_.holds(nnz_)) stopped_ = true;
    }

    EngineStatus status() override {
        EngineStatus s;
        s.steps_run = steps_;
        s.stopped = stopped_;
        s.nnz = nnz_;
        s.loss_sum = loss_sum_;
        s.loss_count = loss_count_;
        loss_sum_ = 0.0;
        loss_count_ = 0;
        return s;
    }

    Evaluation evaluate(const Dataset& data, std::size_t chunk) override {
        chunk = std::min(std::max<std::size_t>(chunk, 1), max_pass_rows_);
        double sum = 0.0;
        std::size_t correct = 0;
        for (std::size_t first = 0; first < data.n_samples; first += chunk) {
            const std::size_t n = std::min(chunk, data.n_samples - first);
            forward(data.x.data() + first * data.n_features, n);
            std::size_t c = 0;
            sum += loss_and_grad(targets_of(data, first), labels_of(data, first), n, 0.0f, false, &c);
            correct += c;
        }
        Evaluation e;
        e.loss = data.n_samples ? sum / static_cast<double>(data.n_samples) : std::numeric_limits<double>::quiet_NaN();
        if (data.task == Task::classification && data.n_samples)
            e.accuracy = static_cast<double>(correct) / static_cast<double>(data.n_samples);
        return e;
    }

    std::vector<float> gradient(const Dataset& data, std::size_t chunk) override {
        chunk = std::min(std::max<std::size_t>(chunk, 1), max_pass_rows_);
        std::vector<float> total(layout_.slab_size, 0.0f), part(layout_.slab_size, 0.0f);
        const float scale = 1.0f / static_cast<float>(std::max<std::size_t>(data.n_samples, 1));
        for (std::size_t first = 0; first < data.n_samples; first += chunk) {
            const std::size_t n = std::min(chunk, data.n_samples - first);
            const float* x = data.x.data() + first * data.n_features;
            forward(x, n);
            loss_and_grad(targets_of(data, first), labels_of(data, first), n, scale, true, nullptr);
            backward(x, n, part.data());
            for (std::size_t i = 0; i < total.size(); ++i) total[i] += part[i];
        }
        return total;
    }

    std::vector<CandidateSet> gradient_candidates(const Dataset& data, std::size_t chunk,
                                                  const std::vector<CandidateQuery>& queries) override {
        const std::vector<float> g = gradient(data, chunk);
        std::vector<CandidateSet> out;
        for (const CandidateQuery& q : queries)
            out.push_back(cpu::gradient_candidates(g.data(), layout_, q.layers, q.low, q.up));
        return out;
    }

private:
    // params_ and nnz_ from the method's own parameters.
    void export_params() {
        switch (method_.method) {
            case Method::l0:
                cpu::l0_export(master_.data(), log_alpha_.data(), gates_, layout_, method_.hc, params_.data(), nnz_.data());
                return;
            case Method::spred:
                cpu::spred_export(master_.data(), aux_.data(), layout_, method_.threshold, params_.data(), nnz_.data());
                return;
            case Method::l1:
            case Method::gmp:
                for (std::size_t l = 0; l < layout_.segments.size(); ++l)
                    nnz_[l] = cpu::count_nonzero(params_.data() + layout_.segments[l].weight_offset,
                                                 layout_.segments[l].n_weights);
                return;
        }
    }

    static const float* targets_of(const Dataset& d, std::size_t first) {
        return d.task == Task::regression ? d.y.data() + first * d.n_outputs : nullptr;
    }
    static const std::int32_t* labels_of(const Dataset& d, std::size_t first) {
        return d.task == Task::classification ? d.labels.data() + first : nullptr;
    }

    // outs_[k] is the output of layer k, (batch, n_out_k): acts_[k], or for a flatten layer its
    // input (flatten moves no data). The input x is kept by the caller.
    void forward(const float* x, std::size_t batch) {
        acts_.resize(spec_.layers.size());
        outs_.resize(spec_.layers.size());
        const float* in = x;
        std::size_t seg = 0;
        for (std::size_t k = 0; k < spec_.layers.size(); ++k) {
            const LayerSpec& l = spec_.layers[k];
            if (l.kind == LayerKind::flatten) {
                outs_[k] = in;
                continue;
            }
            acts_[k].resize(batch * l.n_out);
            float* out = acts_[k].data();
            switch (l.kind) {
                case LayerKind::dense: {
                    const ParamSegment& s = layout_.segments[seg++];
                    cpu::dense_forward(in, params_.data() + s.weight_offset, params_.data() + s.bias_offset, out,
                                       batch, l.n_in, l.n_out);
                    break;
                }
                case LayerKind::conv2d: {
                    const ParamSegment& s = layout_.segments[seg++];
                    cpu::conv2d_forward(conv_shape(l, batch), in, params_.data() + s.weight_offset,
                                        params_.data() + s.bias_offset, out, workspace_.data());
                    break;
                }
                case LayerKind::maxpool2d: cpu::maxpool2d_forward(pool_shape(l, batch), in, out); break;
                case LayerKind::avgpool2d: cpu::avgpool2d_forward(pool_shape(l, batch), in, out); break;
                case LayerKind::activation: cpu::activation_forward(l.activation, in, out, batch * l.n_out); break;
                case LayerKind::flatten: break;
            }
            outs_[k] = out;
            in = out;
        }
    }

    // Loss summed over the batch; the gradient w.r.t. the network output goes to delta_.
    double loss_and_grad(const float* y, const std::int32_t* labels, std::size_t batch, float grad_scale,
                         bool want_grad, std::size_t* correct) {
        const float* out = outs_.back();
        const std::size_t n_out = spec_.n_outputs();
        delta_.resize(batch * n_out);
        float* d = want_grad ? delta_.data() : nullptr;
        if (loss_ == Loss::mse) {
            if (!y) throw Error("MSE loss needs regression targets");
            return cpu::mse_loss(out, y, batch, n_out, grad_scale, d);
        }
        if (!labels) throw Error("cross-entropy loss needs class labels");
        return cpu::cross_entropy_loss(out, labels, batch, n_out, grad_scale, d, correct);
    }

    // Back-propagates delta_ through every layer, writing parameter gradients into `grads`. Stops
    // at the first weight layer: nothing before it has parameters, so dL_dx is not needed there.
    void backward(const float* x, std::size_t batch, float* grads) {
        std::size_t seg = layout_.segments.size();
        for (std::size_t k = spec_.layers.size(); k-- > first_weight_layer_;) {
            const LayerSpec& l = spec_.layers[k];
            const float* in = k == 0 ? x : outs_[k - 1];
            const bool want_dx = k > first_weight_layer_;
            switch (l.kind) {
                case LayerKind::dense: {
                    const ParamSegment& s = layout_.segments[--seg];
                    delta_prev_.resize(batch * l.n_in);
                    cpu::dense_backward(in, params_.data() + s.weight_offset, delta_.data(), grads + s.weight_offset,
                                        grads + s.bias_offset, want_dx ? delta_prev_.data() : nullptr, batch, l.n_in,
                                        l.n_out);
                    break;
                }
                case LayerKind::conv2d: {
                    const ParamSegment& s = layout_.segments[--seg];
                    delta_prev_.resize(batch * l.n_in);
                    cpu::conv2d_backward(conv_shape(l, batch), in, params_.data() + s.weight_offset, delta_.data(),
                                         grads + s.weight_offset, grads + s.bias_offset,
                                         want_dx ? delta_prev_.data() : nullptr, workspace_.data());
                    break;
                }
                case LayerKind::maxpool2d:
                    delta_prev_.resize(batch * l.n_in);
                    cpu::maxpool2d_backward(pool_shape(l, batch), in, outs_[k], delta_.data(), delta_prev_.data());
                    break;
                case LayerKind::avgpool2d:
                    delta_prev_.resize(batch * l.n_in);
                    cpu::avgpool2d_backward(pool_shape(l, batch), delta_.data(), delta_prev_.data());
                    break;
                case LayerKind::activation:
                    cpu::activation_backward(l.activation, in, outs_[k], delta_.data(), delta_.data(),
                                             batch * l.n_out);
                    continue;  // in place
                case LayerKind::flatten: continue;  // the same rows, read as (batch, c*h*w)
            }
            if (want_dx) std::swap(delta_, delta_prev_);
        }
    }

    static constexpr std::size_t kPassBytes = std::size_t{512} << 20;

    ModelSpec spec_;
    Loss loss_;
    ParamLayout layout_;
    std::vector<float> params_, grads_;
    std::vector<float> lambdas_;
    sparsify::MethodConfig method_;               // the current run's method
    sparsify::MethodConfig next_method_;          // set_method's, from the next set_params
    sparsify::GateLayout gates_;                 // l0
    std::vector<float> master_;                  // l0: theta; spred: u (slab layout)
    std::vector<float> aux_;                     // spred: v (slab layout)
    std::vector<float> log_alpha_, adam_m_, adam_v_;  // l0: per gate
    std::vector<std::uint8_t> mask_;             // gmp: 1 = kept (slab layout)
    float lr_ = 0.0f;
    float weight_decay_ = 0.0f;
    StopRule rule_;
    bool stopped_ = false;
    std::vector<std::size_t> nnz_;
    std::size_t steps_ = 0;
    double loss_sum_ = 0.0;
    std::size_t loss_count_ = 0;
    const Dataset* train_ = nullptr;
    std::vector<std::uint32_t> order_;
    std::vector<float> batch_x_, batch_y_;
    std::vector<std::int32_t> batch_labels_;
    std::vector<std::vector<float>> acts_;  // per layer (batch, n_out); empty for flatten layers
    std::vector<const float*> outs_;        // per layer: its output rows
    std::vector<float> delta_, delta_prev_;
    std::vector<float> workspace_;          // conv2d im2col, one sample of the largest conv layer
    std::size_t first_weight_layer_ = std::numeric_limits<std::size_t>::max();
    std::size_t max_pass_rows_ = std::numeric_limits<std::size_t>::max();
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const ModelSpec& spec, Loss loss) {
    return std::make_unique<CpuEngine>(spec, loss);
}

#ifndef SPARSEPROX_WITH_CUDA
std::unique_ptr<Engine> make_cuda_engine(const ModelSpec&, Loss, int device_index) {
    throw Error("device 'cuda:" + std::to_string(device_index) +
                "' requested but this build of SparseProx has no CUDA backend");
}
#endif

std::unique_ptr<Engine> make_engine(const Device& device, const ModelSpec& spec, Loss loss) {
    if (device.kind == DeviceKind::cpu) return make_cpu_engine(spec, loss);
    return make_cuda_engine(spec, loss, device.index);
}

}  // namespace sparseprox
