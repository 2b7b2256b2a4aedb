// The lambda search's checkpoint file. One safetensors file (sparseprox/safetensors.h), written
// atomically: the models as float32 tensors, bit for bit ("init": the initialization, "best":
// the best run's model, "warm_from": the warm strategy's next start when it is not the
// initialization), and the rest as JSON text in the metadata ("format" =
// "sparseprox-search-checkpoint", "checkpoint_version" = "1", "setup" and "state"). Floats in
// the JSON are written as numbers that read back to the same float; NaN as null.
#include "core/search_checkpoint.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/input_text.h"
#include "sparseprox/error.h"
#include "sparseprox/safetensors.h"

namespace sparseprox {

namespace {

using json = nlohmann::json;

constexpr const char* kFormat = "sparseprox-search-checkpoint";
constexpr const char* kVersion = "1";

// ---- the setup's description ---------------------------------------------------------------------

// The shortest decimal that reads back as the same value: 0.1 for 0.1f, not 0.100000001.
std::string fmt(double v) {
    char buf[40];
    for (int digits = 15; digits <= 17; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (std::strtod(buf, nullptr) == v) break;
    }
    return buf;
}
std::string fmt(float v) {
    char buf[32];
    for (int digits = 6; digits <= 9; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(v));
        if (std::strtof(buf, nullptr) == v) break;
    }
    return buf;
}
template <class T>
std::string fmt_list(const std::vector<T>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) s += ",";
        if constexpr (std::is_floating_point_v<T>) s += fmt(v[i]);
        else s += std::to_string(v[i]);
    }
    return s + "]";
}

// FNV-1a over the bytes: a fingerprint of the data, not a security measure.
std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = 0xcbf29ce484222325ull) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
std::string hex(std::uint64_t h) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, h);
    return buf;
}
template <class T>
std::uint64_t hash_vector(const std::vector<T>& v, std::uint64_t h = 0xcbf29ce484222325ull) {
    return fnv1a(v.data(), v.size() * sizeof(T), h);
}

std::string describe_data(const Dataset& d) {
    std::uint64_t h = hash_vector(d.x);
    h = hash_vector(d.y, h);
    h = hash_vector(d.labels, h);
    return std::to_string(d.n_samples) + " rows of " + std::to_string(d.n_features) + " features, " +
           (d.task == Task::classification ? std::to_string(d.n_outputs) + " classes"
                                           : std::to_string(d.n_outputs) + " targets") +
           ", fingerprint " + hex(h);
}

// ---- JSON of the records -------------------------------------------------------------------------

json num(double v) { return std::isnan(v) ? json(nullptr) : std::isinf(v) ? json(v > 0 ? "inf" : "-inf") : json(v); }
double num_of(const json& j) {
    if (j.is_null()) return std::numeric_limits<double>::quiet_NaN();
    if (j.is_string()) {
        const std::string s = j.get<std::string>();
        if (s == "inf") return std::numeric_limits<double>::infinity();
        if (s == "-inf") return -std::numeric_limits<double>::infinity();
        throw Error("'" + s + "' is not a number");
    }
    return j.get<double>();
}
std::vector<float> floats_of(const json& j) {
    std::vector<float> v;
    for (const json& x : j) v.push_back(static_cast<float>(x.get<double>()));
    return v;
}

LambdaRule parse_rule(const std::string& name) {
    for (LambdaRule r : {LambdaRule::lambda0, LambdaRule::lambda1, LambdaRule::median, LambdaRule::midpoint,
                         LambdaRule::expand, LambdaRule::adaptive, LambdaRule::fixed, LambdaRule::geometric,
                         LambdaRule::quantile, LambdaRule::bisect})
        if (name == to_string(r)) return r;
    throw Error("unknown lambda rule '" + name + "'");
}
json rules_json(const std::vector<LambdaRule>& rules) {
    json a = json::array();
    for (LambdaRule r : rules) a.push_back(to_string(r));
    return a;
}
std::vector<LambdaRule> rules_of(const json& j) {
    std::vector<LambdaRule> v;
    for (const json& x : j) v.push_back(parse_rule(x.get<std::string>()));
    return v;
}

