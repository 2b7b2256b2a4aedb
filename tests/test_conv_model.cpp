// Convolutional networks as models: the presets, the JSON schema of image layers and its errors,
// the initialization, the whole-network gradient through the CPU engine (finite differences),
// training, the stop rule and prox step over conv weights, safetensors files and the CLI.
//
// Tolerances, stated once:
//  - finite differences (central, h = 1e-2, float32 network, double loss sums): |fd - g| <=
//    1e-4 + 2e-2 |g|. With one sample the loss is ~4 and the float32 forward pass rounds it at
//    ~1e-7 relative, ~2e-5 on the difference quotient at this h; the O(h^2) truncation term
//    measured ~3e-6. A max-pool switch inside [w - h, w + h] bends the loss, so an entry that
//    misses is retried at h = 1e-3 with atol 5e-4 (float noise ~2e-4 there), and at most 10% of
//    the entries may need it. A wrong stride, padding, pool routing or a missing term is off by
//    far more, at both steps.
//  - the same gradient summed over chunks of 1 and 3 rows instead of one pass: 1e-6 + 1e-5 |g|
//    (float32 partial sums of at most 7 rows regrouped).
//  - everything else (layout, shapes, NNZ counts, file round trips, repeated runs) is exact.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/elementwise.h"
#include "core/engine.h"
#include "sparseprox/sparseprox.h"
#include "test_util.h"

using namespace sparseprox;
using testing_util::randn;
using testing_util::throws_error_with;

namespace {

std::vector<std::size_t> segment_weights(const ModelSpec& spec) {
    std::vector<std::size_t> out;
    for (const ParamSegment& s : ParamLayout::of(spec).segments) out.push_back(s.n_weights);
    return out;
}

std::vector<std::vector<std::size_t>> segment_shapes(const ModelSpec& spec) {
    std::vector<std::vector<std::size_t>> out;
    for (const ParamSegment& s : ParamLayout::of(spec).segments) out.push_back(s.weight_shape);
    return out;
}

// The output shape of layer `layer` (an index into ModelSpec::layers).
SampleShape output_of(const ModelSpec& spec, std::size_t layer) { return spec.layers.at(layer).out_shape; }

// Central differences of f around x[i] against analytic[i] for up to `samples` entries: a
// miss at step h is retried at h_retry (with its own atol), since a max-pool switch inside
// [x - h, x + h] bends the loss; a wrong gradient misses at both. Returns the retries.
std::size_t fd_check(const std::string& what, std::vector<float>& x, const std::vector<float>& analytic,
                     const std::function<double()>& f, double h, double atol, double h_retry, double atol_retry,
                     double rtol, std::size_t samples) {
    EXPECT_EQ(x.size(), analytic.size()) << what;
    auto central = [&](std::size_t i, double step) {
        const float saved = x[i];
        x[i] = saved + static_cast<float>(step);
        const double fp = f();
        x[i] = saved - static_cast<float>(step);
        const double fm = f();
        x[i] = saved;
        return (fp - fm) / (static_cast<double>(saved + static_cast<float>(step)) -
                            static_cast<double>(saved - static_cast<float>(step)));
    };
    std::mt19937 rng(12345);
    double max_abs = 0.0;
    std::size_t retries = 0;
    for (std::size_t k = 0; k < std::min(samples, x.size()); ++k) {
        const std::size_t i = x.size() <= samples ? k : rng() % x.size();
        const double g = analytic[i];
        const double fd = central(i, h);
        if (std::fabs(fd - g) > atol + rtol * std::fabs(g)) {
            ++retries;
            const double fd2 = central(i, h_retry);
            EXPECT_NEAR(fd2, g, atol_retry + rtol * std::fabs(g))
                << what << " entry " << i << " (at h = " << h << ": " << fd << ")";
        }
        max_abs = std::max(max_abs, std::fabs(g));
    }
    EXPECT_GT(max_abs, 0.0) << what << ": all checked gradient entries are zero";
    return retries;
}

::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& ref, double atol,
                                     double rtol) {
    if (got.size() != ref.size())
        return ::testing::AssertionFailure() << "sizes differ: " << got.size() << " vs " << ref.size();
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
        if (!(err <= atol + rtol * std::fabs(ref[i])))
            return ::testing::AssertionFailure() << "entry " << i << ": got " << got[i] << ", expected " << ref[i];
    }
    return ::testing::AssertionSuccess();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Images (1, h, w) of three classes: a horizontal bar, a vertical bar or a diagonal, at a
// random position, plus noise. Learnable by a small conv net in a few dozen steps.
Dataset bar_images(std::size_t n, std::size_t h, std::size_t w, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> noise(0.0f, 0.3f);
    Dataset d;
    d.name = "bars";
    d.task = Task::classification;
    d.n_samples = n;
    d.n_features = h * w;
    d.n_outputs = 3;
    d.x.resize(n * h * w);
    d.labels.resize(n);
    for (std::size_t r = 0; r < n; ++r) {
        const auto cls = static_cast<std::int32_t>(rng() % 3);
        d.labels[r] = cls;
        float* img = d.x.data() + r * h * w;
        for (std::size_t i = 0; i < h * w; ++i) img[i] = noise(rng) - 0.5f;
        const std::size_t at = rng() % std::min(h, w);
        for (std::size_t t = 0; t < std::min(h, w); ++t) {
            const std::size_t y = cls == 0 ? at : t, x = cls == 1 ? at : t;
            img[y * w + x] += 1.5f;
        }
    }
    return d;
}

