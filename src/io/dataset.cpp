// Dataset checks and slicing, and the one data entry point the command line uses.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

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

namespace {

constexpr const char* kForms = "accepted forms: \"mackey-glass\", \"libsvm:PATH\", \"idx:DIR\"";

enum class SourceKind { mackey_glass, libsvm, idx };

struct Source {
    SourceKind kind = SourceKind::mackey_glass;
    std::string path;  // libsvm file or idx folder
};

Source parse_source(const std::string& source, const char* what) {
    static const std::string libsvm_prefix = "libsvm:", idx_prefix = "idx:";
    if (source == "mackey-glass") return {SourceKind::mackey_glass, ""};
    if (source.compare(0, libsvm_prefix.size(), libsvm_prefix) == 0) {
        const std::string path = source.substr(libsvm_prefix.size());
        if (path.empty()) throw Error(std::string(what) + " '" + source + "' names no file (" + kForms + ")");
        return {SourceKind::libsvm, path};
    }
    if (source.compare(0, idx_prefix.size(), idx_prefix) == 0) {
        const std::string dir = source.substr(idx_prefix.size());
        if (dir.empty()) throw Error(std::string(what) + " '" + source + "' names no folder (" + kForms + ")");
        return {SourceKind::idx, dir};
    }
    throw Error("unknown " + std::string(what) + " '" + source + "'; " + kForms);
}

// Pads every row with zero features up to n (n >= d.n_features).
void widen(Dataset& d, std::size_t n) {
    if (d.n_features == n) return;
    std::vector<float> x(checked_product(d.n_samples, n, d, "x"), 0.0f);
    for (std::size_t r = 0; r < d.n_samples; ++r)
        std::copy(d.x.begin() + static_cast<std::ptrdiff_t>(r * d.n_features),
                  d.x.begin() + static_cast<std::ptrdiff_t>((r + 1) * d.n_features),
                  x.begin() + static_cast<std::ptrdiff_t>(r * n));
    d.x = std::move(x);
    d.n_features = n;
}

// The rows of a LIBSVM file that form its test set, from the options.
std::size_t libsvm_test_count(const std::string& path, std::size_t n, const DataOptions& o) {
    const std::string where = "'" + path + "' has " + std::to_string(n) + " sample" + (n == 1 ? "" : "s");
    if (o.libsvm_train_rows != 0 && o.libsvm_test_rows != 0)
        throw Error("give libsvm_train_rows (" + std::to_string(o.libsvm_train_rows) + ") or libsvm_test_rows (" +
                    std::to_string(o.libsvm_test_rows) + "), not both");
    if (o.no_test) {
        if (o.libsvm_train_rows != 0 || o.libsvm_test_rows != 0)
            throw Error("no_test and a split by libsvm_train_rows or libsvm_test_rows: choose one");
        return 0;
    }
    if (o.libsvm_train_rows != 0) {
        if (n <= o.libsvm_train_rows)
            throw Error(where + "; the split needs more than libsvm_train_rows = " + std::to_string(o.libsvm_train_rows) +
                        " so the test set is not empty (train on every row without a test set, or take fewer "
                        "training rows)");
        return n - o.libsvm_train_rows;
    }
    if (o.libsvm_test_rows != 0) {
        if (n <= o.libsvm_test_rows)
            throw Error(where + "; the split needs more than libsvm_test_rows = " + std::to_string(o.libsvm_test_rows) +
                        " so the training set is not empty");
        return o.libsvm_test_rows;
    }
    const double f = o.libsvm_test_fraction;
    if (!(f >= 0.0 && f < 1.0))
        throw Error("libsvm_test_fraction " + std::to_string(f) + " is outside [0, 1)");
    std::size_t test = static_cast<std::size_t>(std::llround(f * static_cast<double>(n)));
    if (f > 0.0 && test == 0 && n >= 2) test = 1;
    return std::min(test, n - 1);  // at least one training row
}

}  // namespace

DataSplit load_data(const std::string& source_text, const DataOptions& options) {
    const Source source = parse_source(source_text, "data source");
    const bool separate = !options.test_source.empty();
    if (separate && options.no_test)
        throw Error("a separate test set ('" + options.test_source + "') and no test set: choose one");
    if (source.kind != SourceKind::libsvm || separate) {
        if (options.libsvm_train_rows != 0 || options.libsvm_test_rows != 0)
            throw Error(std::string("libsvm_train_rows and libsvm_test_rows split a LIBSVM file") +
                        (separate ? " that has no separate test set" : "; '" + source_text + "' is not one"));
    }

    DataSplit split;
    switch (source.kind) {
        case SourceKind::mackey_glass: split = mackey_glass(options.mackey_glass); break;
        case SourceKind::idx: split = read_idx_dir(source.path, options.pixel_scale); break;
        case SourceKind::libsvm: {
            Dataset all = read_libsvm(source.path);
            const std::string base = stem_of(source.path);
            const std::size_t n_test = separate ? 0 : libsvm_test_count(source.path, all.n_samples, options);
            if (n_test == 0) {
                split.train = std::move(all);
                split.test = split.train.slice(0, 0);
            } else {
                split.train = all.slice(0, all.n_samples - n_test);
                split.test = all.slice(all.n_samples - n_test, n_test);
            }
            split.train.name = base + "/train";
            split.test.name = base + "/test";
            break;
        }
    }
    if (options.no_test) {
        split.test = split.train.slice(0, 0);
        split.test.name.clear();
    }
    if (!separate) return split;

    const Source test_source = parse_source(options.test_source, "test data source");
    Dataset test;
    switch (test_source.kind) {
        case SourceKind::mackey_glass: test = mackey_glass(options.mackey_glass).test; break;
        case SourceKind::idx: test = read_idx_dir(test_source.path, options.pixel_scale).test; break;
        case SourceKind::libsvm:
            test = read_libsvm(test_source.path);
            test.name = stem_of(test_source.path) + "/test";
            break;
    }
    const std::string pair = "test data '" + options.test_source + "' and data '" + source_text + "'";
    if (test.task != split.train.task)
        throw Error(pair + ": one is a classification set, the other a regression set");
    if (test.task == Task::regression && test.n_outputs != split.train.n_outputs)
        throw Error(pair + ": " + std::to_string(test.n_outputs) + " and " + std::to_string(split.train.n_outputs) +
                    " targets per sample");
    if (test_source.kind == SourceKind::libsvm && source.kind == SourceKind::libsvm) {
        // A feature the training rows never use is still a feature: the wider file decides.
        const std::size_t n = std::max(test.n_features, split.train.n_features);
        widen(test, n);
        widen(split.train, n);
    }
    if (test.n_features != split.train.n_features)
        throw Error(pair + ": " + std::to_string(test.n_features) + " and " + std::to_string(split.train.n_features) +
                    " features per sample");
    if (test.task == Task::classification) {
        const std::size_t classes = std::max(test.n_outputs, split.train.n_outputs);
        test.n_outputs = split.train.n_outputs = classes;
    }
    split.test = std::move(test);
    return split;
}

}  // namespace sparseprox
