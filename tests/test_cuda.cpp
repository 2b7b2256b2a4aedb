// The CUDA backend against its CPU twins (style.md items 2 and 10). Every test that needs a GPU
// skips with the reason when none is visible.
//
// Tolerances, stated once:
//  - exact (bitwise): everything whose operation order is the same on both backends: the prox
//    step (fused, unfused, CPU), the bias gradient (rows added in order), relu/leaky/identity,
//    the MSE gradient, the CE correct count, and every GEMM on dyadic inputs (all products and
//    sums exactly representable, so the summation order cannot matter).
//  - GEMMs on random U(-1, 1) inputs, k terms per output: |got - ref| <= 1e-6 * k + 1e-5 * |ref|.
//    Typical float32 summation error is ~sqrt(k) * 6e-8 * |partial sums| (~5e-6 at k = 300), so
//    this leaves > 10x margin, while TF32 (2^-11 relative per product) or a wrong index fails it.
//  - tanh/sigmoid and the cross-entropy (CUDA's expf/logf/tanhf vs glibc, <= 2 ulp): 1e-6 abs.
//  - double loss sums in another order: 1e-12 relative.
//  - whole training runs cuda vs cpu (different GEMM rounding, amplified at the threshold):
//    losses within 1e-3 relative, every parameter within 1e-3, total NNZ within 1% + 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/backend_query.h"
#include "core/engine.h"
#include "cpu/ops.h"
#include "cuda/common.h"
#include "cuda/context.h"
#include "cuda/ops.h"
#include "sparseprox/sparseprox.h"
#include "cuda_test_util.h"

using namespace sparseprox;
using namespace sparseprox::testing_util;

namespace {

const std::vector<std::size_t> kSizes = {1, 19, 111, 300};

// k / 2^shift with 1 <= |k| <= k_max: sums and products of a few of them are exact in float.
std::vector<float> dyadic(std::size_t n, std::uint32_t seed, int k_max, int shift) {
    std::mt19937 rng(seed);
    std::vector<float> v(n);
    for (float& x : v) {
        int k = static_cast<int>(rng() % (2 * k_max)) - k_max;  // -k_max .. k_max - 1
        if (k >= 0) ++k;                                         // never 0
        x = std::ldexp(static_cast<float>(k), -shift);
    }
    return v;
}

bool any_nonzero(const std::vector<float>& v) {
    return std::any_of(v.begin(), v.end(), [](float x) { return x != 0.0f; });
}

std::size_t total(const std::vector<std::size_t>& v) { return std::accumulate(v.begin(), v.end(), std::size_t{0}); }

std::string shape(std::size_t batch, std::size_t n_in, std::size_t n_out) {
    return "batch " + std::to_string(batch) + ", n_in " + std::to_string(n_in) + ", n_out " + std::to_string(n_out);
}

}  // namespace

// ---- errors and devices -------------------------------------------------------------------------

// Runs without a GPU too: the answer must then be a sparseprox::Error, never a crash.
TEST(CudaBackend, MissingDeviceIsAnError) {
    const ModelSpec spec = ModelSpec::parse("dense:6-4-1");
    try {
        make_cuda_engine(spec, Loss::mse, 99);
        FAIL() << "cuda:99 gave an engine";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("cuda:99"), std::string::npos) << e.what();
    }
    EXPECT_THROW(make_cuda_engine(spec, Loss::mse, -1), Error);

    MackeyGlassOptions mg;
    mg.n_train = 20;
    mg.n_test = 5;
    const DataSplit data = mackey_glass(mg);
    TrainOptions opt;
    opt.device = Device{DeviceKind::cuda, 99};
    opt.steps = 1;
    opt.progress_seconds = 0;
    EXPECT_THROW(train(Model::initialize(spec, 1), data.train, nullptr, opt), Error);
}

TEST(CudaBackend, CheckMacroNamesCallAndStatus) {
    try {
        SPARSEPROX_CUDA_CHECK(cudaErrorInvalidValue);
        FAIL() << "no throw";
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("cudaErrorInvalidValue"), std::string::npos) << what;
        EXPECT_NE(what.find("test_cuda.cpp:"), std::string::npos) << what;
    }
    try {
        SPARSEPROX_CUDA_CHECK(CUBLAS_STATUS_INVALID_VALUE);
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos) << e.what();
    }
}

