// The command line under signals: `sparseprox search` killed (SIGKILL) after some runs or in the
// middle of one and continued with --resume ends with the same report figures and the same
// --save file (byte for byte) as an uninterrupted search; the trace grows while the search
// runs; SIGINT/SIGTERM end a training run or a search with its outputs and status 130/143.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "sparseprox/sparseprox.h"
#include "test_util.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace sparseprox;
using sparseprox::testing_util::TempDirTest;

namespace {

std::string cli_path() {
    const char* env = std::getenv("SPARSEPROX_TEST_CLI");
    return env && *env ? env : SPARSEPROX_CLI_PATH;
}

std::vector<std::string> split(const std::string& args) {
    std::vector<std::string> out;
    std::istringstream s(args);
    for (std::string w; s >> w;) out.push_back(w);
    return out;
}

// The CLI as a child process, its output in `log`.
class Child {
public:
    Child(const std::string& args, const std::string& log) {
        std::vector<std::string> words = split(args);
        words.insert(words.begin(), cli_path());
        // posix_spawn, not fork: nothing runs in the child before exec (the test process may
        // hold other threads' locks).
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
        std::vector<char*> argv;
        for (std::string& w : words) argv.push_back(w.data());
        argv.push_back(nullptr);
        if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
        posix_spawn_file_actions_destroy(&actions);
        EXPECT_GT(pid_, 0) << "cannot start " << argv[0];
        reaped_ = pid_ <= 0;
    }
    ~Child() {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    bool running() {
        if (reaped_) return false;
        const pid_t r = ::waitpid(pid_, &status_, WNOHANG);
        if (r == pid_) reaped_ = true;
        return !reaped_;
    }
    void signal(int sig) { ::kill(pid_, sig); }
    // The raw wait status (waits at most 300 s, then kills).
    int wait() {
        for (int i = 0; i < 30000 && running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (!reaped_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status_, 0);
            reaped_ = true;
        }
        return status_;
    }

private:
    pid_t pid_ = -1;
    int status_ = 0;
    bool reaped_ = false;
};

std::string file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(file_bytes(path)); }

std::size_t lines_of(const std::string& path) {
    const std::string s = file_bytes(path);
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

// Finished runs in a checkpoint; -1 while there is none (or it cannot be read).
long checkpoint_runs(const std::string& path) {
    try {
        return static_cast<long>(read_search_checkpoint(path).iterations.size());
    } catch (const Error&) {
        return -1;
    }
}

// Polls until `done()` holds or the child ends; false when it ended first.
template <class F>
bool wait_until(Child& c, F done) {
    for (int i = 0; i < 60000; ++i) {
        if (done()) return true;
        if (!c.running()) return done();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

// A paper search on the embedded Mackey-Glass data that takes several runs of a fraction of a
// second each (a tight band).
const char* kSearch =
    "search --strategy paper --device cpu --model dense:6-16-8-1 --steps 1500 --target-nnz 60 --tolerance 0.001 --max-outer 8 "
    "--seed 3 --progress-seconds 0";

class CliResume : public TempDirTest {
protected:
    // The uninterrupted search, once per process: its report and model file.
    struct Reference {
        nlohmann::json report;
        std::string model_path;  // outside the test's folder, which goes with the test
    };
    static const Reference& reference(const std::string& dir) {
        static Reference ref = [&] {
            const std::string r = dir + "/ref.json";
            const std::string m = (fs::temp_directory_path() / ("sparseprox_resume_ref_" + std::to_string(::getpid()) +
                                                                ".safetensors")).string();
            Child c(std::string(kSearch) + " --report " + r + " --save " + m + " --no-checkpoint", dir + "/ref.log");
            const int st = c.wait();
            EXPECT_TRUE(exit_code(st) == 0 || exit_code(st) == 3) << file_bytes(dir + "/ref.log");
            Reference out{read_json(r), m};
            return out;
        }();
        return ref;
    }
    static void TearDownTestSuite() {
        std::error_code ec;
        fs::remove(fs::temp_directory_path() / ("sparseprox_resume_ref_" + std::to_string(::getpid()) + ".safetensors"),
                   ec);
    }
    void expect_same_as_reference(const std::string& report, const std::string& model, const std::string& what) {
        const Reference& ref = reference(dir());
        const nlohmann::json j = read_json(report);
        EXPECT_EQ(j["lambda_final"], ref.report["lambda_final"]) << what;
        EXPECT_EQ(j["nnz_total"], ref.report["nnz_total"]) << what;
        EXPECT_EQ(j["best_iteration"], ref.report["best_iteration"]) << what;
        EXPECT_EQ(j["reached"], ref.report["reached"]) << what;
        EXPECT_EQ(j["train_loss"], ref.report["train_loss"]) << what;
        EXPECT_EQ(j["total_steps"], ref.report["total_steps"]) << what;
        EXPECT_EQ(j["interrupted"], false) << what;
        ASSERT_EQ(j["search"].size(), ref.report["search"].size()) << what;
        for (std::size_t i = 0; i < j["search"].size(); ++i) {
            EXPECT_EQ(j["search"][i]["lambda"], ref.report["search"][i]["lambda"]) << what << ", run " << i;
            EXPECT_EQ(j["search"][i]["nnz"], ref.report["search"][i]["nnz"]) << what << ", run " << i;
        }
        expect_same_model_file(model, ref.model_path, what);
    }
    // The saved models: the same file byte for byte (tensors and metadata; the recorded report
    // leaves the timings out).
    void expect_same_model_file(const std::string& a, const std::string& b, const std::string& what) {
        std::map<std::string, std::string> meta_a, meta_b;
        const Model ma = load_model(a, &meta_a), mb = load_model(b, &meta_b);
        EXPECT_TRUE(ma.slab() == mb.slab()) << what << ": the saved weights differ";
        EXPECT_EQ(meta_a, meta_b) << what;
        EXPECT_TRUE(file_bytes(a) == file_bytes(b)) << what << ": the files differ";
    }
    // No temporary file of an atomic write is left in the folder.
    void expect_no_temporary_files() {
        for (const auto& e : fs::directory_iterator(dir()))
            EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
    }
};

TEST_F(CliResume, KilledAfterTwoRunsResumesToTheSameResultAndTheTraceGrows) {
    const auto& ref = reference(dir());
    ASSERT_GE(ref.report["search"].size(), 4u) << "the test needs a search of several runs";
    const std::string report = path("r.json"), ckpt = report + ".ckpt", trace = path("trace.csv");
    const std::string model = path("m.safetensors");
    const std::string flags = std::string(kSearch) + " --report " + report + " --save " + model + " --trace-csv " + trace;
    {
        Child c(flags, path("first.log"));
        // The trace is rewritten after every run: two rows (and the header) while it still runs.
        ASSERT_TRUE(wait_until(c, [&] { return checkpoint_runs(ckpt) >= 2 && lines_of(trace) >= 3; }))
            << file_bytes(path("first.log"));
        ASSERT_TRUE(c.running()) << "the search ended before it could be killed";
        c.signal(SIGKILL);
        const int st = c.wait();
        ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    }
    EXPECT_FALSE(fs::exists(report));  // killed: no report yet
    const long runs = checkpoint_runs(ckpt);
    ASSERT_GE(runs, 2);
    Child c(flags + " --resume " + ckpt, path("second.log"));
    const int st = c.wait();
    const std::string log = file_bytes(path("second.log"));
    EXPECT_EQ(exit_code(st), ref.report["reached"] == true ? 0 : 3) << log;
    EXPECT_NE(log.find("resuming from " + ckpt + ": " + std::to_string(runs) + " runs done"), std::string::npos) << log;
    expect_same_as_reference(report, model, "killed after " + std::to_string(runs) + " runs");
    EXPECT_EQ(read_json(report)["resumed_runs"], runs);
    // The trace holds every run, those before the kill included.
    EXPECT_EQ(lines_of(trace), ref.report["search"].size() + 1);
    expect_no_temporary_files();
}

TEST_F(CliResume, KilledInTheMiddleOfTheFirstRunResumes) {
    reference(dir());
    const std::string report = path("r.json"), ckpt = report + ".ckpt", model = path("m.safetensors");
    const std::string flags = std::string(kSearch) + " --report " + report + " --save " + model;
    {
        Child c(flags, path("first.log"));
        // The checkpoint of the start (no run finished yet) is there: run 0 is in progress.
        ASSERT_TRUE(wait_until(c, [&] { return checkpoint_runs(ckpt) >= 0; })) << file_bytes(path("first.log"));
        ASSERT_TRUE(c.running());
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        c.signal(SIGKILL);
        c.wait();
    }
    const long runs = checkpoint_runs(ckpt);
    ASSERT_GE(runs, 0);
    Child c(flags + " --resume " + ckpt, path("second.log"));
    c.wait();
    expect_same_as_reference(report, model, "killed during run " + std::to_string(runs));
}

TEST_F(CliResume, AResumeWithOtherFlagsIsRefused) {
    const std::string report = path("r.json"), ckpt = report + ".ckpt";
    {
        Child c(std::string(kSearch) + " --report " + report, path("first.log"));
        ASSERT_TRUE(wait_until(c, [&] { return checkpoint_runs(ckpt) >= 1; }));
        c.signal(SIGKILL);
        c.wait();
    }
    const std::string before = file_bytes(ckpt);
    Child c(std::string(kSearch) + " --lr 0.05 --report " + report + " --resume " + ckpt, path("second.log"));
    const int st = c.wait();
    const std::string log = file_bytes(path("second.log"));
    EXPECT_EQ(exit_code(st), 1) << log;
    EXPECT_NE(log.find("sparseprox: error: cannot resume from '" + ckpt + "': the lr differs"), std::string::npos)
        << log;
    EXPECT_EQ(file_bytes(ckpt), before);  // untouched
    // Not a checkpoint: one error line naming the file.
    Child bad(std::string(kSearch) + " --resume " + report + ".missing", path("third.log"));
    EXPECT_EQ(exit_code(bad.wait()), 1);
    EXPECT_NE(file_bytes(path("third.log")).find(report + ".missing"), std::string::npos);
    Child both(std::string(kSearch) + " --checkpoint " + path("c.ckpt") + " --no-checkpoint", path("fourth.log"));
    EXPECT_EQ(exit_code(both.wait()), 1);
    EXPECT_NE(file_bytes(path("fourth.log")).find("--checkpoint and --no-checkpoint"), std::string::npos);
}

TEST_F(CliResume, SigtermStopsTheSearchWithItsReportAndCheckpoint) {
    reference(dir());
    const std::string report = path("r.json"), ckpt = report + ".ckpt", model = path("m.safetensors");
    const std::string flags = std::string(kSearch) + " --report " + report + " --save " + model;
    {
        Child c(flags, path("first.log"));
        ASSERT_TRUE(wait_until(c, [&] { return checkpoint_runs(ckpt) >= 1; })) << file_bytes(path("first.log"));
        ASSERT_TRUE(c.running());
        c.signal(SIGTERM);
        const int st = c.wait();
        const std::string log = file_bytes(path("first.log"));
        ASSERT_EQ(exit_code(st), 143) << log;
        EXPECT_NE(log.find("interrupted by SIGTERM"), std::string::npos) << log;
        EXPECT_NE(log.find("continue with --resume " + ckpt), std::string::npos) << log;
    }
    const nlohmann::json j = read_json(report);
    EXPECT_EQ(j["interrupted"], true);
    const long runs = checkpoint_runs(ckpt);
    EXPECT_EQ(j["search"].size(), static_cast<std::size_t>(runs));  // the finished runs
    ASSERT_GE(runs, 1);
    // The best finished run is the model saved and reported.
    EXPECT_LT(j["best_iteration"].get<std::size_t>(), static_cast<std::size_t>(runs));
    EXPECT_TRUE(fs::exists(model));
    expect_no_temporary_files();
    Child c(flags + " --resume " + ckpt, path("second.log"));
    c.wait();
    expect_same_as_reference(report, model, "after SIGTERM");
}

TEST_F(CliResume, SigintStopsATrainingRunWithTheModelSoFar) {
    const std::string report = path("t.json"), model = path("t.safetensors");
    Child c("train --device cpu --model dense:6-16-8-1 --steps 100000000 --lambda 1e-4 --progress-seconds 0.05 "
            "--report " + report + " --save " + model,
            path("train.log"));
    // Training has started when the first progress line is out.
    ASSERT_TRUE(wait_until(c, [&] { return file_bytes(path("train.log")).find("step") != std::string::npos; }))
        << file_bytes(path("train.log"));
    c.signal(SIGINT);
    const int st = c.wait();
    const std::string log = file_bytes(path("train.log"));
    ASSERT_EQ(exit_code(st), 130) << log;
    EXPECT_NE(log.find("interrupted by SIGINT"), std::string::npos) << log;
    const nlohmann::json j = read_json(report);
    EXPECT_EQ(j["interrupted"], true);
    const std::size_t steps = j["steps"].get<std::size_t>();
    EXPECT_GT(steps, 0u);
    EXPECT_LT(steps, 100000000u);
    std::map<std::string, std::string> meta;
    const Model m = load_model(model, &meta);
    EXPECT_EQ(meta["steps"], std::to_string(steps));
    EXPECT_EQ(m.nnz_total(), j["nnz_total"].get<std::size_t>());
    expect_no_temporary_files();
}

// A signal taken while a thread is inside oneDNN's sgemm (the dense layers' products in a build
// with it) corrupted the heap in 30 of 250 runs at one thread; cpu::sgemm now holds SIGINT and
// SIGTERM back for each such call. Twenty short runs stopped at varied points after the first
// progress line must all end with 130 and their report.
TEST_F(CliResume, SigintsAtVariedPointsOfTrainingAllStopCleanly) {
    for (int run = 0; run < 20; ++run) {
        const std::string log = path("run" + std::to_string(run) + ".log"), report = path("r.json");
        Child c("train --device cpu --threads 1 --model dense:6-16-8-1 --steps 100000000 --lambda 1e-4 "
                "--progress-seconds 0.02 --report " + report,
                log);
        ASSERT_TRUE(wait_until(c, [&] { return file_bytes(log).find("step") != std::string::npos; })) << file_bytes(log);
        std::this_thread::sleep_for(std::chrono::milliseconds(5 * run));
        c.signal(SIGINT);
        ASSERT_EQ(exit_code(c.wait()), 130) << "run " << run << ":\n" << file_bytes(log);
        EXPECT_EQ(read_json(report)["interrupted"], true) << "run " << run;
    }
    expect_no_temporary_files();
}

}  // namespace
