// The cuDNN convolution and pooling (cuda/cudnn_ops.h) against their CPU twins (cpu/conv_ops.h).
// Every test that needs a GPU skips with the reason when none is visible.
//
// Tolerances, stated once (inputs U(-1, 1) unless said otherwise; k = terms summed per output):
//  - convolution sums (forward: k = c_in*kh*kw + 1; dL_dW and dL_db: k = batch*h_out*w_out;
//    dL_dx: k = c_out*kh*kw): |got - ref| <= 1e-6 * k + 1e-4 * |ref|. Float32 summation in
//    another order errs by ~sqrt(k) * 6e-8 * |partial sums|; Winograd/FFT transforms add a few
//    ulps of the transformed values; both stay > 10x inside the bound. TF32 (2^-11 relative per
//    product, ~5e-4 * sqrt(k) * 0.3 absolute) or a wrong index, stride or pad fails it.
//  - max pooling: exact (bitwise). The forward pass picks a value; the backward pass adds dyadic
//    gradients (k / 16, |k| <= 8), whose sums are exact in any order. Inputs are distinct, so no
//    tie decides which element is routed the gradient.
//  - average pooling: |got - ref| <= 1e-6 + 1e-5 * |ref| (a window sum of <= 30 terms and one
//    division or reciprocal multiply, a few ulps either way; counting the padding wrongly
//    changes edge values by >= 10%).
//  - gradients with accumulate: the same bounds, the prior contents included in |ref|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/backend_query.h"
#include "cpu/conv_ops.h"
#include "cuda/common.h"
#include "cuda/context.h"
#include "cuda/cudnn_ops.h"
#include "sparseprox/sparseprox.h"
#include "cuda_test_util.h"
#include "test_util.h"

using namespace sparseprox;
using namespace sparseprox::testing_util;

namespace {

// k / 16 with 1 <= |k| <= 8: sums of a few of them are exact in float.
std::vector<float> dyadic(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<float> v(n);
    for (float& x : v) {
        int k = static_cast<int>(rng() % 16) - 8;  // -8 .. 7
        if (k >= 0) ++k;                            // never 0
        x = std::ldexp(static_cast<float>(k), -4);
    }
    return v;
}

// n distinct values (i - n/2) / 1024 in random order (exact in float for n < 2^24).
std::vector<float> distinct(std::size_t n, std::uint32_t seed) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = std::ldexp(static_cast<float>(static_cast<long>(i) - static_cast<long>(n / 2)), -10);
    std::shuffle(v.begin(), v.end(), std::mt19937(seed));
    return v;
}

// Device outputs start as NaN: a value the operation failed to write cannot pass a comparison.
std::vector<float> nans(std::size_t n) { return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()); }

bool any_nonzero(const std::vector<float>& v) {
    return std::any_of(v.begin(), v.end(), [](float x) { return x != 0.0f; });
}

// The bound of the header comment for sums of k terms.
::testing::AssertionResult sum_close(const std::vector<float>& got, const std::vector<float>& ref, std::size_t k) {
    return all_close(got, ref, 1e-6 * static_cast<double>(k), 1e-4);
}

cpu::ConvShape conv_shape(std::size_t batch, std::size_t c_in, std::size_t h_in, std::size_t w_in, std::size_t c_out,
                     std::size_t kh, std::size_t kw, std::size_t stride_h, std::size_t stride_w, std::size_t pad_h,
                     std::size_t pad_w) {
    return cpu::ConvShape{batch, c_in, h_in, w_in, c_out, kh, kw, stride_h, stride_w, pad_h, pad_w};
}

// Odd sizes, padding, strides 1 to 3, batch 1 and > 1, 1x1 and rectangular kernels, a kernel
// as large as the input, a stride that leaves input columns unused (floor mode).
const std::vector<cpu::ConvShape>& conv_shapes() {
    static const std::vector<cpu::ConvShape> shapes = {
        conv_shape(1, 1, 7, 7, 1, 3, 3, 1, 1, 0, 0),      // smallest channels, batch 1
        conv_shape(3, 3, 19, 17, 5, 3, 3, 2, 2, 1, 1),    // odd sizes, stride 2, pad 1
        conv_shape(2, 4, 11, 13, 7, 5, 3, 1, 2, 2, 1),    // rectangular kernel, mixed stride/pad
        conv_shape(5, 2, 9, 9, 3, 1, 1, 1, 1, 0, 0),      // 1x1 kernel
        conv_shape(1, 6, 28, 28, 16, 5, 5, 1, 1, 2, 2),   // MNIST-like, batch 1
        conv_shape(4, 16, 14, 14, 32, 3, 3, 2, 2, 1, 1),  // k = 144 terms per output
        conv_shape(2, 3, 5, 5, 4, 5, 5, 1, 1, 0, 0),      // kernel covers the input: 1x1 output
        conv_shape(3, 2, 8, 11, 3, 4, 4, 3, 3, 1, 0),     // stride 3 leaves the last column unused
    };
    return shapes;
}

