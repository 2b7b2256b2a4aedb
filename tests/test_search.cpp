// The lambda search (docs/method.md §4-5): its rules on recorded histories, the Lasso oracle for the
// whole search, per-layer bands on a small network, the cheaper strategies and bad targets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "core/engine.h"
#include "core/search_rules.h"
#include "cpu/activation.h"
#include "cpu/axpy.h"
#include "cpu/count.h"
#include "cpu/dense.h"
#include "cpu/loss.h"
#include "cpu/prox_step.h"
#include "sparseprox/sparseprox.h"
#include "test_util.h"

using namespace sparseprox;
using sparseprox::testing_util::throws_error_with;

using sparseprox::testing_util::smooth_regression;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// ---- the bracket ----------------------------------------------------------------------------------

TEST(Bracket, TakesTheClosestCountsOnEachSide) {
    // target 100: n_lo = 90 (largest <= 100), n_hi = 120 (smallest >= 100)
    const std::vector<LambdaRecord> h{{1e-3f, 5}, {1e-7f, 900}, {4e-4f, 90}, {2e-4f, 120}, {1e-4f, 300}};
    const Bracket b = bracket_from_history(h, 100);
    ASSERT_TRUE(b.has_up && b.has_low);
    EXPECT_EQ(b.n_lo, 90u);
    EXPECT_EQ(b.lambda_up, 4e-4f);
    EXPECT_EQ(b.n_hi, 120u);
    EXPECT_EQ(b.lambda_low, 2e-4f);
}

TEST(Bracket, TiesPickTheSmallestUpperAndTheLargestLowerLambda) {
    // Three runs gave 90 (n_lo): lambda_up is the smallest of their lambdas. Two gave 120
    // (n_hi): lambda_low is the largest of theirs.
    const std::vector<LambdaRecord> h{{5e-4f, 90}, {3e-4f, 90}, {4e-4f, 90},
                                      {1e-4f, 120}, {2e-4f, 120}, {1e-7f, 5000}};
    const Bracket b = bracket_from_history(h, 100);
    EXPECT_EQ(b.lambda_up, 3e-4f);
    EXPECT_EQ(b.lambda_low, 2e-4f);
}

TEST(Bracket, ACountEqualToTheTargetIsOnBothSides) {
    const std::vector<LambdaRecord> h{{3e-4f, 100}, {1e-3f, 10}, {1e-7f, 900}};
    const Bracket b = bracket_from_history(h, 100);
    EXPECT_EQ(b.n_lo, 100u);
    EXPECT_EQ(b.n_hi, 100u);
    EXPECT_EQ(b.lambda_up, 3e-4f);
    EXPECT_EQ(b.lambda_low, 3e-4f);
}

TEST(Bracket, OneSidedHistories) {
    const Bracket dense = bracket_from_history({{1e-3f, 500}, {1e-7f, 900}}, 100);
    EXPECT_FALSE(dense.has_up);
    EXPECT_TRUE(dense.has_low);
    EXPECT_EQ(dense.lambda_up, kInf);
    EXPECT_EQ(dense.lambda_low, 1e-3f);
    const Bracket sparse = bracket_from_history({{1e-3f, 5}, {1e-7f, 50}}, 100);
    EXPECT_TRUE(sparse.has_up);
    EXPECT_FALSE(sparse.has_low);
    EXPECT_EQ(sparse.lambda_low, 0.0f);
    EXPECT_EQ(sparse.lambda_up, 1e-7f);
}

// ---- candidates and the next lambda --------------------------------------------------------------

TEST(Candidates, StrictlyInsideAndTheLowerMedian) {
    // |g| = 0.1 .. 0.9 and the interval (0.2, 0.8): 0.2 and 0.8 are excluded (strict).
    const std::vector<float> g{0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f, 0.7f, -0.8f, 0.9f};
    const CandidateSet c = candidate_set(g.data(), g.size(), 0.2f, 0.8f);
    EXPECT_EQ(c.count, 5u);  // 0.3 0.4 0.5 0.6 0.7
    EXPECT_EQ(c.lower_median, 0.5f);
    // An even count takes the smaller middle value: (0.2, 0.9) holds 0.3 .. 0.8, six values.
    const CandidateSet even = candidate_set(g.data(), g.size(), 0.2f, 0.9f);
    EXPECT_EQ(even.count, 6u);
    EXPECT_EQ(even.lower_median, 0.5f);
}

TEST(Candidates, EmptyAndNanAndDuplicates) {
    const std::vector<float> g{0.5f, 0.5f, std::nanf(""), -0.5f, 1.0f};
    EXPECT_EQ(candidate_set(g.data(), g.size(), 0.5f, 1.0f).count, 0u);  // both ends excluded
    const CandidateSet c = candidate_set(g.data(), g.size(), 0.4f, kInf);
    EXPECT_EQ(c.count, 4u);  // NaN is never a candidate
    EXPECT_EQ(c.lower_median, 0.5f);
    EXPECT_EQ(candidate_set(g.data(), 0, 0.0f, 1.0f).count, 0u);
}

TEST(NextLambda, MedianThenMidpointThenExpand) {
    Bracket b;
    b.has_low = b.has_up = true;
    b.lambda_low = 1e-4f;
    b.lambda_up = 3e-4f;
    const LambdaChoice m = next_lambda(b, CandidateSet{7, 2.5e-4f}, 3e-4f);
    EXPECT_EQ(m.rule, LambdaRule::median);
    EXPECT_EQ(m.lambda, 2.5e-4f);
    const LambdaChoice mid = next_lambda(b, CandidateSet{}, 3e-4f);
    EXPECT_EQ(mid.rule, LambdaRule::midpoint);
    EXPECT_FLOAT_EQ(mid.lambda, 2e-4f);
    // No lower end: the midpoint of (0, lambda_up).
    Bracket no_low = b;
    no_low.has_low = false;
    no_low.lambda_low = 0.0f;
    EXPECT_FLOAT_EQ(next_lambda(no_low, CandidateSet{}, 3e-4f).lambda, 1.5e-4f);
    // No upper end (every run too dense): 10 x the largest lambda tried.
    Bracket no_up = b;
    no_up.has_up = false;
    no_up.lambda_up = kInf;
    const LambdaChoice e = next_lambda(no_up, CandidateSet{3, 1.0f}, 3e-4f);
    EXPECT_EQ(e.rule, LambdaRule::expand);
    EXPECT_FLOAT_EQ(e.lambda, 3e-3f);
}

