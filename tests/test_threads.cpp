// The CPU backend's threads: the public setting, the blocked GEMM against a reference, and the
// promise that the thread count never changes a result (bitwise, whole training runs).
#include <gtest/gtest.h>

#include <omp.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <random>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/threads.h"
#include "sparseprox/sparseprox.h"
#include "test_util.h"

using namespace sparseprox;
using sparseprox::testing_util::throws_error_with;

namespace {

// Restores the automatic count after each test, whatever it set.
class Threads : public ::testing::Test {
protected:
    void TearDown() override { set_num_threads(0); }
};

// Small integers scaled by 1/8: every product and every partial sum below is exact in float, so
// any summation order gives the same bits and the reference can be compared exactly.
std::vector<float> dyadic(std::size_t n, unsigned salt) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(static_cast<int>((i * 7919u + salt * 104729u) % 17u) - 8) / 8.0f;
    return v;
}

// C = op(A) op(B) + beta C (+ bias), naively in double.
std::vector<float> reference(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const std::vector<float>& A,
                             std::size_t lda, const std::vector<float>& B, std::size_t ldb, float beta,
                             std::vector<float> C, std::size_t ldc, const float* bias, bool bias_rows) {
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            double s = bias ? (bias_rows ? bias[i] : bias[j]) : beta * C[i * ldc + j];
            for (std::size_t p = 0; p < k; ++p)
                s += static_cast<double>(ta ? A[p * lda + i] : A[i * lda + p]) * (tb ? B[j * ldb + p] : B[p * ldb + j]);
            C[i * ldc + j] = static_cast<float>(s);
        }
    return C;
}

}  // namespace

TEST_F(Threads, SettingIsExplicitOrAutomatic) {
    set_num_threads(3);
    EXPECT_EQ(num_threads(), 3);
    EXPECT_FALSE(num_threads_automatic());
    EXPECT_NE(describe_threads().find("3 threads (set by set_num_threads)"), std::string::npos) << describe_threads();
    set_num_threads(0);
    EXPECT_EQ(num_threads(), cpu::available_cores());
    EXPECT_TRUE(num_threads_automatic());
    EXPECT_NE(describe_threads().find("automatic"), std::string::npos) << describe_threads();
    EXPECT_GE(cpu::available_cores(), 1);
    EXPECT_LE(cpu::available_cores(), omp_get_num_procs());
    EXPECT_TRUE(throws_error_with([] { set_num_threads(-1); }, {"set_num_threads", "-1"}));
}

TEST_F(Threads, FixedCountReachesTheOpenMPTeam) {
    set_num_threads(3);
    cpu::ThreadTuner tuner;
    tuner.begin_step();
    EXPECT_EQ(tuner.current(), 3);
    EXPECT_EQ(omp_get_max_threads(), 3);
    tuner.end_step();
    set_num_threads(1);
    tuner.apply();
    EXPECT_EQ(omp_get_max_threads(), 1);
}

TEST_F(Threads, AutomaticTunerVisitsEveryCandidateThenSettles) {
    set_num_threads(0);
    cpu::ThreadTuner tuner;
    const int max = cpu::available_cores();
    std::vector<int> seen;
    // Steps of a millisecond: every candidate is measured over at least 50 ms.
    for (int s = 0; s < 600; ++s) {
        tuner.begin_step();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (seen.empty() || seen.back() != tuner.current()) seen.push_back(tuner.current());
        EXPECT_GE(tuner.current(), 1);
        EXPECT_LE(tuner.current(), max);
        EXPECT_EQ(omp_get_max_threads(), tuner.current());
        tuner.end_step();
    }
    EXPECT_EQ(seen.front(), 1);  // one thread first: never far off
    if (max > 1) EXPECT_NE(std::find(seen.begin(), seen.end(), max), seen.end()) << "never tried the maximum";
}

