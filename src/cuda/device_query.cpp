// The CUDA answers to core/backend_query.h: how many devices, what each one is, and whether this
// build's kernels run on one (and if not, why not).
#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include "core/backend_query.h"
#include "cuda/common.h"
#include "kernels/probe.cuh"

namespace sparseprox {
namespace detail {

namespace {

struct Versions {
    int driver = 0;   // 0 = no driver (libcuda missing or not loadable)
    int runtime = 0;
};

Versions versions() {
    Versions v;
    // Both succeed without a driver: cudaDriverGetVersion then reports 0.
    if (cudaDriverGetVersion(&v.driver) != cudaSuccess) {
        cudaGetLastError();
        v.driver = 0;
    }
    if (cudaRuntimeGetVersion(&v.runtime) != cudaSuccess) {
        cudaGetLastError();
        v.runtime = 0;
    }
    return v;
}

std::string versions_text(const Versions& v) {
    return (v.driver == 0 ? std::string("no driver") : "driver supports CUDA " + cuda_version_text(v.driver)) +
           ", runtime CUDA " + cuda_version_text(v.runtime);
}

std::string error_text(const char* call, cudaError_t status) {
    return std::string(call) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
}

// A failing cudaGetDeviceCount, sorted into driver trouble or no device.
CudaIssue count_issue(cudaError_t status, const Versions& v) {
    if (v.driver == 0) return CudaIssue::driver;
    switch (status) {
        case cudaErrorNoDevice:
        case cudaErrorDevicesUnavailable:
        case cudaErrorInvalidDevice: return CudaIssue::no_device;
        default: return CudaIssue::driver;  // insufficient/mismatched driver, failed initialisation, ...
    }
}

std::string count_reason(cudaError_t status, const Versions& v) {
    const std::string tail = error_text("cudaGetDeviceCount", status) + "; " + versions_text(v);
    if (v.driver == 0)
        return "no CUDA driver: cudaDriverGetVersion reports none (libcuda.so.1 missing or the NVIDIA kernel module "
               "not loaded); " +
               tail;
    if (status == cudaErrorInsufficientDriver || v.driver / 1000 < v.runtime / 1000)
        return "the CUDA driver is older than this build's CUDA runtime (install a newer driver or build with an "
               "older toolkit); " +
               tail;
    return tail;
}

std::string arch_text(int version) { return std::to_string(version / 10) + std::to_string(version % 10); }

// Errors of probe_kernels that mean "this device cannot run this build's device code".
bool is_image_error(cudaError_t status) {
    switch (status) {
        case cudaErrorNoKernelImageForDevice:
        case cudaErrorInvalidKernelImage:
        case cudaErrorInvalidDeviceFunction:
        case cudaErrorUnsupportedPtxVersion:
        case cudaErrorInvalidPtx:
        case cudaErrorJitCompilerNotFound:
        case cudaErrorJitCompilationDisabled:
        case cudaErrorSharedObjectInitFailed:
        case cudaErrorSharedObjectSymbolNotFound:
        case cudaErrorInvalidSource: return true;
        default: return false;
    }
}

}  // namespace

int cuda_device_count_impl(std::string* why) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        // cudaErrorNoDevice, cudaErrorInsufficientDriver, ...: not an error for the caller, who
        // falls back to the CPU. Clear it so a later CUDA call does not report it again.
        cudaGetLastError();
        if (why) *why = count_reason(status, versions());
        return 0;
    }
    if (count == 0 && why) *why = "cudaGetDeviceCount reports no CUDA device; " + versions_text(versions());
    return count;
}

