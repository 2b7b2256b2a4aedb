// The OpenMP conventions of the CPU operations.
#pragma once

#include <cstddef>

namespace sparseprox {
namespace cpu {

using idx = std::ptrdiff_t;                    // OpenMP loops want a signed index
constexpr std::size_t kParallelMin = 1 << 14;  // below this many elements, threading costs more than it saves
// Element-wise loops that also count go by blocks of this many elements: the OpenMP loop runs
// over blocks and an inner loop with a 32-bit counter per block vectorizes (a reduction into a
// 64-bit counter in the OpenMP loop itself does not). 16 KB of floats per block.
constexpr std::size_t kBlock = 4096;

}  // namespace cpu
}  // namespace sparseprox
