// Dataset checks and slicing, and the one data entry point the command line uses.
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <limits>
#include <string>

#include "sparseprox/data.h"
#include "sparseprox/error.h"

namespace sparseprox {

namespace {

std::string label_of(const Dataset& d) {
    return d.name.empty() ? std::string("data set") : "data set '" + d.name + "'";
}

// n_samples * width without wrapping: a wrapped product could make a broken size check pass.
std::size_t checked_product(std::size_t a, std::size_t b, const Dataset& d, const char* what) {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a)
        throw Error(label_of(d) + ": " + what + " size " + std::to_string(a) + " x " + std::to_string(b) +
                    " overflows");
    return a * b;
}

std::string stem_of(const std::string& path) {
    std::string s = std::filesystem::path(path).stem().string();
    return s.empty() ? path : s;
}

}  // namespace

void Dataset::validate() const {
    const std::size_t nx = checked_product(n_samples, n_features, *this, "x");
    if (x.size() != nx)
        throw Error(label_of(*this) + ": x holds " + std::to_string(x.size()) + " values, expected n_samples (" +
                    std::to_string(n_samples) + ") x n_features (" + std::to_string(n_features) +
                    ") = " + std::to_string(nx));
    if (task == Task::regression) {
        const std::size_t ny = checked_product(n_samples, n_outputs, *this, "y");
        if (y.size() != ny)
            throw Error(label_of(*this) + ": y holds " + std::to_string(y.size()) + " values, expected n_samples (" +
                        std::to_string(n_samples) + ") x n_outputs (" + std::to_string(n_outputs) +
                        ") = " + std::to_string(ny));
        if (!labels.empty())
            throw Error(label_of(*this) + ": a regression data set has " + std::to_string(labels.size()) +
                        " labels (expected none; targets go in y)");
    } else {
        if (labels.size() != n_samples)
            throw Error(label_of(*this) + ": labels holds " + std::to_string(labels.size()) +
                        " values, expected n_samples = " + std::to_string(n_samples));
        if (!y.empty())
            throw Error(label_of(*this) + ": a classification data set has " + std::to_string(y.size()) +
                        " values in y (expected none; classes go in labels)");
        if (n_samples > 0 && n_outputs == 0)
            throw Error(label_of(*this) + ": a classification data set needs n_outputs >= 1 classes");
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
        if (!std::isfinite(x[i]))
            throw Error(label_of(*this) + ": x of sample " + std::to_string(i / n_features) + ", feature " +
                        std::to_string(i % n_features) + " is " + std::to_string(x[i]) + " (not finite)");
    }
    for (std::size_t i = 0; i < y.size(); ++i) {
        if (!std::isfinite(y[i]))
            throw Error(label_of(*this) + ": y of sample " + std::to_string(i / n_outputs) + ", output " +
                        std::to_string(i % n_outputs) + " is " + std::to_string(y[i]) + " (not finite)");
    }
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= n_outputs)
            throw Error(label_of(*this) + ": label of sample " + std::to_string(i) + " is " +
                        std::to_string(labels[i]) + ", outside [0, " + std::to_string(n_outputs) + ")");
    }
}

Dataset Dataset::slice(std::size_t first, std::size_t count) const {
    if (first > n_samples || count > n_samples - first)
        throw Error(label_of(*this) + ": cannot slice rows [" + std::to_string(first) + ", " + std::to_string(first) +
                    " + " + std::to_string(count) + ") of " + std::to_string(n_samples) + " samples");
    // Sizes are checked before copying so a malformed set fails here, not with an out-of-range read.
    if (x.size() != checked_product(n_samples, n_features, *this, "x") ||
        (task == Task::regression && y.size() != checked_product(n_samples, n_outputs, *this, "y")) ||
        (task == Task::classification && labels.size() != n_samples))
        validate();  // throws with the precise complaint

    Dataset out;
    out.name = name;
    out.task = task;
    out.n_samples = count;
    out.n_features = n_features;
    out.n_outputs = n_outputs;
    out.x.assign(x.begin() + static_cast<std::ptrdiff_t>(first * n_features),
                 x.begin() + static_cast<std::ptrdiff_t>((first + count) * n_features));
    if (task == Task::regression) {
        out.y.assign(y.begin() + static_cast<std::ptrdiff_t>(first * n_outputs),
                     y.begin() + static_cast<std::ptrdiff_t>((first + count) * n_outputs));
    } else {
        out.labels.assign(labels.begin() + static_cast<std::ptrdiff_t>(first),
                          labels.begin() + static_cast<std::ptrdiff_t>(first + count));
    }
    return out;
}

DataSplit load_data(const std::string& source, const DataOptions& options) {
    static const char* const kForms = "accepted forms: \"mackey-glass\", \"libsvm:PATH\", \"idx:DIR\"";
    if (source == "mackey-glass") return mackey_glass(options.mackey_glass);

    const std::string libsvm_prefix = "libsvm:";
    const std::string idx_prefix = "idx:";
    if (source.compare(0, libsvm_prefix.size(), libsvm_prefix) == 0) {
        const std::string path = source.substr(libsvm_prefix.size());
        if (path.empty()) throw Error("data source '" + source + "' names no file (" + kForms + ")");
        if (options.libsvm_train_rows == 0)
            throw Error("DataOptions::libsvm_train_rows must be >= 1 (the first rows of '" + path +
                        "' form the training set)");
        Dataset all = read_libsvm(path);
        if (all.n_samples <= options.libsvm_train_rows)
            throw Error("'" + path + "' has " + std::to_string(all.n_samples) +
                        " samples; the split needs more than libsvm_train_rows = " +
                        std::to_string(options.libsvm_train_rows) + " so the test set is not empty");
        DataSplit split;
        split.train = all.slice(0, options.libsvm_train_rows);
        split.test = all.slice(options.libsvm_train_rows, all.n_samples - options.libsvm_train_rows);
        const std::string base = stem_of(path);
        split.train.name = base + "/train";
        split.test.name = base + "/test";
        return split;
    }
    if (source.compare(0, idx_prefix.size(), idx_prefix) == 0) {
        const std::string dir = source.substr(idx_prefix.size());
        if (dir.empty()) throw Error("data source '" + source + "' names no folder (" + kForms + ")");
        return read_idx_dir(dir, options.pixel_scale);
    }
    throw Error("unknown data source '" + source + "'; " + kForms);
}

}  // namespace sparseprox
