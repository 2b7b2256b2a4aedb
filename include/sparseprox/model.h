// SparseProx: network architecture, parameter layout and initialization.
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sparseprox {

enum class Activation { identity, relu, leaky_relu, tanh, sigmoid };
enum class LayerKind { dense, activation, conv2d, maxpool2d, avgpool2d, flatten };
enum class Loss { mse, cross_entropy };

constexpr float kLeakyReluSlope = 0.01f;

SPARSEPROX_API const char* to_string(Activation a);
SPARSEPROX_API const char* to_string(Loss l);
SPARSEPROX_API const char* to_string(LayerKind k);  // the JSON "type": dense, activation, conv2d, maxpool2d, ...
SPARSEPROX_API Activation parse_activation(const std::string& name);  // relu, leaky_relu|leakyrelu, tanh, sigmoid, identity|linear
SPARSEPROX_API Loss parse_loss(const std::string& name);              // mse, cross_entropy|ce

// The features of one sample as an NCHW tensor without its batch dimension. A flat vector of n
// features is (n, 1, 1); an MNIST image is (1, 28, 28), stored row by row.
struct SPARSEPROX_API SampleShape {
    std::size_t channels = 0;
    std::size_t height = 1;
    std::size_t width = 1;

    std::size_t size() const { return channels * height * width; }
    bool is_flat() const { return height == 1 && width == 1; }
    std::string to_string() const;  // "(1, 28, 28)"
    friend bool operator==(const SampleShape& a, const SampleShape& b) {
        return a.channels == b.channels && a.height == b.height && a.width == b.width;
    }
    friend bool operator!=(const SampleShape& a, const SampleShape& b) { return !(a == b); }
};

// One layer. n_in and n_out are the flattened sizes of every layer's input and output
// (in_shape.size(), out_shape.size()), so code that sees a batch as (batch, n) rows works for
// every kind. Data between layers is NCHW and contiguous per sample:
//   dense      y = W x + b on the input flattened in NCHW order (a dense layer after an image-
//              shaped output is an implicit flatten, exactly as torch.flatten then Linear);
//              W (n_out, n_in) as PyTorch's Linear.
//   conv2d     cross-correlation as PyTorch's Conv2d, W (c_out, c_in, kh, kw), bias (c_out),
//              zero padding; out = (in + 2 pad - k) / stride + 1 (floor).
//   maxpool2d  max over each window; padded positions never win.
//   avgpool2d  mean over each window, dividing by kh*kw padded positions included (PyTorch's
//              count_include_pad=True).
//   flatten    (c, h, w) -> (c*h*w, 1, 1); no data moves.
//   activation element-wise; keeps the shape.
// Window fields (kh .. pad_w) are used by conv2d and the pools only (1, 1, 1, 1, 0, 0 otherwise).
// Specs are built by ModelSpec's parsers, which fill and check every field.
struct SPARSEPROX_API LayerSpec {
    LayerKind kind = LayerKind::dense;
    std::size_t n_in = 0;   // in_shape.size()
    std::size_t n_out = 0;  // out_shape.size()
    Activation activation = Activation::identity;  // for LayerKind::activation
    SampleShape in_shape;
    SampleShape out_shape;
    std::size_t kh = 1, kw = 1;              // window height and width
    std::size_t stride_h = 1, stride_w = 1;
    std::size_t pad_h = 0, pad_w = 0;        // zero padding on each side

    bool has_weights() const { return kind == LayerKind::dense || kind == LayerKind::conv2d; }
    std::size_t n_weights() const;  // dense: n_out*n_in; conv2d: c_out*c_in*kh*kw; else 0
    std::size_t n_bias() const;     // dense: n_out; conv2d: c_out; else 0
    std::vector<std::size_t> weight_shape() const;  // {n_out, n_in} or {c_out, c_in, kh, kw}; empty without weights
    std::size_t fan_in() const;     // inputs feeding one output: n_in, or c_in*kh*kw
};

// A feed-forward network: a sequence of layers. Weight layers (dense, conv2d) carry parameters;
// the i-th weight layer is stored as safetensors tensors layers.<i>.weight / layers.<i>.bias.
struct SPARSEPROX_API ModelSpec {
    std::size_t n_inputs = 0;  // features per sample: input_shape.size()
    SampleShape input_shape;   // (n_inputs, 1, 1) for flat data; (1, 28, 28) for MNIST images
    std::vector<LayerSpec> layers;

    // Accepts, in this order:
    //  - a preset name: "cnn8" (docs/method.md §6: conv 1->32->64->128, 3x3 pad 1, each ReLU and
    //    2x2 max-pool, dense 1152->512->10 on 1x28x28), "lenet5" (LeNet-5-Caffe: conv 20 5x5,
    //    max-pool 2, conv 50 5x5, max-pool 2, dense 800->500->10 on 1x28x28) or "lenet300100"
    //    (dense:784-300-100-10);
    //  - "dense:6-128-128-64-1" (ReLU between dense layers, identity at the output), optionally
    //    with the hidden activation as a suffix: "dense:6-128-1:tanh";
    //  - a JSON object (see to_json) as text, or the path of a JSON model file.
    static ModelSpec parse(const std::string& text);
    static ModelSpec from_json(const std::string& json_text, const std::string& origin = "model JSON");
    static ModelSpec preset(const std::string& name);  // throws for an unknown name
    static std::vector<std::string> preset_names();

    // {"inputs": 6, "layers": [{"type": "dense", "units": 128}, {"type": "activation",
    //  "activation": "relu"}, ...]}; image inputs as "input_shape": [1, 28, 28] instead of
    // "inputs"; conv2d layers as {"type": "conv2d", "filters": 32, "kernel": 3, "stride": 1,
    // "padding": 1}, pools as {"type": "maxpool2d", "kernel": 2, "stride": 2, "padding": 0}
    // (a pair [h, w] where the two sides differ), {"type": "flatten"}.
    std::string to_json() const;
    // The preset name when the spec equals a preset; else "dense:6-128-1:relu" when the
    // network has that form; else JSON.
    std::string to_short() const;

    // Throws sparseprox::Error naming the layer and field when the layers do not chain (shapes,
    // sizes) or a window does not fit its input. Every parser calls it.
    void validate() const;

    std::size_t n_outputs() const;
    std::size_t n_weight_layers() const;  // dense and conv2d layers
    std::size_t n_weights() const;        // all weight entries (biases excluded)
};

// Where each weight layer's parameters live in one contiguous slab (the same layout on every
// backend). Segments start on kAlign-element boundaries so a GPU tile never straddles two.
struct SPARSEPROX_API ParamSegment {
    std::size_t layer = 0;          // index into ModelSpec::layers
    std::size_t weight_offset = 0;  // weights: row-major in weight_shape, as PyTorch's Linear/Conv2d
    std::size_t n_weights = 0;
    std::size_t bias_offset = 0;
    std::size_t n_bias = 0;
    std::vector<std::size_t> weight_shape;  // (n_out, n_in) dense, (c_out, c_in, kh, kw) conv2d
};

struct SPARSEPROX_API ParamLayout {
    static constexpr std::size_t kAlign = 2048;
    std::vector<ParamSegment> segments;  // one per weight layer, in order
    std::size_t slab_size = 0;           // floats, including padding

    static ParamLayout of(const ModelSpec& spec);
};

// A view of n contiguous elements (C++17 has no std::span).
template <class T>
class Span {
public:
    Span() = default;
    Span(T* data, std::size_t size) : data_(data), size_(size) {}
    T* data() const { return data_; }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    T& operator[](std::size_t i) const { return data_[i]; }
    T* begin() const { return data_; }
    T* end() const { return data_ + size_; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

struct Device;
struct Dataset;

class SPARSEPROX_API Model {
public:
    Model() = default;
    explicit Model(ModelSpec spec);  // zero parameters

    // Weights and biases ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in)) from a fixed seed (docs/method.md §3),
    // fan_in = n_in for dense and c_in*kh*kw for conv2d layers (PyTorch's default bound); weight
    // layers in order, each its weights then its bias. Identical on every platform and backend.
    static Model initialize(const ModelSpec& spec, std::uint64_t seed);

    const ModelSpec& spec() const { return spec_; }

    // Weight layer i's weights, row-major in its weight_shape (dense (n_out, n_in), conv (c_out,
    // c_in, kh, kw), as PyTorch's Linear and Conv2d), and its biases.
    Span<float> weights(std::size_t i);
    Span<const float> weights(std::size_t i) const;
    Span<float> biases(std::size_t i);
    Span<const float> biases(std::size_t i) const;
    // The shape of weight layer i's weights.
    const std::vector<std::size_t>& weight_shape(std::size_t i) const { return layout_.segments.at(i).weight_shape; }

    // The network's outputs for n rows of inputs x (n, n_inputs), on `device`: (n, n_outputs)
    // row-major (regression targets, or class logits). Throws when x.size() is not a multiple
    // of the input width.
    std::vector<float> predict(const std::vector<float>& x, const Device& device) const;
    // The outputs for every row of a data set.
    std::vector<float> predict(const Dataset& data, const Device& device) const;

    // The engines' parameter layout: every layer's weights then biases, each segment aligned to
    // ParamLayout::kAlign floats with zero padding between. For code that moves whole models
    // (save, load, the trainers); weights() and biases() are the layer-level view.
    const ParamLayout& layout() const { return layout_; }
    std::vector<float>& slab() { return slab_; }
    const std::vector<float>& slab() const { return slab_; }

    std::size_t n_weight_layers() const { return layout_.segments.size(); }
    float* weight(std::size_t i);
    const float* weight(std::size_t i) const;
    float* bias(std::size_t i);
    const float* bias(std::size_t i) const;

    std::size_t nnz(std::size_t i) const;    // exact nonzero weights of weight layer i
    std::vector<std::size_t> nnz() const;     // per weight layer
    std::size_t nnz_total() const;
    // Per weight layer: the units still connected, i.e. the input neurons (dense: columns of W)
    // or output filters (conv) with at least one nonzero weight.
    std::vector<std::size_t> alive_units() const;

private:
    ModelSpec spec_;
    ParamLayout layout_;
    std::vector<float> slab_;
};

}  // namespace sparseprox
