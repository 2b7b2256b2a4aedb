#include "sparseprox/model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "io/input_text.h"
#include "sparseprox/error.h"

namespace sparseprox {

const char* to_string(Activation a) {
    switch (a) {
        case Activation::identity: return "identity";
        case Activation::relu: return "relu";
        case Activation::leaky_relu: return "leaky_relu";
        case Activation::tanh: return "tanh";
        case Activation::sigmoid: return "sigmoid";
    }
    return "?";
}

const char* to_string(Loss l) { return l == Loss::mse ? "mse" : "cross_entropy"; }

Activation parse_activation(const std::string& name) {
    std::string s = name;
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    if (s == "relu") return Activation::relu;
    if (s == "leaky_relu" || s == "leakyrelu" || s == "lrelu") return Activation::leaky_relu;
    if (s == "tanh") return Activation::tanh;
    if (s == "sigmoid") return Activation::sigmoid;
    if (s == "identity" || s == "linear" || s == "none") return Activation::identity;
    throw Error("unknown activation '" + excerpt(name) + "' (expected relu, leaky_relu, tanh, sigmoid or identity)");
}

Loss parse_loss(const std::string& name) {
    if (name == "mse") return Loss::mse;
    if (name == "cross_entropy" || name == "ce" || name == "cross-entropy") return Loss::cross_entropy;
    throw Error("unknown loss '" + name + "' (expected mse or cross_entropy)");
}

const char* to_string(LayerKind k) {
    switch (k) {
        case LayerKind::dense: return "dense";
        case LayerKind::activation: return "activation";
        case LayerKind::conv2d: return "conv2d";
        case LayerKind::maxpool2d: return "maxpool2d";
        case LayerKind::avgpool2d: return "avgpool2d";
        case LayerKind::flatten: return "flatten";
    }
    return "?";
}

std::string SampleShape::to_string() const {
    return "(" + std::to_string(channels) + ", " + std::to_string(height) + ", " + std::to_string(width) + ")";
}

std::size_t LayerSpec::n_weights() const {
    if (kind == LayerKind::dense) return n_out * n_in;
    if (kind == LayerKind::conv2d) return out_shape.channels * in_shape.channels * kh * kw;
    return 0;
}

std::size_t LayerSpec::n_bias() const {
    if (kind == LayerKind::dense) return n_out;
    if (kind == LayerKind::conv2d) return out_shape.channels;
    return 0;
}

std::vector<std::size_t> LayerSpec::weight_shape() const {
    if (kind == LayerKind::dense) return {n_out, n_in};
    if (kind == LayerKind::conv2d) return {out_shape.channels, in_shape.channels, kh, kw};
    return {};
}

std::size_t LayerSpec::fan_in() const {
    if (kind == LayerKind::dense) return n_in;
    if (kind == LayerKind::conv2d) return in_shape.channels * kh * kw;
    return 0;
}

namespace {

// Sizes of one dimension, and of a whole sample, far beyond any network this library trains
// but small enough that products of a few of them cannot overflow.
constexpr std::size_t kMaxDim = std::size_t{1} << 31;
constexpr std::size_t kMaxSampleSize = std::size_t{1} << 40;
// Weights of a whole model: sums and byte counts of them cannot overflow.
constexpr std::size_t kMaxWeights = std::size_t{1} << 40;

// The weights of a layer, or false when the count passes `limit` (no product can wrap: every
// factor was checked against kMaxDim or kMaxSampleSize, and each partial product against limit).
bool layer_weights(const LayerSpec& l, std::size_t limit, std::size_t& out) {
    std::vector<std::size_t> factors;
    if (l.kind == LayerKind::dense) factors = {l.n_out, l.n_in};
    else if (l.kind == LayerKind::conv2d) factors = {l.out_shape.channels, l.in_shape.channels, l.kh, l.kw};
    std::size_t n = 1;
    for (std::size_t f : factors) {
        if (f != 0 && n > limit / f) return false;
        n *= f;
    }
    out = factors.empty() ? 0 : n;
    return true;
}

std::size_t parse_size(const std::string& s, const std::string& what) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
        throw Error(what + ": '" + excerpt(s) + "' is not a positive whole number");
    unsigned long long v = 0;
    try {
        v = std::stoull(s);
    } catch (const std::exception&) {
        throw Error(what + ": '" + excerpt(s) + "' is out of range");
    }
    if (v == 0 || v > kMaxDim) throw Error(what + ": '" + excerpt(s) + "' must be between 1 and 2^31");
    return static_cast<std::size_t>(v);
}

// Builds layers one after another from the running sample shape, checking each against its
// input. `fail(field, why)` makes the error: the JSON reader names "layers[i].<field>", the
// spec checker "layer i (<kind>) <field>".
using FailFn = std::function<Error(const std::string& field, const std::string& why)>;

std::string hw(std::size_t h, std::size_t w) { return std::to_string(h) + "x" + std::to_string(w); }

SampleShape flat(std::size_t n) { return SampleShape{n, 1, 1}; }

void check_sample(const SampleShape& s, const std::string& field, const FailFn& fail) {
    if (s.channels == 0 || s.height == 0 || s.width == 0)
        throw fail(field, "has a zero size " + s.to_string());
    if (s.channels > kMaxDim || s.height > kMaxDim || s.width > kMaxDim ||
        s.channels * s.height > kMaxSampleSize / s.width)
        throw fail(field, "gives a sample shape " + s.to_string() + " that is too large");
}

LayerSpec dense_layer(const SampleShape& in, std::size_t units) {
    LayerSpec l;
    l.kind = LayerKind::dense;
    l.in_shape = in;
    l.out_shape = flat(units);
    l.n_in = in.size();
    l.n_out = units;
    return l;
}

LayerSpec activation_layer(const SampleShape& in, Activation a) {
    LayerSpec l;
    l.kind = LayerKind::activation;
    l.activation = a;
    l.in_shape = l.out_shape = in;
    l.n_in = l.n_out = in.size();
    return l;
}

LayerSpec flatten_layer(const SampleShape& in) {
    LayerSpec l;
    l.kind = LayerKind::flatten;
    l.in_shape = in;
    l.out_shape = flat(in.size());
    l.n_in = l.n_out = in.size();
    return l;
}

// conv2d (filters > 0) or a pool (filters = 0: the channels pass through). Every size is
// checked here, so that h_out()/w_out() below can never wrap around.
LayerSpec window_layer(LayerKind kind, const SampleShape& in, std::size_t filters, std::size_t kh, std::size_t kw,
                       std::size_t sh, std::size_t sw, std::size_t ph, std::size_t pw, const FailFn& fail) {
    const bool conv = kind == LayerKind::conv2d;
    if (conv && (filters == 0 || filters > kMaxDim)) throw fail("filters", "must be between 1 and 2^31");
    if (kh == 0 || kw == 0 || kh > kMaxDim || kw > kMaxDim)
        throw fail("kernel", "is " + hw(kh, kw) + ": both sides must be between 1 and 2^31");
    if (sh == 0 || sw == 0 || sh > kMaxDim || sw > kMaxDim)
        throw fail("stride", "is " + hw(sh, sw) + ": both must be between 1 and 2^31");
    if (ph > kMaxDim || pw > kMaxDim) throw fail("padding", "is " + hw(ph, pw) + ": too large");
    // As PyTorch: a pooling window must overlap the input, so every output has a real maximum.
    if (!conv && (2 * ph > kh || 2 * pw > kw))
        throw fail("padding", "is " + hw(ph, pw) + " but may be at most half the " + hw(kh, kw) + " kernel");
    if (kh > in.height + 2 * ph || kw > in.width + 2 * pw) {
        std::string why = "is " + hw(kh, kw) + ", larger than the " + hw(in.height, in.width) + " input plus padding " +
                          hw(ph, pw) + " (input shape " + in.to_string() + ")";
        if (in.is_flat())
            why += "; this layer's input is flat: give the model an \"input_shape\" such as [1, 28, 28] and put "
                   "image layers before the dense ones";
        throw fail("kernel", why);
    }
    LayerSpec l;
    l.kind = kind;
    l.in_shape = in;
    l.kh = kh;
    l.kw = kw;
    l.stride_h = sh;
    l.stride_w = sw;
    l.pad_h = ph;
    l.pad_w = pw;
    l.out_shape = SampleShape{conv ? filters : in.channels, (in.height + 2 * ph - kh) / sh + 1,
                              (in.width + 2 * pw - kw) / sw + 1};
    check_sample(l.out_shape, conv ? "filters" : "kernel", fail);
    l.n_in = in.size();
    l.n_out = l.out_shape.size();
    return l;
}

ModelSpec parse_dense_short(const std::string& text) {
    // dense:6-128-128-64-1[:activation]
    std::string body = text.substr(6);
    Activation hidden = Activation::relu;
    if (auto colon = body.find(':'); colon != std::string::npos) {
        hidden = parse_activation(body.substr(colon + 1));
        body = body.substr(0, colon);
    }
    std::vector<std::size_t> sizes;
    std::stringstream ss(body);
    std::string part;
    while (std::getline(ss, part, '-'))
        sizes.push_back(parse_size(part, "model spec '" + excerpt(text) + "' layer width"));
    if (sizes.size() < 2)
        throw Error("model spec '" + excerpt(text) + "': need at least an input and an output width, e.g. dense:6-128-1");
    ModelSpec spec;
    spec.n_inputs = sizes[0];
    spec.input_shape = flat(sizes[0]);
    for (std::size_t i = 1; i < sizes.size(); ++i) {
        spec.layers.push_back(dense_layer(flat(sizes[i - 1]), sizes[i]));
        if (i + 1 < sizes.size() && hidden != Activation::identity)
            spec.layers.push_back(activation_layer(flat(sizes[i]), hidden));
    }
    spec.validate();
    return spec;
}

// The presets as JSON model specs (docs/method.md §6 and the LeNets of the related-methods papers).
struct Preset {
    const char* name;
    const char* spec;
};
const Preset kPresets[] = {
    {"cnn8",
     R"({"input_shape": [1, 28, 28], "layers": [
        {"type": "conv2d", "filters": 32, "kernel": 3, "padding": 1, "activation": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "filters": 64, "kernel": 3, "padding": 1, "activation": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "filters": 128, "kernel": 3, "padding": 1, "activation": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 512, "activation": "relu"},
        {"type": "dense", "units": 10}]})"},
    // LeNet-5-Caffe: no activation after the convolutions, ReLU after the first dense layer.
    {"lenet5",
     R"({"input_shape": [1, 28, 28], "layers": [
        {"type": "conv2d", "filters": 20, "kernel": 5},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "filters": 50, "kernel": 5},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 500, "activation": "relu"},
        {"type": "dense", "units": 10}]})"},
    {"lenet300100", "dense:784-300-100-10"},
};

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

