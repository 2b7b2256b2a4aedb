// Algorithm 3 (docs/method.md §3) driven on any engine: the host only schedules batches, polls the
// engine's status now and then and reports progress; the stop rule is evaluated by the engine
// after every step.
#include "sparseprox/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>

#include "core/band.h"
#include "core/engine.h"
#include "core/train_loop.h"
#include "sparseprox/error.h"
#include "sparseprox/stop.h"

namespace sparseprox {

Loss default_loss(Task task) { return task == Task::regression ? Loss::mse : Loss::cross_entropy; }

// ---- optimizers and learning-rate schedules -------------------------------------------------------

const char* optimizer_name(OptimizerKind k) {
    switch (k) {
        case OptimizerKind::sgd: return "sgd";
        case OptimizerKind::momentum: return "momentum";
        case OptimizerKind::nesterov: return "nesterov";
        case OptimizerKind::adam: return "adam";
        case OptimizerKind::adamw: return "adamw";
    }
    return "?";
}

OptimizerKind parse_optimizer(const std::string& name) {
    for (OptimizerKind k : {OptimizerKind::sgd, OptimizerKind::momentum, OptimizerKind::nesterov, OptimizerKind::adam,
                            OptimizerKind::adamw})
        if (name == optimizer_name(k)) return k;
    throw Error("unknown optimizer '" + name + "': use sgd, momentum, nesterov, adam or adamw");
}

void OptimizerOptions::validate() const {
    auto unit = [](float v) { return std::isfinite(v) && v >= 0.0f && v < 1.0f; };
    if (!unit(momentum)) throw Error("momentum " + std::to_string(momentum) + " must lie in [0, 1)");
    if (!unit(beta1)) throw Error("adam beta1 " + std::to_string(beta1) + " must lie in [0, 1)");
    if (!unit(beta2)) throw Error("adam beta2 " + std::to_string(beta2) + " must lie in [0, 1)");
    if (!(std::isfinite(eps) && eps > 0.0f)) throw Error("adam epsilon " + std::to_string(eps) + " must be positive and finite");
}

const char* lr_schedule_name(LrScheduleKind k) {
    switch (k) {
        case LrScheduleKind::constant: return "constant";
        case LrScheduleKind::step: return "step";
        case LrScheduleKind::cosine: return "cosine";
    }
    return "?";
}

LrScheduleKind parse_lr_schedule(const std::string& name) {
    for (LrScheduleKind k : {LrScheduleKind::constant, LrScheduleKind::step, LrScheduleKind::cosine})
        if (name == lr_schedule_name(k)) return k;
    throw Error("unknown learning-rate schedule '" + name + "': use constant, step or cosine");
}

float LrSchedule::lr_at(float lr, std::size_t t, std::size_t total_steps) const {
    const double base = lr;
    if (t < warmup_steps) return static_cast<float>(base * static_cast<double>(t + 1) / static_cast<double>(warmup_steps));
    const std::size_t s = t - warmup_steps;  // steps since the warm-up
    switch (kind) {
        case LrScheduleKind::constant: return lr;
        case LrScheduleKind::step:
            return static_cast<float>(base * std::pow(static_cast<double>(gamma), static_cast<double>(s / step_every)));
        case LrScheduleKind::cosine: {
            const std::size_t span = total_steps > warmup_steps ? total_steps - warmup_steps : 0;
            if (span == 0) return lr;
            const double x = std::min(1.0, static_cast<double>(s) / static_cast<double>(span));
            const double pi = 3.14159265358979323846;
            return static_cast<float>(lr_min + (base - lr_min) * 0.5 * (1.0 + std::cos(pi * x)));
        }
    }
    return lr;
}

void LrSchedule::validate(float lr) const {
    if (kind == LrScheduleKind::step) {
        if (step_every == 0) throw Error("the step schedule needs a step interval of at least 1 (--lr-step-every)");
        if (!(std::isfinite(gamma) && gamma > 0.0f && gamma <= 1.0f))
            throw Error("learning-rate decay factor " + std::to_string(gamma) + " must lie in (0, 1]");
    }
    if (kind == LrScheduleKind::cosine && !(std::isfinite(lr_min) && lr_min >= 0.0f && lr_min <= lr))
        throw Error("cosine schedule: final learning rate " + std::to_string(lr_min) + " must lie in [0, lr = " +
                    std::to_string(lr) + "]");
}

void StopRule::validate(const ModelSpec& spec) const {
    if (targets.empty()) return;
    const std::size_t n_layers = spec.n_weight_layers();
    if (!(tolerance >= 0.0 && tolerance < 1.0))
        throw Error("tolerance " + std::to_string(tolerance) + " is out of range [0, 1)");
    if (targets.size() == 1) {
        const std::size_t total = spec.n_weights();
        if (targets[0] == 0) throw Error("target NNZ 0 is impossible: the target must be at least 1");
        if (targets[0] > total)
            throw Error("target NNZ " + std::to_string(targets[0]) + " exceeds the " + std::to_string(total) +
                        " weights of the model");
        return;
    }
    if (targets.size() != n_layers)
        throw Error("got " + std::to_string(targets.size()) + " per-layer NNZ targets but the model has " +
                    std::to_string(n_layers) + " weight layers");
    const ParamLayout layout = ParamLayout::of(spec);
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const std::size_t n = layout.segments[l].n_weights;
        if (targets[l] == 0) throw Error("target NNZ of layer " + std::to_string(l) + " is 0: it must be at least 1");
        if (targets[l] > n)
            throw Error("target NNZ " + std::to_string(targets[l]) + " of layer " + std::to_string(l) +
                        " exceeds its " + std::to_string(n) + " weights");
    }
    if (min_layers > n_layers)
        throw Error("min_layers " + std::to_string(min_layers) + " exceeds the " + std::to_string(n_layers) +
                    " weight layers");
}

