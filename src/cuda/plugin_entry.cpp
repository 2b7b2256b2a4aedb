// The entry points of the CUDA backend library (core/cuda_plugin.h): plain C functions that the
// core finds with dlsym. No exception crosses them; errors come back as text.
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/backend_query.h"
#include "sparseprox/error.h"

#ifndef SPARSEPROX_VERSION_TEXT
#error "SPARSEPROX_VERSION_TEXT must be the library version"
#endif

namespace sparseprox {
namespace cuda {
std::unique_ptr<Backend> create_backend(int device_index);  // cuda_backend.cpp
}  // namespace cuda
}  // namespace sparseprox

namespace {
void copy_text(const std::string& text, char* out, std::size_t size) {
    if (!out || size == 0) return;
    const std::size_t n = text.size() < size - 1 ? text.size() : size - 1;
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
}
}  // namespace

#define SPARSEPROX_PLUGIN_ENTRY extern "C" __attribute__((visibility("default")))

SPARSEPROX_PLUGIN_ENTRY const char* sparseprox_cuda_version() { return SPARSEPROX_VERSION_TEXT; }

SPARSEPROX_PLUGIN_ENTRY int sparseprox_cuda_device_count(char* why, std::size_t why_size) {
    try {
        std::string reason;
        const int n = sparseprox::detail::cuda_device_count_impl(&reason);
        if (n == 0) copy_text(reason, why, why_size);
        return n;
    } catch (const std::exception& e) {
        copy_text(e.what(), why, why_size);
        return 0;
    }
}

SPARSEPROX_PLUGIN_ENTRY int sparseprox_cuda_describe(int index, char* out, std::size_t out_size) {
    try {
        copy_text(sparseprox::detail::cuda_device_description(index), out, out_size);
        return 0;
    } catch (const std::exception& e) {
        copy_text(e.what(), out, out_size);
        return 1;
    }
}

SPARSEPROX_PLUGIN_ENTRY void* sparseprox_cuda_create_backend(int index, char* error, std::size_t error_size) {
    try {
        return sparseprox::cuda::create_backend(index).release();
    } catch (const std::exception& e) {
        copy_text(e.what(), error, error_size);
        return nullptr;
    }
}
