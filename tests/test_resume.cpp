// Stopping and resuming: the search's checkpoint (a search stopped after k runs and resumed ends
// with the same lambda, NNZ and model bit for bit), a resume refused when the setup differs, stop
// requests (sparseprox/stop.h) for training and search, and the signal handler of programs.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "sparseprox/sparseprox.h"
#include "test_util.h"

using namespace sparseprox;
using sparseprox::testing_util::TempDirTest;
using sparseprox::testing_util::throws_error_with;

using sparseprox::testing_util::smooth_regression;

namespace {

// A search that needs several runs: a tight band on a small network, mini-batches (so the
// batch order matters), a test set evaluated every run.
SearchOptions several_run_options(SearchStrategy strategy) {
    SearchOptions o;
    o.strategy = strategy;
    o.train.lr = 0.1f;
    o.train.steps = 400;
    o.train.batch_size = 64;
    o.train.seed = 11;
    o.train.progress_seconds = 0;
    o.train.stop.targets = {70};
    o.train.stop.tolerance = 0.01;
    o.max_outer = 12;
    return o;
}

struct Stopped : std::runtime_error {
    Stopped() : std::runtime_error("stopped by the test") {}
};

std::string file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// The parts of two results a resume must reproduce exactly (times aside).
void expect_same_search(const SearchResult& a, const SearchResult& b, const std::string& what) {
    EXPECT_EQ(a.reached, b.reached) << what;
    EXPECT_EQ(a.best_iteration, b.best_iteration) << what;
    EXPECT_EQ(a.lambda_final, b.lambda_final) << what;
    EXPECT_EQ(a.lambda_start, b.lambda_start) << what;
    EXPECT_EQ(a.run.nnz, b.run.nnz) << what;
    EXPECT_EQ(a.run.steps, b.run.steps) << what;
    EXPECT_EQ(a.total_steps, b.total_steps) << what;
    EXPECT_EQ(a.outer_iterations, b.outer_iterations) << what;
    EXPECT_EQ(a.run.model.slab(), b.run.model.slab()) << what;
    EXPECT_EQ(a.run.train_eval.loss, b.run.train_eval.loss) << what;
    ASSERT_EQ(a.iterations.size(), b.iterations.size()) << what;
    for (std::size_t i = 0; i < a.iterations.size(); ++i) {
        EXPECT_EQ(a.iterations[i].lambdas, b.iterations[i].lambdas) << what << ", iteration " << i;
        EXPECT_EQ(a.iterations[i].nnz, b.iterations[i].nnz) << what << ", iteration " << i;
        EXPECT_EQ(a.iterations[i].rule, b.iterations[i].rule) << what << ", iteration " << i;
        EXPECT_EQ(a.iterations[i].n_candidates, b.iterations[i].n_candidates) << what << ", iteration " << i;
        EXPECT_EQ(a.iterations[i].total_steps, b.iterations[i].total_steps) << what << ", iteration " << i;
    }
}

class SearchResume : public TempDirTest {
protected:
    const Dataset train_set = smooth_regression(256, 3);
    const Dataset test_set = smooth_regression(64, 4);
    const ModelSpec spec = ModelSpec::parse("dense:4-24-16-1");
    const Model init = Model::initialize(spec, 5);
};

TEST_F(SearchResume, StoppedAfterSomeRunsEndsAsTheUninterruptedSearch) {
    for (SearchStrategy strategy : {SearchStrategy::paper, SearchStrategy::warm}) {
        const std::string name = to_string(strategy);
        SearchOptions o = several_run_options(strategy);
        const SearchResult full = LambdaSearch(o).run(init, train_set, &test_set);
        ASSERT_GE(full.iterations.size(), 4u) << name << ": the test needs a search of several runs";

        // Killed after k runs: the callback runs after the checkpoint of its run is written.
        for (std::size_t k : {std::size_t{1}, std::size_t{2}, full.iterations.size() - 1}) {
            const std::string ckpt = path(name + "_" + std::to_string(k) + ".ckpt");
            SearchOptions first = o;
            first.checkpoint_path = ckpt;
            std::size_t seen = 0;
            first.on_iteration = [&](const SearchIteration&) {
                if (++seen == k) throw Stopped();
            };
            EXPECT_THROW(LambdaSearch(first).run(init, train_set, &test_set), Stopped);
            const SearchCheckpointInfo info = read_search_checkpoint(ckpt);
            EXPECT_EQ(info.iterations.size(), k) << name;
            EXPECT_FALSE(info.finished) << name;

            SearchOptions again = o;
            again.resume_path = ckpt;
            again.checkpoint_path = ckpt;
            std::size_t heard = 0;
            again.on_iteration = [&](const SearchIteration& it) {
                EXPECT_EQ(it.index, k + heard) << name;  // only the runs made after the resume
                ++heard;
            };
            const SearchResult resumed = LambdaSearch(again).run(init, train_set, &test_set);
            EXPECT_EQ(resumed.resumed_runs, k) << name;
            EXPECT_EQ(heard, full.iterations.size() - k) << name;
            expect_same_search(full, resumed, name + " resumed after " + std::to_string(k) + " runs");

            // The saved models are the same file.
            save_model(path("full.safetensors"), full.run.model, {{"lambda", "x"}});
            save_model(path("resumed.safetensors"), resumed.run.model, {{"lambda", "x"}});
            EXPECT_EQ(file_bytes(path("full.safetensors")), file_bytes(path("resumed.safetensors"))) << name;

            // The finished checkpoint gives the result again without training.
            EXPECT_TRUE(read_search_checkpoint(ckpt).finished) << name;
            again.on_iteration = [&](const SearchIteration&) { ADD_FAILURE() << "a finished search trained again"; };
            const SearchResult done = LambdaSearch(again).run(init, train_set, &test_set);
            expect_same_search(full, done, name + " from a finished checkpoint");
        }
    }
}

TEST_F(SearchResume, PerLayerTargetsResumeToo) {
    SearchOptions o = several_run_options(SearchStrategy::paper);
    o.train.stop.targets = {40, 90, 8};
    o.train.stop.tolerance = 0.1;
    const SearchResult full = LambdaSearch(o).run(init, train_set, nullptr);
    ASSERT_GE(full.iterations.size(), 3u);
    const std::string ckpt = path("layers.ckpt");
    SearchOptions first = o;
    first.checkpoint_path = ckpt;
    first.on_iteration = [&](const SearchIteration& it) {
        if (it.index == 2) throw Stopped();  // after a run whose lambdas came from the candidates
    };
    EXPECT_THROW(LambdaSearch(first).run(init, train_set, nullptr), Stopped);
    SearchOptions again = o;
    again.resume_path = ckpt;
    expect_same_search(full, LambdaSearch(again).run(init, train_set, nullptr), "per-layer");
}

TEST_F(SearchResume, StopRequestEndsTheSearchAndTheCheckpointContinuesIt) {
    SearchOptions o = several_run_options(SearchStrategy::paper);
    const SearchResult full = LambdaSearch(o).run(init, train_set, &test_set);
    ASSERT_GE(full.iterations.size(), 4u);

    const std::string ckpt = path("stop.ckpt");
    SearchOptions first = o;
    first.checkpoint_path = ckpt;
    first.on_iteration = [&](const SearchIteration& it) {
        if (it.index == 1) request_stop();  // as a signal handler would, during the search
    };
    const SearchResult stopped = LambdaSearch(first).run(init, train_set, &test_set);
    ASSERT_TRUE(stop_requested());
    clear_stop_request();
    EXPECT_TRUE(stopped.interrupted);
    EXPECT_EQ(stopped.iterations.size(), 2u);
    EXPECT_EQ(stopped.outer_iterations, 2u);
    // The best of the finished runs, whole.
    ASSERT_LT(stopped.best_iteration, 2u);
    EXPECT_EQ(stopped.run.nnz, full.iterations[stopped.best_iteration].nnz);
    EXPECT_FALSE(stopped.run.interrupted);
    EXPECT_EQ(stopped.run.steps, full.iterations[stopped.best_iteration].steps);

    SearchOptions again = o;
    again.resume_path = ckpt;
    expect_same_search(full, LambdaSearch(again).run(init, train_set, &test_set), "after a stop request");
}

TEST_F(SearchResume, AResumeWithAnotherSetupIsRefusedNamingTheDifference) {
    SearchOptions o = several_run_options(SearchStrategy::paper);
    const std::string ckpt = path("setup.ckpt");
    SearchOptions first = o;
    first.checkpoint_path = ckpt;
    first.on_iteration = [&](const SearchIteration&) { throw Stopped(); };
    EXPECT_THROW(LambdaSearch(first).run(init, train_set, &test_set), Stopped);

    SearchOptions again = o;
    again.resume_path = ckpt;
    SearchOptions seed = again;
    seed.train.seed = 12;
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(seed).run(init, train_set, &test_set); },
                                  {"cannot resume from '" + ckpt + "'", "seed", "12 now", "11 in the checkpoint"}));
    SearchOptions warm = again;
    warm.strategy = SearchStrategy::warm;
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(warm).run(init, train_set, &test_set); },
                                  {"strategy", "warm now", "paper in the checkpoint"}));
    SearchOptions band = again;
    band.train.stop.targets = {71};
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(band).run(init, train_set, &test_set); }, {"target NNZ"}));
    const Dataset other = smooth_regression(256, 99);
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(again).run(init, other, &test_set); }, {"training data"}));
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(again).run(init, train_set, nullptr); }, {"test data", "none now"}));
    const Model other_init = Model::initialize(spec, 6);
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(again).run(other_init, train_set, &test_set); },
                                  {"initialization"}));
    const Model wider_init = Model::initialize(ModelSpec::parse("dense:4-25-16-1"), 5);
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(again).run(wider_init, train_set, &test_set); }, {"model"}));

    // Not a checkpoint at all.
    save_model(path("model.safetensors"), init);
    SearchOptions model_file = o;
    model_file.resume_path = path("model.safetensors");
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(model_file).run(init, train_set, &test_set); },
                                  {path("model.safetensors"), "not a search checkpoint"}));
    SearchOptions missing = o;
    missing.resume_path = path("missing.ckpt");
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(missing).run(init, train_set, &test_set); },
                                  {path("missing.ckpt")}));
    // The refused resumes left the checkpoint as it was.
    EXPECT_EQ(read_search_checkpoint(ckpt).iterations.size(), 1u);
}

