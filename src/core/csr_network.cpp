// The csr inference engine's layer walk (core/csr_network.h). The activations ping-pong between
// two buffers of max_batch rows of the widest layer; flatten moves no data. A conv layer keeps
// either its CSR kernel matrix (c_out, c_in*kh*kw) or its dense weights: on a backend without
// sparse convolutions, and wherever more than kSparseConvMaxDensity of its weights are nonzero.
#include "core/csr_network.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/layer_shapes.h"
#include "sparseprox/error.h"

namespace sparseprox {

// A conv layer denser than this runs dense in the csr format: the sparse kernel matrix times
// each sample's im2col patches does not beat the batched dense GEMM above it. Measured on the
// 2-core development CPU (README, "Inference: dense vs csr vs compact"): with its conv layers
// sparse (84% and 24% nonzero) the lenet5 model at 5% ran at 0.81-0.86x dense's samples/s at
// batch 32 and 256, with them dense at 1.04-1.1x; CNN8 at 7.3% (convolutions 95%, 52% and 28%
// nonzero) at 0.64x at batch 256 sparse and 0.99x dense.
constexpr double kSparseConvMaxDensity = 0.1;

struct CsrNetwork::Impl {
    struct Layer {
        LayerSpec spec;
        std::unique_ptr<CsrMatrix> W;  // dense layers; conv layers where the backend has csr_conv2d
        Buffer<float> W_dense;         // conv layers elsewhere: (c_out, c_in, kh, kw)
        Buffer<float> b;
        std::size_t multiply_adds = 0; // per sample
    };
    // Declared first, destroyed last: every matrix and buffer below lives in its memory.
    std::unique_ptr<Backend> backend;
    std::vector<Layer> layers;
    std::size_t max_batch = 1;
    std::size_t n_inputs = 0, n_outputs = 0;
    Buffer<float> x;     // (max_batch, n_inputs)
    Buffer<float> a, b;  // ping-pong activations (max_batch, widest layer)
};

CsrNetwork::CsrNetwork(std::unique_ptr<Backend> backend, const Model& model, std::size_t max_batch)
    : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.backend = std::move(backend);
    Backend& be = *m.backend;
    const ModelSpec& spec = model.spec();
    m.max_batch = std::max<std::size_t>(max_batch, 1);
    m.n_inputs = spec.n_inputs;
    m.n_outputs = spec.n_outputs();
    // A backend that cannot run conv or pooling layers (CUDA without cuDNN) says so before any
    // memory is taken.
    if (std::any_of(spec.layers.begin(), spec.layers.end(), [](const LayerSpec& l) {
            return l.kind == LayerKind::conv2d || l.kind == LayerKind::maxpool2d || l.kind == LayerKind::avgpool2d;
        }))
        be.require_image_ops();
    std::size_t widest = spec.n_inputs;
    for (std::size_t k = 0, w = 0; k < spec.layers.size(); ++k) {
        const LayerSpec& l = spec.layers[k];
        Impl::Layer layer;
        layer.spec = l;
        widest = std::max({widest, l.n_in, l.n_out});
        if (l.has_weights()) {
            const Span<const float> weights = model.weights(w);
            const Span<const float> biases = model.biases(w);
            const std::string what = "layer " + std::to_string(k);
            const bool conv = l.kind == LayerKind::conv2d;
            const std::size_t positions = conv ? l.out_shape.height * l.out_shape.width : 1;
            std::size_t nonzero = 0;
            for (float v : weights) nonzero += v != 0.0f;
            const bool dense_conv = conv && (!be.has_csr_conv2d() ||
                                             static_cast<double>(nonzero) >
                                                 kSparseConvMaxDensity * static_cast<double>(weights.size()));
            if (dense_conv) {
                layer.W_dense.allocate(be, weights.size());
                layer.W_dense.upload(weights.data(), weights.size());
                layer.multiply_adds = weights.size() * positions;
            } else {
                const std::size_t rows = conv ? l.out_shape.channels : l.n_out;
                const std::size_t cols = weights.size() / std::max<std::size_t>(rows, 1);
                layer.W = be.csr_matrix(csr_from_dense(weights.data(), rows, cols, what.c_str()), m.max_batch);
                layer.multiply_adds = layer.W->nnz() * positions;
            }
            layer.b.allocate(be, biases.size());
            layer.b.upload(biases.data(), biases.size());
            ++w;
        }
        m.layers.push_back(std::move(layer));
    }
    m.x.allocate(be, m.max_batch * m.n_inputs);
    m.a.allocate(be, m.max_batch * widest);
    m.b.allocate(be, m.max_batch * widest);
    be.synchronize();  // the uploads are done: setup errors surface here, not in the first pass
}

CsrNetwork::~CsrNetwork() {
    if (!impl_ || !impl_->backend) return;
    try {
        impl_->backend->synchronize();  // queued work may still use the buffers about to be freed
    } catch (...) {
    }
}

std::size_t CsrNetwork::multiply_adds_per_sample() const {
    std::size_t n = 0;
    for (const Impl::Layer& l : impl_->layers) n += l.multiply_adds;
    return n;
}

std::string CsrNetwork::device_name() const { return impl_->backend->name(); }

void CsrNetwork::forward(const float* x, std::size_t rows, float* y) {
    Impl& m = *impl_;
    if (rows > m.max_batch)
        throw Error("csr inference: " + std::to_string(rows) + " rows in one pass, the engine holds " +
                    std::to_string(m.max_batch));
    if (rows == 0) return;
    Backend& be = *m.backend;
    m.x.upload(x, rows * m.n_inputs);
    const float* in = m.x.data();
    float* bufs[2] = {m.a.data(), m.b.data()};
    int next = 0;
    for (Impl::Layer& layer : m.layers) {
        const LayerSpec& l = layer.spec;
        if (l.kind == LayerKind::flatten) continue;
        float* out = bufs[next];
        switch (l.kind) {
            case LayerKind::dense: be.csr_forward(*layer.W, in, layer.b.data(), out, rows); break;
            case LayerKind::conv2d:
                if (layer.W)
                    be.csr_conv2d_forward(conv_shape(l, rows), *layer.W, in, layer.b.data(), out);
                else
                    be.conv2d_forward(conv_shape(l, rows), in, layer.W_dense.data(), layer.b.data(), out);
                break;
            case LayerKind::activation: be.activation_forward(l.activation, in, out, rows * l.n_in); break;
            case LayerKind::maxpool2d: be.maxpool2d_forward(pool_shape(l, rows), in, out); break;
            case LayerKind::avgpool2d: be.avgpool2d_forward(pool_shape(l, rows), in, out); break;
            case LayerKind::flatten: break;
        }
        in = out;
        next ^= 1;
    }
    be.download(y, in, rows * m.n_outputs * sizeof(float));
}

}  // namespace sparseprox
