// The gradient all-reduce of a data-parallel step on the GPU: an NCCL communicator over the
// ranks of one group (core/collective.h), one GPU per rank, summing device memory on the
// engine's stream. Its ncclUniqueId is made by rank 0 and broadcast through the group (MPI).
//
// NCCL has no deadline of its own: a peer that died leaves the kernel waiting. Each call first
// waits, against the group's timeout, for the previous call's all-reduce to finish (an event
// recorded after it), so the host runs at most one step ahead of a stuck collective and then
// aborts the communicator and names the lost ranks through the group's liveness round. Waiting
// one step behind keeps the stream's queue full in the normal case.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "core/collective.h"

namespace sparseprox {
namespace cuda {

class NcclGroup {
public:
    // Collective over `group`: every rank makes it, on its own device.
    NcclGroup(Collective& group, int device);
    ~NcclGroup();
    NcclGroup(const NcclGroup&) = delete;
    NcclGroup& operator=(const NcclGroup&) = delete;

    // data[i] = sum over the ranks of data[i] (n floats of device memory), queued on `stream`.
    void sum(float* data, std::size_t n, cudaStream_t stream);
    const Collective* group() const { return group_; }

private:
    void wait_previous();

    Collective* group_;
    void* comm_ = nullptr;  // ncclComm_t (nccl.h stays in the .cpp)
    cudaEvent_t done_ = nullptr;
    bool pending_ = false;
};

}  // namespace cuda
}  // namespace sparseprox
