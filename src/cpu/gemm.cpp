// Blocked sgemm over the backend's threads (cpu/gemm.h).
//
// Block sizes: at least kMinSide rows or columns and kMinMacs multiply-adds per block, so a
// block keeps OpenBLAS's micro-kernel busy (its tiles are 16 x 4 to 8 on AVX2) and the fork
// costs (a few microseconds per parallel region) stay small next to the work (2^18 MACs are
// about 10 us at 50 GFLOP/s). The dimension cut is the larger of m and n: each block repacks the
// whole of the other operand, so that operand should be the smaller one.
#include "cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "cpu/activation.h"
#include "cpu/parallel.h"
#include "cpu/threads.h"

namespace sparseprox {
namespace cpu {
namespace {

constexpr std::size_t kMinSide = 16;
constexpr std::size_t kMinMacs = std::size_t{1} << 18;

void fill_bias(float* C, std::size_t ldc, std::size_t rows, std::size_t cols, const float* bias, bool bias_rows) {
    for (std::size_t r = 0; r < rows; ++r) {
        float* c = C + r * ldc;
        if (bias_rows) std::fill(c, c + cols, bias[r]);
        else std::copy(bias, bias + cols, c);
    }
}

}  // namespace

std::size_t gemm_blocks(std::size_t m, std::size_t n, std::size_t k) {
    const std::size_t side = std::max(m, n);
    const std::size_t macs = m * n * std::max<std::size_t>(k, 1);
    std::size_t blocks = std::min({static_cast<std::size_t>(available_cores()), side / kMinSide, macs / kMinMacs});
    return std::max<std::size_t>(blocks, 1);
}

void sgemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* A, std::size_t lda,
           const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc, const float* bias, bool bias_rows,
           const Epilogue& epilogue) {
    if (m == 0 || n == 0) return;
    if (bias) beta = 1.0f;
    const std::size_t blocks = gemm_blocks(m, n, k);
    const bool cut_rows = m >= n;
    const std::size_t side = cut_rows ? m : n;
    const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    // The epilogue over one block of C (rows x cols at c, row stride ldc).
    auto finish = [&](float* c, std::size_t rows, std::size_t cols) {
        if (epilogue.act == Activation::identity) return;
        if (!epilogue.x) {
            activation_block(epilogue.act, c, ldc, rows, cols);
            return;
        }
        const std::size_t at = static_cast<std::size_t>(c - C);
        activation_backward_block(epilogue.act, epilogue.x + at, epilogue.y + at, c, ldc, rows, cols);
    };
    auto block = [&](std::size_t b) {
        const std::size_t lo = side * b / blocks, hi = side * (b + 1) / blocks;
        if (lo == hi) return;
        const float* a = A;
        const float* bb = B;
        float* c = C;
        std::size_t rows = m, cols = n;
        const float* bias_part = bias;
        if (cut_rows) {
            a = trans_a ? A + lo : A + lo * lda;  // op(A) rows lo..hi
            c = C + lo * ldc;
            rows = hi - lo;
            if (bias && bias_rows) bias_part = bias + lo;
        } else {
            bb = trans_b ? B + lo * ldb : B + lo;  // op(B) columns lo..hi
            c = C + lo;
            cols = hi - lo;
            if (bias && !bias_rows) bias_part = bias + lo;
        }
        // beta = 0: the block is zeroed here and the product added (beta = 1). OpenBLAS does the
        // same, zeroes then adds, so the bits are the same, but its zeroing pass (sgemm_beta)
        // runs at a fraction of memset's speed: 40 us against 5 for a 1000 x 128 block, a tenth
        // of a Mackey-Glass step.
        float call_beta = beta;
        if (bias) {
            fill_bias(c, ldc, rows, cols, bias_part, bias_rows);
        } else if (beta == 0.0f && k > 0) {
            if (ldc == cols) std::memset(c, 0, rows * cols * sizeof(float));
            else
                for (std::size_t r = 0; r < rows; ++r) std::memset(c + r * ldc, 0, cols * sizeof(float));
            call_beta = 1.0f;
        }
        if (k == 0) {
            if (!bias)
                for (std::size_t r = 0; r < rows; ++r)
                    for (std::size_t j = 0; j < cols; ++j) c[r * ldc + j] = beta == 0.0f ? 0.0f : c[r * ldc + j] * beta;
            finish(c, rows, cols);
            return;
        }
        cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(k), 1.0f,
                    a, static_cast<int>(lda), bb, static_cast<int>(ldb), call_beta, c, static_cast<int>(ldc));
        finish(c, rows, cols);
    };
    if (blocks == 1) {
        block(0);
        return;
    }
    // Inside another parallel loop (the convolutions' loops over samples) the blocks run one
    // after another on the calling thread: the same calls, so the same bits.
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (idx b = 0; b < static_cast<idx>(blocks); ++b) block(static_cast<std::size_t>(b));
}

}  // namespace cpu
}  // namespace sparseprox
