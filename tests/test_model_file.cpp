// What a saved model records (model_info.h) and the commands that reuse it: `predict` and
// `train --init` prepare new data as the model's training data were.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "sparseprox/sparseprox.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace sparseprox;
using namespace sparseprox::test;

namespace {

nlohmann::json read_json(const fs::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}

void put_be32(std::ofstream& out, std::uint32_t v) {
    const unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                                static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
    out.write(reinterpret_cast<const char*>(b), 4);
}

// An MNIST-style folder of 4x4 images in which the class is the brightest of ten pixels over a
// background of mid-grey: the pixel scale decides what a model trained on it sees.
void write_idx_folder(const fs::path& dir, std::size_t n_train, std::size_t n_test, std::uint32_t seed) {
    fs::create_directories(dir);
    std::uint32_t state = seed;
    const auto next = [&] {
        state = state * 1664525u + 1013904223u;
        return state >> 8;
    };
    for (const auto& [prefix, n] : {std::pair<std::string, std::size_t>{"train", n_train}, {"t10k", n_test}}) {
        std::ofstream images(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
        std::ofstream labels(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
        put_be32(images, 0x803);
        put_be32(images, static_cast<std::uint32_t>(n));
        put_be32(images, 4);
        put_be32(images, 4);
        put_be32(labels, 0x801);
        put_be32(labels, static_cast<std::uint32_t>(n));
        for (std::size_t i = 0; i < n; ++i) {
            const unsigned char label = static_cast<unsigned char>(next() % 10);
            unsigned char px[16];
            for (unsigned char& p : px) p = static_cast<unsigned char>(96 + next() % 64);
            px[label] = static_cast<unsigned char>(180 + next() % 40);
            images.write(reinterpret_cast<const char*>(px), 16);
            labels.write(reinterpret_cast<const char*>(&label), 1);
        }
    }
}

// "test loss ..., accuracy 12.34%" -> "12.34"
std::string printed_accuracy(const std::string& output) {
    const auto at = output.find("accuracy ");
    if (at == std::string::npos) return "";
    return output.substr(at + 9, output.find('%', at) - at - 9);
}

std::string percent(double accuracy) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", 100.0 * accuracy);
    return buf;
}

}  // namespace

TEST(ModelInfo, RoundTripsThroughTheMetadata) {
    DataOptions o;
    o.libsvm_train_rows = 1000;
    o.pixel_scale = PixelScale::unit;
    ModelInfo info;
    info.data = DataPreparation::of("idx:data/mnist", o, Task::classification, 10, SampleShape{1, 28, 28});
    info.loss = Loss::cross_entropy;
    info.method = "l1";
    info.training_json = R"({"lr": 1e-07})";
    const std::map<std::string, std::string> meta = to_metadata(info);
    EXPECT_EQ(meta.at("sparseprox_version"), version());
    EXPECT_EQ(meta.at("task"), "classification");
    EXPECT_EQ(meta.at("loss"), "cross_entropy");

    const ModelInfo back = read_model_info(meta, "m.safetensors");
    ASSERT_TRUE(back.data.has_value());
    EXPECT_EQ(back.data->source, "idx:data/mnist");
    EXPECT_EQ(back.data->source_kind(), "idx");
    EXPECT_EQ(back.data->options.pixel_scale, PixelScale::unit);
    EXPECT_EQ(back.data->options.libsvm_train_rows, 1000u);
    EXPECT_EQ(back.data->feature_scaling, "x / 255");
    EXPECT_EQ(back.data->task, Task::classification);
    EXPECT_EQ(back.data->input_shape, (SampleShape{1, 28, 28}));
    EXPECT_EQ(back.data->outputs, 10u);
    EXPECT_EQ(back.loss, Loss::cross_entropy);
    EXPECT_EQ(back.method, "l1");
    EXPECT_EQ(back.version, version());

    // A file without the entries (an older one) reads as unknown, not as an error.
    const ModelInfo none = read_model_info({{"format", "sparseprox"}}, "old.safetensors");
    EXPECT_FALSE(none.data.has_value());
    EXPECT_FALSE(none.loss.has_value());
    EXPECT_TRUE(none.version.empty());
}

TEST(ModelInfo, MalformedEntriesAreErrorsNamingTheFileAndEntry) {
    const auto fails_with = [](std::map<std::string, std::string> meta, const std::string& words) {
        try {
            read_model_info(meta, "bad.safetensors");
            ADD_FAILURE() << "accepted " << meta.begin()->second;
        } catch (const Error& e) {
            const std::string what = e.what();
            EXPECT_NE(what.find("bad.safetensors"), std::string::npos) << what;
            EXPECT_NE(what.find(words), std::string::npos) << what;
        }
    };
    fails_with({{"data", "not json"}}, "\"data\"");
    fails_with({{"data", "[1, 2]"}}, "not a JSON object");
    fails_with({{"data", R"({"source": "x"})"}}, "\"split\"");
    fails_with({{"loss", "hinge"}}, "\"loss\"");
    fails_with({{"training", "[]"}}, "\"training\"");
    std::string deep(100000, '[');
    fails_with({{"data", deep}}, "\"data\"");
}

TEST(ModelInfo, FloatsAreStoredAsTheirShortestDecimal) {
    EXPECT_EQ(shortest_decimal(1e-7f), 1e-7);
    EXPECT_EQ(shortest_decimal(0.1f), 0.1);
    EXPECT_EQ(shortest_decimal(3e-4f), 3e-4);
    for (float v : {1e-7f, 0.1f, 3.14159265f, 1.17549435e-38f, 3.4028235e38f, -2.5e-3f})
        EXPECT_EQ(static_cast<float>(shortest_decimal(v)), v) << v;
    EXPECT_TRUE(std::isnan(shortest_decimal(std::nanf(""))));
}

TEST(ModelFile, SavedModelRecordsHowItsDataWerePrepared) {
    const fs::path dir = temp_dir() / "record";
    fs::create_directories(dir);
    const fs::path model = dir / "m.safetensors", report = dir / "r.json";
    const CliRun r = run_cli("train --device cpu --steps 3 --lr 1e-7 --lambda 3e-4 --model dense:6-8-1 --save " +
                             model.string() + " --report " + report.string());
    ASSERT_EQ(r.status, 0) << r.output;
    std::map<std::string, std::string> meta;
    load_model(model.string(), &meta);
    EXPECT_EQ(nlohmann::json::parse(meta.at("lr")).get<double>(), 1e-7);  // not "0.000000"
    EXPECT_EQ(nlohmann::json::parse(meta.at("lambda")), nlohmann::json::parse("[0.0003, 0.0003]"));
    const ModelInfo info = read_model_info(meta, model.string());
    ASSERT_TRUE(info.data.has_value());
    EXPECT_EQ(info.data->source, "mackey-glass");
    EXPECT_EQ(info.data->feature_scaling, "min-max of the generated series to [-1, 1]");
    EXPECT_EQ(info.data->task, Task::regression);
    EXPECT_EQ(info.data->outputs, 1u);
    EXPECT_EQ(info.loss, Loss::mse);
    EXPECT_EQ(info.method, "l1");
    const nlohmann::json training = nlohmann::json::parse(info.training_json);
    EXPECT_EQ(training["lr"].get<double>(), 1e-7);
    EXPECT_EQ(training["steps"], 3);
    EXPECT_EQ(training["model"], "dense:6-8-1");
    EXPECT_FALSE(training.contains("wall_seconds"));  // the same run gives the same file
    const nlohmann::json j = read_json(report);
    EXPECT_EQ(j["lr"].get<double>(), 1e-7);
    EXPECT_EQ(j["data_preparation"]["source"], "mackey-glass");
    EXPECT_EQ(j["data_preparation"]["targets"], 1);
    EXPECT_EQ(j["layers"][0]["lambda"].get<double>(), 3e-4);
}

// The acceptance case of the model file: a model trained on [0, 1] pixels and reloaded without
// --pixel-scale scores what its training report says, by `predict` and as an --init.
TEST(ModelFile, PredictAndInitReuseThePixelScale) {
    const fs::path dir = temp_dir() / "pixels";
    write_idx_folder(dir / "digits", 600, 200, 7);
    const std::string data = "--data idx:" + (dir / "digits").string();
    const fs::path model = dir / "m.safetensors", report = dir / "r.json";
    const CliRun t = run_cli("train --device cpu " + data + " --pixel-scale unit --model dense:16-10 --lr 0.5 --steps 400 "
                             "--lambda 1e-5 --seed 3 -q --save " + model.string() + " --report " + report.string());
    ASSERT_EQ(t.status, 0) << t.output;
    const double trained = read_json(report)["test_accuracy"].get<double>();
    ASSERT_GT(trained, 0.5) << "the model should have learned the brightest pixel";

    // predict, the data and the scale from the file
    const fs::path pred_report = dir / "p.json", out = dir / "p.npy";
    const CliRun p = run_cli("predict --device cpu --model " + model.string() + " --report " + pred_report.string() +
                             " --out " + out.string());
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_EQ(printed_accuracy(p.output), percent(trained)) << p.output;
    const nlohmann::json pj = read_json(pred_report);
    EXPECT_EQ(pj["accuracy"].get<double>(), trained);
    EXPECT_EQ(pj["loss"].get<double>(), read_json(report)["test_loss"].get<double>());
    EXPECT_EQ(pj["rows"], "test");
    EXPECT_EQ(pj["n_rows"], 200);
    EXPECT_EQ(pj["data_preparation"]["pixel_scale"], "unit");
    // the .npy holds 200 rows of 10 float32 outputs after its 64-byte-aligned header
    EXPECT_EQ(fs::file_size(out) % 64, (200 * 10 * 4) % 64);
    EXPECT_GE(fs::file_size(out), 200u * 10u * 4u + 64u);

    // predict with --data given: the same figures; with another scale: a warning and other figures
    const CliRun same = run_cli("predict --device cpu --model " + model.string() + " " + data);
    ASSERT_EQ(same.status, 0) << same.output;
    EXPECT_EQ(printed_accuracy(same.output), percent(trained)) << same.output;
    const CliRun other = run_cli("predict --device cpu --model " + model.string() + " " + data + " --pixel-scale symmetric");
    ASSERT_EQ(other.status, 0) << other.output;
    EXPECT_NE(other.output.find("warning: --model"), std::string::npos) << other.output;
    EXPECT_NE(printed_accuracy(other.output), percent(trained)) << other.output;

    // --init without --model or --pixel-scale: the file's architecture and pixel scale
    const fs::path init_report = dir / "i.json";
    const CliRun i = run_cli("train --device cpu " + data + " --init " + model.string() +
                             " --lr 1e-30 --steps 1 --lambda 1e-30 -q --report " + init_report.string());
    ASSERT_EQ(i.status, 0) << i.output;
    EXPECT_NE(i.output.find("pixels scaled 'unit'"), std::string::npos) << i.output;
    const nlohmann::json ij = read_json(init_report);
    EXPECT_EQ(ij["model"], "dense:16-10");
    EXPECT_EQ(ij["data_preparation"]["pixel_scale"], "unit");
    EXPECT_EQ(ij["loss"], "cross_entropy");
    EXPECT_EQ(ij["test_accuracy"].get<double>(), trained);  // one step at a vanishing rate changes nothing visible
}

TEST(ModelFile, PredictRefusesWhatItCannotDo) {
    const fs::path dir = temp_dir() / "predict_errors";
    fs::create_directories(dir);
    const fs::path model = dir / "m.safetensors";
    ASSERT_EQ(run_cli("train --device cpu --steps 2 --model dense:6-4-1 -q --save " + model.string()).status, 0);
    const std::string m = " --model " + model.string();
    const auto fails = [](const std::string& args, const std::string& words) {
        const CliRun r = run_cli(args);
        EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
        EXPECT_NE(r.output.find("sparseprox: error:"), std::string::npos) << r.output;
        EXPECT_NE(r.output.find(words), std::string::npos) << args << "\n" << r.output;
    };
    fails("predict", "--model");
    fails("predict --model " + (dir / "missing.safetensors").string(), "missing.safetensors");
    fails("predict" + m + " --out " + (dir / "p.txt").string(), ".npy or .csv");
    fails("predict" + m + " --out " + (dir / "no" / "p.npy").string(), "--out");
    fails("predict" + m + " --rows some", "--rows");
    fails("predict" + m + " --pixel-scale unit", "--pixel-scale does not apply");
    fails("predict" + m + " --device cuda:99", "cuda");
    // A model of 6 inputs on data of 784 features
    const fs::path digits = dir / "digits";
    write_idx_folder(digits, 20, 10, 1);
    fails("predict" + m + " --data idx:" + digits.string(), "takes 6 inputs");
    // CSV output: a header and one line per row
    const fs::path csv = dir / "p.csv";
    const CliRun ok = run_cli("predict" + m + " --device cpu --rows all -q --out " + csv.string());
    ASSERT_EQ(ok.status, 0) << ok.output;
    std::ifstream in(csv);
    std::string line;
    std::size_t lines = 0;
    std::getline(in, line);
    EXPECT_EQ(line, "output_0");
    while (std::getline(in, line)) ++lines;
    EXPECT_EQ(lines, 1000u + 385u);
}

TEST(ModelFile, MnistModelReloadedWithoutThePixelScaleScoresItsReport) {
    const std::string mnist = std::string(SPARSEPROX_DATA_DIR) + "/mnist";
    if (!fs::exists(fs::path(mnist) / "train-images-idx3-ubyte") &&
        !fs::exists(fs::path(mnist) / "train-images-idx3-ubyte.gz"))
        GTEST_SKIP() << "MNIST not found at " << mnist;
    const fs::path dir = temp_dir() / "mnist";
    fs::create_directories(dir);
    const fs::path model = dir / "m.safetensors", report = dir / "r.json";
    // The default search at 5% for 300 steps: about 160 of the 300 first-layer units keep
    // incoming weights, so the compact engine runs a smaller network than the others.
    const CliRun t = run_cli("search --device cpu --data idx:" + mnist + " --pixel-scale unit --model lenet300100 "
                             "--steps 300 --target-density 0.05 --tolerance 0.01 --no-checkpoint -q --save " +
                             model.string() + " --report " + report.string());
    ASSERT_EQ(t.status, 0) << t.output;
    const double trained = read_json(report)["test_accuracy"].get<double>();
    // Every inference engine scores the report's accuracy (csr drops the exact zeros, compact
    // removes the units they empty).
    for (const char* format : {"dense", "csr", "compact"}) {
        const CliRun p = run_cli("predict --device cpu --model " + model.string() + " --format " + format);
        ASSERT_EQ(p.status, 0) << format << "\n" << p.output;
        EXPECT_EQ(printed_accuracy(p.output), percent(trained)) << format << "\n" << p.output;
    }
}

TEST(ModelFile, PixelScaleErrorsAndModelsWithoutARecord) {
    const fs::path dir = temp_dir() / "pixel_errors";
    write_idx_folder(dir / "digits", 40, 20, 5);
    const std::string data = " --data idx:" + (dir / "digits").string();
    // A model saved through the API with no record of its data: predict says what it assumes.
    const fs::path bare = dir / "bare.safetensors";
    save_model(bare.string(), Model::initialize(ModelSpec::parse("dense:16-10"), 1));
    const CliRun p = run_cli("predict --device cpu --model " + bare.string() + data);
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_NE(p.output.find("does not record its pixel scale; using 'symmetric'"), std::string::npos) << p.output;
    // An unknown scale is one error line naming the flag, for predict and for train.
    for (const std::string& cmd : {"predict --device cpu --model " + bare.string() + data + " --pixel-scale bogus",
                                   "train --device cpu --steps 1 --model dense:16-10" + data + " --pixel-scale bogus"}) {
        const CliRun r = run_cli(cmd);
        EXPECT_EQ(r.status, 1) << cmd << "\n" << r.output;
        EXPECT_NE(r.output.find("sparseprox: error: --pixel-scale: unknown pixel scale 'bogus'"), std::string::npos)
            << r.output;
    }
}