TEST_F(SearchResume, AdaptiveRecordsTheSetupAndStartsAgain) {
    SearchOptions o = several_run_options(SearchStrategy::adaptive);
    o.train.steps = 1500;
    o.adapt_interval = 50;
    const std::string ckpt = path("adaptive.ckpt");
    SearchOptions first = o;
    first.checkpoint_path = ckpt;
    const SearchResult full = LambdaSearch(first).run(init, train_set, nullptr);
    const SearchCheckpointInfo info = read_search_checkpoint(ckpt);
    EXPECT_EQ(info.strategy, SearchStrategy::adaptive);
    EXPECT_TRUE(info.iterations.empty());
    SearchOptions again = o;
    again.resume_path = ckpt;
    const SearchResult restarted = LambdaSearch(again).run(init, train_set, nullptr);
    EXPECT_EQ(restarted.resumed_runs, 0u);
    expect_same_search(full, restarted, "adaptive, started again");
    SearchOptions paper = again;
    paper.strategy = SearchStrategy::paper;
    EXPECT_TRUE(throws_error_with([&] { LambdaSearch(paper).run(init, train_set, nullptr); }, {"strategy"}));
}

TEST_F(SearchResume, AMalformedCheckpointIsAnErrorNamingTheFile) {
    SearchOptions o = several_run_options(SearchStrategy::paper);
    const std::string ckpt = path("good.ckpt");
    SearchOptions first = o;
    first.checkpoint_path = ckpt;
    first.on_iteration = [&](const SearchIteration& it) {
        if (it.index == 2) throw Stopped();
    };
    EXPECT_THROW(LambdaSearch(first).run(init, train_set, nullptr), Stopped);
    const TensorFile good = read_safetensors(ckpt);
    ASSERT_EQ(good.metadata.count("state"), 1u);
    const std::string state = good.metadata.at("state");

    auto resume_from = [&](const TensorFile& f) {
        write_safetensors(path("bad.ckpt"), f);
        SearchOptions again = o;
        again.resume_path = path("bad.ckpt");
        LambdaSearch(again).run(init, train_set, nullptr);
    };
    auto with_state = [&](const std::string& from, const std::string& to) {
        TensorFile f = good;
        const std::size_t at = state.find(from);
        EXPECT_NE(at, std::string::npos) << from;
        f.metadata["state"] = state.substr(0, at) + to + state.substr(at + from.size());
        return f;
    };
    const std::string bad = path("bad.ckpt");
    EXPECT_TRUE(throws_error_with([&] { resume_from(with_state("\"next_run\":3", "\"next_run\":2")); },
                                  {bad, "malformed state", "next run 2 after 3 recorded runs"}));
    EXPECT_TRUE(throws_error_with([&] { resume_from(with_state("\"next_run\":3", "\"next_run\":\"3\"")); },
                                  {bad, "malformed state"}));
    EXPECT_TRUE(throws_error_with([&] { resume_from(with_state("\"rule\":\"lambda0\"", "\"rule\":\"guess\"")); },
                                  {bad, "unknown lambda rule 'guess'"}));
    TensorFile truncated = good;
    truncated.metadata["state"] = state.substr(0, state.size() / 2);
    EXPECT_TRUE(throws_error_with([&] { resume_from(truncated); }, {bad, "\"state\""}));
    TensorFile no_best = good;
    no_best.tensors.erase("best");
    EXPECT_TRUE(throws_error_with([&] { resume_from(no_best); }, {bad, "tensor 'best' is missing"}));
    TensorFile short_best = good;
    short_best.tensors["best"] = Tensor{{3}, {1.0f, 2.0f, 3.0f}, DType::f32, {}};
    EXPECT_TRUE(throws_error_with([&] { resume_from(short_best); }, {bad, "the best model has 3 parameters"}));
    TensorFile version = good;
    version.metadata["checkpoint_version"] = "2";
    EXPECT_TRUE(throws_error_with([&] { resume_from(version); }, {bad, "checkpoint version '2'"}));
    TensorFile no_setup = good;
    no_setup.metadata.erase("setup");
    EXPECT_TRUE(throws_error_with([&] { resume_from(no_setup); }, {bad, "no \"setup\""}));
}