// A count whose steps are mostly fast with an occasional long stall (a neighbour taking its
// share of a core) loses to a steady count with the better mean, though its median is better.
TEST_F(Threads, AutomaticTunerScoresTheMeanStepNotTheMedian) {
    if (cpu::available_cores() < 2) GTEST_SKIP() << "one core: nothing to choose between";
    set_num_threads(0);
    cpu::ThreadTuner tuner;
    int bursty_steps = 0;
    std::vector<int> chosen;
    for (int s = 0; s < 400; ++s) {
        tuner.begin_step();
        const int n = tuner.current();
        int ms = 2;  // one thread: 2 ms, steady
        if (n > 1) ms = bursty_steps++ % 4 == 3 ? 12 : 1;  // more: 1 ms, and 12 ms every fourth (mean 3.75)
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        tuner.end_step();
        chosen.push_back(n);
    }
    EXPECT_GT(bursty_steps, 0) << "never tried more than one thread";
    // After the first round (well within 200 steps) the steady count holds.
    for (std::size_t s = 200; s < 220; ++s) EXPECT_EQ(chosen[s], 1) << "step " << s;
}

TEST_F(Threads, BlockedGemmMatchesTheReferenceAtAnyThreadCount) {
    struct Shape {
        bool ta, tb;
        std::size_t m, n, k;
        int bias;  // 0 none, 1 per column, 2 per row
    };
    const Shape shapes[] = {{false, true, 1000, 128, 128, 1}, {true, false, 300, 784, 128, 0},
                            {false, false, 128, 784, 300, 0}, {false, false, 32, 784, 9, 2},
                            {false, true, 64, 288, 196, 0},   {true, false, 288, 196, 64, 0},
                            {false, true, 19, 1, 111, 1},     {true, false, 1, 111, 1000, 0},
                            {false, false, 0, 5, 5, 0},       {false, false, 7, 5, 0, 1}};
    for (const Shape& s : shapes) {
        const std::size_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n, ldc = s.n;
        const std::vector<float> A = dyadic(s.m * s.k, 1), B = dyadic(s.k * s.n, 2), C0 = dyadic(s.m * s.n, 3);
        const std::vector<float> bias = dyadic(std::max(s.m, s.n), 4);
        const float* b = s.bias ? bias.data() : nullptr;
        const std::vector<float> want =
            reference(s.ta, s.tb, s.m, s.n, s.k, A, lda, B, ldb, 0.5f, C0, ldc, b, s.bias == 2);
        std::vector<std::vector<float>> got;
        for (int threads : {1, 2, 3}) {
            omp_set_num_threads(threads);
            std::vector<float> C = C0;
            cpu::sgemm(s.ta, s.tb, s.m, s.n, s.k, A.data(), lda, B.data(), ldb, 0.5f, C.data(), ldc, b, s.bias == 2);
            EXPECT_EQ(C, want) << "m " << s.m << " n " << s.n << " k " << s.k << ", " << threads << " threads";
            got.push_back(C);
        }
        if (s.m * s.n > 0) {
            bool any_nonzero = false;
            for (float v : want) any_nonzero |= v != 0.0f;
            EXPECT_TRUE(any_nonzero) << "m " << s.m << " n " << s.n;
        }
    }
    omp_set_num_threads(cpu::available_cores());
}

TEST_F(Threads, GemmBlocksDependOnTheShapeOnly) {
    EXPECT_EQ(cpu::gemm_blocks(1000, 128, 128), std::min<std::size_t>(cpu::available_cores(), 62));
    EXPECT_EQ(cpu::gemm_blocks(4, 4, 4), 1u);        // too small to split
    EXPECT_EQ(cpu::gemm_blocks(1000, 1, 64), 1u);    // 64k multiply-adds
    set_num_threads(1);
    EXPECT_EQ(cpu::gemm_blocks(1000, 128, 128), std::min<std::size_t>(cpu::available_cores(), 62));
}

