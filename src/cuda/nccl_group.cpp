// NcclGroup (cuda/nccl_group.h). Without NCCL in the build (CMake found no libnccl) making one
// throws, naming what is missing.
#include "cuda/nccl_group.h"

#include <chrono>
#include <string>
#include <thread>

#if SPARSEPROX_WITH_NCCL
#include <nccl.h>
#endif

#include "cuda/common.h"
#include "sparseprox/error.h"

namespace sparseprox {
namespace cuda {

#if SPARSEPROX_WITH_NCCL
namespace {

void check_nccl(ncclResult_t r, const char* call) {
    if (r != ncclSuccess) throw Error(std::string(call) + " failed: " + ncclGetErrorString(r));
}

ncclComm_t as_comm(void* p) { return static_cast<ncclComm_t>(p); }

}  // namespace

NcclGroup::NcclGroup(Collective& group, int device) : group_(&group) {
    SPARSEPROX_CUDA_CHECK(cudaSetDevice(device));
    ncclUniqueId id{};
    if (group.rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    group.broadcast(&id, sizeof id, 0, "the broadcast of the NCCL id");
    ncclComm_t comm = nullptr;
    check_nccl(ncclCommInitRank(&comm, group.size(), id, group.rank()), "ncclCommInitRank");
    comm_ = comm;
    SPARSEPROX_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
}

NcclGroup::~NcclGroup() {
    if (done_) cudaEventDestroy(done_);
    if (comm_) ncclCommDestroy(as_comm(comm_));
}

void NcclGroup::wait_previous() {
    if (!pending_) return;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(group_->timeout()));
    for (;;) {
        const cudaError_t s = cudaEventQuery(done_);
        if (s == cudaSuccess) break;
        if (s != cudaErrorNotReady) SPARSEPROX_CUDA_CHECK(s);
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(as_comm(comm_), &async);
        if (async != ncclSuccess && async != ncclInProgress) {
            ncclCommAbort(as_comm(comm_));
            comm_ = nullptr;
            throw Error(std::string("the NCCL gradient all-reduce failed: ") + ncclGetErrorString(async));
        }
        if (std::chrono::steady_clock::now() > deadline) {
            ncclCommAbort(as_comm(comm_));  // frees the stuck kernel
            comm_ = nullptr;
            group_->lost("the NCCL gradient all-reduce");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    pending_ = false;
}

void NcclGroup::sum(float* data, std::size_t n, cudaStream_t stream) {
    if (n == 0) return;
    if (!comm_) throw Error("the NCCL communicator was aborted after an earlier failure");
    wait_previous();
    check_nccl(ncclAllReduce(data, data, n, ncclFloat, ncclSum, as_comm(comm_), stream), "ncclAllReduce");
    SPARSEPROX_CUDA_CHECK(cudaEventRecord(done_, stream));
    pending_ = true;
}

#else  // !SPARSEPROX_WITH_NCCL

NcclGroup::NcclGroup(Collective& group, int) : group_(&group) {
    throw Error("data-parallel training on the GPU needs NCCL, and this CUDA backend was built without it "
                "(CMake found no nccl.h and libnccl next to the CUDA toolkit)");
}
NcclGroup::~NcclGroup() = default;
void NcclGroup::wait_previous() {}
void NcclGroup::sum(float*, std::size_t, cudaStream_t) {}

#endif

}  // namespace cuda
}  // namespace sparseprox
