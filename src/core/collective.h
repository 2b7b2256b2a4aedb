// The collectives of data-parallel training and of the parallel lambda search, behind one small
// interface: the MPI implementation (core/collective_mpi.cpp) and the single-process one here.
// Internal: applications hold a sparseprox::Communicator (sparseprox/distributed.h), whose
// handle is one of these.
//
// Every call is collective: all ranks of the group make the same calls in the same order. A
// call that does not complete within timeout() seconds runs a liveness round (every rank that
// timed out pings every other with its own short deadline) and throws sparseprox::Error naming
// the ranks that did not answer; the group is unusable afterwards (abort()).
//
// Buffers are host memory. The gradient slab of a GPU engine is reduced by the backend's own
// operation (Backend::allreduce_sum: NCCL on the engine's stream), which takes this group for
// its rank, size and the broadcast of its NCCL id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sparseprox {

class Collective {
public:
    virtual ~Collective() = default;

    virtual int rank() const = 0;
    virtual int size() const = 0;
    // Seconds a collective may take before the liveness round (> 0).
    virtual double timeout() const = 0;
    virtual void set_timeout(double seconds) = 0;

    // data[i] = sum over ranks of data[i], in place. For two ranks a + b == b + a, and MPI's
    // reductions give every rank the same result, so the sums agree bit for bit on all ranks.
    // `what` names the operation in a timeout message.
    virtual void sum(float* data, std::size_t n, const char* what) = 0;
    virtual void sum(double* data, std::size_t n, const char* what) = 0;
    // `bytes` bytes of `data` from rank `root` to every rank.
    virtual void broadcast(void* data, std::size_t bytes, int root, const char* what) = 0;
    // Every rank's `mine` (the same length on every rank), concatenated in rank order.
    virtual std::vector<double> gather(const std::vector<double>& mine, const char* what) = 0;
    // The ranks with the same `color`, ordered as in this group: a new group (collective).
    virtual std::shared_ptr<Collective> split(int color) = 0;
    // After an operation outside this group (an NCCL all-reduce) outlived timeout(): the
    // liveness round, then an Error naming `what` and the ranks that did not answer.
    [[noreturn]] virtual void lost(const char* what) = 0;
    // Ends every process of the group (MPI_Abort), or this one with `code` when alone.
    [[noreturn]] virtual void abort(int code) = 0;
    // "MPI (OpenMPI 4.1.4)", "single process": for reports.
    virtual std::string describe() const = 0;
};

// One process: sums and broadcasts are the identity, gather returns `mine`.
std::shared_ptr<Collective> make_single_process_collective();

// The group of every launched process (MPI_COMM_WORLD), initializing MPI when the launcher
// started more than one rank, or a single process otherwise (MPI not initialized). Throws when
// the launcher started several ranks and the library was built without MPI.
std::shared_ptr<Collective> make_world_collective();
// A group over an application's communicator (`comm` points at an MPI_Comm of `size` bytes);
// throws when the library was built without MPI.
std::shared_ptr<Collective> make_mpi_collective(const void* comm, std::size_t size);

// The number of ranks the launcher says it started (OMPI_COMM_WORLD_SIZE or PMI_SIZE
// from the environment); 1 when none says so.
int launched_ranks();

}  // namespace sparseprox
