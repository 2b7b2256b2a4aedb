// The optimizers and learning-rate schedules (train.h, core/optimizer.h): each optimizer's step
// through the whole trainer against a closed form written out here in double, the learning rate
// of every schedule at chosen steps, the fixed point of every proximal optimizer at a Lasso
// solution, and every method training with a non-SGD optimizer (gmp's mask and the fine-tuning
// pattern kept).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/backend.h"
#include "core/optimizer.h"
#include "sparseprox/sparseprox.h"
#include "test_util.h"

namespace sparseprox {
namespace {

using testing_util::throws_error_with;

// ---- the closed form ------------------------------------------------------------------------------

// One sample, dense:2-1 with the identity, MSE: loss (w.x + b - y)^2, gradient 2 r (x, 1).
struct Tiny {
    double x0 = 1.0, x1 = 0.2, y = 0.3;
    double w0 = 0.5, w1 = -0.05, b = 0.1;
};

// Applied steps t = 1..T of the optimizer, the l1 penalty on the weights and the weight decay
// (coupled: g + wd w; adamw: decoupled), with the learning rate of each step from `lr_of`,
// written out for three parameters in double.
// lazy: the l1 step's lazy form (L1Form::lazy): the optimizer steps the weights' accumulated copy
// z and the weights are S_{lr lambda}(z) (the bias is stepped itself).
std::vector<double> closed_form(const OptimizerOptions& o, double lambda, double wd, std::size_t T,
                                const std::function<double(std::size_t)>& lr_of, bool lazy = false) {
    const Tiny p;
    double w[3] = {p.w0, p.w1, p.b};
    double z[3] = {p.w0, p.w1, p.b};
    double a[3] = {0, 0, 0}, v[3] = {0, 0, 0};
    const double mu = o.momentum, b1 = o.beta1, b2 = o.beta2, eps = o.eps;
    for (std::size_t t = 1; t <= T; ++t) {
        const double lr = lr_of(t - 1);
        const double r = w[0] * p.x0 + w[1] * p.x1 + w[2] - p.y;
        double g[3] = {2 * r * p.x0, 2 * r * p.x1, 2 * r};
        const bool decoupled = o.kind == OptimizerKind::adamw;
        if (!decoupled)
            for (int i = 0; i < 2; ++i) g[i] += wd * w[i];
        for (int i = 0; i < 3; ++i) {
            double y = 0, eta = lr;
            const double from_w = lazy && i < 2 ? z[i] : w[i];
            switch (o.kind) {
                case OptimizerKind::sgd: y = from_w - lr * g[i]; break;
                case OptimizerKind::momentum:
                    a[i] = mu * a[i] + g[i];
                    y = from_w - lr * a[i];
                    eta = lr * (1 - std::pow(mu, double(t))) / (1 - mu);
                    break;
                case OptimizerKind::nesterov:
                    a[i] = mu * a[i] + g[i];
                    y = from_w - lr * (g[i] + mu * a[i]);
                    eta = lr * (1 - std::pow(mu, double(t + 1))) / (1 - mu);
                    break;
                case OptimizerKind::adam:
                case OptimizerKind::adamw: {
                    a[i] = b1 * a[i] + (1 - b1) * g[i];
                    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
                    const double m_hat = a[i] / (1 - std::pow(b1, double(t)));
                    const double v_hat = v[i] / (1 - std::pow(b2, double(t)));
                    eta = lr / (std::sqrt(v_hat) + eps);
                    const double from = decoupled && i < 2 ? from_w - lr * wd * from_w : from_w;
                    y = from - eta * m_hat;
                    break;
                }
            }
            // The weights are soft-thresholded with the step's own size (lazy: at the level lr
            // lambda, from the accumulated copy); the bias is not penalized.
            if (lazy && i < 2) {
                z[i] = y;
                w[i] = std::copysign(std::max(std::fabs(y) - lr * lambda, 0.0), y);
            } else {
                w[i] = i < 2 ? std::copysign(std::max(std::fabs(y) - eta * lambda, 0.0), y) : y;
            }
        }
    }
    return {w[0], w[1], w[2]};
}

Dataset tiny_data() {
    const Tiny p;
    Dataset d;
    d.name = "tiny";
    d.task = Task::regression;
    d.n_samples = 1;
    d.n_features = 2;
    d.n_outputs = 1;
    d.x = {static_cast<float>(p.x0), static_cast<float>(p.x1)};
    d.y = {static_cast<float>(p.y)};
    return d;
}

Model tiny_model() {
    const Tiny p;
    Model m(ModelSpec::parse("dense:2-1"));
    m.weight(0)[0] = static_cast<float>(p.w0);
    m.weight(0)[1] = static_cast<float>(p.w1);
    m.bias(0)[0] = static_cast<float>(p.b);
    return m;
}

std::vector<double> trained(const TrainOptions& opt) {
    const TrainResult r = train(tiny_model(), tiny_data(), nullptr, opt);
    EXPECT_EQ(r.steps, opt.steps);
    return {r.model.weight(0)[0], r.model.weight(0)[1], r.model.bias(0)[0]};
}

TEST(Optimizers, EveryStepMatchesItsClosedForm) {
    const OptimizerKind kinds[] = {OptimizerKind::sgd, OptimizerKind::momentum, OptimizerKind::nesterov,
                                   OptimizerKind::adam, OptimizerKind::adamw};
    for (OptimizerKind k : kinds) {
        for (float wd : {0.0f, 0.5f}) {
            TrainOptions opt;
            opt.optimizer.kind = k;
            opt.optimizer.momentum = 0.8f;
            opt.optimizer.beta1 = 0.8f;
            opt.optimizer.beta2 = 0.9f;
            opt.optimizer.eps = 1e-3f;
            opt.lr = 0.05f;
            opt.lambdas = {0.3f};
            opt.weight_decay = wd;
            opt.steps = 6;
            opt.progress_seconds = 0;
            const std::vector<double> got = trained(opt);
            const std::vector<double> want = closed_form(opt.optimizer, 0.3, wd, opt.steps, [](std::size_t) { return 0.05; });
            for (int i = 0; i < 3; ++i)
                EXPECT_NEAR(got[i], want[i], 2e-6) << optimizer_name(k) << " wd " << wd << " parameter " << i;
            // The second weight starts small: the threshold must have zeroed it exactly.
            EXPECT_EQ(got[1], 0.0) << optimizer_name(k) << " wd " << wd;
            EXPECT_NE(got[0], 0.0) << optimizer_name(k);
        }
    }
    // The closed form tells the optimizers apart (so the comparison above can fail).
    OptimizerOptions m, n;
    m.kind = OptimizerKind::momentum;
    n.kind = OptimizerKind::nesterov;
    const auto lr = [](std::size_t) { return 0.05; };
    EXPECT_GT(std::fabs(closed_form(m, 0.3, 0, 6, lr)[0] - closed_form(n, 0.3, 0, 6, lr)[0]), 1e-3);
}

TEST(Optimizers, LazyL1StepMatchesItsClosedForm) {
    const OptimizerKind kinds[] = {OptimizerKind::sgd, OptimizerKind::momentum, OptimizerKind::nesterov,
                                   OptimizerKind::adam, OptimizerKind::adamw};
    for (OptimizerKind k : kinds) {
        for (float wd : {0.0f, 0.5f}) {
            TrainOptions opt;
            opt.method.l1.form = L1Form::lazy;
            opt.optimizer.kind = k;
            opt.optimizer.momentum = 0.8f;
            opt.optimizer.beta1 = 0.8f;
            opt.optimizer.beta2 = 0.9f;
            opt.optimizer.eps = 1e-3f;
            opt.lr = 0.05f;
            opt.lambdas = {1.2f};  // the level lr lambda = 0.06 lies above |w1| = 0.05
            opt.weight_decay = wd;
            opt.steps = 6;
            opt.progress_seconds = 0;
            const std::vector<double> got = trained(opt);
            const auto lr = [](std::size_t) { return 0.05; };
            const std::vector<double> want = closed_form(opt.optimizer, 1.2, wd, opt.steps, lr, true);
            for (int i = 0; i < 3; ++i)
                EXPECT_NEAR(got[i], want[i], 2e-6) << optimizer_name(k) << " wd " << wd << " parameter " << i;
            EXPECT_NE(got[0], 0.0) << optimizer_name(k);
            // The lazy and greedy forms differ, so the comparison above can fail.
            EXPECT_GT(std::fabs(want[0] - closed_form(opt.optimizer, 1.2, wd, opt.steps, lr, false)[0]), 1e-3)
                << optimizer_name(k) << " wd " << wd;
        }
    }
}

// The lazy form's threshold is a level, not a shrinkage per step: with no gradient on a weight it
// stays where it is (the greedy form takes lr lambda off it every step), and a weight below the
// level comes back once its gradients have carried z across it.
TEST(Optimizers, LazyL1ThresholdIsALevelAndPrunedWeightsComeBack) {
    // dense:2-1, MSE on one sample whose second input is 0: the second weight gets no gradient.
    Dataset d = tiny_data();
    d.x = {1.0f, 0.0f};
    d.y = {0.06f};
    Model m(ModelSpec::parse("dense:2-1"));
    m.weight(0)[0] = 0.01f;  // z below the level 0.05 for five steps, pulled up by the residual
    m.weight(0)[1] = 0.5f;   // no gradient: 0.5 - 0.05 under the lazy form for good
    m.bias(0)[0] = 0.0f;
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {0.5f};
    opt.steps = 20;
    opt.progress_seconds = 0;
    opt.record_nnz_history = true;
    opt.method.l1.form = L1Form::lazy;
    const TrainResult lazy = train(m, d, nullptr, opt);
    EXPECT_FLOAT_EQ(lazy.model.weight(0)[1], 0.45f);
    EXPECT_GT(lazy.model.weight(0)[0], 0.0f);
    ASSERT_FALSE(lazy.nnz_history.empty());
    EXPECT_EQ(lazy.nnz_history.front()[0], 1u);  // the first weight was pruned after step 1 ...
    EXPECT_EQ(lazy.nnz_history.back()[0], 2u);   // ... and is back by the end
    opt.method.l1.form = L1Form::greedy;
    const TrainResult greedy = train(m, d, nullptr, opt);
    EXPECT_EQ(greedy.model.weight(0)[1], 0.0f);  // 0.5 - 20 * 0.05 shrinks to zero
}

// A lazy run stopped in the band fine-tunes its pattern from the kept weights' accumulated values
// z (lazy_refit, docs/method.md §8.5), not from their thresholded values: a kept weight without
// gradient ends at its z, 0.5, where the greedy form leaves it one shrinkage below (0.45). The
// pruned weight stays pruned, the bias is the run's own.
TEST(Optimizers, LazyL1FineTuningStartsFromTheAccumulatedWeights) {
    // dense:3-1, MSE on one sample whose second and third inputs are 0: those weights get no gradient.
    Dataset d = tiny_data();
    d.n_features = 3;
    d.x = {1.0f, 0.0f, 0.0f};
    d.y = {0.9f};
    Model m(ModelSpec::parse("dense:3-1"));
    m.weight(0)[0] = 1.0f;
    m.weight(0)[1] = 0.5f;   // kept: above the level 0.05
    m.weight(0)[2] = 0.02f;  // pruned by the first step: below it
    m.bias(0)[0] = 0.0f;
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {0.5f};
    opt.steps = 10;
    opt.progress_seconds = 0;
    opt.stop.targets = {2};  // in the band after the first step: nine steps of fine-tuning
    opt.stop.tolerance = 0.0;
    opt.finetune = true;
    opt.method.l1.form = L1Form::lazy;
    const TrainResult lazy = train(m, d, nullptr, opt);
    EXPECT_TRUE(lazy.stopped_in_band);
    EXPECT_EQ(lazy.finetune_steps, 9u);
    EXPECT_FLOAT_EQ(lazy.model.weight(0)[1], 0.5f);
    EXPECT_EQ(lazy.model.weight(0)[2], 0.0f);
    EXPECT_NE(lazy.model.bias(0)[0], 0.0f);
    opt.method.l1.form = L1Form::greedy;
    const TrainResult greedy = train(m, d, nullptr, opt);
    EXPECT_TRUE(greedy.stopped_in_band);
    EXPECT_FLOAT_EQ(greedy.model.weight(0)[1], 0.45f);
}

TEST(Optimizers, ScheduledStepsMatchTheClosedForm) {
    for (OptimizerKind k : {OptimizerKind::sgd, OptimizerKind::adam}) {
        TrainOptions opt;
        opt.optimizer.kind = k;
        opt.optimizer.eps = 1e-3f;
        opt.lr = 0.05f;
        opt.lambdas = {0.1f};
        opt.steps = 9;
        opt.progress_seconds = 0;
        opt.lr_schedule.kind = LrScheduleKind::cosine;
        opt.lr_schedule.lr_min = 0.01f;
        opt.lr_schedule.warmup_steps = 3;
        const LrSchedule s = opt.lr_schedule;
        const std::vector<double> got = trained(opt);
        const std::vector<double> want =
            closed_form(opt.optimizer, 0.1, 0, opt.steps, [&](std::size_t t) { return double(s.lr_at(0.05f, t, 9)); });
        for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], want[i], 2e-6) << optimizer_name(k) << " parameter " << i;
        // ... and differ from the constant rate's.
        const std::vector<double> flat = closed_form(opt.optimizer, 0.1, 0, opt.steps, [](std::size_t) { return 0.05; });
        EXPECT_GT(std::fabs(flat[0] - want[0]), 1e-3) << optimizer_name(k);
    }
}

