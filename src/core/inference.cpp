// InferenceEngine (sparseprox/inference.h): one model prepared for one format on one device.
//   dense    the training network (core/network.cpp) through the Engine interface;
//   compact  compact()'s smaller model through the same engine, its inputs gathered first;
//   csr      the CSR network (core/csr_network.h) over the device's backend.
#include "sparseprox/inference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/csr_network.h"
#include "core/engine.h"
#include "core/train_loop.h"
#include "cpu/loss.h"
#include "sparseprox/error.h"

namespace sparseprox {

const char* to_string(InferenceFormat f) {
    switch (f) {
        case InferenceFormat::dense: return "dense";
        case InferenceFormat::csr: return "csr";
        case InferenceFormat::compact: return "compact";
    }
    return "?";
}

InferenceFormat parse_inference_format(const std::string& name) {
    if (name == "dense") return InferenceFormat::dense;
    if (name == "csr") return InferenceFormat::csr;
    if (name == "compact") return InferenceFormat::compact;
    throw Error("unknown inference format '" + name + "' (expected dense, csr or compact)");
}

struct InferenceEngine::Impl {
    InferenceFormat format = InferenceFormat::dense;
    Device device;
    std::size_t max_batch = 1;
    std::size_t n_inputs = 0, n_outputs = 0;
    std::size_t multiply_adds = 0;
    // dense and compact
    std::unique_ptr<Engine> engine;
    Dataset pass;                       // one pass's rows, reused
    bool gather = false;                // compact with fewer inputs than the original
    CompactModel compacted;
    // csr
    std::unique_ptr<CsrNetwork> csr;

    void run_pass(const float* x, std::size_t rows, float* y) {
        if (csr) {
            csr->forward(x, rows, y);
            return;
        }
        pass.n_samples = rows;
        if (gather) {
            pass.x = compacted.select_inputs(x, rows);
        } else {
            pass.x.assign(x, x + rows * n_inputs);
        }
        const std::vector<float> out = engine->predict(pass, rows);
        std::copy(out.begin(), out.end(), y);
    }
};

namespace {

std::size_t dense_multiply_adds(const ModelSpec& spec) {
    std::size_t n = 0;
    for (const LayerSpec& l : spec.layers) {
        if (l.kind == LayerKind::dense) n += l.n_in * l.n_out;
        if (l.kind == LayerKind::conv2d) n += l.n_weights() * l.out_shape.height * l.out_shape.width;
    }
    return n;
}

}  // namespace

InferenceEngine::InferenceEngine(const Model& model, const Device& device, InferenceFormat format, std::size_t max_batch)
    : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    const ModelSpec& spec = model.spec();
    spec.validate();
    m.format = format;
    m.device = device;
    m.max_batch = std::max<std::size_t>(max_batch, 1);
    m.n_inputs = spec.n_inputs;
    m.n_outputs = spec.n_outputs();
    if (format == InferenceFormat::csr) {
        std::unique_ptr<Backend> backend =
            device.kind == DeviceKind::cpu ? make_cpu_backend() : make_cuda_backend(device.index);
        m.csr = std::make_unique<CsrNetwork>(std::move(backend), model, m.max_batch);
        m.multiply_adds = m.csr->multiply_adds_per_sample();
        return;
    }
    const Model* run_model = &model;
    if (format == InferenceFormat::compact) {
        m.compacted = compact(model);
        run_model = &m.compacted.model;
        m.gather = m.compacted.input_columns.size() != spec.n_inputs;
    }
    const ModelSpec& run_spec = run_model->spec();
    // The loss only matters to training and evaluate(); a forward pass ignores it.
    m.engine = make_engine(device, run_spec, Loss::mse);
    m.engine->set_method(sparsify::MethodConfig{});
    m.engine->set_params(run_model->slab());
    m.pass.name = "inference batch";
    m.pass.n_features = run_spec.n_inputs;
    m.pass.n_outputs = run_spec.n_outputs();
    m.pass.x.reserve(m.max_batch * run_spec.n_inputs);
    m.multiply_adds = dense_multiply_adds(run_spec);
}

InferenceEngine::~InferenceEngine() = default;
InferenceEngine::InferenceEngine(InferenceEngine&&) noexcept = default;
InferenceEngine& InferenceEngine::operator=(InferenceEngine&&) noexcept = default;