// (2, 9, 7) inputs: conv 3 (3x3, stride 2, pad 1) -> (3, 5, 4), tanh, max-pool 2 (stride 2,
// floor mode drops the fifth row) -> (3, 2, 2), conv 4 (kernel 2x3, pad [1, 1]) -> (4, 3, 2),
// sigmoid, avg-pool 3 stride 2 pad 1 -> (4, 2, 1), [flatten], dense 5, tanh, dense n_out.
std::string gradcheck_net(std::size_t n_out, bool explicit_flatten) {
    return std::string(R"({"input_shape": [2, 9, 7], "layers": [
        {"type": "conv2d", "filters": 3, "kernel": 3, "stride": 2, "padding": 1, "activation": "tanh"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "filters": 4, "kernel": [2, 3], "padding": [1, 1], "activation": "sigmoid"},
        {"type": "avgpool2d", "kernel": 3, "stride": 2, "padding": 1},)") +
           (explicit_flatten ? R"({"type": "flatten"},)" : "") +
           R"({"type": "dense", "units": 5, "activation": "tanh"},
        {"type": "dense", "units": )" + std::to_string(n_out) + "}]}";
}

}  // namespace

// ---- presets -------------------------------------------------------------------------------------

TEST(ConvPresets, Cnn8MatchesMethodSection6) {
    const ModelSpec s = ModelSpec::parse("cnn8");
    EXPECT_EQ(s.n_inputs, 784u);
    EXPECT_EQ(s.input_shape, (SampleShape{1, 28, 28}));
    EXPECT_EQ(s.n_outputs(), 10u);
    EXPECT_EQ(s.n_weight_layers(), 5u);
    EXPECT_EQ(s.n_weights(), 687392u);
    EXPECT_EQ(segment_weights(s), (std::vector<std::size_t>{288, 18432, 73728, 589824, 5120}));
    EXPECT_EQ(segment_shapes(s), (std::vector<std::vector<std::size_t>>{
                                     {32, 1, 3, 3}, {64, 32, 3, 3}, {128, 64, 3, 3}, {512, 1152}, {10, 512}}));
    // conv, relu, pool three times: 28 -> 14 -> 7 -> 3 (floor).
    EXPECT_EQ(output_of(s, 2), (SampleShape{32, 14, 14}));
    EXPECT_EQ(output_of(s, 5), (SampleShape{64, 7, 7}));
    EXPECT_EQ(output_of(s, 8), (SampleShape{128, 3, 3}));
    EXPECT_EQ(s.layers[9].kind, LayerKind::flatten);
    EXPECT_EQ(s.layers[9].n_out, 1152u);
    EXPECT_EQ(s.layers[1].kind, LayerKind::activation);
    EXPECT_EQ(s.layers[1].activation, Activation::relu);
    std::vector<std::size_t> biases;
    for (const ParamSegment& g : ParamLayout::of(s).segments) {
        biases.push_back(g.n_bias);
        EXPECT_EQ(g.weight_offset % ParamLayout::kAlign, 0u);
        EXPECT_EQ(g.bias_offset % ParamLayout::kAlign, 0u);
    }
    EXPECT_EQ(biases, (std::vector<std::size_t>{32, 64, 128, 512, 10}));
    EXPECT_EQ(s.to_short(), "cnn8");
    EXPECT_EQ(ModelSpec::parse("CNN8").to_json(), s.to_json());
    const ModelSpec back = ModelSpec::parse(s.to_json());
    EXPECT_EQ(back.to_json(), s.to_json());
    EXPECT_EQ(back.to_short(), "cnn8");
}

TEST(ConvPresets, Lenet5AndLenet300100) {
    const ModelSpec l5 = ModelSpec::parse("lenet5");
    EXPECT_EQ(l5.input_shape, (SampleShape{1, 28, 28}));
    EXPECT_EQ(segment_weights(l5), (std::vector<std::size_t>{500, 25000, 400000, 5000}));
    EXPECT_EQ(segment_shapes(l5),
              (std::vector<std::vector<std::size_t>>{{20, 1, 5, 5}, {50, 20, 5, 5}, {500, 800}, {10, 500}}));
    EXPECT_EQ(output_of(l5, 1), (SampleShape{20, 12, 12}));
    EXPECT_EQ(output_of(l5, 3), (SampleShape{50, 4, 4}));
    EXPECT_EQ(l5.n_weights(), 430500u);
    EXPECT_EQ(l5.to_short(), "lenet5");

    const ModelSpec mlp = ModelSpec::parse("lenet300100");
    EXPECT_EQ(mlp.to_json(), ModelSpec::parse("dense:784-300-100-10").to_json());
    EXPECT_EQ(segment_weights(mlp), (std::vector<std::size_t>{235200, 30000, 1000}));
    EXPECT_EQ(mlp.to_short(), "dense:784-300-100-10");  // dense models keep the dense: form
    EXPECT_EQ(ModelSpec::parse("dense:784-300-100-10:tanh").to_short(), "dense:784-300-100-10:tanh");

    const std::vector<std::string> names = ModelSpec::preset_names();
    EXPECT_EQ(names, (std::vector<std::string>{"cnn8", "lenet5", "lenet300100"}));
    EXPECT_TRUE(throws_error_with([] { ModelSpec::preset("lenet6"); }, {"lenet6", "cnn8", "lenet5"}));
    EXPECT_TRUE(throws_error_with([] { ModelSpec::parse("cnn9"); }, {"cnn9", "not a preset"}));
}

