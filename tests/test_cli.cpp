// The command line: flags, the JSON report, the saved model and error messages.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "sparseprox/sparseprox.h"

namespace fs = std::filesystem;
using namespace sparseprox::test;

TEST(Cli, TrainsOnTheEmbeddedDefaultAndWritesReportAndModel) {
    const fs::path dir = temp_dir();
    const fs::path report = dir / "report.json", model = dir / "model.safetensors";
    const CliRun r = run_cli("train --device cpu --steps 200 --lambda 1e-3 --model dense:6-16-8-1 --report " +
                          report.string() + " --save " + model.string());
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("layers.0"), std::string::npos) << r.output;
    std::ifstream in(report);
    const nlohmann::json j = nlohmann::json::parse(in);
    for (const char* key : {"device", "layers", "nnz_total", "n_weights_total", "train_loss", "test_loss",
                            "test_accuracy", "steps", "stopped_in_band", "wall_seconds"})
        EXPECT_TRUE(j.contains(key)) << key;
    ASSERT_EQ(j["layers"].size(), 3u);
    std::size_t total = 0;
    for (const auto& l : j["layers"]) {
        EXPECT_TRUE(l.contains("name") && l.contains("n_weights") && l.contains("nnz") && l.contains("lambda"));
        total += l["nnz"].get<std::size_t>();
    }
    EXPECT_EQ(total, j["nnz_total"].get<std::size_t>());
    EXPECT_EQ(j["n_weights_total"].get<std::size_t>(), 6u * 16 + 16 * 8 + 8);
    EXPECT_EQ(j["steps"].get<std::size_t>(), 200u);
    EXPECT_TRUE(j["test_accuracy"].is_null());
    EXPECT_LT(j["test_loss"].get<double>(), 0.2);

    const sparseprox::Model m = sparseprox::load_model(model.string());
    EXPECT_EQ(m.nnz_total(), total);
    fs::remove_all(dir);
}

// Without a usable CUDA device (here: no GPU, or the backend library out of reach) an explicit
// cuda device is an error naming why, and auto trains on the CPU, saying so once.
TEST(Cli, CudaUnusableIsAnErrorAndAutoFallsBack) {
    if (sparseprox::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is usable here";
    const std::string env = "SPARSEPROX_CUDA_BACKEND=/nonexistent/libsparseprox_cuda.so LD_LIBRARY_PATH= ";
    const std::string run = "train --steps 20 --progress-seconds 0 -q --model dense:6-8-1 ";
    const std::string cmd_cuda = "env " + env + cli_path() + " " + run + "--device cuda 2>&1";
    FILE* p = popen(("timeout 300 " + cmd_cuda).c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    std::array<char, 4096> buf{};
    while (fgets(buf.data(), buf.size(), p)) out += buf.data();
    const int st = pclose(p);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 1) << out;
    EXPECT_NE(out.find("sparseprox: error:"), std::string::npos) << out;
    EXPECT_NE(out.find("requested but"), std::string::npos) << out;

    const std::string cmd_auto = "timeout 300 env " + env + cli_path() + " " + run + "--device auto 2>&1";
    p = popen(cmd_auto.c_str(), "r");
    ASSERT_NE(p, nullptr);
    out.clear();
    while (fgets(buf.data(), buf.size(), p)) out += buf.data();
    const int st_auto = pclose(p);
    ASSERT_TRUE(WIFEXITED(st_auto));
    EXPECT_EQ(WEXITSTATUS(st_auto), 0) << out;
    EXPECT_NE(out.find("device auto uses the CPU"), std::string::npos) << out;
}

TEST(Cli, StopsInBandWithPerLayerTargets) {
    const CliRun r = run_cli("train --device cpu --steps 3000 --lambda 1e-3 --model dense:6-16-8-1 --target-nnz 80,60,8 "
                          "--tolerance 0.5 --min-layers 2 -q");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("stopped in band"), std::string::npos) << r.output;
}

TEST(Cli, BadInputGivesClearErrors) {
    struct Case {
        std::string args, needle;
    };
    const Case cases[] = {
        {"train --lambda abc --steps 1", "--lambda: 'abc'"},
        {"train --lambda 1e-3,2e-3 --steps 1 --model dense:6-8-4-1", "2 lambda values"},
        {"train --batch 0 --steps 1", "--batch"},
        {"train --target-nnz 999999 --steps 1", "exceeds"},
        {"train --target-nnz -5 --steps 1", "--target-nnz"},
        {"train --data libsvm:/no/such/file.txt --steps 1", "/no/such/file.txt"},
        {"train --data nosuch --steps 1", "nosuch"},
        {"train --device cuda:7 --steps 1", "cuda:7"},
        {"train --tolerance 2 --steps 1", "--tolerance"},
        {"train --model dense:6-8-2 --steps 1", "2 outputs"},
        {"train --method l2 --steps 1", "unknown method 'l2'"},
        {"train --method gmp --steps 1", "gmp needs a target NNZ"},
        {"train --method gmp --target-nnz 50 --gmp-begin 0.9 --gmp-end 0.2 --steps 1", "begin 0.9"},
        {"train --method l0 --l0-drop-init 0 --steps 1", "drop rate 0"},
        {"train --method spred --spred-threshold nan --steps 1", "threshold"},
        {"train --init /no/such/model.safetensors --steps 1", "/no/such/model.safetensors"},
        {"train --finetune --finetune-lr -1 --steps 1", "fine-tuning learning rate -1"},
        {"train --optimizer rmsprop --steps 1", "unknown optimizer 'rmsprop'"},
        {"train --optimizer momentum --momentum 1 --steps 1", "momentum 1"},
        {"train --optimizer adam --beta1 -0.5 --steps 1", "beta1 -0.5"},
        {"train --optimizer adam --beta2 1.5 --steps 1", "beta2 1.5"},
        {"train --optimizer adam --adam-eps 0 --steps 1", "epsilon 0"},
        {"train --lr-schedule linear --steps 1", "unknown learning-rate schedule 'linear'"},
        {"train --lr-schedule step --steps 1", "--lr-step-every"},
        {"train --lr-schedule step --lr-step-every 5 --lr-gamma 2 --steps 1", "decay factor 2"},
        {"train --lr-schedule cosine --lr-min 5 --steps 1", "final learning rate 5"},
        {"train --lr-step-every 5 --steps 1", "--lr-step-every 5 belongs to --lr-schedule step"},
        {"train --warmup-steps -3 --steps 1", "--warmup-steps"},
    };
    for (const auto& c : cases) {
        const CliRun r = run_cli(c.args);
        EXPECT_NE(r.status, 0) << c.args;
        EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
        EXPECT_EQ(r.output.find("internal error"), std::string::npos) << c.args << "\n" << r.output;
    }
}