TEST(CudaBackend, DescribesTheDevice) {
    SKIP_WITHOUT_CUDA();
    const std::string d = detail::cuda_device_description(0);
    EXPECT_NE(d.find("sm_"), std::string::npos) << d;
    EXPECT_NE(d.find("GiB"), std::string::npos) << d;
    EXPECT_THROW(detail::cuda_device_description(cuda_device_count()), Error);
}

// ---- dense layer ----------------------------------------------------------------------------------

TEST(CudaOps, DenseForwardMatchesCpu) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    std::uint32_t seed = 100;
    for (std::size_t batch : kSizes)
        for (std::size_t n_in : kSizes)
            for (std::size_t n_out : kSizes) {
                for (bool exact : {true, false}) {
                    const auto x = exact ? dyadic(batch * n_in, ++seed, 8, 3) : uniform(batch * n_in, ++seed);
                    const auto W = exact ? dyadic(n_out * n_in, ++seed, 8, 4) : uniform(n_out * n_in, ++seed);
                    const auto b = exact ? dyadic(n_out, ++seed, 8, 2) : uniform(n_out, ++seed);
                    std::vector<float> ref(batch * n_out);
                    cpu::dense_forward(x.data(), W.data(), b.data(), ref.data(), batch, n_in, n_out);
                    auto dx = upload(ctx, x), dW = upload(ctx, W), db = upload(ctx, b);
                    cuda::DeviceBuffer<float> dy(batch * n_out);
                    cuda::dense_forward(ctx, dx.data(), dW.data(), db.data(), dy.data(), batch, n_in, n_out);
                    const auto got = download(ctx, dy);
                    // Random data cannot give an all-zero output; dyadic data might cancel exactly.
                    if (!exact) ASSERT_TRUE(any_nonzero(ref)) << shape(batch, n_in, n_out);
                    if (exact)
                        ASSERT_TRUE(bitwise_equal(got, ref)) << "dyadic, " << shape(batch, n_in, n_out);
                    else
                        ASSERT_TRUE(all_close(got, ref, 1e-6 * static_cast<double>(n_in), 1e-5))
                            << shape(batch, n_in, n_out);
                }
            }
}

TEST(CudaOps, DenseBackwardMatchesCpuAndAccumulates) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    std::uint32_t seed = 200;
    for (std::size_t batch : kSizes)
        for (std::size_t n_in : kSizes)
            for (std::size_t n_out : kSizes) {
                for (bool exact : {true, false}) {
                    const std::string where = std::string(exact ? "dyadic, " : "random, ") + shape(batch, n_in, n_out);
                    const auto x = exact ? dyadic(batch * n_in, ++seed, 8, 3) : uniform(batch * n_in, ++seed);
                    const auto W = exact ? dyadic(n_out * n_in, ++seed, 8, 4) : uniform(n_out * n_in, ++seed);
                    const auto g = exact ? dyadic(batch * n_out, ++seed, 8, 4) : uniform(batch * n_out, ++seed);
                    std::vector<float> rW(n_out * n_in), rb(n_out), rx(batch * n_in);
                    cpu::dense_backward(x.data(), W.data(), g.data(), rW.data(), rb.data(), rx.data(), batch, n_in,
                                        n_out);
                    auto dx = upload(ctx, x), dW = upload(ctx, W), dg = upload(ctx, g);
                    cuda::DeviceBuffer<float> gW(n_out * n_in), gb(n_out), gx(batch * n_in);
                    cuda::dense_backward(ctx, dx.data(), dW.data(), dg.data(), gW.data(), gb.data(), gx.data(), batch,
                                         n_in, n_out);
                    const auto W1 = download(ctx, gW), b1 = download(ctx, gb), x1 = download(ctx, gx);
                    if (!exact) ASSERT_TRUE(any_nonzero(rW) && any_nonzero(rb) && any_nonzero(rx)) << where;
                    ASSERT_TRUE(bitwise_equal(b1, rb)) << "bias gradient, " << where;
                    if (exact) {
                        ASSERT_TRUE(bitwise_equal(W1, rW)) << "dL_dW, " << where;
                        ASSERT_TRUE(bitwise_equal(x1, rx)) << "dL_dx, " << where;
                    } else {
                        ASSERT_TRUE(all_close(W1, rW, 1e-6 * static_cast<double>(batch), 1e-5)) << "dL_dW, " << where;
                        ASSERT_TRUE(all_close(x1, rx, 1e-6 * static_cast<double>(n_out), 1e-5)) << "dL_dx, " << where;
                    }
                    // A second pass with accumulate (and no dL_dx) adds the same gradient again,
                    // as CPU total += part does.
                    cuda::dense_backward(ctx, dx.data(), dW.data(), dg.data(), gW.data(), gb.data(), nullptr, batch,
                                         n_in, n_out, true);
                    const auto W2 = download(ctx, gW), b2 = download(ctx, gb);
                    std::vector<float> rW2(rW.size()), rb2(rb.size());
                    for (std::size_t i = 0; i < rW.size(); ++i) rW2[i] = W1[i] + W1[i];
                    for (std::size_t i = 0; i < rb.size(); ++i) rb2[i] = rb[i] + rb[i];
                    ASSERT_TRUE(bitwise_equal(b2, rb2)) << "accumulated bias gradient, " << where;
                    // beta = 1 in cuBLAS may fuse the add into the GEMM: exact only on dyadic data.
                    if (exact) ASSERT_TRUE(bitwise_equal(W2, rW2)) << "accumulated dL_dW, " << where;
                    else ASSERT_TRUE(all_close(W2, rW2, 2e-6 * static_cast<double>(batch), 1e-5)) << where;
                }
            }
}