// ---- the JSON schema -----------------------------------------------------------------------------

TEST(ConvModelJson, ShapesDefaultsAndRoundTrip) {
    const ModelSpec s = ModelSpec::parse(gradcheck_net(3, true));
    ASSERT_EQ(s.layers.size(), 10u);
    EXPECT_EQ(s.n_inputs, 126u);
    EXPECT_EQ(output_of(s, 0), (SampleShape{3, 5, 4}));   // (9 + 2 - 3) / 2 + 1, (7 + 2 - 3) / 2 + 1
    EXPECT_EQ(output_of(s, 2), (SampleShape{3, 2, 2}));   // pool 2, stride 2 (the default): 5 / 2, 4 / 2
    EXPECT_EQ(output_of(s, 3), (SampleShape{4, 3, 2}));   // kernel 2x3, pad 1x1
    EXPECT_EQ(output_of(s, 5), (SampleShape{4, 2, 1}));   // (3 + 2 - 3) / 2 + 1, (2 + 2 - 3) / 2 + 1
    EXPECT_EQ(s.layers[3].kh, 2u);
    EXPECT_EQ(s.layers[3].kw, 3u);
    EXPECT_EQ(s.layers[0].stride_h, 2u);
    EXPECT_EQ(s.layers[2].stride_h, 2u);
    EXPECT_EQ(s.layers[2].stride_w, 2u);
    EXPECT_EQ(s.layers[7].n_in, 8u);
    EXPECT_EQ(segment_shapes(s), (std::vector<std::vector<std::size_t>>{{3, 2, 3, 3}, {4, 3, 2, 3}, {5, 8}, {3, 5}}));
    EXPECT_EQ(s.n_weights(), 54u + 72u + 40u + 15u);
    const ModelSpec back = ModelSpec::parse(s.to_json());
    EXPECT_EQ(back.to_json(), s.to_json());
    EXPECT_EQ(s.to_short(), s.to_json());  // no short form for image models
    const auto j = nlohmann::json::parse(s.to_json());
    EXPECT_EQ(j["input_shape"], nlohmann::json::array({2, 9, 7}));
    EXPECT_FALSE(j.contains("inputs"));
    EXPECT_EQ(j["layers"][3]["kernel"], nlohmann::json::array({2, 3}));
    EXPECT_EQ(j["layers"][3]["filters"], 4);

    // A dense layer after an image output reads it flattened in NCHW order (an implicit flatten).
    const ModelSpec implicit = ModelSpec::parse(gradcheck_net(3, false));
    EXPECT_EQ(implicit.layers.size(), 9u);
    EXPECT_EQ(implicit.layers[6].kind, LayerKind::dense);
    EXPECT_EQ(implicit.layers[6].in_shape, (SampleShape{4, 2, 1}));
    EXPECT_EQ(implicit.layers[6].n_in, 8u);
    EXPECT_EQ(implicit.n_weights(), s.n_weights());
    const ModelSpec pool = ModelSpec::parse(
        R"({"inputs": 12, "input_shape": [3, 2, 2], "layers": [{"type": "avgpool2d", "kernel": 2}, {"type": "dense", "units": 1}]})");
    EXPECT_EQ(pool.layers[0].stride_h, 2u);
    EXPECT_EQ(output_of(pool, 0), (SampleShape{3, 1, 1}));
    // A flat model keeps its JSON form: "inputs", no "input_shape".
    const std::string dense_json = ModelSpec::parse("dense:3-4-2").to_json();
    EXPECT_NE(dense_json.find(R"("inputs":3)"), std::string::npos) << dense_json;
    EXPECT_EQ(dense_json.find("input_shape"), std::string::npos) << dense_json;
}

