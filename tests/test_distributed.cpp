// The parts of distributed training that one process can check (the runs on two ranks are in
// tests/mpi): the parallel search's choice of P lambdas, the single-process communicator, a
// group of one changing nothing, and the refusal to train N copies under a launcher when the
// build has no MPI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "core/collective.h"
#include "core/engine.h"
#include "core/search_rules.h"
#include "sparseprox/sparseprox.h"
#include "test_util.h"

using namespace sparseprox;
using sparseprox::testing_util::throws_error_with;

namespace {

Bracket bracket(float low, float up) {
    Bracket b;
    b.lambda_low = low;
    b.lambda_up = up;
    b.has_low = low > 0.0f;
    b.has_up = true;
    return b;
}

// ---- the P lambdas of a round ----------------------------------------------------------------

TEST(ParallelRule, OneRunIsTheSerialMedian) {
    const std::vector<float> c{1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};  // lower median 3
    const auto one = next_lambdas_parallel(bracket(0.5f, 7.0f), c, 7.0f, 1, true);
    ASSERT_EQ(one.size(), 1u);
    const LambdaChoice serial = next_lambda(bracket(0.5f, 7.0f), CandidateSet{c.size(), 3.0f}, 7.0f);
    EXPECT_EQ(one[0].lambda, serial.lambda);
    EXPECT_EQ(one[0].rule, LambdaRule::quantile);
}

TEST(ParallelRule, QuantilesSplitTheCandidatesIntoEqualParts) {
    std::vector<float> c;
    for (int i = 1; i <= 19; ++i) c.push_back(float(i));  // m = 19: entries floor(i * 18 / (P + 1))
    const auto two = next_lambdas_parallel(bracket(0.0f, 20.0f), c, 20.0f, 2, true);
    ASSERT_EQ(two.size(), 2u);
    EXPECT_EQ(two[0].lambda, 7.0f);   // entry 6
    EXPECT_EQ(two[1].lambda, 13.0f);  // entry 12
    const auto three = next_lambdas_parallel(bracket(0.0f, 20.0f), c, 20.0f, 3, true);
    ASSERT_EQ(three.size(), 3u);
    EXPECT_EQ(three[0].lambda, 5.0f);   // entry 4
    EXPECT_EQ(three[1].lambda, 10.0f);  // entry 9
    EXPECT_EQ(three[2].lambda, 14.0f);  // entry 13
    for (const LambdaChoice& x : three) EXPECT_EQ(x.rule, LambdaRule::quantile);
}

TEST(ParallelRule, FewCandidatesAreCompletedByPointsOfTheBracket) {
    // One candidate, three runs: the candidate and two distinct midpoints of (0, 8).
    const auto three = next_lambdas_parallel(bracket(0.0f, 8.0f), {3.0f}, 8.0f, 3, true);
    ASSERT_EQ(three.size(), 3u);
    EXPECT_LT(three[0].lambda, three[1].lambda);
    EXPECT_LT(three[1].lambda, three[2].lambda);
    int quantiles = 0;
    for (const LambdaChoice& x : three) {
        EXPECT_GT(x.lambda, 0.0f);
        EXPECT_LT(x.lambda, 8.0f);
        quantiles += x.rule == LambdaRule::quantile;
    }
    EXPECT_EQ(quantiles, 1);
}

TEST(ParallelRule, MidpointsExpansionAndGeometricPoints) {
    const auto mid = next_lambdas_parallel(bracket(1.0f, 4.0f), {}, 4.0f, 2, true);
    ASSERT_EQ(mid.size(), 2u);
    EXPECT_FLOAT_EQ(mid[0].lambda, 2.0f);
    EXPECT_FLOAT_EQ(mid[1].lambda, 3.0f);
    EXPECT_EQ(mid[0].rule, LambdaRule::midpoint);

    Bracket open;  // no run sparse enough yet
    const auto up = next_lambdas_parallel(open, {1.0f}, 2e-3f, 3, true);
    ASSERT_EQ(up.size(), 3u);
    EXPECT_FLOAT_EQ(up[0].lambda, 2e-2f);
    EXPECT_FLOAT_EQ(up[1].lambda, 2e-1f);
    EXPECT_FLOAT_EQ(up[2].lambda, 2.0f);
    EXPECT_EQ(up[2].rule, LambdaRule::expand);

    // Other methods: in log scale between the ends (one decade: 10^(1/3), 10^(2/3)).
    const auto geo = next_lambdas_parallel(bracket(1e-4f, 1e-3f), {5e-4f}, 1e-3f, 2, false);
    ASSERT_EQ(geo.size(), 2u);
    EXPECT_NEAR(geo[0].lambda, 1e-4 * std::pow(10.0, 1.0 / 3.0), 1e-9);
    EXPECT_NEAR(geo[1].lambda, 1e-4 * std::pow(10.0, 2.0 / 3.0), 1e-9);
    EXPECT_EQ(geo[0].rule, LambdaRule::geometric);
    // No lower end: the P decades below the upper one (the serial rule's lambda_up / 10 is the last).
    const auto below = next_lambdas_parallel(bracket(0.0f, 1e-3f), {}, 1e-3f, 2, false);
    EXPECT_NEAR(below[0].lambda, 1e-5, 1e-11);
    EXPECT_NEAR(below[1].lambda, 1e-4, 1e-10);
}

// ---- the communicator -----------------------------------------------------------------------------

TEST(Communicator, TheDefaultIsOneProcess) {
    Communicator c;
    EXPECT_EQ(c.rank(), 0);
    EXPECT_EQ(c.size(), 1);
    EXPECT_FALSE(c.distributed());
    EXPECT_EQ(c.describe(), "single process");
    EXPECT_DOUBLE_EQ(c.timeout(), 30.0);
    c.set_timeout(2.5);
    EXPECT_DOUBLE_EQ(c.timeout(), 2.5);
    EXPECT_TRUE(throws_error_with([&] { c.set_timeout(0.0); }, {"timeout 0", "positive"}));
    EXPECT_TRUE(throws_error_with([&] { c.set_timeout(std::numeric_limits<double>::quiet_NaN()); }, {"timeout"}));
    const Communicator part = c.split(3);
    EXPECT_EQ(part.size(), 1);
    // Not launched by mpirun: the world is this process (and MPI is not started).
    EXPECT_EQ(Communicator::world().size(), 1);
}

TEST(Communicator, AGroupOfOneCollectsNothing) {
    auto g = make_single_process_collective();
    std::vector<float> x{1.5f, -2.0f, 3.25f};
    g->sum(x.data(), x.size(), "test");
    EXPECT_EQ(x, (std::vector<float>{1.5f, -2.0f, 3.25f}));
    EXPECT_EQ(g->gather({4.0, 5.0}, "test"), (std::vector<double>{4.0, 5.0}));
    EXPECT_TRUE(throws_error_with([&] { g->broadcast(x.data(), 4, 1, "the test broadcast"); },
                                  {"the test broadcast", "rank 1"}));
}

TEST(Communicator, ALauncherOfSeveralRanksNeedsMpi) {
    if (mpi_compiled()) GTEST_SKIP() << "this build has MPI: the launcher's ranks are used (tests/mpi)";
    ::setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    EXPECT_TRUE(throws_error_with([] { Communicator::world(); }, {"launched as 2 processes", "no MPI"}));
    ::unsetenv("OMPI_COMM_WORLD_SIZE");
    ::setenv("PMI_SIZE", "4", 1);
    EXPECT_TRUE(throws_error_with([] { Communicator::world(); }, {"launched as 4 processes"}));
    ::unsetenv("PMI_SIZE");
    EXPECT_TRUE(throws_error_with([] { int comm = 0; Communicator::from_mpi_handle(&comm, sizeof comm); },
                                  {"no MPI"}));
    // The command line stops with one error line instead of training a copy per rank.
    const test::CliRun r = test::run_shell("OMPI_COMM_WORLD_SIZE=2 " + test::cli_path() +
                                           " train --device cpu --steps 5 --model dense:6-4-1");
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_EQ(r.output.rfind("sparseprox: error: launched as 2 processes", 0), 0u) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

TEST(Communicator, TheCommandLineRefusesDistributedFlagsInOneProcess) {
    const test::CliRun a = test::run_cli("train --device cpu --steps 5 --model dense:6-4-1 --comm-timeout 5");
    EXPECT_EQ(a.status, 1) << a.output;
    EXPECT_NE(a.output.find("sparseprox: error: --comm-timeout applies under mpirun"), std::string::npos) << a.output;
    const test::CliRun b = test::run_cli(
        "search --device cpu --steps 5 --model dense:6-4-1 --target-nnz 10 --strategy paper --ranks-per-run 2");
    EXPECT_EQ(b.status, 1) << b.output;
    EXPECT_NE(b.output.find("sparseprox: error: --ranks-per-run applies under mpirun"), std::string::npos) << b.output;
}

// ---- a group of one changes nothing ----------------------------------------------------------------

TEST(DataParallel, AGroupOfOneTrainsAsOneProcess) {
    const DataSplit d = mackey_glass();
    const Model init = Model::initialize(ModelSpec::parse("dense:6-16-8-1"), 5);
    TrainOptions o;
    o.lambdas = {1e-3f};
    o.batch_size = 64;
    o.steps = 300;
    o.progress_seconds = 0.0;
    const TrainResult plain = train(init, d.train, &d.test, o);
    o.communicator = Communicator(make_single_process_collective());
    const TrainResult grouped = train(init, d.train, &d.test, o);
    EXPECT_EQ(plain.model.slab(), grouped.model.slab());
    EXPECT_EQ(plain.test_eval.loss, grouped.test_eval.loss);

    SearchOptions so;
    so.train = o;
    so.train.stop.targets = {60};
    so.train.stop.tolerance = 0.05;
    so.strategy = SearchStrategy::paper;
    so.max_outer = 4;
    const SearchResult s = search(init, d.train, &d.test, so);
    EXPECT_EQ(s.parallel_runs, 1u);
    EXPECT_EQ(s.rounds, s.outer_iterations);
    for (const SearchIteration& it : s.iterations) {
        EXPECT_EQ(it.rank, 0);
        EXPECT_EQ(it.round, it.index);
    }
    so.ranks_per_run = 2;
    EXPECT_TRUE(throws_error_with([&] { search(init, d.train, &d.test, so); }, {"ranks per run 2", "1 ranks"}));
}

}  // namespace
