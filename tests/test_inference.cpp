// The inference formats (sparseprox/inference.h): csr and compact give the dense engine's
// outputs; compact() removes what it should and nothing else; the files around them (CSR
// arrays in safetensors I64, .npy inputs, the torch and compact exports) read back.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend_test_util.h"
#include "cli_test_util.h"
#include "sparseprox/sparseprox.h"

namespace sparseprox {
namespace {

// Random weights with about `density` of them nonzero.
Model sparse_model(const ModelSpec& spec, double density, std::uint64_t seed) {
    Model m = Model::initialize(spec, seed);
    std::mt19937_64 rng(seed + 1);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (std::size_t i = 0; i < m.n_weight_layers(); ++i)
        for (float& w : m.weights(i))
            if (u(rng) > density) w = 0.0f;
    return m;
}

std::vector<float> random_inputs(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x(n);
    for (float& v : x) v = u(rng);
    return x;
}

// |a - b| <= atol + rtol |b| everywhere, and the reference is not all zero.
void expect_close(const std::vector<float>& a, const std::vector<float>& b, float atol, float rtol) {
    ASSERT_EQ(a.size(), b.size());
    bool nonzero = false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        ASSERT_TRUE(std::isfinite(a[i]));
        EXPECT_LE(std::fabs(a[i] - b[i]), atol + rtol * std::fabs(b[i])) << "at " << i;
        nonzero |= b[i] != 0.0f;
    }
    EXPECT_TRUE(nonzero);
}

void expect_formats_agree(const Model& m, std::size_t rows, std::size_t batch) {
    const std::vector<float> x = random_inputs(rows * m.spec().n_inputs, 7);
    const Device cpu;
    const std::vector<float> dense = predict(m, x, cpu, InferenceFormat::dense, batch);
    expect_close(predict(m, x, cpu, InferenceFormat::csr, batch), dense, 1e-5f, 1e-4f);
    expect_close(predict(m, x, cpu, InferenceFormat::compact, batch), dense, 1e-5f, 1e-4f);
    // The dense format is the engine Model::predict runs (other pass sizes: other sgemm blocking).
    expect_close(dense, m.predict(x, cpu), 1e-6f, 1e-6f);
}

// A padded conv, an unpadded one, both pools, an explicit flatten and one implicit.
const char* const kConvNet = R"({"input_shape": [2, 9, 9], "layers": [
    {"type": "conv2d", "filters": 5, "kernel": 3, "padding": 1}, {"type": "activation", "activation": "relu"},
    {"type": "maxpool2d", "kernel": 2, "stride": 1},
    {"type": "conv2d", "filters": 6, "kernel": 3}, {"type": "activation", "activation": "tanh"},
    {"type": "avgpool2d", "kernel": 2, "stride": 2},
    {"type": "dense", "units": 7}, {"type": "activation", "activation": "sigmoid"},
    {"type": "dense", "units": 4}]})";

TEST(Inference, DenseModelFormatsAgreeAtOddBatches) {
    const Model m = sparse_model(ModelSpec::parse("dense:19-23-11-3"), 0.3, 1);
    for (std::size_t batch : {1, 5, 32}) expect_formats_agree(m, 37, batch);
}

TEST(Inference, ConvModelFormatsAgree) {
    Model m = sparse_model(ModelSpec::parse(kConvNet), 0.5, 3);
    // Filter 2 of the first conv has no incoming weight (a constant everywhere, padding or not:
    // folded into the unpadded second conv); filter 1 of the second conv too (folded through
    // tanh and the average pool into the dense layer).
    std::fill_n(m.weights(0).data() + 2 * 2 * 9, 2 * 9, 0.0f);
    std::fill_n(m.weights(1).data() + 1 * 5 * 9, 5 * 9, 0.0f);
    for (std::size_t batch : {1, 4}) expect_formats_agree(m, 9, batch);
}

