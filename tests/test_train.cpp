// Algorithm 3 on the CPU: the early stop, determinism, mini-batches and input validation.
#include <gtest/gtest.h>

#include <random>

#include "sparseprox/sparseprox.h"

using namespace sparseprox;

namespace {

DataSplit small_mackey_glass() {
    MackeyGlassOptions o;
    o.n_train = 300;
    o.n_test = 100;
    return mackey_glass(o);
}

Dataset blobs(std::size_t n, std::uint32_t seed) {
    // Three Gaussian blobs in 5-D: linearly separable enough for a small net.
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 0.5f);
    Dataset d;
    d.name = "blobs";
    d.task = Task::classification;
    d.n_samples = n;
    d.n_features = 5;
    d.n_outputs = 3;
    d.x.resize(n * 5);
    d.labels.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        const int c = static_cast<int>(i % 3);
        d.labels[i] = c;
        for (std::size_t j = 0; j < 5; ++j) d.x[i * 5 + j] = g(rng) + (static_cast<int>(j) == c ? 2.0f : 0.0f);
    }
    return d;
}

template <typename F>
void expect_error_containing(F&& f, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "expected sparseprox::Error containing '" << needle << "'";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(EarlyStop, ReturnsTheFirstInBandIterate) {
    const DataSplit data = small_mackey_glass();
    const Model init = Model::initialize(ModelSpec::parse("dense:6-32-16-1"), 11);
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {2e-3f};
    opt.steps = 600;
    opt.progress_seconds = 0;
    opt.record_nnz_history = true;
    const TrainResult full = train(init, data.train, nullptr, opt);
    ASSERT_EQ(full.nnz_history.size(), 600u);

    // Pick a total NNZ that the recorded path crosses after a while and find where it first
    // enters the band.
    const std::size_t probe = 300;
    std::size_t target = 0;
    for (auto n : full.nnz_history[probe]) target += n;
    StopRule rule;
    rule.targets = {target};
    rule.tolerance = 0.002;
    std::size_t first = 0;
    for (std::size_t t = 0; t < full.nnz_history.size(); ++t)
        if (rule.holds(full.nnz_history[t])) {
            first = t + 1;  // history[t] is after step t + 1
            break;
        }
    ASSERT_GT(first, 0u);
    ASSERT_LE(first, probe + 1);
    ASSERT_GT(first, 1u) << "the band is entered at once; pick another probe";

    TrainOptions stop_opt = opt;
    stop_opt.record_nnz_history = false;
    stop_opt.stop = rule;
    const TrainResult stopped = train(init, data.train, nullptr, stop_opt);
    EXPECT_TRUE(stopped.stopped_in_band);
    EXPECT_EQ(stopped.steps, first);
    // Full batch: one step per epoch, and the epochs counted are those of applied steps (the
    // trainer polls every 32 steps and queues frozen steps until it notices the stop).
    EXPECT_EQ(stopped.epochs_started, first);

    // The returned weights are exactly those after `first` steps.
    TrainOptions exact = opt;
    exact.record_nnz_history = false;
    exact.steps = first;
    const TrainResult reference = train(init, data.train, nullptr, exact);
    EXPECT_EQ(stopped.model.slab(), reference.model.slab());
    EXPECT_TRUE(rule.holds(stopped.nnz));
}

TEST(EarlyStop, MultiRuleCountsLayersInBand) {
    StopRule r;
    r.targets = {100, 200, 10};
    r.tolerance = 0.05;
    r.min_layers = 2;
    EXPECT_TRUE(r.holds({104, 300, 10}));
    EXPECT_FALSE(r.holds({106, 300, 10}));
    EXPECT_FALSE(r.holds({106, 300, 11}));
    r.min_layers = 0;  // all layers
    EXPECT_FALSE(r.holds({104, 300, 10}));
    EXPECT_TRUE(r.holds({95, 210, 10}));
    StopRule single;
    single.targets = {1000};
    single.tolerance = 0.001;
    EXPECT_TRUE(single.holds({500, 501}));
    EXPECT_FALSE(single.holds({500, 502}));
}

TEST(Train, SameSeedSameResultAndMiniBatchesReshuffle) {
    const DataSplit data = small_mackey_glass();
    const Model init = Model::initialize(ModelSpec::parse("dense:6-16-1:tanh"), 4);
    TrainOptions opt;
    opt.lambdas = {1e-3f};
    opt.batch_size = 32;
    opt.epochs = 3;
    opt.seed = 9;
    opt.progress_seconds = 0;
    const TrainResult a = train(init, data.train, &data.test, opt);
    const TrainResult b = train(init, data.train, &data.test, opt);
    EXPECT_EQ(a.model.slab(), b.model.slab());
    EXPECT_EQ(a.steps, 3u * 10u);  // ceil(300 / 32) = 10 steps per epoch
    opt.seed = 10;
    const TrainResult c = train(init, data.train, &data.test, opt);
    EXPECT_NE(a.model.slab(), c.model.slab()) << "the batch order must depend on the seed";
    EXPECT_LT(a.test_eval.loss, evaluate(init, data.test, Device{}).loss);
}

TEST(Train, InitializationIsSeededAndBounded) {
    const ModelSpec spec = ModelSpec::parse("dense:6-128-1");
    const Model a = Model::initialize(spec, 1), b = Model::initialize(spec, 1), c = Model::initialize(spec, 2);
    EXPECT_EQ(a.slab(), b.slab());
    EXPECT_NE(a.slab(), c.slab());
    const float bound0 = 1.0f / std::sqrt(6.0f), bound1 = 1.0f / std::sqrt(128.0f);
    float max0 = 0, max1 = 0;
    for (std::size_t i = 0; i < 768; ++i) max0 = std::max(max0, std::fabs(a.weight(0)[i]));
    for (std::size_t i = 0; i < 128; ++i) max1 = std::max(max1, std::fabs(a.weight(1)[i]));
    EXPECT_LE(max0, bound0);
    EXPECT_GT(max0, 0.9f * bound0);
    EXPECT_LE(max1, bound1);
    EXPECT_GT(max1, 0.8f * bound1);
    EXPECT_EQ(a.nnz_total(), spec.n_weights());
}

TEST(Train, ClassifierLearnsAndCountsAccuracy) {
    const Dataset tr = blobs(300, 1), te = blobs(150, 2);
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {1e-3f};
    opt.batch_size = 16;
    opt.epochs = 10;
    opt.progress_seconds = 0;
    const TrainResult r = train(Model::initialize(ModelSpec::parse("dense:5-19-3"), 3), tr, &te, opt);
    EXPECT_GT(r.test_eval.accuracy, 0.9);
    EXPECT_LT(r.model.nnz_total(), 5u * 19u + 19u * 3u);
}

TEST(Train, ProgressIsReported) {
    const DataSplit data = small_mackey_glass();
    TrainOptions opt;
    opt.steps = 100;
    opt.progress_seconds = 1e-9;
    std::size_t calls = 0, last_step = 0;
    opt.on_progress = [&](const Progress& p) {
        ++calls;
        EXPECT_GE(p.step, last_step);
        last_step = p.step;
        EXPECT_EQ(p.nnz.size(), 2u);
    };
    train(Model::initialize(ModelSpec::parse("dense:6-8-1"), 1), data.train, nullptr, opt);
    EXPECT_GE(calls, 2u);
    EXPECT_EQ(last_step, 100u);
}

TEST(Train, RejectsBadOptionsWithClearErrors) {
    const DataSplit data = small_mackey_glass();
    const Model init = Model::initialize(ModelSpec::parse("dense:6-8-1"), 1);
    TrainOptions opt;
    opt.steps = 10;
    opt.progress_seconds = 0;
    auto run = [&](TrainOptions o) { train(init, data.train, nullptr, o); };
    { auto o = opt; o.lr = 0; expect_error_containing([&] { run(o); }, "learning rate"); }
    { auto o = opt; o.lr = std::nanf(""); expect_error_containing([&] { run(o); }, "learning rate"); }
    { auto o = opt; o.lambdas = {-1.0f}; expect_error_containing([&] { run(o); }, "lambda"); }
    { auto o = opt; o.lambdas = {1e-3f, 1e-3f, 1e-3f}; expect_error_containing([&] { run(o); }, "3 lambda values"); }
    { auto o = opt; o.steps = 0; expect_error_containing([&] { run(o); }, "epochs"); }
    { auto o = opt; o.stop.targets = {0}; expect_error_containing([&] { run(o); }, "impossible"); }
    { auto o = opt; o.stop.targets = {57}; expect_error_containing([&] { run(o); }, "exceeds"); }
    { auto o = opt; o.stop.targets = {3, 4, 5}; expect_error_containing([&] { run(o); }, "2 weight layers"); }
    { auto o = opt; o.stop.targets = {3, 9}; expect_error_containing([&] { run(o); }, "layer 1"); }
    { auto o = opt; o.stop.targets = {3}; o.stop.tolerance = 1.5; expect_error_containing([&] { run(o); }, "tolerance"); }
    {
        const Model wrong = Model::initialize(ModelSpec::parse("dense:5-8-1"), 1);
        expect_error_containing([&] { train(wrong, data.train, nullptr, opt); }, "expects 5 inputs");
    }
    {
        auto o = opt;
        o.loss = Loss::cross_entropy;
        expect_error_containing([&] { run(o); }, "cross-entropy");
    }
}

TEST(Devices, ParseAndRefuseMissingGpu) {
    EXPECT_EQ(parse_device("cpu").kind, DeviceKind::cpu);
    expect_error_containing([] { parse_device("gpu"); }, "'gpu'");
    expect_error_containing([] { parse_device("cuda:x"); }, "cuda:x");
    if (cuda_device_count() == 0) {
        expect_error_containing([] { parse_device("cuda"); }, "no usable CUDA device");
        expect_error_containing([] { parse_device("cuda:1"); }, "cuda:1");
        EXPECT_EQ(parse_device("auto").kind, DeviceKind::cpu);
        // Also through the training API with a hand-made device.
        const DataSplit data = small_mackey_glass();
        TrainOptions opt;
        opt.steps = 1;
        opt.device = Device{DeviceKind::cuda, 0};
        EXPECT_THROW(train(Model::initialize(ModelSpec::parse("dense:6-1"), 1), data.train, nullptr, opt), Error);
    } else {
        expect_error_containing([] { parse_device("cuda:99"); }, "cuda:99");
    }
}

TEST(ModelSpecTest, ParsesShortAndJsonForms) {
    const ModelSpec a = ModelSpec::parse("dense:6-128-128-64-1");
    EXPECT_EQ(a.n_inputs, 6u);
    EXPECT_EQ(a.n_weight_layers(), 4u);
    EXPECT_EQ(a.n_weights(), 25408u);  // 768 + 16384 + 8192 + 64, as docs/method.md §6
    EXPECT_EQ(a.to_short(), "dense:6-128-128-64-1");
    const ModelSpec b = ModelSpec::parse("dense:784-300-100-10:tanh");
    EXPECT_EQ(b.to_short(), "dense:784-300-100-10:tanh");
    EXPECT_EQ(b.layers[1].activation, Activation::tanh);
    const ModelSpec c = ModelSpec::parse(a.to_json());
    EXPECT_EQ(c.to_json(), a.to_json());
    const ModelSpec d = ModelSpec::parse(
        R"({"inputs": 3, "layers": [{"type": "dense", "units": 4, "activation": "sigmoid"}, {"type": "dense", "units": 2}]})");
    EXPECT_EQ(d.to_short(), "dense:3-4-2:sigmoid");
    const ParamLayout l = ParamLayout::of(a);
    for (const auto& s : l.segments) {
        EXPECT_EQ(s.weight_offset % ParamLayout::kAlign, 0u);
        EXPECT_EQ(s.bias_offset % ParamLayout::kAlign, 0u);
    }
    expect_error_containing([] { ModelSpec::parse("dense:6"); }, "at least an input");
    expect_error_containing([] { ModelSpec::parse("dense:6-0-1"); }, "'0'");
    expect_error_containing([] { ModelSpec::parse("dense:6-4-1:swish"); }, "swish");
    expect_error_containing([] { ModelSpec::parse("/no/such/model.json"); }, "/no/such/model.json");
    expect_error_containing([] { ModelSpec::parse(R"({"inputs": 3, "layers": [{"type": "conv"}]})"); }, "layers[0].type");
    expect_error_containing([] { ModelSpec::parse(R"({"inputs": 3, "layers": [)"); }, "invalid JSON");
}
