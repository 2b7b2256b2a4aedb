// The cuDNN algorithm policy of cudnn_ops.h, on the heuristic's candidate lists alone (no handle,
// no device), so that it can be tested on any machine with cuDNN's headers. Included by
// cudnn_ops.cpp and its host-side test only; the rest of the library never sees cudnn.h.
#pragma once

#include <cudnn.h>

#include <cstddef>
#include <string>
#include <vector>

#include "sparseprox/error.h"

namespace sparseprox {
namespace cuda {
namespace cudnn_choice {

// The cap on the workspace of any one algorithm. 256 MiB is < 0.2% of an H200 and < 1% of a
// 40 GB A100; the algorithms that want more (large FFT tilings) are rarely the fastest at the
// sizes of the networks trained here.
constexpr std::size_t kWorkspaceCapBytes = std::size_t{256} << 20;

// A candidate this library may run: supported, exactly CUDNN_FMA_MATH (plain FP32 FMAs:
// CUDNN_DEFAULT_MATH may run TF32 on tensor cores for float data, as may the tensor-op types),
// within the workspace cap, and deterministic when asked.
template <class Perf>
bool usable(const Perf& p, bool deterministic_only) {
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > kWorkspaceCapBytes) return false;
    if (p.mathType != CUDNN_FMA_MATH) return false;
    return !deterministic_only || p.determinism == CUDNN_DETERMINISTIC;
}

// The first usable candidate of a heuristic list (ordered by expected speed) of which cuDNN
// filled n_returned entries; -1 when none is.
template <class Perf>
int first_usable(const std::vector<Perf>& perf, int n_returned, bool deterministic_only) {
    const int n = n_returned < static_cast<int>(perf.size()) ? n_returned : static_cast<int>(perf.size());
    for (int i = 0; i < n; ++i)
        if (usable(perf[static_cast<std::size_t>(i)], deterministic_only)) return i;
    return -1;
}

// The fastest usable deterministic candidate, else the fastest usable one (then
// *deterministic is set to false). Throws sparseprox::Error naming the direction and `what`
// when no candidate is usable.
template <class Perf>
const Perf& choose(const std::vector<Perf>& perf, int n_returned, const char* direction, const std::string& what,
                   bool* deterministic) {
    int i = first_usable(perf, n_returned, true);
    if (i < 0) {
        i = first_usable(perf, n_returned, false);
        if (i >= 0) *deterministic = false;
    }
    if (i < 0)
        throw Error(std::string("cuDNN offers no FP32 (CUDNN_FMA_MATH) ") + direction + " algorithm within " +
                    std::to_string(kWorkspaceCapBytes >> 20) + " MiB of workspace for " + what);
    return perf[static_cast<std::size_t>(i)];
}

// The math type the one convolution descriptor of a plan is set to before use: that of the
// chosen candidates, which must agree (forward, backward data and backward filter share the
// descriptor). With `usable` above they are all CUDNN_FMA_MATH; a disagreement throws.
inline cudnnMathType_t plan_math_type(cudnnMathType_t forward, cudnnMathType_t backward_data,
                                      cudnnMathType_t backward_filter, const std::string& what) {
    if (forward != backward_data || forward != backward_filter)
        throw Error("cuDNN chose algorithms of different math types (" + std::to_string(forward) + ", " +
                    std::to_string(backward_data) + ", " + std::to_string(backward_filter) + ") for " + what);
    return forward;
}

}  // namespace cudnn_choice
}  // namespace cuda
}  // namespace sparseprox
