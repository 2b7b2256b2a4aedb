// The dense layer on the CPU: OpenBLAS sgemm for the products, loops for the bias.
#include "cpu/dense.h"

#include <cblas.h>

#include <algorithm>

namespace sparseprox {
namespace cpu {

void dense_forward(const float* x, const float* W, const float* b, float* y, std::size_t batch,
                   std::size_t n_in, std::size_t n_out) {
    if (batch == 0 || n_out == 0) return;
    for (std::size_t r = 0; r < batch; ++r) std::copy(b, b + n_out, y + r * n_out);
    // y (batch, n_out) += x (batch, n_in) * W^T (n_in, n_out)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(batch), static_cast<int>(n_out),
                static_cast<int>(n_in), 1.0f, x, static_cast<int>(n_in), W, static_cast<int>(n_in), 1.0f, y,
                static_cast<int>(n_out));
}

void dense_backward(const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db,
                    float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out) {
    if (n_out == 0 || n_in == 0) return;
    if (batch == 0) {
        std::fill(dL_dW, dL_dW + n_out * n_in, 0.0f);
        std::fill(dL_db, dL_db + n_out, 0.0f);
        return;
    }
    // dL_dW (n_out, n_in) = dL_dy^T (n_out, batch) * x (batch, n_in)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(n_out), static_cast<int>(n_in),
                static_cast<int>(batch), 1.0f, dL_dy, static_cast<int>(n_out), x, static_cast<int>(n_in), 0.0f,
                dL_dW, static_cast<int>(n_in));
    for (std::size_t j = 0; j < n_out; ++j) dL_db[j] = 0.0f;
    for (std::size_t r = 0; r < batch; ++r)
        for (std::size_t j = 0; j < n_out; ++j) dL_db[j] += dL_dy[r * n_out + j];
    if (dL_dx) {
        // dL_dx (batch, n_in) = dL_dy (batch, n_out) * W (n_out, n_in)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(batch), static_cast<int>(n_in),
                    static_cast<int>(n_out), 1.0f, dL_dy, static_cast<int>(n_out), W, static_cast<int>(n_in), 0.0f,
                    dL_dx, static_cast<int>(n_in));
    }
}

}  // namespace cpu
}  // namespace sparseprox
