// The l0, spred and gmp methods on the CPU: gate layouts, gradients against finite differences
// at fixed noise, spred's penalty at balanced factors, the GMP schedule and its exact pruning,
// and each method reaching a target through train, the search and the command line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/engine.h"
#include "core/sparsify.h"
#include "core/train_loop.h"
#include "cpu/gmp.h"
#include "cpu/l0_gates.h"
#include "cpu/spred.h"
#include "sparseprox/sparseprox.h"
#include "test_util.h"

namespace sparseprox {
namespace {

using testing_util::throws_error_with;

Dataset classes(std::size_t n, std::size_t n_features, std::size_t n_classes, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> noise(0.0f, 0.6f);
    std::uniform_int_distribution<int> pick(0, static_cast<int>(n_classes) - 1);
    Dataset d;
    d.name = "classes";
    d.task = Task::classification;
    d.n_samples = n;
    d.n_features = n_features;
    d.n_outputs = n_classes;
    for (std::size_t i = 0; i < n; ++i) {
        const int c = pick(rng);
        for (std::size_t f = 0; f < n_features; ++f)
            d.x.push_back(noise(rng) + (f % n_classes == static_cast<std::size_t>(c) ? 1.5f : 0.0f));
        d.labels.push_back(c);
    }
    return d;
}

Dataset images(std::size_t n, std::uint32_t seed) {  // 1 x 8 x 8, 3 classes
    std::mt19937 rng(seed);
    std::normal_distribution<float> noise(0.0f, 0.5f);
    Dataset d;
    d.name = "images";
    d.task = Task::classification;
    d.n_samples = n;
    d.n_features = 64;
    d.n_outputs = 3;
    for (std::size_t i = 0; i < n; ++i) {
        const int c = static_cast<int>(i % 3);
        for (std::size_t p = 0; p < 64; ++p) {
            const std::size_t r = p / 8, col = p % 8;
            const bool on = c == 0 ? r < 3 : (c == 1 ? col < 3 : r == col);
            d.x.push_back(noise(rng) + (on ? 1.0f : 0.0f));
        }
        d.labels.push_back(c);
    }
    return d;
}

ModelSpec small_cnn() {
    return ModelSpec::from_json(R"({"input_shape": [1, 8, 8], "layers": [
        {"type": "conv2d", "filters": 4, "kernel": 3, "padding": 1, "activation": "relu"},
        {"type": "maxpool2d", "kernel": 2}, {"type": "dense", "units": 3}]})");
}

// ---- gate layout -------------------------------------------------------------------------------

TEST(GateLayout, PerWeightColumnAndFilterGates) {
    const ModelSpec spec = small_cnn();  // conv 4x1x3x3 (36), dense 3x64 (192)
    const ParamLayout layout = ParamLayout::of(spec);
    L0Options o;
    const sparsify::GateLayout per_weight = sparsify::GateLayout::of(spec, layout, o);
    EXPECT_EQ(per_weight.n_gates, 36u + 192u);
    EXPECT_EQ(per_weight.segments[1].gate_offset, 36u);
    EXPECT_FLOAT_EQ(per_weight.segments[0].log_alpha0, std::log(0.8f / 0.2f));
    EXPECT_FLOAT_EQ(per_weight.segments[1].log_alpha0, 0.0f);
    o.group = true;
    const sparsify::GateLayout group = sparsify::GateLayout::of(spec, layout, o);
    ASSERT_EQ(group.n_gates, 4u + 64u);  // output filters, input neurons
    const sparsify::GateSegment& conv = group.segments[0];
    const sparsify::GateSegment& dense = group.segments[1];
    EXPECT_EQ(conv.map, sparsify::kBlock);
    EXPECT_EQ(conv.per_gate, 9u);
    EXPECT_EQ(sparsify::gate_of(conv, 17), 1u);  // filter 1 holds weights 9..17
    EXPECT_EQ(dense.map, sparsify::kColumn);
    EXPECT_EQ(dense.per_gate, 3u);
    EXPECT_EQ(sparsify::gate_of(dense, 64 + 5), 5u);  // row 1, column 5
}

// ---- l0 gradients at fixed noise against finite differences ------------------------------------

