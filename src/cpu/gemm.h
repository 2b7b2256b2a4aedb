// Row-major sgemm on the CPU backend's threads: C (m, n) = op(A) (m, k) * op(B) (k, n) + beta * C,
// cut into blocks along m or n, one OpenBLAS (or oneDNN) call at one thread per block, the blocks
// shared over the OpenMP team. An optional bias is written into C just before its block's product
// (beta = 1 then) with OpenBLAS, or added in the epilogue's pass right after it with oneDNN,
// while the block is in cache.
//
// The blocks depend only on the shape and on available_cores() (a property of the machine,
// read once), never on the thread count in force, so every element is computed by the same
// call with the same operands at any thread count: the result is the same bits whatever the
// tuner chooses (the library's order inside one call depends only on that call's shape).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "sparseprox/model.h"

namespace sparseprox {
namespace cpu {

// bias: null, or per column of C (length n, every row gets it: a dense layer) when bias_rows is
// false, or per row of C (length m: a convolution's channels) when bias_rows is true.
// epilogue: applied to each block of C right after its product, while the block is in cache (the
// same values as a separate pass over C afterwards).
struct Epilogue {
    Activation act = Activation::identity;  // identity: none
    // null: C = act(C) (cpu::activation_forward). Otherwise C = C * act'(x) (the values of
    // cpu::activation_backward), with x and y = act(x) laid out like C (row stride ldc).
    const float* x = nullptr;
    const float* y = nullptr;
    // Other work that shares the product's parallel region: called by each block b of `blocks`
    // after its product (with (0, 1) when the product is one block), so its split must not
    // depend on which thread runs a block.
    const std::function<void(std::size_t b, std::size_t blocks)>* with_block = nullptr;
};

// The library that computes each block's product. oneDNN's sgemm (a build with oneDNN) runs the
// dense layers' products, and the convolutions' im2col products on CPUs with AVX-512; OpenBLAS
// the others (as measured in the steps: bench/README.md).
enum class GemmLibrary { openblas, onednn };

// oneDNN where the build has it, else OpenBLAS.
GemmLibrary dense_gemm_library();

// The library of the convolutions' im2col products: oneDNN where the build has it and the CPU
// has AVX-512, else OpenBLAS. On the 2-core AVX-512 machine (AMD family 25) oneDNN ran lenet5's
// three im2col products 16% faster than OpenBLAS; capped at AVX2 it was 40% slower than
// OpenBLAS's AVX2 kernels (bench/README.md). Winograd's small products stay with OpenBLAS, which
// ran cnn8's 10% faster there.
GemmLibrary conv_gemm_library();

// "OpenBLAS 0.3.21" or "oneDNN 2.6.3": the library dense_gemm_library() names, for reports.
std::string describe_gemm_library(GemmLibrary library);

void sgemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* A, std::size_t lda,
           const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc, const float* bias = nullptr,
           bool bias_rows = false, const Epilogue& epilogue = {}, GemmLibrary library = GemmLibrary::openblas);

// One block of sgemm's product, for a caller that runs the blocks in a parallel region of its
// own: rows lo..hi of C (cut_rows) or its columns lo..hi, with the bias and the epilogue of that
// part (the epilogue's with_block called with (b, blocks)). sgemm itself is these parts over
// gemm_blocks(m, n, k) equal cuts of the larger of m and n.
void sgemm_part(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* A,
                std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc,
                const float* bias, bool bias_rows, const Epilogue& epilogue, GemmLibrary library, bool cut_rows,
                std::size_t lo, std::size_t hi, std::size_t b, std::size_t blocks);

// How many blocks sgemm cuts an (m, n, k) product into (exposed for the tests).
std::size_t gemm_blocks(std::size_t m, std::size_t n, std::size_t k);

}  // namespace cpu
}  // namespace sparseprox
