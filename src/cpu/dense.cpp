// The dense layer on the CPU: the products through cpu::sgemm (oneDNN's sgemm per block in a build
// with oneDNN, else OpenBLAS's; the blocks over the backend's threads), the bias written into each
// output block just before its product.
//
// Napkin math per step of a layer (batch B, n_in I, n_out O): forward 2*B*I*O FLOPs over
// 4*(B*I + I*O + B*O) bytes, backward twice the FLOPs; at B = 128 and I, O >= 100 that is
// 25+ FLOPs per byte, so the GEMMs run at OpenBLAS's compute rate, not at the memory's.
#include "cpu/dense.h"

#include <algorithm>
#include <functional>

#include "cpu/gemm.h"
#include "cpu/simd.h"

namespace sparseprox {
namespace cpu {

void dense_forward(const float* x, const float* W, const float* b, float* y, std::size_t batch,
                   std::size_t n_in, std::size_t n_out, Activation act) {
    if (batch == 0 || n_out == 0) return;
    // y (batch, n_out) = act(b + x (batch, n_in) * W^T (n_in, n_out))
    Epilogue e;
    e.act = act;
    sgemm(false, true, batch, n_out, n_in, x, n_in, W, n_in, 1.0f, y, n_out, b, false, e, dense_gemm_library());
}

namespace {

// Column sums, rows in order (kernels/dense.cu's order), 16 columns a block in registers
// (summed in place in dL_db, every add waited for the store of the one before: 5% of a
// Mackey-Glass step).
__attribute__((always_inline)) inline void column_sums_body(const float* dL_dy, std::size_t batch, std::size_t n_out,
                                                            float* dL_db, std::size_t q0, std::size_t q1) {
    constexpr std::size_t kColumns = 16;
    for (std::size_t q = q0; q < q1; ++q) {
        const std::size_t j0 = q * kColumns, w = std::min(kColumns, n_out - j0);
        float acc[kColumns] = {};
        const float* g = dL_dy + j0;
        if (w == kColumns) {
            for (std::size_t r = 0; r < batch; ++r, g += n_out)
                for (std::size_t j = 0; j < kColumns; ++j) acc[j] += g[j];
        } else {
            for (std::size_t r = 0; r < batch; ++r, g += n_out)
                for (std::size_t j = 0; j < w; ++j) acc[j] += g[j];
        }
        std::copy(acc, acc + w, dL_db + j0);
    }
}

void column_sums_sse(const float* dL_dy, std::size_t batch, std::size_t n_out, float* dL_db, std::size_t q0,
                     std::size_t q1) {
    column_sums_body(dL_dy, batch, n_out, dL_db, q0, q1);
}

// Two 8-float accumulators instead of four of 4; each column's sum in the same order.
__attribute__((target("avx2,fma"))) void column_sums_avx2(const float* dL_dy, std::size_t batch, std::size_t n_out,
                                                          float* dL_db, std::size_t q0, std::size_t q1) {
    column_sums_body(dL_dy, batch, n_out, dL_db, q0, q1);
}

}  // namespace

void bias_column_sums(const float* dL_dy, std::size_t batch, std::size_t n_out, float* dL_db, std::size_t part,
                      std::size_t parts) {
    const std::size_t n_col_blocks = (n_out + 15) / 16;
    const std::size_t q0 = n_col_blocks * part / parts, q1 = n_col_blocks * (part + 1) / parts;
    if (cpu_has_avx2_fma()) column_sums_avx2(dL_dy, batch, n_out, dL_db, q0, q1);
    else column_sums_sse(dL_dy, batch, n_out, dL_db, q0, q1);
}

void dense_backward(const float* x, const float* W, const float* dL_dy, float* dL_dW, float* dL_db,
                    float* dL_dx, std::size_t batch, std::size_t n_in, std::size_t n_out, Activation act,
                    const float* act_x, const float* act_y) {
    if (n_out == 0 || n_in == 0) return;
    if (batch == 0) {
        std::fill(dL_dW, dL_dW + n_out * n_in, 0.0f);
        std::fill(dL_db, dL_db + n_out, 0.0f);
        return;
    }
    // dL_dW (n_out, n_in) = dL_dy^T (n_out, batch) * x (batch, n_in), and in the same parallel
    // region dL_db, its column blocks shared out over the product's blocks.
    const std::function<void(std::size_t, std::size_t)> bias_sums = [&](std::size_t b, std::size_t blocks) {
        bias_column_sums(dL_dy, batch, n_out, dL_db, b, blocks);
    };
    Epilogue with_bias;
    with_bias.with_block = &bias_sums;
    sgemm(true, false, n_out, n_in, batch, dL_dy, n_out, x, n_in, 0.0f, dL_dW, n_in, nullptr, false, with_bias,
          dense_gemm_library());
    // dL_dx (batch, n_in) = dL_dy (batch, n_out) * W (n_out, n_in), times the derivative of the
    // activation before this layer in each block's epilogue.
    if (dL_dx) {
        Epilogue e;
        e.act = act;
        e.x = act_x;
        e.y = act_y;
        sgemm(false, false, batch, n_in, n_out, dL_dy, n_out, W, n_in, 0.0f, dL_dx, n_in, nullptr, false, e,
              dense_gemm_library());
    }
}

}  // namespace cpu
}  // namespace sparseprox
