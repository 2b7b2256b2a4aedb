// The CUDA kernels of the l0, spred and gmp methods (kernels/sparsify.cu) and the CUDA engine's
// runs of those methods against their CPU twins (cpu/sparsify.h, the CPU engine), style.md
// items 2 and 10. Every test that needs a GPU skips with the reason when none is visible.
//
// Tolerances, stated once:
//  - exact (bitwise): everything that is one rounded operation after another on both backends:
//    spred's split, effective weights, update and read-out, GMP's masked step, the bias steps
//    and copies of every method, GMP's kept set (ties to the lower slab index) and every
//    nonzero count of those.
//  - l0 operations: the gate samples go through expf/logf, which CUDA computes within 2 ulp of
//    glibc's. A sample z in [0, 1] then differs by ~1e-6 at most (the logit's absolute error,
//    ~1e-6 for |logit| ~ 10, through a sigmoid of slope <= 1/4, times beta^-1 (zeta - gamma)):
//    effective and exported weights (|theta| <= 0.5) within 1e-6, theta after a step (lr 0.1,
//    |g| <= 1) within 1e-6, log alpha and its Adam moments within 1e-5 (an Adam step is
//    insensitive to a relative 1e-6 in its gradient; group gates also sum in another order in
//    double). NNZ of the export per layer within the weights of one gate (a gate within ~1e-7
//    of its closing point may close on one backend only; the seeds below have none).
//  - whole engine steps (cuBLAS vs OpenBLAS GEMM rounding, ~1e-6 relative): losses within 1e-5
//    relative, parameters within 1e-5 after the steps below, NNZ per layer within 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/sparsify.h"
#include "cpu/sparsify.h"
#include "cuda/common.h"
#include "cuda/context.h"
#include "cuda/ops.h"
#include "sparseprox/sparseprox.h"
#include "cuda_test_util.h"
#include "kernels/sparsify.cuh"

using namespace sparseprox;
using namespace sparseprox::testing_util;

namespace {

// (2, 9, 7) inputs: conv 3 (3x3, stride 2, pad 1) -> (3, 5, 4), relu, max-pool 2 -> (3, 2, 2),
// conv 5 (2x3, pad 1) -> (5, 3, 2), tanh, flatten, dense 7, tanh, dense 3: two filter-gate
// layers (27 and 18 weights per gate) and two column-gate layers.
ModelSpec conv_dense_spec() {
    return ModelSpec::parse(R"({"input_shape": [2, 9, 7], "layers": [
        {"type": "conv2d", "filters": 3, "kernel": 3, "stride": 2, "padding": 1, "activation": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "filters": 5, "kernel": [2, 3], "padding": [1, 1], "activation": "tanh"},
        {"type": "flatten"},
        {"type": "dense", "units": 7, "activation": "tanh"},
        {"type": "dense", "units": 3}]})");
}

// Odd sizes: 111 x 19 and 7 x 111 weights, so tiles end mid-warp and a layer spans one tile.
ModelSpec dense_spec() { return ModelSpec::parse("dense:19-111-7"); }

std::vector<float> slice(const std::vector<float>& v, std::size_t offset, std::size_t n) {
    return std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(offset),
                              v.begin() + static_cast<std::ptrdiff_t>(offset + n));
}

// Weights and biases of a slab separately (the padding between segments is not compared).
std::vector<float> weights_of(const std::vector<float>& slab, const ParamLayout& layout) {
    std::vector<float> out;
    for (const ParamSegment& s : layout.segments) {
        const std::vector<float> w = slice(slab, s.weight_offset, s.n_weights);
        out.insert(out.end(), w.begin(), w.end());
    }
    return out;
}
std::vector<float> biases_of(const std::vector<float>& slab, const ParamLayout& layout) {
    std::vector<float> out;
    for (const ParamSegment& s : layout.segments) {
        const std::vector<float> b = slice(slab, s.bias_offset, s.n_bias);
        out.insert(out.end(), b.begin(), b.end());
    }
    return out;
}

