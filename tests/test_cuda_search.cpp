// The lambda search's device parts against their CPU twins: the candidate filter and lower
// median (Thrust on the device), weight decay (cuBLAS axpy), and a whole search on both
// backends. Every test skips with the reason when no GPU is visible.
//
// Tolerances:
//  - candidates on a given gradient slab: exact (the same floats are compared and sorted).
//  - weight decay: |got - ref| <= 1 ulp-level 1e-7 * |ref| (cuBLAS may fuse the multiply-add).
//  - a whole search: the band met on both backends; the final lambdas within
//    1e-2 relative (GEMM rounding differs between backends and the rules amplify it).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
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

TEST(CudaSearch, CandidatesMatchTheCpuTwin) {
    SKIP_WITHOUT_CUDA();
    const ModelSpec spec = ModelSpec::parse("dense:37-300-111-19");
    const ParamLayout layout = ParamLayout::of(spec);
    std::mt19937 rng(3);
    std::normal_distribution<float> g(0.0f, 1e-3f);
    std::vector<float> grads(layout.slab_size, 0.0f);
    for (const ParamSegment& s : layout.segments)
        for (std::size_t i = 0; i < s.n_weights; ++i) grads[s.weight_offset + i] = g(rng);
    grads[layout.segments[1].weight_offset + 5] = std::nanf("");  // never a candidate
    cuda::CudaContext ctx(0);
    cuda::DeviceBuffer<float> d(grads.size());
    d.copy_from_host(grads.data(), grads.size(), ctx.stream());
    cuda::DeviceBuffer<float> scratch(layout.slab_size);
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<std::vector<std::size_t>> groups{{0, 1, 2}, {0}, {1}, {2}, {2, 0}};
    for (const auto& layers : groups)
        for (auto [low, up] : {std::pair<float, float>{0.0f, inf}, {2e-4f, 1.5e-3f}, {1e-3f, 1.1e-3f}, {5.0f, 6.0f}}) {
            const CandidateSet want = cpu::gradient_candidates(grads.data(), layout, layers, low, up);
            const CandidateSet got =
                cuda::gradient_candidates(ctx, d.data(), layout, layers, low, up, scratch.data());
            EXPECT_EQ(got.count, want.count) << layers.size() << " layers, (" << low << ", " << up << ")";
            EXPECT_EQ(got.lower_median, want.lower_median) << layers.size() << " layers, (" << low << ", " << up << ")";
        }
}

TEST(CudaSearch, WeightDecayMatchesTheCpuTwin) {
    SKIP_WITHOUT_CUDA();
    const ModelSpec spec = ModelSpec::parse("dense:19-111-1");
    const Model m = Model::initialize(spec, 7);
    std::vector<float> ref(m.layout().slab_size, 0.25f);
    cuda::CudaContext ctx(0);
    cuda::DeviceBuffer<float> p(ref.size()), gr(ref.size());
    p.copy_from_host(m.slab().data(), ref.size(), ctx.stream());
    gr.copy_from_host(ref.data(), ref.size(), ctx.stream());
    cpu::add_weight_decay(ref.data(), m.slab().data(), m.layout(), 1e-2f);
    cuda::add_weight_decay(ctx, gr.data(), p.data(), m.layout(), 1e-2f);
    std::vector<float> got(ref.size());
    gr.copy_to_host(got.data(), got.size(), ctx.stream());
    ctx.synchronize();
    for (std::size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-7f * std::fabs(ref[i])) << i;
}

TEST(CudaSearch, WholeSearchAgreesWithTheCpu) {
    SKIP_WITHOUT_CUDA();
    const DataSplit data = load_data("mackey-glass", DataOptions{});
    const Model init = Model::initialize(ModelSpec::parse("dense:6-32-16-1"), 1);
    SearchOptions o;
    o.train.lr = 0.1f;
    o.train.steps = 400;
    o.train.progress_seconds = 0;
    o.train.stop.targets = {150};
    o.train.stop.tolerance = 0.02;
    o.max_outer = 30;
    SearchResult r[2];
    for (int b = 0; b < 2; ++b) {
        o.train.device = b == 0 ? Device{} : Device{DeviceKind::cuda, 0};
        r[b] = LambdaSearch(o).run(init, data.train, &data.test);
        ASSERT_TRUE(r[b].reached) << (b ? "cuda" : "cpu");
    }
    EXPECT_EQ(r[1].run.device, "cuda:0");
    EXPECT_NEAR(r[1].lambda_final[0], r[0].lambda_final[0], 1e-2 * r[0].lambda_final[0]);
    EXPECT_NEAR(r[1].run.test_eval.loss, r[0].run.test_eval.loss, 0.05 * r[0].run.test_eval.loss);
}

}  // namespace
