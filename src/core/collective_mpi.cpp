// The MPI group (core/collective.h): every collective is non-blocking (MPI_Iallreduce,
// MPI_Ibcast, MPI_Iallgather) and polled with MPI_Test against a deadline, so a rank that died
// or hangs turns into an error naming it instead of a hang.
//
// The liveness round after a timeout: every rank that timed out sends a ping to every other on
// a communicator of its own (a duplicate, so no message of the training can match) and waits a
// short deadline for theirs. Healthy ranks are all stuck in the same collective and time out
// within about one poll of each other, so they answer each other; a rank that died, hangs, or
// runs a different step does not answer, and is named.
//
// Polling: the first polls spin (a two-rank step of a small model completes its all-reduce in
// microseconds), later ones sleep with a growing pause, up to 1 ms, so a rank waiting for a
// slower one leaves the shared cores to it.
#if SPARSEPROX_WITH_MPI

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/collective.h"
#include "sparseprox/error.h"

namespace sparseprox {
namespace {

using Clock = std::chrono::steady_clock;

// The most elements one MPI call takes (its count is an int).
constexpr std::size_t kMaxCount = std::size_t{1} << 30;
constexpr int kPingTag = 7;

bool mpi_finalized() {
    int f = 0;
    MPI_Finalized(&f);
    return f != 0;
}

std::string mpi_error_text(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
    return std::string(text, static_cast<std::size_t>(len));
}

void check_mpi(int code, const char* call) {
    if (code != MPI_SUCCESS) throw Error(std::string(call) + " failed: " + mpi_error_text(code));
}

class MpiCollective final : public Collective {
public:
    // Takes `comm` (freed by the destructor when `owned`); duplicates it for the liveness round.
    MpiCollective(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
        // Errors come back as codes (and become sparseprox::Error), not as an abort inside MPI.
        MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
        check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
        check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
        check_mpi(MPI_Comm_dup(comm_, &ping_), "MPI_Comm_dup");
        MPI_Comm_set_errhandler(ping_, MPI_ERRORS_RETURN);
    }

    ~MpiCollective() override {
        if (mpi_finalized()) return;
        MPI_Comm_free(&ping_);
        if (owned_) MPI_Comm_free(&comm_);
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    double timeout() const override { return timeout_; }
    void set_timeout(double seconds) override { timeout_ = seconds; }

    void sum(float* data, std::size_t n, const char* what) override { sum_of(data, n, MPI_FLOAT, what); }
    void sum(double* data, std::size_t n, const char* what) override { sum_of(data, n, MPI_DOUBLE, what); }

    void broadcast(void* data, std::size_t bytes, int root, const char* what) override {
        if (size_ == 1) return;
        auto* p = static_cast<unsigned char*>(data);
        for (std::size_t done = 0; done < bytes; done += kMaxCount) {
            const int count = static_cast<int>(std::min(kMaxCount, bytes - done));
            MPI_Request req;
            check_mpi(MPI_Ibcast(p + done, count, MPI_BYTE, root, comm_, &req), "MPI_Ibcast");
            wait(req, what);
        }
    }

    std::vector<double> gather(const std::vector<double>& mine, const char* what) override {
        if (mine.size() > kMaxCount / static_cast<std::size_t>(size_))
            throw Error(std::string(what) + ": " + std::to_string(mine.size()) + " values per rank are too many to gather");
        std::vector<double> all(mine.size() * static_cast<std::size_t>(size_));
        const int count = static_cast<int>(mine.size());
        MPI_Request req;
        check_mpi(MPI_Iallgather(mine.data(), count, MPI_DOUBLE, all.data(), count, MPI_DOUBLE, comm_, &req),
                  "MPI_Iallgather");
        wait(req, what);
        return all;
    }

    std::shared_ptr<Collective> split(int color) override {
        MPI_Comm sub = MPI_COMM_NULL;
        check_mpi(MPI_Comm_split(comm_, color, rank_, &sub), "MPI_Comm_split");
        auto out = std::make_shared<MpiCollective>(sub, true);
        out->set_timeout(timeout_);
        return out;
    }

    [[noreturn]] void abort(int code) override {
        std::fflush(stdout);
        std::fflush(stderr);
        MPI_Abort(comm_, code);
        std::_Exit(code);  // MPI_Abort does not return; should it, this process still ends
    }

    std::string describe() const override {
        char version[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        MPI_Get_library_version(version, &len);
        std::string v(version, static_cast<std::size_t>(len));
        v = v.substr(0, v.find_first_of(",\n"));
        return "MPI, " + std::to_string(size_) + (size_ == 1 ? " rank (" : " ranks (") + v + ")";
    }

private:
    void sum_of(void* data, std::size_t n, MPI_Datatype type, const char* what) {
        if (size_ == 1) return;
        int type_size = 0;
        MPI_Type_size(type, &type_size);
        auto* p = static_cast<unsigned char*>(data);
        for (std::size_t done = 0; done < n; done += kMaxCount) {
            const int count = static_cast<int>(std::min(kMaxCount, n - done));
            MPI_Request req;
            check_mpi(MPI_Iallreduce(MPI_IN_PLACE, p + done * static_cast<std::size_t>(type_size), count, type, MPI_SUM,
                                     comm_, &req),
                      "MPI_Iallreduce");
            wait(req, what);
        }
    }

    // Polls `req` until it completes; past the deadline, the liveness round and an Error.
    void wait(MPI_Request& req, const char* what) {
        const auto start = Clock::now();
        const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
        for (unsigned polls = 0;; ++polls) {
            int done = 0;
            check_mpi(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
            if (done) return;
            if (Clock::now() > deadline) lost(what);
            if (polls > 256) std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000u, polls - 256)));
            else std::this_thread::yield();
        }
    }

public:
    [[noreturn]] void lost(const char* what) override {
        // A few seconds for the others to reach their own timeout and answer; no more than the
        // timeout itself.
        const double answer_seconds = std::clamp(timeout_ / 4.0, 0.5, 10.0);
        const int me = rank_;
        std::vector<int> in(static_cast<std::size_t>(size_), -1);
        std::vector<MPI_Request> recv(static_cast<std::size_t>(size_), MPI_REQUEST_NULL),
            send(static_cast<std::size_t>(size_), MPI_REQUEST_NULL);
        for (int p = 0; p < size_; ++p) {
            if (p == me) continue;
            MPI_Irecv(&in[static_cast<std::size_t>(p)], 1, MPI_INT, p, kPingTag, ping_, &recv[static_cast<std::size_t>(p)]);
            MPI_Isend(&me, 1, MPI_INT, p, kPingTag, ping_, &send[static_cast<std::size_t>(p)]);
        }
        std::vector<bool> answered(static_cast<std::size_t>(size_), false);
        answered[static_cast<std::size_t>(me)] = true;
        const auto deadline =
            Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(answer_seconds));
        while (Clock::now() < deadline) {
            bool all = true;
            for (int p = 0; p < size_; ++p) {
                const auto k = static_cast<std::size_t>(p);
                if (answered[k]) continue;
                int done = 0;
                MPI_Test(&recv[k], &done, MPI_STATUS_IGNORE);
                answered[k] = done != 0;
                all = all && answered[k];
            }
            if (all) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        std::vector<int> missing;
        for (int p = 0; p < size_; ++p)
            if (!answered[static_cast<std::size_t>(p)]) missing.push_back(p);
        std::ostringstream msg;
        msg << "rank " << me << " of " << size_ << ": " << what << " did not complete within " << timeout_ << " s; ";
        if (missing.empty()) {
            msg << "every rank answered the liveness check, so the ranks are out of step (they did not make the same "
                   "collective calls)";
        } else {
            msg << "lost rank" << (missing.size() > 1 ? "s " : " ");
            for (std::size_t i = 0; i < missing.size(); ++i) msg << (i ? ", " : "") << missing[i];
            msg << " (no answer to the liveness check within " << answer_seconds << " s: died or hangs)";
        }
        // The requests stay pending: the group is unusable now and the caller ends the job.
        throw Error(msg.str());
    }

private:

