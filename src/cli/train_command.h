// `sparseprox train`: the flags, their defaults and the run; the pieces `search` shares.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "sparseprox/sparseprox.h"

namespace sparseprox {
namespace cli {

struct TrainFlags {
    std::string data = "mackey-glass";
    std::string model;  // default from the data: dense:6-128-128-64-1 or dense:784-300-100-10
    std::string device = "auto";
    float lr = 0.1f;
    std::string lambda = "1e-4";
    float weight_decay = 0.0f;
    std::string batch;  // default: full for regression, 128 for classification
    std::size_t epochs = 0;
    std::size_t steps = 0;
    std::uint64_t seed = 0;
    std::string target_nnz;
    double tolerance = 0.001;
    std::size_t min_layers = 0;
    std::string report;
    std::string save;
    std::string loss;
    std::size_t train_rows = 1000;
    std::string pixel_scale = "symmetric";
    double progress_seconds = 2.0;
    bool quiet = false;
    bool finetune = false;
    float finetune_lr = 0.0f;
    std::string init;  // start from this safetensors model instead of the seeded initialization
    // the sparsifier and its options
    std::string method = "l1";
    bool l0_group = false;
    float l0_gate_lr = 0.01f;
    float l0_drop_init = 0.5f;
    float l0_drop_init_first = 0.2f;
    float spred_threshold = 1e-3f;
    double gmp_begin = 0.1;
    double gmp_end = 0.75;
    std::size_t gmp_interval = 0;
    bool gmp_per_layer = false;
};

// with_lambda: `train` takes --lambda; `search` chooses lambda itself.
void add_train_flags(CLI::App& app, TrainFlags& f, bool with_lambda = true);
int run_train(const TrainFlags& f);

// What a run needs, from the flags: the data, the model, the options (progress printing
// included) and the initialization.
struct RunSetup {
    DataSplit data;
    ModelSpec spec;
    TrainOptions options;
    Device device;
    bool classification = false;
    Model init;
};
// Loads the data, parses the model and fills the options. Targets come from --target-nnz when
// given; lambdas from --lambda when with_lambda.
RunSetup prepare_run(const TrainFlags& f, bool with_lambda);
// The model's inputs and outputs against the data's features and targets (or classes); the
// error names both flags.
void check_model_fits_data(const TrainFlags& f, const ModelSpec& spec, const Dataset& data);
// "training model ... on N rows, batch B, device D": what an out-of-memory error names.
std::string training_what(const RunSetup& s);

// The per-layer table, the step count and the losses of a finished run.
void print_summary(const RunSetup& setup, const TrainResult& r);
// The report keys every command writes about one run.
nlohmann::json run_report(const char* command, const TrainFlags& f, const RunSetup& setup, const TrainResult& r);
// --save: the model with its lambdas, seed and lr in the metadata.
void save_run(const TrainFlags& f, const TrainResult& r);
// A JSON number, or null for NaN and infinities.
nlohmann::json number_or_null(double v);
std::string join(const std::vector<std::size_t>& v);

}  // namespace cli
}  // namespace sparseprox