TEST(NextLambda, AStallIsARunThatLeavesTheBracketsCountsAsTheyWere) {
    // Target 5: run 0 too sparse (2), run 1 too dense (9).
    std::vector<LambdaRecord> h = {{1e-2f, 2}, {1e-7f, 9}};
    EXPECT_FALSE(bracket_stalled({h.front()}, 5)) << "one run has nothing to compare with";
    EXPECT_FALSE(bracket_stalled(h, 5)) << "run 1 gave the bracket its lower end";
    h.push_back({1e-3f, 7});  // n_hi 9 -> 7: progress
    EXPECT_FALSE(bracket_stalled(h, 5));
    h.push_back({2e-3f, 7});  // the same n_hi at a larger lambda: lambda_low moved, the counts did not
    EXPECT_TRUE(bracket_stalled(h, 5));
    h.push_back({5e-3f, 2});  // the same n_lo at a smaller lambda
    EXPECT_TRUE(bracket_stalled(h, 5));
    h.push_back({4e-4f, 11});  // outside the bracket: nothing changed
    EXPECT_TRUE(bracket_stalled(h, 5));
    h.push_back({4e-3f, 4});  // n_lo 2 -> 4
    EXPECT_FALSE(bracket_stalled(h, 5));
}

TEST(SearchNames, ParseAndPrint) {
    for (auto s : {SearchStrategy::paper, SearchStrategy::warm, SearchStrategy::adaptive})
        EXPECT_EQ(parse_search_strategy(to_string(s)), s);
    EXPECT_TRUE(throws_error_with([] { parse_search_strategy("greedy"); }, {"greedy", "paper, warm or adaptive"}));
    EXPECT_EQ(parse_adapt_rule("sparsity"), AdaptRule::sparsity);
    EXPECT_TRUE(throws_error_with([] { parse_adapt_rule("pid"); }, {"pid"}));
}

// The engine's candidate query equals candidate_set on the host gradient.
TEST(Candidates, EngineQueryMatchesHostGradient) {
    const ModelSpec spec = ModelSpec::parse("dense:3-7-2");
    const Model m = Model::initialize(spec, 4);
    Dataset d;
    d.name = "tiny";
    d.n_samples = 13;
    d.n_features = 3;
    d.n_outputs = 2;
    std::mt19937 rng(1);
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (std::size_t i = 0; i < 39; ++i) d.x.push_back(g(rng));
    for (std::size_t i = 0; i < 26; ++i) d.y.push_back(g(rng));
    auto engine = make_cpu_engine(spec, Loss::mse);
    engine->set_params(m.slab());
    const std::vector<float> grad = engine->gradient(d, 5);
    std::vector<float> all;
    for (const ParamSegment& s : m.layout().segments)
        all.insert(all.end(), grad.begin() + s.weight_offset, grad.begin() + s.weight_offset + s.n_weights);
    std::vector<float> sorted(all.size());
    std::transform(all.begin(), all.end(), sorted.begin(), [](float v) { return std::fabs(v); });
    std::sort(sorted.begin(), sorted.end());
    const float low = sorted[3], up = sorted[sorted.size() - 4];
    const auto got = engine->gradient_candidates(d, 5, {{{0, 1}, low, up}, {{1}, 0.0f, kInf}});
    const CandidateSet want = candidate_set(all.data(), all.size(), low, up);
    EXPECT_EQ(got[0].count, want.count);
    EXPECT_EQ(got[0].lower_median, want.lower_median);
    const ParamSegment& s1 = m.layout().segments[1];
    const CandidateSet want1 = candidate_set(grad.data() + s1.weight_offset, s1.n_weights, 0.0f, kInf);
    EXPECT_EQ(got[1].count, want1.count);
    EXPECT_EQ(got[1].lower_median, want1.lower_median);
}

// ---- the Lasso oracle --------------------------------------------------------------------------

// An orthogonal design from a Sylvester-Hadamard matrix: p columns of +-1 that are orthogonal
// to each other and to the constant column, so X^T X / N = I exactly. Then the Lasso
// (1/N)||Xw + b - y||^2 + lambda ||w||_1 has the closed-form path w_i = S(z_i, lambda/2) with
// z = X^T (y - mean y) / N: NNZ(lambda) = #{ i : 2|z_i| > lambda }. Proximal GD from w = 0 with
// eta < 1 decouples per coordinate as well, so every run's first step already has the NNZ of its
// lambda: a run hits an exact target iff its lambda lies in the interval of the exact path.
Dataset hadamard_problem(std::size_t log2n, std::size_t p, std::uint32_t seed, std::vector<double>* z) {
    const std::size_t n = std::size_t{1} << log2n;
    Dataset d;
    d.name = "hadamard-lasso";
    d.task = Task::regression;
    d.n_samples = n;
    d.n_features = p;
    d.n_outputs = 1;
    d.x.resize(n * p);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < p; ++j)  // column j + 1 of H_n: (-1)^popcount(i & (j + 1))
            d.x[i * p + j] = __builtin_popcountll(i & (j + 1)) % 2 ? -1.0f : 1.0f;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> beta(p);
    for (std::size_t j = 0; j < p; ++j) beta[j] = u(rng) * (1.0f + static_cast<float>(j % 4));
    d.y.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        float s = 0.25f;
        for (std::size_t j = 0; j < p; ++j) s += d.x[i * p + j] * beta[j];
        d.y[i] = s + 0.05f * u(rng);
    }
    double mean = 0.0;
    for (float v : d.y) mean += v;
    mean /= static_cast<double>(n);
    z->assign(p, 0.0);
    for (std::size_t j = 0; j < p; ++j) {
        for (std::size_t i = 0; i < n; ++i) (*z)[j] += d.x[i * p + j] * (d.y[i] - mean);
        (*z)[j] /= static_cast<double>(n);
    }
    return d;
}

