// A network with no hidden layer and MSE loss is the Lasso (docs/method.md §2): trained to
// convergence, Algorithm 3's iterate must satisfy the optimality conditions, and agree with an
// independent coordinate-descent solver run in double precision.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "sparseprox/sparseprox.h"

using namespace sparseprox;

namespace {

Dataset make_lasso_problem(std::size_t n, std::size_t p, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    Dataset d;
    d.name = "lasso";
    d.task = Task::regression;
    d.n_samples = n;
    d.n_features = p;
    d.n_outputs = 1;
    d.x.resize(n * p);
    for (auto& v : d.x) v = g(rng);
    std::vector<float> w_true(p, 0.0f);
    for (std::size_t j = 0; j < p; j += 3) w_true[j] = (j % 2 ? -1.0f : 1.0f) * (0.2f + 0.1f * static_cast<float>(j % 5));
    d.y.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        double s = 0.3;
        for (std::size_t j = 0; j < p; ++j) s += double(d.x[i * p + j]) * w_true[j];
        d.y[i] = static_cast<float>(s + 0.1 * g(rng));
    }
    return d;
}

// Coordinate descent for (1/n)||Xw + b - y||^2 + lambda ||w||_1, in double, with the intercept
// updated exactly each sweep. Independent of the library.
std::vector<double> coordinate_descent(const Dataset& d, double lambda, double* b_out) {
    const std::size_t n = d.n_samples, p = d.n_features;
    std::vector<double> w(p, 0.0), r(n);
    double b = 0.0;
    for (std::size_t i = 0; i < n; ++i) r[i] = d.y[i];
    std::vector<double> col_sq(p, 0.0);
    for (std::size_t j = 0; j < p; ++j)
        for (std::size_t i = 0; i < n; ++i) col_sq[j] += double(d.x[i * p + j]) * d.x[i * p + j];
    for (int sweep = 0; sweep < 5000; ++sweep) {
        double change = 0.0;
        double mean_r = 0.0;
        for (std::size_t i = 0; i < n; ++i) mean_r += r[i];
        mean_r /= n;
        b += mean_r;
        for (std::size_t i = 0; i < n; ++i) r[i] -= mean_r;
        for (std::size_t j = 0; j < p; ++j) {
            double rho = 0.0;
            for (std::size_t i = 0; i < n; ++i) rho += double(d.x[i * p + j]) * (r[i] + d.x[i * p + j] * w[j]);
            // minimize (1/n)(col_sq w^2 - 2 rho w) + lambda |w|
            const double thr = lambda * n / 2.0;
            const double wj = std::fabs(rho) > thr ? std::copysign(std::fabs(rho) - thr, rho) / col_sq[j] : 0.0;
            const double delta = wj - w[j];
            if (delta != 0.0)
                for (std::size_t i = 0; i < n; ++i) r[i] -= d.x[i * p + j] * delta;
            change = std::max(change, std::fabs(delta));
            w[j] = wj;
        }
        if (change < 1e-12) break;
    }
    *b_out = b;
    return w;
}

}  // namespace

TEST(Lasso, ConvergedIterateSatisfiesOptimalityConditions) {
    const Dataset d = make_lasso_problem(200, 19, 42);
    const float lambda = 0.05f;
    Model init = Model::initialize(ModelSpec::parse("dense:19-1"), 3);
    TrainOptions opt;
    opt.lr = 0.2f;  // below 2/L, L = 2 * largest eigenvalue of [X 1]^T [X 1] / n (about 4 here)
    opt.lambdas = {lambda};
    opt.steps = 20000;
    opt.progress_seconds = 0;
    const TrainResult r = train(init, d, nullptr, opt);
    ASSERT_EQ(r.steps, 20000u);

    const std::vector<float> g = loss_gradient(r.model, d, Device{});
    const auto& s = r.model.layout().segments[0];
    const float* w = r.model.weight(0);
    const double tol = 2e-4;  // float32 gradient of an O(1) loss over 200 rows
    std::size_t n_zero = 0, n_nonzero = 0;
    for (std::size_t j = 0; j < s.n_weights; ++j) {
        const double gj = g[s.weight_offset + j];
        if (w[j] != 0.0f) {
            ++n_nonzero;
            EXPECT_NEAR(gj, -lambda * (w[j] > 0 ? 1.0 : -1.0), tol) << "nonzero weight " << j;
        } else {
            ++n_zero;
            EXPECT_LE(std::fabs(gj), lambda + tol) << "zero weight " << j;
        }
    }
    EXPECT_NEAR(g[s.bias_offset], 0.0, tol) << "bias gradient";
    EXPECT_GT(n_zero, 0u);
    EXPECT_GT(n_nonzero, 0u);

    // The same solution from an independent solver (the Lasso is strictly convex here: n > p
    // and X has full column rank).
    double b_cd = 0.0;
    const std::vector<double> w_cd = coordinate_descent(d, lambda, &b_cd);
    for (std::size_t j = 0; j < s.n_weights; ++j) {
        EXPECT_NEAR(w[j], w_cd[j], 1e-3) << "weight " << j;
        EXPECT_EQ(w[j] == 0.0f, w_cd[j] == 0.0) << "support differs at weight " << j;
    }
    EXPECT_NEAR(r.model.bias(0)[0], b_cd, 1e-3);
}

TEST(Lasso, LargeLambdaGivesAllZeroWeights) {
    const Dataset d = make_lasso_problem(100, 7, 9);
    // lambda_max = ||grad_W L(0, b*)||_inf; slightly above it the optimum is W = 0.
    Model zero(ModelSpec::parse("dense:7-1"));
    double mean_y = 0.0;
    for (float v : d.y) mean_y += v;
    zero.bias(0)[0] = static_cast<float>(mean_y / d.n_samples);
    const std::vector<float> g = loss_gradient(zero, d, Device{});
    double lambda_max = 0.0;
    for (std::size_t j = 0; j < 7; ++j) lambda_max = std::max(lambda_max, std::fabs(double(g[j])));
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {static_cast<float>(lambda_max * 1.05)};
    opt.steps = 3000;
    opt.progress_seconds = 0;
    const TrainResult r = train(Model::initialize(zero.spec(), 1), d, nullptr, opt);
    EXPECT_EQ(r.model.nnz_total(), 0u);
    opt.lambdas = {static_cast<float>(lambda_max * 0.8)};
    const TrainResult r2 = train(Model::initialize(zero.spec(), 1), d, nullptr, opt);
    EXPECT_GT(r2.model.nnz_total(), 0u);
}
