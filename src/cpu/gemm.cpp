// Blocked sgemm over the backend's threads (cpu/gemm.h), each block through OpenBLAS or oneDNN.
//
// Block sizes: at least kMinSide rows or columns and kMinMacs multiply-adds per block, so a
// block keeps OpenBLAS's micro-kernel busy (its tiles are 16 x 4 to 8 on AVX2) and the fork
// costs (a few microseconds per parallel region) stay small next to the work (2^18 MACs are
// about 10 us at 50 GFLOP/s). The dimension cut is the larger of m and n: each block repacks the
// whole of the other operand, so that operand should be the smaller one.
#include "cpu/gemm.h"

#include <cblas.h>
#include <omp.h>
#if SPARSEPROX_WITH_ONEDNN
#include <dnnl.h>
#include <pthread.h>
#include <signal.h>
#endif

#include <algorithm>
#include <cstring>
#include <sstream>

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

// One block's product at one thread (the blocks are the parallelism) through `library`.
void block_product(GemmLibrary library, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::size_t rows, std::size_t cols,
                   std::size_t k, const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta,
                   float* c, std::size_t ldc) {
#if SPARSEPROX_WITH_ONEDNN
    if (library == GemmLibrary::onednn) {
        // oneDNN threads its sgemm over omp_get_max_threads(): one here, the team's count restored
        // after (on the calling thread's own setting, so other threads are not touched).
        const int team = omp_get_max_threads();
        omp_set_num_threads(1);
        // SIGINT and SIGTERM held back for the call: the stop handler (sparseprox/stop.h) only
        // sets an atomic flag, yet a CLI run interrupted while a thread was inside oneDNN 2.6's
        // sgemm corrupted the heap (30 of 250 runs of `train --threads 1` stopped by SIGINT at a
        // random point, none with OpenBLAS or with the signals held here). A held signal is
        // taken when the call returns, a few microseconds later at most.
        sigset_t stop_signals, before;
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGINT);
        sigaddset(&stop_signals, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &stop_signals, &before);
        const dnnl_status_t status =
            dnnl_sgemm(ta == CblasTrans ? 'T' : 'N', tb == CblasTrans ? 'T' : 'N', static_cast<dnnl_dim_t>(rows),
                       static_cast<dnnl_dim_t>(cols), static_cast<dnnl_dim_t>(k), 1.0f, a, static_cast<dnnl_dim_t>(lda),
                       b, static_cast<dnnl_dim_t>(ldb), beta, c, static_cast<dnnl_dim_t>(ldc));
        pthread_sigmask(SIG_SETMASK, &before, nullptr);
        omp_set_num_threads(team);
        if (status == dnnl_success) return;
        // Only arguments it rejects fail (none here: the shapes are checked by the callers); the
        // same product from OpenBLAS then, rather than an exception inside a parallel loop.
    }
#else
    (void)library;
#endif
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(k), 1.0f, a,
                static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace

GemmLibrary dense_gemm_library() {
#if SPARSEPROX_WITH_ONEDNN
    return GemmLibrary::onednn;
#else
    return GemmLibrary::openblas;
#endif
}

GemmLibrary conv_gemm_library() {
#if SPARSEPROX_WITH_ONEDNN && (defined(__x86_64__) || defined(__i386__))
    static const bool avx512 = __builtin_cpu_supports("avx512f");
    return avx512 ? GemmLibrary::onednn : GemmLibrary::openblas;
#else
    return GemmLibrary::openblas;
#endif
}

std::string describe_gemm_library(GemmLibrary library) {
    std::ostringstream out;
#if SPARSEPROX_WITH_ONEDNN
    if (library == GemmLibrary::onednn) {
        const dnnl_version_t* v = dnnl_version();
        out << "oneDNN " << v->major << "." << v->minor << "." << v->patch;
        return out.str();
    }
#else
    (void)library;
#endif
    // "OpenBLAS 0.3.21 DYNAMIC_ARCH ...": the name and the version.
    std::istringstream config(openblas_get_config());
    std::string name, version;
    config >> name >> version;
    out << name << " " << version;
    return out.str();
}

