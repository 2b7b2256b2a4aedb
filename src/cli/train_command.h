// `sparseprox train`: the flags, their defaults and the run; the pieces `search` shares.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "sparseprox/sparseprox.h"

namespace sparseprox {
namespace cli {

struct TrainFlags {
    std::string data = "mackey-glass";
    std::string model;  // default from the data: dense:6-128-128-64-1 or dense:784-300-100-10
    std::string device = "auto";
    std::string threads = "auto";  // CPU threads: auto or a count (sparseprox/threads.h)
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
    std::size_t train_rows = 0;       // libsvm split: the first rows train (0: by --test-fraction)
    std::size_t test_rows = 0;        // libsvm split: the last rows test
    double test_fraction = 0.2;       // libsvm split: the last fraction of the rows test
    std::string test_data;            // a separate test set (same syntax as --data)
    bool no_test = false;             // no test set
    std::string pixel_scale = "symmetric";
    double progress_seconds = 2.0;
    double comm_timeout = 30.0;       // under mpirun: seconds a collective may take (sparseprox/distributed.h)
    bool quiet = false;
    bool finetune = false;
    float finetune_lr = 0.0f;
    std::string init;  // start from this safetensors model instead of the seeded initialization
    // the optimizer and the learning-rate schedule
    std::string optimizer = "sgd";
    float momentum = 0.9f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float adam_eps = 1e-8f;
    std::string lr_schedule = "constant";
    std::size_t lr_step_every = 0;
    float lr_gamma = 0.1f;
    float lr_min = 0.0f;
    std::size_t warmup_steps = 0;
    // the sparsifier and its options
    std::string method = "l1";
    std::string l1_form = "auto";
    bool l0_group = false;
    float l0_gate_lr = 0.01f;
    float l0_drop_init = 0.5f;
    float l0_drop_init_first = 0.2f;
    float spred_threshold = 1e-3f;
    double gmp_begin = 0.1;
    double gmp_end = 0.75;
    std::size_t gmp_interval = 0;
    bool gmp_per_layer = false;
    // The flags given on the command line (filled after parsing), to refuse those that do not
    // apply and explicit values that defaults cannot be told from.
    std::set<std::string> given;
    bool has(const char* flag) const { return given.count(flag) > 0; }
};

// The processes of this invocation (mpirun: every rank; otherwise one), set once by main before
// train or search runs. Only rank 0 prints progress and writes files; the others print errors.
void set_world(const Communicator& world);
const Communicator& world();
bool is_root();

// Fills `given` with the long names of the options `cmd` received.
void record_given_flags(const CLI::App& cmd, std::set<std::string>& given);
// Refuses a flag that has no effect: "FLAG applies ... (why)" unless `applies`.
void refuse_unless(const TrainFlags& f, const char* flag, bool applies, const std::string& why);
// --min-layers and --tolerance against the band the run will use.
void check_band_flags(const TrainFlags& f, const StopRule& stop);

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
    DataPreparation prep;  // how the data were read, split and scaled (recorded by --save)
    ModelInfo init_info;   // what the --init file records (empty without --init)
    std::string input_columns;  // a compacted --init file's "input_columns" entry: selected from the data, carried to --save
};
// Loads the data, parses the model and fills the options. Targets come from --target-nnz when
// given; lambdas from --lambda when with_lambda.
RunSetup prepare_run(const TrainFlags& f, bool with_lambda);
// The pixel scale of idx data for a model trained on `recorded` data (`what` names the model,
// e.g. "--init m.safetensors"): the recorded scale (a note on stderr when it is not the default)
// unless `given` (the --pixel-scale value) is set; a given scale other than the recorded one is a
// warning. Without a record: the given scale, else symmetric.
PixelScale pixel_scale_for(const std::string& what, const std::optional<DataPreparation>& recorded,
                           const std::string* given);
// The model's inputs and outputs against the data's features and targets (or classes); the
// error names both flags.
void check_model_fits_data(const TrainFlags& f, const ModelSpec& spec, const Dataset& data);
// "training model ... on N rows, batch B, device D": what an out-of-memory error names.
std::string training_what(const RunSetup& s);

// The test set, or nullptr when the run has none (--no-test, or a split that left no rows).
const Dataset* test_set(const RunSetup& s);
// "1000 train / 385 test rows", or "442 train rows, no test set".
std::string rows_text(const RunSetup& s);
// The per-layer table, the step count and the losses of a finished run.
void print_summary(const RunSetup& setup, const TrainResult& r);
// The report keys that describe the run's setup (data, model, options), known before training.
nlohmann::json setup_report(const char* command, const TrainFlags& f, const RunSetup& setup);
// A diverged run: the report (when given) records it ("diverged": true, "diverged_step",
// "error"); returns the error the command ends with, which suggests a smaller --lr.
Error diverged_error(const DivergedError& e, const TrainFlags& f, nlohmann::json* report);
// The report keys every command writes about one run (setup_report's and the results).
nlohmann::json run_report(const char* command, const TrainFlags& f, const RunSetup& setup, const TrainResult& r);
// --save: the model with what model_info.h describes in the metadata (the data preparation, the
// loss, the method, the run's report as "training") and the lambdas, seed, lr and steps.
void save_run(const TrainFlags& f, const RunSetup& setup, const TrainResult& r, const nlohmann::json& report);
// Checks, before any work, that every output flag given (--report, --save and `extra`, e.g.
// --trace-csv) names a file that can be written, and that no two name the same file.
void check_outputs(const TrainFlags& f, const std::vector<std::pair<std::string, std::string>>& extra = {});

// Writes a command's outputs one after another: a failure is printed as an error line and
// remembered, and the next output is still written. The command's exit status is 1 when any
// failed.
class OutputWriter {
public:
    // Runs write(); on failure prints "sparseprox: error: ..." and records it.
    void attempt(const std::string& flag, const std::function<void()>& write);
    bool failed() const { return !errors_.empty(); }
    // {"--save": "cannot write ...", ...}: for the report written after the others.
    const nlohmann::json& errors() const { return errors_; }

private:
    nlohmann::json errors_ = nlohmann::json::object();
};
// The report to f.report (when given) through `out`, with "output_errors" when an output
// before it failed.
void write_report(OutputWriter& out, const std::string& path, nlohmann::json report);

// A JSON number, or null for NaN and infinities.
nlohmann::json number_or_null(double v);
// A float setting as the shortest decimal that reads back as it (1e-07, not 1.0000000116860974e-07).
nlohmann::json float_json(float v);
// The report's "data_preparation" object (the model file's "data" entry).
nlohmann::json preparation_json(const DataPreparation& prep);
// The report's "optimizer" object: the kind and the options that kind reads.
nlohmann::json optimizer_report(const OptimizerOptions& o);
std::string join(const std::vector<std::size_t>& v);

// After a stop request (sparseprox/stop.h): "interrupted by SIGINT" (or SIGTERM, or without a
// signal), and the exit status, 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
std::string interrupted_text();
int interrupted_exit_status();

}  // namespace cli
}  // namespace sparseprox