// ---- activations ----------------------------------------------------------------------------------

TEST(CudaOps, ActivationsMatchCpu) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    const Activation kinds[] = {Activation::identity, Activation::relu, Activation::leaky_relu, Activation::tanh,
                                Activation::sigmoid};
    std::uint32_t seed = 300;
    for (Activation a : kinds)
        for (std::size_t n : {std::size_t{1}, std::size_t{19}, std::size_t{111}, std::size_t{100003}}) {
            const std::string where = std::string(to_string(a)) + ", n " + std::to_string(n);
            const bool exact = a == Activation::identity || a == Activation::relu || a == Activation::leaky_relu;
            auto x = uniform(n, ++seed, -4.0f, 4.0f);
            x[0] = 1.5f;  // at least one positive input, so relu's output is not all zero
            const auto dy = uniform(n, ++seed);
            std::vector<float> ry(n), rdx(n);
            cpu::activation_forward(a, x.data(), ry.data(), n);
            cpu::activation_backward(a, x.data(), ry.data(), dy.data(), rdx.data(), n);

            auto dx = upload(ctx, x), ddy = upload(ctx, dy), dyy = upload(ctx, ry);
            cuda::DeviceBuffer<float> out(n);
            cuda::activation_forward(ctx, a, dx.data(), out.data(), n);
            const auto y = download(ctx, out);
            ASSERT_TRUE(any_nonzero(y)) << where;
            if (exact) ASSERT_TRUE(bitwise_equal(y, ry)) << where;
            else ASSERT_TRUE(all_close(y, ry, 1e-6, 1e-6)) << where;

            // Backward from the CPU's y, in place (dL_dx aliases dL_dy, as the engines use it).
            cuda::activation_backward(ctx, a, dx.data(), dyy.data(), ddy.data(), ddy.data(), n);
            const auto dxg = download(ctx, ddy);
            ASSERT_TRUE(any_nonzero(dxg)) << where;
            if (exact) ASSERT_TRUE(bitwise_equal(dxg, rdx)) << where;
            else ASSERT_TRUE(all_close(dxg, rdx, 1e-6, 1e-6)) << where;
        }
}

// ---- losses ---------------------------------------------------------------------------------------

