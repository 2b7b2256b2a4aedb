// The CUDA backend library (libsparseprox_cuda.so), loaded with dlopen the first time a CUDA
// device is asked for, the way ONNX Runtime loads its CUDA execution provider: the core library
// links no CUDA library and starts where no CUDA runtime is installed.
//
// Where it is looked for, in order: the file named by the environment variable
// SPARSEPROX_CUDA_BACKEND; the folder of the library (or program) holding this code; the
// dynamic linker's search path. The library must come from the same SparseProx version.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/backend.h"

namespace sparseprox {
namespace detail {

// The entry points of the CUDA backend library (plain C functions; errors come back as text).
struct CudaPlugin {
    std::string path;  // the file that was loaded
    int (*device_count)(char* why, std::size_t why_size) = nullptr;
    int (*describe)(int index, char* out, std::size_t out_size) = nullptr;  // 0 on success, else error text
    void* (*create_backend)(int index, char* error, std::size_t error_size) = nullptr;  // a Backend*, or null
};

// The loaded library (once per process), or null with the reason in `why`.
const CudaPlugin* cuda_plugin(std::string* why);

}  // namespace detail
}  // namespace sparseprox