TEST(ConvModelJson, BadShapesNameTheLayerAndField) {
    struct Case {
        std::string json;
        std::vector<std::string> parts;
    };
    const std::string img = R"({"input_shape": [1, 8, 8], "layers": [)";
    const std::string tail = R"(, {"type": "dense", "units": 2}]})";
    const Case cases[] = {
        // Kernel larger than the padded input, at the first layer and after the shape shrank.
        {img + R"({"type": "conv2d", "filters": 2, "kernel": 11, "padding": 1})" + tail,
         {"layers[0].kernel", "11x11", "larger than the 8x8 input"}},
        {img + R"({"type": "conv2d", "filters": 2, "kernel": 3}, {"type": "maxpool2d", "kernel": 2},
                  {"type": "conv2d", "filters": 2, "kernel": [2, 5]})" + tail,
         {"layers[2].kernel", "2x5", "3x3 input"}},
        {img + R"({"type": "conv2d", "filters": 0, "kernel": 3})" + tail, {"layers[0].filters"}},
        {img + R"({"type": "conv2d", "kernel": 3})" + tail, {"layers[0].filters"}},
        {img + R"({"type": "conv2d", "filters": 2, "kernel": 0})" + tail, {"layers[0].kernel", "positive"}},
        {img + R"({"type": "conv2d", "filters": 2, "kernel": [3]})" + tail, {"layers[0].kernel"}},
        {img + R"({"type": "conv2d", "filters": 2, "kernel": -3})" + tail, {"layers[0].kernel"}},
        {img + R"({"type": "conv2d", "filters": 2, "kernel": 3, "stride": 0})" + tail, {"layers[0].stride"}},
        {img + R"({"type": "conv2d", "filters": 2, "kernel": 3, "padding": -1})" + tail, {"layers[0].padding"}},
        {img + R"({"type": "maxpool2d", "stride": 2})" + tail, {"layers[0].kernel", "missing"}},
        {img + R"({"type": "maxpool2d", "kernel": 2, "padding": 2})" + tail, {"layers[0].padding", "half"}},
        {img + R"({"type": "avgpool2d", "kernel": 9})" + tail, {"layers[0].kernel", "larger"}},
        {img + R"({"type": "conv2d", "filters": 2, "kernel": 3, "activation": "swish"})" + tail, {"swish"}},
        {img + R"({"type": "flatten"}]})", {"layers", "no weight"}},
        // A convolution on flat data (after a dense layer, or without an input_shape).
        {img + R"({"type": "dense", "units": 16}, {"type": "conv2d", "filters": 2, "kernel": 3})" + tail,
         {"layers[1].kernel", "flat"}},
        {R"({"inputs": 784, "layers": [{"type": "conv2d", "filters": 2, "kernel": 3})" + tail,
         {"layers[0].kernel", "input_shape"}},
        {R"({"input_shape": [1, 28], "layers": [{"type": "dense", "units": 2}]})", {"input_shape"}},
        {R"({"input_shape": [1, 0, 28], "layers": [{"type": "dense", "units": 2}]})", {"input_shape"}},
        {R"({"inputs": 100, "input_shape": [1, 28, 28], "layers": [{"type": "dense", "units": 2}]})",
         {"'inputs'", "784"}},
        {R"({"layers": [{"type": "dense", "units": 2}]})", {"'inputs'", "input_shape"}},
        {img + R"({"type": "conv3d", "filters": 2, "kernel": 3})" + tail, {"layers[0].type", "conv3d"}},
    };
    for (const Case& c : cases) {
        try {
            ModelSpec::parse(c.json);
            ADD_FAILURE() << "accepted: " << c.json;
        } catch (const Error& e) {
            const std::string msg = e.what();
            for (const std::string& p : c.parts)
                EXPECT_NE(msg.find(p), std::string::npos) << "message \"" << msg << "\" lacks \"" << p << "\"";
        }
    }
}

TEST(ConvModelJson, ValidateCatchesHandEditedSpecs) {
    const ModelSpec good = ModelSpec::parse("cnn8");
    EXPECT_NO_THROW(good.validate());
    ModelSpec s = good;
    s.layers[3].pad_h = 0;  // the second convolution would now give 12x14, not 14x14
    EXPECT_TRUE(throws_error_with([&] { s.validate(); }, {"layer 3 (conv2d)", "out_shape"}));
    s = good;
    s.layers[10].n_in = 1000;
    EXPECT_TRUE(throws_error_with([&] { s.validate(); }, {"layer 10 (dense)", "n_in"}));
    s = good;
    s.layers[2].kh = 30;
    EXPECT_TRUE(throws_error_with([&] { s.validate(); }, {"layer 2 (maxpool2d)", "kernel"}));
    s = good;
    s.input_shape = SampleShape{2, 28, 28};
    EXPECT_TRUE(throws_error_with([&] { s.validate(); }, {"input_shape", "n_inputs"}));
    // The engines refuse such a spec.
    EXPECT_THROW(make_cpu_engine(s, Loss::cross_entropy), Error);
}

// ---- initialization ------------------------------------------------------------------------------

TEST(ConvModelInit, UniformInFanInBoundsInTheSeededOrder) {
    const ModelSpec spec = ModelSpec::parse(gradcheck_net(3, true));
    const Model m = Model::initialize(spec, 42);
    // The documented stream: mt19937_64(seed), weight layers in order, weights then bias, each
    // value (2u - 1) / sqrt(fan_in) with u = the top 53 bits / 2^53; fan_in = c_in*kh*kw.
    std::mt19937_64 rng(42);
    const std::vector<std::size_t> fan_in = {2 * 3 * 3, 3 * 2 * 3, 8, 5};
    std::vector<float> expected(m.slab().size(), 0.0f);
    for (std::size_t l = 0; l < m.n_weight_layers(); ++l) {
        const ParamSegment& s = m.layout().segments[l];
        const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in[l]));
        for (std::size_t k = 0; k < s.n_weights + s.n_bias; ++k) {
            const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
            expected[(k < s.n_weights ? s.weight_offset + k : s.bias_offset + k - s.n_weights)] =
                static_cast<float>((2.0 * u - 1.0) * bound);
        }
    }
    EXPECT_TRUE(same_bits(m.slab(), expected));
    // And for CNN8's first convolution (fan_in 9): bound 1/3, reached closely by 288 draws.
    const Model c = Model::initialize(ModelSpec::parse("cnn8"), 1);
    const float* w = c.weight(0);
    const float max_abs = std::fabs(*std::max_element(w, w + 288, [](float a, float b) {
        return std::fabs(a) < std::fabs(b);
    }));
    EXPECT_LE(max_abs, 1.0f / 3.0f);
    EXPECT_GT(max_abs, 0.95f / 3.0f);
}

