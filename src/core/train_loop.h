// The training loop of Algorithm 3 on an existing engine, with hooks for the lambda search.
// Internal: the public entry point is sparseprox::train (train.h).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

#include "core/band.h"
#include "core/engine.h"
#include "sparseprox/train.h"

namespace sparseprox {

struct RunControl {
    // Poll the engine every this many steps (0: the default, 32; 1 when NNZ history is kept).
    std::size_t poll_every = 0;
    // Called after every poll that did not end the run, with the engine and its status. It may
    // change the engine's lambdas or stop rule (they take effect from the next step), or end the
    // run itself by returning the parameters it ends with (the adaptive search's landing): the
    // run then counts as stopped in the band when those parameters' NNZ satisfy options.stop, and
    // the fine-tuning phase, when enabled, starts from them with their sparsity pattern fixed.
    std::function<std::optional<std::vector<float>>(Engine&, const EngineStatus&)> on_poll;
    // The band a run ended by on_poll is judged by when options.stop is empty (a search that arms
    // the band during the run).
    StopRule landing_band;
};

// Runs Algorithm 3 from `init_slab` on `engine` (whose model is `spec`) with `options`
// (already validated by the caller or not: they are validated here), then evaluates the result.
TrainResult run_training(Engine& engine, const ModelSpec& spec, const std::vector<float>& init_slab,
                         const Dataset& train_set, const Dataset* test_set, const TrainOptions& options,
                         const RunControl* control = nullptr);

// Where the lazy l1 form's pattern starts its fine-tuning (docs/method.md §8.5): `params` with
// every nonzero weight replaced by its accumulated value z (Engine::get_accumulated), whose
// magnitude is the weight's plus the threshold lr lambda. The threshold chose the pattern; the
// kept weights start without its shrinkage, as the relaxed lasso refits the lasso's support
// (Meinshausen 2007). Biases and pruned weights are left as they are.
std::vector<float> lazy_refit(std::vector<float> params, const std::vector<float>& z, const ParamLayout& layout);

// The step budget of one run on n_samples training rows: the smaller of options.steps and
// options.epochs epochs (either may be 0: no limit of that kind).
std::size_t step_budget(const TrainOptions& options, std::size_t n_samples);
// The rule's record for the stop-rule operation, over n_layers per-layer counts.
StopConfig stop_config(const StopRule& rule, std::size_t n_layers);

// Checks that a data set fits a model (features, outputs, not empty); throws naming both.
void check_fits(const ModelSpec& spec, const Dataset& data);
// The loss a run uses: options' loss, or the data set's default; throws on a mismatch.
Loss resolve_loss(std::optional<Loss> loss, const Dataset& data);

}  // namespace sparseprox