json iteration_json(const SearchIteration& it) {
    return {{"index", it.index},
            {"lambdas", it.lambdas},
            {"rule", to_string(it.rule)},
            {"layer_rules", rules_json(it.layer_rules)},
            {"n_candidates", it.n_candidates},
            {"nnz", it.nnz},
            {"steps", it.steps},
            {"finetune_steps", it.finetune_steps},
            {"total_steps", it.total_steps},
            {"in_band", it.in_band},
            {"train_loss", num(it.train_loss)},
            {"test_loss", num(it.test_loss)},
            {"test_accuracy", num(it.test_accuracy)},
            {"seconds", num(it.seconds)},
            {"elapsed_seconds", num(it.elapsed_seconds)}};
}
SearchIteration iteration_of(const json& j) {
    SearchIteration it;
    it.index = j.at("index").get<std::size_t>();
    it.lambdas = floats_of(j.at("lambdas"));
    it.rule = parse_rule(j.at("rule").get<std::string>());
    it.layer_rules = rules_of(j.at("layer_rules"));
    it.n_candidates = j.at("n_candidates").get<std::vector<std::size_t>>();
    it.nnz = j.at("nnz").get<std::vector<std::size_t>>();
    it.steps = j.at("steps").get<std::size_t>();
    it.finetune_steps = j.at("finetune_steps").get<std::size_t>();
    it.total_steps = j.at("total_steps").get<std::size_t>();
    it.in_band = j.at("in_band").get<bool>();
    it.train_loss = num_of(j.at("train_loss"));
    it.test_loss = num_of(j.at("test_loss"));
    it.test_accuracy = num_of(j.at("test_accuracy"));
    it.seconds = num_of(j.at("seconds"));
    it.elapsed_seconds = num_of(j.at("elapsed_seconds"));
    it.round = it.index;  // checkpoints are of searches with one run per round (on rank 0)
    return it;
}

json run_json(const TrainResult& r) {
    return {{"device", r.device},
            {"lambdas", r.lambdas},
            {"nnz", r.nnz},
            {"alive", r.alive},
            {"method", to_string(r.method)},
            {"steps", r.steps},
            {"finetune_steps", r.finetune_steps},
            {"epochs_started", r.epochs_started},
            {"stopped_in_band", r.stopped_in_band},
            {"interrupted", r.interrupted},
            {"wall_seconds", num(r.wall_seconds)},
            {"samples_per_second", num(r.samples_per_second)},
            {"train_eval", {num(r.train_eval.loss), num(r.train_eval.accuracy)}},
            {"test_eval", {num(r.test_eval.loss), num(r.test_eval.accuracy)}},
            {"nnz_history", r.nnz_history}};
}
TrainResult run_of(const json& j) {
    TrainResult r;
    r.device = j.at("device").get<std::string>();
    r.lambdas = floats_of(j.at("lambdas"));
    r.nnz = j.at("nnz").get<std::vector<std::size_t>>();
    r.alive = j.at("alive").get<std::vector<std::size_t>>();
    r.method = parse_method(j.at("method").get<std::string>());
    r.steps = j.at("steps").get<std::size_t>();
    r.finetune_steps = j.at("finetune_steps").get<std::size_t>();
    r.epochs_started = j.at("epochs_started").get<std::size_t>();
    r.stopped_in_band = j.at("stopped_in_band").get<bool>();
    r.interrupted = j.at("interrupted").get<bool>();
    r.wall_seconds = num_of(j.at("wall_seconds"));
    r.samples_per_second = num_of(j.at("samples_per_second"));
    r.train_eval = {num_of(j.at("train_eval").at(0)), num_of(j.at("train_eval").at(1))};
    r.test_eval = {num_of(j.at("test_eval").at(0)), num_of(j.at("test_eval").at(1))};
    r.nnz_history = j.at("nnz_history").get<std::vector<std::vector<std::size_t>>>();
    return r;
}

json loop_json(const SearchLoopState& s) {
    json history = json::array();
    for (const auto& group : s.history) {
        json g = json::array();
        for (const LambdaRecord& h : group) g.push_back({h.lambda, h.nnz});
        history.push_back(g);
    }
    json j = {{"next_run", s.next_run},
              {"lambdas", s.lambdas},
              {"rules", rules_json(s.rules)},
              {"n_candidates", s.n_candidates},
              {"history", history},
              {"have_best", s.have_best},
              {"best_close", {s.best_close.first, num(s.best_close.second)}},
              {"have_warm_from", s.have_warm_from},
              {"warm_score", num(s.warm_score)},
              {"finished", s.finished}};
    if (s.have_best) j["best_run"] = run_json(s.best);
    return j;
}
SearchLoopState loop_of(const json& j) {
    SearchLoopState s;
    s.next_run = j.at("next_run").get<std::size_t>();
    s.lambdas = floats_of(j.at("lambdas"));
    s.rules = rules_of(j.at("rules"));
    s.n_candidates = j.at("n_candidates").get<std::vector<std::size_t>>();
    for (const json& g : j.at("history")) {
        std::vector<LambdaRecord> group;
        for (const json& h : g) group.push_back({static_cast<float>(h.at(0).get<double>()), h.at(1).get<std::size_t>()});
        s.history.push_back(group);
    }
    s.have_best = j.at("have_best").get<bool>();
    s.best_close = {j.at("best_close").at(0).get<std::size_t>(), num_of(j.at("best_close").at(1))};
    s.have_warm_from = j.at("have_warm_from").get<bool>();
    s.warm_score = num_of(j.at("warm_score"));
    s.finished = j.at("finished").get<bool>();
    if (s.have_best) s.best = run_of(j.at("best_run"));
    return s;
}