std::vector<std::size_t> layer_nnz(cuda::CudaContext& ctx, const cuda::SparsifyPlan& plan) {
    std::vector<unsigned long long> raw(plan.n_layers());
    SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(raw.data(), plan.layer_nnz(), raw.size() * sizeof(unsigned long long),
                                          cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
    return std::vector<std::size_t>(raw.begin(), raw.end());
}

std::size_t total(const std::vector<std::size_t>& v) { return std::accumulate(v.begin(), v.end(), std::size_t{0}); }

bool any_nonzero(const std::vector<float>& v) {
    return std::any_of(v.begin(), v.end(), [](float x) { return x != 0.0f; });
}

// A device buffer of one stop flag, set or not.
cuda::DeviceBuffer<std::int32_t> stop_flag(cuda::CudaContext& ctx, bool set) {
    return upload(ctx, std::vector<std::int32_t>{set ? 1 : 0});
}

// k / 8 with k in [-4, 4] (zeros and -0 included): many equal magnitudes for GMP's tie rule.
std::vector<float> tied_magnitudes(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<float> v(n);
    for (float& x : v) {
        const int k = static_cast<int>(rng() % 9) - 4;
        x = k == 0 && rng() % 2 ? -0.0f : static_cast<float>(k) / 8.0f;
    }
    return v;
}

// ---- l0 operations against cpu/sparsify.cpp ------------------------------------------------------

void check_l0_operations(const ModelSpec& spec, bool group) {
    cuda::CudaContext ctx(0);
    const cudaStream_t s = ctx.stream();
    const ParamLayout layout = ParamLayout::of(spec);
    L0Options options;
    options.group = group;
    const sparsify::GateLayout gl = sparsify::GateLayout::of(spec, layout, options);
    const gates::HardConcrete hc;
    const std::uint64_t seed = 0x5EEDull, step = 7;
    const float lr = 0.1f;
    const sparsify::AdamStep adam = sparsify::adam_step(0.01f, step + 1);

    const std::vector<float> theta = Model::initialize(spec, 5).slab();
    const std::vector<float> grads = uniform(layout.slab_size, 11);
    // log alpha over [-5, 3]: gates closed at test time (below log(1/11)), open, and samples
    // clamped to 0 and to 1; moments as after a few steps.
    const std::vector<float> log_alpha = uniform(gl.n_gates, 12, -5.0f, 3.0f);
    const std::vector<float> adam_m = uniform(gl.n_gates, 13, -0.1f, 0.1f);
    const std::vector<float> adam_v = uniform(gl.n_gates, 14, 0.0f, 0.01f);
    std::vector<float> lambdas(layout.segments.size());
    for (std::size_t l = 0; l < lambdas.size(); ++l) lambdas[l] = 1e-3f * static_cast<float>(l + 1);
    const std::vector<float> hyper = cuda::hyper_array(lr, lambdas.data(), lambdas.size());

    cuda::SparsifyPlan plan(layout, s);
    plan.set_gates(gl, s);
    auto d_theta = upload(ctx, theta);
    auto d_log_alpha = upload(ctx, log_alpha);
    auto d_m = upload(ctx, adam_m);
    auto d_v = upload(ctx, adam_v);
    auto d_grads = upload(ctx, grads);
    auto d_hyper = upload(ctx, hyper);
    auto d_out = upload(ctx, std::vector<float>(layout.slab_size, 0.0f));
    auto no_stop = stop_flag(ctx, false);

    // Effective weights.
    std::vector<float> eff_c(layout.slab_size, 0.0f);
    cpu::l0_effective(theta.data(), log_alpha.data(), gl, layout, hc, seed, step, eff_c.data());
    plan.l0_effective(d_theta.data(), d_log_alpha.data(), hc, seed, step, d_out.data(), no_stop.data(), s);
    const std::vector<float> eff_g = download(ctx, d_out);
    const std::vector<float> w_c = weights_of(eff_c, layout), w_t = weights_of(theta, layout);
    std::size_t closed = 0, full = 0;
    for (std::size_t i = 0; i < w_c.size(); ++i) {
        closed += w_c[i] == 0.0f && w_t[i] != 0.0f;
        full += w_c[i] == w_t[i] && w_t[i] != 0.0f;
    }
    EXPECT_GT(closed, 0u) << "no sample clamped to 0";
    EXPECT_GT(full, 0u) << "no sample clamped to 1";
    EXPECT_TRUE(any_nonzero(w_c));
    EXPECT_TRUE(all_close(weights_of(eff_g, layout), w_c, 1e-6, 0.0));
    EXPECT_TRUE(bitwise_equal(biases_of(eff_g, layout), biases_of(eff_c, layout)));

    // The update.
    std::vector<float> theta_c = theta, la_c = log_alpha, m_c = adam_m, v_c = adam_v;
    cpu::l0_update(theta_c.data(), la_c.data(), m_c.data(), v_c.data(), grads.data(), gl, layout, hc, seed, step, lr,
                   lambdas.data(), adam);
    plan.l0_update(d_theta.data(), d_log_alpha.data(), d_m.data(), d_v.data(), d_grads.data(), hc, seed, step,
                   d_hyper.data(), adam, no_stop.data(), s);
    const std::vector<float> theta_g = download(ctx, d_theta);
    EXPECT_TRUE(all_close(weights_of(theta_g, layout), weights_of(theta_c, layout), 1e-6, 0.0));
    EXPECT_TRUE(bitwise_equal(biases_of(theta_g, layout), biases_of(theta_c, layout)));
    EXPECT_FALSE(bitwise_equal(la_c, log_alpha)) << "the gates did not move";
    EXPECT_TRUE(all_close(download(ctx, d_log_alpha), la_c, 1e-5, 0.0));
    EXPECT_TRUE(all_close(download(ctx, d_m), m_c, 1e-5, 0.0));
    EXPECT_TRUE(all_close(download(ctx, d_v), v_c, 1e-5, 0.0));

    // The export of the updated state (both sides from the CPU's state, so only the export differs).
    d_theta.copy_from_host(theta_c.data(), theta_c.size(), s);
    d_log_alpha.copy_from_host(la_c.data(), la_c.size(), s);
    std::vector<float> out_c(layout.slab_size, 0.0f);
    std::vector<std::size_t> nnz_c(layout.segments.size());
    cpu::l0_export(theta_c.data(), la_c.data(), gl, layout, hc, out_c.data(), nnz_c.data());
    plan.l0_export(d_theta.data(), d_log_alpha.data(), hc, d_out.data(), no_stop.data(), s);
    const std::vector<float> out_g = download(ctx, d_out);
    EXPECT_TRUE(all_close(weights_of(out_g, layout), weights_of(out_c, layout), 1e-6, 0.0));
    EXPECT_TRUE(bitwise_equal(biases_of(out_g, layout), biases_of(out_c, layout)));
    const std::vector<std::size_t> nnz_g = layer_nnz(ctx, plan);
    ASSERT_EQ(nnz_g.size(), nnz_c.size());
    for (std::size_t l = 0; l < nnz_c.size(); ++l) {
        const double per_gate = static_cast<double>(gl.segments[l].per_gate);
        EXPECT_NEAR(static_cast<double>(nnz_g[l]), static_cast<double>(nnz_c[l]), per_gate) << "layer " << l;
    }
    EXPECT_GT(total(nnz_c), 0u);
    EXPECT_LT(total(nnz_c), weights_of(theta, layout).size()) << "no gate closed at test time";

    // With the stop flag set nothing is written.
    auto stop = stop_flag(ctx, true);
    const std::vector<float> before = download(ctx, d_theta), la_before = download(ctx, d_log_alpha);
    auto d_out2 = upload(ctx, std::vector<float>(layout.slab_size, 0.0f));
    plan.l0_effective(d_theta.data(), d_log_alpha.data(), hc, seed, step + 1, d_out2.data(), stop.data(), s);
    plan.l0_update(d_theta.data(), d_log_alpha.data(), d_m.data(), d_v.data(), d_grads.data(), hc, seed, step + 1,
                   d_hyper.data(), adam, stop.data(), s);
    plan.l0_export(d_theta.data(), d_log_alpha.data(), hc, d_out2.data(), stop.data(), s);
    EXPECT_TRUE(bitwise_equal(download(ctx, d_theta), before));
    EXPECT_TRUE(bitwise_equal(download(ctx, d_log_alpha), la_before));
    EXPECT_FALSE(any_nonzero(download(ctx, d_out2)));
    EXPECT_EQ(layer_nnz(ctx, plan), nnz_g) << "the counts of the last applied export are kept";
}

}  // namespace