    MPI_Comm comm_ = MPI_COMM_NULL;
    MPI_Comm ping_ = MPI_COMM_NULL;
    bool owned_ = false;
    int rank_ = 0;
    int size_ = 1;
    double timeout_ = 30.0;
};

void finalize_at_exit() {
    int init = 0;
    MPI_Initialized(&init);
    if (init && !mpi_finalized()) MPI_Finalize();
}

}  // namespace

std::shared_ptr<Collective> make_world_collective() {
    // One world group per process: its liveness communicator is made once, its timeout shared.
    static std::mutex mutex;
    static std::shared_ptr<Collective> world;
    std::lock_guard<std::mutex> lock(mutex);
    if (world) return world;
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
        // Not launched as several ranks: the single-process path needs no MPI at all.
        if (launched_ranks() <= 1) return make_single_process_collective();
        int provided = 0;
        // FUNNELED: only the thread that called MPI_Init_thread makes MPI calls (OpenMP threads
        // compute, they never communicate).
        check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        std::atexit(finalize_at_exit);
    }
    // A duplicate: our traffic and our error handler stay off the application's MPI_COMM_WORLD.
    MPI_Comm dup = MPI_COMM_NULL;
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &dup), "MPI_Comm_dup");
    world = std::make_shared<MpiCollective>(dup, true);
    return world;
}

std::shared_ptr<Collective> make_mpi_collective(const void* comm, std::size_t size) {
    if (size != sizeof(MPI_Comm))
        throw Error("Communicator::from_mpi_handle: an MPI_Comm of " + std::to_string(size) +
                    " bytes, but this build's MPI_Comm has " + std::to_string(sizeof(MPI_Comm)) +
                    " (the application and SparseProx use different MPI libraries)");
    int init = 0;
    MPI_Initialized(&init);
    if (!init) throw Error("Communicator::from_mpi_handle: MPI is not initialized (call MPI_Init first)");
    MPI_Comm c;
    std::memcpy(&c, comm, sizeof c);
    MPI_Comm dup = MPI_COMM_NULL;
    check_mpi(MPI_Comm_dup(c, &dup), "MPI_Comm_dup");  // our own traffic never meets the application's
    return std::make_shared<MpiCollective>(dup, true);
}

}  // namespace sparseprox

#endif  // SPARSEPROX_WITH_MPI