bool StopRule::holds(const std::vector<std::size_t>& nnz) const {
    return band_holds(stop_config(*this, nnz.size()), targets, nnz);
}

StopConfig stop_config(const StopRule& rule, std::size_t n_layers) {
    StopConfig c;
    c.n_targets = static_cast<std::uint32_t>(rule.targets.size());
    c.n_layers = static_cast<std::uint32_t>(n_layers);
    c.min_layers = rule.min_layers;
    c.tolerance = rule.tolerance;
    return c;
}

std::vector<float> lazy_refit(std::vector<float> params, const std::vector<float>& z, const ParamLayout& layout) {
    if (z.size() != params.size())
        throw Error("lazy_refit: " + std::to_string(z.size()) + " accumulated values for " +
                    std::to_string(params.size()) + " parameters");
    for (const ParamSegment& seg : layout.segments)
        for (std::size_t i = seg.weight_offset; i < seg.weight_offset + seg.n_weights; ++i)
            if (params[i] != 0.0f) params[i] = z[i];
    return params;
}

std::size_t step_budget(const TrainOptions& options, std::size_t n_samples) {
    const std::size_t batch = options.batch_size == 0 ? n_samples : std::min(options.batch_size, n_samples);
    const std::size_t steps_per_epoch = batch == 0 ? 0 : (n_samples + batch - 1) / batch;
    std::size_t max_steps = std::numeric_limits<std::size_t>::max();
    if (options.steps) max_steps = options.steps;
    if (options.epochs) max_steps = std::min(max_steps, options.epochs * steps_per_epoch);
    return max_steps;
}

void TrainOptions::validate(const ModelSpec& spec) const {
    if (!(std::isfinite(lr) && lr > 0.0f)) throw Error("learning rate " + std::to_string(lr) + " must be positive and finite");
    const std::size_t n_layers = spec.n_weight_layers();
    if (lambdas.size() != 1 && lambdas.size() != n_layers)
        throw Error("got " + std::to_string(lambdas.size()) + " lambda values: give one, or one per weight layer (" +
                    std::to_string(n_layers) + ")");
    for (float l : lambdas)
        if (!(std::isfinite(l) && l >= 0.0f)) throw Error("lambda " + std::to_string(l) + " must be finite and >= 0");
    if (epochs == 0 && steps == 0) throw Error("give a number of epochs or of steps (both are 0)");
    if (!(std::isfinite(weight_decay) && weight_decay >= 0.0f))
        throw Error("weight decay " + std::to_string(weight_decay) + " must be finite and >= 0");
    stop.validate(spec);
    optimizer.validate();
    lr_schedule.validate(lr);
    if (!(std::isfinite(finetune_lr) && finetune_lr >= 0.0f))
        throw Error("fine-tuning learning rate " + std::to_string(finetune_lr) + " must be finite and >= 0");
    validate_method();
}

