// SparseProx: choosing lambda for a target NNZ — Algorithm 1 (one lambda) and Algorithm 2 (one
// lambda per layer) of docs/method.md §4-5, plus two cheaper strategies.
//
// A search trains the same network several times (the "outer iterations"), each time with the
// NNZ early stop of Algorithm 3 (train.h), and picks the next lambda from the history of
// (lambda, NNZ) pairs and the full-data loss gradient of the network the last run returned.
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "sparseprox/data.h"
#include "sparseprox/model.h"
#include "sparseprox/train.h"

namespace sparseprox {

enum class LambdaRule {
    lambda0,    // run 0: the given (or computed) starting value
    lambda1,    // run 1: the small value (1e-7 by default)
    median,     // the lower median of the candidates
    midpoint,   // no candidates: (lambda_low + lambda_up) / 2
    expand,     // no run was sparse enough yet (no upper end): 10 x the largest lambda tried
    adaptive,   // the adaptive strategy steered lambda during a run
    fixed,      // the adaptive strategy's final phase at a fixed lambda
    geometric,  // methods other than l1: sqrt(lambda_low * lambda_up), lambda_up / 10 when low is 0
    quantile,   // parallel search: one of the P-quantiles of the candidates (median for P = 1)
    bisect,     // a median run left the bracket's counts as they were: (lambda_low + lambda_up) / 2
};
SPARSEPROX_API const char* to_string(LambdaRule r);

// ---- the search ----------------------------------------------------------------------------------

enum class SearchStrategy {
    paper,     // Algorithms 1/2 (with bisect_stalls false: exactly): every run restarts from the initialization
    warm,      // the same rules, each run starting from the weights of the closest run so far on
               // the dense side (NNZ >= target in every group; the initialization until one exists)
    adaptive,  // one run: lambda steered toward the target online, then a fixed-lambda phase
};
SPARSEPROX_API const char* to_string(SearchStrategy s);
SPARSEPROX_API SearchStrategy parse_search_strategy(const std::string& name);  // paper, warm, adaptive
// The strategy a search named `name` uses for runs of `train`: "auto" is adaptive for l1 with one
// total target (it lands in one run's budget there, docs/method.md §8.5) and paper otherwise;
// other names as parse_search_strategy. The command line's and the Python package's default.
SPARSEPROX_API SearchStrategy choose_search_strategy(const std::string& name, const TrainOptions& train);

// How the adaptive strategy moves lambda every `adapt_interval` steps (n: the group's current
// NNZ, l*: its target, N: its weight count, a: adapt_rate):
//   relative (default, a = 0.5): steer the count along a schedule: over the ramp (R steps)
//            the cubic of gradual magnitude pruning, desired(s) = l* + (N - l*)(1 - s/R)^3, after
//            it desired = l* + (n - l*) / 2 (half the distance every interval). With `ahead` =
//            2 n - n_prev (the count one interval ahead, from the last two polls):
//            lambda *= clamp((ahead / desired(next poll))^a, 1/(1 + a), 1 + a).
//   sparsity (docs/method.md §7, a = 1): lambda *= (1 + a |s - s*|) when n > l*, /= it when n < l*,
//            with s = 1 - n/N the sparsity.
enum class AdaptRule { relative, sparsity };
SPARSEPROX_API const char* to_string(AdaptRule r);
SPARSEPROX_API AdaptRule parse_adapt_rule(const std::string& name);

// How an l1 search with one total target shares it among the weight layers (docs/method.md
// §8.6). Applies to the adaptive strategy; the paper and warm strategies always use one lambda.
//   uniform    one lambda for every layer (Algorithm 1, the paper): each layer keeps the weights
//              whose loss gradient outweighs that lambda, which starves layers with small
//              gradients (lenet300100 at 5%: 1,647 of 30,000 weights in its second layer).
//   magnitude  per-layer targets t_l summing to the total: the layers' shares of the
//              total's largest weight magnitudes over the whole network at the end of the dense
//              warm-up (magnitude_allocation), which is the allocation of global gradual
//              magnitude pruning; each layer's lambda is then steered toward its t_l.
//   automatic  (default) uniform under the lazy l1 form, whose one threshold over the
//              accumulated weights of every layer is global magnitude pruning's allocation kept
//              up to date at every step; magnitude under the greedy form.
enum class Allocation { uniform, magnitude, automatic };
SPARSEPROX_API const char* to_string(Allocation a);
SPARSEPROX_API Allocation parse_allocation(const std::string& name);  // uniform, magnitude, auto

// The per-layer counts of the `total` largest |w| over every weight layer of `model` (a weight
// ranks by its magnitude alone, whatever its layer). Ties at the threshold magnitude (zeros
// among them, when fewer than `total` weights are nonzero) are shared among the layers in
// proportion to how many tied weights each holds. Every layer gets at least one weight (taken
// from the largest share). The counts sum to `total`; throws if `total` is 0 or exceeds the
// weights, or if it is smaller than the number of weight layers.
SPARSEPROX_API std::vector<std::size_t> magnitude_allocation(const Model& model, std::size_t total);

// One outer iteration (a training run; for the adaptive strategy, one steering interval).
struct SPARSEPROX_API SearchIteration {
    std::size_t index = 0;
    std::vector<float> lambdas;               // per weight layer, as used by this run
    LambdaRule rule = LambdaRule::lambda0;    // how these lambdas were chosen (per-layer searches:
    std::vector<LambdaRule> layer_rules;      //   the rule of each layer in layer_rules)
    std::vector<std::size_t> n_candidates;    // per group, for median/midpoint choices
    std::vector<std::size_t> nnz;             // per weight layer, of the network the run returned
    std::size_t steps = 0;                    // steps of this run (interval), fine-tuning included
    std::size_t finetune_steps = 0;           // of which fine-tuning the in-band pattern
    std::size_t total_steps = 0;              // steps of the search so far, this one included
    bool in_band = false;
    double train_loss = 0.0;                  // NaN where not evaluated
    double test_loss = 0.0;
    double test_accuracy = -1.0;              // classification only
    double seconds = 0.0;                     // wall time of this iteration
    double elapsed_seconds = 0.0;             // since the search started
    // Parallel search (SearchOptions::ranks_per_run): the round this run belonged to and the
    // first rank of the group that trained it (0 and 0 for a search on one group).
    std::size_t round = 0;
    int rank = 0;
};

struct SPARSEPROX_API SearchOptions {
    // The settings of every run: device, lr, batch, epochs/steps (the budget of one run), seed,
    // loss, weight decay and the band (train.stop: one total target, or one per weight layer for
    // Algorithm 2, with tolerance and min_layers). train.lambdas is ignored.
    TrainOptions train;
    SearchStrategy strategy = SearchStrategy::paper;
    // lambda^(0): one value, or one per weight layer. Empty: computed (see compute_lambda_max).
    std::vector<float> lambda0;
    float lambda1 = 1e-7f;
    std::size_t max_outer = 99;  // the most training runs (outer iterations), runs 0 and 1 included
    // true (the default): a run that stops in the band trains the rest of its budget with that
    // sparsity pattern fixed (TrainOptions::finetune), so the returned network has trained its
    // whole budget instead of being the first in-band iterate, which can come after a few
    // hundred steps when the count passes through the band early. The search itself is
    // unchanged: it ends at the first run in the band, the only run fine-tuned. false, with
    // train.finetune false: Algorithm 3's in-band iterate, as in the paper.
    bool finetune = true;
    // false: run 0 ignores the band and trains its whole budget, as the authors' released code
    // did in three of its four scripts (docs/method.md §6). true: the band ends run 0 too (§4).
    bool stop_run0 = true;
    // true (the default): after a run chosen by the median rule that left the bracket's counts as
    // they were, the next lambda is the bracket's midpoint (rule bisect), so the median never
    // stalls twice in a row; the median alone can creep towards a narrow target interval by a
    // small step per run (docs/method.md §4). false: Algorithms 1/2 exactly as the paper states them.
    bool bisect_stalls = true;
    // adaptive strategy (docs/method.md §8.5)
    std::size_t adapt_interval = 0;    // steps between lambda updates (K; 0: 1/100 of the budget, >= 1)
    double adapt_rate = 0.0;           // a (0: the rule's default, 0.5 relative, 1 sparsity)
    AdaptRule adapt_rule = AdaptRule::relative;
    // Relative rule: the step at which the NNZ schedule reaches the target (R; 0: three quarters
    // of the budget under the lazy l1 form, which does not shrink the kept weights, as gradual
    // magnitude pruning's schedule ends; half of it under the greedy form). The schedule starts
    // at R/6 after a warm-up at the starting lambda; the band is armed from R, and a count still
    // above the band at R + budget/10 (the landing step) is trimmed to the target by magnitude
    // within each group. Under the lazy form every update from R/6 to the landing also trims a
    // group above the schedule's count to it by |z|, and the fine-tuning starts from the kept
    // weights' z (docs/method.md §8.5).
    std::size_t adapt_ramp = 0;
    // One total target with the adaptive strategy and l1: how the total is shared among layers.
    Allocation allocation = Allocation::automatic;
    // The rows of train_set whose gradients give the computed lambda^(0) (compute_lambda_max;
    // docs/method.md §8.1), evenly spaced over the set: 0, the default, takes all of them for the
    // paper and warm strategies (the paper's lambda_max) and at most kAdaptiveStartRows for the
    // adaptive strategy, whose start only seeds the steering (two full-data gradients cost about
    // one epoch, as much as a whole one-epoch run). Any other value: that many rows (at most all).
    // Ignored when lambda0 is given.
    std::size_t start_rows = 0;
    static constexpr std::size_t kAdaptiveStartRows = 4096;
    // Called after every outer iteration (for progress output); for the paper and warm
    // strategies after the checkpoint of that iteration is written.
    std::function<void(const SearchIteration&)> on_iteration;

