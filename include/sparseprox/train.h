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
#include "sparseprox/distributed.h"
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

// The optimizer of every method's parameters, composed with the method's step (README,
// "Optimizers and learning-rate schedules"). l1: the soft-threshold follows the optimizer's step
// with the step size that step gave each coordinate; gmp and fine-tuning: the kept weights only;
// l0: theta and the biases (the gates keep their own Adam); spred: u, v and the biases.
enum class OptimizerKind {
    sgd,       // w - lr g (the paper's, and the default)
    momentum,  // heavy ball: v = mu v + g, w - lr v
    nesterov,  // v = mu v + g, w - lr (g + mu v)
    adam,      // Kingma & Ba: bias-corrected moments, w - lr_i m_hat, lr_i = lr / (sqrt(v_hat) + eps)
    adamw,     // adam with the weight decay decoupled: w - lr wd w - lr_i m_hat (Loshchilov & Hutter)
};
SPARSEPROX_API const char* optimizer_name(OptimizerKind k);
// "sgd", "momentum", "nesterov", "adam" or "adamw"; throws naming the value otherwise.
SPARSEPROX_API OptimizerKind parse_optimizer(const std::string& name);

struct SPARSEPROX_API OptimizerOptions {
    OptimizerKind kind = OptimizerKind::sgd;
    float momentum = 0.9f;  // mu: momentum and nesterov, in [0, 1)
    float beta1 = 0.9f;     // adam, adamw: in [0, 1)
    float beta2 = 0.999f;   // adam, adamw: in [0, 1)
    float eps = 1e-8f;      // adam, adamw: > 0
    // TrainOptions::weight_decay is added to the gradient (g + wd w) for every kind but adamw,
    // which applies it decoupled from the gradient, after the moments: w - lr wd w.

    void validate() const;  // throws naming the bad value
};

// The learning rate of step t (0-based, counted over the run's whole step budget T, fine-tuning
// included): a linear warm-up over the first W steps, lr (t + 1) / W, then
//   constant  lr
//   step      lr gamma^floor((t - W) / every)
//   cosine    lr_min + (lr - lr_min) (1 + cos(pi (t - W) / (T - W))) / 2
// The fine-tuning phase follows the same curve from its first step on, scaled to its own rate.
enum class LrScheduleKind { constant, step, cosine };
SPARSEPROX_API const char* lr_schedule_name(LrScheduleKind k);
// "constant", "step" or "cosine"; throws naming the value otherwise.
SPARSEPROX_API LrScheduleKind parse_lr_schedule(const std::string& name);

struct SPARSEPROX_API LrSchedule {
    LrScheduleKind kind = LrScheduleKind::constant;
    std::size_t step_every = 0;  // step: steps between decays (>= 1)
    float gamma = 0.1f;          // step: the decay factor, in (0, 1]
    float lr_min = 0.0f;         // cosine: the rate at the end of the budget, in [0, lr]
    std::size_t warmup_steps = 0;

    // true when every step uses the base rate (constant, no warm-up).
    bool is_constant() const { return kind == LrScheduleKind::constant && warmup_steps == 0; }
    // The rate of step t of a run of total_steps steps whose base rate is lr.
    float lr_at(float lr, std::size_t t, std::size_t total_steps) const;
    // Throws naming the bad value (lr: the base rate lr_min is checked against).
    void validate(float lr) const;
};

struct SPARSEPROX_API TrainOptions {
    Device device;
    OptimizerOptions optimizer;       // plain SGD by default
    LrSchedule lr_schedule;           // constant by default
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
    // of the in-band step fixed (masked steps of `optimizer` on the surviving weights, its state
    // reset, no penalty), so the NNZ stays at the in-band count. Off by default (Algorithm 3
    // returns the in-band iterate); the lambda search turns it on (SearchOptions::finetune).
    bool finetune = false;
    float finetune_lr = 0.0f;  // the fine-tuning phase's base learning rate (0: lr)
    std::optional<Loss> loss;         // empty: from the task (MSE for regression, cross-entropy for classes)
    double progress_seconds = 5.0;    // report progress at most this often (<= 0: never)
    bool record_nnz_history = false;  // keep NNZ per layer after every step (slow on CUDA)
    std::size_t eval_batch = 4096;    // rows per forward pass when evaluating
    std::function<void(const Progress&)> on_progress;
    // Data-parallel training (sparseprox/distributed.h): every rank of the group calls train()
    // with the same options, model and data; each mini-batch of batch_size rows is split over
    // the ranks and the gradients are summed with one all-reduce per step, so every rank returns
    // the same model. A stop request (sparseprox/stop.h) on any rank ends the run on all of them
    // at the next poll. The default: one process.
    Communicator communicator;

    // Throws on lr <= 0 or not finite, a negative or NaN lambda or weight decay, a lambda list of
    // the wrong length, neither epochs nor steps given, out-of-range method, optimizer or
    // schedule options, or gmp without targets.
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
    // A stop was requested (sparseprox/stop.h): the run ended at a step boundary before its
    // budget and returns the model so far (no fine-tuning after that point).
    bool interrupted = false;
    double wall_seconds = 0.0;
    double samples_per_second = 0.0;
    Evaluation train_eval;
    Evaluation test_eval;  // loss NaN when no test set was given
    std::vector<std::vector<std::size_t>> nnz_history;  // when record_nnz_history
};

// Trains a copy of `init` on `train` (and evaluates on `test` when it is not null). A stop
// request (request_stop(), sparseprox/stop.h) ends the run at the next step boundary with
// TrainResult::interrupted set.
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
