// What the step-graph tests compare (test_step_graphs.cpp on the CPU, test_parity.cpp on CUDA):
// a run's end state with graphs against the same run without, bit for bit.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/engine.h"

namespace sparseprox {
namespace testing_util {

struct GraphRun {
    std::vector<float> params, accumulated;
    EngineStatus status;
    double eval_loss = 0.0;
    std::size_t recordings = 0;  // the recording test backend's count (0 elsewhere)
};

inline void expect_same_runs(const GraphRun& a, const GraphRun& b) {
    EXPECT_EQ(a.status.steps_run, b.status.steps_run);
    EXPECT_EQ(a.status.stopped, b.status.stopped);
    EXPECT_EQ(a.status.nnz, b.status.nnz);
    EXPECT_EQ(a.status.loss_sum, b.status.loss_sum);
    EXPECT_EQ(a.eval_loss, b.eval_loss);
    ASSERT_EQ(a.params.size(), b.params.size());
    EXPECT_EQ(std::memcmp(a.params.data(), b.params.data(), a.params.size() * sizeof(float)), 0);
    ASSERT_EQ(a.accumulated.size(), b.accumulated.size());
    EXPECT_EQ(std::memcmp(a.accumulated.data(), b.accumulated.data(), a.accumulated.size() * sizeof(float)), 0);
}

}  // namespace testing_util
}  // namespace sparseprox
