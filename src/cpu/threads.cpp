// The CPU backend's thread count: the rule of include/sparseprox/threads.h and the step tuner.
//
// Why one pool and a tuner: OpenBLAS's pthread pool and the OpenMP team each default to one
// thread per CPU, and each spins on its cores for a while after its work ends, so alternating
// GEMMs and element-wise loops made the two pools spin against each other (2 cores, Mackey-Glass
// full batch: 63k samples/s at the defaults against 233k with OpenBLAS at one thread). Here
// OpenBLAS stays at one thread and the backend splits its GEMMs over the OpenMP team itself
// (cpu/gemm.h). A neighbour that keeps a core busy makes every parallel region wait for the
// thread that shares its core (a scheduler time slice, milliseconds, against regions of tens of
// microseconds): 2.1k samples/s on MNIST against 38k alone. Fewer threads is then faster, and
// which count is best depends on the workload and the neighbours, so the automatic setting
// measures it.
#include "cpu/threads.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "sparseprox/error.h"
#include "sparseprox/threads.h"

namespace sparseprox {
namespace cpu {
namespace {

std::atomic<int> g_by_call{0};  // set_num_threads: 0 = not fixed by a call
std::atomic<std::uint64_t> g_generation{0};

bool read_first_line(const std::string& path, std::string& line) {
    std::ifstream in(path);
    return static_cast<bool>(std::getline(in, line));
}

// The cgroup CPU quota in whole CPUs (rounded up), or 0 when there is none or it is unreadable.
int cgroup_cpu_limit() {
    std::string line;
    // cgroup v2: "<quota> <period>" or "max <period>" in the process's own group, else the root.
    std::string v2_path;
    {
        std::ifstream cg("/proc/self/cgroup");
        std::string l;
        while (std::getline(cg, l))
            if (l.rfind("0::", 0) == 0) v2_path = l.substr(3);
    }
    for (const std::string& path : {"/sys/fs/cgroup" + v2_path + "/cpu.max", std::string("/sys/fs/cgroup/cpu.max")}) {
        if (!read_first_line(path, line)) continue;
        std::istringstream s(line);
        std::string quota;
        double period = 0;
        if (s >> quota >> period && quota != "max" && period > 0) {
            const double q = std::atof(quota.c_str());
            if (q > 0) return std::max(1, static_cast<int>(std::ceil(q / period)));
        }
        return 0;
    }
    // cgroup v1.
    std::string quota, period;
    if (read_first_line("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", quota) &&
        read_first_line("/sys/fs/cgroup/cpu/cpu.cfs_period_us", period)) {
        const double q = std::atof(quota.c_str()), p = std::atof(period.c_str());
        if (q > 0 && p > 0) return std::max(1, static_cast<int>(std::ceil(q / p)));
    }
    return 0;
}

int count_available_cores() {
    cpu_set_t set;
    CPU_ZERO(&set);
    int n_cpus = 0;
    std::set<std::pair<std::string, std::string>> cores;
    bool topology = true;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE; ++c) {
            if (!CPU_ISSET(c, &set)) continue;
            ++n_cpus;
            const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/";
            std::string package, core;
            if (read_first_line(dir + "physical_package_id", package) && read_first_line(dir + "core_id", core))
                cores.emplace(package, core);
            else
                topology = false;
        }
    }
    int n = topology && !cores.empty() ? static_cast<int>(cores.size()) : n_cpus;
    if (n <= 0) n = std::max(1, omp_get_num_procs());
    const int quota = cgroup_cpu_limit();
    if (quota > 0) n = std::min(n, quota);
    return std::max(n, 1);
}

// A whole positive count, or 0 for "auto"; anything else is an error naming the variable.
int parse_count(const std::string& text, const char* what) {
    if (text.empty() || text == "auto") return 0;
    if (text.size() > 6 || text.find_first_not_of("0123456789") != std::string::npos || std::stoi(text) < 1)
        throw Error(std::string(what) + ": '" + text + "' is not a thread count (a whole number >= 1, or auto)");
    return std::stoi(text);
}

// SPARSEPROX_NUM_THREADS, read once: 0 when unset or "auto".
int environment_count() {
    static const int n = [] {
        const char* env = std::getenv("SPARSEPROX_NUM_THREADS");
        return env ? parse_count(env, "SPARSEPROX_NUM_THREADS") : 0;
    }();
    return n;
}

}  // namespace

int available_cores() {
    static const int n = count_available_cores();
    return n;
}

ThreadSetting thread_setting() {
    ThreadSetting s;
    s.generation = g_generation.load();
    const int by_call = g_by_call.load();
    const int by_env = by_call > 0 ? 0 : environment_count();  // a bad variable matters only when used
    if (by_call > 0) {
        s.n = by_call;
        s.automatic = false;
        s.source = "set_num_threads";
    } else if (by_env > 0) {
        s.n = by_env;
        s.automatic = false;
        s.source = "SPARSEPROX_NUM_THREADS";
    } else {
        s.n = available_cores();
        s.automatic = true;
        s.source = "automatic";
    }
    return s;
}

void hold_blas_to_one_thread() {
    static std::once_flag once;
    std::call_once(once, [] { openblas_set_num_threads(1); });
}