// ---- schedules -------------------------------------------------------------------------------------

TEST(LrSchedules, RateAtChosenSteps) {
    LrSchedule s;
    EXPECT_TRUE(s.is_constant());
    EXPECT_EQ(s.lr_at(0.1f, 0, 100), 0.1f);
    EXPECT_EQ(s.lr_at(0.1f, 99, 100), 0.1f);

    s.kind = LrScheduleKind::step;
    s.step_every = 10;
    s.gamma = 0.5f;
    EXPECT_FALSE(s.is_constant());
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 0, 100), 0.1f);
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 9, 100), 0.1f);
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 10, 100), 0.05f);
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 35, 100), 0.0125f);

    s.kind = LrScheduleKind::cosine;
    s.lr_min = 0.02f;
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 0, 100), 0.1f);
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 50, 100), 0.06f);  // halfway: the mean of lr and lr_min
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 100, 100), 0.02f);
    EXPECT_NEAR(s.lr_at(0.1f, 25, 100), 0.02 + 0.08 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-7);

    // Warm-up: (t + 1) / W of the rate, then the schedule counted from the warm-up's end.
    s.warmup_steps = 10;
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 0, 110), 0.01f);
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 4, 110), 0.05f);
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 9, 110), 0.1f);
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 10, 110), 0.1f);
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 60, 110), 0.06f);
    s.kind = LrScheduleKind::constant;
    EXPECT_FALSE(s.is_constant());
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 1, 110), 0.02f);
    EXPECT_FLOAT_EQ(s.lr_at(0.1f, 50, 110), 0.1f);
}

