#include "cli/search_command.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "cli/options.h"
#include "sparseprox/files.h"
#include "sparseprox/stop.h"

namespace sparseprox {
namespace cli {

void add_search_flags(CLI::App& app, SearchFlags& f) {
    add_train_flags(app, f.train, false);
    app.add_option("--target-density", f.target_density,
                   "target as a fraction of the weights: one value, or one per weight layer (instead of --target-nnz)");
    app.add_option("--strategy", f.strategy,
                   "paper (Algorithms 1/2: every run from the initialization), warm (each run from the closest "
                   "dense-side run's weights), adaptive (one run, lambda steered online) or auto (adaptive for "
                   "l1 with one total target, paper otherwise)")
        ->capture_default_str();
    app.add_option("--allocation", f.allocation,
                   "l1, one total target, adaptive strategy: magnitude (each layer steered to its share of the "
                   "largest magnitudes after the warm-up, as global magnitude pruning shares them), uniform "
                   "(one lambda for all layers, the paper's) or auto (uniform under --l1-form lazy, whose one "
                   "threshold over the accumulated weights shares the total by magnitude at every step; "
                   "magnitude under greedy)")
        ->capture_default_str();
    app.add_option("--lambda0", f.lambda0,
                   "starting lambda (too few nonzeros): one value, or one per layer for per-layer targets "
                   "(default: computed from the loss gradient)");
    app.add_option("--start-rows", f.start_rows,
                   "rows of the training data (evenly spaced) whose gradients give the computed lambda0 (0: all "
                   "of them for the paper and warm strategies, at most 4096 for adaptive)")
        ->check(whole_number(false))
        ->capture_default_str();
    app.add_option("--lambda1", f.lambda1, "the second run's lambda (too many nonzeros)")->capture_default_str();
    app.add_option("--max-outer", f.max_outer, "the most training runs (outer iterations), the first two included")
        ->check(whole_number(false))
        ->capture_default_str();
    app.add_option("--adapt-interval", f.adapt_interval, "adaptive: steps between lambda updates (0: 1/100 of the budget)")
        ->check(whole_number(false))
        ->capture_default_str();
    app.add_option("--adapt-rate", f.adapt_rate, "adaptive: gain a of the update rule (0: 0.5 relative, 1 sparsity)")
        ->capture_default_str();
    app.add_option("--adapt-rule", f.adapt_rule,
                   "adaptive: relative (steer the NNZ along a halving approach to the target) or sparsity "
                   "(the rule of docs/method.md §7)")
        ->capture_default_str();
    app.add_option("--adapt-ramp", f.adapt_ramp,
                   "adaptive (relative rule): the step at which the NNZ schedule reaches the target; the "
                   "schedule starts at a sixth of it, the band is armed from it, and a count above the band a "
                   "tenth of the budget later is trimmed to the target (0: three quarters of the step budget under "
                   "the lazy l1 form, half under the greedy form)")
        ->check(whole_number(false))
        ->capture_default_str();
    app.add_flag("--no-stop-run0", f.no_stop_run0,
                 "run 0 ignores the band and trains its whole budget (the authors' released code)");
    app.add_flag("--no-bisect-stalls", f.no_bisect_stalls,
                 "paper, warm: keep the median rule after a median run that left the bracket's counts as they "
                 "were (the paper's rule exactly; by default such a run is followed by the bracket's midpoint, "
                 "rule bisect)");
    app.add_flag("--no-finetune", f.no_finetune,
                 "return the run's first step in the band as it is (Algorithm 3, the paper) instead of training "
                 "the rest of its budget with that sparsity pattern fixed (the default for search)");
    app.add_option("--trace-csv", f.trace_csv,
                   "write the search trace (one row per outer iteration) as CSV, rewritten after every iteration");
    app.add_option("--checkpoint", f.checkpoint,
                   "rewrite the search's state to this file after every run, for --resume (default: REPORT.ckpt "
                   "when --report is given)");
    app.add_flag("--no-checkpoint", f.no_checkpoint, "write no checkpoint");
    app.add_option("--ranks-per-run", f.ranks_per_run,
                   "under mpirun: ranks that train one run together (data-parallel); the search trains "
                   "ranks / this many lambdas per round (0: all ranks, one run at a time)")
        ->check(whole_number(false))
        ->capture_default_str();
    app.add_option("--resume", f.resume,
                   "continue the search recorded in this checkpoint (give the same other flags); the adaptive "
                   "strategy starts again");
}

namespace {

std::string fmt_lambdas(const std::vector<float>& v) {
    std::ostringstream s;
    bool same = true;
    for (float x : v) same = same && x == v.front();
    if (same && !v.empty()) {
        s << v.front();
        return s.str();
    }
    for (std::size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
    return s.str();
}

std::size_t total(const std::vector<std::size_t>& v) {
    std::size_t t = 0;
    for (auto n : v) t += n;
    return t;
}

std::vector<std::size_t> density_targets(const std::string& text, const ModelSpec& spec) {
    const std::vector<float> d = parse_float_list("--target-density", text);
    for (float x : d)
        if (!(x > 0.0f && x <= 1.0f))
            throw Error("--target-density: " + std::to_string(x) + " is outside (0, 1]");
    const ParamLayout layout = ParamLayout::of(spec);
    std::vector<std::size_t> targets;
    if (d.size() == 1) {
        targets.push_back(std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(d[0] * spec.n_weights()))));
    } else {
        if (d.size() != layout.segments.size())
            throw Error("--target-density: got " + std::to_string(d.size()) + " values but the model has " +
                        std::to_string(layout.segments.size()) + " weight layers");
        for (std::size_t l = 0; l < d.size(); ++l)
            targets.push_back(std::max<std::size_t>(
                1, static_cast<std::size_t>(std::llround(d[l] * static_cast<double>(layout.segments[l].n_weights)))));
    }
    return targets;
}

void write_csv(const std::string& path, const std::vector<SearchIteration>& iterations, std::size_t n_layers) {
    std::ostringstream c;
    c << "iteration,rule";
    for (std::size_t l = 0; l < n_layers; ++l) c << ",lambda_" << l;
    c << ",nnz_total";
    for (std::size_t l = 0; l < n_layers; ++l) c << ",nnz_" << l;
    c << ",candidates,steps,total_steps,in_band,train_loss,test_loss,test_accuracy,seconds,elapsed_seconds,finetune_steps,"
         "round,rank\n";
    auto num = [](double v) {
        std::ostringstream s;
        if (std::isfinite(v)) s.precision(9), s << v;
        return s.str();
    };
    for (const SearchIteration& it : iterations) {
        c << it.index << ',' << to_string(it.rule);
        for (float x : it.lambdas) c << ',' << num(x);
        c << ',' << total(it.nnz);
        for (auto n : it.nnz) c << ',' << n;
        c << ',' << total(it.n_candidates) << ',' << it.steps << ',' << it.total_steps << ','
          << (it.in_band ? 1 : 0) << ',' << num(it.train_loss) << ',' << num(it.test_loss) << ','
          << (it.test_accuracy >= 0 ? num(it.test_accuracy) : std::string()) << ',' << num(it.seconds) << ','
          << num(it.elapsed_seconds) << ',' << it.finetune_steps << ',' << it.round << ',' << it.rank << '\n';
    }
    write_file_atomic(path, c.str());
}

nlohmann::json iteration_json(const SearchIteration& it, bool classification) {
    nlohmann::json j;
    j["iteration"] = it.index;
    j["rule"] = to_string(it.rule);
    if (!it.layer_rules.empty()) {
        nlohmann::json rules = nlohmann::json::array();
        for (LambdaRule r : it.layer_rules) rules.push_back(to_string(r));
        j["layer_rules"] = rules;
    }
    j["lambda"] = it.lambdas;
    j["candidates"] = it.n_candidates;
    j["nnz"] = it.nnz;
    j["nnz_total"] = total(it.nnz);
    j["steps"] = it.steps;
    j["finetune_steps"] = it.finetune_steps;
    j["total_steps"] = it.total_steps;
    j["in_band"] = it.in_band;
    j["train_loss"] = number_or_null(it.train_loss);
    j["test_loss"] = number_or_null(it.test_loss);
    j["test_accuracy"] = classification && it.test_accuracy >= 0 ? number_or_null(it.test_accuracy) : nlohmann::json(nullptr);
    j["seconds"] = it.seconds;
    j["elapsed_seconds"] = it.elapsed_seconds;
    j["round"] = it.round;
    j["rank"] = it.rank;
    return j;
}

// Where the checkpoint goes: --checkpoint, else REPORT.ckpt, else the --resume file; empty for
// none.
std::string checkpoint_path(const SearchFlags& f) {
    if (f.no_checkpoint) {
        if (f.train.has("--checkpoint")) throw Error("--checkpoint and --no-checkpoint contradict each other");
        return {};
    }
    if (f.train.has("--checkpoint")) {
        if (f.checkpoint.empty()) throw Error("--checkpoint: the file name is empty");
        return f.checkpoint;
    }
    if (!f.train.report.empty()) return f.train.report + ".ckpt";
    return f.resume;
}

}  // namespace

int run_search(const SearchFlags& f) {
    // SIGINT/SIGTERM: finish the step in progress, write what was done, exit 130/143.
    install_stop_on_signal();
    const std::string checkpoint = checkpoint_path(f);
    // A wrong output path fails now, not after the search.
    std::vector<std::pair<std::string, std::string>> extra_outputs;
    if (f.train.has("--trace-csv")) extra_outputs.emplace_back("--trace-csv", f.trace_csv);
    if (!checkpoint.empty()) extra_outputs.emplace_back("--checkpoint", checkpoint);
    check_outputs(f.train, extra_outputs);
    // The checkpoint to resume from is read now; the search checks it against its setup.
    SearchCheckpointInfo resumed;
    if (f.train.has("--resume")) {
        if (f.resume.empty()) throw Error("--resume: the file name is empty");
        resumed = read_search_checkpoint(f.resume);
    }
    RunSetup setup = prepare_run(f.train, false);
    const bool have_nnz = !f.train.target_nnz.empty(), have_density = !f.target_density.empty();
    if (have_nnz == have_density)
        throw Error(have_nnz ? "give --target-nnz or --target-density, not both"
                             : "a search needs a target: --target-nnz N (or one count per layer) or --target-density D");
    if (have_density) setup.options.stop.targets = density_targets(f.target_density, setup.spec);
    check_band_flags(f.train, setup.options.stop);
    // auto: the adaptive strategy where it lands in one run (l1, one total target: the count
    // follows lambda smoothly), the paper's search otherwise (docs/method.md §8.5).
    const bool l1_total = setup.options.method.method == Method::l1 && setup.options.stop.targets.size() == 1;
    const SearchStrategy strategy = choose_search_strategy(f.strategy, setup.options);
    const bool adaptive_strategy = strategy == SearchStrategy::adaptive;
    for (const char* flag : {"--adapt-interval", "--adapt-rate", "--adapt-rule", "--adapt-ramp"})
        refuse_unless(f.train, flag, adaptive_strategy, "is an option of --strategy adaptive");
    refuse_unless(f.train, "--allocation", adaptive_strategy && l1_total,
                  "applies to the adaptive strategy with --method l1 and one total target");

    SearchOptions so;
    so.train = setup.options;
    so.strategy = strategy;
    so.allocation = parse_allocation(f.allocation);
    // auto resolved here, so every report (a diverged search's too) and the model file say which ran
    so.train.method.l1.form = search_l1_form(so);
    setup.options.method.l1.form = so.train.method.l1.form;
    if (!f.lambda0.empty()) so.lambda0 = parse_float_list("--lambda0", f.lambda0);
    so.lambda1 = f.lambda1;
    so.max_outer = f.max_outer;
    so.adapt_interval = f.adapt_interval;
    so.adapt_rate = f.adapt_rate;
    so.adapt_rule = parse_adapt_rule(f.adapt_rule);
    so.adapt_ramp = f.adapt_ramp;
    so.start_rows = f.start_rows;
    if (f.start_rows != 0 && !f.lambda0.empty())
        throw Error("--start-rows " + std::to_string(f.start_rows) +
                    " has nothing to do with --lambda0 given: the start is computed only without it");
    so.stop_run0 = !f.no_stop_run0;
    so.bisect_stalls = !f.no_bisect_stalls;
    if (f.no_finetune && f.train.finetune) throw Error("--finetune and --no-finetune contradict each other");
    so.finetune = !f.no_finetune;
    so.ranks_per_run = f.ranks_per_run;
    if (f.train.has("--ranks-per-run") && !world().distributed())
        throw Error("--ranks-per-run applies under mpirun (this is one process)");
    // A parallel search (several runs per round) writes no checkpoint and cannot resume one.
    const bool one_run = strategy == SearchStrategy::adaptive || so.train.method.method == Method::gmp;
    const std::size_t per_run = so.ranks_per_run == 0 ? static_cast<std::size_t>(world().size()) : so.ranks_per_run;
    const bool parallel = !one_run && per_run > 0 && static_cast<std::size_t>(world().size()) / per_run > 1;
    if (parallel && (f.train.has("--checkpoint") || f.train.has("--resume")))
        throw Error(std::string(f.train.has("--resume") ? "--resume" : "--checkpoint") +
                    ": a parallel search (" + std::to_string(static_cast<std::size_t>(world().size()) / per_run) +
                    " runs per round) keeps no checkpoint; give --ranks-per-run 0 to search one run at a time");
    so.checkpoint_path = parallel ? std::string() : checkpoint;
    so.resume_path = f.resume;
    so.validate(setup.spec);

    const std::size_t n_weights = setup.spec.n_weights();
    const StopRule& band = so.train.stop;
    std::printf("sparseprox %s: search (%s, %s) %s on %s (%s), %zu weights, device %s\n", version(),
                method_name(so.train.method.method), to_string(so.strategy), setup.spec.to_short().c_str(),
                f.train.data.c_str(), rows_text(setup).c_str(), n_weights, describe_device(setup.device).c_str());
    std::printf("target NNZ %s (rho %g%s), %s per run\n", join(band.targets).c_str(), band.tolerance,
                band.targets.size() > 1 ? (", at least " + std::to_string(band.min_layers ? band.min_layers
                                                                                            : band.targets.size()) +
                                           " layers in band").c_str()
                                        : "",
                so.train.steps ? (std::to_string(so.train.steps) + " steps").c_str()
                               : (std::to_string(so.train.epochs) + " epochs").c_str());
    if (world().distributed())
        std::printf("%s: %s\n", world().describe().c_str(),
                    parallel ? (std::to_string(static_cast<std::size_t>(world().size()) / per_run) + " runs per round, " +
                                std::to_string(per_run) + " rank" + (per_run == 1 ? "" : "s") + " each")
                                   .c_str()
                             : "one run at a time, data-parallel over every rank");
    const bool adaptive = so.strategy == SearchStrategy::adaptive;
    if (!f.resume.empty()) {
        if (resumed.strategy == SearchStrategy::paper || resumed.strategy == SearchStrategy::warm)
            std::printf("resuming from %s: %zu run%s done%s\n", f.resume.c_str(), resumed.iterations.size(),
                        resumed.iterations.size() == 1 ? "" : "s", resumed.finished ? ", the search had finished" : "");
        else
            std::printf("resuming from %s: the %s strategy starts again\n", f.resume.c_str(), to_string(resumed.strategy));
    }
    std::fflush(stdout);
    if (adaptive) so.train.on_progress = nullptr;  // the interval lines below say it all
    const bool classification = setup.classification;
    so.on_iteration = [&](const SearchIteration& it) {
        if (adaptive && f.train.quiet) return;
        if (parallel) std::printf("round %zu rank %d: ", it.round, it.rank);
        std::printf("%s %zu [%s%s]  lambda %s  nnz %zu (%.2f%%) [%s]  steps %zu (total %zu)", adaptive ? "interval" : "run",
                    it.index, to_string(it.rule),
                    it.n_candidates.empty() ? "" : (", " + std::to_string(total(it.n_candidates)) + " candidates").c_str(),
                    fmt_lambdas(it.lambdas).c_str(), total(it.nnz),
                    100.0 * static_cast<double>(total(it.nnz)) / static_cast<double>(n_weights), join(it.nnz).c_str(),
                    it.steps, it.total_steps);
        if (std::isfinite(it.train_loss)) std::printf("  train %.5g", it.train_loss);
        if (std::isfinite(it.test_loss)) std::printf("  test %.5g", it.test_loss);
        if (classification && it.test_accuracy >= 0) std::printf("  acc %.2f%%", 100.0 * it.test_accuracy);
        std::printf("%s  %.1fs\n", it.in_band ? "  IN BAND" : "", it.elapsed_seconds);
        std::fflush(stdout);
    };

    // The iterations so far, for a report on failure and the trace, which is rewritten after
    // every iteration (its final write reports a failure; these only try).
    std::vector<SearchIteration> done;
    if (resumed.strategy != SearchStrategy::adaptive) done = resumed.iterations;
    const auto print_iteration = so.on_iteration;
    so.on_iteration = [&](const SearchIteration& it) {
        done.push_back(it);
        print_iteration(it);
        if (f.trace_csv.empty() || !is_root()) return;
        try {
            write_csv(f.trace_csv, done, setup.spec.n_weight_layers());
        } catch (const Error&) {
            // Not fatal to the search: the write at the end reports the failure.
        }
    };
    SearchResult r;
    try {
        r = or_out_of_memory(training_what(setup), [&] {
            return LambdaSearch(so).run(setup.init, setup.data.train, test_set(setup));
        });
    } catch (const DivergedError& e) {
        nlohmann::json j = setup_report("search", f.train, setup);
        j["strategy"] = to_string(so.strategy);
        j["search"] = nlohmann::json::array();
        for (const SearchIteration& it : done) j["search"].push_back(iteration_json(it, classification));
        const Error err = diverged_error(e, f.train, &j);
        OutputWriter out;
        if (is_root()) {
            if (!f.trace_csv.empty())
                out.attempt("--trace-csv", [&] { write_csv(f.trace_csv, done, setup.spec.n_weight_layers()); });
            write_report(out, f.train.report, j);
        }
        throw err;
    }

    setup.options = so.train;
    setup.options.finetune = so.finetune || so.train.finetune;
    print_summary(setup, r.run);
    if (r.interrupted) {
        const bool resumable = !checkpoint.empty() && !adaptive && so.train.method.method != Method::gmp;
        std::printf("search (%s): %s after %zu finished run%s, %zu training steps%s%s\n", to_string(r.strategy),
                    interrupted_text().c_str(), adaptive ? 0 : r.iterations.size(), !adaptive && r.iterations.size() == 1 ? "" : "s",
                    adaptive ? r.run.steps : r.total_steps, resumable ? "; continue with --resume " : "",
                    resumable ? checkpoint.c_str() : "");
    } else if (r.reached)
        std::printf("search (%s): band reached at iteration %zu after %zu run%s%s, %zu training steps in all, %.1f s\n",
                    to_string(r.strategy), r.best_iteration, r.outer_iterations, r.outer_iterations == 1 ? "" : "s",
                    r.parallel_runs > 1 ? (" in " + std::to_string(r.rounds) + " round" + (r.rounds == 1 ? "" : "s") +
                                           " of " + std::to_string(r.parallel_runs))
                                              .c_str()
                                        : "",
                    r.total_steps, r.wall_seconds);
    else
        std::printf("search (%s): band NOT reached after %zu run%s (%zu training steps, %.1f s); returning the "
                    "closest run, iteration %zu\n",
                    to_string(r.strategy), r.outer_iterations, r.outer_iterations == 1 ? "" : "s", r.total_steps,
                    r.wall_seconds, r.best_iteration);
    std::printf("lambda %s%s%s\n", fmt_lambdas(r.lambda_final).c_str(),
                so.train.method.method == Method::l1 ? ", l1 form " : "",
                so.train.method.method == Method::l1 ? to_string(r.l1_form) : "");
    if (!r.layer_targets.empty())
        std::printf("allocation %s: layer targets %s%s\n", to_string(r.allocation), join(r.layer_targets).c_str(),
                    r.landed ? " (landed by the trim)" : "");

    // Each output on its own: a failure is reported and the others are still written. Rank 0
    // writes them (every rank holds the same result).
    OutputWriter out;
    if (!is_root()) return r.interrupted || stop_requested() ? interrupted_exit_status() : r.reached ? 0 : 3;
    if (!r.checkpoint_error.empty()) out.attempt("--checkpoint", [&] { throw Error(r.checkpoint_error); });
    out.attempt("--save", [&] { save_run(f.train, setup, r.run, run_report("search", f.train, setup, r.run)); });
    if (!f.trace_csv.empty())
        out.attempt("--trace-csv", [&] {
            write_csv(f.trace_csv, r.iterations, setup.spec.n_weight_layers());
            std::printf("wrote trace %s\n", f.trace_csv.c_str());
        });
    if (!f.train.report.empty()) {
        nlohmann::json j = run_report("search", f.train, setup, r.run);
        j["strategy"] = to_string(r.strategy);
        j["reached"] = r.reached;
        j["best_iteration"] = r.best_iteration;
        j["lambda_final"] = r.lambda_final;
        j["lambda_start"] = r.lambda_start;
        j["lambda_start_computed"] = r.lambda_start_computed;
        j["lambda_start_rows"] = r.lambda_start_rows;
        j["lambda1"] = so.lambda1;
        j["max_outer"] = so.max_outer;
        j["stop_run0"] = so.stop_run0;
        j["bisect_stalls"] = so.bisect_stalls;
        if (adaptive) {
            j["adapt_interval"] = r.adapt_interval;
            j["adapt_rate"] = so.adapt_rate;
            j["adapt_rule"] = to_string(so.adapt_rule);
            j["adapt_ramp"] = r.adapt_ramp;
            j["landing_step"] = r.landing_step;
            j["landed"] = r.landed;
            j["allocation"] = to_string(r.allocation);
            j["layer_targets"] = r.layer_targets;
        }
        j["outer_iterations"] = r.outer_iterations;
        j["rounds"] = r.rounds;
        j["runs_per_round"] = r.parallel_runs;
        j["ranks_per_run"] = per_run;
        j["total_steps"] = r.total_steps;
        j["search_wall_seconds"] = r.wall_seconds;
        j["interrupted"] = r.interrupted;
        j["checkpoint"] = checkpoint.empty() ? nlohmann::json(nullptr) : nlohmann::json(checkpoint);
        j["resumed_from"] = f.resume.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.resume);
        j["resumed_runs"] = r.resumed_runs;
        j["search"] = nlohmann::json::array();
        for (const SearchIteration& it : r.iterations) j["search"].push_back(iteration_json(it, classification));
        write_report(out, f.train.report, std::move(j));
    }
    // A signal after the search (while writing) also ends with its status: the outputs are whole.
    if (r.interrupted || stop_requested()) return interrupted_exit_status();
    if (out.failed()) return 1;
    return r.reached ? 0 : 3;
}

}  // namespace cli
}  // namespace sparseprox