std::string describe(const cpu::ConvShape& s) {
    return "batch " + std::to_string(s.batch) + ", c_in " + std::to_string(s.c_in) + ", " + std::to_string(s.h_in) +
           "x" + std::to_string(s.w_in) + ", c_out " + std::to_string(s.c_out) + ", kernel " + std::to_string(s.kh) +
           "x" + std::to_string(s.kw) + ", stride " + std::to_string(s.stride_h) + "x" + std::to_string(s.stride_w) +
           ", pad " + std::to_string(s.pad_h) + "x" + std::to_string(s.pad_w);
}

std::size_t x_size(const cpu::ConvShape& s) { return s.batch * s.c_in * s.h_in * s.w_in; }
std::size_t y_size(const cpu::ConvShape& s) { return s.batch * s.c_out * s.h_out() * s.w_out(); }

cpu::PoolShape pool_shape(std::size_t batch, std::size_t channels, std::size_t h_in, std::size_t w_in, std::size_t kh,
                     std::size_t kw, std::size_t stride_h, std::size_t stride_w, std::size_t pad_h, std::size_t pad_w) {
    return cpu::PoolShape{batch, channels, h_in, w_in, kh, kw, stride_h, stride_w, pad_h, pad_w};
}

const std::vector<cpu::PoolShape>& pool_shapes() {
    static const std::vector<cpu::PoolShape> shapes = {
        pool_shape(1, 1, 4, 4, 2, 2, 2, 2, 0, 0),     // the common 2x2/2, batch 1
        pool_shape(3, 5, 19, 17, 3, 3, 2, 2, 1, 1),   // overlapping windows, padding, odd sizes
        pool_shape(2, 3, 11, 13, 2, 3, 1, 2, 0, 1),   // rectangular, overlapping in h
        pool_shape(4, 2, 7, 7, 3, 3, 3, 3, 1, 1),     // padded edge windows
        pool_shape(2, 2, 5, 6, 5, 6, 1, 1, 0, 0),     // one window over the whole input
        pool_shape(1, 7, 9, 9, 2, 2, 2, 2, 0, 0),     // floor mode drops the last row and column
    };
    return shapes;
}

std::string describe(const cpu::PoolShape& s) {
    return "batch " + std::to_string(s.batch) + ", channels " + std::to_string(s.channels) + ", " +
           std::to_string(s.h_in) + "x" + std::to_string(s.w_in) + ", window " + std::to_string(s.kh) + "x" +
           std::to_string(s.kw) + ", stride " + std::to_string(s.stride_h) + "x" + std::to_string(s.stride_w) +
           ", pad " + std::to_string(s.pad_h) + "x" + std::to_string(s.pad_w);
}

std::size_t x_size(const cpu::PoolShape& s) { return s.batch * s.channels * s.h_in * s.w_in; }
std::size_t y_size(const cpu::PoolShape& s) { return s.batch * s.channels * s.h_out() * s.w_out(); }

}  // namespace

#if defined(SPARSEPROX_WITH_CUDNN)

// ---- convolution --------------------------------------------------------------------------------

TEST(CudaConv, ForwardMatchesCpu) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    std::uint32_t seed = 500;
    for (const cpu::ConvShape& s : conv_shapes()) {
        const auto x = uniform(x_size(s), ++seed);
        const auto W = uniform(s.n_weights(), ++seed);
        const auto b = uniform(s.c_out, ++seed);
        std::vector<float> ref(y_size(s)), workspace(cpu::conv2d_workspace_floats(s));
        cpu::conv2d_forward(s, x.data(), W.data(), b.data(), ref.data(), workspace.data());

        auto dx = upload(ctx, x), dW = upload(ctx, W), db = upload(ctx, b), dy = upload(ctx, nans(y_size(s)));
        cuda::conv2d_forward(ctx, s, dx.data(), dW.data(), db.data(), dy.data());
        const auto got = download(ctx, dy);
        ASSERT_TRUE(any_nonzero(ref)) << describe(s);
        EXPECT_TRUE(sum_close(got, ref, s.c_in * s.kh * s.kw + 1)) << describe(s);
    }
}

