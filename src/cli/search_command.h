// `sparseprox search`: choose lambda (or one lambda per layer) for a target NNZ.
#pragma once

#include <cstddef>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/train_command.h"

namespace sparseprox {
namespace cli {

struct SearchFlags {
    TrainFlags train;
    std::string target_density;  // one fraction, or one per weight layer
    std::string strategy = "auto";  // adaptive for l1 with one total target, paper otherwise
    std::string lambda0;         // empty: computed from the gradient (docs/method.md §2)
    float lambda1 = 1e-7f;
    std::size_t max_outer = 99;
    std::size_t adapt_interval = 0;  // 0: 1/100 of the budget
    double adapt_rate = 0.0;
    std::string adapt_rule = "relative";
    std::size_t adapt_ramp = 0;
    std::size_t start_rows = 0;
    std::string allocation = "auto";
    bool no_stop_run0 = false;
    bool no_bisect_stalls = false;
    bool no_finetune = false;  // return the first in-band iterate (the paper) instead of fine-tuning it
    std::string trace_csv;
    std::string checkpoint;      // empty: REPORT.ckpt when --report is given, else the --resume file
    bool no_checkpoint = false;
    std::string resume;          // a checkpoint to continue from
    std::size_t ranks_per_run = 1;  // under mpirun: ranks training one run (0: all, one run at a time)
};

void add_search_flags(CLI::App& app, SearchFlags& f);
// Exit status: 0 when the band was hit, 3 when it was not (the closest run is reported), 130 or
// 143 when SIGINT or SIGTERM stopped it (the outputs hold what was done).
int run_search(const SearchFlags& f);

}  // namespace cli
}  // namespace sparseprox