const Preset* find_preset(const std::string& name) {
    const std::string key = lower(name);
    for (const Preset& p : kPresets)
        if (key == p.name) return &p;
    return nullptr;
}

std::string preset_list() {
    std::string s;
    for (const Preset& p : kPresets) s += (s.empty() ? "" : ", ") + std::string(p.name);
    return s;
}

// A JSON size: a positive integer, or [h, w] of them (zero allowed where `allow_zero`).
bool json_size(const nlohmann::json& j, bool allow_zero, std::size_t& out) {
    if (!j.is_number_unsigned()) return false;
    const auto v = j.get<std::uint64_t>();
    if ((v == 0 && !allow_zero) || v > kMaxDim) return false;
    out = static_cast<std::size_t>(v);
    return true;
}

bool json_pair(const nlohmann::json& j, bool allow_zero, std::size_t& h, std::size_t& w) {
    if (j.is_array()) return j.size() == 2 && json_size(j[0], allow_zero, h) && json_size(j[1], allow_zero, w);
    if (!json_size(j, allow_zero, h)) return false;
    w = h;
    return true;
}

nlohmann::json pair_json(std::size_t h, std::size_t w) {
    return h == w ? nlohmann::json(h) : nlohmann::json::array({h, w});
}

}  // namespace

ModelSpec ModelSpec::from_json(const std::string& json_text, const std::string& origin) {
    // Depth-bounded (error messages below print values) and without repeated keys.
    const nlohmann::json j = parse_json_input(json_text, origin);
    auto field_error = [&](const std::string& field, const std::string& why) {
        return Error(origin + ": field '" + field + "' " + why);
    };
    if (!j.is_object()) throw Error(origin + ": expected a JSON object");
    ModelSpec spec;
    const bool has_inputs = j.contains("inputs"), has_shape = j.contains("input_shape");
    if (has_inputs) {
        std::size_t n = 0;
        if (!json_size(j["inputs"], false, n)) throw field_error("inputs", "must be a positive integer");
        spec.input_shape = flat(n);
    }
    if (has_shape) {
        const auto& s = j["input_shape"];
        SampleShape shape;
        if (!s.is_array() || s.size() != 3 || !json_size(s[0], false, shape.channels) ||
            !json_size(s[1], false, shape.height) || !json_size(s[2], false, shape.width))
            throw field_error("input_shape", "must be [channels, height, width] of positive integers, e.g. [1, 28, 28]");
        check_sample(shape, "input_shape", field_error);
        if (has_inputs && spec.input_shape.size() != shape.size())
            throw field_error("inputs", "is " + std::to_string(spec.input_shape.size()) + " but \"input_shape\" " +
                                            shape.to_string() + " holds " + std::to_string(shape.size()) + " features");
        spec.input_shape = shape;
    }
    if (!has_inputs && !has_shape)
        throw field_error("inputs", "must be a positive integer (or give \"input_shape\": [channels, height, width])");
    spec.n_inputs = spec.input_shape.size();
    if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty())
        throw field_error("layers", "must be a non-empty array");

    constexpr const char* kTypes = "\"dense\", \"conv2d\", \"maxpool2d\", \"avgpool2d\", \"flatten\" or \"activation\"";
    SampleShape shape = spec.input_shape;
    for (std::size_t i = 0; i < j["layers"].size(); ++i) {
        const auto& l = j["layers"][i];
        const std::string where = "layers[" + std::to_string(i) + "]";
        const FailFn fail = [&](const std::string& field, const std::string& why) {
            return field_error(where + "." + field, why);
        };
        if (!l.is_object() || !l.contains("type") || !l["type"].is_string())
            throw field_error(where + ".type", std::string("is missing (expected ") + kTypes + ")");
        const std::string type = l["type"].get<std::string>();
        auto pair_field = [&](const char* key, bool allow_zero, std::size_t fallback_h, std::size_t fallback_w,
                              bool required, std::size_t& h, std::size_t& w) {
            if (!l.contains(key)) {
                if (required) throw fail(key, "is missing (a positive integer or [height, width])");
                h = fallback_h;
                w = fallback_w;
                return;
            }
            if (!json_pair(l[key], allow_zero, h, w))
                throw fail(key, std::string("must be a ") + (allow_zero ? "non-negative" : "positive") +
                                    " integer or [height, width] of them, got " + json_excerpt(l[key]));
        };
        if (type == "dense") {
            std::size_t units = 0;
            if (!l.contains("units") || !json_size(l["units"], false, units))
                throw fail("units", "must be a positive integer");
            spec.layers.push_back(dense_layer(shape, units));
        } else if (type == "conv2d" || type == "maxpool2d" || type == "avgpool2d") {
            const bool conv = type == "conv2d";
            std::size_t filters = 0, kh = 0, kw = 0, sh = 0, sw = 0, ph = 0, pw = 0;
            if (conv && (!l.contains("filters") || !json_size(l["filters"], false, filters)))
                throw fail("filters", "must be a positive integer");
            pair_field("kernel", false, 0, 0, true, kh, kw);
            // Defaults as PyTorch: stride 1 for a convolution, the kernel for a pool.
            pair_field("stride", false, conv ? 1 : kh, conv ? 1 : kw, false, sh, sw);
            pair_field("padding", true, 0, 0, false, ph, pw);
            const LayerKind kind =
                conv ? LayerKind::conv2d : (type == "maxpool2d" ? LayerKind::maxpool2d : LayerKind::avgpool2d);
            spec.layers.push_back(window_layer(kind, shape, filters, kh, kw, sh, sw, ph, pw, fail));
        } else if (type == "flatten") {
            spec.layers.push_back(flatten_layer(shape));
        } else if (type == "activation") {
            if (!l.contains("activation") || !l["activation"].is_string())
                throw fail("activation", "must be a string");
            spec.layers.push_back(activation_layer(shape, parse_activation(l["activation"].get<std::string>())));
            shape = spec.layers.back().out_shape;
            continue;
        } else {
            throw fail("type", "is '" + excerpt(type) + "' (expected " + kTypes + ")");
        }
        shape = spec.layers.back().out_shape;
        if (l.contains("activation")) {
            if (!l["activation"].is_string()) throw fail("activation", "must be a string");
            const Activation a = parse_activation(l["activation"].get<std::string>());
            if (a != Activation::identity) spec.layers.push_back(activation_layer(shape, a));
        }
    }
    if (spec.n_weight_layers() == 0) throw field_error("layers", "has no weight (dense or conv2d) layer");
    try {
        spec.validate();
    } catch (const Error& e) {
        throw Error(origin + ": " + e.what());
    }
    return spec;
}

