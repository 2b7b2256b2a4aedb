// Finite-difference checks of every layer, activation and loss, at odd sizes (1, 19, 111), and
// of whole networks through the engine's full-data gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <tuple>

#include "cpu/activation.h"
#include "cpu/axpy.h"
#include "cpu/count.h"
#include "cpu/dense.h"
#include "cpu/loss.h"
#include "cpu/prox_step.h"
#include "sparseprox/sparseprox.h"
#include "test_util.h"

using namespace sparseprox;
using testing_util::randn;

namespace {

// Compares analytic[i] with the central difference of f around x[i] for up to `samples`
// entries (all of them when there are fewer). Tolerance: |fd - g| <= atol + rtol * |g|.
void fd_check(const std::string& what, std::vector<float>& x, const std::vector<float>& analytic,
              const std::function<double()>& f, double h, double atol, double rtol, std::size_t samples = 40) {
    ASSERT_EQ(x.size(), analytic.size()) << what;
    std::mt19937 rng(12345);
    double max_abs = 0.0;
    for (std::size_t k = 0; k < std::min(samples, x.size()); ++k) {
        const std::size_t i = x.size() <= samples ? k : rng() % x.size();
        const float saved = x[i];
        x[i] = saved + static_cast<float>(h);
        const double fp = f();
        x[i] = saved - static_cast<float>(h);
        const double fm = f();
        x[i] = saved;
        const double hh = (static_cast<double>(saved + static_cast<float>(h)) -
                           static_cast<double>(saved - static_cast<float>(h)));
        const double fd = (fp - fm) / hh;
        ASSERT_NEAR(fd, analytic[i], atol + rtol * std::fabs(analytic[i])) << what << " entry " << i;
        max_abs = std::max(max_abs, std::fabs(static_cast<double>(analytic[i])));
    }
    EXPECT_GT(max_abs, 0.0) << what << ": all checked gradient entries are zero";
}

double weighted_sum(const std::vector<float>& y, const std::vector<float>& c) {
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * c[i];
    return s;
}

}  // namespace

class DenseGrad : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(DenseGrad, MatchesFiniteDifferences) {
    const auto [batch, n_in, n_out] = GetParam();
    std::mt19937 rng(batch * 1000 + n_in * 10 + n_out);
    auto x = randn(batch * n_in, rng), W = randn(n_out * n_in, rng, 0.3f), b = randn(n_out, rng);
    const auto c = randn(batch * n_out, rng);  // J = sum(c * y), so dJ/dy = c
    std::vector<float> y(batch * n_out), dW(W.size()), db(b.size()), dx(x.size());
    auto J = [&]() {
        cpu::dense_forward(x.data(), W.data(), b.data(), y.data(), batch, n_in, n_out);
        return weighted_sum(y, c);
    };
    cpu::dense_backward(x.data(), W.data(), c.data(), dW.data(), db.data(), dx.data(), batch, n_in, n_out);
    // The layer is linear in each argument, so a large step is exact up to float rounding.
    const double h = 0.5, atol = 2e-3 * std::sqrt(static_cast<double>(batch * n_out)), rtol = 1e-3;
    fd_check("dL/dW", W, dW, J, h, atol, rtol);
    fd_check("dL/db", b, db, J, h, atol, rtol);
    fd_check("dL/dx", x, dx, J, h, atol, rtol);
}

INSTANTIATE_TEST_SUITE_P(OddSizes, DenseGrad,
                         ::testing::Combine(::testing::Values(1, 19, 111), ::testing::Values(1, 19, 111),
                                            ::testing::Values(1, 19, 111)));