// Two steps: the first overwrites the gradients (their device buffers start as NaN), the second
// accumulates onto them with another dL_dy, as the full-data gradient sums its chunks. dL_dx is
// overwritten both times, and skipped when null.
TEST(CudaConv, BackwardMatchesCpuAndAccumulates) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    std::uint32_t seed = 600;
    for (const cpu::ConvShape& s : conv_shapes())
        for (bool with_dx : {true, false}) {
            const std::string what = describe(s) + (with_dx ? ", with dL_dx" : ", without dL_dx");
            const auto x = uniform(x_size(s), ++seed);
            const auto W = uniform(s.n_weights(), ++seed);
            std::vector<float> workspace(cpu::conv2d_workspace_floats(s));
            std::vector<float> ref_dW(s.n_weights(), 0.0f), ref_db(s.c_out, 0.0f), ref_dx(x_size(s), 0.0f);

            auto dx = upload(ctx, x), dW = upload(ctx, W);
            auto g_dW = upload(ctx, nans(s.n_weights())), g_db = upload(ctx, nans(s.c_out));
            auto g_dx = upload(ctx, nans(x_size(s)));

            for (int step = 0; step < 2; ++step) {
                const bool accumulate = step == 1;
                const auto dL_dy = uniform(y_size(s), ++seed);
                cpu::conv2d_backward(s, x.data(), W.data(), dL_dy.data(), ref_dW.data(), ref_db.data(),
                                     with_dx ? ref_dx.data() : nullptr, workspace.data(), accumulate);
                auto d_dy = upload(ctx, dL_dy);
                cuda::conv2d_backward(ctx, s, dx.data(), dW.data(), d_dy.data(), g_dW.data(), g_db.data(),
                                      with_dx ? g_dx.data() : nullptr, accumulate);

                const std::string at = what + ", step " + std::to_string(step);
                const std::size_t k_w = s.batch * s.h_out() * s.w_out();
                ASSERT_TRUE(any_nonzero(ref_dW)) << at;
                EXPECT_TRUE(sum_close(download(ctx, g_dW), ref_dW, 2 * k_w)) << "dL_dW, " << at;
                EXPECT_TRUE(sum_close(download(ctx, g_db), ref_db, 2 * k_w)) << "dL_db, " << at;
                if (with_dx) {
                    ASSERT_TRUE(any_nonzero(ref_dx)) << at;
                    EXPECT_TRUE(sum_close(download(ctx, g_dx), ref_dx, s.c_out * s.kh * s.kw)) << "dL_dx, " << at;
                }
            }
            if (!with_dx) {  // never written
                const auto untouched = download(ctx, g_dx);
                EXPECT_TRUE(std::all_of(untouched.begin(), untouched.end(), [](float v) { return std::isnan(v); }))
                    << what;
            }
        }
}

// An empty batch: nothing to compute; the gradients are zero unless accumulating.
TEST(CudaConv, EmptyBatch) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    cpu::ConvShape s = conv_shapes()[1];
    s.batch = 0;
    auto W = upload(ctx, uniform(s.n_weights(), 1));
    auto b = upload(ctx, uniform(s.c_out, 2));
    cuda::DeviceBuffer<float> none(1);
    cuda::conv2d_forward(ctx, s, none.data(), W.data(), b.data(), none.data());
    const auto prior = uniform(s.n_weights(), 3);
    auto dW = upload(ctx, prior), db = upload(ctx, uniform(s.c_out, 4));
    cuda::conv2d_backward(ctx, s, none.data(), W.data(), none.data(), dW.data(), db.data(), none.data(), true);
    EXPECT_TRUE(bitwise_equal(download(ctx, dW), prior));
    cuda::conv2d_backward(ctx, s, none.data(), W.data(), none.data(), dW.data(), db.data(), nullptr, false);
    EXPECT_TRUE(bitwise_equal(download(ctx, dW), std::vector<float>(s.n_weights(), 0.0f)));
    EXPECT_TRUE(bitwise_equal(download(ctx, db), std::vector<float>(s.c_out, 0.0f)));
    EXPECT_EQ(ctx.cudnn().cached_plans(), 0u);  // nothing was planned for it
}

