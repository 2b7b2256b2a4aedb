#include "cli/train_command.h"

#include <cmath>
#include <cstdlib>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "cli/options.h"
#include "sparseprox/files.h"
#include "sparseprox/stop.h"

namespace sparseprox {
namespace cli {

void add_train_flags(CLI::App& app, TrainFlags& f, bool with_lambda) {
    app.add_option("--data", f.data, "mackey-glass (embedded), libsvm:PATH or idx:DIR")->capture_default_str();
    app.add_option("--model", f.model,
                   "a preset (cnn8, lenet5, lenet300100), dense:6-128-128-64-1[:activation] or a JSON model file "
                   "(default: dense:6-128-128-64-1 for regression, dense:784-300-100-10 for images)");
    app.add_option("--device", f.device,
                   "cpu, cuda, cuda:N or auto (on CUDA, SPARSEPROX_CUDA_GRAPHS=1 in the environment replays "
                   "each qualifying step as a recorded CUDA graph: experimental)")->capture_default_str();
    app.add_option("--threads", f.threads,
                   "CPU threads: a count, or auto (the physical cores available, fewer while that is faster; "
                   "overrides SPARSEPROX_NUM_THREADS)")
        ->capture_default_str();
    app.add_option("--lr", f.lr, "learning rate eta")->capture_default_str();
    if (with_lambda)
        app.add_option("--lambda", f.lambda, "penalty strength (l1: the l1 weight; l0: the expected-L0 weight; spred: the weight decay; gmp: "
                       "unused): one value, or one per weight layer separated by commas")
            ->capture_default_str();
    app.add_option("--weight-decay", f.weight_decay, "l2 weight decay on the weights (the l2 baseline; 0: off)")
        ->capture_default_str();
    app.add_option("--batch", f.batch, "mini-batch size or 'full' (default: full for regression, 128 otherwise)");
    app.add_option("--epochs", f.epochs, "epochs per run (default 5 for classification)")->check(whole_number(true));
    app.add_option("--steps", f.steps, "steps per run (default 5000 for regression)")->check(whole_number(true));
    app.add_option("--seed", f.seed, "seed of the initialization and the batch order")
        ->check(whole_number(false))
        ->capture_default_str();
    app.add_option("--target-nnz", f.target_nnz,
                   "stop at the first step in the band: a total NNZ, or one count per weight layer");
    app.add_option("--tolerance", f.tolerance, "band half-width rho, relative to the target")->capture_default_str();
    app.add_option("--min-layers", f.min_layers, "per-layer targets: layers that must be in band (0: all)")
        ->check(whole_number(false))
        ->capture_default_str();
    app.add_option("--report", f.report, "write a JSON report to this file");
    app.add_option("--save", f.save, "save the trained model (safetensors) to this file");
    app.add_option("--loss", f.loss, "mse or cross_entropy (default: from the data set)");
    app.add_option("--test-data", f.test_data,
                   "a separate test set, same forms as --data (libsvm:PATH: the whole file; idx:DIR: its t10k files); "
                   "--data then trains whole");
    app.add_option("--test-fraction", f.test_fraction,
                   "libsvm: the last fraction of the rows form the test set (0: none)")
        ->check(fraction())
        ->capture_default_str();
    app.add_option("--test-rows", f.test_rows, "libsvm: the last N rows form the test set")->check(whole_number(true));
    app.add_option("--train-rows", f.train_rows,
                   "libsvm: the first N rows form the training set, the rest the test set (the paper's mg_scale "
                   "split: 1000)")
        ->check(whole_number(true));
    app.add_flag("--no-test", f.no_test, "no test set: libsvm files train on every row; test figures are null");
    app.add_option("--pixel-scale", f.pixel_scale, "idx: symmetric ([-1,1]), unit ([0,1]) or raw")
        ->capture_default_str();
    app.add_option("--progress-seconds", f.progress_seconds, "seconds between progress lines (0: none)")
        ->check(finite_non_negative())
        ->capture_default_str();
    app.add_flag("--quiet,-q", f.quiet, "print only the summary");
    app.add_option("--comm-timeout", f.comm_timeout,
                   "under mpirun: seconds one collective may wait before the ranks that did not answer are named "
                   "and the job ends")
        ->check(finite_non_negative())
        ->capture_default_str();
    app.add_flag("--finetune", f.finetune,
                 "after an early stop in the band, train the rest of the budget with the sparsity pattern fixed "
                 "(masked SGD, no penalty)");
    app.add_option("--finetune-lr", f.finetune_lr,
                   "learning rate of the fine-tuning phase (0: --lr); spred's --lr is meant for its factors, "
                   "the fine-tuning trains plain weights")
        ->capture_default_str();
    app.add_option("--optimizer", f.optimizer,
                   "sgd (the paper's), momentum, nesterov, adam or adamw; with l1 the soft-threshold follows "
                   "the optimizer's step with that step's per-coordinate size")
        ->capture_default_str();
    app.add_option("--momentum", f.momentum, "momentum, nesterov: the momentum mu, in [0, 1)")->capture_default_str();
    app.add_option("--beta1", f.beta1, "adam, adamw: the first moment's decay, in [0, 1)")->capture_default_str();
    app.add_option("--beta2", f.beta2, "adam, adamw: the second moment's decay, in [0, 1)")->capture_default_str();
    app.add_option("--adam-eps", f.adam_eps, "adam, adamw: epsilon, > 0")->capture_default_str();
    app.add_option("--lr-schedule", f.lr_schedule,
                   "constant, step (times --lr-gamma every --lr-step-every steps) or cosine (to --lr-min at the "
                   "end of the step budget)")
        ->capture_default_str();
    app.add_option("--lr-step-every", f.lr_step_every, "step schedule: steps between decays")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--lr-gamma", f.lr_gamma, "step schedule: the decay factor, in (0, 1]")->capture_default_str();
    app.add_option("--lr-min", f.lr_min, "cosine schedule: the rate at the end of the budget, in [0, --lr]")
        ->capture_default_str();
    app.add_option("--warmup-steps", f.warmup_steps,
                   "linear warm-up of the rate over the first steps (any schedule; 0: none)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--init", f.init,
                   "start from this safetensors model (same architecture) instead of the seeded initialization");
    app.add_option("--method", f.method,
                   "sparsifier: l1 (proximal, the default), l0 (hard-concrete gates), spred (w = u*v with weight "
                   "decay) or gmp (gradual magnitude pruning to --target-nnz)")
        ->capture_default_str();
    app.add_option("--l1-form", f.l1_form,
                   "l1: greedy (proximal SGD: the weights shrink by lr*lambda every step, the paper's), lazy "
                   "(the steps accumulate in a dense copy z and the weights are its soft-threshold at lr*lambda: "
                   "dual averaging / FTRL-proximal) or auto (lazy for search's adaptive strategy with one "
                   "total target, greedy otherwise)")
        ->capture_default_str();
    app.add_flag("--l0-group", f.l0_group,
                 "l0: one gate per input neuron of dense layers and per output filter of conv layers "
                 "(default: one gate per weight)");
    app.add_option("--l0-gate-lr", f.l0_gate_lr, "l0: Adam step size of the gate parameters log alpha")
        ->capture_default_str();
    app.add_option("--l0-drop-init", f.l0_drop_init, "l0: initial drop rate p of the gates (log alpha = log((1-p)/p))")
        ->capture_default_str();
    app.add_option("--l0-drop-init-first", f.l0_drop_init_first, "l0: initial drop rate of the first layer's gates")
        ->capture_default_str();
    app.add_option("--spred-threshold", f.spred_threshold,
                   "spred: weights with |u*v| at or below this read out as exact zeros")
        ->capture_default_str();
    app.add_option("--gmp-begin", f.gmp_begin, "gmp: pruning starts at this fraction of the step budget")
        ->capture_default_str();
    app.add_option("--gmp-end", f.gmp_end, "gmp: the target is reached at this fraction of the step budget")
        ->capture_default_str();
    app.add_option("--gmp-interval", f.gmp_interval, "gmp: steps between pruning events (0: 1/50 of the ramp)")
        ->check(whole_number(false))
        ->capture_default_str();
    app.add_flag("--gmp-per-layer", f.gmp_per_layer,
                 "gmp with one total target: prune every layer to the same density (default: global magnitude)");
}

std::string join(const std::vector<std::size_t>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
    return s;
}

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json float_json(float v) { return number_or_null(shortest_decimal(v)); }

nlohmann::json preparation_json(const DataPreparation& prep) {
    ModelInfo info;
    info.data = prep;
    return nlohmann::json::parse(to_metadata(info).at("data"));
}

nlohmann::json optimizer_report(const OptimizerOptions& o) {
    nlohmann::json j{{"kind", optimizer_name(o.kind)}};
    switch (o.kind) {
        case OptimizerKind::sgd: break;
        case OptimizerKind::momentum:
        case OptimizerKind::nesterov: j["momentum"] = float_json(o.momentum); break;
        case OptimizerKind::adam:
        case OptimizerKind::adamw:
            j["beta1"] = float_json(o.beta1);
            j["beta2"] = float_json(o.beta2);
            j["eps"] = float_json(o.eps);
            break;
    }
    return j;
}

void record_given_flags(const CLI::App& cmd, std::set<std::string>& given) {
    for (const CLI::Option* o : cmd.get_options())
        if (o->count() > 0) given.insert(o->get_name());
}

void refuse_unless(const TrainFlags& f, const char* flag, bool applies, const std::string& why) {
    if (f.has(flag) && !applies) throw Error(std::string(flag) + " does not apply here: it " + why);
}

void check_band_flags(const TrainFlags& f, const StopRule& stop) {
    refuse_unless(f, "--min-layers", stop.targets.size() > 1 || f.min_layers == 0,
                  "counts the layers in band for per-layer targets (one --target-nnz count per weight layer), and "
                  "this run has " + std::string(stop.targets.empty() ? "no target" : "one total target"));
    refuse_unless(f, "--tolerance", stop.enabled(), "is the band's half-width, and this run has no --target-nnz");
}

void check_model_fits_data(const TrainFlags& f, const ModelSpec& spec, const Dataset& data) {
    const std::string model = excerpt(f.model.empty() ? spec.to_short() : f.model, 160);
    if (spec.n_inputs != data.n_features)
        throw Error("--model " + model + " takes " + std::to_string(spec.n_inputs) + " inputs but --data " + f.data +
                    " has " + std::to_string(data.n_features) + " features");
    if (spec.n_outputs() != data.n_outputs)
        throw Error("--model " + model + " has " + std::to_string(spec.n_outputs()) + " outputs but --data " + f.data +
                    " has " + std::to_string(data.n_outputs) +
                    (data.task == Task::classification ? " classes" : " targets"));
}

PixelScale pixel_scale_for(const std::string& what, const std::optional<DataPreparation>& recorded,
                           const std::string* given) {
    PixelScale asked = PixelScale::symmetric;
    if (given) {
        try {
            asked = parse_pixel_scale(*given);
        } catch (const Error& e) {
            throw Error(std::string("--pixel-scale: ") + e.what());
        }
    }
    if (!recorded || recorded->source_kind() != "idx") return asked;
    const PixelScale scale = recorded->options.pixel_scale;
    if (!given) {
        if (scale != PixelScale::symmetric)
            std::fprintf(stderr, "sparseprox: note: %s was trained on pixels scaled '%s' (%s); the data are scaled the same\n",
                         what.c_str(), to_string(scale), recorded->feature_scaling.c_str());
        return scale;
    }
    if (asked != scale)
        std::fprintf(stderr, "sparseprox: warning: %s was trained on pixels scaled '%s', and --pixel-scale asks for '%s'\n",
                     what.c_str(), to_string(scale), to_string(asked));
    return asked;
}

RunSetup prepare_run(const TrainFlags& f, bool with_lambda) {
    RunSetup s;
    DataOptions dopt;
    const bool libsvm = f.data.rfind("libsvm:", 0) == 0;
    const int split_flags = f.has("--train-rows") + f.has("--test-rows") + f.has("--test-fraction");
    if (split_flags > 1)
        throw Error("--train-rows, --test-rows and --test-fraction each state the split: give one");
    for (const char* flag : {"--train-rows", "--test-rows", "--test-fraction"}) {
        refuse_unless(f, flag, libsvm, "splits a libsvm:PATH data file, and --data is " + f.data);
        refuse_unless(f, flag, !f.no_test, "states a test set, and --no-test asks for none");
        refuse_unless(f, flag, f.test_data.empty(), "splits --data, and --test-data gives the test set");
    }
    if (f.no_test && !f.test_data.empty()) throw Error("--no-test and --test-data: choose one");
    dopt.libsvm_train_rows = f.train_rows;
    dopt.libsvm_test_rows = f.test_rows;
    dopt.libsvm_test_fraction = f.test_fraction;
    dopt.no_test = f.no_test;
    dopt.test_source = f.test_data;
    try {
        dopt.pixel_scale = parse_pixel_scale(f.pixel_scale);
    } catch (const Error& e) {
        throw Error(std::string("--pixel-scale: ") + e.what());
    }
    s.device = parse_device(f.device);
    // Under mpirun, one GPU per rank: `cuda` and `auto` (no index given) take the rank's GPU on
    // its node (the launcher's local rank, modulo the GPUs there).
    if (world().distributed() && s.device.kind == DeviceKind::cuda && f.device.find(':') == std::string::npos) {
        int local = world().rank();
        for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
            if (const char* v = std::getenv(name); v && *v) {
                local = std::atoi(v);
                break;
            }
        const int n_gpus = cuda_device_count();
        if (n_gpus > 0) s.device = parse_device("cuda:" + std::to_string(local % n_gpus));
    }
    if (f.threads != "auto") {
        if (f.threads.empty() || f.threads.size() > 6 || f.threads.find_first_not_of("0123456789") != std::string::npos ||
            std::stoi(f.threads) < 1)
            throw Error("--threads: '" + f.threads + "' is not a thread count (a whole number >= 1, or auto)");
        set_num_threads(std::stoi(f.threads));
    }
    if (!(f.tolerance >= 0 && f.tolerance < 1)) throw Error("--tolerance: " + std::to_string(f.tolerance) + " is outside [0, 1)");
    if (!(std::isfinite(f.weight_decay) && f.weight_decay >= 0))
        throw Error("--weight-decay: " + std::to_string(f.weight_decay) + " must be finite and >= 0");

    const Method method = parse_method(f.method);
    refuse_unless(f, "--l1-form", method == Method::l1, "is an option of --method l1");
    const L1Form l1_form = parse_l1_form(f.l1_form);
    refuse_unless(f, "--l0-group", method == Method::l0, "is an option of --method l0");
    refuse_unless(f, "--l0-gate-lr", method == Method::l0, "is an option of --method l0");
    refuse_unless(f, "--l0-drop-init", method == Method::l0, "is an option of --method l0");
    refuse_unless(f, "--l0-drop-init-first", method == Method::l0, "is an option of --method l0");
    refuse_unless(f, "--spred-threshold", method == Method::spred, "is an option of --method spred");
    refuse_unless(f, "--gmp-begin", method == Method::gmp, "is an option of --method gmp");
    refuse_unless(f, "--gmp-end", method == Method::gmp, "is an option of --method gmp");
    refuse_unless(f, "--gmp-interval", method == Method::gmp, "is an option of --method gmp");
    refuse_unless(f, "--gmp-per-layer", method == Method::gmp, "is an option of --method gmp");
    refuse_unless(f, "--finetune-lr", f.finetune, "is the learning rate of --finetune");
    refuse_unless(f, "--pixel-scale", f.data.rfind("idx:", 0) == 0, "scales the pixels of idx:DIR data");

    // --init: the file's architecture, parameters and record of how its data were prepared.
    // load_model checks the file's tensors against its architecture before allocating.
    std::optional<Model> loaded;
    std::map<std::string, std::string> meta;
    if (!f.init.empty()) {
        loaded = or_out_of_memory("loading --init " + f.init, [&] { return load_model(f.init, &meta); });
        s.init_info = read_model_info(meta, f.init);
        if (f.data.rfind("idx:", 0) == 0)
            dopt.pixel_scale = pixel_scale_for("--init " + f.init, s.init_info.data,
                                               f.has("--pixel-scale") ? &f.pixel_scale : nullptr);
    }

    s.data = or_out_of_memory("loading --data " + f.data, [&] { return load_data(f.data, dopt); });
    // A compacted --init model reads some of the data's columns (sparseprox/inference.h).
    std::vector<std::size_t> columns;
    std::size_t from = 0;
    if (loaded && read_input_columns(meta, f.init, loaded->spec().n_inputs, columns, from) &&
        s.data.train.n_features == from) {
        for (Dataset* d : {&s.data.train, &s.data.test}) {
            d->x = select_columns(d->x.data(), d->n_samples, from, columns);
            d->n_features = columns.size();
        }
        s.input_columns = meta.at("input_columns");
    }
    s.classification = s.data.train.task == Task::classification;
    std::string model_text = f.model;
    if (model_text.empty() && loaded) {
        s.spec = loaded->spec();
    } else {
        if (model_text.empty())
            model_text = s.classification ? "dense:" + std::to_string(s.data.train.n_features) + "-300-100-" +
                                                std::to_string(s.data.train.n_outputs)
                                          : "dense:" + std::to_string(s.data.train.n_features) + "-128-128-64-" +
                                                std::to_string(s.data.train.n_outputs);
        s.spec = ModelSpec::parse(model_text);
    }
    s.prep = DataPreparation::of(f.data, dopt, s.data.train.task, s.data.train.n_outputs, s.spec.input_shape);
    // The model against the data before anything the size of the model is allocated.
    check_model_fits_data(f, s.spec, s.data.train);

    TrainOptions& opt = s.options;
    opt.device = s.device;
    opt.lr = f.lr;
    if (with_lambda) opt.lambdas = parse_float_list("--lambda", f.lambda);
    opt.weight_decay = f.weight_decay;
    opt.batch_size = f.batch.empty() ? (s.classification ? 128 : 0) : parse_batch(f.batch);
    // An explicit batch larger than the data would silently be the full batch.
    if (!f.batch.empty() && opt.batch_size > s.data.train.n_samples)
        throw Error("--batch " + f.batch + " is larger than the " + std::to_string(s.data.train.n_samples) +
                    " training rows of --data " + f.data + " (give at most that many, or --batch full)");
    opt.epochs = f.epochs;
    opt.steps = f.steps;
    if (opt.epochs == 0 && opt.steps == 0) {
        if (s.classification) opt.epochs = 5;
        else opt.steps = 5000;
    }
    opt.seed = f.seed;
    MethodOptions& m = opt.method;
    m.method = method;
    m.l1.form = l1_form;
    m.l0.group = f.l0_group;
    m.l0.gate_lr = f.l0_gate_lr;
    m.l0.drop_init = f.l0_drop_init;
    m.l0.drop_init_first = f.l0_drop_init_first;
    m.spred.threshold = f.spred_threshold;
    m.gmp.begin = f.gmp_begin;
    m.gmp.end = f.gmp_end;
    m.gmp.interval = f.gmp_interval;
    m.gmp.per_layer = f.gmp_per_layer;
    if (!f.target_nnz.empty()) opt.stop.targets = parse_count_list("--target-nnz", f.target_nnz);
    opt.stop.tolerance = f.tolerance;
    OptimizerOptions& o = opt.optimizer;
    o.kind = parse_optimizer(f.optimizer);
    o.momentum = f.momentum;
    o.beta1 = f.beta1;
    o.beta2 = f.beta2;
    o.eps = f.adam_eps;
    LrSchedule& ls = opt.lr_schedule;
    ls.kind = parse_lr_schedule(f.lr_schedule);
    ls.step_every = f.lr_step_every;
    ls.gamma = f.lr_gamma;
    ls.lr_min = f.lr_min;
    ls.warmup_steps = f.warmup_steps;
    if (ls.kind != LrScheduleKind::step && f.lr_step_every != 0)
        throw Error("--lr-step-every " + std::to_string(f.lr_step_every) + " belongs to --lr-schedule step (the schedule is " +
                    f.lr_schedule + ")");
    opt.finetune = f.finetune;
    opt.finetune_lr = f.finetune_lr;
    opt.stop.min_layers = f.min_layers;
    if (!f.loss.empty()) {
        opt.loss = parse_loss(f.loss);
    } else if (s.init_info.loss && s.init_info.data && s.init_info.data->task == s.data.train.task) {
        opt.loss = s.init_info.loss;  // the loss the --init model was trained with
    }
    opt.progress_seconds = f.quiet ? 0.0 : f.progress_seconds;
    opt.communicator = world();
    if (f.has("--comm-timeout")) {
        if (!opt.communicator.distributed())
            throw Error("--comm-timeout applies under mpirun (this is one process)");
        try {
            opt.communicator.set_timeout(f.comm_timeout);
        } catch (const Error& e) {
            throw Error(std::string("--comm-timeout: ") + e.what());
        }
    }
    const std::size_t n_weights = s.spec.n_weights();
    opt.on_progress = [n_weights](const Progress& p) {
        std::size_t total = 0;
        for (auto n : p.nnz) total += n;
        std::printf("epoch %zu step %zu  loss %.6g  nnz %zu (%.2f%%) [%s]  %.0f samples/s  %.1fs\n", p.epoch, p.step,
                    p.loss, total, 100.0 * static_cast<double>(total) / static_cast<double>(n_weights),
                    join(p.nnz).c_str(), p.samples_per_second, p.seconds);
        std::fflush(stdout);
    };
    const std::string params = "the parameters of model " + s.spec.to_short() + " (" +
                               std::to_string(s.spec.n_weights()) + " weights, " +
                               byte_size(4.0 * static_cast<double>(ParamLayout::of(s.spec).slab_size)) + ")";
    if (f.init.empty()) {
        s.init = or_out_of_memory("allocating " + params, [&] { return Model::initialize(s.spec, f.seed); });
    } else {
        if (loaded->spec().to_short() != s.spec.to_short() || loaded->slab().size() != ParamLayout::of(s.spec).slab_size)
            throw Error("--init: model file '" + f.init + "' holds " + excerpt(loaded->spec().to_short(), 160) +
                        " but the run trains " + excerpt(s.spec.to_short(), 160) +
                        " (leave out --model to train the file's architecture)");
        or_out_of_memory("allocating " + params, [&] {
            s.init = Model(s.spec);  // the run's spec (names, activations) with the file's parameters
            s.init.slab() = std::move(loaded->slab());
        });
    }
    return s;
}

std::string training_what(const RunSetup& s) {
    return "training model " + s.spec.to_short() + " (" + std::to_string(s.spec.n_weights()) + " weights) on " +
           std::to_string(s.data.train.n_samples) + " rows, batch " +
           (s.options.batch_size == 0 ? std::string("full") : std::to_string(s.options.batch_size)) + ", device " +
           describe_device(s.device);
}

void print_summary(const RunSetup& setup, const TrainResult& r) {
    const std::size_t n_weights = setup.spec.n_weights();
    std::printf("\n%-10s %12s %10s %9s %12s\n", "layer", "weights", "nnz", "density", "lambda");
    const auto& segs = r.model.layout().segments;
    for (std::size_t l = 0; l < segs.size(); ++l)
        std::printf("layers.%-3zu %12zu %10zu %8.3f%% %12.4g\n", l, segs[l].n_weights, r.nnz[l],
                    100.0 * static_cast<double>(r.nnz[l]) / static_cast<double>(segs[l].n_weights), r.lambdas[l]);
    const std::size_t nnz_total = r.model.nnz_total();
    std::printf("%-10s %12zu %10zu %8.3f%%\n", "total", n_weights, nnz_total,
                100.0 * static_cast<double>(nnz_total) / static_cast<double>(n_weights));
    const bool gmp = setup.options.method.method == Method::gmp;
    std::printf("steps %zu (%zu epochs started)%s", r.steps, r.epochs_started,
                setup.options.stop.enabled()
                    ? (r.stopped_in_band ? (gmp ? ", target reached" : ", stopped in band")
                                         : (gmp ? ", target NOT reached" : ", band NOT reached"))
                    : "");
    if (r.finetune_steps) std::printf(", of which %zu fine-tuning with the pattern fixed", r.finetune_steps);
    std::printf(", %.2f s, %.0f samples/s\n", r.wall_seconds, r.samples_per_second);
    std::printf("train loss %.6g", r.train_eval.loss);
    if (test_set(setup)) {
        std::printf(", test loss %.6g", r.test_eval.loss);
        if (setup.classification) std::printf(", test accuracy %.2f%%", 100.0 * r.test_eval.accuracy);
    } else {
        std::printf(", no test set");
    }
    std::printf("\n");
}

const Dataset* test_set(const RunSetup& s) { return s.data.test.n_samples > 0 ? &s.data.test : nullptr; }

std::string rows_text(const RunSetup& s) {
    return test_set(s) ? std::to_string(s.data.train.n_samples) + " train / " + std::to_string(s.data.test.n_samples) +
                             " test rows"
                       : std::to_string(s.data.train.n_samples) + " train rows, no test set";
}

nlohmann::json setup_report(const char* command, const TrainFlags& f, const RunSetup& setup) {
    const TrainOptions& opt = setup.options;
    nlohmann::json j;
    j["command"] = command;
    j["version"] = version();
    j["device"] = describe_device(setup.device);
    j["ranks"] = world().size();  // data-parallel (and parallel-search) processes
    if (world().distributed()) j["communicator"] = world().describe();
    j["data"] = f.data;
    j["test_data"] = f.test_data.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.test_data);
    j["train_rows"] = setup.data.train.n_samples;
    j["test_rows"] = setup.data.test.n_samples;
    j["model"] = setup.spec.to_short();
    j["loss"] = to_string(opt.loss.value_or(default_loss(setup.data.train.task)));
    j["data_preparation"] = preparation_json(setup.prep);
    j["lr"] = float_json(f.lr);
    j["weight_decay"] = float_json(opt.weight_decay);
    j["batch"] = opt.batch_size == 0 ? nlohmann::json("full") : nlohmann::json(opt.batch_size);
    j["seed"] = f.seed;
    j["init"] = f.init.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.init);
    j["optimizer"] = optimizer_report(opt.optimizer);
    j["lr_schedule"] = {{"kind", lr_schedule_name(opt.lr_schedule.kind)},
                        {"step_every", opt.lr_schedule.step_every},
                        {"gamma", float_json(opt.lr_schedule.gamma)},
                        {"lr_min", float_json(opt.lr_schedule.lr_min)},
                        {"warmup_steps", opt.lr_schedule.warmup_steps}};
    j["method"] = method_name(opt.method.method);
    switch (opt.method.method) {
        case Method::l1:
            // The form the run used: a train run's auto is the greedy step; search resolves its
            // own (SearchResult::l1_form) before the report is written.
            j["method_options"] = {{"form", to_string(opt.method.l1.form == L1Form::lazy ? L1Form::lazy : L1Form::greedy)}};
            break;
        case Method::l0:
            j["method_options"] = {{"group", opt.method.l0.group},
                                   {"gate_lr", float_json(opt.method.l0.gate_lr)},
                                   {"drop_init", float_json(opt.method.l0.drop_init)},
                                   {"drop_init_first", float_json(opt.method.l0.drop_init_first)},
                                   {"beta", float_json(opt.method.l0.beta)},
                                   {"gamma", float_json(opt.method.l0.gamma)},
                                   {"zeta", float_json(opt.method.l0.zeta)}};
            break;
        case Method::spred: j["method_options"] = {{"threshold", float_json(opt.method.spred.threshold)}}; break;
        case Method::gmp:
            j["method_options"] = {{"begin", opt.method.gmp.begin},
                                   {"end", opt.method.gmp.end},
                                   {"interval", opt.method.gmp.interval},
                                   {"per_layer", opt.method.gmp.per_layer}};
            break;
    }
    j["n_weights_total"] = setup.spec.n_weights();
    j["target_nnz"] = opt.stop.targets;
    j["tolerance"] = opt.stop.tolerance;
    j["min_layers"] = opt.stop.min_layers;
    j["finetune"] = opt.finetune;
    j["finetune_lr"] = float_json(opt.finetune_lr > 0.0f ? opt.finetune_lr : opt.lr);
    return j;
}