// The objective of one l0 step at fixed noise: the batch loss at w = theta * z(u, log alpha) plus
// sum lambda_l per_gate expected_l0(log alpha).
struct L0Objective {
    ModelSpec spec;
    ParamLayout layout;
    sparsify::GateLayout gates;
    gates::HardConcrete hc;
    std::vector<float> lambdas;
    const Dataset* data;
    std::unique_ptr<Engine> engine;
    std::uint64_t seed = 77, step = 5;

    L0Objective(const ModelSpec& s, const L0Options& o, const Dataset& d)
        : spec(s), layout(ParamLayout::of(s)), gates(sparsify::GateLayout::of(s, layout, o)), data(&d),
          engine(make_cpu_engine(s, Loss::cross_entropy)) {
        for (std::size_t l = 0; l < layout.segments.size(); ++l) lambdas.push_back(0.01f * static_cast<float>(l + 1));
    }
    std::vector<float> effective(const std::vector<float>& theta, const std::vector<float>& la) const {
        std::vector<float> eff(layout.slab_size, 0.0f);
        cpu::l0_effective(theta.data(), la.data(), gates, layout, hc, seed, step, eff.data());
        return eff;
    }
    double value(const std::vector<float>& theta, const std::vector<float>& la) {
        engine->set_params(effective(theta, la));
        double v = engine->evaluate(*data, 4096).loss;
        for (std::size_t l = 0; l < gates.segments.size(); ++l) {
            const sparsify::GateSegment& g = gates.segments[l];
            for (std::size_t k = 0; k < g.n_gates; ++k)
                v += static_cast<double>(lambdas[l]) * static_cast<double>(g.per_gate) *
                     gates::expected_l0(la[g.gate_offset + k], hc);
        }
        return v;
    }
    void gradients(const std::vector<float>& theta, const std::vector<float>& la, std::vector<float>& theta_grad,
                   std::vector<float>& gate_grad) {
        engine->set_params(effective(theta, la));
        const std::vector<float> g = engine->gradient(*data, 4096);
        theta_grad.assign(layout.slab_size, 0.0f);
        gate_grad.assign(gates.n_gates, 0.0f);
        cpu::l0_gradients(theta.data(), la.data(), g.data(), gates, hc, seed, step, lambdas.data(), theta_grad.data(),
                          gate_grad.data());
    }
};

void check_l0_gradients(const ModelSpec& spec, bool group, const Dataset& data) {
    L0Options o;
    o.group = group;
    L0Objective f(spec, o, data);
    const Model init = Model::initialize(spec, 3);
    std::vector<float> theta = init.slab();
    std::vector<float> la(f.gates.n_gates);
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> spread(-1.5f, 2.5f);
    for (float& v : la) v = spread(rng);
    std::vector<float> tg, gg;
    f.gradients(theta, la, tg, gg);

    // Gates whose sample sits on a clamp edge are not differentiable there: skip those within h.
    const float h = 1e-2f;
    std::size_t checked = 0;
    for (std::size_t gate = 0; gate < f.gates.n_gates; gate += group ? 1 : 7) {
        const float u = sparsify::gate_noise(f.seed, f.step, gate);
        auto s_bar = [&](float a) { return gates::sigmoid((std::log(u) - std::log(1 - u) + a) / f.hc.beta) * 1.2f - 0.1f; };
        const float lo = s_bar(la[gate] - h), hi = s_bar(la[gate] + h);
        if ((lo < 0.0f) != (hi < 0.0f) || (lo > 1.0f) != (hi > 1.0f)) continue;
        std::vector<float> a = la, b = la;
        a[gate] += h;
        b[gate] -= h;
        const double fd = (f.value(theta, a) - f.value(theta, b)) / (2.0 * h);
        EXPECT_NEAR(gg[gate], fd, 2e-3 + 2e-2 * std::fabs(fd)) << "gate " << gate << (group ? " (group)" : "");
        ++checked;
    }
    EXPECT_GT(checked, 5u);
    // theta: dL/dtheta = g z
    const float ht = 1e-3f;
    for (std::size_t l = 0; l < f.layout.segments.size(); ++l) {
        const ParamSegment& s = f.layout.segments[l];
        for (std::size_t i = 0; i < s.n_weights; i += 13) {
            std::vector<float> a = theta, b = theta;
            a[s.weight_offset + i] += ht;
            b[s.weight_offset + i] -= ht;
            const double fd = (f.value(a, la) - f.value(b, la)) / (2.0 * ht);
            EXPECT_NEAR(tg[s.weight_offset + i], fd, 2e-3 + 2e-2 * std::fabs(fd)) << "layer " << l << " weight " << i;
        }
    }
}

