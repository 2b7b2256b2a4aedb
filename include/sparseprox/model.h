// SparseProx: network architecture, parameter layout and initialization.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sparseprox {

enum class Activation { identity, relu, leaky_relu, tanh, sigmoid };
enum class LayerKind { dense, activation };
enum class Loss { mse, cross_entropy };

constexpr float kLeakyReluSlope = 0.01f;

const char* to_string(Activation a);
const char* to_string(Loss l);
Activation parse_activation(const std::string& name);  // relu, leaky_relu|leakyrelu, tanh, sigmoid, identity|linear
Loss parse_loss(const std::string& name);              // mse, cross_entropy|ce

struct LayerSpec {
    LayerKind kind = LayerKind::dense;
    std::size_t n_in = 0;
    std::size_t n_out = 0;
    Activation activation = Activation::identity;  // for LayerKind::activation
};

// A feed-forward network: a sequence of layers. Weight layers (dense) carry parameters; the
// i-th weight layer is stored as safetensors tensors layers.<i>.weight / layers.<i>.bias.
struct ModelSpec {
    std::size_t n_inputs = 0;
    std::vector<LayerSpec> layers;

    // "dense:6-128-128-64-1" (ReLU between dense layers, identity at the output), optionally
    // with the hidden activation as a suffix: "dense:6-128-1:tanh". Also accepts a JSON object
    // (see to_json) as text, or the path of a JSON model file.
    static ModelSpec parse(const std::string& text);
    static ModelSpec from_json(const std::string& json_text, const std::string& origin = "model JSON");

    // {"inputs": 6, "layers": [{"type": "dense", "units": 128}, {"type": "activation",
    //  "activation": "relu"}, ...]}
    std::string to_json() const;
    std::string to_short() const;  // "dense:6-128-1:relu" when the network has that form, else JSON

    std::size_t n_outputs() const;
    std::size_t n_weight_layers() const;
    std::size_t n_weights() const;  // all weight entries (biases excluded)
};

// Where each weight layer's parameters live in one contiguous slab (the same layout on every
// backend). Segments start on kAlign-element boundaries so a GPU tile never straddles two.
struct ParamSegment {
    std::size_t layer = 0;          // index into ModelSpec::layers
    std::size_t weight_offset = 0;  // weights: (n_out, n_in) row-major, as PyTorch's Linear
    std::size_t n_weights = 0;
    std::size_t bias_offset = 0;
    std::size_t n_bias = 0;
    std::vector<std::size_t> weight_shape;
};

struct ParamLayout {
    static constexpr std::size_t kAlign = 2048;
    std::vector<ParamSegment> segments;  // one per weight layer, in order
    std::size_t slab_size = 0;           // floats, including padding

    static ParamLayout of(const ModelSpec& spec);
};

class Model {
public:
    Model() = default;
    explicit Model(ModelSpec spec);  // zero parameters

    // Weights and biases ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in)) from a fixed seed (method.md §3);
    // identical on every platform and backend.
    static Model initialize(const ModelSpec& spec, std::uint64_t seed);

    const ModelSpec& spec() const { return spec_; }
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

private:
    ModelSpec spec_;
    ParamLayout layout_;
    std::vector<float> slab_;
};

}  // namespace sparseprox