Tensor flat(const std::vector<float>& v) {
    Tensor t;
    t.shape = {v.size()};
    t.data = v;
    return t;
}

}  // namespace

SetupList describe_search_setup(const SearchOptions& o, const Model& init, const Dataset& train_set,
                                const Dataset* test_set) {
    const TrainOptions& t = o.train;
    SetupList s;
    s.emplace_back("strategy", to_string(o.strategy));
    s.emplace_back("model", init.spec().to_json());
    s.emplace_back("initialization", "fingerprint " + hex(hash_vector(init.slab())));
    s.emplace_back("training data", describe_data(train_set));
    s.emplace_back("test data", test_set ? describe_data(*test_set) : std::string("none"));
    s.emplace_back("device", t.device.to_string());
    s.emplace_back("method", to_string(t.method.method));
    const MethodOptions& m = t.method;
    s.emplace_back("method options",
                   "l0 " + std::to_string(m.l0.group) + " " + fmt(m.l0.beta) + " " + fmt(m.l0.gamma) + " " +
                       fmt(m.l0.zeta) + " " + fmt(m.l0.drop_init) + " " + fmt(m.l0.drop_init_first) + " " +
                       fmt(m.l0.gate_lr) + "; spred " + fmt(m.spred.threshold) + "; gmp " + fmt(m.gmp.begin) + " " +
                       fmt(m.gmp.end) + " " + std::to_string(m.gmp.interval) + " " + std::to_string(m.gmp.per_layer));
    s.emplace_back("loss", t.loss ? to_string(*t.loss) : std::string("default"));
    s.emplace_back("lr", fmt(t.lr));
    const OptimizerOptions& op = t.optimizer;
    s.emplace_back("optimizer", std::string(optimizer_name(op.kind)) + " " + fmt(op.momentum) + " " + fmt(op.beta1) +
                                    " " + fmt(op.beta2) + " " + fmt(op.eps));
    const LrSchedule& ls = t.lr_schedule;
    s.emplace_back("lr schedule", std::string(lr_schedule_name(ls.kind)) + " " + std::to_string(ls.step_every) + " " +
                                      fmt(ls.gamma) + " " + fmt(ls.lr_min) + " " + std::to_string(ls.warmup_steps));
    s.emplace_back("weight decay", fmt(t.weight_decay));
    s.emplace_back("batch size", std::to_string(t.batch_size));
    s.emplace_back("epochs", std::to_string(t.epochs));
    s.emplace_back("steps", std::to_string(t.steps));
    s.emplace_back("seed", std::to_string(t.seed));
    s.emplace_back("target NNZ", fmt_list(t.stop.targets));
    s.emplace_back("tolerance", fmt(t.stop.tolerance));
    s.emplace_back("min layers", std::to_string(t.stop.min_layers));
    s.emplace_back("finetune", std::to_string(o.finetune || t.finetune));
    s.emplace_back("finetune lr", fmt(t.finetune_lr));
    s.emplace_back("eval batch", std::to_string(t.eval_batch));
    s.emplace_back("lambda0", o.lambda0.empty() ? std::string("computed") : fmt_list(o.lambda0));
    s.emplace_back("lambda1", fmt(o.lambda1));
    s.emplace_back("max outer", std::to_string(o.max_outer));
    s.emplace_back("stop run0", std::to_string(o.stop_run0));
    if (!o.bisect_stalls) s.emplace_back("bisect stalls", "0");
    if (o.strategy == SearchStrategy::adaptive) {
        s.emplace_back("adapt interval", std::to_string(o.adapt_interval));
        s.emplace_back("adapt rate", fmt(o.adapt_rate));
        s.emplace_back("adapt rule", to_string(o.adapt_rule));
        s.emplace_back("adapt ramp", std::to_string(o.adapt_ramp));
        s.emplace_back("allocation", to_string(o.allocation));
    }
    if (t.method.method == Method::l1) s.emplace_back("l1 form", to_string(t.method.l1.form));
    return s;
}