TEST(CudaConv, InvalidShapeIsAnError) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    cuda::DeviceBuffer<float> buf(4096);
    cpu::ConvShape too_big = conv_shape(1, 1, 3, 3, 1, 5, 5, 1, 1, 0, 0);  // 5x5 kernel on a 3x3 input
    EXPECT_TRUE(testing_util::throws_error_with(
        [&] { cuda::conv2d_forward(ctx, too_big, buf.data(), buf.data(), buf.data(), buf.data()); },
        {"larger than the padded input", "kernel 5x5"}));
    cpu::ConvShape no_stride = conv_shapes()[0];
    no_stride.stride_w = 0;
    EXPECT_TRUE(testing_util::throws_error_with(
        [&] { cuda::conv2d_forward(ctx, no_stride, buf.data(), buf.data(), buf.data(), buf.data()); },
        {"must be positive"}));
    EXPECT_EQ(ctx.cudnn().cached_plans(), 0u);
}

// ---- the plan cache ---------------------------------------------------------------------------

TEST(CudaCudnn, PlansAreChosenOncePerShape) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    cuda::Cudnn& cudnn = ctx.cudnn();
    EXPECT_EQ(&cudnn, &ctx.cudnn());  // one state per context
    EXPECT_EQ(cudnn.cached_plans(), 0u);

    const cpu::ConvShape s = conv_shapes()[5];
    auto x = upload(ctx, uniform(x_size(s), 1)), W = upload(ctx, uniform(s.n_weights(), 2));
    auto b = upload(ctx, uniform(s.c_out, 3)), dL_dy = upload(ctx, uniform(y_size(s), 4));
    cuda::DeviceBuffer<float> y(y_size(s)), dW(s.n_weights()), db(s.c_out), dx(x_size(s));
    const auto run = [&] {
        cuda::conv2d_forward(ctx, s, x.data(), W.data(), b.data(), y.data());
        cuda::conv2d_backward(ctx, s, x.data(), W.data(), dL_dy.data(), dW.data(), db.data(), dx.data());
        ctx.synchronize();
    };
    run();
    EXPECT_EQ(cudnn.cached_plans(), 1u);
    const cuda::Cudnn::ConvPlanInfo& first = cudnn.conv_plan(s);
    const cuda::Cudnn::ConvPlanInfo copy = first;
    EXPECT_GE(first.forward_algo, 0);
    EXPECT_GE(first.backward_data_algo, 0);
    EXPECT_GE(first.backward_filter_algo, 0);
    EXPECT_GE(cudnn.workspace_bytes(), std::max({first.forward_workspace_bytes, first.backward_data_workspace_bytes,
                                                 first.backward_filter_workspace_bytes}));

    run();
    EXPECT_EQ(cudnn.cached_plans(), 1u);
    const cuda::Cudnn::ConvPlanInfo& second = cudnn.conv_plan(s);
    EXPECT_EQ(&first, &second);  // the same cached object, not a new choice
    EXPECT_EQ(second.forward_algo, copy.forward_algo);
    EXPECT_EQ(second.backward_data_algo, copy.backward_data_algo);
    EXPECT_EQ(second.backward_filter_algo, copy.backward_filter_algo);

    cpu::ConvShape other = s;
    other.batch += 1;  // any field makes another plan
    EXPECT_NE(&cudnn.conv_plan(other), &first);
    EXPECT_EQ(cudnn.cached_plans(), 2u);

    // Pooling plans are keyed by shape and mode.
    const cpu::PoolShape p = pool_shapes()[1];
    auto px = upload(ctx, uniform(x_size(p), 5));
    cuda::DeviceBuffer<float> py(y_size(p));
    for (int i = 0; i < 2; ++i) {
        cuda::maxpool2d_forward(ctx, p, px.data(), py.data());
        cuda::avgpool2d_forward(ctx, p, px.data(), py.data());
    }
    ctx.synchronize();
    EXPECT_EQ(cudnn.cached_plans(), 4u);
}

// The policy prefers deterministic algorithms: the same inputs give the same bits.
TEST(CudaCudnn, BackwardIsReproducible) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    const cpu::ConvShape s = conv_shapes()[5];
    auto x = upload(ctx, uniform(x_size(s), 11)), W = upload(ctx, uniform(s.n_weights(), 12));
    auto b = upload(ctx, uniform(s.c_out, 13)), dL_dy = upload(ctx, uniform(y_size(s), 14));
    std::vector<float> results[2][4];
    for (auto& r : results) {
        cuda::DeviceBuffer<float> y(y_size(s)), dW(s.n_weights()), db(s.c_out), dx(x_size(s));
        cuda::conv2d_forward(ctx, s, x.data(), W.data(), b.data(), y.data());
        cuda::conv2d_backward(ctx, s, x.data(), W.data(), dL_dy.data(), dW.data(), db.data(), dx.data());
        r[0] = download(ctx, y);
        r[1] = download(ctx, dW);
        r[2] = download(ctx, db);
        r[3] = download(ctx, dx);
    }
    if (!ctx.cudnn().conv_plan(s).deterministic)
        GTEST_SKIP() << "cuDNN offered no deterministic algorithm within the workspace cap for " << describe(s);
    const char* names[4] = {"y", "dL_dW", "dL_db", "dL_dx"};
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(bitwise_equal(results[1][i], results[0][i])) << names[i];
}

