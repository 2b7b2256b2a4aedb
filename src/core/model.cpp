#include "sparseprox/model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
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
    throw Error("unknown activation '" + name + "' (expected relu, leaky_relu, tanh, sigmoid or identity)");
}

Loss parse_loss(const std::string& name) {
    if (name == "mse") return Loss::mse;
    if (name == "cross_entropy" || name == "ce" || name == "cross-entropy") return Loss::cross_entropy;
    throw Error("unknown loss '" + name + "' (expected mse or cross_entropy)");
}

namespace {

std::size_t parse_size(const std::string& s, const std::string& what) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
        throw Error(what + ": '" + s + "' is not a positive whole number");
    unsigned long long v = 0;
    try {
        v = std::stoull(s);
    } catch (const std::exception&) {
        throw Error(what + ": '" + s + "' is out of range");
    }
    if (v == 0 || v > (1ull << 31)) throw Error(what + ": '" + s + "' must be between 1 and 2^31");
    return static_cast<std::size_t>(v);
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
        sizes.push_back(parse_size(part, "model spec '" + text + "' layer width"));
    if (sizes.size() < 2)
        throw Error("model spec '" + text + "': need at least an input and an output width, e.g. dense:6-128-1");
    ModelSpec spec;
    spec.n_inputs = sizes[0];
    for (std::size_t i = 1; i < sizes.size(); ++i) {
        spec.layers.push_back({LayerKind::dense, sizes[i - 1], sizes[i], Activation::identity});
        if (i + 1 < sizes.size() && hidden != Activation::identity)
            spec.layers.push_back({LayerKind::activation, sizes[i], sizes[i], hidden});
    }
    return spec;
}

}  // namespace

ModelSpec ModelSpec::from_json(const std::string& json_text, const std::string& origin) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_text);
    } catch (const std::exception& e) {
        throw Error(origin + ": invalid JSON: " + e.what());
    }
    auto field_error = [&](const std::string& field, const std::string& why) {
        return Error(origin + ": field '" + field + "' " + why);
    };
    if (!j.is_object()) throw Error(origin + ": expected a JSON object");
    if (!j.contains("inputs") || !j["inputs"].is_number_unsigned() || j["inputs"].get<std::size_t>() == 0)
        throw field_error("inputs", "must be a positive integer");
    if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty())
        throw field_error("layers", "must be a non-empty array");
    ModelSpec spec;
    spec.n_inputs = j["inputs"].get<std::size_t>();
    std::size_t width = spec.n_inputs;
    for (std::size_t i = 0; i < j["layers"].size(); ++i) {
        const auto& l = j["layers"][i];
        const std::string where = "layers[" + std::to_string(i) + "]";
        if (!l.is_object() || !l.contains("type") || !l["type"].is_string())
            throw field_error(where + ".type", "is missing (expected \"dense\" or \"activation\")");
        const std::string type = l["type"].get<std::string>();
        if (type == "dense") {
            if (!l.contains("units") || !l["units"].is_number_unsigned() || l["units"].get<std::size_t>() == 0)
                throw field_error(where + ".units", "must be a positive integer");
            const std::size_t units = l["units"].get<std::size_t>();
            spec.layers.push_back({LayerKind::dense, width, units, Activation::identity});
            width = units;
            if (l.contains("activation")) {
                if (!l["activation"].is_string()) throw field_error(where + ".activation", "must be a string");
                const Activation a = parse_activation(l["activation"].get<std::string>());
                if (a != Activation::identity) spec.layers.push_back({LayerKind::activation, width, width, a});
            }
        } else if (type == "activation") {
            if (!l.contains("activation") || !l["activation"].is_string())
                throw field_error(where + ".activation", "must be a string");
            spec.layers.push_back(
                {LayerKind::activation, width, width, parse_activation(l["activation"].get<std::string>())});
        } else {
            throw field_error(where + ".type", "is '" + type + "' (expected \"dense\" or \"activation\")");
        }
    }
    if (spec.n_weight_layers() == 0) throw field_error("layers", "has no weight (dense) layer");
    return spec;
}

ModelSpec ModelSpec::parse(const std::string& text) {
    if (text.rfind("dense:", 0) == 0) return parse_dense_short(text);
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '{') return from_json(text);
    std::ifstream probe(text);
    if (!probe)
        throw Error("model '" + text + "': not a spec like dense:6-128-1 and no such JSON model file");
    return from_json(read_file(text), "model file '" + text + "'");
}

std::string ModelSpec::to_json() const {
    nlohmann::json j;
    j["inputs"] = n_inputs;
    j["layers"] = nlohmann::json::array();
    for (const auto& l : layers) {
        if (l.kind == LayerKind::dense)
            j["layers"].push_back({{"type", "dense"}, {"units", l.n_out}});
        else
            j["layers"].push_back({{"type", "activation"}, {"activation", to_string(l.activation)}});
    }
    return j.dump();
}

std::string ModelSpec::to_short() const {
    // dense, then (activation A, dense)* with one shared A, ending with a dense layer.
    std::string out = "dense:" + std::to_string(n_inputs);
    Activation hidden = Activation::relu;
    bool have_hidden = false;
    bool expect_dense = true;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const auto& l = layers[i];
        if (expect_dense) {
            if (l.kind != LayerKind::dense) return to_json();
            out += "-" + std::to_string(l.n_out);
            expect_dense = false;
        } else {
            if (l.kind != LayerKind::activation || (have_hidden && l.activation != hidden)) return to_json();
            hidden = l.activation;
            have_hidden = true;
            expect_dense = true;
        }
    }
    if (expect_dense) return to_json();  // ends with an activation
    if (have_hidden && hidden != Activation::relu) out += std::string(":") + to_string(hidden);
    if (!have_hidden && n_weight_layers() > 1) return to_json();
    return out;
}

std::size_t ModelSpec::n_outputs() const { return layers.empty() ? n_inputs : layers.back().n_out; }

std::size_t ModelSpec::n_weight_layers() const {
    return static_cast<std::size_t>(
        std::count_if(layers.begin(), layers.end(), [](const LayerSpec& l) { return l.kind == LayerKind::dense; }));
}

std::size_t ModelSpec::n_weights() const {
    std::size_t n = 0;
    for (const auto& l : layers)
        if (l.kind == LayerKind::dense) n += l.n_in * l.n_out;
    return n;
}

ParamLayout ParamLayout::of(const ModelSpec& spec) {
    auto align = [](std::size_t x) { return (x + kAlign - 1) / kAlign * kAlign; };
    ParamLayout p;
    std::size_t offset = 0;
    for (std::size_t i = 0; i < spec.layers.size(); ++i) {
        const auto& l = spec.layers[i];
        if (l.kind != LayerKind::dense) continue;
        ParamSegment s;
        s.layer = i;
        s.n_weights = l.n_in * l.n_out;
        s.weight_shape = {l.n_out, l.n_in};
        s.weight_offset = offset;
        offset = align(offset + s.n_weights);
        s.n_bias = l.n_out;
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
        const double bound = 1.0 / std::sqrt(static_cast<double>(s.weight_shape[1]));
        for (std::size_t k = 0; k < s.n_weights; ++k)
            m.slab_[s.weight_offset + k] = static_cast<float>((2.0 * uniform01() - 1.0) * bound);
        for (std::size_t k = 0; k < s.n_bias; ++k)
            m.slab_[s.bias_offset + k] = static_cast<float>((2.0 * uniform01() - 1.0) * bound);
    }
    return m;
}

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

}  // namespace sparseprox