TEST(L0Gradients, PerWeightGatesMatchFiniteDifferences) {
    const Dataset d = classes(64, 6, 3, 1);
    check_l0_gradients(ModelSpec::parse("dense:6-5-3"), false, d);
}

TEST(L0Gradients, GroupGatesMatchFiniteDifferences) {
    const Dataset d = classes(64, 6, 3, 2);
    check_l0_gradients(ModelSpec::parse("dense:6-5-3"), true, d);
    const Dataset im = images(24, 3);
    check_l0_gradients(small_cnn(), true, im);
}

TEST(L0Export, ClosedGatesGiveExactZerosAndCounts) {
    const ModelSpec spec = ModelSpec::parse("dense:4-3-2");
    const ParamLayout layout = ParamLayout::of(spec);
    L0Options o;
    o.group = true;  // gates on the 4 and 3 input neurons
    const sparsify::GateLayout gl = sparsify::GateLayout::of(spec, layout, o);
    std::vector<float> theta = Model::initialize(spec, 1).slab();
    std::vector<float> la = {5.0f, -5.0f, 5.0f, 0.0f, -5.0f, 5.0f, 5.0f};
    std::vector<float> out(layout.slab_size);
    std::vector<std::size_t> nnz(2);
    gates::HardConcrete hc;
    cpu::l0_export(theta.data(), la.data(), gl, layout, hc, out.data(), nnz.data());
    EXPECT_EQ(nnz[0], 3u * 3u);  // columns 0, 2, 3 open (log alpha 0 gives z = 0.5)
    EXPECT_EQ(nnz[1], 2u * 2u);
    const float* w0 = out.data() + layout.segments[0].weight_offset;
    const float* t0 = theta.data() + layout.segments[0].weight_offset;
    for (std::size_t r = 0; r < 3; ++r) {
        EXPECT_EQ(w0[r * 4 + 1], 0.0f);
        EXPECT_EQ(w0[r * 4 + 0], t0[r * 4 + 0] * gates::test_gate(5.0f, hc));
        EXPECT_EQ(w0[r * 4 + 3], t0[r * 4 + 3] * 0.5f);
    }
    Model m(spec);
    m.slab() = out;
    EXPECT_EQ(m.alive_units(), (std::vector<std::size_t>{3, 2}));
}

// ---- spred ---------------------------------------------------------------------------------------

TEST(Spred, PenaltyEqualsL1AtBalancedFactors) {
    std::mt19937 rng(4);
    std::normal_distribution<float> w(0.0f, 0.3f);
    const float lambda = 0.37f;
    for (int i = 0; i < 1000; ++i) {
        const float x = w(rng);
        const float u = sparsify::spred_split_u(x), v = sparsify::spred_split_v(x);
        const double penalty = 0.5 * lambda * (static_cast<double>(u) * u + static_cast<double>(v) * v);
        EXPECT_NEAR(penalty, lambda * std::fabs(static_cast<double>(x)), 1e-6 * (1.0 + std::fabs(x)));
        EXPECT_NEAR(u * v, x, 1e-6f * (1.0f + std::fabs(x)));
        EXPECT_EQ(std::fabs(u), v);
    }
    EXPECT_EQ(sparsify::spred_readout(0.01f, 0.05f, 1e-3f), 0.0f);  // 5e-4 <= threshold
    EXPECT_EQ(sparsify::spred_readout(0.1f, -0.05f, 1e-3f), 0.1f * -0.05f);
}

TEST(Spred, StepIsGradientDescentOnLossPlusDecay) {
    // One step from (u, v) on g = dL/dw: the gradient of L(u v) + lambda/2 (u^2 + v^2).
    float u = 0.3f, v = -0.2f;
    sparsify::spred_step(u, v, 0.5f, 0.1f, 0.2f);
    EXPECT_FLOAT_EQ(u, 0.3f - 0.1f * (0.5f * -0.2f + 0.2f * 0.3f));
    EXPECT_FLOAT_EQ(v, -0.2f - 0.1f * (0.5f * 0.3f + 0.2f * -0.2f));
}

// ---- gmp -----------------------------------------------------------------------------------------

