// `sparseprox predict`: run a saved model on data prepared as its training data were.
#pragma once

#include <set>
#include <string>

#include <CLI/CLI.hpp>

namespace sparseprox {
namespace cli {

struct PredictFlags {
    std::string model;        // a model file written by --save
    std::string data;         // default: the source the model file records
    std::string rows;         // test, train or all (default: test when the data have a test part)
    std::string pixel_scale;  // default: the scale the model file records
    std::string device = "auto";
    std::string out;          // predictions: .npy (float32, rows x outputs) or .csv
    std::string report;       // JSON
    std::string format = "dense";  // dense, csr or compact (sparseprox/inference.h)
    std::size_t batch = 256;  // rows per forward pass
    bool quiet = false;
    std::set<std::string> given;
    bool has(const char* flag) const { return given.count(flag) > 0; }
};

void add_predict_flags(CLI::App& app, PredictFlags& f);
int run_predict(const PredictFlags& f);

}  // namespace cli
}  // namespace sparseprox