TEST(Cli, OptimizerAndScheduleFlagsReachTheRunAndTheReport) {
    const fs::path dir = temp_dir();
    struct Case {
        std::string flags, kind, schedule;
    };
    const Case cases[] = {
        {"", "sgd", "constant"},
        {"--optimizer momentum --momentum 0.8 --lr 0.02", "momentum", "constant"},
        {"--optimizer nesterov --lr 0.02 --lr-schedule step --lr-step-every 50 --lr-gamma 0.5", "nesterov", "step"},
        {"--optimizer adam --lr 0.003 --beta1 0.8 --beta2 0.99 --adam-eps 1e-7 --lr-schedule cosine --lr-min 1e-4",
         "adam", "cosine"},
        {"--optimizer adamw --lr 0.003 --weight-decay 1e-3 --warmup-steps 20", "adamw", "constant"},
    };
    for (const Case& c : cases) {
        const fs::path report = dir / (c.kind + ".json");
        const CliRun r = run_cli("train --device cpu --steps 200 --lambda 1e-3 --model dense:6-16-8-1 -q " + c.flags +
                                 " --report " + report.string());
        ASSERT_EQ(r.status, 0) << c.flags << "\n" << r.output;
        std::ifstream in(report);
        const nlohmann::json j = nlohmann::json::parse(in);
        EXPECT_EQ(j["optimizer"]["kind"], c.kind) << c.flags;
        EXPECT_EQ(j["lr_schedule"]["kind"], c.schedule) << c.flags;
        EXPECT_EQ(j["steps"].get<std::size_t>(), 200u);
        EXPECT_LT(j["test_loss"].get<double>(), 0.2) << c.flags;
        if (c.kind == "adam") {
            EXPECT_FLOAT_EQ(j["optimizer"]["beta1"].get<float>(), 0.8f);
            EXPECT_FLOAT_EQ(j["optimizer"]["eps"].get<float>(), 1e-7f);
            EXPECT_FLOAT_EQ(j["lr_schedule"]["lr_min"].get<float>(), 1e-4f);
        }
        if (c.kind == "momentum") EXPECT_FLOAT_EQ(j["optimizer"]["momentum"].get<float>(), 0.8f);
        if (c.kind == "adamw") EXPECT_EQ(j["lr_schedule"]["warmup_steps"].get<std::size_t>(), 20u);
    }
    // The search takes them too.
    const fs::path report = dir / "search.json";
    const CliRun s = run_cli("search --device cpu --model dense:6-16-8-1 --steps 600 --target-nnz 60 --tolerance 0.05 "
                             "--optimizer adam --lr 0.003 --lr-schedule cosine -q --report " + report.string());
    EXPECT_EQ(s.status, 0) << s.output;
    std::ifstream in(report);
    const nlohmann::json j = nlohmann::json::parse(in);
    EXPECT_EQ(j["optimizer"]["kind"], "adam");
    EXPECT_EQ(j["lr_schedule"]["kind"], "cosine");
    fs::remove_all(dir);
}

// The issue's case: a lambda0 far too large makes run 0 pass through the band after a few dozen
// steps. By default the search returns that run trained to the end of its budget on its
// pattern; --no-finetune returns the early iterate (the paper's Algorithm 3).
TEST(Cli, DefaultSearchTrainsTheReturnedNetworkItsWholeBudget) {
    const fs::path dir = temp_dir();
    const fs::path full = dir / "full.json", early = dir / "early.json";
    const std::string base = "search --device cpu --model dense:6-16-8-1 --steps 2000 --target-nnz 60 --tolerance 0.05 "
                             "--strategy paper --lambda0 0.05 -q --report ";
    const CliRun a = run_cli(base + full.string());
    const CliRun b = run_cli(base + early.string() + " --no-finetune");
    ASSERT_EQ(a.status, 0) << a.output;
    ASSERT_EQ(b.status, 0) << b.output;
    std::ifstream fa(full), fb(early);
    const nlohmann::json ja = nlohmann::json::parse(fa), jb = nlohmann::json::parse(fb);
    ASSERT_LT(jb["steps"].get<std::size_t>(), 500u) << "the count must cross the band early for this test";
    EXPECT_FALSE(jb["finetune"].get<bool>());
    EXPECT_TRUE(ja["finetune"].get<bool>());
    EXPECT_EQ(ja["steps"].get<std::size_t>(), 2000u);
    EXPECT_EQ(ja["finetune_steps"].get<std::size_t>(), 2000u - jb["steps"].get<std::size_t>());
    EXPECT_EQ(ja["total_steps"].get<std::size_t>(), 2000u);
    EXPECT_TRUE(ja["reached"].get<bool>());
    EXPECT_LT(ja["test_loss"].get<double>(), 0.1 * jb["test_loss"].get<double>());
    const CliRun both = run_cli(base + full.string() + " --finetune --no-finetune");
    EXPECT_NE(both.status, 0);
    EXPECT_NE(both.output.find("contradict"), std::string::npos) << both.output;
    fs::remove_all(dir);
}