ModelSpec ModelSpec::preset(const std::string& name) {
    const Preset* p = find_preset(name);
    if (!p) throw Error("unknown model preset '" + excerpt(name) + "' (known: " + preset_list() + ")");
    return parse(p->spec);
}

std::vector<std::string> ModelSpec::preset_names() {
    std::vector<std::string> out;
    for (const Preset& p : kPresets) out.emplace_back(p.name);
    return out;
}

ModelSpec ModelSpec::parse(const std::string& text) {
    if (find_preset(text)) return preset(text);
    if (text.rfind("dense:", 0) == 0) return parse_dense_short(text);
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '{') return from_json(text);
    std::ifstream probe(text);
    if (!probe)
        throw Error("model '" + excerpt(text) + "': not a preset (" + preset_list() +
                    "), not a spec like dense:6-128-1 and no such JSON model file");
    return from_json(read_file(text), "model file '" + text + "'");
}

void ModelSpec::validate() const {
    auto fail_at = [](const std::string& where) {
        return FailFn([where](const std::string& field, const std::string& why) {
            return Error("model spec " + where + ": " + field + " " + why);
        });
    };
    if (n_inputs == 0) throw Error("model spec: n_inputs must be positive");
    check_sample(input_shape, "input_shape", fail_at("input"));
    if (input_shape.size() != n_inputs)
        throw Error("model spec: input_shape " + input_shape.to_string() + " holds " +
                    std::to_string(input_shape.size()) + " features but n_inputs is " + std::to_string(n_inputs));
    if (layers.empty()) throw Error("model spec: no layers");
    SampleShape shape = input_shape;
    std::size_t weights = 0;  // of the layers so far
    for (std::size_t k = 0; k < layers.size(); ++k) {
        const LayerSpec& l = layers[k];
        const std::string where = "layer " + std::to_string(k) + " (" + to_string(l.kind) + ")";
        const FailFn fail = fail_at(where);
        LayerSpec expected;
        switch (l.kind) {
            case LayerKind::dense:
                if (l.n_out == 0 || l.n_out > kMaxDim) throw fail("n_out", "must be between 1 and 2^31");
                expected = dense_layer(shape, l.n_out);
                break;
            case LayerKind::activation: expected = activation_layer(shape, l.activation); break;
            case LayerKind::flatten: expected = flatten_layer(shape); break;
            case LayerKind::conv2d:
            case LayerKind::maxpool2d:
            case LayerKind::avgpool2d:
                expected = window_layer(l.kind, shape, l.kind == LayerKind::conv2d ? l.out_shape.channels : 0, l.kh,
                                        l.kw, l.stride_h, l.stride_w, l.pad_h, l.pad_w, fail);
                break;
        }
        if (l.in_shape != expected.in_shape)
            throw fail("in_shape", "is " + l.in_shape.to_string() + " but the layer before gives " +
                                       expected.in_shape.to_string());
        if (l.out_shape != expected.out_shape)
            throw fail("out_shape", "is " + l.out_shape.to_string() + ", expected " + expected.out_shape.to_string());
        if (l.n_in != expected.n_in || l.n_out != expected.n_out)
            throw fail("n_in/n_out", "are " + std::to_string(l.n_in) + "/" + std::to_string(l.n_out) + ", expected " +
                                         std::to_string(expected.n_in) + "/" + std::to_string(expected.n_out));
        shape = l.out_shape;
        std::size_t w = 0;
        if (!layer_weights(l, kMaxWeights - weights, w))
            throw fail("weights", "exceed the limit of 2^40 weights in a model (" +
                                      (l.kind == LayerKind::dense
                                           ? std::to_string(l.n_in) + " inputs x " + std::to_string(l.n_out) + " units"
                                           : std::to_string(l.out_shape.channels) + " filters x " +
                                                 std::to_string(l.in_shape.channels) + " channels x " + hw(l.kh, l.kw)) +
                                      (weights ? ", after " + std::to_string(weights) + " in the layers before" : "") + ")");
        weights += w;
    }
    if (n_weight_layers() == 0) throw Error("model spec: no weight (dense or conv2d) layer");
}