// The CPU's csr engine runs a conv layer as a sparse kernel matrix when at most 10% of its
// weights are nonzero, else dense; the multiply-adds it reports say which.
TEST(Inference, CsrConvLayersSparseOnlyWhenSparse) {
    const ModelSpec spec = ModelSpec::parse(kConvNet);
    for (double density : {0.06, 0.5}) {
        const Model m = sparse_model(spec, density, 5);
        for (std::size_t batch : {1, 4}) expect_formats_agree(m, 9, batch);
        std::size_t want = 0;
        for (std::size_t k = 0, w = 0; k < spec.layers.size(); ++k) {
            const LayerSpec& l = spec.layers[k];
            if (!l.has_weights()) continue;
            std::size_t nonzero = 0;
            for (float v : m.weights(w)) nonzero += v != 0.0f;
            const bool conv = l.kind == LayerKind::conv2d;
            const std::size_t positions = conv ? l.out_shape.height * l.out_shape.width : 1;
            want += (conv && nonzero * 10 > l.n_weights() ? l.n_weights() : nonzero) * positions;
            ++w;
        }
        InferenceEngine e(m, Device{}, InferenceFormat::csr, 4);
        EXPECT_EQ(e.multiply_adds_per_sample(), want) << "density " << density;
    }
}

TEST(Compact, RemovesDeadUnitsAndFoldsConstantOnes) {
    // 6 -> 5 -> 4 -> 2. Inputs 0 and 3 are read by no weight; hidden unit 1 has no incoming
    // weight (constant relu(b) = 0.5 folded); hidden unit 4 has no outgoing weight; unit 2 of the
    // second layer has no outgoing weight.
    Model m = Model::initialize(ModelSpec::parse("dense:6-5-4-2"), 11);
    auto W0 = m.weights(0), W1 = m.weights(1), W2 = m.weights(2);
    for (std::size_t r = 0; r < 5; ++r) W0[r * 6 + 0] = W0[r * 6 + 3] = 0.0f;
    std::fill_n(W0.data() + 1 * 6, 6, 0.0f);
    m.biases(0)[1] = 0.5f;
    for (std::size_t r = 0; r < 4; ++r) W1[r * 5 + 4] = 0.0f;
    for (std::size_t r = 0; r < 2; ++r) W2[r * 4 + 2] = 0.0f;
    const CompactModel c = compact(m);
    EXPECT_EQ(c.model.spec().to_short(), "dense:4-3-3-2");
    EXPECT_EQ(c.input_columns, (std::vector<std::size_t>{1, 2, 4, 5}));
    EXPECT_EQ(c.original_inputs, 6u);
    EXPECT_EQ(c.folded_units, 1u);
    EXPECT_EQ(c.removed_units, 2u + 2u + 1u);
    // Same outputs on the original's inputs.
    const std::vector<float> x = random_inputs(13 * 6, 5);
    const std::vector<float> want = m.predict(x, Device{});
    expect_close(c.model.predict(c.select_inputs(x.data(), 13), Device{}), want, 1e-6f, 1e-5f);
    // The metadata round trip, and malformed entries named.
    std::vector<std::size_t> cols;
    std::size_t from = 0;
    ASSERT_TRUE(read_input_columns(compact_metadata(c), "m.safetensors", 4, cols, from));
    EXPECT_EQ(cols, c.input_columns);
    EXPECT_EQ(from, 6u);
    EXPECT_FALSE(read_input_columns({}, "m", 4, cols, from));
    for (const std::string bad : {"[1]", R"({"from": 6, "keep": [2, 1, 4, 5]})", R"({"from": 6, "keep": [1, 2, 4, 6]})",
                                  R"({"from": 6, "keep": [1, 2]})", "{"}) {
        try {
            read_input_columns({{"input_columns", bad}}, "m.safetensors", 4, cols, from);
            ADD_FAILURE() << bad;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("m.safetensors: metadata entry 'input_columns'"), std::string::npos);
        }
    }
}

TEST(Compact, AllUnitsConstantKeepsOneUnit) {
    Model m = Model::initialize(ModelSpec::parse("dense:3-4-2:sigmoid"), 2);
    std::fill(m.weights(0).begin(), m.weights(0).end(), 0.0f);
    const CompactModel c = compact(m);
    EXPECT_EQ(c.model.spec().to_short(), "dense:1-1-2:sigmoid");
    const std::vector<float> x = random_inputs(5 * 3, 1);
    expect_close(c.model.predict(c.select_inputs(x.data(), 5), Device{}), m.predict(x, Device{}), 1e-6f, 1e-5f);
}

