// The lambda search (docs/method.md §4-5) and its two cheaper variants, on one engine that every run
// reuses: the training set is uploaded once, and on CUDA the candidate filter and median of each
// outer iteration are computed where the gradient lives (Engine::gradient_candidates).
#include "core/search_rules.h"
#include "sparseprox/search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <utility>

#include "core/band.h"
#include "core/engine.h"
#include "core/search_checkpoint.h"
#include "core/train_loop.h"
#include "sparseprox/error.h"

namespace sparseprox {

// ---- names ---------------------------------------------------------------------------------------

const char* to_string(LambdaRule r) {
    switch (r) {
        case LambdaRule::lambda0: return "lambda0";
        case LambdaRule::lambda1: return "lambda1";
        case LambdaRule::median: return "median";
        case LambdaRule::midpoint: return "midpoint";
        case LambdaRule::geometric: return "geometric";
        case LambdaRule::quantile: return "quantile";
        case LambdaRule::expand: return "expand";
        case LambdaRule::adaptive: return "adaptive";
        case LambdaRule::fixed: return "fixed";
        case LambdaRule::bisect: return "bisect";
    }
    return "?";
}

const char* to_string(SearchStrategy s) {
    switch (s) {
        case SearchStrategy::paper: return "paper";
        case SearchStrategy::warm: return "warm";
        case SearchStrategy::adaptive: return "adaptive";
    }
    return "?";
}

SearchStrategy parse_search_strategy(const std::string& name) {
    if (name == "paper") return SearchStrategy::paper;
    if (name == "warm") return SearchStrategy::warm;
    if (name == "adaptive") return SearchStrategy::adaptive;
    throw Error("unknown search strategy '" + name + "' (expected paper, warm or adaptive)");
}

SearchStrategy choose_search_strategy(const std::string& name, const TrainOptions& train) {
    if (name != "auto") return parse_search_strategy(name);
    const bool l1_total = train.method.method == Method::l1 && train.stop.targets.size() == 1;
    return l1_total ? SearchStrategy::adaptive : SearchStrategy::paper;
}

const char* to_string(AdaptRule r) { return r == AdaptRule::relative ? "relative" : "sparsity"; }

AdaptRule parse_adapt_rule(const std::string& name) {
    if (name == "relative") return AdaptRule::relative;
    if (name == "sparsity") return AdaptRule::sparsity;
    throw Error("unknown adaptive rule '" + name + "' (expected relative or sparsity)");
}

const char* to_string(Allocation a) {
    switch (a) {
        case Allocation::uniform: return "uniform";
        case Allocation::magnitude: return "magnitude";
        case Allocation::automatic: return "auto";
    }
    return "?";
}

L1Form search_l1_form(const SearchOptions& o) {
    if (o.train.method.method != Method::l1) return L1Form::greedy;
    if (o.train.method.l1.form != L1Form::automatic) return o.train.method.l1.form;
    // Per-layer targets steer a lambda per layer either way; the paper and warm strategies are
    // the paper's.
    return o.strategy == SearchStrategy::adaptive && o.train.stop.targets.size() == 1 ? L1Form::lazy : L1Form::greedy;
}

Allocation parse_allocation(const std::string& name) {
    if (name == "uniform") return Allocation::uniform;
    if (name == "magnitude") return Allocation::magnitude;
    if (name == "auto") return Allocation::automatic;
    throw Error("unknown allocation '" + name + "' (expected uniform, magnitude or auto)");
}

// ---- the rules -----------------------------------------------------------------------------------

std::vector<std::size_t> magnitude_allocation(const Model& model, std::size_t total) {
    const ParamLayout& layout = model.layout();
    const std::size_t n_layers = layout.segments.size();
    const std::size_t n_weights = model.spec().n_weights();
    if (total == 0 || total > n_weights)
        throw Error("magnitude allocation: total " + std::to_string(total) + " must lie in [1, " +
                    std::to_string(n_weights) + "]");
    if (total < n_layers)
        throw Error("magnitude allocation: total " + std::to_string(total) + " is below one weight for each of the " +
                    std::to_string(n_layers) + " weight layers");
    // The threshold: the total-th largest magnitude.
    std::vector<float> mags;
    mags.reserve(n_weights);
    for (std::size_t l = 0; l < n_layers; ++l)
        for (std::size_t i = 0; i < layout.segments[l].n_weights; ++i) mags.push_back(std::fabs(model.weight(l)[i]));
    const auto kth = mags.begin() + static_cast<std::ptrdiff_t>(total - 1);
    std::nth_element(mags.begin(), kth, mags.end(), std::greater<float>());
    const float threshold = *kth;
    // Above the threshold every weight is in; the rest of the total comes from the ties, shared
    // in proportion to each layer's tied count (largest remainders, then layer order).
    std::vector<std::size_t> out(n_layers, 0), tied(n_layers, 0);
    std::size_t above = 0, n_tied = 0;
    for (std::size_t l = 0; l < n_layers; ++l) {
        for (std::size_t i = 0; i < layout.segments[l].n_weights; ++i) {
            const float a = std::fabs(model.weight(l)[i]);
            if (a > threshold) ++out[l];
            else if (a == threshold) ++tied[l];
        }
        above += out[l];
        n_tied += tied[l];
    }
    const std::size_t from_ties = total - above;  // <= n_tied by the choice of the threshold
    std::vector<std::pair<double, std::size_t>> remainders;
    std::vector<std::size_t> taken(n_layers, 0);
    std::size_t given = 0;
    for (std::size_t l = 0; l < n_layers && from_ties > 0; ++l) {
        const double share = static_cast<double>(from_ties) * static_cast<double>(tied[l]) / static_cast<double>(n_tied);
        taken[l] = std::min(tied[l], static_cast<std::size_t>(std::floor(share)));
        given += taken[l];
        remainders.push_back({share - static_cast<double>(taken[l]), l});
    }
    std::stable_sort(remainders.begin(), remainders.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    // Terminates: the shares sum to from_ties <= n_tied, so some layer has a tie left.
    for (std::size_t k = 0; given < from_ties; k = (k + 1) % remainders.size()) {
        const std::size_t l = remainders[k].second;
        if (taken[l] < tied[l]) {
            ++taken[l];
            ++given;
        }
    }
    for (std::size_t l = 0; l < n_layers; ++l) out[l] += taken[l];
    // No layer left empty: a layer without weights cuts the network.
    for (std::size_t l = 0; l < n_layers; ++l) {
        if (out[l] > 0) continue;
        const auto largest = static_cast<std::size_t>(std::max_element(out.begin(), out.end()) - out.begin());
        --out[largest];
        out[l] = 1;
    }
    return out;
}

Bracket bracket_from_history(const std::vector<LambdaRecord>& history, std::size_t target) {
    Bracket b;
    for (const LambdaRecord& h : history) {
        if (h.nnz <= target && (!b.has_up || h.nnz > b.n_lo || (h.nnz == b.n_lo && h.lambda < b.lambda_up))) {
            b.has_up = true;
            b.n_lo = h.nnz;
            b.lambda_up = h.lambda;
        }
        if (h.nnz >= target && (!b.has_low || h.nnz < b.n_hi || (h.nnz == b.n_hi && h.lambda > b.lambda_low))) {
            b.has_low = true;
            b.n_hi = h.nnz;
            b.lambda_low = h.lambda;
        }
    }
    return b;
}

bool bracket_stalled(const std::vector<LambdaRecord>& history, std::size_t target) {
    if (history.size() < 2) return false;
    const Bracket now = bracket_from_history(history, target);
    const Bracket before =
        bracket_from_history(std::vector<LambdaRecord>(history.begin(), history.end() - 1), target);
    return now.has_up == before.has_up && now.has_low == before.has_low && (!now.has_up || now.n_lo == before.n_lo) &&
           (!now.has_low || now.n_hi == before.n_hi);
}

CandidateSet candidate_set(const float* grad, std::size_t n, float low, float up) {
    std::vector<float> inside;
    for (std::size_t i = 0; i < n; ++i) {
        const float a = std::fabs(grad[i]);
        if (a > low && a < up) inside.push_back(a);  // NaN fails both
    }
    CandidateSet c;
    c.count = inside.size();
    if (inside.empty()) return c;
    const auto mid = inside.begin() + static_cast<std::ptrdiff_t>((inside.size() - 1) / 2);
    std::nth_element(inside.begin(), mid, inside.end());
    c.lower_median = *mid;
    return c;
}

LambdaChoice next_lambda(const Bracket& bracket, const CandidateSet& candidates, float largest_tried) {
    if (!bracket.has_up) return {largest_tried * 10.0f, LambdaRule::expand};
    if (candidates.count > 0) return {candidates.lower_median, LambdaRule::median};
    return {(bracket.lambda_low + bracket.lambda_up) / 2.0f, LambdaRule::midpoint};
}

std::vector<LambdaChoice> next_lambdas_parallel(const Bracket& bracket, const std::vector<float>& sorted,
                                                float largest_tried, std::size_t P, bool l1) {
    std::vector<LambdaChoice> out;
    if (P == 0) return out;
    if (!bracket.has_up) {
        float v = largest_tried;
        for (std::size_t i = 0; i < P; ++i) out.push_back({v *= 10.0f, LambdaRule::expand});
        return out;
    }
    const double low = bracket.lambda_low, up = bracket.lambda_up;
    // The i-th of P points strictly inside the bracket, i = 1..P.
    auto inside = [&](std::size_t i) -> LambdaChoice {
        const double t = static_cast<double>(i) / static_cast<double>(P + 1);
        if (l1) return {static_cast<float>(low + t * (up - low)), LambdaRule::midpoint};
        if (low > 0.0) return {static_cast<float>(std::exp((1.0 - t) * std::log(low) + t * std::log(up))), LambdaRule::geometric};
        return {static_cast<float>(up / std::pow(10.0, static_cast<double>(P + 1 - i))), LambdaRule::geometric};
    };
    if (!l1 || sorted.empty()) {
        for (std::size_t i = 1; i <= P; ++i) out.push_back(inside(i));
        return out;
    }
    const std::size_t m = sorted.size();
    std::vector<float> taken;
    for (std::size_t i = 1; i <= P; ++i) {
        const std::size_t k = i * (m - 1) / (P + 1);
        if (!taken.empty() && sorted[k] == taken.back()) continue;
        taken.push_back(sorted[k]);
        out.push_back({sorted[k], LambdaRule::quantile});
    }
    // Fewer distinct candidates than runs: the rest are points of the bracket not yet taken.
    for (std::size_t i = 1; out.size() < P && i <= 2 * P + 2; ++i) {
        const LambdaChoice c = inside(i);
        if (!(c.lambda > low && c.lambda < up)) continue;
        bool seen = false;
        for (const LambdaChoice& o : out) seen = seen || o.lambda == c.lambda;
        if (!seen) out.push_back(c);
    }
    while (out.size() < P) out.push_back(out.empty() ? inside(1) : out.back());  // a degenerate bracket
    std::sort(out.begin(), out.end(), [](const LambdaChoice& a, const LambdaChoice& b) { return a.lambda < b.lambda; });
    return out;
}

// ---- options -------------------------------------------------------------------------------------

namespace {

// Algorithm 2 when the band has one target per weight layer (a model with one weight layer and
// one target is Algorithm 1).
bool per_layer_search(const SearchOptions& o) { return o.train.stop.targets.size() > 1; }

}  // namespace

void SearchOptions::validate(const ModelSpec& spec) const {
    if (train.stop.targets.empty())
        throw Error("a lambda search needs a target: a total NNZ, one NNZ per weight layer, or a density");
    TrainOptions t = train;
    t.lambdas = {0.0f};
    t.validate(spec);  // the band, lr, budget, weight decay
    const std::size_t n_layers = spec.n_weight_layers();
    const bool per_layer = per_layer_search(*this);
    if (!lambda0.empty()) {
        if (lambda0.size() != 1 && !(per_layer && lambda0.size() == n_layers))
            throw Error("lambda0: got " + std::to_string(lambda0.size()) + " values; give one" +
                        (per_layer ? ", or one per weight layer (" + std::to_string(n_layers) + ")"
                                   : std::string(" (a single-lambda search)")));
        for (float l : lambda0)
            if (!(std::isfinite(l) && l > 0.0f))
                throw Error("lambda0 " + std::to_string(l) + " must be positive and finite");
    }
    if (!(std::isfinite(lambda1) && lambda1 > 0.0f))
        throw Error("lambda1 " + std::to_string(lambda1) + " must be positive and finite");
    if (strategy != SearchStrategy::adaptive && max_outer < 2)
        throw Error("max_outer " + std::to_string(max_outer) +
                    " is too small: the search needs at least its two starting runs");
    const int n_ranks = train.communicator.size();
    if (ranks_per_run > static_cast<std::size_t>(n_ranks) || (ranks_per_run > 0 && n_ranks % static_cast<int>(ranks_per_run) != 0))
        throw Error("ranks per run " + std::to_string(ranks_per_run) + " must divide the " + std::to_string(n_ranks) +
                    " ranks of the search (0: all of them)");
    const bool one_run = strategy == SearchStrategy::adaptive || train.method.method == Method::gmp;
    if (!one_run && ranks_per_run > 0 && static_cast<std::size_t>(n_ranks) / ranks_per_run > 1 && !resume_path.empty())
        throw Error("a parallel search (" + std::to_string(static_cast<std::size_t>(n_ranks) / ranks_per_run) +
                    " runs per round) cannot be resumed from a checkpoint: resume it with ranks per run = all ranks");
    if (strategy == SearchStrategy::adaptive) {
        if (!(std::isfinite(adapt_rate) && adapt_rate >= 0.0))
            throw Error("adapt_rate " + std::to_string(adapt_rate) + " must be finite and >= 0 (0: the rule's default)");
    }
}

LambdaSearch::LambdaSearch(SearchOptions options) : options_(std::move(options)) {}

// ---- the computed starting bracket ---------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<float> inf_norms(const std::vector<float>& g, const ParamLayout& layout) {
    std::vector<float> out;
    for (const ParamSegment& s : layout.segments) {
        float m = 0.0f;
        for (std::size_t i = 0; i < s.n_weights; ++i) m = std::max(m, std::fabs(g[s.weight_offset + i]));
        out.push_back(m);
    }
    return out;
}

// The output bias that minimizes the loss when every weight is 0 (the network then outputs its
// last bias for every input): the target mean (MSE) or the log class frequencies (cross-entropy).
std::vector<float> fitted_output_bias(const Dataset& d, Loss loss) {
    std::vector<double> acc(d.n_outputs, 0.0);
    if (loss == Loss::mse) {
        for (std::size_t r = 0; r < d.n_samples; ++r)
            for (std::size_t c = 0; c < d.n_outputs; ++c) acc[c] += d.y[r * d.n_outputs + c];
        std::vector<float> b(d.n_outputs);
        for (std::size_t c = 0; c < d.n_outputs; ++c) b[c] = static_cast<float>(acc[c] / static_cast<double>(d.n_samples));
        return b;
    }
    for (std::int32_t label : d.labels) acc[static_cast<std::size_t>(label)] += 1.0;
    std::vector<float> b(d.n_outputs);
    for (std::size_t c = 0; c < d.n_outputs; ++c)
        b[c] = static_cast<float>(std::log(std::max(acc[c], 1e-3) / static_cast<double>(d.n_samples)));
    return b;
}

// `rows` evenly spaced rows of d (row floor(k n / rows) for k < rows), or d itself when rows is 0
// or at least its size.
const Dataset& spaced_rows(const Dataset& d, std::size_t rows, Dataset& storage) {
    if (rows == 0 || rows >= d.n_samples) return d;
    storage = Dataset{};
    storage.name = d.name + " (" + std::to_string(rows) + " evenly spaced rows)";
    storage.task = d.task;
    storage.n_samples = rows;
    storage.n_features = d.n_features;
    storage.n_outputs = d.n_outputs;
    storage.x.reserve(rows * d.n_features);
    for (std::size_t k = 0; k < rows; ++k) {
        const std::size_t r = static_cast<std::size_t>((static_cast<unsigned __int128>(k) * d.n_samples) / rows);
        storage.x.insert(storage.x.end(), d.x.begin() + static_cast<std::ptrdiff_t>(r * d.n_features),
                         d.x.begin() + static_cast<std::ptrdiff_t>((r + 1) * d.n_features));
        if (!d.y.empty())
            storage.y.insert(storage.y.end(), d.y.begin() + static_cast<std::ptrdiff_t>(r * d.n_outputs),
                             d.y.begin() + static_cast<std::ptrdiff_t>((r + 1) * d.n_outputs));
        if (!d.labels.empty()) storage.labels.push_back(d.labels[r]);
    }
    return storage;
}

std::vector<float> lambda_max_on(Engine& engine, const Model& init, const Dataset& data, Loss loss,
                                 std::size_t chunk) {
    const ParamLayout& layout = init.layout();
    Model zero = init;
    for (std::size_t l = 0; l < zero.n_weight_layers(); ++l)
        std::fill_n(zero.weight(l), layout.segments[l].n_weights, 0.0f);
    const std::vector<float> b = fitted_output_bias(data, loss);
    const std::size_t last = zero.n_weight_layers() - 1;
    std::copy(b.begin(), b.end(), zero.bias(last));
    engine.set_params(zero.slab());
    std::vector<float> lmax = inf_norms(engine.gradient(data, chunk), layout);
    if (std::any_of(lmax.begin(), lmax.end(), [](float v) { return !(v > 0.0f); })) {
        engine.set_params(init.slab());
        const std::vector<float> at_init = inf_norms(engine.gradient(data, chunk), layout);
        for (std::size_t l = 0; l < lmax.size(); ++l)
            if (!(lmax[l] > 0.0f)) lmax[l] = at_init[l];
    }
    for (float& v : lmax)
        if (!(v > 0.0f) || !std::isfinite(v)) v = 1.0f;  // a dead layer: any positive start will do
    return lmax;
}

// How close a run came to the band: (layers in band, summed relative distance); larger first
// component, then smaller second, is closer.
std::pair<std::size_t, double> closeness(const StopRule& rule, const std::vector<std::size_t>& nnz) {
    auto rel = [](double n, double t) { return std::fabs(n - t) / t; };
    if (rule.targets.size() == 1) {
        std::size_t total = 0;
        for (auto n : nnz) total += n;
        const double d = rel(static_cast<double>(total), static_cast<double>(rule.targets[0]));
        return {in_band(total, rule.targets[0], rule.tolerance) ? 1 : 0, d};
    }
    std::size_t hits = 0;
    double sum = 0.0;
    for (std::size_t l = 0; l < rule.targets.size() && l < nnz.size(); ++l) {
        sum += rel(static_cast<double>(nnz[l]), static_cast<double>(rule.targets[l]));
        hits += in_band(nnz[l], rule.targets[l], rule.tolerance);
    }
    return {hits, sum};
}

bool closer(const std::pair<std::size_t, double>& a, const std::pair<std::size_t, double>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
}

// The search's groups of weight layers: one group of all layers (Algorithm 1) or one per layer
// (Algorithm 2), each with its target.
struct Groups {
    std::vector<std::vector<std::size_t>> layers;
    std::vector<std::size_t> targets;
    std::vector<std::size_t> n_weights;