TEST(LrSchedules, BadValuesAreRejected) {
    const ModelSpec spec = ModelSpec::parse("dense:2-1");
    TrainOptions t;
    t.steps = 1;
    t.lr_schedule.kind = LrScheduleKind::step;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"step interval", "--lr-step-every"}));
    t.lr_schedule.step_every = 5;
    t.lr_schedule.gamma = 1.5f;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"decay factor 1.5"}));
    t.lr_schedule.gamma = 0.5f;
    t.validate(spec);
    t.lr_schedule.kind = LrScheduleKind::cosine;
    t.lr_schedule.lr_min = 0.5f;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"final learning rate 0.5"}));
    EXPECT_TRUE(throws_error_with([] { parse_lr_schedule("linear"); }, {"'linear'"}));
    EXPECT_EQ(parse_lr_schedule("cosine"), LrScheduleKind::cosine);
}

TEST(Optimizers, BadValuesAreRejected) {
    const ModelSpec spec = ModelSpec::parse("dense:2-1");
    TrainOptions t;
    t.steps = 1;
    t.optimizer.momentum = 1.0f;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"momentum 1"}));
    t.optimizer.momentum = 0.9f;
    t.optimizer.beta2 = -0.1f;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"beta2 -0.1"}));
    t.optimizer.beta2 = 0.999f;
    t.optimizer.eps = 0.0f;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"epsilon 0"}));
    EXPECT_TRUE(throws_error_with([] { parse_optimizer("rmsprop"); }, {"'rmsprop'"}));
    EXPECT_EQ(parse_optimizer("adamw"), OptimizerKind::adamw);
    EXPECT_STREQ(optimizer_name(OptimizerKind::nesterov), "nesterov");
}