// The activation in the dense layer's output pass (each GEMM block right after its product)
// gives the values of the layer and then activation_forward over its output, bit for bit: every
// kind, one block and several, blocks cut along the rows (batch >= n_out) and along the columns,
// with inputs that put outputs at and around zero.
TEST(DenseForward, ActivationInTheProductsPassIsTheSeparatePassBitForBit) {
    std::mt19937 rng(77);
    struct Dims { std::size_t batch, n_in, n_out; };
    for (const Dims d : {Dims{1, 1, 1}, Dims{7, 5, 3}, Dims{1000, 64, 128}, Dims{128, 300, 100}, Dims{67, 129, 301}}) {
        auto x = randn(d.batch * d.n_in, rng), W = randn(d.n_out * d.n_in, rng, 0.3f), b = randn(d.n_out, rng);
        for (std::size_t i = 0; i < x.size(); i += 5) x[i] = 0.0f;
        for (std::size_t j = 0; j < b.size(); j += 3) b[j] = 0.0f;
        for (Activation a : {Activation::identity, Activation::relu, Activation::leaky_relu, Activation::tanh,
                             Activation::sigmoid}) {
            std::vector<float> plain(d.batch * d.n_out), want(plain.size()), fused(plain.size(), -1.0f);
            cpu::dense_forward(x.data(), W.data(), b.data(), plain.data(), d.batch, d.n_in, d.n_out);
            cpu::activation_forward(a, plain.data(), want.data(), plain.size());
            cpu::dense_forward(x.data(), W.data(), b.data(), fused.data(), d.batch, d.n_in, d.n_out, a);
            for (std::size_t i = 0; i < want.size(); ++i)
                ASSERT_EQ(std::memcmp(&want[i], &fused[i], sizeof(float)), 0)
                    << to_string(a) << ", " << d.batch << "x" << d.n_in << "x" << d.n_out << ", entry " << i << ": "
                    << want[i] << " against " << fused[i];
        }
    }
}

// The same for the input gradient through the activation before the layer: dL_dy W times
// act'(z) in the product's pass against activation_backward over dL_dy W afterwards.
TEST(DenseBackward, ActivationDerivativeInTheInputGradientPassIsTheSeparatePassBitForBit) {
    std::mt19937 rng(78);
    struct Dims { std::size_t batch, n_in, n_out; };
    for (const Dims d : {Dims{1, 1, 1}, Dims{7, 5, 3}, Dims{1000, 128, 64}, Dims{128, 300, 100}, Dims{67, 301, 129}}) {
        auto z = randn(d.batch * d.n_in, rng), W = randn(d.n_out * d.n_in, rng, 0.3f);
        const auto dy = randn(d.batch * d.n_out, rng);
        for (std::size_t i = 0; i < z.size(); i += 4) z[i] = 0.0f;
        for (Activation a : {Activation::identity, Activation::relu, Activation::leaky_relu, Activation::tanh,
                             Activation::sigmoid}) {
            std::vector<float> fz(z.size());
            cpu::activation_forward(a, z.data(), fz.data(), z.size());
            std::vector<float> dW(W.size()), db(d.n_out), plain(z.size()), want(z.size()), fused(z.size(), -1.0f);
            cpu::dense_backward(fz.data(), W.data(), dy.data(), dW.data(), db.data(), plain.data(), d.batch, d.n_in,
                                d.n_out);
            cpu::activation_backward(a, z.data(), fz.data(), plain.data(), want.data(), z.size());
            cpu::dense_backward(fz.data(), W.data(), dy.data(), dW.data(), db.data(), fused.data(), d.batch, d.n_in,
                                d.n_out, a, z.data(), fz.data());
            for (std::size_t i = 0; i < want.size(); ++i)
                ASSERT_EQ(std::memcmp(&want[i], &fused[i], sizeof(float)), 0)
                    << to_string(a) << ", " << d.batch << "x" << d.n_in << "x" << d.n_out << ", entry " << i << ": "
                    << want[i] << " against " << fused[i];
        }
    }
}

class ActivationGrad : public ::testing::TestWithParam<std::tuple<Activation, int>> {};