    // Checkpoint and resume (README, "Resuming a search"). checkpoint_path not empty: the
    // search's state is written there (atomically: a reader or a crash never sees half a file)
    // when it starts and after every run of the paper and warm strategies: the history of
    // (lambda, NNZ), the next lambdas and their rules, the warm start, the best run with its
    // model, the initialization, and a description of the setup (options, model, data). The
    // file is a safetensors file: the models as tensors, the rest as JSON in its metadata.
    // resume_path not empty: continue the search recorded there, which must have been made with
    // the same options, model, initialization and data (an Error names the first difference);
    // it ends with the same result as the uninterrupted search, losing only the run that was in
    // progress. A finished search's checkpoint returns its result without training. The
    // adaptive strategy (one run) and gmp record no progress: their resume checks the setup
    // and starts the search again. The two paths may be the same file.
    std::string checkpoint_path;
    std::string resume_path;

    // The parallel search (README, "Distributed training"): the ranks of train.communicator
    // form groups of ranks_per_run ranks (0: one group of all ranks), each training its runs
    // data-parallel. With P groups, the paper and warm strategies train P lambdas per round:
    // round 0 lambda^(0), lambda^(1) and (P > 2) points between them in log scale; later rounds
    // the P-quantiles of the candidate set instead of its median (P points of the bracket for
    // the midpoint, expand and geometric rules), so the bracket shrinks by about P + 1 per
    // round. The adaptive strategy and gmp (one run) train on one group of all ranks. Only
    // world rank 0 writes the checkpoint; resuming a parallel search (P > 1) is refused.
    std::size_t ranks_per_run = 1;

