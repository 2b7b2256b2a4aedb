// Queries answered by the CUDA backend when it is compiled in (src/cuda/device_query.cpp), and
// whether a CUDA device is usable here, and if not, why not. Defined in the CUDA backend library
// only; the core reaches them through its entry points (core/cuda_plugin.h).
#pragma once

#include <string>

namespace sparseprox {
namespace detail {

// Why no CUDA device is usable; none when one is.
enum class CudaIssue {
    none,
    not_compiled,  // this build has no CUDA backend
    driver,        // no CUDA driver, a driver older than this build's CUDA runtime, or one that fails to start
    no_device,     // the driver runs but shows no (usable) device, or not the one asked for
    kernels,       // a device is there but this build's kernels do not load or run on it
};

// A short name of the issue: "usable", "no CUDA backend in this build", "no CUDA driver or
// driver older than the toolkit", "no CUDA device", "kernels not loadable for this device".
const char* cuda_issue_name(CudaIssue issue);

struct CudaStatus {
    CudaIssue issue = CudaIssue::not_compiled;
    int device_count = 0;     // devices cudaGetDeviceCount reports (0 when it fails)
    int driver_version = 0;   // cudaDriverGetVersion: 1000 major + 10 minor; 0 = no driver
    int runtime_version = 0;  // cudaRuntimeGetVersion of the runtime this build links
    // The reason, with the failing call, its error and both versions, when issue != none;
    // otherwise the device, the kernel image it runs and both versions.
    std::string message;
};

// The full check for device `index`: driver, device count, and this build's kernels loaded and
// run on that device (so it creates the device's primary context when a device is there).
// Never throws.
CudaStatus cuda_status(int index = 0);

// "13.0" from a CUDA version number (13000); "none" for 0.
std::string cuda_version_text(int version);

// ---- answered by the CUDA backend only -----------------------------------------------------------

// Number of usable CUDA devices; 0 when the driver is missing or no device is visible (never
// throws). `why` (when not null) receives the reason when the count is 0: the CUDA error, and
// the driver and runtime versions. Does not load any kernel (see cuda_status).
int cuda_device_count_impl(std::string* why);
// "NVIDIA H200, sm_90, 139 GiB"; throws sparseprox::Error for a bad index.
std::string cuda_device_description(int index);
// cuda_status for a CUDA build.
CudaStatus cuda_status_impl(int index);

}  // namespace detail
}  // namespace sparseprox