TEST(CudaOps, MseLossMatchesCpu) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    std::uint32_t seed = 400;
    for (std::size_t batch : {std::size_t{1}, std::size_t{19}, std::size_t{111}, std::size_t{4099}})
        for (std::size_t n_out : {std::size_t{1}, std::size_t{3}, std::size_t{19}}) {
            const std::string where = "batch " + std::to_string(batch) + ", n_out " + std::to_string(n_out);
            const auto pred = uniform(batch * n_out, ++seed), target = uniform(batch * n_out, ++seed);
            const float scale = 1.0f / static_cast<float>(batch);
            std::vector<float> rg(batch * n_out);
            const double ref = cpu::mse_loss(pred.data(), target.data(), batch, n_out, scale, rg.data());
            auto dp = upload(ctx, pred), dt = upload(ctx, target);
            cuda::DeviceBuffer<float> dg(batch * n_out);
            const double got = cuda::mse_loss(ctx, dp.data(), dt.data(), batch, n_out, scale, dg.data());
            ASSERT_GT(ref, 0.0) << where;
            ASSERT_NEAR(got, ref, 1e-12 * ref) << where;
            const auto g = download(ctx, dg);
            ASSERT_TRUE(any_nonzero(g)) << where;
            ASSERT_TRUE(bitwise_equal(g, rg)) << where;
            ASSERT_NEAR(cuda::mse_loss(ctx, dp.data(), dt.data(), batch, n_out, 0.0f, nullptr), ref, 1e-12 * ref);
        }
}

TEST(CudaOps, CrossEntropyLossMatchesCpu) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    std::uint32_t seed = 500;
    for (std::size_t batch : {std::size_t{1}, std::size_t{19}, std::size_t{111}, std::size_t{4099}})
        for (std::size_t n_classes : {std::size_t{2}, std::size_t{10}, std::size_t{111}}) {
            const std::string where = "batch " + std::to_string(batch) + ", classes " + std::to_string(n_classes);
            const auto logits = uniform(batch * n_classes, ++seed, -6.0f, 6.0f);
            std::mt19937 rng(++seed);
            std::vector<std::int32_t> labels(batch);
            for (auto& l : labels) l = static_cast<std::int32_t>(rng() % n_classes);
            const float scale = 1.0f / static_cast<float>(batch);
            std::vector<float> rg(batch * n_classes);
            std::size_t ref_correct = 0;
            const double ref = cpu::cross_entropy_loss(logits.data(), labels.data(), batch, n_classes, scale,
                                                       rg.data(), &ref_correct);
            auto dl = upload(ctx, logits);
            auto dlab = upload(ctx, labels);
            cuda::DeviceBuffer<float> dg(batch * n_classes);
            std::size_t correct = 12345;
            const double got = cuda::cross_entropy_loss(ctx, dl.data(), dlab.data(), batch, n_classes, scale,
                                                        dg.data(), &correct);
            ASSERT_GT(ref, 0.0) << where;
            ASSERT_NEAR(got, ref, 1e-6 * static_cast<double>(batch) + 1e-6 * ref) << where;
            ASSERT_EQ(correct, ref_correct) << where;
            const auto g = download(ctx, dg);
            ASSERT_TRUE(any_nonzero(g)) << where;
            ASSERT_TRUE(all_close(g, rg, 4e-6 * scale, 1e-5)) << where;
        }
}

// ---- the prox step --------------------------------------------------------------------------------

namespace {

struct ProxCase {
    std::string spec;
    std::vector<float> lambdas;
    bool dyadic_inputs;
};

// Parameters and gradients over the layout's segments; padding marked with 7 (params) and 3
// (grads) so that a write there shows.
void fill_slab(const ParamLayout& layout, bool exact, std::uint32_t seed, std::vector<float>& params,
               std::vector<float>& grads) {
    params.assign(layout.slab_size, 7.0f);
    grads.assign(layout.slab_size, 3.0f);
    const auto p = exact ? dyadic(layout.slab_size, seed, 128, 6) : uniform(layout.slab_size, seed);
    const auto g = exact ? dyadic(layout.slab_size, seed + 1, 128, 6) : uniform(layout.slab_size, seed + 1);
    for (const ParamSegment& s : layout.segments) {
        std::copy_n(p.begin() + s.weight_offset, s.n_weights, params.begin() + s.weight_offset);
        std::copy_n(g.begin() + s.weight_offset, s.n_weights, grads.begin() + s.weight_offset);
        std::copy_n(p.begin() + s.bias_offset, s.n_bias, params.begin() + s.bias_offset);
        std::copy_n(g.begin() + s.bias_offset, s.n_bias, grads.begin() + s.bias_offset);
    }
}

}  // namespace

