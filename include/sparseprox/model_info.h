// SparseProx: what a saved model records about how it was made and how to use it.
//
// A model file (safetensors, see safetensors.h) holds the weights and the architecture. To run
// it on new data, the data must be prepared as they were for training: the same pixel scale
// for images (the same lenet5 weights score 88.75% on [0, 1] pixels and 60% on [-1, 1] ones),
// the same split, the same loss. ModelInfo is that record; the command line writes it with
// every --save and reads it back for `predict` and `train --init`.
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "sparseprox/data.h"
#include "sparseprox/model.h"

namespace sparseprox {

SPARSEPROX_API const char* to_string(PixelScale s);              // unit, symmetric, raw
SPARSEPROX_API PixelScale parse_pixel_scale(const std::string& name);
SPARSEPROX_API const char* to_string(Task t);                    // regression, classification
SPARSEPROX_API Task parse_task(const std::string& name);

// How the data a model was trained on were read, split and scaled.
struct SPARSEPROX_API DataPreparation {
    std::string source;          // load_data's source ("idx:DIR", "libsvm:PATH", "mackey-glass"); "" for data from memory
    DataOptions options;         // the split, the separate test source and the pixel scale
    std::string feature_scaling; // in words: "x / 255", "min-max of the generated series to [-1, 1]", "none (as read)"
    Task task = Task::regression;
    SampleShape input_shape;     // features per sample, as the model's first layer reads them
    std::size_t outputs = 0;     // classes, or targets per sample

    // The record of `source` loaded with `options` into a set of `task` and `outputs`, for a
    // model whose inputs have `input_shape`.
    static DataPreparation of(const std::string& source, const DataOptions& options, Task task, std::size_t outputs,
                              const SampleShape& input_shape);
    // The source kind ("idx", "libsvm", "mackey-glass") or "" for data from memory.
    std::string source_kind() const;
};

struct SPARSEPROX_API ModelInfo {
    std::string version;                  // the library version that wrote the file; "" when unknown
    std::optional<DataPreparation> data;  // absent in files written before 0.3 or from the API without it
    std::optional<Loss> loss;
    std::string method;                   // "l1", "l0", "spred", "gmp"; "" when unknown
    // The run's settings and results (the command line's JSON report keys, numbers at full
    // precision) as a JSON object; "" when absent.
    std::string training_json;
};

// The metadata entries of a model file: "sparseprox_version", "data" (a JSON object: source,
// split, pixel_scale, feature_scaling, task, input_shape, classes or targets), "task", "loss",
// "method" and "training" (JSON); absent fields are left out.
SPARSEPROX_API std::map<std::string, std::string> to_metadata(const ModelInfo& info);
// Reads those entries back from a model file's metadata (load_model's `metadata`). Entries that
// are absent leave their fields empty; a malformed one is a sparseprox::Error naming `origin`
// (the file) and the entry.
SPARSEPROX_API ModelInfo read_model_info(const std::map<std::string, std::string>& metadata, const std::string& origin);

// A float as the shortest decimal that reads back as the same float (1e-07, not
// 1.0000000116860974e-07), as a double: how reports and model files store float settings.
SPARSEPROX_API double shortest_decimal(float v);

}  // namespace sparseprox