// Without --strategy, an l1 search for one total target is the adaptive strategy with the lazy
// l1 form and one lambda (one run); with --l1-form greedy its allocation is the magnitude one (a
// lambda per layer); a per-layer search is the paper's, with the greedy form.
TEST(Cli, DefaultSearchIsAdaptiveWithTheLazyFormOrTheMagnitudeAllocation) {
    const fs::path dir = temp_dir();
    const fs::path report = dir / "default.json";
    const CliRun d = run_cli("search --device cpu --model dense:6-16-8-1 --steps 2000 --target-nnz 60 --tolerance 0.05 "
                             "-q --report " + report.string());
    ASSERT_EQ(d.status, 0) << d.output;
    EXPECT_NE(d.output.find("l1 form lazy"), std::string::npos) << d.output;
    {
        std::ifstream in(report);
        const nlohmann::json j = nlohmann::json::parse(in);
        EXPECT_EQ(j["strategy"], "adaptive");
        EXPECT_EQ(j["allocation"], "uniform");
        EXPECT_EQ(j["method_options"]["form"], "lazy");
        EXPECT_EQ(j["adapt_ramp"].get<std::size_t>(), 1500u);  // three quarters of the budget
        EXPECT_EQ(j["steps"].get<std::size_t>(), 2000u);
        EXPECT_TRUE(j["reached"].get<bool>());
    }
    const CliRun r = run_cli("search --device cpu --model dense:6-16-8-1 --steps 2000 --target-nnz 60 --tolerance 0.05 "
                             "--l1-form greedy -q --report " + report.string());
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("search (l1, adaptive)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("allocation magnitude: layer targets"), std::string::npos) << r.output;
    std::ifstream in(report);
    const nlohmann::json j = nlohmann::json::parse(in);
    EXPECT_EQ(j["strategy"], "adaptive");
    EXPECT_EQ(j["allocation"], "magnitude");
    EXPECT_EQ(j["method_options"]["form"], "greedy");
    ASSERT_EQ(j["layer_targets"].size(), 3u);
    std::size_t sum = 0;
    for (const auto& t : j["layer_targets"]) sum += t.get<std::size_t>();
    EXPECT_EQ(sum, 60u);
    EXPECT_EQ(j["total_steps"].get<std::size_t>(), 2000u);
    EXPECT_EQ(j["steps"].get<std::size_t>(), 2000u);
    EXPECT_EQ(j["adapt_interval"].get<std::size_t>(), 20u);
    const CliRun u = run_cli("search --device cpu --model dense:6-16-8-1 --steps 2000 --target-nnz 60 --tolerance 0.05 "
                             "--allocation uniform -q --report " + report.string());
    ASSERT_EQ(u.status, 0) << u.output;
    std::ifstream in2(report);
    const nlohmann::json k = nlohmann::json::parse(in2);
    EXPECT_EQ(k["allocation"], "uniform");
    EXPECT_TRUE(k["layer_targets"].empty());
    const CliRun p = run_cli("search --device cpu --model dense:6-16-8-1 --steps 50 --target-nnz 40,30,4 --tolerance 0.5 "
                             "--max-outer 2 -q");
    EXPECT_NE(p.output.find("search (l1, paper)"), std::string::npos) << p.output;
    fs::remove_all(dir);
}

// --start-rows: the computed lambda0 from that many evenly spaced training rows, in the report;
// refused beside a given --lambda0, which leaves nothing to compute.
TEST(Cli, SearchStartRows) {
    const fs::path dir = temp_dir();
    const fs::path report = dir / "start.json";
    const std::string base = "search --device cpu --model dense:6-16-8-1 --steps 200 --target-nnz 60 --tolerance 0.05 -q ";
    const CliRun all = run_cli(base + "--report " + report.string());
    ASSERT_EQ(all.status, 0) << all.output;
    std::ifstream in(report);
    const nlohmann::json j = nlohmann::json::parse(in);
    EXPECT_EQ(j["lambda_start_rows"].get<std::size_t>(), j["train_rows"].get<std::size_t>());
    const CliRun some = run_cli(base + "--start-rows 100 --report " + report.string());
    ASSERT_EQ(some.status, 0) << some.output;
    std::ifstream in2(report);
    const nlohmann::json k = nlohmann::json::parse(in2);
    EXPECT_EQ(k["lambda_start_rows"].get<std::size_t>(), 100u);
    EXPECT_NE(k["lambda_start"], j["lambda_start"]);
    const CliRun both = run_cli(base + "--start-rows 100 --lambda0 0.01");
    EXPECT_EQ(both.status, 1);
    EXPECT_NE(both.output.find("sparseprox: error: --start-rows 100"), std::string::npos) << both.output;
    fs::remove_all(dir);
}

TEST(Cli, SearchWritesTraceReportAndCsv) {
    const fs::path dir = temp_dir() / "search";
    fs::create_directories(dir);
    const fs::path report = dir / "search.json", csv = dir / "search.csv";
    const CliRun r = run_cli("search --device cpu --model dense:6-16-8-1 --steps 300 --target-nnz 60 --tolerance 0.05 "
                             "--strategy warm --report " + report.string() + " --trace-csv " + csv.string() + " -q");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("band reached"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("lambda "), std::string::npos) << r.output;
    std::ifstream in(report);
    const nlohmann::json j = nlohmann::json::parse(in);
    EXPECT_EQ(j["command"], "search");
    EXPECT_EQ(j["strategy"], "warm");
    EXPECT_TRUE(j["reached"].get<bool>());
    ASSERT_TRUE(j["search"].is_array());
    EXPECT_EQ(j["search"].size(), j["outer_iterations"].get<std::size_t>());
    std::size_t steps = 0;
    for (const auto& it : j["search"]) {
        for (const char* key : {"iteration", "rule", "lambda", "nnz", "steps", "train_loss", "test_loss", "test_accuracy",
                                "seconds"})
            EXPECT_TRUE(it.contains(key)) << key;
        steps += it["steps"].get<std::size_t>();
    }
    EXPECT_EQ(steps, j["total_steps"].get<std::size_t>());
    EXPECT_EQ(j["search"][0]["rule"], "lambda0");
    EXPECT_EQ(j["lambda_final"].size(), 3u);
    EXPECT_TRUE(j["lambda_start_computed"].get<bool>());
    const double nnz = j["nnz_total"].get<double>();
    EXPECT_LE(std::fabs(nnz - 60.0), 3.0);
    // The CSV: a header and one row per outer iteration.
    std::ifstream c(csv);
    std::string header, line;
    std::getline(c, header);
    EXPECT_EQ(header.rfind("iteration,rule,lambda_0,lambda_1,lambda_2,nnz_total,nnz_0", 0), 0u) << header;
    std::size_t rows = 0;
    while (std::getline(c, line)) ++rows;
    EXPECT_EQ(rows, j["search"].size());
    fs::remove_all(dir);
}

TEST(Cli, SearchByDensityAndAMissedBandExitsWithThree) {
    // One run of 5 steps cannot reach an exact count of 1 weight: exit status 3, closest run.
    const CliRun miss = run_cli("search --device cpu --model dense:6-8-1 --steps 5 --target-density 0.02 "
                                "--tolerance 0 --strategy paper --max-outer 2 -q");
    EXPECT_EQ(miss.status, 3) << miss.output;
    EXPECT_NE(miss.output.find("band NOT reached after 2 runs"), std::string::npos) << miss.output;
}

TEST(Cli, SearchRejectsImpossibleTargets) {
    struct Case {
        std::string args, needle;
    };
    const Case cases[] = {
        {"search --steps 1", "needs a target"},
        {"search --steps 1 --target-nnz 0", "target NNZ 0"},
        {"search --steps 1 --target-nnz 99999999", "exceeds"},
        {"search --steps 1 --target-nnz -3", "--target-nnz"},
        {"search --steps 1 --target-nnz 10,10", "2 per-layer NNZ targets"},
        {"search --steps 1 --target-nnz 100 --target-density 0.1", "not both"},
        {"search --steps 1 --target-density 1.5", "--target-density"},
        {"search --steps 1 --target-density 0.1,0.2", "2 values"},
        {"search --steps 1 --target-nnz 100 --strategy greedy", "greedy"},
        {"search --steps 1 --target-nnz 100 --lambda0 -1", "lambda0"},
        {"search --steps 1 --target-nnz 100 --strategy paper --max-outer 1", "max_outer"},
        {"search --steps 1 --target-nnz 100 --adapt-rule pid --strategy adaptive", "pid"},
        {"search --steps 1 --target-nnz 100 --allocation erk", "erk"},
        {"search --steps 1 --target-nnz 100 --l1-form eager", "eager"},
        {"train --steps 1 --l1-form sometimes", "sometimes"},
    };
    for (const auto& c : cases) {
        const CliRun r = run_cli(c.args);
        EXPECT_NE(r.status, 0) << c.args;
        EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
        EXPECT_EQ(r.output.find("internal error"), std::string::npos) << c.args << "\n" << r.output;
    }
}

TEST(Cli, EveryMethodTrainsAndReportsIt) {
    const fs::path dir = temp_dir();
    struct Case {
        std::string method, flags;
    };
    const Case cases[] = {{"l1", "--lambda 1e-3"},
                          {"l0", "--lambda 1e-3"},
                          {"spred", "--lambda 1e-3 --lr 0.5"},
                          {"gmp", "--target-nnz 60 --tolerance 0.01"}};
    for (const Case& c : cases) {
        const fs::path report = dir / (c.method + ".json"), model = dir / (c.method + ".safetensors");
        const CliRun r = run_cli("train --device cpu --steps 300 --model dense:6-16-8-1 -q --method " + c.method + " " +
                                 c.flags + " --report " + report.string() + " --save " + model.string());
        ASSERT_EQ(r.status, 0) << c.method << "\n" << r.output;
        EXPECT_NE(r.output.find("(" + c.method + ")"), std::string::npos) << r.output;
        std::ifstream in(report);
        const nlohmann::json j = nlohmann::json::parse(in);
        EXPECT_EQ(j["method"], c.method);
        EXPECT_TRUE(j["method_options"].is_object());
        EXPECT_TRUE(j["layers"][0].contains("alive_units"));
        // The saved model holds exact zeros: its count is the reported one.
        std::map<std::string, std::string> meta;
        const sparseprox::Model m = sparseprox::load_model(model.string(), &meta);
        EXPECT_EQ(m.nnz_total(), j["nnz_total"].get<std::size_t>()) << c.method;
        EXPECT_EQ(meta["method"], c.method);
        if (c.method == "gmp") EXPECT_EQ(m.nnz_total(), 60u);
    }
    fs::remove_all(dir);
}

TEST(Cli, InitStartsFromASavedModel) {
    const fs::path dir = temp_dir();
    const fs::path first = dir / "first.safetensors", second = dir / "second.json";
    ASSERT_EQ(run_cli("train --device cpu --steps 200 --lambda 1e-3 --model dense:6-16-8-1 -q --save " + first.string())
                  .status,
              0);
    // One negligible step (eta 1e-9; eta*lambda = 1e-9 keeps zeros at zero): the saved model comes back.
    const CliRun r = run_cli("train --device cpu --steps 1 --lr 1e-9 --lambda 1 --model dense:6-16-8-1 -q --init " +
                             first.string() + " --report " + second.string());
    ASSERT_EQ(r.status, 0) << r.output;
    std::ifstream in(second);
    const nlohmann::json j = nlohmann::json::parse(in);
    const sparseprox::Model m = sparseprox::load_model(first.string());
    EXPECT_EQ(j["nnz_total"].get<std::size_t>(), m.nnz_total());
    EXPECT_LT(j["test_loss"].get<double>(), 0.2);
    const CliRun bad = run_cli("train --device cpu --steps 1 --model dense:6-8-1 --init " + first.string());
    EXPECT_NE(bad.status, 0);
    EXPECT_NE(bad.output.find(first.string()), std::string::npos) << bad.output;
    EXPECT_NE(bad.output.find("dense:6-8-1"), std::string::npos) << bad.output;
    fs::remove_all(dir);
}

TEST(Cli, SearchWithTheOtherMethods) {
    const fs::path dir = temp_dir();
    const fs::path report = dir / "l0.json";
    const CliRun r = run_cli("search --device cpu --model dense:6-16-8-1 --steps 1500 --target-nnz 60 --tolerance 0.05 "
                             "--method gmp -q --report " + report.string());
    ASSERT_EQ(r.status, 0) << r.output;
    std::ifstream in(report);
    const nlohmann::json j = nlohmann::json::parse(in);
    EXPECT_EQ(j["method"], "gmp");
    EXPECT_EQ(j["outer_iterations"].get<std::size_t>(), 1u);
    EXPECT_EQ(j["nnz_total"].get<std::size_t>(), 60u);
    const CliRun a = run_cli("search --device cpu --model dense:6-16-8-1 --steps 1500 --target-nnz 60 --tolerance 0.05 "
                             "--method spred --lr 0.5 --strategy adaptive --adapt-interval 50 -q");
    EXPECT_EQ(a.status, 0) << a.output;
    EXPECT_NE(a.output.find("search (spred, adaptive)"), std::string::npos) << a.output;
    fs::remove_all(dir);
}

// ---- hostile inputs ----------------------------------------------------------------------------

namespace {

std::string nested_array(std::size_t depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }

void write_bytes(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary);
    out << bytes;
}

std::string safetensors_bytes(const std::string& header) {
    std::string s;
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
    return s + header;
}

}  // namespace