TEST(Gmp, ScheduleKeepsTheCubicCounts) {
    const ModelSpec spec = ModelSpec::parse("dense:10-20-5");  // 200 + 100 weights
    const ParamLayout layout = ParamLayout::of(spec);
    TrainOptions t;
    t.method.method = Method::gmp;
    t.method.gmp.begin = 0.1;
    t.method.gmp.end = 0.6;
    t.method.gmp.interval = 10;
    t.stop.targets = {30};
    const sparsify::MethodConfig c = sparsify::make_method_config(t, 200);
    EXPECT_EQ(c.gmp_begin, 20u);
    EXPECT_EQ(c.gmp_end, 120u);
    EXPECT_TRUE(sparsify::gmp_keep(c, layout, 19).empty());
    EXPECT_TRUE(sparsify::gmp_keep(c, layout, 25).empty());    // between events
    EXPECT_TRUE(sparsify::gmp_keep(c, layout, 130).empty());   // after the end
    EXPECT_EQ(sparsify::gmp_keep(c, layout, 20), (std::vector<std::size_t>{300}));
    EXPECT_EQ(sparsify::gmp_keep(c, layout, 120), (std::vector<std::size_t>{30}));
    // Halfway: s = s_f (1 - (1/2)^3) = 0.9 * 7/8, keep round(300 (1 - s)) = 64 (63.75).
    EXPECT_EQ(sparsify::gmp_keep(c, layout, 70), (std::vector<std::size_t>{64}));
    // Per layer with one total target: the same density in each layer.
    t.method.gmp.per_layer = true;
    const sparsify::MethodConfig p = sparsify::make_method_config(t, 200);
    EXPECT_EQ(sparsify::gmp_keep(p, layout, 120), (std::vector<std::size_t>{20, 10}));
    // Per-layer targets.
    t.stop.targets = {50, 7};
    const sparsify::MethodConfig q = sparsify::make_method_config(t, 200);
    EXPECT_EQ(sparsify::gmp_keep(q, layout, 120), (std::vector<std::size_t>{50, 7}));
}

TEST(Gmp, PruneKeepsExactlyTheLargestWithTiesToLowerIndices) {
    const ModelSpec spec = ModelSpec::parse("dense:3-2-2");  // 6 + 4 weights
    const ParamLayout layout = ParamLayout::of(spec);
    std::vector<float> w(layout.slab_size, 0.0f);
    const std::vector<float> l0 = {0.5f, -0.5f, 0.1f, 0.5f, 0.2f, -0.9f}, l1 = {0.5f, 0.3f, -0.3f, 0.05f};
    std::copy(l0.begin(), l0.end(), w.begin() + static_cast<std::ptrdiff_t>(layout.segments[0].weight_offset));
    std::copy(l1.begin(), l1.end(), w.begin() + static_cast<std::ptrdiff_t>(layout.segments[1].weight_offset));
    std::vector<std::uint8_t> mask(layout.slab_size, 1);
    std::vector<float> g = w;
    cpu::gmp_prune(g.data(), mask.data(), layout, {4});  // global: -0.9, then the first three 0.5
    Model m(spec);
    m.slab() = g;
    EXPECT_EQ(m.nnz(), (std::vector<std::size_t>{4, 0}));
    EXPECT_EQ(g[layout.segments[0].weight_offset + 3], 0.5f);
    EXPECT_EQ(g[layout.segments[1].weight_offset + 0], 0.0f);  // the fourth 0.5 has the highest index
    std::vector<float> p = w;
    std::fill(mask.begin(), mask.end(), 1);
    cpu::gmp_prune(p.data(), mask.data(), layout, {2, 2});  // per layer
    m.slab() = p;
    EXPECT_EQ(m.nnz(), (std::vector<std::size_t>{2, 2}));
    EXPECT_EQ(p[layout.segments[0].weight_offset + 0], 0.5f);
    EXPECT_EQ(p[layout.segments[0].weight_offset + 1], 0.0f);   // tie lost to index 0
    EXPECT_EQ(p[layout.segments[1].weight_offset + 1], 0.3f);   // 0.3 and -0.3 tie: index 1 wins
    EXPECT_EQ(p[layout.segments[1].weight_offset + 2], 0.0f);
    // A masked SGD step keeps pruned weights at exact zero.
    std::vector<float> grads(layout.slab_size, 1.0f);
    std::vector<std::size_t> nnz(2);
    cpu::masked_sgd(p.data(), grads.data(), mask.data(), layout, 0.01f, nnz.data());
    EXPECT_EQ(nnz, (std::vector<std::size_t>{2, 2}));
    EXPECT_EQ(p[layout.segments[0].weight_offset + 1], 0.0f);
}

