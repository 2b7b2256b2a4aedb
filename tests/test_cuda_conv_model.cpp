// Convolutional models on the CUDA engine against the CPU engine (style.md items 2 and 10): one
// CNN8 training step, a few more with a partial batch, evaluate() and the chunked full-data
// gradient, and a short train() run. Every test that needs a GPU skips with the reason when none
// is visible.
//
// Tolerances, stated once (inputs U(-1, 1), CNN8 at its seeded initialization):
//  - full-data gradients (mean over N rows, summed over chunks): |gpu - cpu| <= 3e-5 + 1e-3 |cpu|.
//    A conv1 weight gradient sums N*28*28 products in float32 in another order (cuDNN's
//    reductions vs OpenBLAS blocks); the random-walk bound sqrt(k) * 6e-8 * sum|terms| is
//    ~7e-6 at N = 100, and the dense layers' GEMMs err far less. TF32 (2^-11 per product) or a
//    wrong stride/padding/pool routing fails it.
//  - parameters after one step (lr 0.1): |gpu - cpu| <= 1e-5, i.e. lr times the gradient bound
//    with 3x margin; a weight whose w - lr g lands within that distance of the threshold may be
//    zero on one backend only, and is then itself below 1e-5. After three steps: 1e-4.
//  - NNZ per layer: equal up to 2 + 1e-5 * n_weights_l after one step (those near-threshold
//    weights: ~3e-8 * n_l / (weight bound) expected, i.e. < 1 per layer), 2 + 1e-4 * n_l after
//    three.
//  - losses (double sums of float32 per-sample losses): 1e-5 relative; accuracy: one sample
//    (a near-tie of two logits may resolve differently).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/backend_query.h"
#include "core/engine.h"
#include "sparseprox/sparseprox.h"
#include "cuda_test_util.h"
#include "test_util.h"

using namespace sparseprox;
using namespace sparseprox::testing_util;

namespace {

// Rows of U(-1, 1) "images"; the label is the block of n_features / n_classes consecutive
// features (bands of rows) with the largest sum: the same rule for every seed.
Dataset random_images(std::size_t n, std::size_t n_features, std::size_t n_classes, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    Dataset d;
    d.name = "random-images-" + std::to_string(seed);
    d.task = Task::classification;
    d.n_samples = n;
    d.n_features = n_features;
    d.n_outputs = n_classes;
    d.x.resize(n * n_features);
    for (float& v : d.x) v = u(rng);
    d.labels.resize(n);
    const std::size_t block = n_features / n_classes;
    for (std::size_t r = 0; r < n; ++r) {
        std::size_t best = 0;
        double best_sum = -1e30;
        for (std::size_t c = 0; c < n_classes; ++c) {
            const float* x = d.x.data() + r * n_features + c * block;
            const double sum = std::accumulate(x, x + block, 0.0);
            if (sum > best_sum) best_sum = sum, best = c;
        }
        d.labels[r] = static_cast<std::int32_t>(best);
    }
    return d;
}

bool any_nonzero(const std::vector<float>& v) {
    return std::any_of(v.begin(), v.end(), [](float x) { return x != 0.0f; });
}

// NNZ per layer within 2 + rel * n_weights of layer l.
void expect_nnz_close(const std::vector<std::size_t>& gpu, const std::vector<std::size_t>& cpu,
                      const ParamLayout& layout, double rel, const std::string& where) {
    ASSERT_EQ(gpu.size(), cpu.size()) << where;
    for (std::size_t l = 0; l < cpu.size(); ++l) {
        const double slack = 2.0 + rel * static_cast<double>(layout.segments[l].n_weights);
        EXPECT_NEAR(static_cast<double>(gpu[l]), static_cast<double>(cpu[l]), slack) << where << ", layer " << l;
    }
}

}  // namespace

TEST(CudaConvModel, Cnn8TrainingStepsMatchCpu) {
    SKIP_WITHOUT_CUDA();
    const ModelSpec spec = ModelSpec::parse("cnn8");
    const Model init = Model::initialize(spec, 7);
    const Dataset data = random_images(96, spec.n_inputs, 10, 31);
    auto gpu = make_cuda_engine(spec, Loss::cross_entropy, 0);
    auto cpu = make_cpu_engine(spec, Loss::cross_entropy);
    std::vector<std::uint32_t> order(data.n_samples);
    std::iota(order.begin(), order.end(), 0u);
    std::reverse(order.begin(), order.end());  // the gather is exercised, not the identity
    // lr * lambda = 1e-3: a few percent of every layer's weights cross the threshold in a step
    // (conv1 ~1 of 288, the 1152x512 layer ~20k).
    const std::vector<float> lambdas(spec.n_weight_layers(), 1e-2f);
    for (Engine* e : {gpu.get(), cpu.get()}) {
        e->set_params(init.slab());
        e->set_hyper(0.1f, lambdas);
        e->set_train_data(data);
        e->set_order(order);
    }
    const ParamLayout layout = ParamLayout::of(spec);

    gpu->step(0, 32);
    cpu->step(0, 32);
    EngineStatus sg = gpu->status(), sc = cpu->status();
    EXPECT_EQ(sg.steps_run, 1u);
    EXPECT_NEAR(sg.loss_sum, sc.loss_sum, 1e-5 * sc.loss_sum);
    std::size_t zeroed = 0;
    for (std::size_t l = 0; l < sc.nnz.size(); ++l) zeroed += layout.segments[l].n_weights - sc.nnz[l];
    EXPECT_GT(zeroed, 1000u) << "lambda too small: the step would not test the threshold";
    expect_nnz_close(sg.nnz, sc.nnz, layout, 1e-5, "one step");
    const std::vector<float> pg = gpu->get_params(), pc = cpu->get_params();
    EXPECT_TRUE(all_close(pg, pc, 1e-5, 0.0));

    // Two more: a full batch and a partial one of 17 rows (new cuDNN plans for that batch size).
    for (Engine* e : {gpu.get(), cpu.get()}) {
        e->step(32, 32);
        e->step(64, 17);
    }
    sg = gpu->status();
    sc = cpu->status();
    EXPECT_EQ(sg.steps_run, 3u);
    EXPECT_NEAR(sg.loss_sum, sc.loss_sum, 1e-4 * sc.loss_sum);
    expect_nnz_close(sg.nnz, sc.nnz, layout, 1e-4, "three steps");
    EXPECT_TRUE(all_close(gpu->get_params(), cpu->get_params(), 1e-4, 0.0));
}