// The dense layers' products go through oneDNN in a build with it (OpenBLAS otherwise): both
// libraries give the product within float rounding, bias and activation epilogue included, on
// the Mackey-Glass and lenet300100 shapes (split into blocks over the cores) and a small one.
TEST_F(Threads, DenseProductsAgreeBetweenTheGemmLibraries) {
#if SPARSEPROX_WITH_ONEDNN
    EXPECT_EQ(cpu::dense_gemm_library(), cpu::GemmLibrary::onednn);
    EXPECT_EQ(cpu::describe_gemm_library(cpu::GemmLibrary::onednn).rfind("oneDNN ", 0), 0u);
#else
    EXPECT_EQ(cpu::dense_gemm_library(), cpu::GemmLibrary::openblas);
#endif
    EXPECT_EQ(cpu::describe_gemm_library(cpu::GemmLibrary::openblas).rfind("OpenBLAS ", 0), 0u);
    struct Shape {
        bool ta, tb;
        std::size_t m, n, k;
    };
    for (const Shape& sh : {Shape{false, true, 1000, 128, 128}, Shape{true, false, 128, 128, 1000},
                            Shape{false, false, 1000, 128, 64}, Shape{false, true, 128, 300, 784}, Shape{false, true, 5, 3, 7}}) {
        std::mt19937 rng(static_cast<unsigned>(sh.m * 7 + sh.n));
        std::normal_distribution<float> nd;
        std::vector<float> A(sh.m * sh.k), B(sh.k * sh.n), bias(sh.n);
        for (auto& v : A) v = nd(rng);
        for (auto& v : B) v = nd(rng);
        for (auto& v : bias) v = nd(rng);
        cpu::Epilogue relu;
        relu.act = Activation::relu;
        std::vector<std::vector<float>> out;
        for (cpu::GemmLibrary lib : {cpu::GemmLibrary::openblas, cpu::GemmLibrary::onednn}) {
            std::vector<float> C(sh.m * sh.n, 7.0f);
            cpu::sgemm(sh.ta, sh.tb, sh.m, sh.n, sh.k, A.data(), sh.ta ? sh.m : sh.k, B.data(), sh.tb ? sh.k : sh.n, 0.0f,
                       C.data(), sh.n, bias.data(), false, relu, lib);
            out.push_back(C);
        }
        // |error| of a k-term sum of products of normals: well under 1e-5 * (|c| + sqrt(k)).
        const float tol = 1e-5f * std::sqrt(static_cast<float>(sh.k));
        for (std::size_t i = 0; i < out[0].size(); ++i)
            ASSERT_NEAR(out[0][i], out[1][i], tol * (1.0f + std::fabs(out[0][i]))) << "element " << i << " of " << sh.m << " x " << sh.n;
        EXPECT_GT(std::count_if(out[0].begin(), out[0].end(), [](float v) { return v > 0.0f; }), 0);
    }
}

// Whole runs at 1, 2 and 3 threads and automatic give the same parameters, bit for bit: dense
// full batch (Mackey-Glass) and a small convolutional net with mini-batches.
TEST_F(Threads, TrainingGivesTheSameBitsAtAnyThreadCount) {
    const DataSplit mg = mackey_glass();
    TrainOptions opt;
    opt.device = Device{DeviceKind::cpu, 0};
    opt.lr = 0.1f;
    opt.lambdas = {1e-4f};
    opt.batch_size = 0;
    opt.steps = 40;
    opt.progress_seconds = 0;
    const Model mlp = Model::initialize(ModelSpec::parse("dense:6-128-128-64-1"), 3);

    // Images: 96 synthetic 1x12x12 samples of 3 classes.
    Dataset img;
    img.name = "synthetic";
    img.task = Task::classification;
    img.n_samples = 96;
    img.n_features = 144;
    img.n_outputs = 3;
    img.x = dyadic(img.n_samples * img.n_features, 5);
    for (std::size_t i = 0; i < img.n_samples; ++i) img.labels.push_back(static_cast<std::int32_t>(i % 3));
    const Model cnn = Model::initialize(
        ModelSpec::from_json(R"({"input_shape": [1, 12, 12], "layers": [
            {"type": "conv2d", "filters": 8, "kernel": 3, "padding": 1, "activation": "relu"},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "conv2d", "filters": 16, "kernel": 3, "activation": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 32, "activation": "relu"},
            {"type": "dense", "units": 3}]})"),
        4);
    TrainOptions copt = opt;
    copt.batch_size = 32;
    copt.steps = 12;

    std::vector<std::vector<float>> dense_runs, conv_runs;
    for (int threads : {1, 2, 3, 0}) {
        set_num_threads(threads);
        dense_runs.push_back(train(mlp, mg.train, nullptr, opt).model.slab());
        conv_runs.push_back(train(cnn, img, nullptr, copt).model.slab());
    }
    EXPECT_NE(dense_runs[0], mlp.slab());
    EXPECT_NE(conv_runs[0], cnn.slab());
    for (std::size_t r = 1; r < dense_runs.size(); ++r) {
        EXPECT_EQ(dense_runs[r], dense_runs[0]) << "run " << r;
        EXPECT_EQ(conv_runs[r], conv_runs[0]) << "run " << r;
    }
}