    // Throws on an empty or impossible band, a bad lambda0/lambda1, max_outer < 2 (paper, warm),
    // adapt_interval 0 or a negative adapt_rate, plus everything TrainOptions::validate checks.
    void validate(const ModelSpec& spec) const;
};


// The l1 form a search's runs use (MethodOptions::l1.form resolved, never automatic): automatic
// is lazy for the adaptive strategy with one total target and greedy otherwise (per-layer targets,
// the paper and warm strategies); greedy for the other methods.
SPARSEPROX_API L1Form search_l1_form(const SearchOptions& o);

struct SPARSEPROX_API SearchResult {
    TrainResult run;              // the run returned: the one in the band, else the closest one
    bool reached = false;         // the band was hit
    std::size_t best_iteration = 0;
    std::vector<SearchIteration> iterations;
    std::size_t outer_iterations = 0;  // training runs made
    std::size_t rounds = 0;            // rounds of runs trained at once (= runs on one group)
    std::size_t parallel_runs = 1;     // P: runs per round (groups of ranks_per_run ranks)
    std::size_t total_steps = 0;       // training steps over all runs
    std::vector<float> lambda_final;   // per weight layer, of the returned run
    std::vector<float> lambda_start;   // per weight layer: lambda^(0) as given or computed
    bool lambda_start_computed = false;
    std::size_t lambda_start_rows = 0;  // training rows the computed lambda^(0) came from (0: given)
    std::size_t adapt_ramp = 0;        // adaptive: the schedule's end R used
    std::size_t adapt_interval = 0;    // adaptive: the interval K used
    std::size_t landing_step = 0;      // adaptive, relative rule: when a count above the band is trimmed
    bool landed = false;               // adaptive: the band was met by a trim (not by a step)
    Allocation allocation = Allocation::uniform;  // the allocation used
    L1Form l1_form = L1Form::greedy;               // l1: the form of the step used (never automatic)
    std::vector<std::size_t> layer_targets;        // magnitude allocation: t_l per weight layer
    SearchStrategy strategy = SearchStrategy::paper;
    double wall_seconds = 0.0;         // search time, that before a resume included
    // A stop was requested (sparseprox/stop.h): the search ended at a step boundary; `run` is
    // the best finished run (the interrupted run itself when none finished) and the iterations
    // are the finished runs. The checkpoint holds every finished run.
    bool interrupted = false;
    std::size_t resumed_runs = 0;      // runs taken from the checkpoint of SearchOptions::resume_path
    // Why the latest write of SearchOptions::checkpoint_path failed (a full disk, say); empty when
    // it succeeded. A failed write does not stop the search: the next run's write tries again.
    std::string checkpoint_error;
};

// What a search checkpoint (SearchOptions::checkpoint_path) records, for progress displays and
// for deciding whether to resume.
struct SPARSEPROX_API SearchCheckpointInfo {
    SearchStrategy strategy = SearchStrategy::paper;
    std::vector<SearchIteration> iterations;  // the finished runs, in order
    bool finished = false;                    // the search ended (in the band, or out of runs)
    bool reached = false;
    std::size_t best_iteration = 0;           // valid when iterations is not empty
    double elapsed_seconds = 0.0;             // search time up to the last finished run
};
// Reads a checkpoint; throws sparseprox::Error naming the file when it is not one.
SPARSEPROX_API SearchCheckpointInfo read_search_checkpoint(const std::string& path);

class SPARSEPROX_API LambdaSearch {
public:
    explicit LambdaSearch(SearchOptions options);