// ---- the whole-network gradient ------------------------------------------------------------------

TEST(ConvNetworkGrad, FullDataGradientMatchesFiniteDifferences) {
    std::mt19937 rng(2024);
    for (const std::size_t n : {std::size_t{1}, std::size_t{7}}) {
        for (const bool classification : {false, true}) {
            const std::size_t n_out = classification ? 3 : 2;
            // Classification with an explicit flatten, regression with the implicit one.
            const ModelSpec spec = ModelSpec::parse(gradcheck_net(n_out, classification));
            Dataset d;
            d.name = "synthetic";
            d.task = classification ? Task::classification : Task::regression;
            d.n_samples = n;
            d.n_features = spec.n_inputs;
            d.n_outputs = n_out;
            d.x = randn(n * spec.n_inputs, rng);
            if (classification) {
                d.labels.resize(n);
                for (auto& l : d.labels) l = static_cast<std::int32_t>(rng() % n_out);
            } else {
                d.y = randn(n * n_out, rng);
            }
            Model m = Model::initialize(spec, 5 + n);
            const Device cpu_dev;
            const std::vector<float> grad = loss_gradient(m, d, cpu_dev);
            ASSERT_EQ(grad.size(), m.slab().size());
            const std::string tag = std::string(classification ? "ce" : "mse") + ", n = " + std::to_string(n);
            std::size_t checked = 0, retried = 0;
            for (std::size_t l = 0; l < m.n_weight_layers(); ++l) {
                const auto& s = m.layout().segments[l];
                for (const auto& [offset, count] :
                     {std::pair{s.weight_offset, s.n_weights}, std::pair{s.bias_offset, s.n_bias}}) {
                    std::vector<float> p(m.slab().begin() + offset, m.slab().begin() + offset + count);
                    std::vector<float> g(grad.begin() + offset, grad.begin() + offset + count);
                    auto J = [&]() {
                        std::copy(p.begin(), p.end(), m.slab().begin() + offset);
                        return evaluate(m, d, cpu_dev).loss;
                    };
                    retried += fd_check(tag + ", layer " + std::to_string(l) +
                                            (offset == s.bias_offset ? " bias" : " weight"),
                                        p, g, J, 1e-2, 1e-4, 1e-3, 5e-4, 2e-2, 40);
                    checked += std::min<std::size_t>(count, 40);
                    std::copy(p.begin(), p.end(), m.slab().begin() + offset);
                }
            }
            // Max-pool switches are rare: a test whose retries pile up proves little.
            EXPECT_LE(retried * 10, checked) << tag << ": " << retried << " of " << checked << " entries retried";
            // The same gradient accumulated over chunks of 1 and 3 rows (several passes).
            auto engine = make_cpu_engine(spec, classification ? Loss::cross_entropy : Loss::mse);
            engine->set_params(m.slab());
            for (const std::size_t chunk : {std::size_t{1}, std::size_t{3}})
                EXPECT_TRUE(all_close(engine->gradient(d, chunk), grad, 1e-6, 1e-5)) << tag << ", chunk " << chunk;
        }
    }
}