TEST(ThreadsCli, ThreadsFlagIsAppliedAndChecked) {
    auto run = [](const std::string& args, int& status) {
        std::string out;
        FILE* p = popen(("timeout 300 " + std::string(SPARSEPROX_CLI_PATH) + " " + args + " 2>&1").c_str(), "r");
        if (!p) return out;
        std::array<char, 4096> buf{};
        while (fgets(buf.data(), buf.size(), p)) out += buf.data();
        const int st = pclose(p);
        status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        return out;
    };
    int status = -1;
    std::string out = run("train --device cpu --threads 1 --steps 5 --model dense:6-8-1 --progress-seconds 0", status);
    EXPECT_EQ(status, 0) << out;
    EXPECT_NE(out.find("1 thread (set by set_num_threads)"), std::string::npos) << out;
    for (const char* bad : {"0", "x", "1.5"}) {
        out = run(std::string("train --device cpu --steps 1 --threads ") + bad, status);
        EXPECT_EQ(status, 1) << bad << "\n" << out;
        EXPECT_NE(out.find("sparseprox: error: --threads: '" + std::string(bad) + "'"), std::string::npos) << out;
    }
    out = run("train --device cpu --steps 1 --progress-seconds 0 --model dense:6-8-1", status);
    EXPECT_EQ(status, 0) << out;
    EXPECT_NE(out.find("automatic"), std::string::npos) << out;
    // The environment variable, and --threads over it.
    const std::string small = "train --device cpu --steps 1 --progress-seconds 0 --model dense:6-8-1";
    auto run_env = [&](const std::string& env, const std::string& args) {
        std::string o;
        FILE* p = popen(("env " + env + " timeout 300 " + std::string(SPARSEPROX_CLI_PATH) + " " + args + " 2>&1").c_str(), "r");
        if (!p) return o;
        std::array<char, 4096> buf{};
        while (fgets(buf.data(), buf.size(), p)) o += buf.data();
        const int st = pclose(p);
        status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        return o;
    };
    out = run_env("SPARSEPROX_NUM_THREADS=1", small);
    EXPECT_EQ(status, 0) << out;
    EXPECT_NE(out.find("1 thread (set by SPARSEPROX_NUM_THREADS)"), std::string::npos) << out;
    out = run_env("SPARSEPROX_NUM_THREADS=1", small + " --threads 2");
    EXPECT_EQ(status, 0) << out;
    EXPECT_NE(out.find("2 threads (set by set_num_threads)"), std::string::npos) << out;
    out = run_env("SPARSEPROX_NUM_THREADS=abc", small);
    EXPECT_EQ(status, 1) << out;
    EXPECT_NE(out.find("sparseprox: error: SPARSEPROX_NUM_THREADS: 'abc'"), std::string::npos) << out;
}
