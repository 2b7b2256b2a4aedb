// SparseProx: running a trained sparse model fast.
//
// A model trained to 5% of its weights is still stored dense. Three inference formats run the
// same function:
//   dense    the training engine's forward pass (BLAS sgemm over every weight, zeros included);
//   csr      every dense layer as a compressed-sparse-row matrix (n_out, n_in) multiplied by the
//            batch (CPU: Eigen's sparse x dense product; CUDA: cuSPARSE's SpMM, SpMV for one
//            row). Conv layers: on the CPU a (c_out, c_in*kh*kw) CSR matrix multiplied by the
//            im2col patches of each sample when at most 10% of the layer's weights are nonzero,
//            else dense as in the dense format (a denser sparse product loses to the batched
//            GEMM); on CUDA they run dense through cuDNN (multiply_adds_per_sample() counts
//            dense layers so);
//   compact  the smaller dense network compact() builds (dead units and inputs removed), run by
//            the dense engine.
// Every format runs on every device.
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sparseprox/data.h"
#include "sparseprox/device.h"
#include "sparseprox/model.h"
#include "sparseprox/train.h"

namespace sparseprox {

enum class InferenceFormat { dense, csr, compact };

SPARSEPROX_API const char* to_string(InferenceFormat f);            // dense, csr, compact
SPARSEPROX_API InferenceFormat parse_inference_format(const std::string& name);  // throws naming the value

// The same function as a smaller dense network. Removed, until nothing more changes:
//  - units (dense outputs, conv filters) that no later weight reads (their outgoing weights are
//    all zero), and inputs of the first dense layer that no weight reads;
//  - units with no incoming weight: their output is the constant activation(bias), which is
//    folded into the next weight layer's bias (times its outgoing weights). A filter is folded
//    only where that is exact: through activations, max-pools and unpadded average pools, into a
//    dense layer or an unpadded convolution (never across zero padding, where the border
//    positions would see zeros instead of the constant).
// A layer keeps at least one unit. The outputs equal the original's within float rounding (a
// folded constant is added to the bias before, not inside, the next layer's sum).
struct SPARSEPROX_API CompactModel {
    Model model;                             // reads input_columns of the original's inputs
    std::vector<std::size_t> input_columns;  // the original input features kept, ascending
    std::size_t original_inputs = 0;         // the original model's n_inputs
    std::size_t folded_units = 0;            // units replaced by a bias term
    std::size_t removed_units = 0;           // units and inputs removed (folded ones included)

    // Rows of the original's inputs (rows, original_inputs) -> (rows, input_columns.size()).
    std::vector<float> select_inputs(const float* x, std::size_t rows) const;
};

SPARSEPROX_API CompactModel compact(const Model& model);

// Rows of `width` features (rows, width) -> the given columns of each, in order
// (rows, columns.size()): how a compacted model's inputs are taken from its original's.
SPARSEPROX_API std::vector<float> select_columns(const float* x, std::size_t rows, std::size_t width,
                                                 const std::vector<std::size_t>& columns);

// A compacted model file records the input columns it reads as the metadata entry
// "input_columns" = {"from": original_inputs, "keep": [...]} (only when some were removed).
SPARSEPROX_API std::map<std::string, std::string> compact_metadata(const CompactModel& c);
// The columns recorded by compact_metadata for a model of `model_inputs` inputs, or false when
// the file has none; a malformed entry is an Error naming `origin` and the entry.
SPARSEPROX_API bool read_input_columns(const std::map<std::string, std::string>& metadata, const std::string& origin,
                                       std::size_t model_inputs, std::vector<std::size_t>& columns,
                                       std::size_t& original_inputs);

// A model prepared once for one format on one device, then run on batches: setup (CSR
// conversion, compaction, engine and buffers) happens in the constructor, so run() measures
// inference only. Not thread-safe: one engine per thread.
class SPARSEPROX_API InferenceEngine {
public:
    // max_batch: rows per forward pass (run() splits larger inputs); at least 1.
    InferenceEngine(const Model& model, const Device& device, InferenceFormat format, std::size_t max_batch = 256);
    ~InferenceEngine();
    InferenceEngine(InferenceEngine&&) noexcept;
    InferenceEngine& operator=(InferenceEngine&&) noexcept;
    InferenceEngine(const InferenceEngine&) = delete;
    InferenceEngine& operator=(const InferenceEngine&) = delete;

    // y (rows, n_outputs) = the network on x (rows, n_inputs), row-major.
    void run(const float* x, std::size_t rows, float* y);
    std::vector<float> run(const std::vector<float>& x);
    // Mean loss and accuracy (classification) over a data set, from run()'s outputs with the
    // per-sample formulas of the training engine (sums in row order, in double). The loss
    // defaults as evaluate()'s does.
    // `outputs`, when not null, receives run()'s outputs (n_samples, n_outputs).
    Evaluation evaluate(const Dataset& data, std::optional<Loss> loss = std::nullopt,
                        std::vector<float>* outputs = nullptr);

    InferenceFormat format() const;
    Device device() const;
    std::size_t n_inputs() const;
    std::size_t n_outputs() const;
    std::size_t max_batch() const;
    // Weights the format multiplies per sample: dense and compact count every entry of their
    // dense matrices (conv: times the output positions), csr only the nonzeros (but every
    // weight of a conv layer it runs dense: on CUDA, and above 10% density on the CPU).
    std::size_t multiply_adds_per_sample() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Outputs of `model` on x (rows, n_inputs) in `format`: a one-off InferenceEngine.
SPARSEPROX_API std::vector<float> predict(const Model& model, const std::vector<float>& x, const Device& device,
                                          InferenceFormat format, std::size_t batch = 256);

}  // namespace sparseprox
