// A run whose loss stops being a number ends with DivergedError naming the steps.
#include <gtest/gtest.h>

#include <string>

#include "sparseprox/sparseprox.h"

using namespace sparseprox;

namespace {

DataSplit small_data() {
    MackeyGlassOptions o;
    o.n_train = 64;
    o.n_test = 16;
    return mackey_glass(o);
}

}  // namespace

TEST(Divergence, AHugeLearningRateStopsTheRunWithTheSteps) {
    const DataSplit data = small_data();
    const Model init = Model::initialize(ModelSpec::parse("dense:6-8-1"), 0);
    TrainOptions opt;
    opt.device = Device{};
    opt.lr = 1e30f;
    opt.lambdas = {0.0f};
    opt.steps = 500;
    try {
        train(init, data.train, &data.test, opt);
        FAIL() << "a run at lr 1e30 finished";
    } catch (const DivergedError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("diverged"), std::string::npos) << msg;
        EXPECT_NE(msg.find("1e+30"), std::string::npos) << msg;
        EXPECT_GE(e.first_step(), 1u);
        EXPECT_LE(e.first_step(), e.last_step());
        EXPECT_LE(e.last_step(), 32u);  // the first poll sees it
        EXPECT_NE(msg.find(std::to_string(e.last_step())), std::string::npos) << msg;
    }
}

TEST(Divergence, PollingEveryStepNamesTheExactStep) {
    const DataSplit data = small_data();
    const Model init = Model::initialize(ModelSpec::parse("dense:6-8-1"), 0);
    TrainOptions opt;
    opt.lr = 1e30f;
    opt.lambdas = {0.0f};
    opt.steps = 100;
    opt.record_nnz_history = true;  // one poll per step
    try {
        train(init, data.train, &data.test, opt);
        FAIL() << "a run at lr 1e30 finished";
    } catch (const DivergedError& e) {
        EXPECT_EQ(e.first_step(), e.last_step());
        EXPECT_NE(std::string(e.what()).find("at step " + std::to_string(e.last_step())), std::string::npos)
            << e.what();
    }
}

TEST(Divergence, AStableRunIsUnaffected) {
    const DataSplit data = small_data();
    const Model init = Model::initialize(ModelSpec::parse("dense:6-8-1"), 0);
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {1e-4f};
    opt.steps = 100;
    EXPECT_NO_THROW(train(init, data.train, &data.test, opt));
}