TEST(Compact, PaddedConvIsNeverFoldedInto) {
    const std::string json = R"({"input_shape": [1, 6, 6], "layers": [
        {"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1}, {"type": "activation", "activation": "relu"},
        {"type": "conv2d", "filters": 2, "kernel": 3, "padding": 1}, {"type": "flatten"}, {"type": "dense", "units": 2}]})";
    Model m = Model::initialize(ModelSpec::parse(json), 4);
    std::fill_n(m.weights(0).data(), 9, 0.0f);  // filter 0: constant relu(b0), read through zero padding
    m.biases(0)[0] = 0.25f;
    const CompactModel c = compact(m);
    EXPECT_EQ(c.model.spec().layers[0].out_shape.channels, 3u);
    EXPECT_EQ(c.folded_units, 0u);
    const std::vector<float> x = random_inputs(3 * 36, 2);
    expect_close(c.model.predict(x, Device{}), m.predict(x, Device{}), 1e-6f, 1e-5f);
}

TEST(Inference, EvaluateMatchesTheTrainingEngine) {
    const Model m = sparse_model(ModelSpec::parse("dense:8-16-4"), 0.4, 9);
    Dataset d;
    d.name = "t";
    d.task = Task::classification;
    d.n_samples = 50;
    d.n_features = 8;
    d.n_outputs = 4;
    d.x = random_inputs(50 * 8, 3);
    for (std::size_t i = 0; i < 50; ++i) d.labels.push_back(static_cast<std::int32_t>(i % 4));
    const Evaluation want = evaluate(m, d, Device{});
    for (InferenceFormat f : {InferenceFormat::dense, InferenceFormat::csr, InferenceFormat::compact}) {
        InferenceEngine engine(m, Device{}, f, 7);
        std::vector<float> y;
        const Evaluation got = engine.evaluate(d, std::nullopt, &y);
        EXPECT_EQ(got.accuracy, want.accuracy) << to_string(f);
        EXPECT_NEAR(got.loss, want.loss, 1e-6 * std::fabs(want.loss)) << to_string(f);
        EXPECT_EQ(y.size(), 50u * 4u);
    }
    EXPECT_EQ(parse_inference_format("csr"), InferenceFormat::csr);
    EXPECT_THROW(parse_inference_format("sparse"), Error);
    // csr runs on CUDA too; without a usable device the engine's construction names the reason.
    std::string why;
    if (!testing_util::try_cuda_backend(&why))
        EXPECT_THROW(InferenceEngine(m, Device{DeviceKind::cuda, 0}, InferenceFormat::csr), Error);
}

// The csr format on CUDA (cuSPARSE for the dense layers, cuDNN for the conv layers) against the
// dense engine on the same device and on the CPU, within the bound the CPU formats are held to:
// |a - b| <= 1e-5 + 1e-4 |b| (float sums of at most a few hundred products in another order,
// and CUDA's tanhf/expf within a few ulps of glibc's).
void expect_csr_on_cuda_agrees(const Model& m, std::size_t rows, std::size_t batch) {
    const std::vector<float> x = random_inputs(rows * m.spec().n_inputs, 7);
    const Device cuda{DeviceKind::cuda, 0};
    const std::vector<float> csr = predict(m, x, cuda, InferenceFormat::csr, batch);
    expect_close(csr, predict(m, x, cuda, InferenceFormat::dense, batch), 1e-5f, 1e-4f);
    expect_close(csr, predict(m, x, Device{}, InferenceFormat::dense, batch), 1e-5f, 1e-4f);
}

TEST(InferenceCuda, CsrMatchesDenseForAnMlp) {
    SPARSEPROX_CUDA_BACKEND_OR_SKIP(probe);
    probe.reset();
    // Batch 1 (cuSPARSE's SpMV), odd batches and a last partial pass (37 rows), SpMM.
    const Model small = sparse_model(ModelSpec::parse("dense:19-23-11-3"), 0.3, 1);
    for (std::size_t batch : {1, 5, 32}) expect_csr_on_cuda_agrees(small, 37, batch);
    // lenet300100's shapes at 5%.
    const Model lenet = sparse_model(ModelSpec::preset("lenet300100"), 0.05, 2);
    for (std::size_t batch : {1, 256}) expect_csr_on_cuda_agrees(lenet, 300, batch);
    InferenceEngine e(lenet, Device{DeviceKind::cuda, 0}, InferenceFormat::csr, 8);
    EXPECT_EQ(e.multiply_adds_per_sample(), lenet.nnz_total());
}

