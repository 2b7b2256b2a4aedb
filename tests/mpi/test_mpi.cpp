// Data-parallel training and the parallel lambda search under mpirun with two processes on the
// CPU (README, "Distributed training"). Built and registered only when MPI was found; each test
// starts `mpirun --oversubscribe -np 2` (allowed as root: CI runs as root) and compares with
// the same work in one process.
//
// Bounds: the two ranks sum two half-batch gradients where one process computes one GEMM over
// the whole batch, so the gradients differ in their last bits and the runs drift apart slowly;
// the stop step is held to 2% and each layer's NNZ to 1% (at least 2 weights), the project's
// acceptance bounds. The ranks of one run must hold bit-identical weights (the same summed
// gradient, the same update): their slab hashes are compared exactly.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "worker_setup.h"

using namespace sparseprox;
using namespace sparseprox::test;
namespace fs = std::filesystem;

namespace {

// mpirun with two ranks on however many cores there are, allowed as root.
std::string mpirun(const std::string& extra = "") {
    return std::string("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 ") + SPARSEPROX_MPIEXEC +
           " --oversubscribe " + extra + " -np 2 ";
}

struct RankLine {
    std::size_t steps = 0;
    bool stopped = false;
    std::vector<std::size_t> nnz;
    std::string hash;
    double loss = 0.0;
};

// The "rank R steps S stopped B nnz ... hash H loss L" lines of mpi_worker, by rank.
std::map<int, RankLine> parse_ranks(const std::string& output) {
    std::map<int, RankLine> out;
    std::istringstream in(output);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream l(line);
        std::string w, nnz;
        int rank = -1;
        RankLine r;
        if (!(l >> w) || w != "rank" || !(l >> rank)) continue;
        l >> w >> r.steps >> w >> r.stopped >> w >> nnz >> w >> r.hash >> w >> r.loss;
        std::istringstream n(nnz);
        for (std::string x; std::getline(n, x, ',');) r.nnz.push_back(std::stoul(x));
        out[rank] = r;
    }
    return out;
}

bool within(double a, double b, double rel, double abs_floor) { return std::fabs(a - b) <= std::max(rel * std::fabs(b), abs_floor); }

nlohmann::json read_json(const fs::path& p) {
    std::ifstream in(p);
    nlohmann::json j;
    in >> j;
    return j;
}

std::string data_dir(const std::string& name) { return std::string(SPARSEPROX_DATA_DIR) + "/" + name; }

}  // namespace

TEST(DataParallel, TwoRanksMatchOneProcessAndAgreeBitForBit) {
    const CliRun run = run_shell(mpirun() + SPARSEPROX_MPI_WORKER " train");
    ASSERT_EQ(run.status, 0) << run.output;
    const auto ranks = parse_ranks(run.output);
    ASSERT_EQ(ranks.size(), 2u) << run.output;
    const RankLine& r0 = ranks.at(0);
    const RankLine& r1 = ranks.at(1);
    EXPECT_EQ(r0.hash, r1.hash) << "the ranks' weights differ";
    EXPECT_EQ(r0.steps, r1.steps);
    EXPECT_EQ(r0.nnz, r1.nnz);
    EXPECT_EQ(r0.loss, r1.loss) << "the evaluation's chunk sums are summed over the ranks, in order";

    // The same run in one process.
    const DataSplit data = worker_data();
    const TrainResult one = train(worker_init(), data.train, &data.test, worker_options());
    ASSERT_TRUE(one.stopped_in_band) << "the single-process run must stop in its band for the comparison";
    EXPECT_TRUE(r0.stopped);
    EXPECT_TRUE(within(double(r0.steps), double(one.steps), 0.02, 0.0))
        << "stop step " << r0.steps << " on 2 ranks, " << one.steps << " in one process";
    ASSERT_EQ(r0.nnz.size(), one.nnz.size());
    for (std::size_t l = 0; l < one.nnz.size(); ++l)
        EXPECT_TRUE(within(double(r0.nnz[l]), double(one.nnz[l]), 0.01, 2.0))
            << "layer " << l << ": " << r0.nnz[l] << " on 2 ranks, " << one.nnz[l] << " in one process";
    EXPECT_TRUE(within(r0.loss, one.test_eval.loss, 0.02, 0.0)) << r0.loss << " vs " << one.test_eval.loss;
}

TEST(DataParallel, AnApplicationsOwnCommunicatorGivesTheSameRun) {
    // MPI initialized by the program, the group made from its MPI_COMM_WORLD: the same
    // arithmetic as the launcher's world, so the same weights bit for bit.
    const CliRun world = run_shell(mpirun() + SPARSEPROX_MPI_WORKER " train");
    const CliRun app = run_shell(mpirun() + SPARSEPROX_MPI_WORKER " app");
    ASSERT_EQ(world.status, 0) << world.output;
    ASSERT_EQ(app.status, 0) << app.output;
    const auto a = parse_ranks(world.output), b = parse_ranks(app.output);
    ASSERT_EQ(a.size(), 2u) << world.output;
    ASSERT_EQ(b.size(), 2u) << app.output;
    EXPECT_EQ(b.at(0).hash, b.at(1).hash);
    EXPECT_EQ(b.at(0).hash, a.at(0).hash);
    EXPECT_EQ(b.at(0).steps, a.at(0).steps);
}

TEST(DataParallel, ARankThatDiesIsNamedWithinTheTimeout) {
    // mpirun normally ends the job itself when a rank exits early; with that turned off the
    // survivor is left in its all-reduce, and only the timeout (3 s here) ends it.
    const auto t0 = std::chrono::steady_clock::now();
    const CliRun run =
        run_shell(mpirun("--mca orte_abort_on_non_zero_status 0") + SPARSEPROX_MPI_WORKER " die 1 64 3");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(run.status, 0) << run.output;
    EXPECT_NE(run.output.find("sparseprox: error: rank 0 of 2: the gradient all-reduce did not complete within 3 s"),
              std::string::npos)
        << run.output;
    EXPECT_NE(run.output.find("lost rank 1 "), std::string::npos) << run.output;
    EXPECT_LT(seconds, 60.0) << run.output;
}