// The network runs some layer pairs otherwise than written (core/network.cpp): a ReLU followed
// by a max-pool as the pool, then the ReLU; a dense layer's activation inside its products' pass,
// and the derivative of the activation before a dense layer inside its input gradient's pass.
// Against the layers run in their written order (an identity layer between the two keeps the
// network from changing them), predictions, loss and gradient are equal: exactly, as floats,
// with only the sign of zero free (a pool window with no positive tap puts g * 0 on another tap).
// Inputs and weights on a coarse grid make ties: windows of equal positive maxima and windows
// with none, and pre-activations at exactly zero.
namespace {

void expect_same_results(const ModelSpec& changed, const ModelSpec& literal, std::size_t n_out, unsigned seed) {
    ASSERT_EQ(ParamLayout::of(literal).slab_size, ParamLayout::of(changed).slab_size);
    std::mt19937 rng(seed);
    Dataset d;
    d.name = "grid";
    d.task = Task::classification;
    d.n_samples = 6;
    d.n_features = changed.n_inputs;
    d.n_outputs = n_out;
    d.x.resize(d.n_samples * d.n_features);
    for (float& v : d.x) v = static_cast<float>(static_cast<int>(rng() % 5) - 2);  // -2 .. 2
    for (std::size_t i = 0; i < d.n_samples; ++i) d.labels.push_back(static_cast<std::int32_t>(i % n_out));
    std::vector<float> slab = Model::initialize(changed, seed).slab();
    for (float& w : slab) w = std::round(w * 32.0f) / 32.0f;  // multiples of 1/32, zeros included

    auto engine_for = [&](const ModelSpec& spec) {
        auto e = make_cpu_engine(spec, Loss::cross_entropy);
        e->set_params(slab);
        return e;
    };
    auto a = engine_for(changed);
    auto b = engine_for(literal);
    std::size_t n_params = 0;
    for (const ParamSegment& seg : ParamLayout::of(changed).segments) n_params += seg.n_weights + seg.n_bias;
    for (const std::size_t chunk : {std::size_t{1}, std::size_t{6}}) {
        const std::string tag = "chunk " + std::to_string(chunk);
        const std::vector<float> pa = a->predict(d, chunk), pb = b->predict(d, chunk);
        ASSERT_EQ(pa.size(), pb.size());
        for (std::size_t i = 0; i < pa.size(); ++i) ASSERT_EQ(pa[i], pb[i]) << tag << ", output " << i;
        EXPECT_EQ(a->evaluate(d, chunk).loss, b->evaluate(d, chunk).loss) << tag;
        const std::vector<float> ga = a->gradient(d, chunk), gb = b->gradient(d, chunk);
        ASSERT_EQ(ga.size(), gb.size());
        std::size_t nonzero = 0;
        for (std::size_t i = 0; i < ga.size(); ++i) {
            ASSERT_EQ(ga[i], gb[i]) << tag << ", gradient entry " << i;
            nonzero += ga[i] != 0.0f;
        }
        EXPECT_GT(nonzero, n_params / 2) << tag << ": the gradient must mostly flow";
    }
}

}  // namespace

TEST(NetworkReordering, ReluBeforeMaxPoolRunsPoolFirstWithTheSameResults) {
    auto spec_with = [](const char* between) {
        return ModelSpec::parse(std::string(R"({"input_shape": [2, 8, 8], "layers": [
            {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1},
            {"type": "activation", "activation": "relu"},)") +
                                between + R"(
            {"type": "maxpool2d", "kernel": 2},
            {"type": "conv2d", "filters": 4, "kernel": 3, "padding": 1, "activation": "relu"},)" +
                                between + R"(
            {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
            {"type": "dense", "units": 3}]})");
    };
    const ModelSpec literal = spec_with(R"({"type": "activation", "activation": "identity"},)");
    const ModelSpec changed = spec_with("");
    ASSERT_EQ(literal.layers.size(), changed.layers.size() + 2);
    expect_same_results(changed, literal, 3, 7);
}

// A conv2d followed by a max-pool runs as one backend operation on the CPU
// (Backend::conv2d_maxpool_forward), the pool's winners recorded instead of the convolution's
// output: the same outputs and gradients as with an identity activation in between, which keeps
// the two apart. (With a ReLU in between, the test above covers it: the changed network fuses,
// the literal one does not.)
TEST(NetworkReordering, ConvAndMaxPoolAsOneOperationGiveTheSameResults) {
    auto spec_with = [](const char* between) {
        return ModelSpec::parse(std::string(R"({"input_shape": [2, 8, 8], "layers": [
            {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1},)") +
                                between + R"(
            {"type": "maxpool2d", "kernel": 2},
            {"type": "conv2d", "filters": 4, "kernel": 3, "padding": 1},)" +
                                between + R"(
            {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
            {"type": "activation", "activation": "tanh"},
            {"type": "dense", "units": 3}]})");
    };
    const ModelSpec literal = spec_with(R"({"type": "activation", "activation": "identity"},)");
    const ModelSpec changed = spec_with("");
    ASSERT_EQ(literal.layers.size(), changed.layers.size() + 2);
    expect_same_results(changed, literal, 3, 9);
}

TEST(NetworkReordering, DenseActivationInTheProductsPassGivesTheSameResults) {
    for (const char* act : {"relu", "leaky_relu", "tanh", "sigmoid"}) {
        SCOPED_TRACE(act);
        const std::string a = act;
        const ModelSpec changed = ModelSpec::parse(R"({"input_shape": [1, 4, 5], "layers": [
            {"type": "dense", "units": 9, "activation": ")" + a + R"("},
            {"type": "dense", "units": 7, "activation": ")" + a + R"("},
            {"type": "dense", "units": 4}]})");
        // Identity layers on both sides of each activation: the one before takes the dense layer's
        // forward epilogue, the one after the next dense layer's backward epilogue.
        const ModelSpec literal = ModelSpec::parse(R"({"input_shape": [1, 4, 5], "layers": [
            {"type": "dense", "units": 9},
            {"type": "activation", "activation": "identity"},
            {"type": "activation", "activation": ")" + a + R"("},
            {"type": "activation", "activation": "identity"},
            {"type": "dense", "units": 7},
            {"type": "activation", "activation": "identity"},
            {"type": "activation", "activation": ")" + a + R"("},
            {"type": "activation", "activation": "identity"},
            {"type": "dense", "units": 4}]})");
        expect_same_results(changed, literal, 4, 11);
    }
}