TEST(CudaProx, FusedEqualsUnfusedEqualsCpuBitwise) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    // Odd layer sizes (1, 19, 111), several tiles per layer, a partial last tile, and a layer
    // of 2^20 weights; lambdas from 0 (plain SGD) to large (everything thresholded).
    const std::vector<ProxCase> cases = {
        {"dense:1-19-111-1:tanh", {0.5f, 0.125f, 1.0f}, true},
        {"dense:1-19-111-1:tanh", {0.5f, 0.125f, 1.0f}, false},
        {"dense:6-128-128-64-1", {0.3f, 2.0f, 0.0f, 5.0f}, false},
        {"dense:6-128-128-64-1", {0.25f, 2.0f, 0.0f, 4.0f}, true},
        {"dense:1024-1024-3", {1.0f, 100.0f}, false},
        {"dense:300-100-10", {3.0f, 1.5f, 0.75f}, false},
    };
    std::uint32_t seed = 600;
    for (const ProxCase& c : cases) {
        const ParamLayout layout = ParamLayout::of(ModelSpec::parse(c.spec));
        const std::string where = c.spec + (c.dyadic_inputs ? " (dyadic)" : " (random)");
        std::vector<float> params, grads;
        fill_slab(layout, c.dyadic_inputs, seed += 2, params, grads);
        const float lr = c.dyadic_inputs ? 0.25f : 0.1f;

        std::vector<float> ref = params;
        std::vector<std::size_t> ref_nnz(layout.segments.size(), 99);
        cpu::prox_step(ref.data(), grads.data(), layout, lr, c.lambdas.data(), ref_nnz.data());

        auto dg = upload(ctx, grads);
        auto fused = upload(ctx, params);
        std::vector<std::size_t> fused_nnz(layout.segments.size(), 99);
        cuda::prox_step(ctx, fused.data(), dg.data(), layout, lr, c.lambdas.data(), fused_nnz.data());
        auto unfused = upload(ctx, params);
        std::vector<std::size_t> unfused_nnz(layout.segments.size(), 99);
        cuda::prox_step_unfused(ctx, unfused.data(), dg.data(), layout, lr, c.lambdas.data(), unfused_nnz.data());

        EXPECT_TRUE(bitwise_equal(download(ctx, fused), ref)) << "fused, " << where;
        EXPECT_TRUE(bitwise_equal(download(ctx, unfused), ref)) << "unfused, " << where;
        EXPECT_EQ(fused_nnz, ref_nnz) << where;
        EXPECT_EQ(unfused_nnz, ref_nnz) << where;
        // The case must exercise the threshold: some layer has both zeros and nonzeros.
        bool mixed = false;
        for (std::size_t l = 0; l < layout.segments.size(); ++l)
            mixed |= ref_nnz[l] > 0 && ref_nnz[l] < layout.segments[l].n_weights;
        EXPECT_TRUE(mixed) << where;
        for (std::size_t l = 0; l < layout.segments.size(); ++l)
            EXPECT_EQ(ref_nnz[l], cpu::count_nonzero(ref.data() + layout.segments[l].weight_offset,
                                                     layout.segments[l].n_weights));
        EXPECT_EQ(cuda::count_nonzero(ctx, fused.data(), fused.size()), cpu::count_nonzero(ref.data(), ref.size()));
    }
}