// ---- the tuner ----------------------------------------------------------------------------------

void ThreadTuner::reset(const ThreadSetting& s) {
    generation_ = s.generation;
    automatic_ = s.automatic && s.n > 1;
    candidates_.clear();
    if (automatic_) {
        // Ascending: 1, 2, 4, ... and the maximum. One thread first, because it is never far
        // off (at most the core count slower) while too many threads next to a busy neighbour can
        // be ten times slower; a later candidate that is clearly slower is dropped after two
        // steps (end_step), so looking at a bad count costs little.
        for (int p = 1; p < s.n; p *= 2) candidates_.push_back(p);
        candidates_.push_back(s.n);
        scores_.assign(candidates_.size(), 0.0);
        candidate_ = 0;
        exploring_ = true;
        steps_seen_ = 0;
        times_.clear();
        winner_ = 0;
        interval_s_ = 1.0;
        round_start_ = Clock::now();
        set_current(candidates_[0]);
    } else {
        set_current(s.n);
    }
}

void ThreadTuner::set_current(int n) {
    current_ = n;
    omp_set_num_threads(n);
}

void ThreadTuner::apply() {
    const ThreadSetting s = thread_setting();
    if (s.generation != generation_ || (!automatic_ && current_ != s.n) || current_ == 0) reset(s);
    omp_set_num_threads(current_);  // the calling thread may be a different one than last time
}

void ThreadTuner::begin_step() {
    apply();
    if (!automatic_) return;
    const Clock::time_point now = Clock::now();
    if (!exploring_ && now >= hold_until_) {
        round_start_ = now;
        exploring_ = true;
        candidate_ = 0;
        steps_seen_ = 0;
        times_.clear();
        set_current(candidates_[0]);
    }
    step_start_ = now;
    in_step_ = true;
}

void ThreadTuner::end_step() {
    if (!automatic_ || !in_step_) return;
    in_step_ = false;
    if (!exploring_) return;
    const double seconds = std::chrono::duration<double>(Clock::now() - step_start_).count();
    if (steps_seen_++ < kWarmSteps) return;  // NOLINT: kWarmSteps may be 0
    times_.push_back(seconds);
    // A candidate already twice as slow as the best so far on two steps, or four times on one,
    // is dropped early: the cost of looking at a bad count stays a step or two.
    double best = 0.0;
    for (std::size_t i = 0; i < candidate_; ++i)
        if (scores_[i] > 0 && (best == 0.0 || scores_[i] < best)) best = scores_[i];
    const bool hopeless = best > 0 && (times_.back() > 4.0 * best ||
                                       (times_.size() >= 2 &&
                                        std::min(times_[times_.size() - 1], times_[times_.size() - 2]) > 2.0 * best));
    double total = 0.0;
    for (double v : times_) total += v;
    const bool measured = static_cast<int>(times_.size()) >= kMeasureSteps && total >= kMeasureSeconds;
    if (!measured && !hopeless) return;
    scores_[candidate_] = total / static_cast<double>(times_.size());
    next_candidate();
}

void ThreadTuner::next_candidate() {
    times_.clear();
    steps_seen_ = 0;
    if (++candidate_ < candidates_.size()) {
        set_current(candidates_[candidate_]);
        return;
    }
    // Round over: the fastest count holds for the interval, which doubles while it keeps winning.
    std::size_t best = 0;
    for (std::size_t i = 1; i < candidates_.size(); ++i)
        if (scores_[i] < scores_[best]) best = i;
    const int winner = candidates_[best];
    interval_s_ = winner == winner_ ? std::min(interval_s_ * 2.0, 16.0) : 1.0;
    winner_ = winner;
    exploring_ = false;
    set_current(winner);
    // The hold lasts the interval, and at least 20 rounds' time, so tuning costs at most about 5%
    // however long a step is (a CNN step on a loaded machine can take seconds).
    const Clock::time_point now = Clock::now();
    const double round_s = std::chrono::duration<double>(now - round_start_).count();
    hold_until_ = now + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(std::max(interval_s_, 20.0 * round_s)));
}

}  // namespace cpu

// ---- the public API ---------------------------------------------------------------------------------

void set_num_threads(int n) {
    if (n < 0) throw Error("set_num_threads: " + std::to_string(n) + " is not a thread count (>= 1, or 0 for automatic)");
    cpu::g_by_call.store(n);
    cpu::g_generation.fetch_add(1);
}

int num_threads() { return cpu::thread_setting().n; }

bool num_threads_automatic() { return cpu::thread_setting().automatic; }

std::string describe_threads() {
    const cpu::ThreadSetting s = cpu::thread_setting();
    const std::string count = std::to_string(s.n) + (s.n == 1 ? " thread" : " threads");
    if (!s.automatic) return count + " (set by " + s.source + ")";
    const int cores = cpu::available_cores();
    return count + " (automatic: " + std::to_string(cores) + " physical core" + (cores == 1 ? "" : "s") +
           " available" + (s.n > 1 ? "; adapts 1.." + std::to_string(s.n) + " to the load)" : ")");
}

}  // namespace sparseprox
