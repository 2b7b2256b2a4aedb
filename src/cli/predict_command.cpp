#include "cli/predict_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "cli/train_command.h"
#include "sparseprox/files.h"
#include "sparseprox/sparseprox.h"

namespace sparseprox {
namespace cli {

void add_predict_flags(CLI::App& app, PredictFlags& f) {
    app.add_option("--model", f.model, "a model file written by --save (safetensors)")->required();
    app.add_option("--data", f.data,
                   "mackey-glass, libsvm:PATH, idx:DIR or FILE.npy of inputs (float32/float64, (n, features) or "
                   "(n, c, h, w); predictions only) (default: the data the model file records)");
    app.add_option("--rows", f.rows,
                   "test, train or all (default: test when the data have a test part, else all)");
    app.add_option("--pixel-scale", f.pixel_scale,
                   "idx: symmetric, unit or raw (default: the scale the model was trained with)");
    app.add_option("--device", f.device, "cpu, cuda, cuda:N or auto")->capture_default_str();
    app.add_option("--format", f.format, "inference format: dense, csr or compact")->capture_default_str();
    app.add_option("--batch", f.batch, "rows per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--out", f.out, "write the network's outputs: FILE.npy (float32, rows x outputs) or FILE.csv");
    app.add_option("--report", f.report, "write a JSON report");
    app.add_flag("-q,--quiet", f.quiet, "print nothing but errors");
}

namespace {

Dataset concatenated(const Dataset& a, const Dataset& b) {
    if (b.n_samples == 0) return a;
    Dataset d = a;
    d.n_samples += b.n_samples;
    d.x.insert(d.x.end(), b.x.begin(), b.x.end());
    d.y.insert(d.y.end(), b.y.begin(), b.y.end());
    d.labels.insert(d.labels.end(), b.labels.begin(), b.labels.end());
    return d;
}

// A LIBSVM file lists only the nonzero features: a file whose largest index is below the
// model's width is the same data with zeros after its last column.
void widen_libsvm(Dataset& d, std::size_t width) {
    if (d.n_features >= width) return;
    std::vector<float> x(d.n_samples * width, 0.0f);
    for (std::size_t r = 0; r < d.n_samples; ++r)
        std::copy_n(d.x.begin() + static_cast<std::ptrdiff_t>(r * d.n_features), d.n_features,
                    x.begin() + static_cast<std::ptrdiff_t>(r * width));
    d.x = std::move(x);
    d.n_features = width;
}

std::string csv_text(const std::vector<float>& values, std::size_t rows, std::size_t cols, bool classification) {
    std::string out = classification ? "predicted" : "";
    for (std::size_t c = 0; c < cols; ++c) out += (out.empty() ? "" : ",") + std::string("output_") + std::to_string(c);
    out += "\n";
    char buf[32];
    for (std::size_t r = 0; r < rows; ++r) {
        const float* row = values.data() + r * cols;
        std::string line;
        if (classification) {
            std::size_t best = 0;
            for (std::size_t c = 1; c < cols; ++c)
                if (row[c] > row[best]) best = c;
            line = std::to_string(best);
        }
        for (std::size_t c = 0; c < cols; ++c) {
            std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(row[c]));
            line += (line.empty() ? "" : ",") + std::string(buf);
        }
        out += line + "\n";
    }
    return out;
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// --out: the outputs (rows x cols) as .npy or CSV, through `out`.
void write_predictions(OutputWriter& out, const PredictFlags& f, const std::vector<float>& y, std::size_t rows,
                       std::size_t cols, bool classification) {
    out.attempt("--out", [&] {
        write_file_atomic(f.out, ends_with(f.out, ".npy") ? npy_bytes(y, {rows, cols})
                                                          : csv_text(y, rows, cols, classification));
        if (!f.quiet) std::printf("wrote predictions %s\n", f.out.c_str());
    });
}

// --data FILE.npy: inputs without labels; the outputs go to --out.
int predict_npy(const PredictFlags& f, const Model& model, const Device& device, InferenceFormat format,
                const std::vector<std::size_t>* columns, std::size_t data_width) {
    if (f.out.empty()) throw Error("--data " + f.data + " holds inputs only (no labels to score): give --out FILE");
    if (f.has("--rows") || f.has("--pixel-scale"))
        throw Error(std::string(f.has("--rows") ? "--rows" : "--pixel-scale") + " does not apply to --data " + f.data +
                    " (the array is used as it is, every row)");
    const NpyArray a = or_out_of_memory("loading --data " + f.data, [&] { return read_npy(f.data); });
    std::size_t per_row = 1;
    for (std::size_t k = 1; k < a.shape.size(); ++k) per_row *= a.shape[k];
    std::string shape;
    for (std::size_t d : a.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    if ((a.shape.size() != 2 && a.shape.size() != 4) || per_row != data_width)
        throw Error("--data " + f.data + ": shape (" + shape + "), the model takes (n, " + std::to_string(data_width) +
                    ")" + (model.spec().input_shape.is_flat() ? "" : " or (n, " + [&] {
                        const SampleShape& s = model.spec().input_shape;
                        return std::to_string(s.channels) + ", " + std::to_string(s.height) + ", " + std::to_string(s.width);
                    }() + ")"));
    const std::size_t rows = a.shape[0];
    const std::vector<float> x = columns ? select_columns(a.data.data(), rows, data_width, *columns) : a.data;
    if (!f.quiet) {
        std::printf("sparseprox %s: predict %s on %s (%zu rows), device %s, format %s\n", version(), f.model.c_str(),
                    f.data.c_str(), rows, describe_device(device).c_str(), to_string(format));
        std::fflush(stdout);
    }
    InferenceEngine engine(model, device, format, f.batch);
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<float> y = or_out_of_memory("predicting", [&] { return engine.run(x); });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::size_t cols = model.spec().n_outputs();
    OutputWriter out;
    write_predictions(out, f, y, rows, cols, cols >= 2);
    if (!f.report.empty()) {
        nlohmann::json j;
        j["command"] = "predict";
        j["version"] = version();
        j["model"] = f.model;
        j["architecture"] = model.spec().to_short();
        j["data"] = f.data;
        j["n_rows"] = rows;
        j["device"] = describe_device(device);
        j["format"] = to_string(format);
        j["batch"] = f.batch;
        j["loss"] = nullptr;
        j["accuracy"] = nullptr;
        j["wall_seconds"] = seconds;
        j["samples_per_second"] = seconds > 0 ? static_cast<double>(rows) / seconds : 0.0;
        j["out"] = f.out;
        write_report(out, f.report, std::move(j));
    }
    return out.failed() ? 1 : 0;
}

}  // namespace

int run_predict(const PredictFlags& f) {
    // Outputs first: a wrong path fails now, not after the work.
    if (f.has("--out")) {
        if (!ends_with(f.out, ".npy") && !ends_with(f.out, ".csv"))
            throw Error("--out " + f.out + ": the file name must end in .npy or .csv (the format to write)");
        check_writable(f.out, "--out");
    }
    if (f.has("--report")) check_writable(f.report, "--report");
    if (f.has("--out") && f.has("--report") && resolve_output_path(f.out) == resolve_output_path(f.report))
        throw Error("--out and --report name the same file '" + f.out + "'");
    if (f.has("--rows") && f.rows != "test" && f.rows != "train" && f.rows != "all")
        throw Error("--rows: '" + excerpt(f.rows) + "' (expected test, train or all)");
    const Device device = parse_device(f.device);
    InferenceFormat format;
    try {
        format = parse_inference_format(f.format);
    } catch (const Error& e) {
        throw Error(std::string("--format: ") + e.what());
    }
    if (f.batch == 0) throw Error("--batch: must be at least 1");

    std::map<std::string, std::string> meta;
    const Model model = or_out_of_memory("loading --model " + f.model, [&] { return load_model(f.model, &meta); });
    const ModelInfo info = read_model_info(meta, f.model);
    // A compacted model reads some columns of the data its original was trained on.
    std::vector<std::size_t> columns;
    std::size_t data_width = model.spec().n_inputs;
    const bool selects = read_input_columns(meta, f.model, model.spec().n_inputs, columns, data_width);
    if (ends_with(f.data, ".npy")) return predict_npy(f, model, device, format, selects ? &columns : nullptr, data_width);

    // The data, prepared as the model's were.
    std::string source = f.data;
    DataOptions options;
    if (source.empty()) {
        if (!info.data || info.data->source.empty())
            throw Error("--model " + f.model + " does not record the data it was trained on: give --data");
        source = info.data->source;
    }
    const bool recorded_source = info.data && info.data->source == source;
    if (recorded_source) options = info.data->options;
    const bool idx = source.rfind("idx:", 0) == 0;
    const bool libsvm = source.rfind("libsvm:", 0) == 0;
    if (libsvm && !recorded_source) options.no_test = true;  // another LIBSVM file: all of its rows
    if (f.has("--pixel-scale") && !idx)
        throw Error("--pixel-scale does not apply here: it scales the pixels of idx:DIR data, and --data is " + source);
    if (idx) {
        if (!f.has("--pixel-scale") && !(info.data && info.data->source_kind() == "idx"))
            std::fprintf(stderr,
                         "sparseprox: warning: --model %s does not record its pixel scale; using 'symmetric' "
                         "(give --pixel-scale if it was trained otherwise)\n",
                         f.model.c_str());
        options.pixel_scale =
            pixel_scale_for("--model " + f.model, info.data, f.has("--pixel-scale") ? &f.pixel_scale : nullptr);
    }
    const DataSplit split = or_out_of_memory("loading --data " + source, [&] { return load_data(source, options); });
    const std::string rows = f.rows.empty() ? (split.test.n_samples > 0 ? "test" : "all") : f.rows;
    if (rows == "test" && split.test.n_samples == 0)
        throw Error("--data " + source + " has no test rows" +
                    (recorded_source && options.no_test ? " (the model was trained without a test set)" : "") +
                    ": give --rows train or all");
    Dataset data = rows == "test" ? split.test : rows == "train" ? split.train : concatenated(split.train, split.test);
    if (libsvm) widen_libsvm(data, data_width);
    const ModelSpec& spec = model.spec();
    if (data_width != data.n_features)
        throw Error("--model " + f.model + " takes " + std::to_string(data_width) + " inputs but --data " + source +
                    " has " + std::to_string(data.n_features) + " features");
    if (selects) {
        data.x = select_columns(data.x.data(), data.n_samples, data.n_features, columns);
        data.n_features = columns.size();
    }
    const bool classification = data.task == Task::classification;
    if (classification ? data.n_outputs > spec.n_outputs() : data.n_outputs != spec.n_outputs())
        throw Error("--model " + f.model + " has " + std::to_string(spec.n_outputs()) + " outputs but --data " + source +
                    " has " + std::to_string(data.n_outputs) + (classification ? " classes" : " targets"));
    data.n_outputs = spec.n_outputs();
    const Loss loss = info.loss.value_or(default_loss(data.task));

    if (!f.quiet) {
        std::printf("sparseprox %s: predict %s (%s, %zu of %zu weights nonzero) on %s, %s rows (%zu), device %s\n",
                    version(), f.model.c_str(), excerpt(spec.to_short(), 120).c_str(), model.nnz_total(),
                    spec.n_weights(), source.c_str(), rows.c_str(), data.n_samples, describe_device(device).c_str());
        std::fflush(stdout);
    }
    std::vector<float> y;
    InferenceEngine engine = or_out_of_memory("preparing the " + std::string(to_string(format)) + " engine",
                                              [&] { return InferenceEngine(model, device, format, f.batch); });
    const auto t0 = std::chrono::steady_clock::now();
    const Evaluation e = or_out_of_memory("evaluating " + std::to_string(data.n_samples) + " rows",
                                          [&] { return engine.evaluate(data, loss, f.out.empty() ? nullptr : &y); });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per_second = seconds > 0 ? static_cast<double>(data.n_samples) / seconds : 0.0;
    if (!f.quiet) {
        std::printf("%s loss %.6g", rows.c_str(), e.loss);
        if (classification) std::printf(", accuracy %.2f%%", 100.0 * e.accuracy);
        std::printf(" (%zu rows, %.0f samples/s, format %s, batch %zu)\n", data.n_samples, per_second,
                    to_string(format), f.batch);
    }

    OutputWriter out;
    if (!f.out.empty()) write_predictions(out, f, y, data.n_samples, spec.n_outputs(), classification);
    if (!f.report.empty()) {
        nlohmann::json j;
        j["command"] = "predict";
        j["version"] = version();
        j["model"] = f.model;
        j["architecture"] = spec.to_short();
        j["model_version"] = info.version.empty() ? nlohmann::json(nullptr) : nlohmann::json(info.version);
        j["nnz_total"] = model.nnz_total();
        j["n_weights_total"] = spec.n_weights();
        j["data"] = source;
        j["data_preparation"] =
            preparation_json(DataPreparation::of(source, options, data.task, data.n_outputs, spec.input_shape));
        j["rows"] = rows;
        j["n_rows"] = data.n_samples;
        j["device"] = describe_device(device);
        j["format"] = to_string(format);
        j["batch"] = f.batch;
        j["loss_kind"] = to_string(loss);
        j["loss"] = number_or_null(e.loss);
        j["accuracy"] = classification ? number_or_null(e.accuracy) : nlohmann::json(nullptr);
        j["wall_seconds"] = seconds;
        j["samples_per_second"] = per_second;
        j["out"] = f.out.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.out);
        write_report(out, f.report, std::move(j));
    }
    return out.failed() ? 1 : 0;
}

}  // namespace cli
}  // namespace sparseprox