TEST(CudaProx, StopFlagLeavesEverythingUntouched) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    const ParamLayout layout = ParamLayout::of(ModelSpec::parse("dense:6-128-128-64-1"));
    std::vector<float> params, grads;
    fill_slab(layout, false, 700, params, grads);
    const std::vector<float> lambdas(layout.segments.size(), 1.0f);
    const std::vector<float> hyper = cuda::hyper_array(0.1f, lambdas.data(), lambdas.size());
    auto dp = upload(ctx, params), dg = upload(ctx, grads), dh = upload(ctx, hyper);
    const std::vector<std::int32_t> flag_on = {1}, flag_off = {0};
    auto flag = upload(ctx, flag_on);

    cuda::ProxPlan plan(layout, ctx.stream());
    plan.count(dp.data(), ctx.stream());
    std::vector<unsigned long long> before(layout.segments.size()), after(layout.segments.size());
    auto read_counts = [&](std::vector<unsigned long long>& out) {
        SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(out.data(), plan.layer_nnz(), out.size() * sizeof(out[0]),
                                              cudaMemcpyDeviceToHost, ctx.stream()));
        ctx.synchronize();
    };
    read_counts(before);
    for (std::size_t l = 0; l < layout.segments.size(); ++l)
        EXPECT_EQ(before[l], cpu::count_nonzero(params.data() + layout.segments[l].weight_offset,
                                                layout.segments[l].n_weights));

    for (int i = 0; i < 3; ++i) plan.step(dp.data(), dg.data(), dh.data(), flag.data(), ctx.stream());
    read_counts(after);
    EXPECT_TRUE(bitwise_equal(download(ctx, dp), params));
    EXPECT_EQ(after, before);

    flag.copy_from_host(flag_off.data(), 1, ctx.stream());
    plan.step(dp.data(), dg.data(), dh.data(), flag.data(), ctx.stream());
    read_counts(after);
    std::vector<float> ref = params;
    std::vector<std::size_t> ref_nnz(layout.segments.size());
    cpu::prox_step(ref.data(), grads.data(), layout, 0.1f, lambdas.data(), ref_nnz.data());
    EXPECT_TRUE(bitwise_equal(download(ctx, dp), ref));
    for (std::size_t l = 0; l < ref_nnz.size(); ++l) EXPECT_EQ(after[l], ref_nnz[l]);
}

// ---- the engine -----------------------------------------------------------------------------------

namespace {

struct Trajectory {
    std::vector<std::vector<std::size_t>> nnz;  // after step i + 1
    std::vector<std::vector<float>> params;
};

// Full-batch steps on a small regression net; lambda large enough that NNZ falls steadily.
class CudaEngineStop : public ::testing::Test {
protected:
    void SetUp() override {
        SKIP_WITHOUT_CUDA();
        MackeyGlassOptions mg;
        mg.n_train = 200;
        mg.n_test = 10;
        data_ = mackey_glass(mg);
        order_.resize(data_.train.n_samples);
        std::iota(order_.begin(), order_.end(), 0u);
    }

    std::unique_ptr<Engine> engine() {
        auto e = make_cuda_engine(spec_, Loss::mse, 0);
        e->set_params(init_.slab());
        e->set_hyper(0.1f, std::vector<float>(spec_.n_weight_layers(), 0.05f));
        e->set_train_data(data_.train);
        e->set_order(order_);
        return e;
    }

    // The run without a rule, read back after every step.
    Trajectory reference() {
        auto e = engine();
        Trajectory t;
        for (std::size_t i = 0; i < kSteps; ++i) {
            e->step(0, data_.train.n_samples);
            t.nnz.push_back(e->status().nnz);
            t.params.push_back(e->get_params());
        }
        return t;
    }

    // With the rule on, all steps queued without a status() in between: the device must stop by
    // itself at the first step where StopRule::holds, and stay there.
    void check_stops_at_first_in_band_step(const StopRule& rule, const Trajectory& ref) {
        std::size_t expected = kSteps;
        for (std::size_t i = 0; i < kSteps && expected == kSteps; ++i)
            if (rule.holds(ref.nnz[i])) expected = i;
        ASSERT_GT(expected, 2u) << "the rule holds too early to tell";
        ASSERT_LT(expected, kSteps) << "the rule never holds on the reference run";

        auto e = engine();
        e->set_stop_rule(rule);
        for (std::size_t i = 0; i < kSteps; ++i) e->step(0, data_.train.n_samples);
        EngineStatus st = e->status();
        EXPECT_TRUE(st.stopped);
        EXPECT_EQ(st.steps_run, expected + 1);
        EXPECT_EQ(st.loss_count, expected + 1);
        EXPECT_EQ(st.nnz, ref.nnz[expected]);
        EXPECT_TRUE(bitwise_equal(e->get_params(), ref.params[expected]));

        for (int i = 0; i < 20; ++i) e->step(0, data_.train.n_samples);
        st = e->status();
        EXPECT_TRUE(st.stopped);
        EXPECT_EQ(st.steps_run, expected + 1);
        EXPECT_EQ(st.loss_count, 0u);
        EXPECT_TRUE(bitwise_equal(e->get_params(), ref.params[expected]));

        // set_stop_rule clears the stop: the next step is applied again.
        e->set_stop_rule(StopRule{});
        e->step(0, data_.train.n_samples);
        st = e->status();
        EXPECT_FALSE(st.stopped);
        EXPECT_EQ(st.steps_run, expected + 2);
        EXPECT_FALSE(bitwise_equal(e->get_params(), ref.params[expected]));
    }

