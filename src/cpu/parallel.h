// The OpenMP conventions of the CPU operations.
#pragma once

#include <cstddef>

namespace sparseprox {
namespace cpu {

using idx = std::ptrdiff_t;                    // OpenMP loops want a signed index
constexpr std::size_t kParallelMin = 1 << 14;  // below this many elements, threading costs more than it saves

}  // namespace cpu
}  // namespace sparseprox