// ---- training with each method -------------------------------------------------------------------

TrainOptions method_options(Method m) {
    TrainOptions t;
    t.device = Device{};
    t.method.method = m;
    t.lr = m == Method::spred ? 0.5f : 0.1f;
    t.batch_size = 32;
    t.steps = 1500;
    t.progress_seconds = 0;
    t.seed = 4;
    return t;
}

TEST(Methods, GmpTrainsToTheExactTarget) {
    const Dataset d = classes(512, 12, 3, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:12-16-3"), 2);  // 192 + 48
    TrainOptions t = method_options(Method::gmp);
    t.stop.targets = {40};
    const TrainResult r = train(init, d, nullptr, t);
    EXPECT_EQ(r.model.nnz_total(), 40u);
    EXPECT_TRUE(r.stopped_in_band);
    EXPECT_EQ(r.steps, 1500u);  // the whole budget: no early stop
    EXPECT_GT(r.train_eval.accuracy, 0.8);
    t.stop.targets = {30, 10};
    const TrainResult p = train(init, d, nullptr, t);
    EXPECT_EQ(p.model.nnz(), (std::vector<std::size_t>{30, 10}));
}

TEST(Methods, EveryMethodStopsInTheBandAndSavesExactZeros) {
    const Dataset d = classes(512, 12, 3, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:12-16-3"), 2);
    for (Method m : {Method::l0, Method::spred}) {
        SearchOptions o;
        o.train = method_options(m);
        o.train.steps = 3000;
        o.train.stop.targets = {60};
        o.train.stop.tolerance = 0.05;
        o.strategy = SearchStrategy::paper;
        o.max_outer = 30;
        const SearchResult r = LambdaSearch(o).run(init, d, nullptr);
        ASSERT_TRUE(r.reached) << method_name(m) << ": " << r.outer_iterations << " runs";
        EXPECT_NEAR(static_cast<double>(r.run.model.nnz_total()), 60.0, 3.0) << method_name(m);
        EXPECT_EQ(r.run.method, m);
        // The returned model holds the exported weights: its exact zeros are the count.
        EXPECT_EQ(r.run.model.nnz(), r.run.nnz);
        for (std::size_t k = 2; k < r.iterations.size(); ++k)
            EXPECT_NE(r.iterations[k].rule, LambdaRule::median) << "no candidate rule outside l1";
        // The model evaluates the same as it scored in training.
        const Evaluation e = evaluate(r.run.model, d, Device{});
        EXPECT_NEAR(e.loss, r.run.train_eval.loss, 1e-9) << method_name(m);
    }
}

TEST(Methods, L0GroupGatesKillWholeUnits) {
    const Dataset d = classes(512, 12, 3, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:12-16-3"), 2);
    TrainOptions t = method_options(Method::l0);
    t.method.l0.group = true;
    t.lambdas = {0.004f};
    t.steps = 2000;
    const TrainResult r = train(init, d, nullptr, t);
    // Every weight column is all zero or all nonzero: the units are removed whole.
    const ParamSegment& s = r.model.layout().segments[0];
    const float* w = r.model.weight(0);
    std::size_t alive = 0;
    for (std::size_t c = 0; c < 12; ++c) {
        std::size_t nz = 0;
        for (std::size_t row = 0; row < 16; ++row) nz += w[row * 12 + c] != 0.0f;
        EXPECT_TRUE(nz == 0 || nz == 16) << "column " << c << ": " << nz;
        alive += nz != 0;
    }
    EXPECT_EQ(r.alive[0], alive);
    EXPECT_LT(alive, 12u) << "some input neurons should be gated off";
    EXPECT_GT(alive, 0u);
    (void)s;
}

TEST(Methods, L0NoiseIsReproducibleForASeed) {
    const Dataset d = classes(256, 12, 3, 8);
    const Model init = Model::initialize(ModelSpec::parse("dense:12-16-3"), 2);
    TrainOptions t = method_options(Method::l0);
    t.lambdas = {0.01f};
    t.steps = 200;
    const TrainResult a = train(init, d, nullptr, t), b = train(init, d, nullptr, t);
    EXPECT_EQ(a.model.slab(), b.model.slab());
    t.seed = 5;
    const TrainResult c = train(init, d, nullptr, t);
    EXPECT_NE(a.model.slab(), c.model.slab());
}

TEST(Methods, FinetuneKeepsTheInBandPatternForTheRestOfTheBudget) {
    const Dataset d = classes(512, 12, 3, 7);
    const Model init = Model::initialize(ModelSpec::parse("dense:12-16-3"), 2);
    for (Method m : {Method::l1, Method::spred}) {
        TrainOptions t = method_options(m);
        t.lambdas = {m == Method::l1 ? 0.02f : 0.05f};
        t.steps = 3000;
        t.stop.targets = {100};
        t.stop.tolerance = 0.05;
        const TrainResult stop = train(init, d, nullptr, t);
        ASSERT_TRUE(stop.stopped_in_band) << method_name(m);
        ASSERT_LT(stop.steps, 3000u) << method_name(m);
        t.finetune = true;
        const TrainResult ft = train(init, d, nullptr, t);
        EXPECT_TRUE(ft.stopped_in_band);
        EXPECT_EQ(ft.steps, 3000u) << method_name(m);
        EXPECT_EQ(ft.finetune_steps, 3000u - stop.steps) << method_name(m);
        // The pattern is the in-band step's: the same weights are nonzero.
        const ParamLayout& layout = ft.model.layout();
        for (std::size_t l = 0; l < layout.segments.size(); ++l)
            for (std::size_t i = 0; i < layout.segments[l].n_weights; ++i)
                EXPECT_EQ(ft.model.weight(l)[i] != 0.0f, stop.model.weight(l)[i] != 0.0f) << l << " " << i;
        EXPECT_LE(ft.train_eval.loss, stop.train_eval.loss) << method_name(m);
        // The fine-tuning phase has its own step size: a negligible one leaves the in-band weights.
        t.finetune_lr = 1e-12f;
        const TrainResult still = train(init, d, nullptr, t);
        EXPECT_EQ(still.steps, 3000u);
        for (std::size_t i = 0; i < still.model.slab().size(); ++i)
            EXPECT_NEAR(still.model.slab()[i], stop.model.slab()[i], 1e-6f) << method_name(m) << " " << i;
    }
}

TEST(Methods, BadMethodOptionsAreRejected) {
    const ModelSpec spec = ModelSpec::parse("dense:12-16-3");
    TrainOptions t = method_options(Method::gmp);
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"gmp needs a target NNZ"}));
    t.stop.targets = {40};
    t.method.gmp.begin = 0.8;
    t.method.gmp.end = 0.5;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"begin 0.8", "end 0.5"}));
    t = method_options(Method::l0);
    t.method.l0.drop_init = 1.0f;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"drop rate 1"}));
    t.method.l0.drop_init = 0.5f;
    t.method.l0.zeta = 0.9f;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"zeta 0.9"}));
    t = method_options(Method::spred);
    t.method.spred.threshold = -1.0f;
    EXPECT_TRUE(throws_error_with([&] { t.validate(spec); }, {"threshold -1"}));
    EXPECT_TRUE(throws_error_with([] { parse_method("l2"); }, {"unknown method 'l2'"}));
    EXPECT_EQ(parse_method("spred"), Method::spred);
}