nlohmann::json run_report(const char* command, const TrainFlags& f, const RunSetup& setup, const TrainResult& r) {
    const TrainOptions& opt = setup.options;
    const auto& segs = r.model.layout().segments;
    nlohmann::json j = setup_report(command, f, setup);
    j["layers"] = nlohmann::json::array();
    for (std::size_t l = 0; l < segs.size(); ++l)
        j["layers"].push_back({{"name", "layers." + std::to_string(l)},
                               {"shape", segs[l].weight_shape},
                               {"n_weights", segs[l].n_weights},
                               {"nnz", r.nnz[l]},
                               {"alive_units", r.alive.size() > l ? r.alive[l] : 0},
                               {"lambda", float_json(r.lambdas[l])}});
    j["nnz_total"] = r.model.nnz_total();
    j["train_loss"] = number_or_null(r.train_eval.loss);
    j["test_loss"] = number_or_null(r.test_eval.loss);
    j["train_accuracy"] = setup.classification ? number_or_null(r.train_eval.accuracy) : nlohmann::json(nullptr);
    j["test_accuracy"] =
        setup.classification && test_set(setup) ? number_or_null(r.test_eval.accuracy) : nlohmann::json(nullptr);
    j["steps"] = r.steps;
    j["finetune_steps"] = r.finetune_steps;
    j["epochs_started"] = r.epochs_started;
    j["stopped_in_band"] = r.stopped_in_band;
    j["wall_seconds"] = r.wall_seconds;
    j["samples_per_second"] = r.samples_per_second;
    j["diverged"] = false;
    j["interrupted"] = r.interrupted;
    return j;
}