TEST_P(ActivationGrad, MatchesFiniteDifferences) {
    const auto [act, n] = GetParam();
    std::mt19937 rng(n + static_cast<int>(act));
    auto x = randn(n, rng, 2.0f);
    // Keep inputs away from the kinks of relu/leaky_relu so the step never crosses one.
    for (auto& v : x)
        if (std::fabs(v) < 0.05f) v = v < 0 ? -0.5f : 0.5f;
    x[0] = std::fabs(x[0]);  // at least one input on the active side of relu
    const auto c = randn(n, rng);
    std::vector<float> y(n), dx(n);
    cpu::activation_forward(act, x.data(), y.data(), n);
    cpu::activation_backward(act, x.data(), y.data(), c.data(), dx.data(), n);
    std::vector<float> yy(n);
    auto J = [&]() {
        cpu::activation_forward(act, x.data(), yy.data(), n);
        return weighted_sum(yy, c);
    };
    fd_check(to_string(act), x, dx, J, 1e-2, 2e-3, 5e-3, n);
}

INSTANTIATE_TEST_SUITE_P(All, ActivationGrad,
                         ::testing::Combine(::testing::Values(Activation::identity, Activation::relu,
                                                              Activation::leaky_relu, Activation::tanh,
                                                              Activation::sigmoid),
                                            ::testing::Values(1, 19, 111)));

class LossGrad : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(LossGrad, MseMatchesFiniteDifferences) {
    const auto [batch, n_out] = GetParam();
    std::mt19937 rng(batch + 7 * n_out);
    auto p = randn(batch * n_out, rng), t = randn(batch * n_out, rng);
    std::vector<float> g(p.size());
    const float scale = 1.0f / static_cast<float>(batch);
    const double loss = cpu::mse_loss(p.data(), t.data(), batch, n_out, scale, g.data());
    double expect = 0.0;
    for (std::size_t i = 0; i < p.size(); ++i) expect += (double(p[i]) - t[i]) * (double(p[i]) - t[i]);
    EXPECT_NEAR(loss, expect, 1e-6 * expect);  // no 1/2 factor; differences rounded to float
    auto J = [&]() { return cpu::mse_loss(p.data(), t.data(), batch, n_out, 0.0f, nullptr) / batch; };
    fd_check("mse", p, g, J, 1e-2, 1e-4, 1e-3);
}

class CrossEntropyGrad : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(CrossEntropyGrad, MatchesFiniteDifferences) {
    const auto [batch, n_classes] = GetParam();
    std::mt19937 rng(batch * 3 + n_classes);
    auto z = randn(batch * n_classes, rng, 2.0f);
    std::vector<std::int32_t> labels(batch);
    for (auto& l : labels) l = static_cast<std::int32_t>(rng() % n_classes);
    std::vector<float> g(z.size());
    const float scale = 1.0f / static_cast<float>(batch);
    std::size_t correct = 0;
    cpu::cross_entropy_loss(z.data(), labels.data(), batch, n_classes, scale, g.data(), &correct);
    EXPECT_LE(correct, static_cast<std::size_t>(batch));
    auto J = [&]() {
        return cpu::cross_entropy_loss(z.data(), labels.data(), batch, n_classes, 0.0f, nullptr, nullptr) / batch;
    };
    fd_check("cross_entropy", z, g, J, 1e-2, 2e-4, 5e-3);
}

INSTANTIATE_TEST_SUITE_P(OddSizes, LossGrad,
                         ::testing::Combine(::testing::Values(1, 19, 111), ::testing::Values(1, 2, 19, 111)));
// Cross-entropy needs at least two classes.
INSTANTIATE_TEST_SUITE_P(OddSizes, CrossEntropyGrad,
                         ::testing::Combine(::testing::Values(1, 19, 111), ::testing::Values(2, 19, 111)));

TEST(LossValues, CrossEntropyOfKnownLogits) {
    const float z[] = {0.0f, 0.0f, std::log(2.0f)};  // softmax = (1/4, 1/4, 1/2)
    const std::int32_t label[] = {2};
    std::size_t correct = 0;
    float g[3];
    const double loss = cpu::cross_entropy_loss(z, label, 1, 3, 1.0f, g, &correct);
    EXPECT_NEAR(loss, std::log(2.0), 1e-6);
    EXPECT_EQ(correct, 1u);
    EXPECT_NEAR(g[0], 0.25f, 1e-6);
    EXPECT_NEAR(g[2], -0.5f, 1e-6);
}