TEST(InferenceCuda, CsrMatchesDenseForAConvNet) {
    SPARSEPROX_CUDA_BACKEND_OR_SKIP(probe);
    probe.reset();
    const Model m = sparse_model(ModelSpec::parse(kConvNet), 0.5, 3);
    for (std::size_t batch : {1, 4}) expect_csr_on_cuda_agrees(m, 9, batch);
    // The conv layers run dense there: every kernel weight counts, times the output positions.
    const ModelSpec& spec = m.spec();
    std::size_t want = 0;
    for (std::size_t k = 0, w = 0; k < spec.layers.size(); ++k) {
        const LayerSpec& l = spec.layers[k];
        if (!l.has_weights()) continue;
        if (l.kind == LayerKind::conv2d) {
            want += l.n_weights() * l.out_shape.height * l.out_shape.width;
        } else {
            for (float v : m.weights(w)) want += v != 0.0f;
        }
        ++w;
    }
    InferenceEngine e(m, Device{DeviceKind::cuda, 0}, InferenceFormat::csr, 4);
    EXPECT_EQ(e.multiply_adds_per_sample(), want);
}

TEST(SafetensorsInt64, RoundTripAndRefusedAsWeights) {
    const std::string path = (test::temp_dir() / "i64.safetensors").string();
    TensorFile f;
    Tensor idx;
    idx.dtype = DType::i64;
    idx.shape = {4};
    idx.ints = {0, 3, -1, std::int64_t{1} << 40};
    f.tensors["layers.0.crow_indices"] = idx;
    Tensor v;
    v.shape = {2};
    v.data = {1.5f, -2.0f};
    f.tensors["layers.0.values"] = v;
    write_safetensors(path, f);
    const TensorFile g = read_safetensors(path);
    EXPECT_EQ(g.tensors.at("layers.0.crow_indices").dtype, DType::i64);
    EXPECT_EQ(g.tensors.at("layers.0.crow_indices").ints, idx.ints);
    EXPECT_EQ(g.tensors.at("layers.0.values").data, v.data);
    // An I64 tensor where a model's weights belong is refused by name.
    Model m(ModelSpec::parse("dense:2-1"));
    save_model(path, m);
    TensorFile h = read_safetensors(path);
    h.tensors["layers.0.bias"] = Tensor{{1}, {}, DType::i64, {1}};
    write_safetensors(path, h);
    try {
        load_model(path);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'layers.0.bias': expected dtype F32"), std::string::npos);
    }
}

TEST(Npy, ReadsFloat32AndFloat64AndNamesErrors) {
    const auto dir = test::temp_dir();
    const std::string p32 = (dir / "a32.npy").string();
    {
        std::ofstream(p32, std::ios::binary) << npy_bytes({1.0f, 2.5f, -3.0f, 4.0f, 5.0f, 6.0f}, {3, 2});
    }
    const NpyArray a = read_npy(p32);
    EXPECT_EQ(a.shape, (std::vector<std::size_t>{3, 2}));
    EXPECT_EQ(a.data, (std::vector<float>{1.0f, 2.5f, -3.0f, 4.0f, 5.0f, 6.0f}));
    // float64, version 1.0, written by hand as NumPy does.
    std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
    header.append(64 - (10 + header.size() + 1) % 64, ' ');
    header += '\n';
    std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
    bytes.push_back(static_cast<char>(header.size()));
    bytes.push_back(0);
    bytes += header;
    const double vals[2] = {0.5, -7.25};
    bytes.append(reinterpret_cast<const char*>(vals), sizeof vals);
    const std::string p64 = (dir / "a64.npy").string();
    std::ofstream(p64, std::ios::binary) << bytes;
    const NpyArray b = read_npy(p64);
    EXPECT_EQ(b.shape, (std::vector<std::size_t>{2}));
    EXPECT_EQ(b.data, (std::vector<float>{0.5f, -7.25f}));
    // Another dtype, and a truncated file.
    std::string i4 = bytes;
    i4.replace(i4.find("<f8"), 3, "<i4");
    std::ofstream(p64, std::ios::binary) << i4;
    EXPECT_THROW(read_npy(p64), Error);
    std::ofstream(p64, std::ios::binary) << bytes.substr(0, bytes.size() - 3);
    try {
        read_npy(p64);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(p64), std::string::npos);
    }
}

}  // namespace
}  // namespace sparseprox