Error diverged_error(const DivergedError& e, const TrainFlags& f, nlohmann::json* report) {
    if (report) {
        (*report)["diverged"] = true;
        (*report)["diverged_step"] = e.last_step();
        (*report)["diverged_first_step"] = e.first_step();
        (*report)["error"] = e.what();
    }
    return Error(std::string(e.what()) + "; try a smaller --lr" +
                 (f.finetune && f.finetune_lr > 0.0f ? " or --finetune-lr" : ""));
}

void save_run(const TrainFlags& f, const RunSetup& setup, const TrainResult& r, const nlohmann::json& report) {
    if (f.save.empty()) return;
    ModelInfo info;
    info.data = setup.prep;
    info.loss = setup.options.loss.value_or(default_loss(setup.data.train.task));
    info.method = method_name(r.method);
    // The run's report without its timings, so that the same run gives the same file.
    nlohmann::json training = report;
    training.erase("wall_seconds");
    training.erase("samples_per_second");
    info.training_json = training.dump();
    std::map<std::string, std::string> meta = to_metadata(info);
    nlohmann::json lambdas = nlohmann::json::array();
    for (float l : r.lambdas) lambdas.push_back(float_json(l));
    meta["lambda"] = lambdas.dump();
    meta["seed"] = std::to_string(f.seed);
    meta["lr"] = float_json(f.lr).dump();
    meta["steps"] = std::to_string(r.steps);
    if (!setup.input_columns.empty()) meta["input_columns"] = setup.input_columns;
    save_model(f.save, r.model, meta);
    std::printf("saved model to %s\n", f.save.c_str());
}

