// What a saved model records: the data preparation, the loss, the method and the run, as
// safetensors metadata strings (flat keys, JSON for the structured ones).
#include "sparseprox/model_info.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/input_text.h"
#include "sparseprox/error.h"
#include "sparseprox/version.h"

namespace sparseprox {

const char* to_string(PixelScale s) {
    switch (s) {
        case PixelScale::unit: return "unit";
        case PixelScale::symmetric: return "symmetric";
        case PixelScale::raw: return "raw";
    }
    return "?";
}

PixelScale parse_pixel_scale(const std::string& name) {
    if (name == "unit") return PixelScale::unit;
    if (name == "symmetric") return PixelScale::symmetric;
    if (name == "raw") return PixelScale::raw;
    throw Error("unknown pixel scale '" + excerpt(name) + "' (expected symmetric, unit or raw)");
}

const char* to_string(Task t) { return t == Task::classification ? "classification" : "regression"; }

Task parse_task(const std::string& name) {
    if (name == "classification") return Task::classification;
    if (name == "regression") return Task::regression;
    throw Error("unknown task '" + excerpt(name) + "' (expected regression or classification)");
}

double shortest_decimal(float v) {
    if (!std::isfinite(v)) return static_cast<double>(v);
    char buf[32];
    for (int digits = 1; digits <= 9; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(v));
        if (std::strtof(buf, nullptr) == v) return std::strtod(buf, nullptr);
    }
    return static_cast<double>(v);  // 9 significant digits always round-trip a float
}

namespace {

std::string source_kind_of(const std::string& source) {
    for (const char* kind : {"idx", "libsvm"})
        if (source.rfind(std::string(kind) + ":", 0) == 0) return kind;
    return source;  // "mackey-glass" or ""
}

std::string scaling_in_words(const std::string& kind, PixelScale scale) {
    if (kind == "idx") {
        switch (scale) {
            case PixelScale::unit: return "x / 255";
            case PixelScale::symmetric: return "x / 127.5 - 1";
            case PixelScale::raw: return "none (pixels 0..255)";
        }
    }
    if (kind == "mackey-glass") return "min-max of the generated series to [-1, 1]";
    if (kind == "libsvm") return "none (as read)";
    return "none (as given)";
}

using nlohmann::json;

json data_json(const DataPreparation& d) {
    json j;
    j["source"] = d.source;
    j["test_source"] = d.options.test_source.empty() ? json(nullptr) : json(d.options.test_source);
    j["split"] = {{"train_rows", d.options.libsvm_train_rows},
                  {"test_rows", d.options.libsvm_test_rows},
                  {"test_fraction", d.options.libsvm_test_fraction},
                  {"no_test", d.options.no_test}};
    j["pixel_scale"] = d.source_kind() == "idx" ? json(to_string(d.options.pixel_scale)) : json(nullptr);
    j["feature_scaling"] = d.feature_scaling;
    j["task"] = to_string(d.task);
    j["input_shape"] = {d.input_shape.channels, d.input_shape.height, d.input_shape.width};
    j[d.task == Task::classification ? "classes" : "targets"] = d.outputs;
    return j;
}

// Field access with errors that name the file, the entry and the field.
struct Reader {
    const json& j;
    std::string where;