// ---- the fixed point at a Lasso solution -----------------------------------------------------------

Dataset lasso_problem(std::size_t n, std::size_t p, std::uint32_t seed) {
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
    d.y.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        double s = 0.3;
        for (std::size_t j = 0; j < p; j += 3) s += double(d.x[i * p + j]) * (j % 2 ? -0.4 : 0.5);
        d.y[i] = static_cast<float>(s + 0.1 * g(rng));
    }
    return d;
}

// At a stationary point of L + lambda ||w||_1 (g = -lambda sign(w) on the support, |g| <= lambda
// off it) every proximal optimizer must leave the weights where they are, step after step, with
// the gradient there. The Lasso solution comes from plain proximal SGD run to convergence; its
// float residual delta = max |g + lambda sign(w)| bounds how far any correct step may move.
TEST(Optimizers, LassoSolutionIsAFixedPointOfEveryProximalOptimizer) {
    const Dataset d = lasso_problem(200, 19, 42);
    const float lambda = 0.05f;
    TrainOptions sgd;
    sgd.lr = 0.2f;
    sgd.lambdas = {lambda};
    sgd.steps = 20000;
    sgd.progress_seconds = 0;
    const TrainResult solved = train(Model::initialize(ModelSpec::parse("dense:19-1"), 3), d, nullptr, sgd);
    const std::vector<float> slab = solved.model.slab();
    std::vector<float> grad = loss_gradient(solved.model, d, Device{});
    const ParamLayout& layout = solved.model.layout();
    const ParamSegment& s = layout.segments[0];
    double delta = 0.0;
    std::size_t zeros = 0;
    for (std::size_t j = 0; j < s.n_weights; ++j) {
        const float w = slab[s.weight_offset + j], g = grad[s.weight_offset + j];
        if (w != 0.0f) delta = std::max(delta, std::fabs(g + lambda * (w > 0 ? 1.0 : -1.0)));
        else {
            ++zeros;
            ASSERT_LT(std::fabs(g), lambda) << "weight " << j << " is not strictly inside its zero band";
        }
    }
    ASSERT_LT(delta, 1e-4) << "the SGD run did not converge";
    ASSERT_GT(zeros, 0u);
    ASSERT_LT(zeros, s.n_weights);

    const std::size_t K = 50;
    const float lr = 1e-3f;
    for (OptimizerKind k : {OptimizerKind::sgd, OptimizerKind::momentum, OptimizerKind::nesterov, OptimizerKind::adam,
                            OptimizerKind::adamw}) {
        OptimizerOptions o;
        o.kind = k;
        auto b = make_cpu_backend();
        Buffer<float> params(*b, layout.slab_size), grads(*b, layout.slab_size),
            state(*b, 2 * layout.slab_size);
        params.upload(slab.data(), slab.size());
        grads.upload(grad.data(), grad.size());
        state.zero();
        const std::vector<float> hyper{lr, lambda};
        Buffer<float> h(*b, 2);
        h.upload(hyper.data(), 2);
        Buffer<std::uint64_t> nnz(*b, 1);
        opt::State st;
        st.a = state.data();
        st.b = state.data() + layout.slab_size;
        for (std::size_t t = 1; t <= K; ++t)
            b->prox_optimizer_step(params.data(), grads.data(), st, layout, h.data(), opt::make_step(o, 0.0f, t), nullptr,
                                   nnz.data());
        const std::vector<float> after = params.to_host();
        // Per step a correct step moves a weight by at most its step size times delta: lr / (1 - mu)
        // for momentum, lr / (lambda - delta) for Adam (|g| >= lambda - delta on the support).
        const double step = std::max(lr / (1.0 - o.momentum), lr / (lambda - delta));
        const double bound = double(K) * step * delta + 1e-6;
        double moved = 0.0;
        for (std::size_t j = 0; j < s.n_weights; ++j) {
            const float w0 = slab[s.weight_offset + j], w1 = after[s.weight_offset + j];
            if (w0 == 0.0f) EXPECT_EQ(w1, 0.0f) << optimizer_name(k) << ": weight " << j << " left zero";
            else EXPECT_EQ(w1 > 0, w0 > 0) << optimizer_name(k) << ": weight " << j << " changed sign";
            moved = std::max(moved, std::fabs(double(w1) - w0));
        }
        EXPECT_LE(moved, bound) << optimizer_name(k);
        // The threshold is what holds the point: Adam's step with the plain lr lambda threshold
        // (not the per-coordinate eta lambda) moves the support by about lr per step.
        if (k == OptimizerKind::adam) {
            double naive = 0.0;
            for (std::size_t j = 0; j < s.n_weights; ++j) {
                const double w = slab[s.weight_offset + j], g = grad[s.weight_offset + j];
                const double y = w - lr * g / (std::fabs(g) + o.eps);  // the first Adam step: m_hat = g, v_hat = g^2
                naive = std::max(naive, std::fabs(std::copysign(std::max(std::fabs(y) - lr * lambda, 0.0), y) - w));
            }
            EXPECT_GT(naive, 100 * bound / double(K));
        }
    }
}