void check_outputs(const TrainFlags& f, const std::vector<std::pair<std::string, std::string>>& extra) {
    std::vector<std::pair<std::string, std::string>> outputs;  // flag, path
    if (f.has("--report")) outputs.emplace_back("--report", f.report);
    if (f.has("--save")) outputs.emplace_back("--save", f.save);
    for (const auto& e : extra) outputs.push_back(e);
    for (std::size_t i = 0; i < outputs.size(); ++i) {
        check_writable(outputs[i].second, outputs[i].first);
        const std::string target = resolve_output_path(outputs[i].second);
        for (std::size_t k = 0; k < i; ++k)
            if (std::filesystem::absolute(resolve_output_path(outputs[k].second)).lexically_normal() ==
                std::filesystem::absolute(target).lexically_normal())
                throw Error(outputs[k].first + " and " + outputs[i].first + " name the same file '" +
                            outputs[i].second + "'");
    }
}

void OutputWriter::attempt(const std::string& flag, const std::function<void()>& write) {
    try {
        write();
    } catch (const Error& e) {
        std::fprintf(stderr, "sparseprox: error: %s\n", e.what());
        errors_[flag] = e.what();
    }
}

void write_report(OutputWriter& out, const std::string& path, nlohmann::json report) {
    if (path.empty()) return;
    if (out.failed()) report["output_errors"] = out.errors();
    out.attempt("--report", [&] {
        write_file_atomic(path, report.dump(2) + "\n");
        std::printf("wrote report %s\n", path.c_str());
    });
}