TEST(CudaSparsify, L0PerWeightOperationsMatchCpu) {
    SKIP_WITHOUT_CUDA();
    check_l0_operations(dense_spec(), false);
}

TEST(CudaSparsify, L0GroupOperationsMatchCpu) {
    SKIP_WITHOUT_CUDA();
    check_l0_operations(conv_dense_spec(), true);
    check_l0_operations(dense_spec(), true);
}

TEST(CudaSparsify, L0EffectiveDependsOnStepAndSeed) {
    SKIP_WITHOUT_CUDA();
    // The counter noise: another step (or seed) gives other samples on both backends alike.
    cuda::CudaContext ctx(0);
    const ModelSpec spec = dense_spec();
    const ParamLayout layout = ParamLayout::of(spec);
    const sparsify::GateLayout gl = sparsify::GateLayout::of(spec, layout, L0Options{});
    const gates::HardConcrete hc;
    const std::vector<float> theta = Model::initialize(spec, 2).slab();
    const std::vector<float> log_alpha(gl.n_gates, 0.0f);
    cuda::SparsifyPlan plan(layout, ctx.stream());
    plan.set_gates(gl, ctx.stream());
    auto d_theta = upload(ctx, theta);
    auto d_la = upload(ctx, log_alpha);
    auto d_out = upload(ctx, std::vector<float>(layout.slab_size, 0.0f));
    std::vector<std::vector<float>> results;
    for (std::uint64_t step : {0ull, 1ull}) {
        std::vector<float> eff_c(layout.slab_size, 0.0f);
        cpu::l0_effective(theta.data(), log_alpha.data(), gl, layout, hc, 99, step, eff_c.data());
        plan.l0_effective(d_theta.data(), d_la.data(), hc, 99, step, d_out.data(), nullptr, ctx.stream());
        const std::vector<float> eff_g = download(ctx, d_out);
        EXPECT_TRUE(all_close(eff_g, eff_c, 1e-6, 0.0)) << "step " << step;
        results.push_back(eff_g);
    }
    EXPECT_FALSE(all_close(results[0], results[1], 1e-3, 0.0)) << "the noise does not depend on the step";
}