TEST_F(SearchResume, ACheckpointThatCannotBeWrittenDoesNotStopTheSearch) {
    SearchOptions o = several_run_options(SearchStrategy::paper);
    o.max_outer = 3;
    const SearchResult plain = LambdaSearch(o).run(init, train_set, nullptr);
    SearchOptions nowhere = o;
    nowhere.checkpoint_path = path("no_such_folder/s.ckpt");
    const SearchResult r = LambdaSearch(nowhere).run(init, train_set, nullptr);
    EXPECT_NE(r.checkpoint_error.find(nowhere.checkpoint_path), std::string::npos) << r.checkpoint_error;
    expect_same_search(plain, r, "without its checkpoint");
    SearchOptions fine = o;
    fine.checkpoint_path = path("s.ckpt");
    EXPECT_TRUE(LambdaSearch(fine).run(init, train_set, nullptr).checkpoint_error.empty());
}

// ---- stop requests -------------------------------------------------------------------------------

TEST(StopRequest, EndsATrainingRunAtAStepBoundaryWithTheModelSoFar) {
    const Dataset d = smooth_regression(256, 3);
    const Model init = Model::initialize(ModelSpec::parse("dense:4-24-16-1"), 5);
    TrainOptions o;
    o.lr = 0.05f;
    o.lambdas = {1e-3f};
    o.steps = 100000;
    o.batch_size = 32;
    o.progress_seconds = 1e-9;  // a progress report at every poll (every 32 steps)
    std::size_t reports = 0;
    o.on_progress = [&](const Progress&) {
        if (++reports == 3) request_stop();
    };
    const TrainResult r = train(init, d, nullptr, o);
    EXPECT_TRUE(stop_requested());
    clear_stop_request();
    EXPECT_FALSE(stop_requested());
    EXPECT_TRUE(r.interrupted);
    EXPECT_EQ(r.steps, 96u);  // the third poll, at step 96, asked; no step after it
    // The model is that of step 96: the same run with a budget of 96 steps.
    TrainOptions budget = o;
    budget.steps = 96;
    budget.on_progress = nullptr;
    const TrainResult ref = train(init, d, nullptr, budget);
    EXPECT_FALSE(ref.interrupted);
    EXPECT_EQ(r.model.slab(), ref.model.slab());
    EXPECT_EQ(r.train_eval.loss, ref.train_eval.loss);
    // A request stands until cleared: the next run makes no step.
    request_stop();
    const TrainResult none = train(init, d, nullptr, budget);
    clear_stop_request();
    EXPECT_TRUE(none.interrupted);
    EXPECT_EQ(none.steps, 0u);
    EXPECT_EQ(none.model.slab(), init.slab());
}