    std::size_t size() const { return layers.size(); }
    std::vector<float> expand(const std::vector<float>& group_lambdas, std::size_t n_layers) const {
        std::vector<float> out(n_layers, 0.0f);
        for (std::size_t j = 0; j < layers.size(); ++j)
            for (std::size_t l : layers[j]) out[l] = group_lambdas[j];
        return out;
    }
    std::size_t nnz_of(std::size_t j, const std::vector<std::size_t>& nnz) const {
        std::size_t n = 0;
        for (std::size_t l : layers[j]) n += nnz[l];
        return n;
    }
};

Groups make_groups(const ModelSpec& spec, const StopRule& rule) {
    const ParamLayout layout = ParamLayout::of(spec);
    Groups g;
    const std::size_t n_layers = layout.segments.size();
    if (rule.targets.size() == 1) {
        std::vector<std::size_t> all(n_layers);
        for (std::size_t l = 0; l < n_layers; ++l) all[l] = l;
        g.layers.push_back(all);
        g.targets.push_back(rule.targets[0]);
        g.n_weights.push_back(spec.n_weights());
    } else {
        for (std::size_t l = 0; l < n_layers; ++l) {
            g.layers.push_back({l});
            g.targets.push_back(rule.targets[l]);
            g.n_weights.push_back(layout.segments[l].n_weights);
        }
    }
    return g;
}

SearchIteration record_run(std::size_t index, const TrainResult& r, const std::vector<float>& lambdas,
                           LambdaRule rule, const std::vector<LambdaRule>& layer_rules,
                           const std::vector<std::size_t>& n_candidates) {
    SearchIteration it;
    it.index = index;
    it.lambdas = lambdas;
    it.rule = rule;
    it.layer_rules = layer_rules;
    it.n_candidates = n_candidates;
    it.nnz = r.nnz;
    it.steps = r.steps;
    it.finetune_steps = r.finetune_steps;
    it.in_band = r.stopped_in_band;
    it.train_loss = r.train_eval.loss;
    it.test_loss = r.test_eval.loss;
    it.test_accuracy = r.test_eval.accuracy;
    it.seconds = r.wall_seconds;
    return it;
}

// The landing (docs/method.md §8.5): the count each group keeps when a run above the band is
// trimmed to the total of the targets. The excess n - sum t is taken from the groups above their
// targets, in proportion to how far above they are; the counts sum to the targets' total.
std::vector<std::size_t> trim_counts(const std::vector<std::size_t>& counts, const std::vector<std::size_t>& targets) {
    std::size_t n = 0, t = 0, over = 0;
    for (std::size_t j = 0; j < counts.size(); ++j) {
        n += counts[j];
        t += targets[j];
        if (counts[j] > targets[j]) over += counts[j] - targets[j];
    }
    std::vector<std::size_t> keep = counts;
    if (n <= t || over == 0) return keep;
    const std::size_t excess = n - t;  // <= over
    std::size_t removed = 0;
    for (std::size_t j = 0; j < counts.size(); ++j) {
        if (counts[j] <= targets[j]) continue;
        const auto cut = static_cast<std::size_t>(static_cast<double>(counts[j] - targets[j]) *
                                                  static_cast<double>(excess) / static_cast<double>(over));
        keep[j] -= cut;
        removed += cut;
    }
    while (removed < excess) {  // the rounding: from the group furthest above its target
        std::size_t worst = 0;
        long long worst_gap = std::numeric_limits<long long>::min();
        for (std::size_t j = 0; j < keep.size(); ++j) {
            const long long gap = static_cast<long long>(keep[j]) - static_cast<long long>(targets[j]);
            if (keep[j] > 0 && gap > worst_gap) worst_gap = gap, worst = j;
        }
        --keep[worst];
        ++removed;
    }
    return keep;
}

// `slab` with each group's weights cut to its largest `keep[j]` magnitudes (ties: the first in
// slab order stay).
std::vector<float> trim_to(std::vector<float> slab, const ModelSpec& spec, const Groups& groups,
                           const std::vector<std::size_t>& keep) {
    const ParamLayout layout = ParamLayout::of(spec);
    for (std::size_t j = 0; j < groups.size(); ++j) {
        std::vector<std::pair<float, std::size_t>> alive;  // (|w|, slab index)
        for (std::size_t l : groups.layers[j]) {
            const ParamSegment& seg = layout.segments[l];
            for (std::size_t i = 0; i < seg.n_weights; ++i)
                if (slab[seg.weight_offset + i] != 0.0f) alive.push_back({std::fabs(slab[seg.weight_offset + i]), seg.weight_offset + i});
        }
        if (alive.size() <= keep[j]) continue;
        auto larger = [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; };
        std::nth_element(alive.begin(), alive.begin() + static_cast<std::ptrdiff_t>(keep[j]), alive.end(), larger);
        for (std::size_t k = keep[j]; k < alive.size(); ++k) slab[alive[k].second] = 0.0f;
    }
    return slab;
}

// The rule shown for an iteration: the common rule of its groups, or "median" when they differ
// (the per-layer rules are listed separately).
LambdaRule summary_rule(const std::vector<LambdaRule>& rules) {
    for (LambdaRule r : rules)
        if (r != rules.front()) return LambdaRule::median;
    return rules.empty() ? LambdaRule::median : rules.front();
}

// The next lambdas of Algorithms 1 and 2 (into state.lambdas, rules, n_candidates), from the
// history and the gradient of the network the last run returned (still on the engine).
void next_lambdas(Engine& engine, const SearchOptions& o, const Groups& groups, const Dataset& train_set,
                  SearchLoopState& state) {
    const std::size_t n_groups = groups.size();
    std::vector<Bracket> brackets(n_groups);
    std::vector<CandidateQuery> queries;
    std::vector<std::size_t> query_of(n_groups, n_groups);
    for (std::size_t j = 0; j < n_groups; ++j) {
        brackets[j] = bracket_from_history(state.history[j], groups.targets[j]);
        if (brackets[j].has_up) {
            query_of[j] = queries.size();
            queries.push_back({groups.layers[j], brackets[j].lambda_low, brackets[j].lambda_up});
        }
    }
    // The candidates |dL/dw| bracket lambda only for the l1 penalty; the other methods take
    // the bracket's midpoint (or expand it).
    if (o.train.method.method != Method::l1) queries.clear();
    const std::vector<CandidateSet> cands =
        queries.empty() ? std::vector<CandidateSet>{} : engine.gradient_candidates(train_set, o.train.eval_batch, queries);
    state.n_candidates.assign(n_groups, 0);
    for (std::size_t j = 0; j < n_groups; ++j) {
        const CandidateSet c = query_of[j] < cands.size() ? cands[query_of[j]] : CandidateSet{};
        state.n_candidates[j] = c.count;
        float largest_j = 0.0f;
        for (const LambdaRecord& h : state.history[j]) largest_j = std::max(largest_j, h.lambda);
        LambdaChoice choice = next_lambda(brackets[j], c, largest_j);
        if (o.bisect_stalls && choice.rule == LambdaRule::median && state.rules[j] == LambdaRule::median &&
            bracket_stalled(state.history[j], groups.targets[j]))
            choice = {(brackets[j].lambda_low + brackets[j].lambda_up) / 2.0f, LambdaRule::bisect};
        if (o.train.method.method != Method::l1 && choice.rule == LambdaRule::midpoint) {
            // No candidate rule for these penalties, and lambda spans decades: bisect in log.
            const Bracket& b = brackets[j];
            choice = {b.lambda_low > 0.0f ? std::sqrt(b.lambda_low * b.lambda_up) : b.lambda_up / 10.0f,
                      LambdaRule::geometric};
        }
        state.lambdas[j] = choice.lambda;
        state.rules[j] = choice.rule;
    }
}

// Reads the checkpoint to resume from and checks it against this search: the setup entries in
// order, the initialization bit for bit, the sizes of what the loop will index.
SearchCheckpointData resume_checkpoint(const std::string& path, const SetupList& setup, const Model& init,
                                       std::size_t n_groups, std::size_t max_outer) {
    SearchCheckpointData c = load_search_checkpoint(path);
    check_same_setup(path, c.setup, setup);
    const std::vector<float>& slab = init.slab();
    if (c.init_slab.size() != slab.size() ||
        std::memcmp(c.init_slab.data(), slab.data(), slab.size() * sizeof(float)) != 0)
        throw Error("cannot resume from '" + path + "': the initialization differs from the checkpoint's");
    const std::string bad = "search checkpoint '" + path + "': malformed state (";
    if (c.start.size() != n_groups)
        throw Error(bad + std::to_string(c.start.size()) + " starting lambdas for " + std::to_string(n_groups) + " groups)");
    if (c.has_loop) {
        const SearchLoopState& s = c.loop;
        if (s.lambdas.size() != n_groups || s.rules.size() != n_groups || s.history.size() != n_groups ||
            (!s.n_candidates.empty() && s.n_candidates.size() != n_groups))
            throw Error(bad + "the loop's lambdas, rules or history do not have " + std::to_string(n_groups) + " groups)");
        if (s.have_best && s.best.model.slab().size() != slab.size())
            throw Error(bad + "the best model has " + std::to_string(s.best.model.slab().size()) + " parameters, not " +
                        std::to_string(slab.size()) + ")");
        if (s.have_warm_from && s.warm_from.size() != slab.size())
            throw Error(bad + "the warm start has " + std::to_string(s.warm_from.size()) + " parameters, not " +
                        std::to_string(slab.size()) + ")");
        if (s.have_best && c.best_iteration >= c.iterations.size())
            throw Error(bad + "best iteration " + std::to_string(c.best_iteration) + " of " +
                        std::to_string(c.iterations.size()) + ")");
        // Every finished run left one iteration, one history entry per group and a best run.
        bool counts = s.next_run == c.iterations.size() && s.have_best == (s.next_run > 0) &&
                      (s.finished || s.next_run < max_outer);
        for (const auto& h : s.history) counts = counts && h.size() == s.next_run;
        if (!counts)
            throw Error(bad + "next run " + std::to_string(s.next_run) + " after " + std::to_string(c.iterations.size()) +
                        " recorded runs" + (s.have_best ? "" : ", no best run") + ")");
    }
    return c;
}

// The loop's state from a checked checkpoint, and the result so far into `result`.
SearchLoopState restore_loop(SearchCheckpointData c, const ModelSpec& spec, SearchResult& result) {
    SearchLoopState s = std::move(c.loop);
    if (s.have_best) {
        Model m(spec);
        m.slab() = std::move(s.best.model.slab());
        s.best.model = std::move(m);
    }
    result.iterations = std::move(c.iterations);
    result.total_steps = c.total_steps;
    result.best_iteration = c.best_iteration;
    result.reached = c.reached;
    result.resumed_runs = result.iterations.size();
    return s;
}

// ---- the parallel search ---------------------------------------------------------------------------

// A finished run as the doubles every rank sends in the round's gather (NaN and infinities
// travel as they are): [valid, lambdas (n_layers), nnz (n_layers), steps, finetune_steps,
// epochs_started, in band, interrupted, train loss, train accuracy, test loss, test accuracy,
// seconds, samples per second].
constexpr std::size_t kRecordScalars = 11;

std::vector<double> encode_run(const TrainResult* r, std::size_t n_layers) {
    std::vector<double> v(1 + 2 * n_layers + kRecordScalars, 0.0);
    if (!r) return v;
    v[0] = 1.0;
    for (std::size_t l = 0; l < n_layers; ++l) {
        v[1 + l] = r->lambdas[l];
        v[1 + n_layers + l] = static_cast<double>(r->nnz[l]);
    }
    double* t = v.data() + 1 + 2 * n_layers;
    t[0] = static_cast<double>(r->steps);
    t[1] = static_cast<double>(r->finetune_steps);
    t[2] = static_cast<double>(r->epochs_started);
    t[3] = r->stopped_in_band ? 1.0 : 0.0;
    t[4] = r->interrupted ? 1.0 : 0.0;
    t[5] = r->train_eval.loss;
    t[6] = r->train_eval.accuracy;
    t[7] = r->test_eval.loss;
    t[8] = r->test_eval.accuracy;
    t[9] = r->wall_seconds;
    t[10] = r->samples_per_second;
    return v;
}

// The run a record describes, without its model (filled in when it is needed).
TrainResult decode_run(const double* v, std::size_t n_layers, const TrainOptions& o, const std::string& device) {
    TrainResult r;
    r.device = device;
    r.method = o.method.method;
    for (std::size_t l = 0; l < n_layers; ++l) {
        r.lambdas.push_back(static_cast<float>(v[1 + l]));
        r.nnz.push_back(static_cast<std::size_t>(v[1 + n_layers + l]));
    }
    const double* t = v + 1 + 2 * n_layers;
    r.steps = static_cast<std::size_t>(t[0]);
    r.finetune_steps = static_cast<std::size_t>(t[1]);
    r.epochs_started = static_cast<std::size_t>(t[2]);
    r.stopped_in_band = t[3] != 0.0;
    r.interrupted = t[4] != 0.0;
    r.train_eval.loss = t[5];
    r.train_eval.accuracy = t[6];
    r.test_eval.loss = t[7];
    r.test_eval.accuracy = t[8];
    r.wall_seconds = t[9];
    r.samples_per_second = t[10];
    return r;
}

// The parameters of the run trained by the group led by world rank `owner`, on every rank.
std::vector<float> share_model(const Communicator& world, int owner, const std::vector<float>* mine,
                               std::size_t slab_size) {
    std::vector<float> slab(slab_size, 0.0f);
    if (world.rank() == owner) slab = *mine;
    world.collective()->broadcast(slab.data(), slab.size() * sizeof(float), owner, "the model broadcast");
    return slab;
}

// The paper and warm strategies with P groups of `per_run` ranks: each round trains P lambdas at
// once (one per group), then every rank learns every run's record (one gather), the best run's
// and the warm start's parameters come from their groups (broadcasts), and world rank 0 picks
// the next round's lambdas from the candidates of the round's densest run at or above the
// target (the bracket's lower end, as the serial search's run 1) and sends them to all.
TrainResult parallel_rounds(Engine& engine, const SearchOptions& o, const TrainOptions& base, const Communicator& world,
                            std::size_t P, std::size_t per_run, const Groups& groups, const Model& init,
                            const std::vector<float>& start, const Dataset& train_set, const Dataset* test_set,
                            SearchResult& result, const std::function<double()>& elapsed) {
    const ModelSpec& spec = init.spec();
    const std::size_t n_layers = spec.n_weight_layers();
    const std::size_t n_groups = groups.size();
    const std::size_t slab_size = init.slab().size();
    const std::size_t my_run = static_cast<std::size_t>(world.rank()) / per_run;
    const bool l1 = o.train.method.method == Method::l1;
    const std::string device = engine.device_name();

    // plan[i][j]: the lambda and rule of run i of the round for weight-layer group j.
    std::vector<std::vector<LambdaChoice>> plan(P, std::vector<LambdaChoice>(n_groups));
    std::vector<std::vector<std::size_t>> plan_candidates(P, std::vector<std::size_t>(n_groups, 0));
    for (std::size_t j = 0; j < n_groups; ++j) {
        plan[0][j] = {start[j], LambdaRule::lambda0};
        plan[1][j] = {o.lambda1, LambdaRule::lambda1};
        // P > 2: the others between lambda^(1) and lambda^(0), equally spaced in log scale.
        for (std::size_t i = 2; i < P; ++i) {
            const double t = static_cast<double>(i - 1) / static_cast<double>(P - 1);
            plan[i][j] = {static_cast<float>(std::exp((1.0 - t) * std::log(static_cast<double>(o.lambda1)) +
                                                      t * std::log(static_cast<double>(start[j])))),
                          LambdaRule::geometric};
        }
    }

    std::vector<std::vector<LambdaRecord>> history(n_groups);
    TrainResult best;
    bool have_best = false;
    std::pair<std::size_t, double> best_close{0, 0.0};
    std::vector<float> warm_from;
    double warm_score = std::numeric_limits<double>::infinity();
    TrainResult partial;
    std::size_t k = 0;  // runs so far
    for (std::size_t round = 0; k < o.max_outer; ++round) {
        const std::size_t n_this = std::min(P, o.max_outer - k);
        // This group's run (groups past n_this only take part in the collectives).
        std::optional<TrainResult> mine;
        if (my_run < n_this) {
            TrainOptions run_opt = base;
            std::vector<float> lam(n_groups);
            for (std::size_t j = 0; j < n_groups; ++j) lam[j] = plan[my_run][j].lambda;
            run_opt.lambdas = groups.expand(lam, n_layers);
            run_opt.finetune = o.finetune || o.train.finetune;
            if (round == 0 && my_run == 0 && !o.stop_run0) run_opt.stop = StopRule{};
            const bool warm_start = o.strategy == SearchStrategy::warm && !warm_from.empty();
            mine = run_training(engine, spec, warm_start ? warm_from : init.slab(), train_set, test_set, run_opt);
        }
        const std::vector<double> all = world.collective()->gather(encode_run(mine ? &*mine : nullptr, n_layers),
                                                                   "the gather of the round's runs");
        const std::size_t rec = 1 + 2 * n_layers + kRecordScalars;
        bool interrupted = false, in_band_any = false;
        std::optional<std::size_t> best_this, warm_this, densest_this;
        std::size_t densest_total = std::numeric_limits<std::size_t>::max();
        std::size_t target_total = 0;
        for (std::size_t t : groups.targets) target_total += t;
        std::vector<TrainResult> runs;
        for (std::size_t i = 0; i < n_this; ++i) {
            const double* v = all.data() + i * per_run * rec;  // the record of the group's first rank
            runs.push_back(decode_run(v, n_layers, o.train, device));
            interrupted = interrupted || runs.back().interrupted;
        }
        if (interrupted) {  // a stop request: the round is lost (the others are finished runs)
            result.interrupted = true;
            if (mine) partial = std::move(*mine);
            break;
        }
        for (std::size_t i = 0; i < n_this; ++i) {
            const TrainResult& r = runs[i];
            std::vector<LambdaRule> rules(n_groups);
            std::vector<std::size_t> cands(n_groups);
            for (std::size_t j = 0; j < n_groups; ++j) {
                rules[j] = plan[i][j].rule;
                cands[j] = plan_candidates[i][j];
            }
            SearchIteration it = record_run(k + i, r, r.lambdas, summary_rule(rules),
                                            n_groups > 1 ? rules : std::vector<LambdaRule>{},
                                            round == 0 ? std::vector<std::size_t>{} : cands);
            it.round = round;
            it.rank = static_cast<int>(i * per_run);
            result.total_steps += it.steps;
            it.total_steps = result.total_steps;
            it.elapsed_seconds = elapsed();
            result.iterations.push_back(it);
            for (std::size_t j = 0; j < n_groups; ++j)
                history[j].push_back({plan[i][j].lambda, groups.nnz_of(j, r.nnz)});
            const auto close = closeness(o.train.stop, r.nnz);
            if (!have_best || (r.stopped_in_band && !best.stopped_in_band) ||
                (r.stopped_in_band == best.stopped_in_band && closer(close, best_close))) {
                best_close = close;
                result.best_iteration = k + i;
                best = r;
                have_best = true;
                best_this = i;
            }
            in_band_any = in_band_any || r.stopped_in_band;
            bool dense_side = true;
            double score = 0.0;
            std::size_t total_nnz = 0;
            for (std::size_t j = 0; j < n_groups; ++j) {
                const std::size_t n = groups.nnz_of(j, r.nnz);
                dense_side = dense_side && n >= groups.targets[j];
                score += static_cast<double>(n) / static_cast<double>(groups.targets[j]);
                total_nnz += n;
            }
            if (o.strategy == SearchStrategy::warm && dense_side && score <= warm_score) {
                warm_score = score;
                warm_this = i;
            }
            if (total_nnz >= target_total && total_nnz < densest_total) {
                densest_total = total_nnz;
                densest_this = i;
            }
        }
        // The models that moved: the best run's and the warm start's, from their groups.
        if (best_this) {
            best.model = Model(spec);
            best.model.slab() = share_model(world, static_cast<int>(*best_this * per_run), mine ? &mine->model.slab() : nullptr,
                                            slab_size);
            best.alive = best.model.alive_units();
        }
        if (warm_this) warm_from = share_model(world, static_cast<int>(*warm_this * per_run),
                                               mine ? &mine->model.slab() : nullptr, slab_size);
        k += n_this;
        ++result.rounds;
        for (std::size_t i = result.iterations.size() - n_this; i < result.iterations.size(); ++i)
            if (o.on_iteration) o.on_iteration(result.iterations[i]);
        if (in_band_any) {
            result.reached = true;
            break;
        }
        if (k >= o.max_outer) break;

        // The next round: world rank 0 computes the candidates at the round's densest run on the
        // dense side (else its last run) and sends the plan to every rank.
        const std::size_t source = densest_this ? *densest_this : n_this - 1;
        const std::vector<float> at = share_model(world, static_cast<int>(source * per_run),
                                                  mine ? &mine->model.slab() : nullptr, slab_size);
        std::vector<double> packed(3 * P * n_groups, 0.0);  // per run and group: lambda, rule, candidates
        if (world.rank() == 0) {
            std::vector<float> grad;
            const ParamLayout& layout = init.layout();
            for (std::size_t j = 0; j < n_groups; ++j) {
                const Bracket b = bracket_from_history(history[j], groups.targets[j]);
                std::vector<float> cands;
                if (l1 && b.has_up) {
                    if (grad.empty()) {
                        engine.set_params(at);
                        grad = engine.gradient(train_set, o.train.eval_batch);
                    }
                    for (std::size_t l : groups.layers[j]) {
                        const ParamSegment& seg = layout.segments[l];
                        for (std::size_t w = 0; w < seg.n_weights; ++w) {
                            const float a = std::fabs(grad[seg.weight_offset + w]);
                            if (a > b.lambda_low && a < b.lambda_up) cands.push_back(a);  // NaN fails both
                        }
                    }
                    std::sort(cands.begin(), cands.end());
                }
                float largest = 0.0f;
                for (const LambdaRecord& h : history[j]) largest = std::max(largest, h.lambda);
                const std::vector<LambdaChoice> next = next_lambdas_parallel(b, cands, largest, P, l1);
                for (std::size_t i = 0; i < P; ++i) {
                    double* p = packed.data() + 3 * (i * n_groups + j);
                    p[0] = next[i].lambda;
                    p[1] = static_cast<double>(static_cast<int>(next[i].rule));
                    p[2] = static_cast<double>(cands.size());
                }
            }
        }
        world.collective()->broadcast(packed.data(), packed.size() * sizeof(double), 0, "the broadcast of the next lambdas");
        for (std::size_t i = 0; i < P; ++i)
            for (std::size_t j = 0; j < n_groups; ++j) {
                const double* p = packed.data() + 3 * (i * n_groups + j);
                plan[i][j] = {static_cast<float>(p[0]), static_cast<LambdaRule>(static_cast<int>(p[1]))};
                plan_candidates[i][j] = static_cast<std::size_t>(p[2]);
            }
    }
    if (!have_best) return partial;
    return best;
}

}  // namespace

