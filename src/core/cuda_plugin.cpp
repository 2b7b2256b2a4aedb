// Loading the CUDA backend library (core/cuda_plugin.h).
#include "core/cuda_plugin.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "sparseprox/error.h"
#include "sparseprox/version.h"

#ifndef SPARSEPROX_CUDA_LIBRARY_NAME
#define SPARSEPROX_CUDA_LIBRARY_NAME "libsparseprox_cuda.so"
#endif

namespace sparseprox {
namespace detail {
namespace {

// The folder of the shared object (or program) that holds this function.
std::string own_folder() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&own_folder), &info) == 0 || info.dli_fname == nullptr) return "";
    const std::string file = info.dli_fname;
    const std::size_t slash = file.rfind('/');
    return slash == std::string::npos ? "" : file.substr(0, slash);
}

struct Loaded {
    CudaPlugin plugin;
    bool ok = false;
    std::string why;
};

template <class F>
bool bind(void* handle, const char* name, F& f, std::string& why) {
    f = reinterpret_cast<F>(dlsym(handle, name));
    if (!f) why += std::string(" missing entry point ") + name + ";";
    return f != nullptr;
}

Loaded load() {
    Loaded r;
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("SPARSEPROX_CUDA_BACKEND"); env != nullptr && *env != '\0')
        candidates.push_back(env);
    const std::string folder = own_folder();
    if (!folder.empty()) candidates.push_back(folder + "/" + SPARSEPROX_CUDA_LIBRARY_NAME);
    candidates.push_back(SPARSEPROX_CUDA_LIBRARY_NAME);  // the dynamic linker's search path
    std::string tried;
    for (const std::string& c : candidates) {
        dlerror();
        void* handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
            const char* e = dlerror();
            tried += "\n  " + c + ": " + (e ? e : "cannot be loaded");
            continue;
        }
        using VersionFn = const char* (*)();
        VersionFn version_fn = nullptr;
        std::string missing;
        bind(handle, "sparseprox_cuda_version", version_fn, missing);
        bind(handle, "sparseprox_cuda_device_count", r.plugin.device_count, missing);
        bind(handle, "sparseprox_cuda_describe", r.plugin.describe, missing);
        bind(handle, "sparseprox_cuda_create_backend", r.plugin.create_backend, missing);
        if (!missing.empty()) {
            tried += "\n  " + c + ": not a SparseProx CUDA backend (" + missing + ")";
            dlclose(handle);
            continue;
        }
        const std::string v = version_fn();
        if (v != SPARSEPROX_VERSION_STRING) {
            tried += "\n  " + c + ": built for SparseProx " + v + ", this library is " + SPARSEPROX_VERSION_STRING;
            dlclose(handle);
            continue;
        }
        r.plugin.path = c;
        r.ok = true;  // kept loaded for the life of the process
        return r;
    }
#ifdef SPARSEPROX_WITH_CUDA
    r.why = std::string("the CUDA backend library ") + SPARSEPROX_CUDA_LIBRARY_NAME +
            " (or the CUDA runtime, cuBLAS, cuSPARSE or cuDNN it needs) could not be loaded:" + tried;
#else
    (void)tried;
    r.why = "this build of SparseProx has no CUDA backend (configured with SPARSEPROX_CUDA=OFF or without a CUDA "
            "toolkit)";
#endif
    return r;
}

}  // namespace

const CudaPlugin* cuda_plugin(std::string* why) {
    static std::once_flag once;
    static Loaded loaded;
    std::call_once(once, [] { loaded = load(); });
    if (!loaded.ok) {
        if (why) *why = loaded.why;
        return nullptr;
    }
    return &loaded.plugin;
}

}  // namespace detail

std::unique_ptr<Backend> make_cuda_backend(int index) {
    std::string why;
    const detail::CudaPlugin* p = detail::cuda_plugin(&why);
    if (!p) throw Error("device 'cuda:" + std::to_string(index) + "' requested but " + why);
    char error[1024] = {};
    void* b = p->create_backend(index, error, sizeof error);
    if (!b) throw Error(error[0] ? error : "the CUDA backend could not be created");
    return std::unique_ptr<Backend>(static_cast<Backend*>(b));
}

}  // namespace sparseprox