TEST(Cli, DeeplyNestedJsonIsAnErrorNotACrash) {
    const fs::path dir = temp_dir() / "deep";
    fs::create_directories(dir);
    const fs::path model = dir / "deep.json", init = dir / "deep.safetensors";
    write_bytes(model, R"({"inputs": 6, "layers": [{"type": "conv2d", "filters": 1, "kernel": )" +
                           nested_array(200000) + "}]}");
    write_bytes(init, safetensors_bytes(R"({"w":{"dtype":"F32","shape":)" + nested_array(200000) +
                                        R"(,"data_offsets":[0,0]}})"));
    for (const std::string& args : {"train --steps 1 --model " + model.string(), "train --steps 1 --init " + init.string()}) {
        const CliRun r = run_cli(args);
        EXPECT_EQ(r.status, 1) << args << "\n" << r.output.substr(0, 2000);
        EXPECT_NE(r.output.find("sparseprox: error:"), std::string::npos) << r.output.substr(0, 2000);
        EXPECT_NE(r.output.find("nested deeper"), std::string::npos) << r.output.substr(0, 2000);
        EXPECT_LT(r.output.size(), 2000u);
    }
    fs::remove_all(dir);
}

TEST(Cli, TinyInputsCannotAskForHugeMemory) {
    const fs::path dir = temp_dir() / "huge";
    fs::create_directories(dir);
    constexpr long kLimit = 1500000;  // KiB: room for the program, not for what the inputs claim
    struct Case {
        std::string args;
        std::vector<std::string> needles;
    };
    // An 18-byte LIBSVM file claiming 3e9 features.
    write_bytes(dir / "wide.txt", "1 1:1\n2 3000000000:1\n");
    // A model file whose header claims a network of 10^12 weights and holds a small one.
    const fs::path small = dir / "small.safetensors";
    ASSERT_EQ(run_cli("train --device cpu --steps 1 --model dense:6-4-1 -q --save " + small.string()).status, 0);
    sparseprox::TensorFile claim = sparseprox::read_safetensors(small.string());
    claim.metadata["architecture"] = sparseprox::ModelSpec::parse("dense:6-1000000-1000000-1").to_json();
    const fs::path claimed = dir / "claim.safetensors";
    sparseprox::write_safetensors(claimed.string(), claim);
    const std::vector<Case> cases = {
        {"train --device cpu --steps 1 --data libsvm:" + (dir / "wide.txt").string(),
         {"wide.txt", "line 2", "above the limit of 16777216 features"}},
        // 1.6 GB of parameters for a model that does not fit the 6-feature data.
        {"train --device cpu --steps 1 --model dense:20000-20000-1", {"dense:20000-20000-1", "20000 inputs", "6 features"}},
        {"train --device cpu --steps 1 --model dense:6-1000000-1000000-1 --init " + claimed.string(),
         {"claim.safetensors", "layers.0.weight"}},
        // A model that fits the data but not the memory: an ordinary error naming it.
        {"train --device cpu --steps 1 --model dense:6-30000-30000-1",
         {"out of memory", "dense:6-30000-30000-1", "900210000 weights"}},
    };
    for (const Case& c : cases) {
        const CliRun r = run_cli_limited(c.args, kLimit);
        EXPECT_EQ(r.status, 1) << c.args << "\n" << r.output;
        EXPECT_NE(r.output.find("sparseprox: error:"), std::string::npos) << c.args << "\n" << r.output;
        for (const std::string& n : c.needles) EXPECT_NE(r.output.find(n), std::string::npos) << n << "\n" << r.output;
    }
    fs::remove_all(dir);
}

