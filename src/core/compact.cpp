// compact() (sparseprox/inference.h): the same function as a smaller dense network.
//
// The units of weight layer l are its outputs: the rows of a dense W (n_out, n_in) or the
// filters of a conv W (c_out, c_in, kh, kw). Unit u of layer l reaches layer l+1 as a group of
// its weights: a dense layer after a dense layer reads column u; a dense layer after an image
// (c, h, w) reads the h*w columns [u*h*w, (u+1)*h*w) (NCHW flattening); a conv layer reads the
// input channel W[:, u, :, :]. Two rules run until neither changes anything:
//   unused   no nonzero weight of layer l+1 (among its kept units) in u's group: u is removed;
//   constant no nonzero weight into u (from the kept inputs of layer l): u outputs
//            act(b_u) at every position; where the layers between carry a constant to a
//            constant and layer l+1 does not pad, b_{l+1}[v] += c * sum(group weights of v) and
//            u is removed.
// A dense first layer's unused input columns are removed too (CompactModel::input_columns).
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/elementwise.h"
#include "sparseprox/error.h"
#include "sparseprox/inference.h"

namespace sparseprox {
namespace {

struct WeightLayer {
    std::size_t index = 0;               // into ModelSpec::layers
    const LayerSpec* spec = nullptr;
    std::vector<float> W;                // original weights
    std::vector<float> b;                // biases, with folded constants added
    std::size_t n_units = 0;             // n_out (dense) or c_out (conv)
    std::size_t n_inputs = 0;            // input units: the previous layer's units, or features
    std::size_t group = 1;               // weights per (output unit, input unit) pair
    std::vector<char> keep;              // per unit
};

float activate(Activation a, float x) { return ew::act_forward(static_cast<int>(a), x); }

// Weight of (unit v, input unit u, position p in the group).
inline float weight_at(const WeightLayer& L, std::size_t v, std::size_t u, std::size_t p) {
    return L.W[(v * L.n_inputs + u) * L.group + p];
}

}  // namespace

std::vector<float> select_columns(const float* x, std::size_t rows, std::size_t width,
                                  const std::vector<std::size_t>& columns) {
    std::vector<float> out(rows * columns.size());
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < columns.size(); ++j) out[r * columns.size() + j] = x[r * width + columns[j]];
    return out;
}

std::vector<float> CompactModel::select_inputs(const float* x, std::size_t rows) const {
    return select_columns(x, rows, original_inputs, input_columns);
}

