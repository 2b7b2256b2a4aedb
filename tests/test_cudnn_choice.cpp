// The cuDNN algorithm choice (cuda/cudnn_choice.h) on hand-made candidate lists: host code only,
// so it runs without a GPU wherever cuDNN's headers are. Only CUDNN_FMA_MATH candidates may be
// chosen (CUDNN_DEFAULT_MATH may run TF32 for float data), deterministic ones first, within the
// workspace cap; the plan's descriptor gets the chosen math type.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda/cudnn_choice.h"
#include "sparseprox/error.h"
#include "test_util.h"

namespace {

using namespace sparseprox::cuda::cudnn_choice;
using sparseprox::testing_util::throws_error_with;

template <class Perf>
Perf candidate(int algo, cudnnMathType_t math, cudnnDeterminism_t det = CUDNN_DETERMINISTIC,
               std::size_t memory = 0, cudnnStatus_t status = CUDNN_STATUS_SUCCESS) {
    Perf p{};
    p.algo = static_cast<decltype(p.algo)>(algo);
    p.status = status;
    p.time = -1.0f;
    p.memory = memory;
    p.determinism = det;
    p.mathType = math;
    return p;
}

template <class Perf>
class CudnnChoice : public ::testing::Test {};

using PerfTypes = ::testing::Types<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionBwdDataAlgoPerf_t,
                                   cudnnConvolutionBwdFilterAlgoPerf_t>;
TYPED_TEST_SUITE(CudnnChoice, PerfTypes);

TYPED_TEST(CudnnChoice, AcceptsOnlyFmaMath) {
    using P = TypeParam;
    // Faster candidates in default and tensor-op math come first; the FMA one must win.
    const std::vector<P> perf = {candidate<P>(0, CUDNN_DEFAULT_MATH), candidate<P>(1, CUDNN_TENSOR_OP_MATH),
                                 candidate<P>(2, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION),
                                 candidate<P>(3, CUDNN_FMA_MATH)};
    bool deterministic = true;
    const P& c = choose(perf, 4, "forward", "test shape", &deterministic);
    EXPECT_EQ(static_cast<int>(c.algo), 3);
    EXPECT_EQ(c.mathType, CUDNN_FMA_MATH);
    EXPECT_TRUE(deterministic);
    EXPECT_FALSE(usable(perf[0], false));
    EXPECT_TRUE(usable(perf[3], true));
}

TYPED_TEST(CudnnChoice, NoFmaCandidateIsAnError) {
    using P = TypeParam;
    const std::vector<P> perf = {candidate<P>(0, CUDNN_DEFAULT_MATH), candidate<P>(1, CUDNN_TENSOR_OP_MATH)};
    bool deterministic = true;
    EXPECT_TRUE(throws_error_with([&] { choose(perf, 2, "backward-data", "conv 3x3", &deterministic); },
                                  {"CUDNN_FMA_MATH", "backward-data", "conv 3x3", "256 MiB"}));
}

TYPED_TEST(CudnnChoice, DeterministicFirstThenFastest) {
    using P = TypeParam;
    std::vector<P> perf = {candidate<P>(0, CUDNN_FMA_MATH, CUDNN_NON_DETERMINISTIC),
                           candidate<P>(1, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC),
                           candidate<P>(2, CUDNN_FMA_MATH, CUDNN_DETERMINISTIC)};
    bool deterministic = true;
    EXPECT_EQ(static_cast<int>(choose(perf, 3, "forward", "s", &deterministic).algo), 2);
    EXPECT_TRUE(deterministic);
    // Without the deterministic FMA candidate: the fastest FMA one, flagged non-deterministic.
    perf.pop_back();
    EXPECT_EQ(static_cast<int>(choose(perf, 2, "forward", "s", &deterministic).algo), 0);
    EXPECT_FALSE(deterministic);
}

TYPED_TEST(CudnnChoice, SkipsUnsupportedOversizedAndUnreturned) {
    using P = TypeParam;
    const std::vector<P> perf = {
        candidate<P>(0, CUDNN_FMA_MATH, CUDNN_DETERMINISTIC, 0, CUDNN_STATUS_NOT_SUPPORTED),
        candidate<P>(1, CUDNN_FMA_MATH, CUDNN_DETERMINISTIC, kWorkspaceCapBytes + 1),
        candidate<P>(2, CUDNN_FMA_MATH, CUDNN_DETERMINISTIC, kWorkspaceCapBytes),
        candidate<P>(3, CUDNN_FMA_MATH)};
    bool deterministic = true;
    EXPECT_EQ(static_cast<int>(choose(perf, 4, "forward", "s", &deterministic).algo), 2);
    // Entries past n_returned were not filled by cuDNN and are never looked at...
    EXPECT_EQ(first_usable(perf, 2, false), -1);
    // ...and a count larger than the list is clamped to it.
    EXPECT_EQ(first_usable(perf, 99, true), 2);
    EXPECT_EQ(first_usable(perf, 0, false), -1);
}

TEST(CudnnChoicePlan, DescriptorGetsTheChosenMathType) {
    EXPECT_EQ(plan_math_type(CUDNN_FMA_MATH, CUDNN_FMA_MATH, CUDNN_FMA_MATH, "s"), CUDNN_FMA_MATH);
    EXPECT_TRUE(throws_error_with([] { plan_math_type(CUDNN_FMA_MATH, CUDNN_DEFAULT_MATH, CUDNN_FMA_MATH, "conv"); },
                                  {"different math types", "conv"}));
}

}  // namespace