TEST(DataParallel, CommandLineMnistMatchesOneProcess) {
    const std::string mnist = data_dir("mnist");
    if (!fs::exists(mnist)) GTEST_SKIP() << "MNIST not found at " << mnist;
    const fs::path dir = temp_dir() / "mpi_mnist";
    fs::create_directories(dir);
    const std::string args = " train --data idx:" + mnist +
                             " --model lenet300100 --device cpu --threads 1 --batch 128 --steps 300 --lambda 1e-3"
                             " --target-nnz 222000 --tolerance 0.01 --seed 1 --no-test";
    const CliRun one = run_cli(args + " --report " + (dir / "one.json").string());
    ASSERT_EQ(one.status, 0) << one.output;
    const CliRun two = run_shell(mpirun() + cli_path() + args + " --report " + (dir / "two.json").string());
    ASSERT_EQ(two.status, 0) << two.output;
    // Rank 0 alone prints: one header line.
    std::size_t headers = 0;
    for (std::size_t at = 0; (at = two.output.find(": train dense:", at)) != std::string::npos; ++at) ++headers;
    EXPECT_EQ(headers, 1u) << two.output;
    const nlohmann::json a = read_json(dir / "one.json"), b = read_json(dir / "two.json");
    EXPECT_EQ(b["ranks"].get<int>(), 2);
    ASSERT_TRUE(a["stopped_in_band"].get<bool>()) << "the one-process run must stop in the band";
    EXPECT_TRUE(b["stopped_in_band"].get<bool>());
    const double sa = a["steps"].get<double>(), sb = b["steps"].get<double>();
    EXPECT_TRUE(within(sb, sa, 0.02, 0.0)) << "stop step " << sb << " on 2 ranks, " << sa << " in one process";
    const auto& la = a["layers"];
    const auto& lb = b["layers"];
    ASSERT_EQ(la.size(), lb.size());
    ASSERT_EQ(la.size(), 3u);
    for (std::size_t l = 0; l < la.size(); ++l) {
        const double na = la[l]["nnz"].get<double>(), nb = lb[l]["nnz"].get<double>();
        EXPECT_TRUE(within(nb, na, 0.01, 0.0)) << "layer " << l << ": " << nb << " on 2 ranks, " << na << " in one process";
    }
}

TEST(ParallelSearch, TwoRanksNeedFewerRoundsOnTheRegressionSearch) {
    const std::string mg = data_dir("mackey-glass/mg_scale.txt");
    if (!fs::exists(mg)) GTEST_SKIP() << "Mackey-Glass not found at " << mg;
    const fs::path dir = temp_dir() / "mpi_search";
    fs::create_directories(dir);
    // The regression search of docs/results/regression.md (2000 +- 0.1%, run 0 unstopped as in
    // the authors' code) with 300 steps per run instead of 50,000 and lambda^(1) = 1e-4: one
    // process needs 21 runs (the last ones bisect a bracket a few weights wide), two ranks 8
    // rounds of 2 (measured; README, "Distributed training"). The one-process search runs only
    // as many runs as the two ranks needed rounds, which must not be enough for it.
    const std::string args = " search --data libsvm:" + mg +
                             " --train-rows 1000 --device cpu --threads 1 --strategy paper --target-nnz 2000"
                             " --tolerance 0.001 --lambda0 1e-3 --lambda1 1e-4 --no-stop-run0 --no-finetune"
                             " --steps 300 --no-checkpoint --quiet";
    const CliRun two =
        run_shell(mpirun() + cli_path() + args + " --report " + (dir / "two.json").string() + " --trace-csv " +
                  (dir / "two.csv").string());
    ASSERT_EQ(two.status, 0) << two.output;
    const nlohmann::json b = read_json(dir / "two.json");
    ASSERT_TRUE(b["reached"].get<bool>());
    EXPECT_EQ(b["runs_per_round"].get<int>(), 2);
    const int rounds = b["rounds"].get<int>();
    EXPECT_EQ(b["outer_iterations"].get<int>(), static_cast<int>(b["search"].size()));
    EXPECT_LE(b["outer_iterations"].get<int>(), 2 * rounds);
    // One process, given as many runs as the two ranks needed rounds, does not reach the band:
    // it needs more rounds (exit status 3: the band was not reached).
    const CliRun one =
        run_cli(args + " --max-outer " + std::to_string(rounds) + " --report " + (dir / "one.json").string());
    EXPECT_EQ(one.status, 3) << one.output;
    const nlohmann::json a = read_json(dir / "one.json");
    EXPECT_FALSE(a["reached"].get<bool>()) << "one process reached the band within " << rounds << " runs";
    EXPECT_EQ(a["rounds"].get<int>(), rounds);
    // The trace says which rank ran which lambda: both ranks ran in round 0.
    const auto& runs = b["search"];
    ASSERT_GE(runs.size(), 2u);
    EXPECT_EQ(runs[0]["round"].get<int>(), 0);
    EXPECT_EQ(runs[0]["rank"].get<int>(), 0);
    EXPECT_EQ(runs[1]["round"].get<int>(), 0);
    EXPECT_EQ(runs[1]["rank"].get<int>(), 1);
    std::ifstream csv(dir / "two.csv");
    std::string header;
    std::getline(csv, header);
    EXPECT_NE(header.find(",round,rank"), std::string::npos) << header;
}