// ---- values that used to pass silently --------------------------------------------------------

TEST(Cli, NonsenseValuesAreRefused) {
    struct Case {
        std::string args, needle;
    };
    // `timeout`: before these were refused, --steps -1 ran for ever.
    const Case cases[] = {
        {"train --steps -1", "--steps: '-1'"},
        {"train --epochs -1", "--epochs: '-1'"},
        {"train --seed -1 --steps 1", "--seed: '-1'"},
        {"train --epochs 0 --steps 0", "0 is not allowed"},
        {"train --steps 0", "--steps: 0 is not allowed"},
        {"train --steps 1 --target-nnz 100 --min-layers 2", "--min-layers does not apply"},
        {"train --steps 1 --min-layers 1", "--min-layers does not apply"},
        {"search --steps 1 --target-nnz 100 --min-layers 2", "--min-layers does not apply"},
        {"train --steps 1 --progress-seconds -1", "--progress-seconds: '-1'"},
        {"train --steps 1 --progress-seconds nan", "--progress-seconds: 'nan'"},
        {"train --steps 1 --batch 5000", "--batch 5000 is larger than the 1000 training rows"},
        {"train --steps 1 --l0-gate-lr 0.1", "--l0-gate-lr does not apply"},
        {"train --steps 1 --gmp-end 0.5", "--gmp-end does not apply"},
        {"train --steps 1 --method gmp --target-nnz 10 --l1-form lazy", "--l1-form does not apply"},
        {"train --steps 1 --finetune-lr 0.1", "--finetune-lr does not apply"},
        {"train --steps 1 --pixel-scale unit", "--pixel-scale does not apply"},
        {"search --steps 1 --target-nnz 100 --strategy paper --adapt-interval 5", "--adapt-interval does not apply"},
        {"search --steps 1 --target-nnz 100 --strategy warm --allocation uniform", "--allocation does not apply"},
        {"search --steps 1 --target-nnz 10,10 --allocation magnitude", "--allocation does not apply"},
        {"search --steps 1 --target-nnz 100 --method l0 --allocation uniform", "--allocation does not apply"},
        {"search --steps 1 --target-nnz 100 --max-outer -2", "--max-outer: '-2'"},
    };
    for (const auto& c : cases) {
        const CliRun r = run_cli(c.args + " --device cpu");
        EXPECT_NE(r.status, 0) << c.args << "\n" << r.output;
        EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
        EXPECT_EQ(r.output.find("internal error"), std::string::npos) << c.args << "\n" << r.output;
    }
}