CompactModel compact(const Model& model) {
    const ModelSpec& spec = model.spec();
    std::vector<WeightLayer> L;
    for (std::size_t k = 0, w = 0; k < spec.layers.size(); ++k) {
        const LayerSpec& l = spec.layers[k];
        if (!l.has_weights()) continue;
        WeightLayer x;
        x.index = k;
        x.spec = &l;
        x.W.assign(model.weights(w).begin(), model.weights(w).end());
        x.b.assign(model.biases(w).begin(), model.biases(w).end());
        x.n_units = l.kind == LayerKind::dense ? l.n_out : l.out_shape.channels;
        x.keep.assign(x.n_units, 1);
        ++w;
        L.push_back(std::move(x));
    }
    CompactModel out;
    out.original_inputs = spec.n_inputs;
    // The first layer's input units: features of a dense layer that reads the network's inputs
    // directly (only those are removed); otherwise nothing is removed before it.
    const bool prune_inputs = !L.empty() && L[0].index == 0 && L[0].spec->kind == LayerKind::dense;
    std::vector<char> input_keep(spec.n_inputs, 1);
    for (std::size_t i = 0; i < L.size(); ++i) {
        WeightLayer& x = L[i];
        const LayerSpec& l = *x.spec;
        if (l.kind == LayerKind::conv2d) {
            x.n_inputs = l.in_shape.channels;
            x.group = l.kh * l.kw;
        } else if (i == 0) {
            x.n_inputs = l.n_in;
            x.group = 1;
        } else {
            x.n_inputs = L[i - 1].n_units;
            x.group = l.n_in / x.n_inputs;  // h*w of an image input, 1 after a dense layer
        }
    }
    // Can a constant unit of layer i be folded into layer i+1? The layers between must carry a
    // constant to a constant, and layer i+1 must see it at every tap (no zero padding).
    auto foldable = [&](std::size_t i, float c, float& carried) {
        if (i + 1 >= L.size()) return false;
        for (std::size_t k = L[i].index + 1; k < L[i + 1].index; ++k) {
            const LayerSpec& l = spec.layers[k];
            if (l.kind == LayerKind::activation) c = activate(l.activation, c);
            else if (l.kind == LayerKind::avgpool2d && (l.pad_h > 0 || l.pad_w > 0)) return false;
            // maxpool2d (padding never wins), avgpool2d unpadded and flatten keep a constant.
        }
        const LayerSpec& next = *L[i + 1].spec;
        if (next.kind == LayerKind::conv2d && (next.pad_h > 0 || next.pad_w > 0)) return false;
        carried = c;
        return std::isfinite(c);
    };
    std::size_t folded = 0;
    for (bool changed = true; changed;) {
        changed = false;
        // Unused units, from the last hidden layer back.
        for (std::size_t i = L.size(); i-- > 1;) {
            const WeightLayer& next = L[i];
            WeightLayer& x = L[i - 1];
            for (std::size_t u = 0; u < x.n_units; ++u) {
                if (!x.keep[u]) continue;
                bool used = false;
                for (std::size_t v = 0; v < next.n_units && !used; ++v) {
                    if (!next.keep[v]) continue;
                    for (std::size_t p = 0; p < next.group && !used; ++p) used = weight_at(next, v, u, p) != 0.0f;
                }
                if (!used) {
                    x.keep[u] = 0;
                    changed = true;
                }
            }
        }
        if (prune_inputs) {
            const WeightLayer& first = L[0];
            for (std::size_t j = 0; j < spec.n_inputs; ++j) {
                if (!input_keep[j]) continue;
                bool used = false;
                for (std::size_t v = 0; v < first.n_units && !used; ++v) used = first.keep[v] && first.W[v * first.n_inputs + j] != 0.0f;
                if (!used) {
                    input_keep[j] = 0;
                    changed = true;
                }
            }
        }
        // Constant units, front to back, folded into the next layer's biases.
        for (std::size_t i = 0; i + 1 < L.size(); ++i) {
            WeightLayer& x = L[i];
            WeightLayer& next = L[i + 1];
            for (std::size_t u = 0; u < x.n_units; ++u) {
                if (!x.keep[u]) continue;
                bool incoming = false;
                for (std::size_t in = 0; in < x.n_inputs && !incoming; ++in) {
                    const bool input_kept = i == 0 ? (!prune_inputs || input_keep[in]) : L[i - 1].keep[in] != 0;
                    if (!input_kept) continue;
                    for (std::size_t p = 0; p < x.group && !incoming; ++p) incoming = weight_at(x, u, in, p) != 0.0f;
                }
                if (incoming) continue;
                float c = 0.0f;
                if (!foldable(i, x.b[u], c)) continue;
                for (std::size_t v = 0; v < next.n_units; ++v) {
                    if (!next.keep[v]) continue;
                    double s = 0.0;
                    for (std::size_t p = 0; p < next.group; ++p) s += static_cast<double>(weight_at(next, v, u, p));
                    next.b[v] += static_cast<float>(s * static_cast<double>(c));
                }
                x.keep[u] = 0;
                ++folded;
                changed = true;
            }
        }
    }
    // A layer keeps at least one unit: unit 0 with no weights in or out and a zero bias (what it
    // contributed, if it was constant, is in the next layer's biases already).
    for (std::size_t i = 0; i + 1 < L.size(); ++i) {
        WeightLayer& x = L[i];
        if (std::find(x.keep.begin(), x.keep.end(), 1) != x.keep.end()) continue;
        x.keep[0] = 1;
        x.b[0] = 0.0f;
        std::fill_n(x.W.begin(), x.n_inputs * x.group, 0.0f);
        WeightLayer& next = L[i + 1];
        for (std::size_t v = 0; v < next.n_units; ++v)
            std::fill_n(next.W.begin() + static_cast<std::ptrdiff_t>(v * next.n_inputs * next.group), next.group, 0.0f);
    }
    if (prune_inputs && std::find(input_keep.begin(), input_keep.end(), 1) == input_keep.end()) input_keep[0] = 1;

    // The smaller spec: the same layers with fewer units.
    auto kept = [](const std::vector<char>& keep) { return static_cast<std::size_t>(std::count(keep.begin(), keep.end(), 1)); };
    nlohmann::json j = nlohmann::json::parse(spec.to_json());
    if (prune_inputs) {
        j.erase("input_shape");
        j["inputs"] = kept(input_keep);
        for (std::size_t c = 0; c < spec.n_inputs; ++c)
            if (input_keep[c]) out.input_columns.push_back(c);
    } else {
        out.input_columns.resize(spec.n_inputs);
        std::iota(out.input_columns.begin(), out.input_columns.end(), std::size_t{0});
    }
    for (const WeightLayer& x : L) j["layers"][x.index][x.spec->kind == LayerKind::dense ? "units" : "filters"] = kept(x.keep);
    const ModelSpec small_spec = ModelSpec::from_json(j.dump(), "compacted model");
    out.model = Model(small_spec);
    for (std::size_t i = 0; i < L.size(); ++i) {
        const WeightLayer& x = L[i];
        std::vector<std::size_t> inputs;  // kept input units, ascending
        for (std::size_t u = 0; u < x.n_inputs; ++u) {
            const bool k = i == 0 ? (!prune_inputs || input_keep[u]) : L[i - 1].keep[u] != 0;
            if (k) inputs.push_back(u);
        }
        Span<float> W = out.model.weights(i);
        Span<float> b = out.model.biases(i);
        std::size_t row = 0;
        for (std::size_t v = 0; v < x.n_units; ++v) {
            if (!x.keep[v]) continue;
            b[row] = x.b[v];
            float* dst = W.data() + row * inputs.size() * x.group;
            for (std::size_t a = 0; a < inputs.size(); ++a)
                for (std::size_t p = 0; p < x.group; ++p) dst[a * x.group + p] = weight_at(x, v, inputs[a], p);
            ++row;
        }
    }
    out.folded_units = folded;
    std::size_t before = spec.n_inputs, after = small_spec.n_inputs;
    for (const WeightLayer& x : L) before += x.n_units;
    for (std::size_t k = 0; k < small_spec.layers.size(); ++k) {
        const LayerSpec& l = small_spec.layers[k];
        if (l.has_weights()) after += l.kind == LayerKind::dense ? l.n_out : l.out_shape.channels;
    }
    out.removed_units = before - after;
    return out;
}

}  // namespace sparseprox