std::string ModelSpec::to_json() const {
    nlohmann::json j;
    if (input_shape.is_flat() || input_shape.size() == 0)
        j["inputs"] = n_inputs;
    else
        j["input_shape"] = {input_shape.channels, input_shape.height, input_shape.width};
    j["layers"] = nlohmann::json::array();
    for (const auto& l : layers) {
        switch (l.kind) {
            case LayerKind::dense: j["layers"].push_back({{"type", "dense"}, {"units", l.n_out}}); break;
            case LayerKind::activation:
                j["layers"].push_back({{"type", "activation"}, {"activation", to_string(l.activation)}});
                break;
            case LayerKind::flatten: j["layers"].push_back({{"type", "flatten"}}); break;
            case LayerKind::conv2d:
            case LayerKind::maxpool2d:
            case LayerKind::avgpool2d: {
                nlohmann::json o = {{"type", to_string(l.kind)},
                                    {"kernel", pair_json(l.kh, l.kw)},
                                    {"stride", pair_json(l.stride_h, l.stride_w)},
                                    {"padding", pair_json(l.pad_h, l.pad_w)}};
                if (l.kind == LayerKind::conv2d) o["filters"] = l.out_shape.channels;
                j["layers"].push_back(std::move(o));
                break;
            }
        }
    }
    return j.dump();
}

