// SparseProx: Algorithm 3 — mini-batch proximal gradient with an NNZ early stop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sparseprox/data.h"
#include "sparseprox/device.h"
#include "sparseprox/model.h"

namespace sparseprox {

// The NNZ band. targets empty: no early stop. One target: the single rule
// |sum_l n_l - t| <= rho * t. One target per weight layer: the multi rule, at least
// min_layers layers with |n_l - t_l| <= rho * t_l (min_layers = 0 means all layers).
struct StopRule {
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
struct Progress {
    std::size_t epoch = 0;
    std::size_t step = 0;
    double loss = 0.0;  // mean mini-batch loss since the previous report
    std::vector<std::size_t> nnz;
    double samples_per_second = 0.0;
    double seconds = 0.0;
};

// The sparsifier a run trains with (method.md §3 and §7). Every method's saved model holds plain
// dense-shaped weights with exact zeros; its NNZ is the count of those nonzeros, and the NNZ
// early stop (StopRule) applies to that count.
enum class Method {
    l1,     // proximal SGD with soft-thresholding by eta*lambda_l (Algorithm 3)
    l0,     // hard-concrete gates with the expected-L0 penalty lambda_l * E[#nonzero gated weights]
    spred,  // w = u (.) v with weight decay (lambda_l / 2)(|u|^2 + |v|^2), read out with a threshold
    gmp,    // gradual magnitude pruning to the StopRule targets on the cubic schedule
};
const char* method_name(Method m);
// "l1", "l0", "spred" or "gmp"; throws naming the value otherwise.
Method parse_method(const std::string& name);

struct L0Options {
    // Gate granularity: false, one gate per weight; true, group gates (the input neurons of dense
    // layers, the output filters of conv layers), as in the reference code.
    bool group = false;
    float beta = 2.0f / 3.0f;  // hard-concrete temperature
    float gamma = -0.1f;       // stretch interval (gamma, zeta); gamma < 0 < 1 < zeta
    float zeta = 1.1f;
    float drop_init = 0.5f;        // initial log alpha = log((1-p)/p) ...
    float drop_init_first = 0.2f;  // ... with this p for the first weight layer
    // The gate parameters log alpha are trained with Adam (beta1 0.9, beta2 0.999, eps 1e-8) at
    // this step size; the weights with the run's SGD step lr.
    float gate_lr = 0.01f;
};

struct SpredOptions {
    // Read-out: a weight u*v with |u*v| <= threshold counts (and is saved) as an exact zero.
    float threshold = 1e-3f;
};

struct GmpOptions {
    // The schedule in fractions of the run's step budget: pruning starts at begin, reaches the
    // targets at end and the mask stays fixed afterwards.
    double begin = 0.1;
    double end = 0.75;
    std::size_t interval = 0;  // steps between pruning events (Delta t); 0: 1/50 of the ramp, >= 1
    // One total target: false prunes the smallest magnitudes over all layers together (global),
    // true prunes every layer to the same density. Per-layer targets always prune per layer.
    bool per_layer = false;
};

struct MethodOptions {
    Method method = Method::l1;
    L0Options l0;
    SpredOptions spred;
    GmpOptions gmp;
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
const char* optimizer_name(OptimizerKind k);
// "sgd", "momentum", "nesterov", "adam" or "adamw"; throws naming the value otherwise.
OptimizerKind parse_optimizer(const std::string& name);

struct OptimizerOptions {
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
const char* lr_schedule_name(LrScheduleKind k);
// "constant", "step" or "cosine"; throws naming the value otherwise.
LrScheduleKind parse_lr_schedule(const std::string& name);

struct LrSchedule {
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

struct TrainOptions {
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
    int loss = -1;                    // -1: from the task (MSE / cross-entropy), else a Loss value
    double progress_seconds = 5.0;    // report progress at most this often (<= 0: never)
    bool record_nnz_history = false;  // keep NNZ per layer after every step (slow on CUDA)
    std::size_t eval_batch = 4096;    // rows per forward pass when evaluating
    std::function<void(const Progress&)> on_progress;

    // Throws on lr <= 0 or not finite, a negative or NaN lambda or weight decay, a lambda list of
    // the wrong length, neither epochs nor steps given, out-of-range method, optimizer or
    // schedule options, or gmp without targets.
    void validate(const ModelSpec& spec) const;
    void validate_method() const;  // the method part of validate()
};

struct Evaluation {
    double loss = 0.0;      // mean loss over the data set
    double accuracy = -1.0; // classification only; -1 otherwise
};

struct TrainResult {
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
TrainResult train(const Model& init, const Dataset& train_set, const Dataset* test_set,
                  const TrainOptions& options);

// Mean loss (and accuracy) of a model on a data set, on the given device.
Evaluation evaluate(const Model& model, const Dataset& data, const Device& device,
                    int loss = -1);

// Full-data mean gradient of the loss (no penalty) with respect to every parameter, laid out
// like Model::slab(); used by the lambda search and by optimality checks.
std::vector<float> loss_gradient(const Model& model, const Dataset& data, const Device& device,
                                 int loss = -1);

Loss default_loss(Task task);

}  // namespace sparseprox