class LassoSearch : public ::testing::TestWithParam<std::size_t> {};

TEST_P(LassoSearch, FindsALambdaInsideTheExactPathInterval) {
    const std::size_t target = GetParam();
    std::vector<double> z;
    const Dataset d = hadamard_problem(7, 12, 11, &z);  // 128 rows, 12 features
    // The exact path: NNZ(lambda) = target exactly for lambda in [2|z|_(target+1), 2|z|_(target)).
    std::vector<double> a(z.size());
    std::transform(z.begin(), z.end(), a.begin(), [](double v) { return 2.0 * std::fabs(v); });
    std::sort(a.begin(), a.end(), std::greater<double>());
    const double lo = a[target], hi = a[target - 1];
    ASSERT_GT(hi - lo, 1e-3 * hi) << "the generated path has a degenerate interval";

    const ModelSpec spec = ModelSpec::parse("dense:12-1");
    const Model zero(spec);  // w = 0, b = 0
    SearchOptions o;
    o.train.device = Device{};
    o.train.lr = 0.25f;
    // Few steps per run: the nonzero weights' gradients then still spread above the run's lambda
    // (after convergence they all sit at it and the median of the candidates creeps up from
    // lambda1 in tiny steps); the count is already exact after the first step (see above).
    o.train.steps = 4;
    o.train.stop.targets = {target};
    o.train.stop.tolerance = 0.0;  // the exact count
    o.max_outer = 60;
    const SearchResult r = LambdaSearch(o).run(zero, d, nullptr);
    ASSERT_TRUE(r.reached) << "after " << r.outer_iterations << " runs; path interval [" << lo << ", " << hi << ")";
    EXPECT_EQ(r.run.model.nnz_total(), target);
    ASSERT_EQ(r.lambda_final.size(), 1u);
    const double lambda = r.lambda_final[0];
    EXPECT_GE(lambda, lo * (1 - 1e-5)) << "path interval [" << lo << ", " << hi << ")";
    EXPECT_LT(lambda, hi * (1 + 1e-5)) << "path interval [" << lo << ", " << hi << ")";
    // Every run's count is the exact path's count at its lambda (the oracle holds run by run).
    for (const SearchIteration& it : r.iterations) {
        const std::size_t exact = static_cast<std::size_t>(
            std::count_if(a.begin(), a.end(), [&](double v) { return v > it.lambdas[0] * (1 + 1e-6); }));
        const std::size_t exact_hi = static_cast<std::size_t>(
            std::count_if(a.begin(), a.end(), [&](double v) { return v > it.lambdas[0] * (1 - 1e-6); }));
        EXPECT_GE(it.nnz[0], exact) << "run " << it.index << " lambda " << it.lambdas[0];
        EXPECT_LE(it.nnz[0], exact_hi) << "run " << it.index << " lambda " << it.lambdas[0];
    }
    // The computed start is the Lasso's lambda_max = max 2|z_i| (docs/method.md §2): W = 0 there.
    EXPECT_TRUE(r.lambda_start_computed);
    EXPECT_NEAR(r.lambda_start[0], a[0], 1e-5 * a[0]);
    EXPECT_LE(r.iterations[0].nnz[0], 1u);  // 0, or the first weight when the float rounding of
                                             // lambda_max lets it pass (then target 1 is hit)
    EXPECT_EQ(r.iterations[0].rule, LambdaRule::lambda0);
    if (r.iterations.size() > 1) EXPECT_EQ(r.iterations[1].rule, LambdaRule::lambda1);
}

INSTANTIATE_TEST_SUITE_P(Targets, LassoSearch, ::testing::Values(1, 3, 6, 11));

// Run 0 just above target 1's interval (too sparse: 0 weights), as the computed lambda_max is
// when its last bit rounds up. The lower median of the candidates then creeps from lambda1
// towards the interval by a small step per run, and each of those runs returns the same count;
// the first such stall makes the next run the bracket's midpoint, which closes in on the
// interval, so the search lands in it within a handful of runs.
TEST(LassoSearchStall, ABisectionFollowsAMedianRunThatChangedNoCount) {
    std::vector<double> z;
    const Dataset d = hadamard_problem(7, 12, 11, &z);
    std::vector<double> a(z.size());
    std::transform(z.begin(), z.end(), a.begin(), [](double v) { return 2.0 * std::fabs(v); });
    std::sort(a.begin(), a.end(), std::greater<double>());
    const double lo = a[1], hi = a[0];  // NNZ = 1 exactly for lambda in [lo, hi)
    SearchOptions o;
    o.train.device = Device{};
    o.train.lr = 0.25f;
    o.train.steps = 4;
    o.train.stop.targets = {1};
    o.train.stop.tolerance = 0.0;
    o.lambda0 = {static_cast<float>(hi * (1 + 1e-4))};
    o.max_outer = 30;
    const Model zero(ModelSpec::parse("dense:12-1"));
    const SearchResult r = LambdaSearch(o).run(zero, d, nullptr);
    ASSERT_TRUE(r.reached) << "after " << r.outer_iterations << " runs; path interval [" << lo << ", " << hi << ")";
    EXPECT_EQ(r.run.model.nnz_total(), 1u);
    EXPECT_GE(r.lambda_final[0], lo * (1 - 1e-5));
    EXPECT_LT(r.lambda_final[0], hi * (1 + 1e-5));
    EXPECT_LE(r.outer_iterations, 12u);
    // Every bisect run follows a median run after which the bracket's counts stood still.
    std::vector<LambdaRecord> history;
    for (const SearchIteration& it : r.iterations) {
        if (it.rule == LambdaRule::bisect) {
            ASSERT_GE(it.index, 3u);
            EXPECT_EQ(r.iterations[it.index - 1].rule, LambdaRule::median);
            EXPECT_TRUE(bracket_stalled(history, 1));
        }
        history.push_back({it.lambdas[0], it.nnz[0]});
    }
}