    static constexpr std::size_t kSteps = 120;
    const ModelSpec spec_ = ModelSpec::parse("dense:6-16-16-1");
    const Model init_ = Model::initialize(spec_, 11);
    DataSplit data_;
    std::vector<std::uint32_t> order_;
};

}  // namespace

TEST_F(CudaEngineStop, SingleRuleFreezesTheFirstInBandStep) {
    const Trajectory ref = reference();
    ASSERT_GT(total(ref.nnz.front()), total(ref.nnz.back()) + 20) << "NNZ barely moves: the test would prove nothing";
    StopRule rule;
    rule.targets = {total(ref.nnz[kSteps / 3])};
    rule.tolerance = 0.01;
    check_stops_at_first_in_band_step(rule, ref);
}

TEST_F(CudaEngineStop, MultiRuleFreezesTheFirstInBandStep) {
    const Trajectory ref = reference();
    StopRule rule;
    rule.targets = ref.nnz[kSteps / 2];
    rule.tolerance = 0.02;
    rule.min_layers = spec_.n_weight_layers() - 1;
    check_stops_at_first_in_band_step(rule, ref);
}

TEST(CudaEngine, EvaluateAndGradientMatchCpu) {
    SKIP_WITHOUT_CUDA();
    MackeyGlassOptions mg;
    mg.n_train = 1000;
    mg.n_test = 385;
    const DataSplit data = mackey_glass(mg);
    const ModelSpec spec = ModelSpec::parse("dense:6-32-32-1:tanh");
    const Model model = Model::initialize(spec, 3);
    auto gpu = make_cuda_engine(spec, Loss::mse, 0);
    auto cpu = make_cpu_engine(spec, Loss::mse);
    for (Engine* e : {gpu.get(), cpu.get()}) {
        e->set_params(model.slab());
        e->set_train_data(data.train);  // the CUDA engine evaluates this one from its device copy
    }
    for (const Dataset* d : {&data.train, &data.test}) {
        const Evaluation a = gpu->evaluate(*d, 100), b = cpu->evaluate(*d, 100);
        EXPECT_GT(b.loss, 0.0);
        EXPECT_NEAR(a.loss, b.loss, 1e-5 * b.loss) << d->name;
        EXPECT_EQ(a.accuracy, -1.0);
    }
    // Gradients summed over chunks of 64 rows (16 chunks, the last partial), from uploads.
    const std::vector<float> ga = gpu->gradient(data.test, 64), gb = cpu->gradient(data.test, 64);
    EXPECT_TRUE(any_nonzero(gb));
    EXPECT_TRUE(all_close(ga, gb, 1e-6, 1e-4));
    EXPECT_TRUE(all_close(gpu->gradient(data.test, 4096), gb, 1e-6, 1e-4));
}

// ---- training through the public API -------------------------------------------------------------