// A CPU engine for `spec` (MSE) set to the lazy l1 form, 10 steps.
std::unique_ptr<Engine> lazy_cpu_engine(const ModelSpec& spec) {
    TrainOptions opt;
    opt.method.l1.form = L1Form::lazy;
    auto engine = make_cpu_engine(spec, Loss::mse);
    engine->set_method(sparsify::make_method_config(opt, 10));
    return engine;
}

// Engine::set_lazy_state (the lazy form's gradual trim in the adaptive search): weights cut from
// w and z mid-run stay cut while their gradients, added up again from zero, do not cross the
// level lr lambda; the run's step count goes on.
TEST(LazyL1, CutWeightsRestartFromZeroMidRun) {
    const ModelSpec spec = ModelSpec::parse("dense:3-1");
    Dataset d;
    d.name = "lazy";
    d.task = Task::regression;
    d.n_samples = 1;
    d.n_features = 3;
    d.n_outputs = 1;
    d.x = {1.0f, 1.0f, 0.0f};  // the third weight gets no gradient
    d.y = {2.0f};
    auto engine = lazy_cpu_engine(spec);
    Model m(spec);
    m.weight(0)[0] = 1.0f;
    m.weight(0)[1] = 0.5f;
    m.weight(0)[2] = 0.3f;
    m.bias(0)[0] = 0.0f;
    const std::size_t o = m.layout().segments[0].weight_offset;  // w[o + i]: weight i
    engine->set_params(m.slab());
    engine->set_hyper(0.1f, {0.5f});               // the level 0.05
    engine->set_train_data(d);
    engine->set_order({0});
    engine->step(0, 1);
    std::vector<float> w = engine->get_params(), z = engine->get_accumulated();
    ASSERT_EQ(w.size(), m.slab().size());
    EXPECT_FLOAT_EQ(std::fabs(z[o + 0]) - 0.05f, std::fabs(w[o + 0]));  // w = S(z)
    EXPECT_FLOAT_EQ(z[o + 2], 0.3f);
    w[o + 1] = w[o + 2] = 0.0f;
    z[o + 1] = z[o + 2] = 0.0f;
    engine->set_lazy_state(w, z);
    EngineStatus st = engine->status();
    EXPECT_EQ(st.steps_run, 1u) << "the run goes on";
    EXPECT_EQ(st.nnz[0], 1u);
    engine->step(0, 1);
    w = engine->get_params();
    z = engine->get_accumulated();
    EXPECT_EQ(engine->status().steps_run, 2u);
    EXPECT_EQ(z[o + 2], 0.0f) << "no gradient: it stays cut";
    EXPECT_EQ(w[o + 2], 0.0f);
    EXPECT_NE(z[o + 1], 0.0f) << "its gradient accumulates again from zero";
    EXPECT_LT(std::fabs(z[o + 1]), 0.5f);
    EXPECT_FLOAT_EQ(w[o + 1], std::copysign(std::max(std::fabs(z[o + 1]) - 0.05f, 0.0f), z[o + 1]));
    EXPECT_NE(w[o + 0], 0.0f);
    // Only a lazy run has a z to set.
    TrainOptions greedy;
    engine->set_method(sparsify::make_method_config(greedy, 10));
    engine->set_params(m.slab());
    try {
        engine->set_lazy_state(w, z);
        ADD_FAILURE() << "set_lazy_state on a greedy run did not throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("lazy"), std::string::npos) << e.what();
    }
}