// ---- every method with another optimizer -------------------------------------------------------------

Dataset blobs(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> noise(0.0f, 0.6f);
    Dataset d;
    d.name = "blobs";
    d.task = Task::classification;
    d.n_samples = n;
    d.n_features = 12;
    d.n_outputs = 3;
    for (std::size_t i = 0; i < n; ++i) {
        const int c = static_cast<int>(i % 3);
        for (std::size_t f = 0; f < 12; ++f) d.x.push_back(noise(rng) + (f % 3 == static_cast<std::size_t>(c) ? 1.5f : 0.0f));
        d.labels.push_back(c);
    }
    return d;
}

TEST(Optimizers, EveryMethodTrainsWithMomentumAndAdam) {
    const Dataset d = blobs(384, 3);
    const Model init = Model::initialize(ModelSpec::parse("dense:12-16-3"), 2);
    const Evaluation before = evaluate(init, d, Device{});
    for (Method m : {Method::l1, Method::l0, Method::spred, Method::gmp}) {
        for (OptimizerKind k : {OptimizerKind::nesterov, OptimizerKind::adamw}) {
            TrainOptions t;
            t.method.method = m;
            t.optimizer.kind = k;
            t.lr = k == OptimizerKind::adamw ? 0.01f : (m == Method::spred ? 0.1f : 0.02f);
            t.weight_decay = 1e-4f;
            t.lambdas = {1e-3f};
            t.batch_size = 32;
            t.steps = 400;
            t.progress_seconds = 0;
            if (m == Method::gmp) t.stop.targets = {60};
            const TrainResult r = train(init, d, nullptr, t);
            const std::string what = std::string(method_name(m)) + " " + optimizer_name(k);
            EXPECT_EQ(r.steps, 400u) << what;
            EXPECT_LT(r.train_eval.loss, 0.5 * before.loss) << what;
            EXPECT_GT(r.train_eval.accuracy, 0.9) << what;
            if (m == Method::gmp) EXPECT_EQ(r.model.nnz_total(), 60u) << what << ": the mask holds";
        }
    }
}