// ---- networks ------------------------------------------------------------------------------------

SearchOptions small_net_options() {
    SearchOptions o;
    o.train.device = Device{};
    o.train.lr = 0.1f;
    o.train.steps = 600;
    o.train.progress_seconds = 0;
    o.max_outer = 40;
    return o;
}

// A band must be reachable: the last layer's weights from hidden units whose incoming weights are
// all zero get no gradient, so the 16-weight last layer cannot keep more weights than there are
// live units. With the initializations of seeds 1 to 10 the search ends with that layer at 6 of
// its 8 for two to five of them (which ones depends on the products' rounding: OpenBLAS's or
// oneDNN's); seed 6 reaches every band with either.
TEST(NetworkSearch, PerLayerTargetsMeetEveryBand) {
    const Dataset d = smooth_regression(256, 3);
    const ModelSpec spec = ModelSpec::parse("dense:4-24-16-1");  // 96, 384, 16 weights
    const Model init = Model::initialize(spec, 6);
    SearchOptions o = small_net_options();
    o.train.stop.targets = {40, 90, 8};
    o.train.stop.tolerance = 0.1;
    o.train.stop.min_layers = 0;  // all layers
    const SearchResult r = LambdaSearch(o).run(init, d, nullptr);
    ASSERT_TRUE(r.reached) << r.outer_iterations << " runs";
    for (std::size_t l = 0; l < 3; ++l) {
        const double n = static_cast<double>(r.run.nnz[l]), t = static_cast<double>(o.train.stop.targets[l]);
        EXPECT_LE(std::fabs(n - t), 0.1 * t) << "layer " << l << " nnz " << n;
    }
    // One lambda per layer, each chosen by its own rule after the two starting runs.
    ASSERT_EQ(r.lambda_final.size(), 3u);
    if (r.iterations.size() > 2) EXPECT_EQ(r.iterations[2].layer_rules.size(), 3u);
    // The search restarts every run from the initialization: a rerun of the returned lambdas
    // from `init` with the same band gives the same network.
    TrainOptions t = o.train;
    t.lambdas = r.lambda_final;
    t.finetune = o.finetune;  // the search fine-tunes its in-band run by default
    const TrainResult again = train(init, d, nullptr, t);
    EXPECT_EQ(again.nnz, r.run.nnz);
    EXPECT_EQ(again.model.slab(), r.run.model.slab());
    std::size_t steps = 0;
    for (const SearchIteration& it : r.iterations) steps += it.steps;
    EXPECT_EQ(steps, r.total_steps);
    EXPECT_EQ(r.outer_iterations, r.iterations.size());
}

TEST(NetworkSearch, WarmAndAdaptiveReachTheSingleTarget) {
    const Dataset d = smooth_regression(256, 7);
    const ModelSpec spec = ModelSpec::parse("dense:4-24-16-1");
    const Model init = Model::initialize(spec, 9);
    for (SearchStrategy s : {SearchStrategy::paper, SearchStrategy::warm, SearchStrategy::adaptive}) {
        SearchOptions o = small_net_options();
        o.strategy = s;
        o.train.steps = 3000;
        o.train.stop.targets = {120};
        o.train.stop.tolerance = 0.02;
        o.adapt_interval = 50;
        const SearchResult r = LambdaSearch(o).run(init, d, nullptr);
        ASSERT_TRUE(r.reached) << to_string(s) << ": " << r.total_steps << " steps";
        EXPECT_LE(std::fabs(static_cast<double>(r.run.model.nnz_total()) - 120.0), 0.02 * 120) << to_string(s);
        EXPECT_TRUE(r.run.stopped_in_band) << to_string(s);
        if (s == SearchStrategy::adaptive) {
            EXPECT_EQ(r.outer_iterations, 1u);
            // The final interval ran at the lambda the result reports, which is the last one set.
            EXPECT_EQ(r.iterations.back().lambdas, r.lambda_final);
            EXPECT_EQ(r.total_steps, r.run.steps);
        }
    }
}

// The computed start from a subset of rows: evenly spaced rows (floor(k n / rows)), the same
// lambda_max as the explicit subset, and the strategy's default (all rows for the paper's search,
// at most SearchOptions::kAdaptiveStartRows for the adaptive strategy) in the result.
TEST(StartRows, ComputedStartUsesEvenlySpacedRows) {
    const Dataset d = smooth_regression(10000, 21);
    const ModelSpec spec = ModelSpec::parse("dense:4-24-16-1");
    const Model init = Model::initialize(spec, 9);
    Dataset subset = d.slice(0, 1);
    subset.n_samples = 0;
    subset.x.clear();
    subset.y.clear();
    for (std::size_t k = 0; k < 300; ++k) {
        const std::size_t r = k * d.n_samples / 300;
        subset.x.insert(subset.x.end(), d.x.begin() + r * 4, d.x.begin() + (r + 1) * 4);
        subset.y.push_back(d.y[r]);
        ++subset.n_samples;
    }
    const std::vector<float> from_subset = compute_lambda_max(init, subset, Device{});
    EXPECT_EQ(compute_lambda_max(init, d, Device{}, std::nullopt, 300), from_subset);
    const std::vector<float> all = compute_lambda_max(init, d, Device{});
    EXPECT_EQ(compute_lambda_max(init, d, Device{}, std::nullopt, 0), all);
    EXPECT_EQ(compute_lambda_max(init, d, Device{}, std::nullopt, d.n_samples + 5), all);
    EXPECT_NE(from_subset, all) << "300 of 10000 rows give another gradient";

    SearchOptions o = small_net_options();
    o.train.steps = 20;
    o.train.stop.targets = {120};
    o.train.stop.tolerance = 0.02;
    o.max_outer = 2;
    const SearchResult paper = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_EQ(paper.lambda_start_rows, d.n_samples);
    // One total target: one lambda, the largest layer value, for every layer.
    auto one_lambda = [](const std::vector<float>& per_layer) {
        return std::vector<float>(per_layer.size(), *std::max_element(per_layer.begin(), per_layer.end()));
    };
    EXPECT_EQ(paper.lambda_start, one_lambda(all));
    o.strategy = SearchStrategy::adaptive;
    const SearchResult adaptive = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_EQ(adaptive.lambda_start_rows, SearchOptions::kAdaptiveStartRows);
    EXPECT_EQ(adaptive.lambda_start,
              one_lambda(compute_lambda_max(init, d, Device{}, std::nullopt, SearchOptions::kAdaptiveStartRows)));
    o.start_rows = 300;
    EXPECT_EQ(LambdaSearch(o).run(init, d, nullptr).lambda_start, one_lambda(from_subset));
    o.lambda0 = {0.01f};
    const SearchResult given = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_FALSE(given.lambda_start_computed);
    EXPECT_EQ(given.lambda_start_rows, 0u);
}