// The handler of programs: the first SIGINT/SIGTERM asks for a stop, the second kills.
TEST(StopOnSignalDeathTest, FirstSignalRequestsAStopTheSecondKills) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    auto twice = [](int sig) {
        install_stop_on_signal();
        ::raise(sig);
        if (!stop_requested() || stop_signal() != sig) ::_exit(5);
        ::raise(sig);
        ::_exit(6);  // not reached: the second signal kills
    };
    EXPECT_EXIT(twice(SIGINT), ::testing::KilledBySignal(SIGINT), "");
    EXPECT_EXIT(twice(SIGTERM), ::testing::KilledBySignal(SIGTERM), "");
    // SIGINT then SIGTERM: the second is the one that kills.
    EXPECT_EXIT(
        {
            install_stop_on_signal();
            ::raise(SIGINT);
            if (stop_signal() != SIGINT) ::_exit(5);
            ::raise(SIGTERM);
            ::_exit(6);
        },
        ::testing::KilledBySignal(SIGTERM), "");
    // An ignored SIGINT (a background job's) stays ignored.
    EXPECT_EXIT(
        {
            ::signal(SIGINT, SIG_IGN);
            install_stop_on_signal();
            ::raise(SIGINT);
            ::_exit(stop_requested() ? 5 : 0);
        },
        ::testing::ExitedWithCode(0), "");
}

}  // namespace