TEST(Optimizers, FinetuneWithAdamKeepsTheInBandPattern) {
    const Dataset d = blobs(384, 5);
    const Model init = Model::initialize(ModelSpec::parse("dense:12-16-3"), 4);
    TrainOptions t;
    t.optimizer.kind = OptimizerKind::adam;
    t.lr = 0.01f;
    t.lambdas = {0.05f};
    t.batch_size = 32;
    t.steps = 1200;
    t.stop.targets = {100};
    t.stop.tolerance = 0.05;
    t.progress_seconds = 0;
    t.lr_schedule.kind = LrScheduleKind::cosine;  // runs on through the fine-tuning phase
    const TrainResult stop = train(init, d, nullptr, t);
    ASSERT_TRUE(stop.stopped_in_band);
    ASSERT_LT(stop.steps, 1200u);
    t.finetune = true;
    const TrainResult ft = train(init, d, nullptr, t);
    EXPECT_EQ(ft.steps, 1200u);
    EXPECT_GT(ft.finetune_steps, 0u);
    const ParamLayout& layout = ft.model.layout();
    for (std::size_t l = 0; l < layout.segments.size(); ++l)
        for (std::size_t i = 0; i < layout.segments[l].n_weights; ++i)
            if (ft.model.weight(l)[i] != 0.0f) EXPECT_NE(stop.model.weight(l)[i], 0.0f) << l << " " << i;
    EXPECT_LE(ft.model.nnz_total(), stop.model.nnz_total());
}

}  // namespace
}  // namespace sparseprox