std::string ModelSpec::to_short() const {
    // Image models print as their preset name when they are one; dense models keep the
    // dense:... form, which says more than "lenet300100".
    const std::string json = to_json();
    if (!input_shape.is_flat()) {
        for (const Preset& p : kPresets)
            if (parse(p.spec).to_json() == json) return p.name;
        return json;
    }
    // dense, then (activation A, dense)* with one shared A, ending with a dense layer.
    std::string out = "dense:" + std::to_string(n_inputs);
    Activation hidden = Activation::relu;
    bool have_hidden = false;
    bool expect_dense = true;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const auto& l = layers[i];
        if (expect_dense) {
            if (l.kind != LayerKind::dense) return json;
            out += "-" + std::to_string(l.n_out);
            expect_dense = false;
        } else {
            if (l.kind != LayerKind::activation || (have_hidden && l.activation != hidden)) return json;
            hidden = l.activation;
            have_hidden = true;
            expect_dense = true;
        }
    }
    if (expect_dense) return json;  // ends with an activation
    if (have_hidden && hidden != Activation::relu) out += std::string(":") + to_string(hidden);
    if (!have_hidden && n_weight_layers() > 1) return json;
    return out;
}

std::size_t ModelSpec::n_outputs() const { return layers.empty() ? n_inputs : layers.back().n_out; }

