// The lambda search's checkpoint (SearchOptions::checkpoint_path / resume_path): the state of the
// paper and warm strategies between two runs, written to and read from one safetensors file.
// Internal: the public surface is SearchOptions and read_search_checkpoint (sparseprox/search.h).
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/search_rules.h"
#include "sparseprox/search.h"

namespace sparseprox {

// The loop of Algorithms 1 and 2 between two runs: everything the next run and the rest of the
// search read. Vectors indexed by group (one group, or one per weight layer).
struct SearchLoopState {
    std::size_t next_run = 0;               // the index of the next run
    std::vector<float> lambdas;             // the next run's lambda per group
    std::vector<LambdaRule> rules;          // how they were chosen
    std::vector<std::size_t> n_candidates;  // the candidates behind them (empty before run 2)
    std::vector<std::vector<LambdaRecord>> history;
    bool have_best = false;
    std::pair<std::size_t, double> best_close{0, std::numeric_limits<double>::infinity()};
    TrainResult best;                       // with its model
    bool have_warm_from = false;            // warm: a dense-side run was kept
    std::vector<float> warm_from;           // warm: where the next run starts (when have_warm_from)
    double warm_score = std::numeric_limits<double>::infinity();
    bool finished = false;                  // in the band, or no run left
};

// The options, model, initialization and data of a search as (name, value) pairs, in a fixed
// order: a resume compares them with the checkpoint's and names the first that differs.
using SetupList = std::vector<std::pair<std::string, std::string>>;
SetupList describe_search_setup(const SearchOptions& options, const Model& init, const Dataset& train_set,
                                const Dataset* test_set);

struct SearchCheckpointData {
    SetupList setup;
    std::vector<float> init_slab;
    SearchStrategy strategy = SearchStrategy::paper;
    std::vector<float> start;               // lambda^(0) per group
    bool start_computed = false;
    std::size_t start_rows = 0;             // the rows it was computed from
    std::vector<SearchIteration> iterations;
    std::size_t total_steps = 0;
    std::size_t best_iteration = 0;
    bool reached = false;
    double elapsed_seconds = 0.0;
    bool has_loop = false;                  // paper/warm: `loop` holds the state
    SearchLoopState loop;
};

// Atomic (write_safetensors writes a temporary file and renames it).
void save_search_checkpoint(const std::string& path, const SearchCheckpointData& c);
// The models come back as slabs in loop.best.model.slab() (a Model without a spec: the caller
// rebuilds it for its spec after check_same_setup), loop.warm_from and init_slab.
SearchCheckpointData load_search_checkpoint(const std::string& path);
// Throws "cannot resume from 'PATH': ..." naming the first entry that differs.
void check_same_setup(const std::string& path, const SetupList& recorded, const SetupList& now);

}  // namespace sparseprox
