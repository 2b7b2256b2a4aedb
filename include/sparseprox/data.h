// SparseProx: data sets and their readers.
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sparseprox {

enum class Task { regression, classification };

// Samples in memory, row-major.
struct SPARSEPROX_API Dataset {
    std::string name;
    Task task = Task::regression;
    std::size_t n_samples = 0;
    std::size_t n_features = 0;
    std::size_t n_outputs = 0;     // regression: targets per sample; classification: classes
    std::vector<float> x;          // (n_samples, n_features)
    std::vector<float> y;          // regression: (n_samples, n_outputs); empty otherwise
    std::vector<std::int32_t> labels;  // classification: (n_samples), each in [0, n_outputs)

    // Throws sparseprox::Error when sizes disagree, a value is NaN/Inf or a label is out of range.
    void validate() const;
    // Rows [first, first + count) as a new data set.
    Dataset slice(std::size_t first, std::size_t count) const;
};

struct SPARSEPROX_API DataSplit {
    Dataset train;
    Dataset test;
};

// ---- Mackey-Glass ----------------------------------------------------------------------------
// dx/dt = beta * x(t - tau) / (1 + x(t - tau)^n) - gamma * x(t), integrated with RK4 at step dt
// from a constant history x0; sampled every `sample_every` time units after `discard` units of
// transient. Each row holds `window` consecutive past samples and the target is the next sample.
// Features and target are scaled to [-1, 1] with the series' min and max.
// The delayed value at RK4's two midpoint stages, x(t + dt/2 - tau), lies between two stored
// samples and is taken as their mean. Rows are windows sliding by one sample: the training rows
// first, then the test rows, so the target of every row is the last feature of the next one.
// The sets are named "mackey-glass/train" and "mackey-glass/test". Throws sparseprox::Error
// naming the field for a non-finite option, dt, tau or sample_every <= 0, discard < 0, tau,
// sample_every or discard not a whole number of steps dt, a window, n_train or n_test of 0, and
// for a series that is constant or not finite.
struct SPARSEPROX_API MackeyGlassOptions {
    double beta = 0.2;
    double gamma = 0.1;
    double n = 10.0;
    double tau = 17.0;
    double x0 = 1.2;
    double dt = 0.1;            // tau / dt must be a whole number
    double sample_every = 1.0;  // time units between samples
    double discard = 500.0;     // transient time units dropped
    std::size_t window = 6;
    std::size_t n_train = 1000;
    std::size_t n_test = 385;
};
SPARSEPROX_API DataSplit mackey_glass(const MackeyGlassOptions& options = {});

// ---- LIBSVM text -----------------------------------------------------------------------------
// "label idx:value ..." per line, 1-based ascending indices, '#' comments and blank lines
// skipped. n_features = 0 infers it from the largest index; a given n_features rejects larger
// indices. Missing features are 0. Regression task, one output; the set is named after the
// file's stem. Errors name the file and line (bad label, missing ':', an index that is not a
// positive integer or does not ascend, NaN/Inf or out-of-float-range values, no samples at all).
SPARSEPROX_API Dataset read_libsvm(const std::string& path, std::size_t n_features = 0);

// What read_libsvm accepts before it allocates: a feature index above max_features, or a dense
// matrix (rows x features) of more than max_dense_values floats, is an error naming the file
// (and the line of the index). The defaults allow 2^24 features and 2^28 values (1 GiB);
// max_features above 2^32 counts as 2^32.
struct SPARSEPROX_API LibsvmLimits {
    std::size_t max_features = std::size_t{1} << 24;
    std::size_t max_dense_values = std::size_t{1} << 28;
};
// read_libsvm with explicit limits. Rows are held sparsely while the file is read; the dense
// matrix is allocated once, after the limits are checked.
SPARSEPROX_API Dataset read_libsvm(const std::string& path, std::size_t n_features, const LibsvmLimits& limits);

// ---- IDX (MNIST format), gzipped or not ---------------------------------------------------------
// Images: magic 0x00000803, then count, rows, cols, uint8 pixels. Labels: magic 0x00000801,
// count, uint8 labels. Files ending in .gz are inflated with zlib. n_outputs is the largest
// label + 1. Errors name the file: missing, wrong magic (expected and found, in hex), zero
// dimensions, truncated data or extra bytes, and image/label counts that differ.
enum class PixelScale {
    unit,       // [0, 1]
    symmetric,  // [-1, 1] (the paper's MNIST setting)
    raw         // 0..255 as floats
};
SPARSEPROX_API Dataset read_idx(const std::string& images_path, const std::string& labels_path,
                 PixelScale scale = PixelScale::symmetric);
// A folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte, each optionally with a .gz suffix (the plain name is tried first).
// Ten classes: a label above 9 is an error. The sets are named "<folder>/train", "<folder>/test".
SPARSEPROX_API DataSplit read_idx_dir(const std::string& dir, PixelScale scale = PixelScale::symmetric);

// ---- One entry point for the command line ------------------------------------------------------
struct SPARSEPROX_API DataOptions {
    // How a LIBSVM file is split, in file order with the training rows first. At most one of
    // libsvm_train_rows and libsvm_test_rows may be set; with neither, libsvm_test_fraction.
    std::size_t libsvm_train_rows = 0;  // > 0: the first N rows train, the rest test (mg_scale in the paper: 1000)
    std::size_t libsvm_test_rows = 0;   // > 0: the last N rows test, the rest train
    double libsvm_test_fraction = 0.2;  // in [0, 1): the last round(F x rows) rows test (at least one
                                        // when F > 0 and the file has two rows or more)
    // No test set at all: a LIBSVM file trains on every row; the other sources leave their test
    // part out (DataSplit::test is then empty, n_samples 0).
    bool no_test = false;
    // A separate test set, in the same syntax as the source: "libsvm:PATH" (the whole file),
    // "idx:DIR" (the folder's t10k files) or "mackey-glass" (the generator's test rows). The
    // source then gives only the training set (a LIBSVM file whole, so the split fields must be
    // left at 0). Two LIBSVM files are widened to the larger feature count of the two.
    std::string test_source;
    PixelScale pixel_scale = PixelScale::symmetric;
    MackeyGlassOptions mackey_glass;
};
// "mackey-glass", "libsvm:PATH" or "idx:DIR", split as DataOptions says; LIBSVM sets are named
// "<stem>/train" and "<stem>/test" (the test file's stem for a separate test file). idx:
// read_idx_dir with pixel_scale. Errors: any other source (the message lists the accepted
// forms), a split that leaves no training rows or, asked for by row count, no test rows (the
// message suggests no_test), split fields together with test_source or with each other, a test
// set whose task or outputs differ from the training set's.
SPARSEPROX_API DataSplit load_data(const std::string& source, const DataOptions& options = {});

}  // namespace sparseprox