// ---- training, the prox step and the stop rule ---------------------------------------------------

namespace {

const char* const kSmallConvNet = R"({"input_shape": [1, 9, 9], "layers": [
    {"type": "conv2d", "filters": 6, "kernel": 3, "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "conv2d", "filters": 8, "kernel": 3, "activation": "relu"},
    {"type": "flatten"},
    {"type": "dense", "units": 3}]})";

}  // namespace

TEST(ConvTraining, LossFallsAndRunsAreReproducible) {
    const Dataset train_set = bar_images(300, 9, 9, 1), test_set = bar_images(150, 9, 9, 2);
    const Model init = Model::initialize(ModelSpec::parse(kSmallConvNet), 3);
    const Evaluation before = evaluate(init, train_set, Device{});
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {1e-3f};
    opt.batch_size = 20;
    opt.epochs = 15;  // 225 steps
    opt.seed = 4;
    opt.progress_seconds = 0;
    const TrainResult r = train(init, train_set, &test_set, opt);
    EXPECT_EQ(r.steps, 225u);
    EXPECT_LT(r.train_eval.loss, 0.3 * before.loss) << "before " << before.loss;
    EXPECT_GT(r.test_eval.accuracy, 0.9);
    const std::size_t nnz = r.model.nnz_total();
    EXPECT_GT(nnz, 0u);
    EXPECT_LT(nnz, r.model.spec().n_weights()) << "lambda too small to sparsify";
    EXPECT_EQ(r.nnz, r.model.nnz());
    // The same run again gives the same bits.
    const TrainResult again = train(init, train_set, &test_set, opt);
    EXPECT_TRUE(same_bits(again.model.slab(), r.model.slab()));
}

TEST(ConvTraining, ProxStepThresholdsConvWeightsPerLayer) {
    const ModelSpec spec = ModelSpec::parse(kSmallConvNet);
    const Dataset data = bar_images(40, 9, 9, 5);
    const Model init = Model::initialize(spec, 8);
    auto e = make_cpu_engine(spec, Loss::cross_entropy);
    e->set_params(init.slab());
    std::vector<std::uint32_t> order(data.n_samples);
    std::iota(order.begin(), order.end(), 0u);
    e->set_train_data(data);
    e->set_order(order);
    // lr * lambda = 0.05 for the first convolution (its weights are U(+-1/3)): about 15% of
    // them fall under the threshold in one step. No penalty on the other layers.
    const float lr = 0.1f;
    const std::vector<float> lambdas = {0.5f, 0.0f, 0.0f};
    e->set_hyper(lr, lambdas);
    EngineStatus st = e->status();
    const std::vector<std::size_t> full = {54, 432, 3 * 32};
    EXPECT_EQ(st.nnz, full);
    // One full-batch step in the identity order computes exactly the full-data gradient.
    const std::vector<float> g = e->gradient(data, data.n_samples);
    e->step(0, data.n_samples);
    st = e->status();
    Model after(spec);
    after.slab() = e->get_params();
    EXPECT_EQ(st.nnz, after.nnz());
    EXPECT_LT(st.nnz[0], 54u);
    EXPECT_GT(st.nnz[0], 0u);
    EXPECT_EQ(st.nnz[1], 432u);
    EXPECT_EQ(st.nnz[2], full[2]);
    // Every weight w -> S_{lr*lambda_l}(w - lr g), every bias b - lr g, conv kernels included.
    std::vector<float> expected = init.slab();
    for (std::size_t l = 0; l < 3; ++l) {
        const ParamSegment& s = init.layout().segments[l];
        const float tau = lr * lambdas[l];
        for (std::size_t i = s.weight_offset; i < s.weight_offset + s.n_weights; ++i)
            expected[i] = ew::prox_sgd(expected[i], g[i], lr, tau);
        for (std::size_t i = s.bias_offset; i < s.bias_offset + s.n_bias; ++i) expected[i] = ew::sgd(expected[i], g[i], lr);
    }
    EXPECT_TRUE(same_bits(after.slab(), expected));
}

TEST(ConvTraining, StopRuleCountsConvWeights) {
    const ModelSpec cnn8 = ModelSpec::parse("cnn8");
    StopRule rule;
    rule.targets = {288, 18432, 73728, 589824, 5120};
    EXPECT_NO_THROW(rule.validate(cnn8));
    rule.targets[0] = 289;
    EXPECT_TRUE(throws_error_with([&] { rule.validate(cnn8); }, {"289", "layer 0", "288 weights"}));
    rule.targets = {687392};
    EXPECT_NO_THROW(rule.validate(cnn8));
    rule.targets = {687393};
    EXPECT_TRUE(throws_error_with([&] { rule.validate(cnn8); }, {"687393", "687392"}));
    rule.targets = {1, 2, 3, 4};
    EXPECT_TRUE(throws_error_with([&] { rule.validate(cnn8); }, {"4 per-layer", "5 weight layers"}));

    // Through train(): the run stops at the first step whose conv-inclusive NNZ is in the band.
    const ModelSpec spec = ModelSpec::parse(kSmallConvNet);
    const Dataset data = bar_images(60, 9, 9, 6);
    const Model init = Model::initialize(spec, 9);
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {0.05f, 0.02f, 0.01f};
    opt.batch_size = 20;
    opt.steps = 30;
    opt.progress_seconds = 0;
    opt.record_nnz_history = true;
    const TrainResult ref = train(init, data, nullptr, opt);
    ASSERT_EQ(ref.nnz_history.size(), 30u);
    ASSERT_GT(ref.nnz_history.front()[0], ref.nnz_history.back()[0] + 5) << "conv NNZ barely moves";
    opt.record_nnz_history = false;
    opt.stop.targets = ref.nnz_history[14];  // per layer, the conv layers included
    opt.stop.tolerance = 0.0;
    std::size_t expected = 0;
    while (!opt.stop.holds(ref.nnz_history[expected])) ++expected;
    const TrainResult r = train(init, data, nullptr, opt);
    EXPECT_TRUE(r.stopped_in_band);
    EXPECT_EQ(r.steps, expected + 1);
    EXPECT_EQ(r.nnz, ref.nnz_history[expected]);
}