    // Searches lambda for `init` (every paper run restarts from it) on `train_set`; evaluates
    // every run on `test_set` when it is not null. Never throws for a missed band: the result
    // then has reached == false and holds the closest run.
    SearchResult run(const Model& init, const Dataset& train_set, const Dataset* test_set) const;

    const SearchOptions& options() const { return options_; }

private:
    SearchOptions options_;
};

// The computed starting bracket: per weight layer, ||grad_{W_l} L(0, b*)||_inf (docs/method.md §2;
// b*: the output bias fitted to the data, other biases as in `init`), the smallest lambda_l at
// which W = 0 is stationary. For a network with more than one weight layer this is 0 for every
// layer (W = 0 is always stationary there), so each layer falls back to ||grad_{W_l} L(W0, b0)||_inf
// at the initialization: above it the first proximal steps can only shrink that layer's weights.
// rows: the gradients over that many evenly spaced rows of train_set (0, or more than it has: all).
SPARSEPROX_API std::vector<float> compute_lambda_max(const Model& init, const Dataset& train_set, const Device& device,
                                                    std::optional<Loss> loss = std::nullopt, std::size_t rows = 0);

// Runs the search of `options` from `init` on `train_set` (and evaluates on `test_set` when it
// is not null): the same as LambdaSearch(options).run(init, train_set, test_set).
SPARSEPROX_API SearchResult search(const Model& init, const Dataset& train_set, const Dataset* test_set,
                                   const SearchOptions& options);

}  // namespace sparseprox