// The whole network: the engine's full-data gradient against finite differences of evaluate().
class NetworkGrad : public ::testing::TestWithParam<std::string> {};

namespace {

// n rows of random features, with random targets (regression) or labels.
Dataset synthetic_data(std::size_t n, std::size_t n_in, std::size_t n_out, bool classification, std::mt19937& rng) {
    Dataset d;
    d.name = "synthetic";
    d.task = classification ? Task::classification : Task::regression;
    d.n_samples = n;
    d.n_features = n_in;
    d.n_outputs = n_out;
    d.x = randn(n * n_in, rng);
    if (classification) {
        d.labels.resize(n);
        for (auto& l : d.labels) l = static_cast<std::int32_t>(rng() % n_out);
    } else {
        d.y = randn(n * n_out, rng);
    }
    return d;
}

// Every layer's weights and biases: loss_gradient against central differences of evaluate().
void check_network_gradient(Model& m, const Dataset& d, const std::string& what) {
    const Device cpu_dev;
    std::vector<float> grad = loss_gradient(m, d, cpu_dev);
    ASSERT_EQ(grad.size(), m.slab().size());
    for (std::size_t l = 0; l < m.n_weight_layers(); ++l) {
        const auto& s = m.layout().segments[l];
        for (const auto& [offset, count] : {std::pair{s.weight_offset, s.n_weights}, std::pair{s.bias_offset, s.n_bias}}) {
            std::vector<float> p(m.slab().begin() + offset, m.slab().begin() + offset + count);
            std::vector<float> g(grad.begin() + offset, grad.begin() + offset + count);
            auto J = [&]() {
                std::copy(p.begin(), p.end(), m.slab().begin() + offset);
                return evaluate(m, d, cpu_dev).loss;
            };
            fd_check(what + " layer " + std::to_string(l), p, g, J, 1e-3, 2e-4, 3e-2, 12);
            std::copy(p.begin(), p.end(), m.slab().begin() + offset);
        }
    }
}

}  // namespace

TEST_P(NetworkGrad, FullDataGradientMatchesFiniteDifferences) {
    const std::string act = GetParam();
    std::mt19937 rng(77);
    for (const bool classification : {false, true}) {
        const std::size_t n_out = classification ? 3 : 2;
        const Dataset d = synthetic_data(111, 19, n_out, classification, rng);
        Model m = Model::initialize(ModelSpec::parse("dense:19-19-7-" + std::to_string(n_out) + ":" + act), 5);
        check_network_gradient(m, d, act + (classification ? " (ce)" : " (mse)"));
    }
}

INSTANTIATE_TEST_SUITE_P(Activations, NetworkGrad, ::testing::Values("tanh", "sigmoid", "relu", "leaky_relu", "identity"));

// A batch tall enough for the CPU's run of dense layers in one region (cpu/dense_chain.h: 1,024
// rows, at least as many as the widest layer, two blocks or more of 2^18 multiply-adds), with a
// dense layer straight after another (no activation between them, from a JSON model): the
// engine's full-data gradient against finite differences of evaluate().
TEST(NetworkGrad, ARunOfDenseLayersInOneRegionMatchesFiniteDifferences) {
    std::mt19937 rng(78);
    const Dataset d = synthetic_data(1024, 19, 2, false, rng);
    Model m = Model::initialize(ModelSpec::from_json(R"({"inputs": 19, "layers": [
        {"type": "dense", "units": 64, "activation": "relu"}, {"type": "dense", "units": 48},
        {"type": "dense", "units": 32, "activation": "tanh"}, {"type": "dense", "units": 2}]})"),
                                5);
    check_network_gradient(m, d, "dense chain");
}
