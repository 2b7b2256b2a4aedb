// A run of dense layers in one parallel region (cpu/dense_chain.h).
#include "cpu/dense_chain.h"

#include <omp.h>

#include <algorithm>
#include <functional>

#include "cpu/dense.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"

namespace sparseprox {
namespace cpu {

std::size_t dense_chain_blocks(std::size_t batch, std::size_t widest, std::size_t macs_per_row) {
    if (batch < widest) return 0;  // sgemm would cut a product by columns: not a chain of rows
    // sgemm's rule for a product of batch rows and macs_per_row multiply-adds a row: at least
    // 16 rows and 2^18 multiply-adds a block, at most a block a core.
    const std::size_t blocks = gemm_blocks(batch, 1, macs_per_row);
    return blocks >= 2 ? blocks : 0;
}

void dense_forward_chain(const std::vector<DenseForwardLink>& links, std::size_t batch) {
    std::size_t widest = 0, macs = 0;
    for (const DenseForwardLink& l : links) {
        widest = std::max(widest, l.n_out);
        macs += l.n_in * l.n_out;
    }
    const std::size_t blocks = batch == 0 ? 0 : dense_chain_blocks(batch, widest, macs);
    if (blocks == 0 || omp_in_parallel()) {
        for (const DenseForwardLink& l : links) dense_forward(l.x, l.W, l.b, l.y, batch, l.n_in, l.n_out, l.act);
        return;
    }
    const GemmLibrary library = dense_gemm_library();
#pragma omp parallel for schedule(static)
    for (idx bi = 0; bi < static_cast<idx>(blocks); ++bi) {
        const auto b = static_cast<std::size_t>(bi);
        const std::size_t lo = batch * b / blocks, hi = batch * (b + 1) / blocks;
        for (const DenseForwardLink& l : links) {
            if (l.n_out == 0) continue;
            Epilogue e;
            e.act = l.act;
            sgemm_part(false, true, batch, l.n_out, l.n_in, l.x, l.n_in, l.W, l.n_in, 1.0f, l.y, l.n_out, l.b, false, e,
                       library, true, lo, hi, b, blocks);
        }
    }
}

void dense_backward_chain(const std::vector<DenseBackwardLink>& links, std::size_t batch) {
    std::size_t widest = 0, macs = 0;
    for (const DenseBackwardLink& l : links)
        if (l.dL_dx) {
            widest = std::max(widest, l.n_in);
            macs += l.n_in * l.n_out;
        }
    const std::size_t blocks = batch == 0 ? 0 : dense_chain_blocks(batch, widest, macs);
    bool empty = false;
    for (const DenseBackwardLink& l : links) empty = empty || l.n_in == 0 || l.n_out == 0;
    if (blocks == 0 || empty || omp_in_parallel()) {
        for (const DenseBackwardLink& l : links)
            dense_backward(l.x, l.W, l.dL_dy, l.dL_dW, l.dL_db, l.dL_dx, batch, l.n_in, l.n_out, l.act, l.act_x,
                           l.act_y);
        return;
    }
    const GemmLibrary library = dense_gemm_library();
#pragma omp parallel
    {
        // The input gradients, each block of rows down the whole run: dL_dx = dL_dy W, times the
        // derivative of the activation before the layer in the product's pass.
#pragma omp for schedule(static)
        for (idx bi = 0; bi < static_cast<idx>(blocks); ++bi) {
            const auto b = static_cast<std::size_t>(bi);
            const std::size_t lo = batch * b / blocks, hi = batch * (b + 1) / blocks;
            for (const DenseBackwardLink& l : links) {
                if (!l.dL_dx) continue;
                Epilogue e;
                e.act = l.act;
                e.x = l.act_x;
                e.y = l.act_y;
                sgemm_part(false, false, batch, l.n_in, l.n_out, l.dL_dy, l.n_out, l.W, l.n_in, 0.0f, l.dL_dx, l.n_in,
                           nullptr, false, e, library, true, lo, hi, b, blocks);
            }
        }
        // (the loop's barrier: every layer's output gradient is whole from here on)
        // The weight gradients, each cut as dense_backward cuts it, with the bias sums: block b
        // of every layer to the same thread, no barrier between the layers.
        for (const DenseBackwardLink& l : links) {
            const std::size_t m = l.n_out, n = l.n_in, parts = gemm_blocks(m, n, batch);
            const bool cut_rows = m >= n;
            const std::size_t side = cut_rows ? m : n;
            const std::function<void(std::size_t, std::size_t)> bias_sums = [&](std::size_t b, std::size_t all) {
                bias_column_sums(l.dL_dy, batch, l.n_out, l.dL_db, b, all);
            };
            Epilogue with_bias;
            with_bias.with_block = &bias_sums;
#pragma omp for schedule(static) nowait
            for (idx bi = 0; bi < static_cast<idx>(parts); ++bi) {
                const auto b = static_cast<std::size_t>(bi);
                sgemm_part(true, false, m, n, batch, l.dL_dy, l.n_out, l.x, l.n_in, 0.0f, l.dL_dW, l.n_in, nullptr,
                           false, with_bias, library, cut_rows, side * b / parts, side * (b + 1) / parts, b, parts);
            }
        }
    }
}

}  // namespace cpu
}  // namespace sparseprox