TEST(Cli, ADivergedRunIsAnErrorAndTheReportSaysSo) {
    const fs::path dir = temp_dir() / "diverged";
    fs::create_directories(dir);
    for (const std::string cmd : {"train --lambda 0", "search --target-nnz 20 --strategy paper"}) {
        const fs::path report = dir / "report.json";
        const CliRun r = run_cli(cmd + " --device cpu --model dense:6-8-1 --steps 200 --lr 1e30 -q --report " +
                                 report.string());
        EXPECT_EQ(r.status, 1) << cmd << "\n" << r.output;
        EXPECT_NE(r.output.find("sparseprox: error: training diverged"), std::string::npos) << r.output;
        EXPECT_NE(r.output.find("step"), std::string::npos) << r.output;
        EXPECT_NE(r.output.find("try a smaller --lr"), std::string::npos) << r.output;
        std::ifstream in(report);
        ASSERT_TRUE(in.good()) << cmd;
        const nlohmann::json j = nlohmann::json::parse(in);
        EXPECT_TRUE(j["diverged"].get<bool>()) << j.dump();
        EXPECT_GE(j["diverged_step"].get<std::size_t>(), 1u);
        EXPECT_NE(j["error"].get<std::string>().find("diverged"), std::string::npos);
        fs::remove(report);
    }
    fs::remove_all(dir);
}

// ---- data splits ---------------------------------------------------------------------------------

