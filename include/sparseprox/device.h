// SparseProx: where computation runs.
#pragma once

#include "sparseprox/export.h"

#include <string>

namespace sparseprox {

enum class DeviceKind { cpu, cuda };

struct SPARSEPROX_API Device {
    DeviceKind kind = DeviceKind::cpu;
    int index = 0;  // CUDA ordinal; ignored for the CPU

    std::string to_string() const;  // "cpu" or "cuda:N"
};

// Parses "cpu", "cuda", "cuda:N" or "auto" ("auto" picks cuda:0 when a usable GPU exists).
// Asking for a GPU that is not there throws sparseprox::Error naming the request and the reason.
SPARSEPROX_API Device parse_device(const std::string& text);

// True when the library was built with the CUDA backend.
SPARSEPROX_API bool cuda_compiled();

// Number of usable CUDA devices (0 when none, the driver is missing or CUDA was not compiled in).
SPARSEPROX_API int cuda_device_count();

// A one-line description: "cpu (2 threads, OpenBLAS; dense layers oneDNN)" or "cuda:0 (NVIDIA H200, sm_90)".
SPARSEPROX_API std::string describe_device(const Device& device);

}  // namespace sparseprox
