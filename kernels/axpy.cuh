// y += a x on the device through cuBLAS saxpy (kernels/axpy.cu), twin of src/cpu/axpy.cpp.
#pragma once

#include <cublas_v2.h>

#include <cstddef>

namespace sparseprox {
namespace cuda {

// Queued on the handle's stream. cuBLAS may fuse a*x + y into one FMA where OpenBLAS rounds the
// product first: the two agree to within one rounding of |a x| (tests/test_parity.cpp states it).
void axpy(cublasHandle_t handle, float a, const float* x, float* y, std::size_t n);

}  // namespace cuda
}  // namespace sparseprox
