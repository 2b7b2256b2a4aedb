// `sparseprox train`: the flags, their defaults and the run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace sparseprox {
namespace cli {

struct TrainFlags {
    std::string data = "mackey-glass";
    std::string model;  // default from the data: dense:6-128-128-64-1 or dense:784-300-100-10
    std::string device = "auto";
    float lr = 0.1f;
    std::string lambda = "1e-4";
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
};

void add_train_flags(CLI::App& app, TrainFlags& f);
int run_train(const TrainFlags& f);

}  // namespace cli
}  // namespace sparseprox