TEST(Cli, DataSplitsUsersCanState) {
    const fs::path dir = temp_dir() / "splits";
    fs::create_directories(dir);
    // 442 rows of 6 features: shorter than the paper's 1000 training rows.
    std::string rows;
    for (int i = 0; i < 442; ++i) {
        rows += std::to_string(0.001 * i);
        for (int k = 1; k <= 6; ++k) rows += " " + std::to_string(k) + ":" + std::to_string(0.01 * ((i + k) % 50));
        rows += "\n";
    }
    const fs::path file = dir / "short.txt", test_file = dir / "short.t";
    write_bytes(file, rows);
    write_bytes(test_file, rows.substr(0, rows.size() / 2));
    const std::string base = "train --device cpu --steps 5 --model dense:6-4-1 -q --data libsvm:" + file.string();
    struct Case {
        std::string flags, rows;
    };
    const Case cases[] = {
        {"", "(354 train / 88 test rows)"},  // the default: the last 20% test
        {"--test-fraction 0.5", "(221 train / 221 test rows)"},
        {"--test-rows 42", "(400 train / 42 test rows)"},
        {"--train-rows 400", "(400 train / 42 test rows)"},
        {"--no-test", "(442 train rows, no test set)"},
        {"--test-data libsvm:" + test_file.string(), "(442 train / 221 test rows)"},
    };
    for (const Case& c : cases) {
        const fs::path report = dir / "r.json";
        const CliRun r = run_cli(base + " " + c.flags + " --report " + report.string());
        ASSERT_EQ(r.status, 0) << c.flags << "\n" << r.output;
        EXPECT_NE(r.output.find(c.rows), std::string::npos) << c.flags << "\n" << r.output;
        std::ifstream in(report);
        const nlohmann::json j = nlohmann::json::parse(in);
        if (c.flags == "--no-test") {
            EXPECT_TRUE(j["test_loss"].is_null());
            EXPECT_EQ(j["test_rows"].get<std::size_t>(), 0u);
            EXPECT_NE(r.output.find("no test set"), std::string::npos) << r.output;
        } else {
            EXPECT_TRUE(j["test_loss"].is_number()) << c.flags;
        }
        EXPECT_EQ(j["train_rows"].get<std::size_t>() + (c.flags.rfind("--test-data", 0) == 0 ? 0 : j["test_rows"].get<std::size_t>()),
                  442u);
    }
    const Case bad[] = {
        {"--train-rows 442", "libsvm_train_rows = 442"},
        {"--train-rows 100 --test-rows 10", "give one"},
        {"--no-test --test-rows 10", "--test-rows does not apply"},
        {"--no-test --test-data libsvm:" + test_file.string(), "choose one"},
    };
    for (const Case& c : bad) {
        const CliRun r = run_cli(base + " " + c.flags);
        EXPECT_EQ(r.status, 1) << c.flags << "\n" << r.output;
        EXPECT_NE(r.output.find(c.rows), std::string::npos) << c.flags << "\n" << r.output;
    }
    const CliRun mg = run_cli("train --device cpu --steps 5 --model dense:6-4-1 -q --train-rows 10");
    EXPECT_EQ(mg.status, 1) << mg.output;
    EXPECT_NE(mg.output.find("--train-rows does not apply"), std::string::npos) << mg.output;
    fs::remove_all(dir);
}

// ---- conventions -----------------------------------------------------------------------------------

TEST(Cli, UsageErrorsAreOneLineWithExitStatusOne) {
    struct Case {
        std::string args, needle;
    };
    const Case cases[] = {
        {"", "no command given"},
        {"trian", "unknown command 'trian'"},
        {"serch --steps 1", "did you mean 'search'?"},
        {"train --lamda 1e-3", "unknown flag '--lamda' for 'sparseprox train'; did you mean '--lambda'?"},
        {"train --lamda=1e-3", "did you mean '--lambda'?"},
        {"search --target-nnz 5 --stratgy warm", "did you mean '--strategy'?"},
        {"train --strategy warm", "a flag of 'sparseprox search'"},
        {"train --zzzzzzzzzz", "unknown flag '--zzzzzzzzzz'"},
        {"train --lr", "--lr needs a value"},
        {"train --lr abc", "--lr: 'abc' is not a number"},
        {"train --steps abc", "--steps: 'abc'"},
        {"train --test-fraction 1", "--test-fraction: '1'"},
        {"train extra", "unexpected argument 'extra'"},
        {"devices extra", "unexpected argument 'extra'"},
        {"--device cpu train", "flags go after the command"},
    };
    for (const Case& c : cases) {
        const CliRun r = run_cli(c.args);
        EXPECT_EQ(r.status, 1) << c.args << "\n" << r.output;
        EXPECT_EQ(r.output.rfind("sparseprox: error: ", 0), 0u) << c.args << "\n" << r.output;
        EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << c.args << "\n" << r.output;
        EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
    }
    // A far-off word gets no suggestion.
    EXPECT_EQ(run_cli("train --zzzzzzzzzz").output.find("did you mean"), std::string::npos);
    EXPECT_EQ(run_cli("--help").status, 0);
    EXPECT_EQ(run_cli("train --help").status, 0);
    EXPECT_EQ(run_cli("--version").status, 0);
}