void TrainOptions::validate_method() const {
    auto positive = [](float v) { return std::isfinite(v) && v > 0.0f; };
    switch (method.method) {
        case Method::l1: return;
        case Method::l0: {
            const L0Options& o = method.l0;
            if (!positive(o.beta)) throw Error("l0: beta " + std::to_string(o.beta) + " must be positive and finite");
            if (!(std::isfinite(o.gamma) && o.gamma < 0.0f))
                throw Error("l0: gamma " + std::to_string(o.gamma) + " must be negative (the stretch interval starts below 0)");
            if (!(std::isfinite(o.zeta) && o.zeta > 1.0f))
                throw Error("l0: zeta " + std::to_string(o.zeta) + " must be above 1 (the stretch interval ends above 1)");
            for (float p : {o.drop_init, o.drop_init_first})
                if (!(p > 0.0f && p < 1.0f)) throw Error("l0: initial drop rate " + std::to_string(p) + " must lie in (0, 1)");
            if (!positive(o.gate_lr)) throw Error("l0: gate learning rate " + std::to_string(o.gate_lr) + " must be positive and finite");
            return;
        }
        case Method::spred:
            if (!(std::isfinite(method.spred.threshold) && method.spred.threshold >= 0.0f))
                throw Error("spred: read-out threshold " + std::to_string(method.spred.threshold) + " must be finite and >= 0");
            return;
        case Method::gmp: {
            const GmpOptions& g = method.gmp;
            if (!stop.enabled())
                throw Error("gmp needs a target NNZ (the pruning schedule's end point): give a total or per-layer target");
            if (!(g.begin >= 0.0 && g.begin < g.end && g.end <= 1.0))
                throw Error("gmp: schedule begin " + std::to_string(g.begin) + " and end " + std::to_string(g.end) +
                            " must satisfy 0 <= begin < end <= 1 (fractions of the step budget)");
            if (stop.targets.size() > 1 && stop.min_layers != 0 && stop.min_layers != stop.targets.size())
                throw Error("gmp prunes every layer to its target: min_layers does not apply");
            return;
        }
    }
}

Loss resolve_loss(std::optional<Loss> loss, const Dataset& data) {
    const Loss l = loss ? *loss : default_loss(data.task);
    if (l == Loss::mse && data.task != Task::regression)
        throw Error("MSE loss needs a regression data set; '" + data.name + "' is a classification set");
    if (l == Loss::cross_entropy && data.task != Task::classification)
        throw Error("cross-entropy loss needs a classification data set; '" + data.name + "' is a regression set");
    return l;
}

void check_fits(const ModelSpec& spec, const Dataset& data) {
    if (data.n_features != spec.n_inputs)
        throw Error("data set '" + data.name + "' has " + std::to_string(data.n_features) + " features but model " +
                    spec.to_short() + " expects " + std::to_string(spec.n_inputs) + " inputs");
    if (data.n_outputs != spec.n_outputs())
        throw Error("data set '" + data.name + "' has " + std::to_string(data.n_outputs) +
                    (data.task == Task::classification ? " classes" : " targets") + " but model " + spec.to_short() +
                    " has " + std::to_string(spec.n_outputs()) + " outputs");
    if (data.n_samples == 0) throw Error("data set '" + data.name + "' is empty");
}

