#include "cli/export_command.h"

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "cli/train_command.h"
#include "sparseprox/files.h"
#include "sparseprox/sparseprox.h"

namespace sparseprox {
namespace cli {

void add_export_flags(CLI::App& app, ExportFlags& f) {
    app.add_option("--model", f.model, "a model file written by --save (safetensors)")->required();
    app.add_option("--to", f.to,
                   "torch (state dict of an nn.Sequential + its Python), csr (per-layer CSR arrays) or compact "
                   "(the compacted network as a model file); ONNX: scripts/export_onnx.py on the torch export")
        ->required();
    app.add_option("-o,--out", f.out, "the file to write (.safetensors)")->required();
    app.add_option("--report", f.report, "write a JSON report");
    app.add_flag("-q,--quiet", f.quiet, "print nothing but errors");
}

namespace {

std::string tuple2(std::size_t a, std::size_t b) { return "(" + std::to_string(a) + ", " + std::to_string(b) + ")"; }

// One nn.Sequential module per layer (plus an nn.Flatten where a dense layer reads an image, the
// implicit flatten of a SparseProx dense layer), and for each weight layer the index of its
// module: nn.Sequential names parameters "<module index>.weight".
struct TorchLayout {
    std::vector<std::string> modules;       // Python expressions, "nn.Linear(784, 300)"
    std::vector<std::size_t> weight_module;  // per weight layer
};

TorchLayout torch_layout(const ModelSpec& spec) {
    TorchLayout t;
    // Whether the tensor between modules is (batch, c, h, w): from an image input, a conv or a
    // pool, until a flatten or dense layer (a (c, 1, 1) pool output too needs nn.Flatten).
    bool four_d = !spec.input_shape.is_flat();
    for (const LayerSpec& l : spec.layers) {
        if (l.kind == LayerKind::conv2d || l.kind == LayerKind::maxpool2d || l.kind == LayerKind::avgpool2d) four_d = true;
        switch (l.kind) {
            case LayerKind::dense:
                if (four_d) t.modules.push_back("nn.Flatten()");
                four_d = false;
                t.weight_module.push_back(t.modules.size());
                t.modules.push_back("nn.Linear(" + std::to_string(l.n_in) + ", " + std::to_string(l.n_out) + ")");
                break;
            case LayerKind::conv2d:
                t.weight_module.push_back(t.modules.size());
                t.modules.push_back("nn.Conv2d(" + std::to_string(l.in_shape.channels) + ", " +
                                    std::to_string(l.out_shape.channels) + ", kernel_size=" + tuple2(l.kh, l.kw) +
                                    ", stride=" + tuple2(l.stride_h, l.stride_w) + ", padding=" + tuple2(l.pad_h, l.pad_w) +
                                    ")");
                break;
            case LayerKind::maxpool2d:
                t.modules.push_back("nn.MaxPool2d(kernel_size=" + tuple2(l.kh, l.kw) + ", stride=" +
                                    tuple2(l.stride_h, l.stride_w) + ", padding=" + tuple2(l.pad_h, l.pad_w) + ")");
                break;
            case LayerKind::avgpool2d:
                t.modules.push_back("nn.AvgPool2d(kernel_size=" + tuple2(l.kh, l.kw) + ", stride=" +
                                    tuple2(l.stride_h, l.stride_w) + ", padding=" + tuple2(l.pad_h, l.pad_w) +
                                    ", count_include_pad=True)");
                break;
            case LayerKind::flatten:
                t.modules.push_back("nn.Flatten()");
                four_d = false;
                break;
            case LayerKind::activation:
                switch (l.activation) {
                    case Activation::relu: t.modules.push_back("nn.ReLU()"); break;
                    case Activation::leaky_relu: t.modules.push_back("nn.LeakyReLU(0.01)"); break;
                    case Activation::tanh: t.modules.push_back("nn.Tanh()"); break;
                    case Activation::sigmoid: t.modules.push_back("nn.Sigmoid()"); break;
                    case Activation::identity: t.modules.push_back("nn.Identity()"); break;
                }
                break;
        }
    }
    return t;
}

std::string strip_suffix(const std::string& path, const std::string& suffix) {
    if (path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
        return path.substr(0, path.size() - suffix.size());
    return path;
}

std::string shapes_text(const ModelSpec& spec) {
    std::string s;
    for (const LayerSpec& l : spec.layers) {
        if (!l.has_weights()) continue;
        std::string shape;
        for (std::size_t d : l.weight_shape()) shape += (shape.empty() ? "" : "x") + std::to_string(d);
        s += (s.empty() ? "" : ", ") + shape;
    }
    return s;
}

nlohmann::json shapes_json(const ModelSpec& spec) {
    nlohmann::json j = nlohmann::json::array();
    for (const LayerSpec& l : spec.layers)
        if (l.has_weights()) j.push_back(l.weight_shape());
    return j;
}

}  // namespace

int run_export(const ExportFlags& f) {
    if (f.to != "torch" && f.to != "csr" && f.to != "compact") {
        if (f.to == "onnx")
            throw Error("--to onnx: run scripts/export_onnx.py on a --to torch export (it writes the ONNX graph with "
                        "the onnx package)");
        throw Error("--to: '" + excerpt(f.to) + "' (expected torch, csr or compact)");
    }
    check_writable(f.out, "--out");
    const std::string python_file = strip_suffix(f.out, ".safetensors") + ".py";
    if (f.to == "torch") check_writable(python_file, "the Python module beside --out");
    if (f.has("--report")) {
        check_writable(f.report, "--report");
        if (resolve_output_path(f.out) == resolve_output_path(f.report))
            throw Error("--out and --report name the same file '" + f.out + "'");
    }
    std::map<std::string, std::string> meta;
    const Model model = or_out_of_memory("loading --model " + f.model, [&] { return load_model(f.model, &meta); });
    const ModelSpec& spec = model.spec();
    // What the model file says about its data goes along (sparseprox/model_info.h).
    std::map<std::string, std::string> carried = to_metadata(read_model_info(meta, f.model));
    const auto columns = meta.find("input_columns");
    if (columns != meta.end()) carried["input_columns"] = columns->second;

    nlohmann::json report;
    report["command"] = "export";
    report["version"] = version();
    report["model"] = f.model;
    report["to"] = f.to;
    report["out"] = f.out;
    report["architecture"] = spec.to_short();
    report["shapes"] = shapes_json(spec);
    OutputWriter out;
    if (f.to == "torch") {
        const TorchLayout t = torch_layout(spec);
        TensorFile file;
        for (std::size_t i = 0; i < t.weight_module.size(); ++i) {
            const std::string key = std::to_string(t.weight_module[i]);
            Tensor w;
            w.shape = model.weight_shape(i);
            w.data.assign(model.weights(i).begin(), model.weights(i).end());
            Tensor b;
            b.shape = {model.biases(i).size()};
            b.data.assign(model.biases(i).begin(), model.biases(i).end());
            file.tensors[key + ".weight"] = std::move(w);
            file.tensors[key + ".bias"] = std::move(b);
        }
        file.metadata = carried;
        file.metadata["format"] = "pt";
        file.metadata["modules"] = nlohmann::json(t.modules).dump();
        file.metadata["architecture"] = spec.to_json();
        std::string py = "# The network of " + f.out + " as a torch.nn.Sequential (sparseprox export --to torch).\n"
                         "#   from safetensors.torch import load_file\n"
                         "#   model = build()\n"
                         "#   model.load_state_dict(load_file(\"" + f.out + "\"))\n"
                         "# Inputs: (batch, " + (spec.input_shape.is_flat() ? std::to_string(spec.n_inputs)
                                                                             : std::to_string(spec.input_shape.channels) + ", " +
                                                                                   std::to_string(spec.input_shape.height) + ", " +
                                                                                   std::to_string(spec.input_shape.width)) +
                         "), prepared as the model file's metadata \"data\" says.\n"
                         "import torch.nn as nn\n\n\ndef build():\n    return nn.Sequential(\n";
        for (const std::string& m : t.modules) py += "        " + m + ",\n";
        py += "    )\n";
        out.attempt("--out", [&] {
            write_safetensors(f.out, file);
            if (!f.quiet) std::printf("wrote %s (%zu tensors; keys as nn.Sequential's state_dict)\n", f.out.c_str(), file.tensors.size());
        });
        out.attempt("the Python module", [&] {
            write_file_atomic(python_file, py);
            if (!f.quiet) std::printf("wrote %s:\n%s", python_file.c_str(), py.c_str());
        });
        report["python"] = python_file;
        report["modules"] = t.modules;
    } else if (f.to == "csr") {
        TensorFile file;
        std::size_t nnz_total = 0;
        for (std::size_t i = 0; i < model.n_weight_layers(); ++i) {
            const std::vector<std::size_t>& shape = model.weight_shape(i);
            const std::size_t rows = shape[0], cols = model.weights(i).size() / std::max<std::size_t>(rows, 1);
            Tensor crow, col, val, bias;
            crow.dtype = col.dtype = DType::i64;
            crow.ints.push_back(0);
            const Span<const float> w = model.weights(i);
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t c = 0; c < cols; ++c)
                    if (w[r * cols + c] != 0.0f) {
                        col.ints.push_back(static_cast<std::int64_t>(c));
                        val.data.push_back(w[r * cols + c]);
                    }
                crow.ints.push_back(static_cast<std::int64_t>(col.ints.size()));
            }
            nnz_total += val.data.size();
            crow.shape = {rows + 1};
            col.shape = {col.ints.size()};
            val.shape = {val.data.size()};
            bias.shape = {model.biases(i).size()};
            bias.data.assign(model.biases(i).begin(), model.biases(i).end());
            const std::string p = "layers." + std::to_string(i) + ".";
            file.tensors[p + "crow_indices"] = std::move(crow);
            file.tensors[p + "col_indices"] = std::move(col);
            file.tensors[p + "values"] = std::move(val);
            file.tensors[p + "bias"] = std::move(bias);
            file.metadata[p + "shape"] = nlohmann::json({rows, cols}).dump();
            file.metadata[p + "weight_shape"] = nlohmann::json(shape).dump();
        }
        for (const auto& [k, v] : carried) file.metadata[k] = v;
        file.metadata["format"] = "sparseprox-csr";
        file.metadata["architecture"] = spec.to_json();
        out.attempt("--out", [&] {
            write_safetensors(f.out, file);
            if (!f.quiet)
                std::printf("wrote %s: %zu weight layers as CSR (%zu nonzero weights)\n", f.out.c_str(),
                            model.n_weight_layers(), nnz_total);
        });
        report["nnz_total"] = nnz_total;
    } else {
        const CompactModel c = or_out_of_memory("compacting", [&] { return compact(model); });
        std::map<std::string, std::string> m = carried;
        m.erase("input_columns");
        for (const auto& [k, v] : compact_metadata(c)) m[k] = v;
        m["compacted_from"] = spec.to_short();
        const ModelSpec& small = c.model.spec();
        if (!f.quiet) {
            std::printf("compacted %s: weight shapes %s -> %s; inputs %zu -> %zu; %zu units folded into biases, %zu "
                        "units and inputs removed; %zu -> %zu weights\n",
                        f.model.c_str(), shapes_text(spec).c_str(), shapes_text(small).c_str(), spec.n_inputs,
                        small.n_inputs, c.folded_units, c.removed_units, spec.n_weights(), small.n_weights());
        }
        out.attempt("--out", [&] {
            save_model(f.out, c.model, m);
            if (!f.quiet) std::printf("wrote %s\n", f.out.c_str());
        });
        report["shapes_after"] = shapes_json(small);
        report["inputs_before"] = spec.n_inputs;
        report["inputs_after"] = small.n_inputs;
        report["weights_before"] = spec.n_weights();
        report["weights_after"] = small.n_weights();
        report["folded_units"] = c.folded_units;
        report["removed_units"] = c.removed_units;
    }
    if (!f.report.empty()) write_report(out, f.report, std::move(report));
    return out.failed() ? 1 : 0;
}

}  // namespace cli
}  // namespace sparseprox