std::size_t ModelSpec::n_weight_layers() const {
    return static_cast<std::size_t>(
        std::count_if(layers.begin(), layers.end(), [](const LayerSpec& l) { return l.has_weights(); }));
}

std::size_t ModelSpec::n_weights() const {
    std::size_t n = 0;
    for (const auto& l : layers) n += l.n_weights();
    return n;
}

ParamLayout ParamLayout::of(const ModelSpec& spec) {
    auto align = [](std::size_t x) { return (x + kAlign - 1) / kAlign * kAlign; };
    ParamLayout p;
    std::size_t offset = 0;
    for (std::size_t i = 0; i < spec.layers.size(); ++i) {
        const auto& l = spec.layers[i];
        if (!l.has_weights()) continue;
        ParamSegment s;
        s.layer = i;
        s.n_weights = l.n_weights();
        s.weight_shape = l.weight_shape();
        s.weight_offset = offset;
        offset = align(offset + s.n_weights);
        s.n_bias = l.n_bias();
        s.bias_offset = offset;
        offset = align(offset + s.n_bias);
        p.segments.push_back(s);
    }
    p.slab_size = offset;
    return p;
}

Model::Model(ModelSpec spec) : spec_(std::move(spec)), layout_(ParamLayout::of(spec_)), slab_(layout_.slab_size, 0.0f) {}