// ---- spred operations ---------------------------------------------------------------------------

TEST(CudaSparsify, SpredOperationsMatchCpuBitwise) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    const cudaStream_t s = ctx.stream();
    for (const ModelSpec& spec : {dense_spec(), conv_dense_spec()}) {
        const ParamLayout layout = ParamLayout::of(spec);
        const std::size_t n_layers = layout.segments.size();
        std::vector<float> w = Model::initialize(spec, 8).slab();
        w[layout.segments[0].weight_offset] = -0.0f;  // the split of a signed zero
        w[layout.segments[0].weight_offset + 1] = 0.0f;
        const std::vector<float> grads = uniform(layout.slab_size, 21);
        std::vector<float> lambdas(n_layers);
        for (std::size_t l = 0; l < n_layers; ++l) lambdas[l] = 0.05f / static_cast<float>(l + 1);
        const float lr = 0.1f, threshold = 0.01f;
        cuda::SparsifyPlan plan(layout, s);
        auto d_w = upload(ctx, w);
        auto d_u = upload(ctx, std::vector<float>(layout.slab_size, 0.0f));
        auto d_v = upload(ctx, std::vector<float>(layout.slab_size, 0.0f));
        auto d_out = upload(ctx, std::vector<float>(layout.slab_size, 0.0f));
        auto d_grads = upload(ctx, grads);
        auto d_hyper = upload(ctx, cuda::hyper_array(lr, lambdas.data(), n_layers));
        auto no_stop = stop_flag(ctx, false);

        std::vector<float> u(layout.slab_size, 0.0f), v(layout.slab_size, 0.0f);
        cpu::spred_split(w.data(), layout, u.data(), v.data());
        plan.spred_split(d_w.data(), d_u.data(), d_v.data(), s);
        EXPECT_TRUE(bitwise_equal(download(ctx, d_u), u));
        EXPECT_TRUE(bitwise_equal(download(ctx, d_v), v));

        std::vector<float> eff(layout.slab_size, 0.0f);
        cpu::spred_effective(u.data(), v.data(), layout, eff.data());
        plan.spred_effective(d_u.data(), d_v.data(), d_out.data(), no_stop.data(), s);
        EXPECT_TRUE(bitwise_equal(download(ctx, d_out), eff));

        cpu::spred_update(u.data(), v.data(), grads.data(), layout, lr, lambdas.data());
        plan.spred_update(d_u.data(), d_v.data(), d_grads.data(), d_hyper.data(), no_stop.data(), s);
        EXPECT_TRUE(bitwise_equal(download(ctx, d_u), u));
        EXPECT_TRUE(bitwise_equal(download(ctx, d_v), v));

        std::vector<float> out(layout.slab_size, 0.0f);
        std::vector<std::size_t> nnz(n_layers);
        cpu::spred_export(u.data(), v.data(), layout, threshold, out.data(), nnz.data());
        plan.spred_export(d_u.data(), d_v.data(), threshold, d_out.data(), no_stop.data(), s);
        EXPECT_TRUE(bitwise_equal(download(ctx, d_out), out));
        EXPECT_EQ(layer_nnz(ctx, plan), nnz);
        EXPECT_GT(total(nnz), 0u);
        EXPECT_LT(total(nnz), spec.n_weights()) << "threshold too small: the read-out zeroes nothing";

        // Frozen: nothing written, the counts kept.
        auto stop = stop_flag(ctx, true);
        plan.spred_update(d_u.data(), d_v.data(), d_grads.data(), d_hyper.data(), stop.data(), s);
        plan.spred_effective(d_u.data(), d_v.data(), d_out.data(), stop.data(), s);
        plan.spred_export(d_u.data(), d_v.data(), 1e9f, d_out.data(), stop.data(), s);
        EXPECT_TRUE(bitwise_equal(download(ctx, d_u), u));
        EXPECT_TRUE(bitwise_equal(download(ctx, d_out), out));
        EXPECT_EQ(layer_nnz(ctx, plan), nnz);
    }
}

// ---- gmp operations -----------------------------------------------------------------------------