TEST(NetworkSearch, RunZeroCanIgnoreTheBand) {
    const Dataset d = smooth_regression(256, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:4-24-16-1"), 9);
    SearchOptions o = small_net_options();
    o.train.steps = 800;
    o.train.stop.targets = {120};
    o.train.stop.tolerance = 0.05;
    o.lambda0 = {5e-2f};  // far too large: run 0 prunes through the band on its way down
    o.max_outer = 2;
    o.finetune = false;  // the paper's rule: the in-band iterate as it is
    const SearchResult exact = LambdaSearch(o).run(init, d, nullptr);
    o.stop_run0 = false;
    const SearchResult released = LambdaSearch(o).run(init, d, nullptr);
    // Without the stop, run 0 always spends its whole budget and is never "in band".
    EXPECT_EQ(released.iterations[0].steps, 800u);
    EXPECT_FALSE(released.iterations[0].in_band);
    // With it, a run 0 that met the band ends the search there.
    ASSERT_TRUE(exact.iterations[0].in_band);
    EXPECT_LT(exact.iterations[0].steps, 800u);
    EXPECT_TRUE(exact.reached);
    EXPECT_EQ(exact.outer_iterations, 1u);
}

// The default search never returns a network stopped early in its run: when the count passes
// through the band after a few dozen steps (a lambda0 far too large), the paper's rule would
// return that barely trained iterate; by default the search trains the rest of the budget with
// its sparsity pattern fixed.
TEST(NetworkSearch, DefaultSearchReturnsANetworkTrainedItsWholeBudget) {
    const Dataset d = smooth_regression(256, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:4-24-16-1"), 9);
    SearchOptions o = small_net_options();
    o.train.steps = 800;
    o.train.stop.targets = {120};
    o.train.stop.tolerance = 0.05;
    o.lambda0 = {5e-2f};
    ASSERT_TRUE(o.finetune) << "fine-tuning is the search's default";
    const SearchResult full = LambdaSearch(o).run(init, d, nullptr);
    o.finetune = false;
    const SearchResult early = LambdaSearch(o).run(init, d, nullptr);

    // The paper's rule: run 0 crosses the band early and is returned as it is.
    ASSERT_TRUE(early.reached);
    ASSERT_EQ(early.outer_iterations, 1u);
    ASSERT_LT(early.run.steps, 200u) << "the count must cross the band early for this test";
    EXPECT_EQ(early.run.finetune_steps, 0u);

    // The default: the same run, then the rest of the budget on its pattern.
    ASSERT_TRUE(full.reached);
    EXPECT_EQ(full.outer_iterations, 1u);
    EXPECT_TRUE(full.run.stopped_in_band);
    EXPECT_EQ(full.run.steps, 800u);
    EXPECT_EQ(full.run.finetune_steps, 800u - early.run.steps);
    EXPECT_EQ(full.iterations[0].finetune_steps, full.run.finetune_steps);
    EXPECT_EQ(full.total_steps, 800u);
    const ParamLayout& layout = full.run.model.layout();
    for (std::size_t l = 0; l < layout.segments.size(); ++l)
        for (std::size_t i = 0; i < layout.segments[l].n_weights; ++i)
            if (full.run.model.weight(l)[i] != 0.0f) EXPECT_NE(early.run.model.weight(l)[i], 0.0f) << l << " " << i;
    EXPECT_LE(std::fabs(static_cast<double>(full.run.model.nnz_total()) - 120.0), 0.05 * 120);
    EXPECT_LT(full.run.train_eval.loss, 0.5 * early.run.train_eval.loss)
        << "fine-tuned " << full.run.train_eval.loss << ", early iterate " << early.run.train_eval.loss;

    // Every strategy's returned run has its whole budget behind it.
    o.finetune = true;
    o.lambda0.clear();
    o.train.stop.tolerance = 0.02;
    o.adapt_interval = 50;
    for (SearchStrategy s : {SearchStrategy::paper, SearchStrategy::warm, SearchStrategy::adaptive}) {
        o.strategy = s;
        const SearchResult r = LambdaSearch(o).run(init, d, nullptr);
        if (!r.reached) continue;  // a missed band returns a run that trained its whole budget anyway
        EXPECT_EQ(r.run.steps, 800u) << to_string(s);
    }
}

TEST(NetworkSearch, AdaptiveArmsTheBandAfterItsRamp) {
    const Dataset d = smooth_regression(256, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:4-24-16-1"), 9);
    SearchOptions o = small_net_options();
    o.strategy = SearchStrategy::adaptive;
    o.train.steps = 4000;
    o.train.stop.targets = {120};
    o.train.stop.tolerance = 0.02;
    o.adapt_interval = 50;
    SearchResult r = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_EQ(r.l1_form, L1Form::lazy) << "the adaptive strategy's default form";
    EXPECT_EQ(r.adapt_ramp, 3000u);  // default under the lazy form: three quarters of the budget
    ASSERT_TRUE(r.reached);
    EXPECT_EQ(r.total_steps, 4000u);  // fine-tuned to the end of the budget
    EXPECT_GT(r.run.steps - r.run.finetune_steps, 3000u - 50u) << "the band is armed from the end of the ramp";
    o.train.method.l1.form = L1Form::greedy;
    r = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_EQ(r.l1_form, L1Form::greedy);
    EXPECT_EQ(r.adapt_ramp, 2000u);  // under the greedy form: half the budget
    ASSERT_TRUE(r.reached);
    EXPECT_EQ(r.total_steps, 4000u);  // fine-tuned to the end of the budget
    EXPECT_GT(r.run.steps - r.run.finetune_steps, 2000u - 50u) << "the band is armed from the end of the ramp";
    o.adapt_ramp = 600;
    r = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_EQ(r.adapt_ramp, 600u);
    ASSERT_TRUE(r.reached);
    EXPECT_GT(r.run.steps - r.run.finetune_steps, 600u - 50u);
    // The trace: one entry per interval, steps adding up to the run's.
    std::size_t steps = 0;
    for (const SearchIteration& it : r.iterations) steps += it.steps;
    EXPECT_EQ(steps, r.total_steps);
}

// ---- the per-layer allocation of one total target --------------------------------------------------

// A model whose weights are given layer by layer (biases 0).
Model with_weights(const std::string& spec_text, const std::vector<std::vector<float>>& weights) {
    Model m = Model::initialize(ModelSpec::parse(spec_text), 1);
    for (std::size_t l = 0; l < weights.size(); ++l) {
        EXPECT_EQ(weights[l].size(), m.layout().segments[l].n_weights);
        std::copy(weights[l].begin(), weights[l].end(), m.weight(l));
    }
    return m;
}

TEST(MagnitudeAllocation, SharesTheLargestMagnitudesOverAllLayers) {
    // dense:2-3-2: 6 and 6 weights. The 5 largest |w|: 0.9, -0.8 (layer 0), 0.7, 0.6, -0.5 (layer 1).
    const Model m = with_weights("dense:2-3-2", {{0.9f, -0.8f, 0.1f, 0.2f, -0.3f, 0.05f},
                                                 {0.7f, 0.6f, -0.5f, 0.4f, 0.01f, 0.02f}});
    EXPECT_EQ(magnitude_allocation(m, 5), (std::vector<std::size_t>{2, 3}));
    // total 2: 0.9 and -0.8 both in layer 0; layer 1 would be empty, so it takes one from layer 0.
    EXPECT_EQ(magnitude_allocation(m, 2), (std::vector<std::size_t>{1, 1}));
    EXPECT_EQ(magnitude_allocation(m, 12), (std::vector<std::size_t>{6, 6}));
    // total 8: down to 0.2, four in each layer (0.9, 0.8, 0.3, 0.2 and 0.7, 0.6, 0.5, 0.4).
    EXPECT_EQ(magnitude_allocation(m, 8), (std::vector<std::size_t>{4, 4}));
}

TEST(MagnitudeAllocation, TiesAreSharedInProportionToTheTiedCounts) {
    // dense:4-3-1: 12 and 3 weights. Two nonzeros, the rest zeros (10 in layer 0, 3 in layer 1).
    std::vector<float> w0(12, 0.0f), w1(3, 0.0f);
    w0[3] = 0.5f;
    w0[7] = -0.25f;
    const Model m = with_weights("dense:4-3-1", {w0, w1});
    // Total 2: the nonzeros; layer 1 would be empty and takes one from layer 0.
    EXPECT_EQ(magnitude_allocation(m, 2), (std::vector<std::size_t>{1, 1}));
    // Total 15 - 2 = 13 ties for 13 places: all. Total 8: 2 above, 6 of the 13 zeros shared
    // 10:3 -> 4.6 and 1.4 -> 4 + 1 whole, the last to the larger remainder (layer 0).
    EXPECT_EQ(magnitude_allocation(m, 15), (std::vector<std::size_t>{12, 3}));
    EXPECT_EQ(magnitude_allocation(m, 8), (std::vector<std::size_t>{7, 1}));
    // Sums always add up.
    for (std::size_t t = 2; t <= 15; ++t) {
        const auto a = magnitude_allocation(m, t);
        EXPECT_EQ(a[0] + a[1], t) << t;
        EXPECT_GE(a[0], 1u);
        EXPECT_GE(a[1], 1u);
        EXPECT_LE(a[0], 12u);
        EXPECT_LE(a[1], 3u);
    }
    EXPECT_TRUE(throws_error_with([&] { magnitude_allocation(m, 0); }, {"total 0"}));
    EXPECT_TRUE(throws_error_with([&] { magnitude_allocation(m, 16); }, {"16", "15"}));
    EXPECT_TRUE(throws_error_with([&] { magnitude_allocation(m, 1); }, {"total 1", "2 weight layers"}));
}

TEST(Allocation, NamesRoundTrip) {
    for (Allocation a : {Allocation::uniform, Allocation::magnitude, Allocation::automatic})
        EXPECT_EQ(parse_allocation(to_string(a)), a);
    EXPECT_TRUE(throws_error_with([] { parse_allocation("erk"); }, {"erk", "uniform, magnitude or auto"}));
    for (L1Form f : {L1Form::automatic, L1Form::greedy, L1Form::lazy}) EXPECT_EQ(parse_l1_form(to_string(f)), f);
    EXPECT_TRUE(throws_error_with([] { parse_l1_form("eager"); }, {"eager", "auto, greedy or lazy"}));
}

// The adaptive strategy with the magnitude allocation: every layer its own lambda, steered to the
// layer's share of the total, which the result reports; the band is the total's.
TEST(NetworkSearch, AdaptiveAllocatesTheTotalAmongTheLayers) {
    const Dataset d = smooth_regression(256, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:4-24-16-1"), 9);  // 96, 384, 16 weights
    SearchOptions o = small_net_options();
    o.strategy = SearchStrategy::adaptive;
    o.train.steps = 3000;
    o.train.stop.targets = {120};
    o.train.stop.tolerance = 0.02;
    ASSERT_EQ(o.allocation, Allocation::automatic) << "the default";
    // The default under the adaptive strategy: the lazy form, whose one threshold over all the
    // layers shares the total by magnitude (uniform lambda, no layer targets).
    const SearchResult lazy = LambdaSearch(o).run(init, d, nullptr);
    ASSERT_TRUE(lazy.reached) << lazy.total_steps << " steps";
    EXPECT_EQ(lazy.l1_form, L1Form::lazy);
    EXPECT_EQ(lazy.allocation, Allocation::uniform);
    EXPECT_TRUE(lazy.layer_targets.empty());
    EXPECT_EQ(lazy.run.steps, 3000u);
    // The greedy form: auto is the magnitude allocation.
    o.train.method.l1.form = L1Form::greedy;
    const SearchResult r = LambdaSearch(o).run(init, d, nullptr);
    ASSERT_TRUE(r.reached) << r.total_steps << " steps";
    EXPECT_EQ(r.l1_form, L1Form::greedy);
    EXPECT_EQ(r.allocation, Allocation::magnitude);
    ASSERT_EQ(r.layer_targets.size(), 3u);
    EXPECT_EQ(r.layer_targets[0] + r.layer_targets[1] + r.layer_targets[2], 120u);
    for (std::size_t t : r.layer_targets) EXPECT_GE(t, 1u);
    EXPECT_LE(std::fabs(static_cast<double>(r.run.model.nnz_total()) - 120.0), 0.02 * 120);
    EXPECT_EQ(r.run.steps, 3000u) << "the returned network trains the whole budget";
    EXPECT_GT(r.run.finetune_steps, 0u);
    EXPECT_EQ(r.adapt_interval, 30u);   // 1/100 of the budget
    EXPECT_EQ(r.adapt_ramp, 1500u);     // half the budget
    EXPECT_EQ(r.landing_step, 1800u);   // R + budget/10
    // The lambdas differ per layer once steering began.
    const std::vector<float>& lam = r.lambda_final;
    ASSERT_EQ(lam.size(), 3u);
    EXPECT_FALSE(lam[0] == lam[1] && lam[1] == lam[2]);
    // Uniform: one lambda, no layer targets.
    o.allocation = Allocation::uniform;
    const SearchResult u = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_EQ(u.allocation, Allocation::uniform);
    EXPECT_TRUE(u.layer_targets.empty());
    EXPECT_EQ(u.lambda_final[0], u.lambda_final[1]);
    EXPECT_EQ(u.lambda_final[1], u.lambda_final[2]);
}

// The adaptive strategy (the command line's default for l1 with one total target) never returns
// the iterate of an early crossing either: with a lambda0 far too large the count falls through
// the band within the first steps of the warm-up, before the band is armed, and the run goes on;
// whatever it returns has trained the whole budget, and a run that meets the band fine-tunes.
TEST(NetworkSearch, AdaptiveIgnoresAnEarlyCrossingAndTrainsTheWholeBudget) {
    const Dataset d = smooth_regression(256, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:4-24-16-1"), 9);
    SearchOptions o = small_net_options();
    o.train.steps = 800;
    o.train.stop.targets = {120};
    o.train.stop.tolerance = 0.05;
    o.lambda0 = {5e-2f};
    o.max_outer = 2;
    o.finetune = false;
    const SearchResult early = LambdaSearch(o).run(init, d, nullptr);  // the paper's rule, as above
    ASSERT_TRUE(early.reached);
    ASSERT_LT(early.run.steps, 80u) << "the count must cross the band within the warm-up for this test";
    o.finetune = true;
    o.strategy = SearchStrategy::adaptive;
    const SearchResult r = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_EQ(r.run.steps, 800u);
    EXPECT_EQ(r.total_steps, 800u);
    ASSERT_GE(r.iterations.size(), 2u);
    EXPECT_EQ(r.iterations[0].steps, 100u) << "the warm-up: R/6 of 3/4 of the budget, to the first poll after it";
    if (r.reached) EXPECT_GT(r.run.finetune_steps, 0u);
}

// A count that is still above the band at the landing step is trimmed there to the target by
// magnitude, and the rest of the budget fine-tunes that pattern.
TEST(NetworkSearch, AdaptiveLandsAboveTheBandByTrimming) {
    const Dataset d = smooth_regression(256, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:4-24-16-1"), 9);
    SearchOptions o = small_net_options();
    o.strategy = SearchStrategy::adaptive;
    o.train.steps = 2000;
    o.train.stop.targets = {150};
    o.train.stop.tolerance = 0.0;  // a band of one count: no step meets it by chance
    o.adapt_rate = 1e-6;           // lambda all but fixed at its start: the count stays high
    o.lambda0 = {1e-6f};
    o.allocation = Allocation::magnitude;  // per-layer targets, under the default lazy form
    const SearchResult r = LambdaSearch(o).run(init, d, nullptr);
    ASSERT_TRUE(r.reached);
    EXPECT_TRUE(r.landed);
    EXPECT_EQ(r.run.model.nnz_total(), 150u);
    EXPECT_EQ(r.run.steps, 2000u);
    EXPECT_EQ(r.run.finetune_steps, 2000u - r.landing_step);
    ASSERT_EQ(r.layer_targets.size(), 3u);
    EXPECT_EQ(r.run.nnz, r.layer_targets) << "every layer above its share is cut to it";
}

// Under the lazy form the threshold alone would leave the count where it is (lambda all but fixed
// at a level that prunes little); the adaptive search also trims each interval to the schedule,
// so the network thins along the ramp, and the cut weights regrow only as the level lets them.
TEST(NetworkSearch, AdaptiveLazyFormThinsAlongTheSchedule) {
    const Dataset d = smooth_regression(256, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:4-24-16-1"), 9);  // 496 weights
    SearchOptions o = small_net_options();
    o.strategy = SearchStrategy::adaptive;
    o.train.steps = 2000;
    o.train.stop.targets = {50};
    o.train.stop.tolerance = 0.0;
    o.adapt_rate = 1e-6;  // lambda all but fixed at its start
    o.lambda0 = {1e-2f};
    std::vector<std::pair<std::size_t, std::size_t>> counts;  // (step, NNZ) at each interval's end
    o.on_iteration = [&](const SearchIteration& it) {
        std::size_t n = 0;
        for (auto v : it.nnz) n += v;
        counts.push_back({it.total_steps, n});
    };
    const SearchResult r = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_EQ(r.l1_form, L1Form::lazy);
    ASSERT_TRUE(r.reached);
    EXPECT_EQ(r.run.model.nnz_total(), 50u);
    EXPECT_EQ(r.run.steps, 2000u);
    // The count the threshold alone holds (about 494 of 496: the trims switched off) falls along
    // the ramp: below half of the first interval's by its end, R = 3/4 of the budget.
    ASSERT_GE(counts.size(), 3u);
    std::size_t at_ramp_end = counts.front().second;
    for (auto c : counts)
        if (c.first <= 1500) at_ramp_end = c.second;
    EXPECT_LT(2 * at_ramp_end, counts.front().second) << at_ramp_end << " of " << counts.front().second;
}

TEST(NetworkSearch, MissedBandReturnsTheClosestRun) {
    const Dataset d = smooth_regression(128, 2);
    const ModelSpec spec = ModelSpec::parse("dense:4-8-1");
    const Model init = Model::initialize(spec, 1);
    SearchOptions o = small_net_options();
    o.train.steps = 50;
    o.train.stop.targets = {17};
    o.train.stop.tolerance = 0.0;
    o.max_outer = 3;
    const SearchResult r = LambdaSearch(o).run(init, d, nullptr);
    EXPECT_EQ(r.outer_iterations, 3u);
    if (!r.reached) {
        double best = 1e9;
        for (const SearchIteration& it : r.iterations) {
            std::size_t n = 0;
            for (auto v : it.nnz) n += v;
            best = std::min(best, std::fabs(static_cast<double>(n) - 17.0));
        }
        EXPECT_EQ(std::fabs(static_cast<double>(r.run.model.nnz_total()) - 17.0), best);
    }
}

// ---- bad targets and options -------------------------------------------------------------------

TEST(SearchOptionsValidate, ImpossibleTargetsAndBadOptions) {
    const ModelSpec spec = ModelSpec::parse("dense:4-8-1");  // 32 + 8 weights
    SearchOptions o = small_net_options();
    auto check = [&](const SearchOptions& opt, std::initializer_list<std::string> parts) {
        return throws_error_with([&] { opt.validate(spec); }, parts);
    };
    EXPECT_TRUE(check(o, {"needs a target"}));
    o.train.stop.targets = {0};
    EXPECT_TRUE(check(o, {"target NNZ 0"}));
    o.train.stop.targets = {41};
    EXPECT_TRUE(check(o, {"41", "40 weights"}));
    o.train.stop.targets = {5, 5, 5};
    EXPECT_TRUE(check(o, {"3 per-layer", "2 weight layers"}));
    o.train.stop.targets = {20, 9};
    EXPECT_TRUE(check(o, {"9", "layer 1", "8 weights"}));
    o.train.stop.targets = {20};
    o.lambda0 = {1e-3f, 1e-3f};
    EXPECT_TRUE(check(o, {"lambda0", "2 values"}));
    o.lambda0 = {-1.0f};
    EXPECT_TRUE(check(o, {"lambda0", "positive"}));
    o.lambda0 = {};
    o.lambda1 = 0.0f;
    EXPECT_TRUE(check(o, {"lambda1"}));
    o.lambda1 = 1e-7f;
    o.max_outer = 1;
    EXPECT_TRUE(check(o, {"max_outer 1"}));
    o.max_outer = 5;
    o.strategy = SearchStrategy::adaptive;
    o.adapt_interval = 0;  // 1/100 of the budget
    EXPECT_NO_THROW(o.validate(spec));
    o.adapt_rate = std::nan("");
    EXPECT_TRUE(check(o, {"adapt_rate"}));
    o.adapt_rate = 0;
    o.train.stop.tolerance = 1.5;
    EXPECT_TRUE(check(o, {"tolerance"}));
    o.train.stop.tolerance = 0.01;
    EXPECT_NO_THROW(o.validate(spec));
    // A per-layer search takes one lambda0 per layer.
    o.train.stop.targets = {10, 4};
    o.lambda0 = {1e-3f, 2e-3f};
    EXPECT_NO_THROW(o.validate(spec));
}

// ---- weight decay --------------------------------------------------------------------------------

TEST(WeightDecay, AddsDecayToWeightGradientsOnly) {
    const ModelSpec spec = ModelSpec::parse("dense:3-4-2");
    const Model m = Model::initialize(spec, 2);
    std::vector<float> g(m.layout().slab_size, 0.5f);
    cpu::add_weight_decay(g.data(), m.slab().data(), m.layout(), 0.25f);
    for (const ParamSegment& s : m.layout().segments) {
        for (std::size_t i = 0; i < s.n_weights; ++i)
            EXPECT_EQ(g[s.weight_offset + i], 0.5f + 0.25f * m.slab()[s.weight_offset + i]);
        for (std::size_t i = 0; i < s.n_bias; ++i) EXPECT_EQ(g[s.bias_offset + i], 0.5f);
    }
}

TEST(WeightDecay, ShrinksTheWeightsOfATrainedNetwork) {
    const Dataset d = smooth_regression(128, 4);
    const Model init = Model::initialize(ModelSpec::parse("dense:4-16-1"), 3);
    TrainOptions t;
    t.lr = 0.1f;
    t.steps = 300;
    t.progress_seconds = 0;
    const TrainResult plain = train(init, d, nullptr, t);
    t.weight_decay = 0.05f;
    const TrainResult decayed = train(init, d, nullptr, t);
    auto norm = [](const TrainResult& r) {
        double s = 0;
        for (std::size_t l = 0; l < r.model.n_weight_layers(); ++l)
            for (std::size_t i = 0; i < r.model.layout().segments[l].n_weights; ++i)
                s += double(r.model.weight(l)[i]) * r.model.weight(l)[i];
        return s;
    };
    EXPECT_LT(norm(decayed), 0.9 * norm(plain));
    t.weight_decay = -1.0f;
    EXPECT_TRUE(throws_error_with([&] { train(init, d, nullptr, t); }, {"weight decay"}));
}

}  // namespace