void InferenceEngine::run(const float* x, std::size_t rows, float* y) {
    Impl& m = *impl_;
    for (std::size_t first = 0; first < rows; first += m.max_batch) {
        const std::size_t n = std::min(m.max_batch, rows - first);
        m.run_pass(x + first * m.n_inputs, n, y + first * m.n_outputs);
    }
}

std::vector<float> InferenceEngine::run(const std::vector<float>& x) {
    const std::size_t width = impl_->n_inputs;
    if (width == 0 || x.size() % width != 0)
        throw Error("predict: " + std::to_string(x.size()) + " input values are not whole rows of " +
                    std::to_string(width) + " features");
    std::vector<float> y(x.size() / width * impl_->n_outputs);
    run(x.data(), x.size() / width, y.data());
    return y;
}

Evaluation InferenceEngine::evaluate(const Dataset& data, std::optional<Loss> loss, std::vector<float>* outputs) {
    Impl& m = *impl_;
    if (data.n_features != m.n_inputs || data.n_outputs != m.n_outputs || data.n_samples == 0 ||
        data.x.size() != data.n_samples * data.n_features) {
        if (data.n_samples == 0) throw Error("data set '" + data.name + "' is empty");
        throw Error("data set '" + data.name + "' has " + std::to_string(data.n_features) + " features and " +
                    std::to_string(data.n_outputs) + " outputs; the model takes " + std::to_string(m.n_inputs) +
                    " inputs and has " + std::to_string(m.n_outputs) + " outputs");
    }
    const Loss l = resolve_loss(loss, data);
    if (l == Loss::mse && data.y.size() != data.n_samples * m.n_outputs)
        throw Error("data set '" + data.name + "' has no regression targets for the MSE loss");
    if (l == Loss::cross_entropy) {
        if (data.labels.size() != data.n_samples) throw Error("data set '" + data.name + "' has no class labels");
        for (std::int32_t label : data.labels)
            if (label < 0 || static_cast<std::size_t>(label) >= m.n_outputs)
                throw Error("data set '" + data.name + "' has label " + std::to_string(label) + " outside [0, " +
                            std::to_string(m.n_outputs) + ")");
    }
    // Per-sample losses with the training engine's formulas, added in row order.
    std::vector<float> y(m.max_batch * m.n_outputs);
    std::vector<double> sample_loss(m.max_batch);
    std::vector<std::uint32_t> correct(m.max_batch);
    double loss_sum = 0.0;
    std::uint64_t n_correct = 0;
    if (outputs) outputs->resize(data.n_samples * m.n_outputs);
    for (std::size_t first = 0; first < data.n_samples; first += m.max_batch) {
        const std::size_t n = std::min(m.max_batch, data.n_samples - first);
        m.run_pass(data.x.data() + first * m.n_inputs, n, y.data());
        if (outputs) std::copy_n(y.data(), n * m.n_outputs, outputs->data() + first * m.n_outputs);
        if (l == Loss::mse) {
            cpu::mse_loss(y.data(), data.y.data() + first * m.n_outputs, n, m.n_outputs, 0.0f, nullptr,
                          sample_loss.data());
        } else {
            cpu::cross_entropy_loss(y.data(), data.labels.data() + first, n, m.n_outputs, 0.0f, nullptr,
                                    sample_loss.data(), correct.data());
            n_correct += cpu::sum(correct.data(), n);
        }
        loss_sum += cpu::sum(sample_loss.data(), n);
    }
    Evaluation e;
    e.loss = loss_sum / static_cast<double>(data.n_samples);
    if (l == Loss::cross_entropy && data.task == Task::classification)
        e.accuracy = static_cast<double>(n_correct) / static_cast<double>(data.n_samples);
    return e;
}

InferenceFormat InferenceEngine::format() const { return impl_->format; }
Device InferenceEngine::device() const { return impl_->device; }
std::size_t InferenceEngine::n_inputs() const { return impl_->n_inputs; }
std::size_t InferenceEngine::n_outputs() const { return impl_->n_outputs; }
std::size_t InferenceEngine::max_batch() const { return impl_->max_batch; }
std::size_t InferenceEngine::multiply_adds_per_sample() const { return impl_->multiply_adds; }

std::vector<float> predict(const Model& model, const std::vector<float>& x, const Device& device,
                           InferenceFormat format, std::size_t batch) {
    InferenceEngine engine(model, device, format, batch);
    return engine.run(x);
}

}  // namespace sparseprox
