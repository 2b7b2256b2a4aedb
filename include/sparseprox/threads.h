// SparseProx: the threads of the CPU backend.
//
// The CPU backend runs on one pool of threads: its element-wise loops and its GEMMs, which it
// splits itself and hands to OpenBLAS one block per thread with OpenBLAS held at one thread, so
// the two never compete for cores (the library calls openblas_set_num_threads(1) when it first
// creates a CPU backend: a program that also calls OpenBLAS directly sees that setting).
//
// How many threads (the first rule that applies):
//   1. set_num_threads(n) with n >= 1 (the CLI's --threads N): exactly n.
//   2. The environment variable SPARSEPROX_NUM_THREADS=n: exactly n ("auto" or unset: go on).
//   3. Automatic: at most the physical cores this process may run on (sched_getaffinity, one
//      thread per core whatever its hardware threads; fewer when the cgroup's CPU quota, cgroup v2
//      cpu.max or v1 cfs_quota_us, allows fewer), and during training the count the steps run
//      fastest at: the backend times each of 1, 2, 4, ... up to that maximum over at least 5
//      steps and 50 ms, keeps the one with the shortest mean step and times them again every
//      few seconds, so a neighbour that starts or
//      stops using cores moves it. The count never changes a result: every operation gives
//      the same bits at any thread count (tests/test_threads.cpp).
#pragma once

#include "sparseprox/export.h"

#include <string>

namespace sparseprox {

// n >= 1: the CPU backend uses exactly n threads; 0: automatic (rules 2 and 3 above). Negative
// counts throw sparseprox::Error. Takes effect at the next operation of every CPU backend.
SPARSEPROX_API void set_num_threads(int n);

// The most threads the CPU backend uses now: the fixed count of rules 1-2, or the automatic
// maximum of rule 3.
SPARSEPROX_API int num_threads();

// True when the count is automatic (rule 3), false when rule 1 or 2 fixed it.
SPARSEPROX_API bool num_threads_automatic();

// One line: "2 threads (automatic: 2 physical cores available; adapts 1..2 to the load)" or
// "1 thread (set by SPARSEPROX_NUM_THREADS)".
SPARSEPROX_API std::string describe_threads();

}  // namespace sparseprox