namespace {

// Fisher-Yates with our own bounded draw: std::shuffle's result differs between standard
// libraries, and the same seed must give the same batches everywhere.
void shuffle(std::vector<std::uint32_t>& v, std::mt19937_64& rng) {
    for (std::size_t i = v.size(); i > 1; --i) {
        const std::size_t j = static_cast<std::size_t>(rng() % i);
        std::swap(v[i - 1], v[j]);
    }
}

using Clock = std::chrono::steady_clock;

// Epochs holding at least one of `applied` steps.
std::size_t epochs_holding(std::size_t applied, std::size_t steps_per_epoch) {
    return (applied + steps_per_epoch - 1) / steps_per_epoch;
}
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The learning rate in force, as a divergence message quotes it.
float engine_lr_for_message(const TrainOptions& o, bool finetuning) {
    return finetuning && o.finetune_lr > 0.0f ? o.finetune_lr : o.lr;
}

}  // namespace

TrainResult train(const Model& init, const Dataset& train_set, const Dataset* test_set, const TrainOptions& options) {
    const ModelSpec& spec = init.spec();
    options.validate(spec);
    check_fits(spec, train_set);
    if (test_set) check_fits(spec, *test_set);
    auto engine = make_engine(options.device, spec, resolve_loss(options.loss, train_set));
    engine->set_collective(options.communicator.collective());
    return run_training(*engine, spec, init.slab(), train_set, test_set, options);
}

