// The backend interface the trainer drives. One engine holds one model's parameters, the
// training data and all scratch memory on its device; the CPU and CUDA engines implement it.
//
// Contract of the stop rule: after every step the engine evaluates the rule itself (on the
// device for CUDA). Once it holds, every later step() leaves the parameters untouched, so the
// parameters read back are exactly those of the first in-band step, however late the host
// notices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/collective.h"
#include "core/sparsify.h"
#include "sparseprox/data.h"
#include "sparseprox/model.h"
#include "core/search_rules.h"
#include "sparseprox/search.h"
#include "sparseprox/train.h"

namespace sparseprox {

// A group of weight layers and an open interval: the lambda search asks for the entries |g| of
// the group's weight gradients strictly inside (low, up).
struct CandidateQuery {
    std::vector<std::size_t> layers;  // weight-layer indices
    float low = 0.0f;
    float up = 0.0f;
};

struct EngineStatus {
    std::size_t steps_run = 0;      // steps enqueued and applied (frozen steps not counted)
    bool stopped = false;           // the stop rule held after step `steps_run`
    std::vector<std::size_t> nnz;   // per weight layer, after the last applied step
    double loss_sum = 0.0;          // sum of mini-batch mean losses since the last status()
    std::size_t loss_count = 0;     // number of steps in loss_sum
    bool stop_requested = false;    // data-parallel: a stop was requested on some rank (status())
    std::size_t graph_steps = 0;    // steps queued as a replayed step graph since set_params
};

class Engine {
public:
    virtual ~Engine() = default;

    virtual std::string device_name() const = 0;

    // The method of the coming runs (core/sparsify.h); Method::l1 until called. Takes effect at
    // the next set_params.
    virtual void set_method(const sparsify::MethodConfig& config) = 0;
    // The optimizer of the coming runs (OptimizerKind::sgd until called). Takes effect at the next
    // set_params, which also clears its state (velocity, Adam's moments).
    virtual void set_optimizer(const OptimizerOptions& options) = 0;
    // Layout as ParamLayout::of. Starts a new run: the step count, the loss accumulator and a
    // previous stop are reset, and the method's own parameters are initialized from the slab
    // (l0: theta = slab, log alpha from the drop rates, Adam moments 0; spred: the balanced split;
    // gmp: the nonzero weights kept, exact zeros pruned).
    virtual void set_params(const std::vector<float>& slab) = 0;
    // The exported parameters: dense-shaped weights with exact zeros (for l1 and gmp the
    // parameters themselves). evaluate() and gradient() use these too.
    virtual std::vector<float> get_params() = 0;
    // The weights the lazy l1 form accumulates (its z, whose soft-threshold get_params returns);
    // get_params() for every other method and form.
    virtual std::vector<float> get_accumulated() = 0;
    // The lazy l1 form only: replaces the parameters and z in the middle of a run (the step
    // count, the optimizer's state and the stop rule stay), e.g. with weights cut from both.
    virtual void set_lazy_state(const std::vector<float>& params, const std::vector<float>& z) = 0;
    // lambdas: one per weight layer, the strength of the method's penalty (ignored by gmp).
    // Takes effect from the next step.
    virtual void set_hyper(float lr, const std::vector<float>& lambdas) = 0;
    // The learning rate alone (the lambdas unchanged), from the next step: the trainer's schedule
    // calls it before every step. One float uploaded, no synchronization.
    virtual void set_lr(float lr) = 0;
    // l2 weight decay on the weights (not the biases): every step's weight gradient becomes
    // g + wd * w before the proximal step (with adamw: decoupled, w - lr wd w). 0 (the default)
    // disables it.
    virtual void set_weight_decay(float wd) = 0;
    // Per-layer targets already expanded: targets.size() is 1 (total) or n_weight_layers;
    // empty disables the rule. Also clears a previous stop.
    virtual void set_stop_rule(const StopRule& rule) = 0;

    // Data-parallel training (core/collective.h): with a group of more than one rank, step()
    // trains this rank's contiguous share of each mini-batch (every rank is given the same epoch
    // order and the same global batch), with the loss gradient scaled by 1/global batch, sums
    // the gradient slab over the group with one all-reduce, then applies the same update on
    // every rank; status() sums the loss accumulator over the group, and evaluate() splits its
    // chunks over the ranks and sums the chunk sums (the same result, bit for bit, as one
    // process). gradient() and predict() stay whole on every rank. Null or one rank: one
    // process. Every rank must make the same engine calls in the same order.
    virtual void set_collective(std::shared_ptr<Collective> group) = 0;

    // The data set must outlive the engine and stay unchanged: the CPU engine keeps a pointer
    // to it and the CUDA engine keeps its device copy (reused by evaluate() for the same object).
    virtual void set_train_data(const Dataset& data) = 0;
    // The order of training rows for the coming epoch (a permutation of 0..n-1).
    virtual void set_order(const std::vector<std::uint32_t>& order) = 0;
    // One step on the rows order[first .. first + count), count >= 1. Asynchronous on CUDA.
    virtual void step(std::size_t first, std::size_t count) = 0;
    // Waits for queued work and reports (resets the loss accumulator).
    virtual EngineStatus status() = 0;

    // Mean loss/accuracy over a data set with the current parameters.
    virtual Evaluation evaluate(const Dataset& data, std::size_t chunk) = 0;
    // The network's outputs for every row of `data` (its targets or labels are not read),
    // (n_samples, n_outputs) row-major.
    virtual std::vector<float> predict(const Dataset& data, std::size_t chunk) = 0;
    // Full-data mean gradient of the loss w.r.t. all parameters (slab layout).
    virtual std::vector<float> gradient(const Dataset& data, std::size_t chunk) = 0;
    // The full-data gradient of the current parameters, then for each query the count and lower
    // median of its candidates (candidate_set over the query's layers). Only these scalars
    // leave the device.
    virtual std::vector<CandidateSet> gradient_candidates(const Dataset& data, std::size_t chunk,
                                                          const std::vector<CandidateQuery>& queries) = 0;
};

std::unique_ptr<Engine> make_cpu_engine(const ModelSpec& spec, Loss loss);
// Through the CUDA backend library (core/cuda_plugin.h); throws sparseprox::Error naming the
// reason when it cannot be loaded or the device is not usable.
std::unique_ptr<Engine> make_cuda_engine(const ModelSpec& spec, Loss loss, int device_index);
std::unique_ptr<Engine> make_engine(const Device& device, const ModelSpec& spec, Loss loss);

}  // namespace sparseprox