// ---- pooling -------------------------------------------------------------------------------------

TEST(CudaPool, MaxPoolMatchesCpuExactly) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    std::uint32_t seed = 700;
    for (const cpu::PoolShape& s : pool_shapes()) {
        const auto x = distinct(x_size(s), ++seed);
        const auto dL_dy = dyadic(y_size(s), ++seed);
        std::vector<float> ref_y(y_size(s)), ref_dx(x_size(s));
        cpu::maxpool2d_forward(s, x.data(), ref_y.data());
        cpu::maxpool2d_backward(s, x.data(), ref_y.data(), dL_dy.data(), ref_dx.data());

        auto dx_in = upload(ctx, x), dy = upload(ctx, nans(y_size(s)));
        cuda::maxpool2d_forward(ctx, s, dx_in.data(), dy.data());
        const auto got_y = download(ctx, dy);
        EXPECT_TRUE(bitwise_equal(got_y, ref_y)) << "y, " << describe(s);

        auto d_dL_dy = upload(ctx, dL_dy), d_dL_dx = upload(ctx, nans(x_size(s)));
        cuda::maxpool2d_backward(ctx, s, dx_in.data(), dy.data(), d_dL_dy.data(), d_dL_dx.data());
        ASSERT_TRUE(any_nonzero(ref_dx)) << describe(s);
        EXPECT_TRUE(bitwise_equal(download(ctx, d_dL_dx), ref_dx)) << "dL_dx, " << describe(s);
    }
}

TEST(CudaPool, AvgPoolMatchesCpu) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    std::uint32_t seed = 800;
    for (const cpu::PoolShape& s : pool_shapes()) {
        const auto x = uniform(x_size(s), ++seed);
        const auto dL_dy = uniform(y_size(s), ++seed);
        std::vector<float> ref_y(y_size(s)), ref_dx(x_size(s));
        cpu::avgpool2d_forward(s, x.data(), ref_y.data());
        cpu::avgpool2d_backward(s, dL_dy.data(), ref_dx.data());

        auto d_x = upload(ctx, x), d_y = upload(ctx, nans(y_size(s)));
        cuda::avgpool2d_forward(ctx, s, d_x.data(), d_y.data());
        ASSERT_TRUE(any_nonzero(ref_y)) << describe(s);
        EXPECT_TRUE(all_close(download(ctx, d_y), ref_y, 1e-6, 1e-5)) << "y, " << describe(s);

        auto d_dL_dy = upload(ctx, dL_dy), d_dL_dx = upload(ctx, nans(x_size(s)));
        cuda::avgpool2d_backward(ctx, s, d_dL_dy.data(), d_dL_dx.data());
        ASSERT_TRUE(any_nonzero(ref_dx)) << describe(s);
        EXPECT_TRUE(all_close(download(ctx, d_dL_dx), ref_dx, 1e-6, 1e-5)) << "dL_dx, " << describe(s);
    }
}

#else  // !SPARSEPROX_WITH_CUDNN

TEST(CudaConv, BuiltWithoutCudnnIsAnError) {
    SKIP_WITHOUT_CUDA();
    cuda::CudaContext ctx(0);
    cuda::DeviceBuffer<float> buf(64);
    const cpu::ConvShape s = conv_shapes()[0];
    EXPECT_TRUE(testing_util::throws_error_with(
        [&] { cuda::conv2d_forward(ctx, s, buf.data(), buf.data(), buf.data(), buf.data()); },
        {"built without cuDNN"}));
    EXPECT_TRUE(testing_util::throws_error_with([&] { ctx.cudnn(); }, {"built without cuDNN"}));
    EXPECT_TRUE(testing_util::throws_error_with(
        [&] { cuda::maxpool2d_forward(ctx, pool_shapes()[0], buf.data(), buf.data()); }, {"built without cuDNN"}));
}

#endif  // SPARSEPROX_WITH_CUDNN