TEST(Cli, FoldersAndNulBytesAreNamedAsTheyAre) {
    const fs::path dir = temp_dir() / "odd";
    fs::create_directories(dir / "folder.txt");
    fs::create_directories(dir / "folder.safetensors");
    for (const std::string& args : {"train --steps 1 --data libsvm:" + (dir / "folder.txt").string(),
                                    "train --steps 1 --init " + (dir / "folder.safetensors").string()}) {
        const CliRun r = run_cli(args);
        EXPECT_EQ(r.status, 1) << r.output;
        EXPECT_NE(r.output.find("is a directory"), std::string::npos) << args << "\n" << r.output;
    }
    // A NUL inside a value: the message shows it escaped and goes on to the end.
    write_bytes(dir / "nul.txt", std::string("1 1:0.5\n2 1:0.2\0" "5\n", 18));
    const CliRun r = run_cli("train --steps 1 --data libsvm:" + (dir / "nul.txt").string());
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("line 2"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("0.2\\05"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("is not a number"), std::string::npos) << r.output;
    fs::remove_all(dir);
}

// ---- outputs ---------------------------------------------------------------------------------------

TEST(Cli, OutputsAreCheckedBeforeTheWork) {
    const fs::path dir = temp_dir() / "outputs";
    fs::create_directories(dir / "folder");
    struct Case {
        std::string args, needle;
    };
    const Case cases[] = {
        {"train --steps 50 --report /no/such/folder/r.json", "--report '/no/such/folder/r.json': folder"},
        {"train --steps 50 --save " + (dir / "folder").string(), "is a directory"},
        {"search --steps 50 --target-nnz 100 --trace-csv /no/such/folder/t.csv", "--trace-csv"},
        {"train --steps 50 --report " + (dir / "a.json").string() + " --save " + (dir / "a.json").string(),
         "name the same file"},
    };
    for (const Case& c : cases) {
        const CliRun r = run_cli(c.args + " --device cpu --model dense:6-4-1");
        EXPECT_EQ(r.status, 1) << c.args << "\n" << r.output;
        EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
        // Refused before the data was loaded and the training started.
        EXPECT_EQ(r.output.find("sparseprox 0.1.0:"), std::string::npos) << c.args << "\n" << r.output;
    }
    fs::remove_all(dir);
}

TEST(Cli, EachOutputIsWrittenOnItsOwn) {
    // A file-size limit lets the small report through and stops the model: the report is still
    // written, says what failed, and the exit status is 1. No temporary file is left.
    const fs::path dir = temp_dir() / "independent";
    fs::create_directories(dir);
    for (const std::string cmd : {"train --lambda 1e-4", "search --target-nnz 90000 --tolerance 0.5 --strategy adaptive"}) {
        const fs::path report = dir / "r.json", model = dir / "m.safetensors", trace = dir / "t.csv";
        const std::string args = cmd + " --device cpu --steps 5 -q --model dense:6-300-300-1 --report " +
                                 report.string() + " --save " + model.string() +
                                 (cmd.rfind("search", 0) == 0 ? " --trace-csv " + trace.string() : "");
        const std::string sh = "ulimit -f 100 && " + cli_path() + " " + args + " 2>&1";
        CliRun r;
        FILE* p = popen(sh.c_str(), "r");
        ASSERT_NE(p, nullptr);
        std::array<char, 4096> buf{};
        while (fgets(buf.data(), buf.size(), p)) r.output += buf.data();
        const int st = pclose(p);
        r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        EXPECT_EQ(r.status, 1) << cmd << "\n" << r.output;
        EXPECT_NE(r.output.find("sparseprox: error: cannot write '" + model.string() + "'"), std::string::npos)
            << r.output;
        ASSERT_TRUE(fs::exists(report)) << cmd << "\n" << r.output;
        std::ifstream in(report);
        const nlohmann::json j = nlohmann::json::parse(in);
        EXPECT_TRUE(j["output_errors"].contains("--save")) << j.dump();
        if (cmd.rfind("search", 0) == 0) EXPECT_TRUE(fs::exists(trace));
        EXPECT_FALSE(fs::exists(model));
        for (const auto& e : fs::directory_iterator(dir))
            EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    fs::remove_all(dir);
}

TEST(Cli, AReportOntoALinkWritesThroughTheLink) {
    const fs::path dir = temp_dir() / "link";
    fs::create_directories(dir);
    write_bytes(dir / "target.json", "{}");
    fs::create_symlink("target.json", dir / "report.json");
    const CliRun r = run_cli("train --device cpu --steps 5 -q --model dense:6-4-1 --report " + (dir / "report.json").string());
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(fs::is_symlink(dir / "report.json"));
    std::ifstream in(dir / "target.json");
    EXPECT_EQ(nlohmann::json::parse(in)["steps"].get<std::size_t>(), 5u);
    fs::remove_all(dir);
}

TEST(Cli, ASignalDuringAWriteLeavesNoTemporaryFile) {
    // SIGTERM while the model (64 MB) is being written: the first asks for a stop (the write
    // goes on), the second kills at once, and the temporary file goes with the process.
    const fs::path dir = temp_dir() / "signal";
    fs::create_directories(dir);
    std::string rows;
    for (int i = 0; i < 8; ++i) rows += "0.5 1:0.1 2:0.2 3:0.3 4:0.4 5:0.5 6:0.6\n";
    write_bytes(dir / "tiny.txt", rows);
    const std::string model = (dir / "big.safetensors").string();
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        const std::string cmd = "exec " + cli_path() + " train --device cpu --steps 1 -q --no-test --lambda 0 " +
                                "--model dense:6-4000-4000-1 --data libsvm:" + (dir / "tiny.txt").string() +
                                " --save " + model + " > /dev/null 2>&1";
        execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    bool seen = false;
    int st = 0;
    for (int i = 0; i < 600000 && !seen; ++i) {  // up to about a minute
        if (waitpid(pid, &st, WNOHANG) == pid) break;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
            std::error_code sec;
            if (e.path().filename().string().find(".tmp.") != std::string::npos && fs::file_size(e.path(), sec) > 0 && !sec)
                seen = true;
        }
        if (!seen) usleep(100);
    }
    if (seen) {
        kill(pid, SIGTERM);
        usleep(2000);  // two signals sent at once may be delivered as one
        kill(pid, SIGTERM);
        waitpid(pid, &st, 0);
    }
    if (!seen) {
        fs::remove_all(dir);
        GTEST_SKIP() << "the write finished before the test could interrupt it";
    }
    // Killed by the second signal; or, when the write ended between the two, exit status 143
    // with the whole file.
    EXPECT_TRUE((WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM) || (WIFEXITED(st) && WEXITSTATUS(st) == 143)) << st;
    for (const auto& e : fs::directory_iterator(dir))
        EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
    fs::remove_all(dir);
}