// ---- safetensors and the command line ------------------------------------------------------------

class ConvModelFile : public testing_util::TempDirTest {};

TEST_F(ConvModelFile, RoundTripsWith4dShapes) {
    Model m = Model::initialize(ModelSpec::parse(kSmallConvNet), 11);
    for (std::size_t i = 0; i < 54; i += 3) m.weight(0)[i] = 0.0f;  // some exact zeros
    const std::string p = path("conv.safetensors");
    save_model(p, m, {{"lambda", "1e-4"}});
    const TensorFile f = read_safetensors(p);
    EXPECT_EQ(f.tensors.at("layers.0.weight").shape, (std::vector<std::size_t>{6, 1, 3, 3}));
    EXPECT_EQ(f.tensors.at("layers.0.bias").shape, (std::vector<std::size_t>{6}));
    EXPECT_EQ(f.tensors.at("layers.1.weight").shape, (std::vector<std::size_t>{8, 6, 3, 3}));
    EXPECT_EQ(f.tensors.at("layers.2.weight").shape, (std::vector<std::size_t>{3, 32}));
    EXPECT_EQ(f.tensors.size(), 6u);
    std::map<std::string, std::string> meta;
    const Model back = load_model(p, &meta);
    EXPECT_EQ(back.spec().to_json(), m.spec().to_json());
    EXPECT_TRUE(same_bits(back.slab(), m.slab()));
    EXPECT_EQ(back.nnz(), m.nnz());
    EXPECT_EQ(meta.at("lambda"), "1e-4");

    // A weight stored flat, (c_out, c_in*kh*kw), does not load as the 4-D kernel it holds.
    TensorFile flat = f;
    flat.tensors.at("layers.1.weight").shape = {8, 54};
    const std::string q = path("flat.safetensors");
    write_safetensors(q, flat);
    EXPECT_TRUE(throws_error_with([&] { load_model(q); }, {"flat.safetensors", "layers.1.weight", "[8, 6, 3, 3]", "[8, 54]"}));
}

namespace {

std::string run_cli(const std::string& args, int* status) {
    const std::string cmd = std::string(SPARSEPROX_CLI_PATH) + " " + args + " 2>&1";
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return out;
    std::array<char, 4096> buf{};
    while (fgets(buf.data(), buf.size(), p)) out += buf.data();
    const int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

}  // namespace

TEST_F(ConvModelFile, CliTrainsAJsonConvModelAndReportsKernelShapes) {
    // The embedded Mackey-Glass rows (6 features) read as (1, 2, 3) images.
    const std::string model = write("conv.json", R"({"input_shape": [1, 2, 3], "layers": [
        {"type": "conv2d", "filters": 4, "kernel": [2, 2], "padding": [0, 1], "activation": "relu"},
        {"type": "avgpool2d", "kernel": [1, 2], "stride": 1},
        {"type": "dense", "units": 1}]})");
    int status = -1;
    const std::string out = run_cli("train --device cpu --steps 50 --lambda 1e-3 --model " + model + " --report " +
                                        path("r.json") + " --save " + path("m.safetensors") + " -q",
                                    &status);
    ASSERT_EQ(status, 0) << out;
    std::ifstream in(path("r.json"));
    const nlohmann::json r = nlohmann::json::parse(in);
    ASSERT_EQ(r["layers"].size(), 2u);
    EXPECT_EQ(r["layers"][0]["shape"], nlohmann::json::array({4, 1, 2, 2}));
    EXPECT_EQ(r["layers"][1]["shape"], nlohmann::json::array({1, 12}));
    EXPECT_EQ(r["n_weights_total"], 28);
    EXPECT_EQ(load_model(path("m.safetensors")).spec().to_json(), ModelSpec::parse(model).to_json());

    // A preset on data of the wrong size: a clear error, no crash.
    const std::string bad = run_cli("train --device cpu --steps 1 --model lenet5", &status);
    EXPECT_NE(status, 0);
    EXPECT_NE(bad.find("784"), std::string::npos) << bad;
    EXPECT_EQ(bad.find("internal error"), std::string::npos) << bad;
}
