// The backends a test can run on: the CPU always, CUDA device 0 when one is usable. A CUDA test
// that cannot get its device skips with the reason; with SPARSEPROX_REQUIRE_CUDA=1 in the
// environment it fails instead, so a GPU runner can never pass while testing nothing.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "core/backend.h"
#include "sparseprox/error.h"

namespace sparseprox {
namespace testing_util {

inline bool cuda_required() {
    const char* v = std::getenv("SPARSEPROX_REQUIRE_CUDA");
    return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

// The CUDA backend on device 0, or null with the reason in `why`.
inline std::unique_ptr<Backend> try_cuda_backend(std::string* why) {
    try {
        return make_cuda_backend(0);
    } catch (const Error& e) {
        *why = e.what();
        return nullptr;
    }
}

}  // namespace testing_util
}  // namespace sparseprox

// Declares `std::unique_ptr<Backend> var` on CUDA device 0, or skips the test with the reason
// (fails it under SPARSEPROX_REQUIRE_CUDA=1).
#define SPARSEPROX_CUDA_BACKEND_OR_SKIP(var)                                                                 \
    std::string var##_why;                                                                                   \
    std::unique_ptr<::sparseprox::Backend> var = ::sparseprox::testing_util::try_cuda_backend(&var##_why);   \
    if (!var) {                                                                                              \
        if (::sparseprox::testing_util::cuda_required())                                                     \
            FAIL() << "SPARSEPROX_REQUIRE_CUDA is set but no CUDA backend is usable: " << var##_why;          \
        GTEST_SKIP() << "no usable CUDA backend: " << var##_why;                                            \
    }