TEST(CudaSparsify, MaskedSgdMatchesCpuBitwise) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    const cudaStream_t s = ctx.stream();
    const ModelSpec spec = conv_dense_spec();
    const ParamLayout layout = ParamLayout::of(spec);
    std::vector<float> w = Model::initialize(spec, 4).slab();
    const std::vector<float> grads = uniform(layout.slab_size, 5);
    std::vector<std::uint8_t> mask(layout.slab_size, 1);
    std::mt19937 rng(6);
    for (std::uint8_t& m : mask) m = rng() % 3 != 0;
    const std::vector<float> lambdas(layout.segments.size(), 0.0f);
    cuda::SparsifyPlan plan(layout, s);
    auto d_w = upload(ctx, w);
    auto d_grads = upload(ctx, grads);
    auto d_mask = upload(ctx, mask);
    auto d_hyper = upload(ctx, cuda::hyper_array(0.1f, lambdas.data(), lambdas.size()));
    auto no_stop = stop_flag(ctx, false);
    std::vector<std::size_t> nnz(layout.segments.size());
    cpu::masked_sgd(w.data(), grads.data(), mask.data(), layout, 0.1f, nnz.data());
    plan.masked_sgd(d_w.data(), d_grads.data(), d_mask.data(), d_hyper.data(), no_stop.data(), s);
    EXPECT_TRUE(bitwise_equal(download(ctx, d_w), w));
    EXPECT_EQ(layer_nnz(ctx, plan), nnz);
    EXPECT_GT(total(nnz), 0u);
    EXPECT_LT(total(nnz), spec.n_weights());

    auto stop = stop_flag(ctx, true);
    plan.masked_sgd(d_w.data(), d_grads.data(), d_mask.data(), d_hyper.data(), stop.data(), s);
    EXPECT_TRUE(bitwise_equal(download(ctx, d_w), w));
    EXPECT_EQ(layer_nnz(ctx, plan), nnz);
}

TEST(CudaSparsify, GmpPruneKeepsTheCpuSetWithTies) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    const cudaStream_t s = ctx.stream();
    for (const ModelSpec& spec : {conv_dense_spec(), dense_spec(), ModelSpec::parse("dense:19-5")}) {
        const ParamLayout layout = ParamLayout::of(spec);
        const std::size_t n_layers = layout.segments.size(), n_total = spec.n_weights();
        // Global scope (one entry) at several k, then per-layer scopes.
        std::vector<std::vector<std::size_t>> keeps = {{0}, {1}, {n_total / 3}, {n_total - 1}, {n_total}, {n_total + 5}};
        std::vector<std::size_t> per_layer;
        for (std::size_t l = 0; l < n_layers; ++l) per_layer.push_back((layout.segments[l].n_weights * (l + 1)) / (n_layers + 2));
        keeps.push_back(per_layer);
        for (const std::vector<std::size_t>& keep : keeps) {
            const std::string where = spec.to_short() + ", keep[0] " + std::to_string(keep[0]) + " of " +
                                      std::to_string(keep.size());
            std::vector<float> w = Model::initialize(spec, 9).slab();
            for (const ParamSegment& sg : layout.segments) {
                const std::vector<float> t = tied_magnitudes(sg.n_weights, static_cast<std::uint32_t>(sg.weight_offset + 3));
                std::copy(t.begin(), t.end(), w.begin() + static_cast<std::ptrdiff_t>(sg.weight_offset));
            }
            std::vector<std::uint8_t> mask(layout.slab_size, 1);
            std::mt19937 rng(17);
            for (const ParamSegment& sg : layout.segments)  // previously pruned weights may come back
                for (std::size_t i = 0; i < sg.n_weights; ++i)
                    if (rng() % 5 == 0) mask[sg.weight_offset + i] = 0;
            cuda::SparsifyPlan plan(layout, s);
            auto d_w = upload(ctx, w);
            auto d_mask = upload(ctx, mask);
            cpu::gmp_prune(w.data(), mask.data(), layout, keep);
            plan.gmp_prune(d_w.data(), d_mask.data(), keep, nullptr, s);
            EXPECT_TRUE(bitwise_equal(download(ctx, d_w), w)) << where;
            const std::vector<std::uint8_t> mask_g = download(ctx, d_mask);
            std::size_t mask_diff = 0, kept = 0;
            for (const ParamSegment& sg : layout.segments)
                for (std::size_t i = 0; i < sg.n_weights; ++i) {
                    mask_diff += mask_g[sg.weight_offset + i] != mask[sg.weight_offset + i];
                    kept += mask[sg.weight_offset + i];
                }
            EXPECT_EQ(mask_diff, 0u) << where;
            const std::size_t want = keep.size() == 1 && n_layers != 1 ? std::min(keep[0], n_total)
                                                                       : std::min(keep[0], layout.segments[0].n_weights);
            if (keep.size() == 1) EXPECT_EQ(kept, want) << where;
            std::vector<std::size_t> nnz(n_layers);
            for (std::size_t l = 0; l < n_layers; ++l) {
                const ParamSegment& sg = layout.segments[l];
                nnz[l] = static_cast<std::size_t>(std::count_if(w.begin() + static_cast<std::ptrdiff_t>(sg.weight_offset),
                                                                w.begin() + static_cast<std::ptrdiff_t>(sg.weight_offset + sg.n_weights),
                                                                [](float x) { return x != 0.0f; }));
            }
            EXPECT_EQ(layer_nnz(ctx, plan), nnz) << where;
        }
    }
}

