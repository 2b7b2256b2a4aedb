// Whether this build's device code can run on the current device (kernels/probe.cu).
#pragma once

#include <string>

namespace sparseprox {
namespace cuda {

// True when this build holds code the current device can run (an sm_75 card with a build for
// 80-real;90 has none); otherwise false with the CUDA error text in `why`.
bool kernels_runnable(std::string* why);

}  // namespace cuda
}  // namespace sparseprox