TrainResult run_training(Engine& engine, const ModelSpec& spec, const std::vector<float>& init_slab,
                         const Dataset& train_set, const Dataset* test_set, const TrainOptions& options,
                         const RunControl* control) {
    const auto t_start = Clock::now();
    options.validate(spec);
    const std::size_t n_layers = spec.n_weight_layers();
    std::vector<float> lambdas =
        options.lambdas.size() == 1 ? std::vector<float>(n_layers, options.lambdas[0]) : options.lambdas;

    const std::size_t n = train_set.n_samples;
    const std::size_t batch = options.batch_size == 0 ? n : std::min(options.batch_size, n);
    const std::size_t steps_per_epoch = (n + batch - 1) / batch;
    const std::size_t max_steps = step_budget(options, n);

    // gmp reaches its targets by the schedule and trains the whole budget: no early stop.
    const bool gmp = options.method.method == Method::gmp;
    engine.set_method(sparsify::make_method_config(options, max_steps));
    engine.set_optimizer(options.optimizer);
    engine.set_params(init_slab);
    engine.set_hyper(options.lr, lambdas);
    engine.set_weight_decay(options.weight_decay);
    engine.set_stop_rule(gmp ? StopRule{} : options.stop);
    engine.set_train_data(train_set);

    TrainResult result;
    result.device = engine.device_name();
    result.lambdas = lambdas;

    // Poll often enough to stop soon after the band is hit, rarely enough that the device
    // queue stays full (each poll is one small device-to-host copy and a synchronization).
    std::size_t poll_every = options.record_nnz_history ? 1 : 32;
    if (control && control->poll_every > 0 && !options.record_nnz_history) poll_every = control->poll_every;
    std::mt19937_64 rng(options.seed ^ 0x9E3779B97F4A7C15ull);
    std::vector<std::uint32_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<std::uint32_t>(i);

    std::size_t step = 0, epoch = 0;
    std::size_t step_offset = 0;  // applied steps before the fine-tuning phase (progress lines)
    // The learning-rate schedule: step t of the budget (fine-tuning included) runs at lr_at(t),
    // the fine-tuning phase's curve scaled by its own rate. A constant schedule never touches
    // the rate set_hyper gave.
    const bool scheduled = !options.lr_schedule.is_constant();
    float phase_lr = options.lr;
    auto lr_for = [&](std::size_t t) {
        const float lr = options.lr_schedule.lr_at(options.lr, t, max_steps);
        if (phase_lr == options.lr) return lr;
        return static_cast<float>(static_cast<double>(lr) * static_cast<double>(phase_lr) / static_cast<double>(options.lr));
    };
    bool stopped = false;
    std::optional<std::vector<float>> landed;  // parameters a RunControl ended the run with
    bool was_landed = false;                   // (then fine-tuned even when they miss the band)
    auto t_report = Clock::now();
    double report_loss_sum = 0.0;
    std::size_t report_loss_count = 0, report_samples = 0, samples = 0;
    EngineStatus st;
    auto report = [&](bool force) {
        const double since = seconds_since(t_report);
        if (!options.on_progress || (!force && (options.progress_seconds <= 0 || since < options.progress_seconds)))
            return;
        Progress p;
        p.epoch = epoch;
        p.step = step_offset + st.steps_run;
        p.loss = report_loss_count ? report_loss_sum / static_cast<double>(report_loss_count)
                                   : std::numeric_limits<double>::quiet_NaN();
        p.nnz = st.nnz;
        p.samples_per_second = since > 0 ? static_cast<double>(samples - report_samples) / since : 0.0;
        p.seconds = seconds_since(t_start);
        options.on_progress(p);
        t_report = Clock::now();
        report_loss_sum = 0.0;
        report_loss_count = 0;
        report_samples = samples;
    };
    std::size_t polled_steps = 0;  // applied steps at the previous poll (divergence check)
    auto poll = [&]() {
        st = engine.status();
        // Divergence: a NaN or infinite mini-batch loss among the steps since the last poll ends
        // the run (its parameters are no longer numbers).
        if (st.loss_count > 0 && !std::isfinite(st.loss_sum)) {
            const std::size_t first = step_offset + polled_steps + 1, last = step_offset + st.steps_run;
            std::ostringstream msg;
            msg << "training diverged: the loss became " << (std::isnan(st.loss_sum) ? "NaN" : "infinite")
                << (first == last ? " at step " + std::to_string(last)
                                  : " between steps " + std::to_string(first) + " and " + std::to_string(last))
                << " (learning rate " << engine_lr_for_message(options, step_offset > 0) << ")";
            throw DivergedError(msg.str(), first, last);
        }
        polled_steps = st.steps_run;
        report_loss_sum += st.loss_sum;
        report_loss_count += st.loss_count;
        if (options.record_nnz_history) result.nnz_history.push_back(st.nnz);
        stopped = st.stopped;
    };

    // Steps until `limit` enqueued steps, a stop in the band or a stop request; `control` only
    // in the main phase.
    bool interrupted = false;
    const bool distributed = options.communicator.distributed();
    auto run_steps = [&](std::size_t limit, const RunControl* ctl) {
        while (step < limit && !stopped && !landed && !interrupted) {
            ++epoch;
            if (batch < n) shuffle(order, rng);
            engine.set_order(order);
            for (std::size_t first = 0; first < n && step < limit; first += batch) {
                // One process: a relaxed load per step. Data-parallel: at the polls, where the
                // request of any rank reaches all of them (EngineStatus::stop_requested).
                if (!distributed && stop_requested()) {
                    interrupted = true;
                    break;
                }
                const std::size_t count = std::min(batch, n - first);
                if (scheduled) engine.set_lr(lr_for(step_offset + step));
                engine.step(first, count);
                ++step;
                samples += count;
                if (step % poll_every == 0) {
                    poll();
                    if (distributed && st.stop_requested) {
                        interrupted = true;
                        break;
                    }
                    if (stopped) break;
                    report(false);
                    if (ctl && ctl->on_poll) {
                        landed = ctl->on_poll(engine, st);
                        if (landed) break;
                    }
                }
            }
        }
        if (!landed && (step % poll_every != 0 || step == 0)) poll();
    };
    run_steps(max_steps, control);
    std::size_t applied = st.steps_run;
    result.stopped_in_band = st.stopped;
    if (gmp) result.stopped_in_band = options.stop.holds(st.nnz);  // the schedule's end point
    if (landed) {
        // The control ended the run with its own parameters: the engine holds them from here on.
        engine.set_params(*landed);
        Model m(spec);
        m.slab() = *landed;
        st.nnz = m.nnz();
        const StopRule& band = options.stop.enabled() || !control ? options.stop : control->landing_band;
        st.stopped = band.holds(st.nnz);
        result.stopped_in_band = st.stopped;
        landed.reset();  // the fine-tuning phase below runs on its own
        was_landed = true;
    }

    // Fine-tuning: the rest of the budget with the sparsity pattern of the in-band step fixed
    // (masked steps of the run's optimizer, no penalty: gmp's machinery without a schedule).
    result.interrupted = interrupted;
    if (options.finetune && (st.stopped || was_landed) && applied < max_steps && !interrupted) {
        std::vector<float> at_stop = engine.get_params();
        // The lazy form's kept weights start from their accumulated values (a landing's
        // parameters were set from them already: there z is the parameters).
        if (options.method.method == Method::l1 && options.method.l1.form == L1Form::lazy)
            at_stop = lazy_refit(std::move(at_stop), engine.get_accumulated(), ParamLayout::of(spec));
        sparsify::MethodConfig fixed;
        fixed.method = Method::gmp;  // no targets: no pruning events, the mask stays as it is
        engine.set_method(fixed);
        engine.set_params(at_stop);
        phase_lr = options.finetune_lr > 0.0f ? options.finetune_lr : options.lr;
        engine.set_hyper(phase_lr, std::vector<float>(n_layers, 0.0f));
        engine.set_stop_rule(StopRule{});
        step = 0;
        stopped = false;
        polled_steps = 0;
        epoch = 0;  // the fine-tuning epochs are counted from here
        const std::size_t before = epochs_holding(applied, steps_per_epoch);
        step_offset = applied;
        run_steps(max_steps - applied, nullptr);
        result.interrupted = interrupted;
        result.finetune_steps = st.steps_run;
        applied += st.steps_run;
        epoch = before + epoch;
    }
    const double train_seconds = seconds_since(t_start);
    report(options.progress_seconds > 0);

    result.steps = applied;
    // Epochs that hold an applied step (the host may have queued frozen steps past the stop).
    result.epochs_started = std::min(epoch, epochs_holding(result.steps, steps_per_epoch));
    result.model = Model(spec);
    result.model.slab() = engine.get_params();
    result.nnz = result.model.nnz();
    result.alive = result.model.alive_units();
    result.method = options.method.method;
    const std::size_t applied_samples =
        std::min(samples, result.steps * batch);  // rows whose step was applied
    result.samples_per_second = train_seconds > 0 ? static_cast<double>(applied_samples) / train_seconds : 0.0;
    result.train_eval = engine.evaluate(train_set, options.eval_batch);
    if (test_set) result.test_eval = engine.evaluate(*test_set, options.eval_batch);
    else result.test_eval.loss = std::numeric_limits<double>::quiet_NaN();
    result.wall_seconds = seconds_since(t_start);
    return result;
}