CudaStatus cuda_status_impl(int index) {
    CudaStatus st;
    const Versions v = versions();
    st.driver_version = v.driver;
    st.runtime_version = v.runtime;

    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError();
        st.issue = count_issue(status, v);
        st.message = count_reason(status, v);
        return st;
    }
    st.device_count = count;
    if (count == 0) {
        st.issue = CudaIssue::no_device;
        st.message = "cudaGetDeviceCount reports no CUDA device; " + versions_text(v);
        return st;
    }
    const std::string name = "cuda:" + std::to_string(index);
    if (index < 0 || index >= count) {
        st.issue = CudaIssue::no_device;
        st.message = name + " requested but " + std::to_string(count) + " CUDA device" + (count == 1 ? " is" : "s are") +
                     " visible; " + versions_text(v);
        return st;
    }

    cudaDeviceProp prop{};
    cudaError_t e = cudaGetDeviceProperties(&prop, index);
    if (e == cudaSuccess) {
        int previous = 0;
        if (cudaGetDevice(&previous) != cudaSuccess) previous = index;
        e = cudaSetDevice(index);
        if (e == cudaSuccess) {
            cuda::KernelImage image;
            e = cuda::probe_kernels(&image);
            if (e == cudaSuccess) {
                const std::string device = name + " (" + prop.name + ", sm_" + std::to_string(prop.major) +
                                           std::to_string(prop.minor) + ")";
                st.issue = CudaIssue::none;
                st.message = device + " runs this build's kernels (sm_" + arch_text(image.binary_version) +
                             " binary from compute_" + arch_text(image.ptx_version) + "; built for " +
                             cuda::built_cuda_architectures() + "); " + versions_text(v);
            }
        }
        if (previous != index) cudaSetDevice(previous);
        cudaGetLastError();
    }
    if (e == cudaSuccess) return st;

    const std::string device = name + (e == cudaErrorInvalidDevice || prop.major == 0
                                           ? std::string()
                                           : std::string(" (") + prop.name + ", sm_" + std::to_string(prop.major) +
                                                 std::to_string(prop.minor) + ")");
    if (is_image_error(e)) {
        st.issue = CudaIssue::kernels;
        std::string hint = "rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(prop.major) +
                           std::to_string(prop.minor);
        if (e == cudaErrorUnsupportedPtxVersion || e == cudaErrorInvalidPtx)
            hint = "the driver cannot compile this build's PTX (driver supports CUDA " + cuda_version_text(v.driver) +
                   ", toolkit " + cuda_version_text(v.runtime) + "): " + hint + " or update the driver";
        st.message = "kernels not loadable on " + device + ": this build has device code for CUDA architectures " +
                     cuda::built_cuda_architectures() + "; " + error_text("loading a kernel", e) + "; " + hint +
                     "; " + versions_text(v);
    } else {
        st.issue = CudaIssue::no_device;
        st.message = device + " is present but not usable: " + error_text("running a one-thread kernel", e) + "; " +
                     versions_text(v);
    }
    return st;
}

std::string cuda_device_description(int index) {
    std::string why;
    const int count = cuda_device_count_impl(&why);
    if (count == 0) throw Error("cuda:" + std::to_string(index) + ": no usable CUDA device (" + why + ")");
    if (index < 0 || index >= count)
        throw Error("cuda:" + std::to_string(index) + " requested but " + std::to_string(count) + " CUDA device" +
                    (count == 1 ? " is" : "s are") + " visible");
    cudaDeviceProp prop{};
    SPARSEPROX_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
    char memory[32];
    std::snprintf(memory, sizeof memory, "%.0f GiB", static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
    return std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
           memory;
}

const char* cuda_issue_name(CudaIssue issue) {
    switch (issue) {
        case CudaIssue::none: return "usable";
        case CudaIssue::not_compiled: return "no CUDA backend in this build";
        case CudaIssue::driver: return "no CUDA driver or driver older than the toolkit";
        case CudaIssue::no_device: return "no CUDA device";
        case CudaIssue::kernels: return "kernels not loadable for this device (build architectures)";
    }
    return "unknown";
}

std::string cuda_version_text(int version) {
    if (version <= 0) return "none";
    return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

CudaStatus cuda_status(int index) { return cuda_status_impl(index); }

}  // namespace detail
}  // namespace sparseprox
