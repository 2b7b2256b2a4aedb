// safetensors files: u64 little-endian header length N, N bytes of JSON header, then the data.
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end)} (offsets
// relative to the data buffer) plus an optional "__metadata__" object of strings.
//
// Bytes are assembled and decoded explicitly in little-endian order, so files are the same on
// any host. The reader follows the format's rules strictly (offsets covering the buffer with no
// gaps or overlaps) so files it accepts load in other safetensors implementations too.
#include "sparseprox/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/atomic_file.h"
#include "io/input_text.h"
#include "sparseprox/error.h"
#include "sparseprox/model.h"

namespace sparseprox {

namespace {

using nlohmann::json;

constexpr const char* kMetadataKey = "__metadata__";

// At most 8 sizes: a shape read from a file may list any number.
std::string shape_text(const std::vector<std::size_t>& shape) {
    constexpr std::size_t kShown = 8;
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size() && i < kShown; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    if (shape.size() > kShown) s += ", ... (" + std::to_string(shape.size()) + " sizes)";
    return s + "]";
}

// Elements of a shape, or false on overflow.
bool element_count(const std::vector<std::size_t>& shape, std::size_t& out) {
    std::size_t n = 1;
    for (std::size_t d : shape) {
        if (d != 0 && n > std::numeric_limits<std::size_t>::max() / 4 / d) return false;
        n *= d;
    }
    out = n;
    return true;
}

void put_u32le(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

std::uint64_t get_u64le(const unsigned char* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

float get_f32le(const unsigned char* p) {
    const std::uint32_t bits =
        std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) | (std::uint32_t(p[3]) << 24);
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// A non-negative JSON integer (nlohmann stores those as unsigned, larger ones as float).
bool as_index(const json& j, std::size_t& out) {
    if (j.is_number_unsigned()) {
        const auto v = j.get<std::uint64_t>();
        if (v > std::numeric_limits<std::size_t>::max()) return false;
        out = static_cast<std::size_t>(v);
        return true;
    }
    if (j.is_number_integer() && j.get<std::int64_t>() >= 0) {
        out = static_cast<std::size_t>(j.get<std::int64_t>());
        return true;
    }
    return false;
}

struct Entry {
    std::string name;
    std::size_t begin = 0;
    std::size_t end = 0;
};

}  // namespace

void write_safetensors(const std::string& path, const TensorFile& file) {
    json header = json::object();
    std::string data;
    std::size_t total = 0;
    for (const auto& [name, t] : file.tensors) {  // std::map: sorted name order
        if (name.empty()) throw Error("cannot write '" + path + "': a tensor has an empty name");
        if (name == kMetadataKey)
            throw Error("cannot write '" + path + "': \"" + excerpt(name) + "\" is reserved for metadata, not a tensor name");
        std::size_t n = 0;
        const std::size_t values = t.dtype == DType::i64 ? t.ints.size() : t.data.size();
        if (!element_count(t.shape, n) || n != values)
            throw Error("cannot write '" + path + "': tensor '" + excerpt(name) + "' has shape " + shape_text(t.shape) +
                        " but " + std::to_string(values) + " values");
        total += (t.dtype == DType::i64 ? 8 : 4) * n;
    }
    data.reserve(total);
    for (const auto& [name, t] : file.tensors) {
        const std::size_t begin = data.size();
        for (const std::int64_t v : t.ints) {
            if (t.dtype != DType::i64) break;
            const auto bits = static_cast<std::uint64_t>(v);
            put_u32le(data, static_cast<std::uint32_t>(bits & 0xFFFFFFFFu));
            put_u32le(data, static_cast<std::uint32_t>(bits >> 32));
        }
        for (std::size_t i = 0; t.dtype == DType::f32 && i < t.data.size(); ++i) {
            const float v = t.data[i];
            if (!std::isfinite(v))
                throw Error("cannot write '" + path + "': tensor '" + excerpt(name) + "' value " + std::to_string(i) + " is " +
                            (std::isnan(v) ? "NaN" : "Inf"));
            std::uint32_t bits;
            std::memcpy(&bits, &v, sizeof bits);
            put_u32le(data, bits);
        }
        json entry = json::object();
        entry["dtype"] = t.dtype == DType::i64 ? "I64" : "F32";
        entry["shape"] = t.shape;
        entry["data_offsets"] = json::array({begin, data.size()});
        header[name] = std::move(entry);
    }
    if (!file.metadata.empty()) header[kMetadataKey] = file.metadata;

    std::string text;
    try {
        text = header.dump();
    } catch (const json::exception& e) {  // e.g. a name or metadata value that is not UTF-8
        throw Error("cannot write '" + path + "': header is not valid JSON text: " + e.what());
    }
    // Padding to 8 bytes keeps the data buffer 8-byte aligned for readers that map the file.
    text.append((8 - text.size() % 8) % 8, ' ');

    std::string bytes;
    bytes.reserve(8 + text.size() + data.size());
    const std::uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
    bytes += text;
    bytes += data;
    write_file_atomic(path, bytes);
}

TensorFile read_safetensors(const std::string& path) {
    const std::string bytes = read_file(path);
    const auto* raw = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::string where = "safetensors file '" + path + "'";
    if (bytes.size() < 8)
        throw Error(where + " is truncated: " + std::to_string(bytes.size()) +
                    " bytes, shorter than the 8-byte header length");
    const std::uint64_t header_len = get_u64le(raw);
    if (header_len > bytes.size() - 8)
        throw Error(where + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                    std::to_string(bytes.size()) + " bytes)");
    const std::size_t data_start = 8 + static_cast<std::size_t>(header_len);
    const std::size_t data_size = bytes.size() - data_start;

    // Depth-bounded, repeated keys refused: one tensor name given twice is not a file to guess at.
    const json header = parse_json_input(std::string_view(bytes).substr(8, static_cast<std::size_t>(header_len)),
                                         where + ": header");
    if (!header.is_object()) throw Error(where + ": header is not a JSON object");

    TensorFile out;
    std::vector<Entry> entries;
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        const json& v = it.value();
        if (name == kMetadataKey) {
            if (!v.is_object()) throw Error(where + ": \"__metadata__\" is not a JSON object");
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string())
                    throw Error(where + ": metadata entry '" + excerpt(m.key()) + "' is not a string");
                out.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string tensor = where + ", tensor '" + excerpt(name) + "'";
        if (!v.is_object()) throw Error(tensor + ": header entry is not a JSON object");
        if (!v.contains("dtype") || !v["dtype"].is_string()) throw Error(tensor + ": missing \"dtype\"");
        const std::string dtype = v["dtype"].get<std::string>();
        if (dtype != "F32" && dtype != "I64")
            throw Error(tensor + ": unsupported dtype '" + excerpt(dtype) + "' (only F32 and I64 are supported)");
        const std::size_t item = dtype == "I64" ? 8 : 4;

        if (!v.contains("shape") || !v["shape"].is_array()) throw Error(tensor + ": missing \"shape\" array");
        Tensor t;
        for (const json& d : v["shape"]) {
            std::size_t dim = 0;
            if (!as_index(d, dim)) throw Error(tensor + ": shape " + json_excerpt(v["shape"]) + " is not a list of sizes");
            t.shape.push_back(dim);
        }
        std::size_t n = 0;
        if (!element_count(t.shape, n)) throw Error(tensor + ": shape " + shape_text(t.shape) + " is too large");

        if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
            throw Error(tensor + ": missing \"data_offsets\" [begin, end]");
        Entry e;
        e.name = name;
        if (!as_index(v["data_offsets"][0], e.begin) || !as_index(v["data_offsets"][1], e.end) || e.end < e.begin)
            throw Error(tensor + ": data_offsets " + json_excerpt(v["data_offsets"]) + " is not a range [begin, end]");
        if (n > std::numeric_limits<std::size_t>::max() / item || e.end - e.begin != item * n)
            throw Error(tensor + ": data_offsets " + json_excerpt(v["data_offsets"]) + " span " +
                        std::to_string(e.end - e.begin) + " bytes but shape " + shape_text(t.shape) + " of " + dtype +
                        " needs " + std::to_string(item * n));
        if (e.end > data_size)
            throw Error(tensor + ": data_offsets " + json_excerpt(v["data_offsets"]) + " run past the data buffer (" +
                        std::to_string(data_size) + " bytes; file truncated?)");
        const unsigned char* src = raw + data_start + e.begin;
        if (item == 8) {
            t.dtype = DType::i64;
            t.ints.resize(n);
            for (std::size_t i = 0; i < n; ++i) {
                std::uint64_t bits = 0;
                for (int k = 0; k < 8; ++k) bits |= static_cast<std::uint64_t>(src[8 * i + k]) << (8 * k);
                t.ints[i] = static_cast<std::int64_t>(bits);
            }
        } else {
            t.data.resize(n);
        }
        for (std::size_t i = 0; item == 4 && i < n; ++i) {
            t.data[i] = get_f32le(src + 4 * i);
            if (!std::isfinite(t.data[i]))
                throw Error(tensor + ": value " + std::to_string(i) + " is " + (std::isnan(t.data[i]) ? "NaN" : "Inf"));
        }
        out.tensors.emplace(name, std::move(t));
        entries.push_back(std::move(e));
    }

    // The buffer must be exactly the tensors, back to back: no overlap, no gap, nothing after.
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
    std::size_t covered = 0;
    std::string previous;
    for (const Entry& e : entries) {
        if (e.begin < covered)
            throw Error(where + ", tensor '" + excerpt(e.name) + "': data_offsets [" + std::to_string(e.begin) + ", " +
                        std::to_string(e.end) + "] overlap tensor '" + excerpt(previous) + "'");
        if (e.begin > covered)
            throw Error(where + ", tensor '" + excerpt(e.name) + "': data_offsets start at " + std::to_string(e.begin) +
                        ", leaving bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                        ") of the buffer unused");
        covered = e.end;
        previous = e.name;
    }
    if (covered != data_size)
        throw Error(where + ": " + std::to_string(data_size - covered) +
                    " bytes after the last tensor's data belong to no tensor");
    return out;
}

void save_model(const std::string& path, const Model& model, const std::map<std::string, std::string>& metadata) {
    const ModelSpec& spec = model.spec();
    TensorFile file;
    for (const auto& [key, value] : metadata) {
        if (key == "format" || key == "architecture")
            throw Error("cannot save model to '" + path + "': metadata key '" + key + "' is reserved");
        file.metadata[key] = value;
    }
    file.metadata["format"] = "sparseprox";
    file.metadata["architecture"] = spec.to_json();

    const auto& segments = model.layout().segments;
    for (std::size_t i = 0; i < segments.size(); ++i) {
        const ParamSegment& seg = segments[i];
        const LayerSpec& layer = spec.layers.at(seg.layer);
        // (n_out, n_in) for dense layers, (c_out, c_in, kh, kw) for conv2d, as PyTorch stores them.
        const std::vector<std::size_t> w_shape = layer.weight_shape();
        std::size_t w_count = 0;
        if (w_shape != seg.weight_shape || !element_count(w_shape, w_count) || w_count != seg.n_weights ||
            seg.n_bias != layer.n_bias())
            throw Error("cannot save model to '" + path + "': weight layer " + std::to_string(i) +
                        " has a parameter layout that does not match its " + shape_text(w_shape) + " shape");
        const std::string prefix = "layers." + std::to_string(i) + ".";
        // Built by constructor: assigning a braced list here trips a GCC 12 -Wnonnull false positive.
        Tensor w{w_shape, std::vector<float>(model.weight(i), model.weight(i) + seg.n_weights), DType::f32, {}};
        Tensor b{std::vector<std::size_t>{seg.n_bias}, std::vector<float>(model.bias(i), model.bias(i) + seg.n_bias), DType::f32,
                 {}};
        file.tensors.emplace(prefix + "weight", std::move(w));
        file.tensors.emplace(prefix + "bias", std::move(b));
    }
    write_safetensors(path, file);
}

Model load_model(const std::string& path, std::map<std::string, std::string>* metadata) {
    TensorFile file = read_safetensors(path);
    const auto arch = file.metadata.find("architecture");
    if (arch == file.metadata.end())
        throw Error("model file '" + path +
                    "' has no \"architecture\" metadata entry (not written by SparseProx's save_model?)");
    const auto format = file.metadata.find("format");
    if (format != file.metadata.end() && format->second != "sparseprox")
        throw Error("model file '" + path + "' has metadata format '" + excerpt(format->second) + "', expected 'sparseprox'");

    const ModelSpec spec = ModelSpec::from_json(arch->second, "architecture in '" + path + "'");
    // Every tensor is checked against the architecture before the model is allocated, so the
    // parameters allocated are those the file holds (a header may claim any architecture).
    const ParamLayout layout = ParamLayout::of(spec);
    const auto& segments = layout.segments;
    struct Source {
        const Tensor* weight;
        const Tensor* bias;
    };
    std::vector<Source> sources;
    auto find = [&](const std::string& name, const std::vector<std::size_t>& shape) {
        const auto it = file.tensors.find(name);
        if (it == file.tensors.end())
            throw Error("model file '" + path + "' lacks tensor '" + name + "' (expected shape " + shape_text(shape) +
                        " from the architecture)");
        if (it->second.shape != shape)
            throw Error("model file '" + path + "', tensor '" + name + "': expected shape " + shape_text(shape) +
                        ", found " + shape_text(it->second.shape));
        if (it->second.dtype != DType::f32)
            throw Error("model file '" + path + "', tensor '" + name + "': expected dtype F32, found I64");
        return &it->second;
    };
    for (std::size_t i = 0; i < segments.size(); ++i) {
        const LayerSpec& layer = spec.layers.at(segments[i].layer);
        const std::string prefix = "layers." + std::to_string(i) + ".";
        const Tensor* w = find(prefix + "weight", layer.weight_shape());
        const Tensor* b = find(prefix + "bias", {layer.n_bias()});
        sources.push_back({w, b});
    }
    if (2 * segments.size() != file.tensors.size()) {
        for (const auto& [name, t] : file.tensors) {
            bool expected = false;
            for (std::size_t i = 0; i < segments.size() && !expected; ++i) {
                const std::string prefix = "layers." + std::to_string(i) + ".";
                expected = name == prefix + "weight" || name == prefix + "bias";
            }
            if (!expected)
                throw Error("model file '" + path + "' holds tensor '" + excerpt(name) + "' of shape " +
                            shape_text(t.shape) + " that its architecture (" + std::to_string(segments.size()) +
                            " weight layers) has no place for");
        }
    }

    Model model(spec);
    for (std::size_t i = 0; i < segments.size(); ++i) {
        std::copy(sources[i].weight->data.begin(), sources[i].weight->data.end(), model.weight(i));
        std::copy(sources[i].bias->data.begin(), sources[i].bias->data.end(), model.bias(i));
    }
    if (metadata) *metadata = std::move(file.metadata);
    return model;
}

}  // namespace sparseprox