std::vector<float> compute_lambda_max(const Model& init, const Dataset& train_set, const Device& device,
                                      std::optional<Loss> loss, std::size_t rows) {
    check_fits(init.spec(), train_set);
    const Loss l = resolve_loss(loss, train_set);
    auto engine = make_engine(device, init.spec(), l);
    Dataset storage;
    return lambda_max_on(*engine, init, spaced_rows(train_set, rows, storage), l, 4096);
}

// ---- the search ----------------------------------------------------------------------------------

SearchResult LambdaSearch::run(const Model& init, const Dataset& train_set, const Dataset* test_set) const {
    const auto t_start = Clock::now();
    const SearchOptions& o = options_;
    const ModelSpec& spec = init.spec();
    o.validate(spec);
    check_fits(spec, train_set);
    if (test_set) check_fits(spec, *test_set);
    const Loss loss = resolve_loss(o.train.loss, train_set);
    const std::size_t n_layers = spec.n_weight_layers();
    const Groups groups = make_groups(spec, o.train.stop);
    const std::size_t n_groups = groups.size();

    // A checkpoint to continue from: checked against this search before any work.
    const bool checkpointing = !o.checkpoint_path.empty() || !o.resume_path.empty();
    const SetupList setup = checkpointing ? describe_search_setup(o, init, train_set, test_set) : SetupList{};
    std::optional<SearchCheckpointData> resumed;
    if (!o.resume_path.empty()) resumed = resume_checkpoint(o.resume_path, setup, init, n_groups, o.max_outer);

    auto engine = make_engine(o.train.device, spec, loss);

    // The groups of ranks (SearchOptions::ranks_per_run): P runs per round, each trained
    // data-parallel on its group. The one-run strategies train on one group of all ranks.
    const Communicator& world = o.train.communicator;
    const bool one_run = o.strategy == SearchStrategy::adaptive || o.train.method.method == Method::gmp;
    const std::size_t n_ranks = static_cast<std::size_t>(world.size());
    const std::size_t per_run = one_run || o.ranks_per_run == 0 ? n_ranks : o.ranks_per_run;
    const std::size_t P = n_ranks / per_run;
    const Communicator group = P > 1 ? world.split(world.rank() / static_cast<int>(per_run)) : world;
    engine->set_collective(group.collective());
    TrainOptions base = o.train;  // every run's options start from these
    base.communicator = group;
    const bool l1 = base.method.method == Method::l1;
    base.method.l1.form = search_l1_form(o);
    const bool lazy = base.method.l1.form == L1Form::lazy;

    SearchResult result;
    result.strategy = o.strategy;
    result.l1_form = base.method.l1.form;
    result.parallel_runs = P;
    // Search time before the resume (a resumed paper or warm search).
    const double elapsed_before = resumed && resumed->has_loop ? resumed->elapsed_seconds : 0.0;
    auto elapsed = [&] { return elapsed_before + seconds_since(t_start); };

    // lambda^(0) per group: given, or computed (the largest layer value for a single lambda).
    std::vector<float> start(n_groups);
    std::vector<float> lmax;  // per weight layer, when computed
    if (resumed) {
        start = resumed->start;  // as computed the first time
        result.lambda_start_computed = resumed->start_computed;
        result.lambda_start_rows = resumed->start_rows;
    } else if (o.lambda0.empty()) {
        std::size_t rows = o.start_rows;
        if (rows == 0 && o.strategy == SearchStrategy::adaptive) rows = SearchOptions::kAdaptiveStartRows;
        Dataset storage;
        const Dataset& start_set = spaced_rows(train_set, rows, storage);
        lmax = lambda_max_on(*engine, init, start_set, loss, o.train.eval_batch);
        result.lambda_start_rows = start_set.n_samples;
        for (std::size_t j = 0; j < n_groups; ++j) {
            float m = 0.0f;
            for (std::size_t l : groups.layers[j]) m = std::max(m, lmax[l]);
            start[j] = m;
        }
        result.lambda_start_computed = true;
    } else {
        for (std::size_t j = 0; j < n_groups; ++j) start[j] = o.lambda0.size() == 1 ? o.lambda0[0] : o.lambda0[j];
    }
    result.lambda_start = groups.expand(start, n_layers);

    auto finish = [&](TrainResult best_run) {
        result.run = std::move(best_run);
        result.interrupted = result.interrupted || result.run.interrupted;
        result.lambda_final = result.run.lambdas;
        result.outer_iterations = o.strategy == SearchStrategy::adaptive ? 1 : result.iterations.size();
        if (P == 1) result.rounds = result.outer_iterations;
        result.wall_seconds = elapsed();
        return result;
    };
    // An iteration joins the result, then (notify) the caller hears of it.
    auto record = [&](SearchIteration it) {
        result.total_steps += it.steps;
        it.total_steps = result.total_steps;
        it.elapsed_seconds = elapsed();
        result.iterations.push_back(it);
    };
    auto notify = [&] {
        if (o.on_iteration) o.on_iteration(result.iterations.back());
    };
    auto emit = [&](SearchIteration it) {
        record(std::move(it));
        notify();
    };
    // The checkpoint: the result so far and, for paper and warm, the loop's state.
    // World rank 0 writes it; a parallel search (P > 1) writes none (its rounds do not resume).
    auto write_checkpoint = [&](const SearchLoopState* loop) {
        if (o.checkpoint_path.empty() || world.rank() != 0 || P > 1) return;
        SearchCheckpointData c;
        c.setup = setup;
        c.init_slab = init.slab();
        c.strategy = o.strategy;
        c.start = start;
        c.start_computed = result.lambda_start_computed;
        c.start_rows = result.lambda_start_rows;
        c.iterations = result.iterations;
        c.total_steps = result.total_steps;
        c.best_iteration = result.best_iteration;
        c.reached = result.reached;
        c.elapsed_seconds = elapsed();
        c.has_loop = loop != nullptr;
        if (loop) c.loop = *loop;
        try {
            save_search_checkpoint(o.checkpoint_path, c);
            result.checkpoint_error.clear();
        } catch (const Error& e) {
            result.checkpoint_error = e.what();  // the search goes on; the caller reports it
        }
    };
    // gmp and adaptive are one run each: their checkpoint records the setup only, and a resume
    // starts them again.
    if (o.train.method.method == Method::gmp || o.strategy == SearchStrategy::adaptive) write_checkpoint(nullptr);

    // ---- gmp: the pruning schedule reaches the targets itself; one run ------------------------
    if (o.train.method.method == Method::gmp) {
        TrainOptions run_opt = base;
        run_opt.lambdas = std::vector<float>(n_layers, 0.0f);
        TrainResult r = run_training(*engine, spec, init.slab(), train_set, test_set, run_opt);
        // run_training judges the final counts against the band (StopRule::holds).
        emit(record_run(0, r, r.lambdas, LambdaRule::fixed, {}, {}));
        result.reached = r.stopped_in_band;
        result.best_iteration = 0;
        return finish(std::move(r));
    }

    // ---- adaptive: one run, lambda steered every adapt_interval steps --------------------------
    //
    // The relative rule (docs/method.md §8.5) runs in four phases over the run's budget T:
    //   warm-up  [0, B)   the starting lambda (lambda^(1) unless lambda0 is given), no steering;
    //   ramp     [B, R)   each group's count steered along the cubic of gradual magnitude pruning
    //                     from its count at B to its target (B = R/6, R = T/2 by default, 3T/4
    //                     under the lazy l1 form);
    //   approach [R, D)   the band armed, the count steered to halve its distance every interval;
    //   landing  D = R + T/10: a count still above the band is trimmed to the target by
    //                     magnitude within each group. A count that fell through the band (once
    //                     it is armed, or still below it at D) lands from the last parameters
    //                     polled above the band, trimmed the same way: units that died do not
    //                     regrow under the l1 step (their weights get no gradient).
    // A run that meets the band (by a step or by the landing) trains the rest of its budget with
    // that pattern fixed (SearchOptions::finetune), at least 40% of the budget by default: the
    // pruned network recovers from the penalty's shrinkage there (gradual magnitude pruning, which
    // does not shrink, fine-tunes its last 25%).
    //
    // Under the lazy l1 form (R = 3T/4 by default) the threshold alone leaves most weights
    // nonzero through the ramp (its level lr lambda is below most |z|), so at every update from
    // B to D each group above the schedule's count is also trimmed to it by |z|, the cut weights
    // zeroed in w and in z (trim_to_schedule): the network thins gradually, as under gradual
    // magnitude pruning, and the threshold decides which cut weights regrow. The landing trims,
    // and the fine-tuning starts from, the kept weights' accumulated values z (lazy_refit): the
    // kept weights keep none of the threshold's shrinkage.
    //
    // Mini-batch noise: the NNZ of a convolutional network moves by thousands between single
    // steps (small weights flicker in and out), so the count an update reacts to is the settled
    // count (weights above one step's shrinkage lr lambda_l), the mean of the polls over its
    // interval (polled every K/4 steps), extrapolated to the next update with the previous
    // interval's mean. At a fixed lambda the count
    // lags lambda by hundreds of steps; comparing the schedule with the extrapolated count keeps
    // the rule from raising lambda while the count already falls fast.
    //
    // With one total target and Allocation::magnitude (l1), every layer is its own group: at B
    // the total is shared among the layers as global magnitude pruning would share it
    // (magnitude_allocation of the warmed-up weights), and each layer's lambda is steered to its
    // share, so no layer is starved by a gradient scale smaller than the others'.
    // The sparsity rule is docs/method.md §7's, on the current count, from step 0.
    if (o.strategy == SearchStrategy::adaptive) {
        const bool relative = o.adapt_rule == AdaptRule::relative;
        const std::size_t budget = step_budget(o.train, train_set.n_samples);
        const std::size_t K = o.adapt_interval ? o.adapt_interval : std::max<std::size_t>(1, budget / 100);
        const std::size_t R =
            std::max<std::size_t>(1, o.adapt_ramp ? o.adapt_ramp : (lazy ? budget * 3 / 4 : budget / 2));
        const std::size_t B = relative ? R / 6 : 0;
        const std::size_t D = relative ? std::min(budget, R + budget / 10) : budget;
        const std::size_t poll = std::max<std::size_t>(1, K / 4);
        result.adapt_ramp = R;
        result.adapt_interval = K;
        result.landing_step = relative ? D : 0;

        const bool by_magnitude =
            o.allocation == Allocation::magnitude || (o.allocation == Allocation::automatic && !lazy);
        const bool allocate = by_magnitude && l1 && o.train.stop.targets.size() == 1 && n_layers > 1;
        result.allocation = allocate ? Allocation::magnitude : Allocation::uniform;
        Groups steer = groups;
        std::vector<float> group_start = start;  // the computed or given start, per steering group
        if (allocate) {  // one group per layer; the targets are set at B
            steer.layers.clear();
            steer.targets.assign(n_layers, 0);
            steer.n_weights.clear();
            group_start.clear();
            const ParamLayout layout = ParamLayout::of(spec);
            for (std::size_t l = 0; l < n_layers; ++l) {
                steer.layers.push_back({l});
                steer.n_weights.push_back(layout.segments[l].n_weights);
                group_start.push_back(o.lambda0.empty() ? start[0] : o.lambda0[0]);
            }
        }
        const std::size_t n_steer = steer.size();
        // Warm-up at lambda^(0) when given, else lambda^(1); from B each group at lambda^(0)
        // when given, else sqrt(lambda^(1) lambda_computed).
        std::vector<float> lam(n_steer);
        for (std::size_t j = 0; j < n_steer; ++j)
            lam[j] = o.lambda0.empty() ? (B > 0 ? o.lambda1 : std::sqrt(o.lambda1 * group_start[j])) : group_start[j];
        const double rate = o.adapt_rate > 0 ? o.adapt_rate : (relative ? 0.5 : 1.0);
        constexpr double kApproach = 0.5;  // the distance to the target left after one interval
        const float lambda_floor = 1e-12f, lambda_ceiling = 1e3f;

        std::vector<double> from_count(n_steer, 0.0), sum(n_steer, 0.0), prev_mean;
        std::vector<float> dense_side;  // the latest parameters above the band (the landing's fallback)
        std::vector<std::size_t> dense_side_nnz;
        std::size_t n_polls = 0, next_update = B + K, last_emit_step = 0, index = 0;
        bool started = B == 0, armed = !relative;
        LambdaRule current_rule = B > 0 ? (o.lambda0.empty() ? LambdaRule::lambda1 : LambdaRule::lambda0)
                                        : LambdaRule::adaptive;
        auto t_interval = Clock::now();
        auto emit_interval = [&](const EngineStatus& st) {
            SearchIteration it;
            it.index = index++;
            it.lambdas = steer.expand(lam, n_layers);
            it.rule = current_rule;
            it.nnz = st.nnz;
            it.steps = st.steps_run - last_emit_step;
            last_emit_step = st.steps_run;
            it.train_loss = std::numeric_limits<double>::quiet_NaN();
            it.test_loss = std::numeric_limits<double>::quiet_NaN();
            it.seconds = seconds_since(t_interval);
            t_interval = Clock::now();
            emit(it);
        };
        auto set_targets = [&](const std::vector<float>& params, const std::vector<std::size_t>& nnz) {
            if (allocate) {
                Model m(spec);
                m.slab() = params;
                steer.targets = magnitude_allocation(m, o.train.stop.targets[0]);
                result.layer_targets = steer.targets;
            }
            for (std::size_t j = 0; j < n_steer; ++j) from_count[j] = static_cast<double>(steer.nnz_of(j, nnz));
        };
        if (started) {
            set_targets(init.slab(), init.nnz());
            if (allocate && o.lambda0.empty())
                for (std::size_t j = 0; j < n_steer; ++j) lam[j] = std::sqrt(o.lambda1 * group_start[j]);
        }

        // The cubic schedule's count for group j at step `at` (B <= at): the target from R on.
        auto scheduled = [&](std::size_t j, double at) {
            const double t = static_cast<double>(steer.targets[j]);
            if (at >= static_cast<double>(R)) return t;
            const double left = 1.0 - (at - static_cast<double>(B)) / static_cast<double>(R - B);
            return t + (from_count[j] - t) * left * left * left;
        };
        // The lazy form's gradual trim: a group above the schedule's count at `step` keeps its
        // largest accumulated weights |z| (the threshold's own order), the others are cut from
        // both w and z. A cut weight returns only once its gradients, added up again from zero,
        // carry z across the threshold eta lambda: the threshold decides what regrows.
        auto trim_to_schedule = [&](Engine& e, std::vector<float> p, const std::vector<std::size_t>& nnz,
                                    std::size_t step) {
            std::vector<std::size_t> keep(n_steer);
            bool cut = false;
            for (std::size_t j = 0; j < n_steer; ++j) {
                keep[j] = static_cast<std::size_t>(scheduled(j, static_cast<double>(step)));
                cut = cut || steer.nnz_of(j, nnz) > keep[j];
            }
            if (!cut) return;
            std::vector<float> z = e.get_accumulated();
            const ParamLayout& layout = init.layout();
            const std::vector<float> kept = trim_to(lazy_refit(p, z, layout), spec, steer, keep);
            for (const ParamSegment& seg : layout.segments)
                for (std::size_t i = seg.weight_offset; i < seg.weight_offset + seg.n_weights; ++i)
                    if (kept[i] == 0.0f && p[i] != 0.0f) p[i] = 0.0f, z[i] = 0.0f;
            e.set_lazy_state(p, z);
        };

        auto update = [&](const std::vector<double>& mean, const std::vector<std::size_t>& nnz, std::size_t step) {
            bool changed = false;
            for (std::size_t j = 0; j < n_steer; ++j) {
                const double t = static_cast<double>(steer.targets[j]);
                double f = 1.0;
                if (relative) {
                    const double before = prev_mean.empty() ? mean[j] : prev_mean[j];
                    const double ahead = std::max(1.0, mean[j] + (mean[j] - before));
                    const double next = static_cast<double>(step + K);
                    const double desired =
                        next < static_cast<double>(R) ? scheduled(j, next) : t + kApproach * (mean[j] - t);
                    f = std::clamp(std::pow(ahead / std::max(desired, 1.0), rate), 1.0 / (1.0 + rate), 1.0 + rate);
                } else {
                    const double n = static_cast<double>(steer.nnz_of(j, nnz));
                    const double N = static_cast<double>(steer.n_weights[j]);
                    const double gap = 1.0 + rate * std::fabs(n - t) / N;  // |s - s*| = |n - t| / N
                    f = n > t ? gap : (n < t ? 1.0 / gap : 1.0);
                }
                const float next = std::clamp(static_cast<float>(lam[j] * f), lambda_floor, lambda_ceiling);
                changed = changed || next != lam[j];
                lam[j] = next;
            }
            return changed;
        };

        // What a landing trims (`p`, the engine's parameters): the parameters, or under the lazy
        // form the kept weights' accumulated values (lazy_refit), the start of the fine-tuning.
        auto landing_view = [&](Engine& e, std::vector<float> p) {
            return lazy ? lazy_refit(std::move(p), e.get_accumulated(), init.layout()) : p;
        };
        TrainOptions run_opt = base;
        run_opt.lambdas = steer.expand(lam, n_layers);
        run_opt.finetune = o.finetune || o.train.finetune;
        if (!armed) run_opt.stop = StopRule{};
        RunControl ctl;
        ctl.poll_every = poll;
        ctl.landing_band = o.train.stop;
        ctl.on_poll = [&](Engine& e, const EngineStatus& st) -> std::optional<std::vector<float>> {
            const std::size_t s = st.steps_run;
            if (!started) {
                if (s < B) return std::nullopt;
                started = true;  // the end of the warm-up: the targets, then lambda from its start
                emit_interval(st);
                set_targets(e.get_params(), st.nnz);
                if (o.lambda0.empty())
                    for (std::size_t j = 0; j < n_steer; ++j) lam[j] = std::sqrt(o.lambda1 * group_start[j]);
                current_rule = LambdaRule::adaptive;
                e.set_hyper(o.train.lr, steer.expand(lam, n_layers));
                next_update = s + K;
                return std::nullopt;
            }
            const std::vector<float> params = e.get_params();
            // The dense side: the latest parameters whose count lies above the band (in every
            // group for per-layer targets), where a count that fell through the band lands from.
            {
                bool above = true;
                std::size_t n_total = 0, t_total = 0;
                for (std::size_t j = 0; j < n_steer; ++j) {
                    const std::size_t n = steer.nnz_of(j, st.nnz);
                    n_total += n;
                    t_total += steer.targets[j];
                    if (o.train.stop.targets.size() > 1)
                        above = above && static_cast<double>(n) > static_cast<double>(steer.targets[j]) * (1.0 + o.train.stop.tolerance);
                }
                above = above && static_cast<double>(n_total) > static_cast<double>(t_total) * (1.0 + o.train.stop.tolerance);
                if (above) {
                    dense_side = landing_view(e, params);
                    dense_side_nnz = st.nnz;
                }
            }
            // The settled count of each group: weights larger than one step's shrinkage lr lambda_l.
            // With mini-batches a weight the penalty holds at zero turns nonzero for a step whenever
            // one batch's gradient outweighs lambda; those flickers, thousands in a conv net's big
            // layers, are not part of the pattern the penalty is selecting.
            const ParamLayout& layout = init.layout();
            for (std::size_t j = 0; j < n_steer; ++j) {
                const float shrink = o.train.lr * lam[j];
                std::size_t settled = 0;
                for (std::size_t l : steer.layers[j]) {
                    const float* w = params.data() + layout.segments[l].weight_offset;
                    for (std::size_t i = 0; i < layout.segments[l].n_weights; ++i) settled += std::fabs(w[i]) > shrink;
                }
                sum[j] += static_cast<double>(settled);
            }
            ++n_polls;
            if (s >= next_update) {
                std::vector<double> mean(n_steer);
                for (std::size_t j = 0; j < n_steer; ++j) mean[j] = sum[j] / static_cast<double>(n_polls);
                emit_interval(st);
                const bool changed = update(mean, st.nnz, s);
                prev_mean = mean;
                std::fill(sum.begin(), sum.end(), 0.0);
                n_polls = 0;
                next_update = s + K;
                current_rule = changed ? LambdaRule::adaptive : LambdaRule::fixed;
                if (changed) e.set_hyper(o.train.lr, steer.expand(lam, n_layers));
                if (lazy && relative) trim_to_schedule(e, params, st.nnz, s);
            }
            if (!armed && s + poll > R) {
                e.set_stop_rule(o.train.stop);  // the ramp is over: the band may end the run
                armed = true;
            }
            const double rho = o.train.stop.tolerance;
            std::size_t n_now = 0, t_sum = 0;
            for (std::size_t j = 0; j < n_steer; ++j) n_now += steer.nnz_of(j, st.nnz), t_sum += steer.targets[j];
            const bool below = static_cast<double>(n_now) < static_cast<double>(t_sum) * (1.0 - rho);
            if (relative && !result.landed && below && (armed || s >= D) && !dense_side.empty()) {
                // The count fell through the band (units that died do not come back): land from
                // the last parameters above it, trimmed to the targets.
                result.landed = true;
                std::vector<std::size_t> counts(n_steer);
                for (std::size_t j = 0; j < n_steer; ++j) counts[j] = steer.nnz_of(j, dense_side_nnz);
                std::vector<std::size_t> keep = counts;
                if (o.train.stop.targets.size() > 1)
                    for (std::size_t j = 0; j < n_steer; ++j) keep[j] = std::min(counts[j], steer.targets[j]);
                else
                    keep = trim_counts(counts, steer.targets);
                return trim_to(dense_side, spec, steer, keep);
            }
            if (relative && s >= D && !result.landed) {
                std::vector<std::size_t> counts(n_steer);
                std::size_t n_total = 0;
                for (std::size_t j = 0; j < n_steer; ++j) n_total += counts[j] = steer.nnz_of(j, st.nnz);
                if (o.train.stop.targets.size() > 1) {
                    // Per-layer bands: every layer above its band is cut to its target.
                    std::vector<std::size_t> keep = counts;
                    bool above = false;
                    for (std::size_t j = 0; j < n_steer; ++j)
                        if (static_cast<double>(counts[j]) > static_cast<double>(steer.targets[j]) * (1.0 + rho)) {
                            keep[j] = steer.targets[j];
                            above = true;
                        }
                    if (above) {
                        result.landed = true;
                        return trim_to(landing_view(e, e.get_params()), spec, steer, keep);
                    }
                } else {
                    const std::size_t target =
                        std::accumulate(steer.targets.begin(), steer.targets.end(), std::size_t{0});
                    if (static_cast<double>(n_total) > static_cast<double>(target) * (1.0 + rho)) {
                        result.landed = true;
                        return trim_to(landing_view(e, e.get_params()), spec, steer,
                                       trim_counts(counts, steer.targets));
                    }
                }
            }
            return std::nullopt;
        };
        TrainResult r = run_training(*engine, spec, init.slab(), train_set, test_set, run_opt, &ctl);
        r.lambdas = steer.expand(lam, n_layers);
        if (!started) result.layer_targets.clear();
        // The last interval (ended by the stop, the landing or the budget), with the fine-tuning.
        SearchIteration it = record_run(index, r, r.lambdas, current_rule, {}, {});
        it.steps = r.steps - last_emit_step;
        it.seconds = seconds_since(t_interval);
        emit(it);
        result.reached = r.stopped_in_band;
        result.best_iteration = index;
        return finish(std::move(r));
    }

    // ---- paper / warm on P groups at once ---------------------------------------------------------
    if (P > 1) return finish(parallel_rounds(*engine, o, base, world, P, per_run, groups, init, start, train_set,
                                             test_set, result, elapsed));

    // ---- paper / warm: Algorithms 1 and 2 ------------------------------------------------------
    SearchLoopState state;
    if (resumed && resumed->has_loop) {
        state = restore_loop(std::move(*resumed), spec, result);
    } else {
        state.lambdas = start;
        state.rules.assign(n_groups, LambdaRule::lambda0);
        state.history.assign(n_groups, {});
    }
    write_checkpoint(&state);
    TrainResult partial;  // an interrupted run, returned when no run finished

    for (std::size_t k = state.next_run; k < o.max_outer && !state.finished; ++k) {
        TrainOptions run_opt = base;
        run_opt.lambdas = groups.expand(state.lambdas, n_layers);
        run_opt.finetune = o.finetune || o.train.finetune;
        if (k == 0 && !o.stop_run0) run_opt.stop = StopRule{};  // the released code's behaviour
        const bool warm_start = o.strategy == SearchStrategy::warm && state.have_warm_from;
        TrainResult r = run_training(*engine, spec, warm_start ? state.warm_from : init.slab(), train_set, test_set,
                                     run_opt);
        if (r.interrupted) {  // a stop request: this run is lost, the checkpoint has the others
            result.interrupted = true;
            partial = std::move(r);
            break;
        }
        SearchIteration it = record_run(k, r, run_opt.lambdas, summary_rule(state.rules),
                                        n_groups > 1 ? state.rules : std::vector<LambdaRule>{}, state.n_candidates);
        it.round = k;  // one run per round
        record(std::move(it));
        for (std::size_t j = 0; j < n_groups; ++j) {
            state.history[j].push_back({state.lambdas[j], groups.nnz_of(j, r.nnz)});
        }
        const auto close = closeness(o.train.stop, r.nnz);
        const bool in_band = r.stopped_in_band;
        if (o.strategy == SearchStrategy::warm) {
            // The next run starts from the closest run on the dense side (NNZ >= target in every
            // group): pruning further from there passes through the band; regrowing from a
            // too-sparse network does not work (units that died stay dead).
            bool dense_side = true;
            double score = 0.0;
            for (std::size_t j = 0; j < n_groups; ++j) {
                const std::size_t n = groups.nnz_of(j, r.nnz);
                dense_side = dense_side && n >= groups.targets[j];
                score += static_cast<double>(n) / static_cast<double>(groups.targets[j]);
            }
            if (dense_side && score <= state.warm_score) {
                state.warm_score = score;
                state.warm_from = r.model.slab();
                state.have_warm_from = true;
            }
        }
        if (!state.have_best || in_band || closer(close, state.best_close)) {
            state.best_close = close;
            result.best_iteration = k;
            state.best = std::move(r);
            state.have_best = true;
        }
        state.next_run = k + 1;
        if (in_band) {
            result.reached = true;
            state.finished = true;
        } else if (k + 1 >= o.max_outer) {
            state.finished = true;  // no run after the last
        } else if (k == 0) {
            // Run 1 uses lambda1.
            std::fill(state.lambdas.begin(), state.lambdas.end(), o.lambda1);
            std::fill(state.rules.begin(), state.rules.end(), LambdaRule::lambda1);
            state.n_candidates.clear();
        } else {
            next_lambdas(*engine, o, groups, train_set, state);
        }
        write_checkpoint(&state);
        notify();
    }
    return finish(state.have_best ? std::move(state.best) : std::move(partial));
}

SearchResult search(const Model& init, const Dataset& train_set, const Dataset* test_set, const SearchOptions& options) {
    return LambdaSearch(options).run(init, train_set, test_set);
}

}  // namespace sparseprox