Model Model::initialize(const ModelSpec& spec, std::uint64_t seed) {
    Model m(spec);
    // mt19937_64's sequence is fixed by the standard; the float mapping below is ours, so the
    // same seed gives the same weights with every compiler and on every backend.
    std::mt19937_64 rng(seed);
    auto uniform01 = [&rng]() { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
    for (const auto& s : m.layout_.segments) {
        // fan_in: every weight dimension but the first (n_in, or c_in*kh*kw).
        std::size_t fan_in = 1;
        for (std::size_t d = 1; d < s.weight_shape.size(); ++d) fan_in *= s.weight_shape[d];
        const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
        for (std::size_t k = 0; k < s.n_weights; ++k)
            m.slab_[s.weight_offset + k] = static_cast<float>((2.0 * uniform01() - 1.0) * bound);
        for (std::size_t k = 0; k < s.n_bias; ++k)
            m.slab_[s.bias_offset + k] = static_cast<float>((2.0 * uniform01() - 1.0) * bound);
    }
    return m;
}

Span<float> Model::weights(std::size_t i) { return {weight(i), layout_.segments.at(i).n_weights}; }
Span<const float> Model::weights(std::size_t i) const { return {weight(i), layout_.segments.at(i).n_weights}; }
Span<float> Model::biases(std::size_t i) { return {bias(i), layout_.segments.at(i).n_bias}; }
Span<const float> Model::biases(std::size_t i) const { return {bias(i), layout_.segments.at(i).n_bias}; }
float* Model::weight(std::size_t i) { return slab_.data() + layout_.segments.at(i).weight_offset; }
const float* Model::weight(std::size_t i) const { return slab_.data() + layout_.segments.at(i).weight_offset; }
float* Model::bias(std::size_t i) { return slab_.data() + layout_.segments.at(i).bias_offset; }
const float* Model::bias(std::size_t i) const { return slab_.data() + layout_.segments.at(i).bias_offset; }

std::size_t Model::nnz(std::size_t i) const {
    const float* w = weight(i);
    const std::size_t n = layout_.segments[i].n_weights;
    return static_cast<std::size_t>(std::count_if(w, w + n, [](float v) { return v != 0.0f; }));
}

std::vector<std::size_t> Model::nnz() const {
    std::vector<std::size_t> out(n_weight_layers());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = nnz(i);
    return out;
}

std::size_t Model::nnz_total() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < n_weight_layers(); ++i) n += nnz(i);
    return n;
}

std::vector<std::size_t> Model::alive_units() const {
    std::vector<std::size_t> out;
    for (std::size_t l = 0; l < n_weight_layers(); ++l) {
        const ParamSegment& s = layout_.segments[l];
        const float* w = slab_.data() + s.weight_offset;
        const std::size_t rows = s.weight_shape[0];
        const std::size_t cols = s.n_weights / rows;
        std::size_t alive = 0;
        if (spec_.layers[s.layer].kind == LayerKind::conv2d) {  // output filters: rows
            for (std::size_t r = 0; r < rows; ++r)
                alive += std::any_of(w + r * cols, w + (r + 1) * cols, [](float v) { return v != 0.0f; });
        } else {  // input neurons: columns
            for (std::size_t c = 0; c < cols; ++c) {
                bool any = false;
                for (std::size_t r = 0; r < rows && !any; ++r) any = w[r * cols + c] != 0.0f;
                alive += any;
            }
        }
        out.push_back(alive);
    }
    return out;
}

}  // namespace sparseprox