TEST(CudaSparsify, GmpPruneFrozenChangesNothing) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    const ModelSpec spec = dense_spec();
    const ParamLayout layout = ParamLayout::of(spec);
    const std::vector<float> w = Model::initialize(spec, 1).slab();
    const std::vector<std::uint8_t> mask(layout.slab_size, 1);
    cuda::SparsifyPlan plan(layout, ctx.stream());
    auto d_w = upload(ctx, w);
    auto d_mask = upload(ctx, mask);
    auto stop = stop_flag(ctx, true);
    plan.gmp_prune(d_w.data(), d_mask.data(), {10}, stop.data(), ctx.stream());
    EXPECT_TRUE(bitwise_equal(download(ctx, d_w), w));
    EXPECT_EQ(download(ctx, d_mask), mask);
}

// ---- engine runs against the CPU engine ---------------------------------------------------------

namespace {

Dataset random_regression(std::size_t n, std::size_t n_features, std::size_t n_outputs, std::uint32_t seed) {
    Dataset d;
    d.name = "random-regression-" + std::to_string(seed);
    d.task = Task::regression;
    d.n_samples = n;
    d.n_features = n_features;
    d.n_outputs = n_outputs;
    d.x = uniform(n * n_features, seed);
    d.y = uniform(n * n_outputs, seed + 1, -0.5f, 0.5f);
    return d;
}

struct EngineSetup {
    ModelSpec spec;
    Dataset data;
    sparsify::MethodConfig config;
    std::vector<float> lambdas;
    float lr = 0.1f;
    std::size_t batch = 16;
    StopRule rule;
};

void prepare(Engine& e, const EngineSetup& setup, const std::vector<float>& init, const std::vector<std::uint32_t>& order) {
    e.set_method(setup.config);
    e.set_params(init);
    e.set_hyper(setup.lr, setup.lambdas);
    e.set_stop_rule(setup.rule);
    e.set_train_data(setup.data);
    e.set_order(order);
}

std::vector<std::uint32_t> reversed_order(std::size_t n) {
    std::vector<std::uint32_t> order(n);
    std::iota(order.begin(), order.end(), 0u);
    std::reverse(order.begin(), order.end());  // the gather is exercised, not the identity
    return order;
}

// `steps` steps on both engines (batches cycling through the order); then steps_run, losses,
// NNZ per layer and the exported parameters are compared.
void expect_engines_agree(const EngineSetup& setup, std::size_t steps, double param_atol, const std::string& what) {
    const Model init = Model::initialize(setup.spec, 7);
    const ParamLayout layout = ParamLayout::of(setup.spec);
    const std::vector<std::uint32_t> order = reversed_order(setup.data.n_samples);
    auto gpu = make_cuda_engine(setup.spec, Loss::mse, 0);
    auto cpu = make_cpu_engine(setup.spec, Loss::mse);
    for (Engine* e : {gpu.get(), cpu.get()}) prepare(*e, setup, init.slab(), order);

    // The exported initial state (set_params) already agrees.
    {
        const EngineStatus sg = gpu->status(), sc = cpu->status();
        EXPECT_EQ(sg.nnz, sc.nnz) << what << ": after set_params";
        EXPECT_TRUE(all_close(gpu->get_params(), cpu->get_params(), 1e-6, 0.0)) << what << ": after set_params";
    }
    const std::size_t per_epoch = (setup.data.n_samples + setup.batch - 1) / setup.batch;
    for (std::size_t k = 0; k < steps; ++k) {
        const std::size_t first = (k % per_epoch) * setup.batch;
        const std::size_t count = std::min(setup.batch, setup.data.n_samples - first);
        gpu->step(first, count);
        cpu->step(first, count);
    }
    const EngineStatus sg = gpu->status(), sc = cpu->status();
    EXPECT_EQ(sg.steps_run, sc.steps_run) << what;
    EXPECT_EQ(sg.stopped, sc.stopped) << what;
    EXPECT_NEAR(sg.loss_sum, sc.loss_sum, 1e-5 * std::fabs(sc.loss_sum)) << what;
    ASSERT_EQ(sg.nnz.size(), sc.nnz.size()) << what;
    for (std::size_t l = 0; l < sc.nnz.size(); ++l)
        EXPECT_NEAR(static_cast<double>(sg.nnz[l]), static_cast<double>(sc.nnz[l]), 2.0) << what << ", layer " << l;
    const std::vector<float> pg = gpu->get_params(), pc = cpu->get_params();
    EXPECT_TRUE(any_nonzero(weights_of(pc, layout))) << what;
    EXPECT_TRUE(all_close(pg, pc, param_atol, 0.0)) << what;
    // The exported weights hold exact zeros at the same places (NNZ as the engine reports it).
    std::size_t zero_mismatch = 0;
    const std::vector<float> wg = weights_of(pg, layout), wc = weights_of(pc, layout);
    for (std::size_t i = 0; i < wc.size(); ++i) zero_mismatch += (wg[i] == 0.0f) != (wc[i] == 0.0f);
    EXPECT_LE(zero_mismatch, 2u) << what;
    EXPECT_EQ(total(sg.nnz), wg.size() - static_cast<std::size_t>(std::count(wg.begin(), wg.end(), 0.0f))) << what;
}

// Gates initialized `margin` above the test-time closing point log(1/11): the first Adam steps
// (about +-gate_lr each) close some and keep others open, so the exported NNZ moves.
sparsify::MethodConfig l0_config(bool group, std::uint64_t seed, float margin) {
    TrainOptions options;
    options.method.method = Method::l0;
    options.method.l0.group = group;
    const float log_alpha0 = std::log(1.0f / 11.0f) + margin;
    const float drop = 1.0f / (1.0f + std::exp(log_alpha0));
    options.method.l0.drop_init = drop;
    options.method.l0.drop_init_first = drop;
    options.seed = seed;
    return sparsify::make_method_config(options, 100);
}

}  // namespace