// lazy_refit: every nonzero weight takes its accumulated value, pruned weights and biases stay;
// a z of another size is an error naming both sizes.
TEST(LazyL1, RefitReplacesKeptWeightsOnly) {
    const ModelSpec spec = ModelSpec::parse("dense:3-1");
    Model m(spec);
    m.weight(0)[0] = 0.25f;
    m.weight(0)[1] = 0.0f;
    m.weight(0)[2] = -0.5f;
    m.bias(0)[0] = 0.125f;
    std::vector<float> z(m.slab().size(), 9.0f);
    const std::size_t o = m.layout().segments[0].weight_offset;
    z[o + 0] = 0.75f;
    z[o + 1] = 0.01f;
    z[o + 2] = -1.0f;
    Model r(spec);
    r.slab() = lazy_refit(m.slab(), z, m.layout());
    EXPECT_EQ(r.weight(0)[0], 0.75f);
    EXPECT_EQ(r.weight(0)[1], 0.0f);
    EXPECT_EQ(r.weight(0)[2], -1.0f);
    EXPECT_EQ(r.bias(0)[0], 0.125f);
    try {
        lazy_refit(m.slab(), std::vector<float>(3, 0.0f), m.layout());
        ADD_FAILURE() << "a z of the wrong size was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("3 accumulated values"), std::string::npos) << e.what();
    }
}

// set_lazy_state with slabs of the wrong size is an error naming the sizes, and changes nothing.
TEST(LazyL1, SetLazyStateChecksTheSlabSizes) {
    const ModelSpec spec = ModelSpec::parse("dense:3-1");
    auto engine = lazy_cpu_engine(spec);
    Model m(spec);
    m.weight(0)[0] = 1.0f;
    engine->set_params(m.slab());
    const std::vector<float> good(m.slab().size(), 0.0f), short_slab(2, 0.0f);
    for (int which = 0; which < 2; ++which) {
        try {
            engine->set_lazy_state(which ? good : short_slab, which ? short_slab : good);
            ADD_FAILURE() << "slabs of the wrong size were accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("the model needs"), std::string::npos) << e.what();
        }
    }
    EXPECT_EQ(engine->get_params(), m.slab());
}
}  // namespace
}  // namespace sparseprox