void save_search_checkpoint(const std::string& path, const SearchCheckpointData& c) {
    json setup = json::array();
    for (const auto& [name, value] : c.setup) setup.push_back({name, value});
    json iterations = json::array();
    for (const SearchIteration& it : c.iterations) iterations.push_back(iteration_json(it));
    json state = {{"strategy", to_string(c.strategy)},
                  {"start", c.start},
                  {"start_computed", c.start_computed},
                  {"start_rows", c.start_rows},
                  {"iterations", iterations},
                  {"total_steps", c.total_steps},
                  {"best_iteration", c.best_iteration},
                  {"reached", c.reached},
                  {"elapsed_seconds", num(c.elapsed_seconds)},
                  {"has_loop", c.has_loop}};
    if (c.has_loop) state["loop"] = loop_json(c.loop);

    TensorFile f;
    f.metadata["format"] = kFormat;
    f.metadata["checkpoint_version"] = kVersion;
    f.metadata["setup"] = setup.dump();
    f.metadata["state"] = state.dump();
    f.tensors["init"] = flat(c.init_slab);
    if (c.has_loop && c.loop.have_best) f.tensors["best"] = flat(c.loop.best.model.slab());
    if (c.has_loop && c.loop.have_warm_from) f.tensors["warm_from"] = flat(c.loop.warm_from);
    write_safetensors(path, f);
}

SearchCheckpointData load_search_checkpoint(const std::string& path) {
    const TensorFile f = read_safetensors(path);
    const std::string where = "search checkpoint '" + path + "'";
    auto meta = [&](const char* key) -> const std::string& {
        const auto it = f.metadata.find(key);
        if (it == f.metadata.end()) throw Error(where + ": no \"" + key + "\" in its metadata (not a search checkpoint)");
        return it->second;
    };
    if (meta("format") != kFormat)
        throw Error(where + ": not a search checkpoint (its format is '" + meta("format") + "', not '" + kFormat + "')");
    if (meta("checkpoint_version") != kVersion)
        throw Error(where + ": checkpoint version '" + meta("checkpoint_version") + "' (this build reads version " +
                    kVersion + ")");
    auto tensor = [&](const char* name) -> const std::vector<float>& {
        const auto it = f.tensors.find(name);
        if (it == f.tensors.end()) throw Error(where + ": tensor '" + name + "' is missing");
        return it->second.data;
    };
    SearchCheckpointData c;
    try {
        const json setup = parse_json_input(meta("setup"), where + ", \"setup\"");
        for (const json& e : setup) c.setup.emplace_back(e.at(0).get<std::string>(), e.at(1).get<std::string>());
        const json state = parse_json_input(meta("state"), where + ", \"state\"");
        c.strategy = parse_search_strategy(state.at("strategy").get<std::string>());
        c.start = floats_of(state.at("start"));
        c.start_computed = state.at("start_computed").get<bool>();
        c.start_rows = state.value("start_rows", std::size_t{0});  // absent from older checkpoints: 0, unknown
        for (const json& it : state.at("iterations")) c.iterations.push_back(iteration_of(it));
        c.total_steps = state.at("total_steps").get<std::size_t>();
        c.best_iteration = state.at("best_iteration").get<std::size_t>();
        c.reached = state.at("reached").get<bool>();
        c.elapsed_seconds = num_of(state.at("elapsed_seconds"));
        c.has_loop = state.at("has_loop").get<bool>();
        if (c.has_loop) c.loop = loop_of(state.at("loop"));
    } catch (const nlohmann::json::exception& e) {
        throw Error(where + ": malformed state (" + e.what() + ")");
    } catch (const Error& e) {
        const std::string what = e.what();
        throw Error(what.rfind(where, 0) == 0 ? what : where + ": " + what);
    }
    c.init_slab = tensor("init");
    if (c.has_loop && c.loop.have_best) c.loop.best.model.slab() = tensor("best");
    if (c.has_loop && c.loop.have_warm_from) c.loop.warm_from = tensor("warm_from");
    return c;
}

void check_same_setup(const std::string& path, const SetupList& recorded, const SetupList& now) {
    const std::string head = "cannot resume from '" + path + "': ";
    for (std::size_t i = 0; i < now.size() || i < recorded.size(); ++i) {
        if (i >= recorded.size())
            throw Error(head + "the checkpoint does not record '" + now[i].first + "' (made by another version?)");
        if (i >= now.size() || recorded[i].first != now[i].first)
            throw Error(head + "the checkpoint records '" + recorded[i].first + "', which this search does not have");
        if (recorded[i].second != now[i].second)
            throw Error(head + "the " + now[i].first + " differs from the checkpoint's: " + excerpt(now[i].second) +
                        " now, " + excerpt(recorded[i].second) + " in the checkpoint (resume with the same flags, "
                        "model and data)");
    }
}

SearchCheckpointInfo read_search_checkpoint(const std::string& path) {
    const SearchCheckpointData c = load_search_checkpoint(path);
    SearchCheckpointInfo info;
    info.strategy = c.strategy;
    info.iterations = c.iterations;
    info.finished = c.has_loop && c.loop.finished;
    info.reached = c.reached;
    info.best_iteration = c.best_iteration;
    info.elapsed_seconds = c.elapsed_seconds;
    return info;
}

}  // namespace sparseprox