TEST(CudaSparsifyEngine, L0PerWeightStepsMatchCpu) {
    SKIP_WITHOUT_CUDA();
    EngineSetup setup{dense_spec(), random_regression(40, 19, 7, 3), l0_config(false, 5, 0.005f), {1e-4f, 1e-4f}};
    expect_engines_agree(setup, 4, 1e-5, "l0 per-weight");
}

TEST(CudaSparsifyEngine, L0GroupStepsMatchCpuOnConvModel) {
    SKIP_WITHOUT_CUDA();
    const ModelSpec spec = conv_dense_spec();
    // No penalty here (the operation tests cover it): with lambda = 1e-7 already every gate
    // but a few closes within four steps. Gates whose samples were all clamped (dz = 0) do not
    // move; the others open or close by the sign of their loss gradient: the CPU engine ends at
    // 36/54, 54/90, 161/210, 12/21 nonzero weights.
    EngineSetup setup{spec, random_regression(40, spec.n_inputs, 3, 4), l0_config(true, 6, 0.015f),
                      std::vector<float>(spec.n_weight_layers(), 0.0f)};
    expect_engines_agree(setup, 4, 1e-5, "l0 group");
}

TEST(CudaSparsifyEngine, SpredStepsMatchCpu) {
    SKIP_WITHOUT_CUDA();
    TrainOptions options;
    options.method.method = Method::spred;
    options.method.spred.threshold = 0.01f;
    const ModelSpec spec = dense_spec();
    EngineSetup setup{spec, random_regression(40, 19, 7, 5), sparsify::make_method_config(options, 100),
                      {1e-2f, 1e-3f}};
    expect_engines_agree(setup, 4, 1e-5, "spred");
    const ModelSpec conv = conv_dense_spec();
    EngineSetup conv_setup{conv, random_regression(40, conv.n_inputs, 3, 6), sparsify::make_method_config(options, 100),
                           std::vector<float>(conv.n_weight_layers(), 1e-2f)};
    expect_engines_agree(conv_setup, 3, 1e-5, "spred conv");
}