namespace sparseprox {

std::map<std::string, std::string> compact_metadata(const CompactModel& c) {
    std::map<std::string, std::string> m;
    if (c.input_columns.size() == c.original_inputs) return m;
    nlohmann::json j;
    j["from"] = c.original_inputs;
    j["keep"] = c.input_columns;
    m["input_columns"] = j.dump();
    return m;
}

bool read_input_columns(const std::map<std::string, std::string>& metadata, const std::string& origin,
                        std::size_t model_inputs, std::vector<std::size_t>& columns, std::size_t& original_inputs) {
    const auto it = metadata.find("input_columns");
    if (it == metadata.end()) return false;
    auto fail = [&](const std::string& why) {
        return Error(origin + ": metadata entry 'input_columns' " + why);
    };
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception&) {
        throw fail("is not JSON");
    }
    if (!j.is_object() || !j.contains("from") || !j["from"].is_number_unsigned() || !j.contains("keep") ||
        !j["keep"].is_array())
        throw fail("must be {\"from\": N, \"keep\": [columns]}");
    original_inputs = j["from"].get<std::size_t>();
    columns.clear();
    for (const auto& v : j["keep"]) {
        if (!v.is_number_unsigned()) throw fail("lists a column that is not a non-negative integer");
        const auto c = v.get<std::size_t>();
        if (c >= original_inputs || (!columns.empty() && c <= columns.back()))
            throw fail("must list ascending columns below " + std::to_string(original_inputs));
        columns.push_back(c);
    }
    if (columns.size() != model_inputs)
        throw fail("keeps " + std::to_string(columns.size()) + " columns, the model takes " +
                   std::to_string(model_inputs) + " inputs");
    return true;
}

}  // namespace sparseprox