std::string interrupted_text() {
    const int sig = stop_signal();
    return sig == SIGINT ? "interrupted by SIGINT" : sig == SIGTERM ? "interrupted by SIGTERM" : "interrupted";
}

int interrupted_exit_status() {
    const int sig = stop_signal();
    return 128 + (sig ? sig : SIGINT);
}

namespace {
Communicator g_world;
}  // namespace

void set_world(const Communicator& w) { g_world = w; }
const Communicator& world() { return g_world; }
bool is_root() { return g_world.rank() == 0; }

int run_train(const TrainFlags& f) {
    // SIGINT/SIGTERM: finish the step in progress, write the model so far, exit 130/143.
    install_stop_on_signal();
    check_outputs(f);  // a wrong output path fails now, not after the training
    RunSetup setup = prepare_run(f, true);
    check_band_flags(f, setup.options.stop);
    setup.options.validate(setup.spec);
    std::printf("sparseprox %s: train %s (%s) on %s (%s), %zu weights, device %s\n", version(),
                setup.spec.to_short().c_str(), method_name(setup.options.method.method), f.data.c_str(),
                rows_text(setup).c_str(), setup.spec.n_weights(), describe_device(setup.device).c_str());
    if (world().distributed())
        std::printf("data-parallel over %s: each batch of %zu rows split over the ranks\n", world().describe().c_str(),
                    setup.options.batch_size ? setup.options.batch_size : setup.data.train.n_samples);
    std::fflush(stdout);

    TrainResult r;
    try {
        r = or_out_of_memory(training_what(setup), [&] {
            return train(setup.init, setup.data.train, test_set(setup), setup.options);
        });
    } catch (const DivergedError& e) {
        nlohmann::json j = setup_report("train", f, setup);
        const Error err = diverged_error(e, f, &j);
        OutputWriter out;
        if (is_root()) write_report(out, f.report, j);
        throw err;
    }
    print_summary(setup, r);
    if (r.interrupted) std::printf("train: %s after %zu steps\n", interrupted_text().c_str(), r.steps);
    OutputWriter out;
    const nlohmann::json report = run_report("train", f, setup, r);
    if (is_root()) {  // every rank holds the same model; one writes it
        out.attempt("--save", [&] { save_run(f, setup, r, report); });
        write_report(out, f.report, report);
    }
    // A signal after the training (while writing) also ends with its status: the outputs are whole.
    if (r.interrupted || stop_requested()) return interrupted_exit_status();
    return out.failed() ? 1 : 0;
}

}  // namespace cli
}  // namespace sparseprox
