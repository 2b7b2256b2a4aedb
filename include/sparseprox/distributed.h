// SparseProx: training over several processes (README, "Distributed training").
//
// A Communicator is a group of processes (ranks). Given to TrainOptions::communicator, every
// rank of the group trains the same run: each mini-batch is split over the ranks, the gradient
// slab is summed with one all-reduce per step, and every rank applies the same proximal step, so
// the weights, the NNZ counts and the early stop agree on all ranks. Given to a search
// (SearchOptions::train.communicator), the ranks train several lambdas at once
// (SearchOptions::ranks_per_run ranks per run).
//
// The default Communicator is one process: nothing is communicated and MPI is not needed.
// Communicator::world() is the group the launcher (mpirun) started. A collective that does not
// complete within timeout() seconds (a rank died or hangs) throws sparseprox::Error naming the
// ranks that did not answer a short liveness round; the group is unusable afterwards: end the
// job with abort().
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <memory>
#include <string>

namespace sparseprox {

class Collective;  // internal

class SPARSEPROX_API Communicator {
public:
    // One process.
    Communicator();

    // Every process the launcher started (MPI_COMM_WORLD), initializing MPI when it started
    // more than one (and finalizing it at exit); one process when it started one and MPI was
    // not initialized by the application. Throws sparseprox::Error when the launcher started
    // several processes (OMPI_COMM_WORLD_SIZE or PMI_SIZE above 1) and the library was built
    // without MPI, so that N processes never train N unrelated copies.
    static Communicator world();
    // A group over an application's MPI communicator: `comm` points at an MPI_Comm of `size`
    // bytes (use communicator_from_mpi below). Throws when the library was built without MPI.
    static Communicator from_mpi_handle(const void* comm, std::size_t size);

    int rank() const;
    int size() const;
    bool distributed() const { return size() > 1; }
    // Seconds one collective may take before the liveness round (default 30). Shared by every
    // copy of this handle.
    double timeout() const;
    void set_timeout(double seconds);  // throws unless seconds > 0 and finite
    // "MPI, 2 ranks (Open MPI v4.1.4, ...)" or "single process".
    std::string describe() const;
    // The ranks of each color as a group of their own (every rank calls it).
    Communicator split(int color) const;
    // Ends every process of the group with exit status `code` (MPI_Abort); a single process
    // just exits. For the error path after a collective failed.
    [[noreturn]] void abort(int code) const;

    // Internal: the implementation of the group.
    const std::shared_ptr<Collective>& collective() const { return impl_; }
    explicit Communicator(std::shared_ptr<Collective> impl);

private:
    std::shared_ptr<Collective> impl_;
};

// True when the library was built with MPI (CMake SPARSEPROX_MPI).
SPARSEPROX_API bool mpi_compiled();

}  // namespace sparseprox

#if defined(MPI_VERSION)
namespace sparseprox {
// A Communicator over `comm` (declared when the application includes <mpi.h> first).
inline Communicator communicator_from_mpi(MPI_Comm comm) { return Communicator::from_mpi_handle(&comm, sizeof comm); }
}  // namespace sparseprox
#endif