namespace {

// Classes from the argmax of a fixed random linear map: learnable, so the run means something.
Dataset synthetic_classes(std::size_t n, std::size_t n_features, std::size_t n_classes, std::uint32_t seed) {
    Dataset d;
    d.name = "synthetic";
    d.task = Task::classification;
    d.n_samples = n;
    d.n_features = n_features;
    d.n_outputs = n_classes;
    d.x = uniform(n * n_features, seed);
    const auto map = uniform(n_features * n_classes, seed + 1);
    d.labels.resize(n);
    for (std::size_t r = 0; r < n; ++r) {
        std::size_t best = 0;
        float best_score = -1e30f;
        for (std::size_t c = 0; c < n_classes; ++c) {
            float score = 0.0f;
            for (std::size_t f = 0; f < n_features; ++f) score += d.x[r * n_features + f] * map[f * n_classes + c];
            if (score > best_score) best_score = score, best = c;
        }
        d.labels[r] = static_cast<std::int32_t>(best);
    }
    return d;
}

void expect_runs_agree(const TrainResult& gpu, const TrainResult& cpu) {
    EXPECT_EQ(gpu.device, "cuda:0");
    EXPECT_EQ(gpu.steps, cpu.steps);
    EXPECT_EQ(gpu.stopped_in_band, cpu.stopped_in_band);
    EXPECT_NEAR(gpu.train_eval.loss, cpu.train_eval.loss, 1e-3 * cpu.train_eval.loss);
    if (!std::isnan(cpu.test_eval.loss)) EXPECT_NEAR(gpu.test_eval.loss, cpu.test_eval.loss, 1e-3 * cpu.test_eval.loss);
    EXPECT_TRUE(all_close(gpu.model.slab(), cpu.model.slab(), 1e-3, 0.0));
    const double n_cpu = static_cast<double>(total(cpu.nnz)), n_gpu = static_cast<double>(total(gpu.nnz));
    EXPECT_GT(n_cpu, 0.0);
    EXPECT_LT(n_cpu, static_cast<double>(cpu.model.spec().n_weights())) << "lambda too small to sparsify";
    EXPECT_NEAR(n_gpu, n_cpu, 0.01 * n_cpu + 2.0);
}

}  // namespace

TEST(CudaTrain, RegressionRunAgreesWithCpu) {
    SKIP_WITHOUT_CUDA();
    const DataSplit data = mackey_glass();
    const Model init = Model::initialize(ModelSpec::parse("dense:6-32-32-1"), 5);
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {2e-3f};
    opt.steps = 300;
    opt.seed = 1;
    opt.progress_seconds = 0;
    const TrainResult cpu = train(init, data.train, &data.test, opt);
    opt.device = Device{DeviceKind::cuda, 0};
    const TrainResult gpu = train(init, data.train, &data.test, opt);
    EXPECT_EQ(gpu.steps, 300u);
    expect_runs_agree(gpu, cpu);
}

TEST(CudaTrain, ClassificationRunWithShuffledBatchesAgreesWithCpu) {
    SKIP_WITHOUT_CUDA();
    const Dataset train_set = synthetic_classes(600, 8, 3, 800), test_set = synthetic_classes(200, 8, 3, 900);
    const Model init = Model::initialize(ModelSpec::parse("dense:8-16-3"), 6);
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {1e-2f};  // ~10% of the 176 weights at zero after 60 steps (CPU run)
    opt.batch_size = 50;  // 12 steps per epoch, a new order each epoch
    opt.epochs = 5;
    opt.seed = 2;
    opt.progress_seconds = 0;
    const TrainResult cpu = train(init, train_set, &test_set, opt);
    opt.device = Device{DeviceKind::cuda, 0};
    const TrainResult gpu = train(init, train_set, &test_set, opt);
    EXPECT_EQ(gpu.steps, 60u);
    expect_runs_agree(gpu, cpu);
    EXPECT_NEAR(gpu.train_eval.accuracy, cpu.train_eval.accuracy, 2.0 / 600);
    EXPECT_GT(cpu.train_eval.accuracy, 0.5);
}

TEST(CudaTrain, StopsInTheSameBandAsCpu) {
    SKIP_WITHOUT_CUDA();
    const DataSplit data = mackey_glass();
    const Model init = Model::initialize(ModelSpec::parse("dense:6-32-32-1"), 5);
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {2e-2f};
    opt.steps = 2000;
    opt.progress_seconds = 0;
    opt.stop.targets = {300};
    opt.stop.tolerance = 0.05;
    const TrainResult cpu = train(init, data.train, nullptr, opt);
    ASSERT_TRUE(cpu.stopped_in_band) << "pick lambda so the CPU run reaches the band";
    opt.device = Device{DeviceKind::cuda, 0};
    const TrainResult gpu = train(init, data.train, nullptr, opt);
    EXPECT_TRUE(gpu.stopped_in_band);
    EXPECT_TRUE(opt.stop.holds(gpu.nnz));
    // The first in-band step may differ by a step or two where NNZ crosses the band edge.
    EXPECT_NEAR(static_cast<double>(gpu.steps), static_cast<double>(cpu.steps), 2.0 + 0.01 * cpu.steps);
}