TEST(CudaSparsifyEngine, GmpStepsWithPruningMatchCpu) {
    SKIP_WITHOUT_CUDA();
    const ModelSpec spec = conv_dense_spec();
    const std::size_t n_total = spec.n_weights();
    for (bool per_layer : {false, true}) {
        TrainOptions options;
        options.method.method = Method::gmp;
        options.method.gmp.per_layer = per_layer;
        options.stop.targets = {n_total / 4};
        // A budget of 10 steps: pruning events at applied steps 1..8, one per step.
        const sparsify::MethodConfig config = sparsify::make_method_config(options, 10);
        ASSERT_FALSE(sparsify::gmp_keep(config, ParamLayout::of(spec), 3).empty());
        EngineSetup setup{spec, random_regression(40, spec.n_inputs, 3, 7), config,
                          std::vector<float>(spec.n_weight_layers(), 0.0f)};
        const std::string what = per_layer ? "gmp per layer" : "gmp global";
        expect_engines_agree(setup, 5, 1e-5, what);
        // After the fifth step the NNZ is the schedule's (no kept weight is an exact zero).
        auto gpu = make_cuda_engine(spec, Loss::mse, 0);
        prepare(*gpu, setup, Model::initialize(spec, 7).slab(), reversed_order(setup.data.n_samples));
        for (std::size_t k = 0; k < 5; ++k) gpu->step((k % 3) * 16, std::min<std::size_t>(16, 40 - (k % 3) * 16));
        const std::vector<std::size_t> keep = sparsify::gmp_keep(config, ParamLayout::of(spec), 5);
        const EngineStatus st = gpu->status();
        if (keep.size() == 1) EXPECT_EQ(total(st.nnz), keep[0]) << what;
        else EXPECT_EQ(st.nnz, keep) << what;
        EXPECT_LT(total(st.nnz), n_total) << what;
    }
}

// The stop flag: once the rule holds, later steps of every method change nothing on the device;
// the result equals a run of exactly that many steps without a rule, bit for bit.
TEST(CudaSparsifyEngine, StopFreezesEveryMethod) {
    SKIP_WITHOUT_CUDA();
    const ModelSpec spec = dense_spec();
    const std::size_t n_total = spec.n_weights();
    TrainOptions spred;
    spred.method.method = Method::spred;
    spred.method.spred.threshold = 0.01f;
    TrainOptions gmp;
    gmp.method.method = Method::gmp;
    gmp.stop.targets = {n_total / 4};
    const std::vector<std::pair<std::string, sparsify::MethodConfig>> methods = {
        {"l0", l0_config(false, 8, 0.005f)},
        {"spred", sparsify::make_method_config(spred, 100)},
        {"gmp", sparsify::make_method_config(gmp, 10)},
    };
    const Dataset data = random_regression(48, 19, 7, 9);
    const Model init = Model::initialize(spec, 7);
    const std::vector<std::uint32_t> order = reversed_order(data.n_samples);
    for (const auto& [name, config] : methods) {
        StopRule any;  // holds at the first step: every total NNZ in [0.002, 1.998] * n_total
        any.targets = {n_total};
        any.tolerance = 0.998;
        EngineSetup frozen{spec, data, config, {1e-4f, 1e-4f}, 0.1f, 16, any};
        EngineSetup plain{spec, data, config, {1e-4f, 1e-4f}, 0.1f, 16, StopRule{}};
        auto a = make_cuda_engine(spec, Loss::mse, 0);
        auto b = make_cuda_engine(spec, Loss::mse, 0);
        auto c = make_cpu_engine(spec, Loss::mse);
        prepare(*a, frozen, init.slab(), order);
        prepare(*b, plain, init.slab(), order);
        prepare(*c, frozen, init.slab(), order);
        for (std::size_t k = 0; k < 3; ++k) {
            a->step(k * 16, 16);
            c->step(k * 16, 16);
        }
        b->step(0, 16);
        const EngineStatus sa = a->status(), sb = b->status(), sc = c->status();
        EXPECT_TRUE(sa.stopped) << name;
        EXPECT_EQ(sa.steps_run, 1u) << name;
        EXPECT_EQ(sc.steps_run, 1u) << name;
        EXPECT_EQ(sa.nnz, sb.nnz) << name;
        EXPECT_TRUE(bitwise_equal(a->get_params(), b->get_params())) << name;
        EXPECT_TRUE(all_close(a->get_params(), c->get_params(), 1e-5, 0.0)) << name;

        // Clearing the stop resumes from the applied count: a's next steps are b's second and
        // third (same gate noise, Adam step and GMP schedule), whatever was queued while frozen.
        a->set_stop_rule(StopRule{});
        c->set_stop_rule(StopRule{});
        for (Engine* e : {a.get(), b.get(), c.get()}) {
            e->step(16, 16);
            e->step(32, 16);
        }
        const EngineStatus ta = a->status(), tb = b->status(), tc = c->status();
        EXPECT_EQ(ta.steps_run, 3u) << name;
        EXPECT_EQ(tb.steps_run, 3u) << name;
        EXPECT_EQ(tc.steps_run, 3u) << name;
        EXPECT_EQ(ta.nnz, tb.nnz) << name;
        EXPECT_TRUE(bitwise_equal(a->get_params(), b->get_params())) << name;
        EXPECT_TRUE(all_close(a->get_params(), c->get_params(), 1e-5, 0.0)) << name;
    }
}
