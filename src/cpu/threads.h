// The thread count of the CPU backend (include/sparseprox/threads.h states the rule) and the
// tuner that picks it, step by step, when it is automatic.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace sparseprox {
namespace cpu {

// The physical cores this process may use: the CPUs of its affinity mask counted once per
// (package, core) pair, capped by the cgroup CPU quota; at least 1. Read once.
int available_cores();

// The count in force: fixed (set_num_threads or SPARSEPROX_NUM_THREADS) or the automatic maximum.
struct ThreadSetting {
    int n = 1;
    bool automatic = true;
    const char* source = "automatic";  // "set_num_threads", "SPARSEPROX_NUM_THREADS" or "automatic"
    std::uint64_t generation = 0;      // changes with every set_num_threads call
};
ThreadSetting thread_setting();

// OpenBLAS at one thread (its GEMMs run on the backend's threads, cpu/gemm.h), once per process.
void hold_blas_to_one_thread();

// The automatic count, chosen by timing training steps (begin_step .. end_step) at each
// candidate count (1, 2, 4, ... and the maximum): each candidate runs at least kMeasureSteps
// steps and kMeasureSeconds (one or two steps for one clearly slower than the best), its mean
// step time is its score, and the choice holds for an interval that doubles (1 s up to 16 s)
// while the same count keeps winning, and is at least 20 times the round's own duration. A fixed
// count is simply applied. Every call sets the calling thread's OpenMP team size
// (omp_set_num_threads), which is all the backend's loops read.
class ThreadTuner {
public:
    void apply();       // the current choice onto the calling thread (any operation may call it)
    void begin_step();  // a training step starts
    void end_step();    // ... and ends: its time counts for the candidate being measured
    int current() const { return current_; }

private:
    using Clock = std::chrono::steady_clock;
    static constexpr int kWarmSteps = 0;     // untimed after a switch (waking threads costs microseconds)
    static constexpr int kMeasureSteps = 5;  // timed per candidate at least; their mean is its score
    // ... over at least this long: beside a process that keeps a core busy, a few milliseconds at
    // two threads can fall where the scheduler has parked the neighbour and look faster than one
    // thread, while over several scheduler periods the neighbour takes its share and the same
    // count runs at half speed (Mackey-Glass, 5 steps of 2 ms: two threads won 3 rounds of 4 and
    // the run lost a third against one thread). A mean over the window counts the slow steps
    // that a median of a few would skip.
    static constexpr double kMeasureSeconds = 0.05;

    void reset(const ThreadSetting& s);
    void set_current(int n);
    void next_candidate();

    std::uint64_t generation_ = ~std::uint64_t{0};
    bool automatic_ = false;
    int current_ = 0;
    std::vector<int> candidates_;
    std::vector<double> scores_;     // median step seconds per candidate (this round)
    std::size_t candidate_ = 0;      // index being measured
    bool exploring_ = false;
    int steps_seen_ = 0;             // steps at the current candidate this round
    std::vector<double> times_;      // step seconds of the current candidate
    int winner_ = 0;                 // the count chosen by the previous round
    double interval_s_ = 1.0;        // how long a choice holds before the next round
    Clock::time_point hold_until_{};
    Clock::time_point round_start_{};
    Clock::time_point step_start_{};
    bool in_step_ = false;
};

}  // namespace cpu
}  // namespace sparseprox