namespace sparseprox {
namespace {

TEST(InferenceCli, BadFormatsAndInputsAreOneErrorLine) {
    const auto dir = test::temp_dir();
    const std::string model = (dir / "inf_cli.safetensors").string();
    save_model(model, sparse_model(ModelSpec::parse("dense:4-5-2"), 0.5, 1));
    const std::string x = (dir / "inf_cli_x.npy").string();
    std::ofstream(x, std::ios::binary) << npy_bytes(random_inputs(3 * 4, 1), {3, 4});
    const std::string bad_x = (dir / "inf_cli_bad.npy").string();
    std::ofstream(bad_x, std::ios::binary) << npy_bytes(random_inputs(3 * 5, 1), {3, 5});
    struct Case {
        std::string args, message;
    };
    for (const Case& c : std::vector<Case>{
             {"predict --device cpu --model " + model + " --data " + x + " --out y.npy --format sparse",
              "--format: unknown inference format 'sparse' (expected dense, csr or compact)"},
             {"predict --device cpu --model " + model + " --data " + x, "holds inputs only (no labels to score): give --out FILE"},
             {"predict --device cpu --model " + model + " --data " + bad_x + " --out " + (dir / "y.npy").string(),
              "shape (3, 5), the model takes (n, 4)"},
             {"export --model " + model + " --to onnx -o " + (dir / "m.onnx").string(), "scripts/export_onnx.py"},
             {"export --model " + model + " --to tf -o " + (dir / "m.x").string(), "--to: 'tf' (expected torch, csr or compact)"},
         }) {
        const test::CliRun r = test::run_cli(c.args);
        EXPECT_EQ(r.status, 1) << c.args << "\n" << r.output;
        EXPECT_EQ(r.output.rfind("sparseprox: error: ", 0), 0u) << r.output;
        EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
        EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    }
    // predict --format csr --device cuda: the outputs where a GPU is usable, else one error line
    // naming the device.
    {
        const std::string y = (dir / "inf_cli_y_csr_cuda.npy").string();
        const test::CliRun r = test::run_cli("predict -q --device cuda --model " + model + " --data " + x + " --out " +
                                             y + " --format csr --batch 2");
        std::string why;
        if (testing_util::try_cuda_backend(&why)) {
            ASSERT_EQ(r.status, 0) << r.output;
            expect_close(read_npy(y).data, load_model(model).predict(random_inputs(3 * 4, 1), Device{}), 1e-5f, 1e-4f);
        } else {
            EXPECT_EQ(r.status, 1) << r.output;
            EXPECT_EQ(r.output.rfind("sparseprox: error: ", 0), 0u) << r.output;
            EXPECT_NE(r.output.find("device 'cuda'"), std::string::npos) << r.output;
            EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
        }
    }
    // The .npy path's outputs equal the API's, in every format.
    for (const char* fmt : {"dense", "csr", "compact"}) {
        const std::string y = (dir / (std::string("inf_cli_y_") + fmt + ".npy")).string();
        const test::CliRun r = test::run_cli("predict -q --device cpu --model " + model + " --data " + x + " --out " + y +
                                             " --format " + fmt + " --batch 2");
        ASSERT_EQ(r.status, 0) << r.output;
        const NpyArray got = read_npy(y);
        EXPECT_EQ(got.shape, (std::vector<std::size_t>{3, 2}));
        const Model m = load_model(model);
        expect_close(got.data, m.predict(random_inputs(3 * 4, 1), Device{}), 1e-5f, 1e-4f);
    }
}

}  // namespace
}  // namespace sparseprox