Evaluation evaluate(const Model& model, const Dataset& data, const Device& device, std::optional<Loss> loss) {
    check_fits(model.spec(), data);
    auto engine = make_engine(device, model.spec(), resolve_loss(loss, data));
    engine->set_method(sparsify::MethodConfig{});
    engine->set_params(model.slab());
    return engine->evaluate(data, 4096);
}

std::vector<float> loss_gradient(const Model& model, const Dataset& data, const Device& device,
                                 std::optional<Loss> loss) {
    check_fits(model.spec(), data);
    auto engine = make_engine(device, model.spec(), resolve_loss(loss, data));
    engine->set_method(sparsify::MethodConfig{});
    engine->set_params(model.slab());
    return engine->gradient(data, 4096);
}

std::vector<float> Model::predict(const Dataset& data, const Device& device) const {
    const Loss loss = data.task == Task::classification && spec_.n_outputs() >= 2 ? Loss::cross_entropy : Loss::mse;
    auto engine = make_engine(device, spec_, loss);
    engine->set_method(sparsify::MethodConfig{});
    engine->set_params(slab_);
    return engine->predict(data, 4096);
}

std::vector<float> Model::predict(const std::vector<float>& x, const Device& device) const {
    const std::size_t width = spec_.n_inputs;
    if (width == 0 || x.size() % width != 0)
        throw Error("predict: " + std::to_string(x.size()) + " input values are not whole rows of " +
                    std::to_string(width) + " features");
    Dataset d;
    d.name = "predict input";
    d.n_samples = x.size() / width;
    d.n_features = width;
    d.n_outputs = spec_.n_outputs();
    d.x = x;
    return predict(d, device);
}

}  // namespace sparseprox