std::size_t gemm_blocks(std::size_t m, std::size_t n, std::size_t k) {
    const std::size_t side = std::max(m, n);
    const std::size_t macs = m * n * std::max<std::size_t>(k, 1);
    std::size_t blocks = std::min({static_cast<std::size_t>(available_cores()), side / kMinSide, macs / kMinMacs});
    return std::max<std::size_t>(blocks, 1);
}

void sgemm_part(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* A,
                std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc,
                const float* bias, bool bias_rows, const Epilogue& epilogue, GemmLibrary library, bool cut_rows,
                std::size_t lo, std::size_t hi, std::size_t b, std::size_t blocks) {
    if (lo == hi || m == 0 || n == 0) return;
    if (bias) beta = 1.0f;
    const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    // oneDNN's kernels store a product into C when beta is 0 (no separate zeroing pass, none of
    // OpenBLAS's slow one either), so there the bias follows the product, in the epilogue's pass:
    // C = act(product + bias), the order of cuBLASLt's bias epilogue (kernels/dense.cu). With
    // OpenBLAS the bias is written first and the product added to it.
    const bool bias_after = bias && library == GemmLibrary::onednn;
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
    // The epilogue over the block, while it is in cache.
    auto finish = [&] {
        if (bias_after) {
            activation_block(epilogue.x ? Activation::identity : epilogue.act, c, ldc, rows, cols, bias_part,
                             bias_rows);
            if (!epilogue.x) return;
        }
        if (epilogue.act == Activation::identity) return;
        if (!epilogue.x) {
            activation_block(epilogue.act, c, ldc, rows, cols);
            return;
        }
        const std::size_t at = static_cast<std::size_t>(c - C);
        activation_backward_block(epilogue.act, epilogue.x + at, epilogue.y + at, c, ldc, rows, cols);
    };
    // beta = 0 with OpenBLAS: the block is zeroed here and the product added (beta = 1).
    // OpenBLAS does the same, zeroes then adds, so the bits are the same, but its zeroing pass
    // (sgemm_beta) runs at a fraction of memset's speed: 40 us against 5 for a 1000 x 128
    // block, a tenth of a Mackey-Glass step.
    // oneDNN takes beta as it is (0: the product stored), with a bias 0 (the bias follows
    // in finish()).
    float call_beta = bias_after ? 0.0f : beta;
    if (library == GemmLibrary::openblas && bias) {
        fill_bias(c, ldc, rows, cols, bias_part, bias_rows);
    } else if (library == GemmLibrary::openblas && beta == 0.0f && k > 0) {
        if (ldc == cols) std::memset(c, 0, rows * cols * sizeof(float));
        else
            for (std::size_t r = 0; r < rows; ++r) std::memset(c + r * ldc, 0, cols * sizeof(float));
        call_beta = 1.0f;
    }
    if (k == 0) {
        if (!bias || bias_after)
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t j = 0; j < cols; ++j)
                    c[r * ldc + j] = call_beta == 0.0f ? 0.0f : c[r * ldc + j] * call_beta;
    } else {
        block_product(library, ta, tb, rows, cols, k, a, lda, bb, ldb, call_beta, c, ldc);
    }
    finish();
    if (epilogue.with_block) (*epilogue.with_block)(b, blocks);
}

void sgemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* A, std::size_t lda,
           const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc, const float* bias, bool bias_rows,
           const Epilogue& epilogue, GemmLibrary library) {
    if (m == 0 || n == 0) return;
    const std::size_t blocks = gemm_blocks(m, n, k);
    const bool cut_rows = m >= n;
    const std::size_t side = cut_rows ? m : n;
    auto block = [&](std::size_t b) {
        sgemm_part(trans_a, trans_b, m, n, k, A, lda, B, ldb, beta, C, ldc, bias, bias_rows, epilogue, library,
                   cut_rows, side * b / blocks, side * (b + 1) / blocks, b, blocks);
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
