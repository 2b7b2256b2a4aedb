// The process-wide stop request and the signal handler that makes one (sparseprox/stop.h).
#include "sparseprox/stop.h"

#include <signal.h>

#include <atomic>

#include "core/atomic_file.h"
#include "sparseprox/files.h"

namespace sparseprox {

namespace {

// Lock-free atomics only: the handler touches them.
std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the stop flag is set from a signal handler");

extern "C" void stop_on_signal(int sig) {
    int expected = 0;
    if (!g_signal.compare_exchange_strong(expected, sig)) {
        remove_temp_files_and_die(sig);  // the second signal: no more waiting
        return;
    }
    g_stop.store(true);
}

}  // namespace

void request_stop() noexcept { g_stop.store(true); }
bool stop_requested() noexcept { return g_stop.load(std::memory_order_relaxed); }
void clear_stop_request() noexcept {
    g_signal.store(0);
    g_stop.store(false);
}
int stop_signal() noexcept { return g_signal.load(); }

void install_stop_on_signal() {
    for (int sig : {SIGINT, SIGTERM}) {
        struct sigaction old {};
        if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler == SIG_IGN) continue;
        struct sigaction sa {};
        sa.sa_handler = stop_on_signal;
        sigemptyset(&sa.sa_mask);
        // Both signals blocked while the handler runs, so two at once count as first and second.
        sigaddset(&sa.sa_mask, SIGINT);
        sigaddset(&sa.sa_mask, SIGTERM);
        ::sigaction(sig, &sa, nullptr);
    }
}

}  // namespace sparseprox