    const json& at(const char* key) const {
        const auto it = j.find(key);
        if (it == j.end()) throw Error(where + " has no \"" + key + "\"");
        return *it;
    }
    std::string str(const char* key) const {
        const json& v = at(key);
        if (!v.is_string()) throw Error(where + ": \"" + key + "\" is not a string: " + json_excerpt(v));
        return v.get<std::string>();
    }
    std::string str_or_empty(const char* key) const {
        const auto it = j.find(key);
        return it == j.end() || it->is_null() ? std::string() : str(key);
    }
    std::size_t count(const char* key) const {
        const json& v = at(key);
        if (!v.is_number_unsigned()) throw Error(where + ": \"" + key + "\" is not a whole number >= 0: " + json_excerpt(v));
        return v.get<std::size_t>();
    }
};

DataPreparation data_from_json(const json& j, const std::string& where) {
    if (!j.is_object()) throw Error(where + " is not a JSON object");
    const Reader r{j, where};
    DataPreparation d;
    d.source = r.str("source");
    d.options.test_source = r.str_or_empty("test_source");
    const json& split = r.at("split");
    if (!split.is_object()) throw Error(where + ": \"split\" is not a JSON object");
    const Reader s{split, where + " \"split\""};
    d.options.libsvm_train_rows = s.count("train_rows");
    d.options.libsvm_test_rows = s.count("test_rows");
    const json& fraction = s.at("test_fraction");
    if (!fraction.is_number() || !(fraction.get<double>() >= 0.0 && fraction.get<double>() < 1.0))
        throw Error(where + ": \"test_fraction\" is not a number in [0, 1): " + json_excerpt(fraction));
    d.options.libsvm_test_fraction = fraction.get<double>();
    const json& no_test = s.at("no_test");
    if (!no_test.is_boolean()) throw Error(where + ": \"no_test\" is not true or false");
    d.options.no_test = no_test.get<bool>();
    const std::string scale = r.str_or_empty("pixel_scale");
    if (!scale.empty()) {
        try {
            d.options.pixel_scale = parse_pixel_scale(scale);
        } catch (const Error& e) {
            throw Error(where + ": \"pixel_scale\": " + e.what());
        }
    }
    d.feature_scaling = r.str_or_empty("feature_scaling");
    try {
        d.task = parse_task(r.str("task"));
    } catch (const Error& e) {
        throw Error(where + ": \"task\": " + e.what());
    }
    const json& shape = r.at("input_shape");
    if (!shape.is_array() || shape.size() != 3 ||
        !std::all_of(shape.begin(), shape.end(), [](const json& v) { return v.is_number_unsigned(); }))
        throw Error(where + ": \"input_shape\" is not three whole numbers: " + json_excerpt(shape));
    d.input_shape = {shape[0].get<std::size_t>(), shape[1].get<std::size_t>(), shape[2].get<std::size_t>()};
    d.outputs = r.count(d.task == Task::classification ? "classes" : "targets");
    return d;
}

}  // namespace

DataPreparation DataPreparation::of(const std::string& source, const DataOptions& options, Task task,
                                    std::size_t outputs, const SampleShape& input_shape) {
    DataPreparation d;
    d.source = source;
    d.options = options;
    d.task = task;
    d.outputs = outputs;
    d.input_shape = input_shape;
    d.feature_scaling = scaling_in_words(source_kind_of(source), options.pixel_scale);
    return d;
}

std::string DataPreparation::source_kind() const { return source_kind_of(source); }

std::map<std::string, std::string> to_metadata(const ModelInfo& info) {
    std::map<std::string, std::string> m;
    m["sparseprox_version"] = info.version.empty() ? std::string(version()) : info.version;
    if (info.data) {
        m["data"] = data_json(*info.data).dump();
        m["task"] = to_string(info.data->task);
    }
    if (info.loss) m["loss"] = to_string(*info.loss);
    if (!info.method.empty()) m["method"] = info.method;
    if (!info.training_json.empty()) m["training"] = info.training_json;
    return m;
}

ModelInfo read_model_info(const std::map<std::string, std::string>& metadata, const std::string& origin) {
    ModelInfo info;
    const auto get = [&](const char* key) -> const std::string* {
        const auto it = metadata.find(key);
        return it == metadata.end() ? nullptr : &it->second;
    };
    const std::string where = "model file '" + origin + "'";
    if (const std::string* v = get("sparseprox_version")) info.version = *v;
    if (const std::string* v = get("data")) {
        const std::string entry = where + " metadata \"data\"";
        info.data = data_from_json(parse_json_input(*v, entry), entry);
    }
    if (const std::string* v = get("loss")) {
        try {
            info.loss = parse_loss(*v);
        } catch (const Error& e) {
            throw Error(where + " metadata \"loss\": " + e.what());
        }
    }
    if (const std::string* v = get("method")) info.method = *v;
    if (const std::string* v = get("training")) {
        const std::string entry = where + " metadata \"training\"";
        if (!parse_json_input(*v, entry).is_object()) throw Error(entry + " is not a JSON object");
        info.training_json = *v;
    }
    return info;
}

}  // namespace sparseprox
