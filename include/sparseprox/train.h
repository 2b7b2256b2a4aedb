// SparseProx: Algorithm 3 — mini-batch proximal gradient with an NNZ early stop.
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sparseprox/data.h"
#include "sparseprox/device.h"
#include "sparseprox/method.h"
#include "sparseprox/model.h"

namespace sparseprox {

// The NNZ band. targets empty: no early stop. One target: the single rule
// |sum_l n_l - t| <= rho * t. One target per weight layer: the multi rule, at least
// min_layers layers with |n_l - t_l| <= rho * t_l (min_layers = 0 means all layers).
struct SPARSEPROX_API StopRule {
    std::vector<std::size_t> targets;
    double tolerance = 0.001;  // rho
    std::size_t min_layers = 0;

    bool enabled() const { return !targets.empty(); }
    // Throws on impossible targets (0, more than the layer holds, wrong count of layers,
    // tolerance outside [0, 1), min_layers above the layer count).
    void validate(const ModelSpec& spec) const;
    bool holds(const std::vector<std::size_t>& nnz_per_layer) const;
};

// Progress, reported at the interval the options ask for and once at the end.
struct SPARSEPROX_API Progress {
    std::size_t epoch = 0;
    std::size_t step = 0;
    double loss = 0.0;  // mean mini-batch loss since the previous report
    std::vector<std::size_t> nnz;
    double samples_per_second = 0.0;
    double seconds = 0.0;
};

struct SPARSEPROX_API TrainOptions {
    Device device;
    MethodOptions method;             // l1 by default; lambdas mean the chosen method's strength
    float lr = 0.1f;                  // eta
    std::vector<float> lambdas{0.f};  // one value, or one per weight layer
    float weight_decay = 0.0f;        // l2 on the weights (g + wd*w), for the l2 baseline; 0: off
    std::size_t batch_size = 0;       // 0: full batch
    std::size_t epochs = 0;           // stop after this many epochs (0: no epoch limit)
    std::size_t steps = 0;            // stop after this many steps (0: no step limit)
    std::uint64_t seed = 0;           // mini-batch order (the model's initialization is separate)
    // The NNZ band of the early stop. With Method::gmp the targets are the pruning schedule's
    // final NNZ instead, and the run trains its whole budget.
    StopRule stop;
    // When the band ends the run early: train the rest of the budget with the sparsity pattern
    // of the in-band step fixed (masked SGD on the surviving weights, no penalty), so the NNZ
    // stays at the in-band count. Off by default (Algorithm 3 returns the in-band iterate).
    bool finetune = false;
    float finetune_lr = 0.0f;  // the fine-tuning phase's SGD step (0: lr)
    std::optional<Loss> loss;         // empty: from the task (MSE for regression, cross-entropy for classes)
    double progress_seconds = 5.0;    // report progress at most this often (<= 0: never)
    bool record_nnz_history = false;  // keep NNZ per layer after every step (slow on CUDA)
    std::size_t eval_batch = 4096;    // rows per forward pass when evaluating
    std::function<void(const Progress&)> on_progress;

    // Throws on lr <= 0 or not finite, a negative or NaN lambda or weight decay, a lambda list of
    // the wrong length, neither epochs nor steps given, out-of-range method options, or gmp
    // without targets.
    void validate(const ModelSpec& spec) const;
    void validate_method() const;  // the method part of validate()
};

struct SPARSEPROX_API Evaluation {
    double loss = 0.0;      // mean loss over the data set
    double accuracy = -1.0; // classification only; -1 otherwise
};

struct SPARSEPROX_API TrainResult {
    Model model;
    std::string device;
    std::vector<float> lambdas;  // one per weight layer
    std::vector<std::size_t> nnz;
    std::vector<std::size_t> alive;  // per weight layer: Model::alive_units of the returned model
    Method method = Method::l1;
    std::size_t steps = 0;       // steps whose update is in the returned model (fine-tuning included)
    std::size_t finetune_steps = 0;  // of which after the in-band step, with the pattern fixed
    std::size_t epochs_started = 0;  // epochs that hold at least one applied step
    bool stopped_in_band = false;  // gmp: the final NNZ lies in the band of the targets
    double wall_seconds = 0.0;
    double samples_per_second = 0.0;
    Evaluation train_eval;
    Evaluation test_eval;  // loss NaN when no test set was given
    std::vector<std::vector<std::size_t>> nnz_history;  // when record_nnz_history
};

// Trains a copy of `init` on `train` (and evaluates on `test` when it is not null).
SPARSEPROX_API TrainResult train(const Model& init, const Dataset& train_set, const Dataset* test_set,
                  const TrainOptions& options);

// Mean loss (and accuracy) of a model on a data set, on the given device.
SPARSEPROX_API Evaluation evaluate(const Model& model, const Dataset& data, const Device& device,
                                   std::optional<Loss> loss = std::nullopt);

// Full-data mean gradient of the loss (no penalty) with respect to every parameter, laid out
// like Model::slab(); used by the lambda search and by optimality checks.
SPARSEPROX_API std::vector<float> loss_gradient(const Model& model, const Dataset& data, const Device& device,
                                                std::optional<Loss> loss = std::nullopt);

SPARSEPROX_API Loss default_loss(Task task);

}  // namespace sparseprox