TEST(CudaConvModel, Cnn8EvaluateAndGradientMatchCpu) {
    SKIP_WITHOUT_CUDA();
    const ModelSpec spec = ModelSpec::parse("cnn8");
    const Model model = Model::initialize(spec, 3);
    const Dataset train_set = random_images(100, spec.n_inputs, 10, 41);
    const Dataset test_set = random_images(77, spec.n_inputs, 10, 42);
    auto gpu = make_cuda_engine(spec, Loss::cross_entropy, 0);
    auto cpu = make_cpu_engine(spec, Loss::cross_entropy);
    for (Engine* e : {gpu.get(), cpu.get()}) {
        e->set_params(model.slab());
        e->set_train_data(train_set);  // the CUDA engine evaluates this one from its device copy
    }
    for (const Dataset* d : {&train_set, &test_set}) {
        for (const std::size_t chunk : {std::size_t{30}, std::size_t{4096}}) {
            const Evaluation a = gpu->evaluate(*d, chunk), b = cpu->evaluate(*d, chunk);
            const std::string where = d->name + ", chunk " + std::to_string(chunk);
            EXPECT_GT(b.loss, 0.0) << where;
            EXPECT_NEAR(a.loss, b.loss, 1e-5 * b.loss) << where;
            EXPECT_NEAR(a.accuracy, b.accuracy, 1.0 / static_cast<double>(d->n_samples) + 1e-12) << where;
        }
    }
    // The full-data gradient accumulated over chunks of 37 rows (3 chunks, the last partial),
    // from uploads, and in one pass from the resident training set.
    const std::vector<float> gc = cpu->gradient(test_set, 37);
    EXPECT_TRUE(any_nonzero(gc));
    EXPECT_TRUE(all_close(gpu->gradient(test_set, 37), gc, 3e-5, 1e-3));
    EXPECT_TRUE(all_close(gpu->gradient(train_set, 4096), cpu->gradient(train_set, 4096), 3e-5, 1e-3));
}

TEST(CudaConvModel, ShortRunWithPoolsAgreesWithCpu) {
    SKIP_WITHOUT_CUDA();
    // Strides, padding, both pools and an implicit flatten, at odd sizes.
    const ModelSpec spec = ModelSpec::parse(R"({"input_shape": [2, 11, 9], "layers": [
        {"type": "conv2d", "filters": 5, "kernel": 3, "stride": 2, "padding": 1, "activation": "relu"},
        {"type": "maxpool2d", "kernel": 2, "stride": 1},
        {"type": "conv2d", "filters": 7, "kernel": [3, 2], "padding": [1, 0], "activation": "tanh"},
        {"type": "avgpool2d", "kernel": 3, "stride": 2, "padding": 1},
        {"type": "dense", "units": 3}]})");
    const Dataset train_set = random_images(300, spec.n_inputs, 3, 51), test_set = random_images(100, spec.n_inputs, 3, 52);
    const Model init = Model::initialize(spec, 5);
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {3e-3f};
    opt.batch_size = 25;  // 12 steps per epoch, a new order each epoch
    opt.epochs = 4;
    opt.seed = 2;
    opt.progress_seconds = 0;
    const TrainResult cpu = train(init, train_set, &test_set, opt);
    opt.device = Device{DeviceKind::cuda, 0};
    const TrainResult gpu = train(init, train_set, &test_set, opt);
    EXPECT_EQ(gpu.device, "cuda:0");
    EXPECT_EQ(gpu.steps, 48u);
    EXPECT_NEAR(gpu.train_eval.loss, cpu.train_eval.loss, 1e-3 * cpu.train_eval.loss);
    EXPECT_NEAR(gpu.test_eval.loss, cpu.test_eval.loss, 1e-3 * cpu.test_eval.loss);
    EXPECT_TRUE(all_close(gpu.model.slab(), cpu.model.slab(), 1e-3, 0.0));
    const double n_cpu = static_cast<double>(cpu.model.nnz_total()), n_gpu = static_cast<double>(gpu.model.nnz_total());
    EXPECT_LT(n_cpu, static_cast<double>(spec.n_weights())) << "lambda too small to sparsify";
    EXPECT_NEAR(n_gpu, n_cpu, 0.01 * n_cpu + 2.0);
}

#if !defined(SPARSEPROX_WITH_CUDNN)
TEST(CudaConvModel, BuildWithoutCudnnRefusesImageModels) {
    SKIP_WITHOUT_CUDA();
    EXPECT_TRUE(testing_util::throws_error_with(
        [] { make_cuda_engine(ModelSpec::parse("cnn8"), Loss::cross_entropy, 0); }, {"cuda:0", "cuDNN"}));
    EXPECT_NO_THROW(make_cuda_engine(ModelSpec::parse("lenet300100"), Loss::cross_entropy, 0));
}
#endif
