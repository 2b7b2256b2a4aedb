// Element-wise activations on the CPU: OpenMP loops over core/elementwise.h.
//
// One loop per activation kind, the kind a template constant, so the per-element switch folds
// away and ReLU's forward loop vectorizes (a compare and a blend per vector); its backward loop
// has a form of its own (below) for the same reason. With the switch inside the loop, ReLU
// forward and backward took a quarter of a Mackey-Glass training step at one thread. 8 bytes per
// element forward, 12 backward: memory-bound, far below the GEMMs' share once vectorized.
#include "cpu/activation.h"

#include <cstdint>
#include <cstring>

#include "core/elementwise.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace sparseprox {
namespace cpu {
namespace {

template <int Kind>
void forward_loop(const float* x, float* y, std::size_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (idx i = 0; i < static_cast<idx>(n); ++i) y[i] = ew::act_forward(Kind, x[i]);
}

// y = act(y + bias) over a block, the bias per column (bias_rows false) or per row, or
// y = act(y) without one.
template <int Kind>
__attribute__((always_inline)) inline void block_body(float* y, std::size_t ld, std::size_t rows, std::size_t cols,
                                                      const float* bias, bool bias_rows) {
    for (std::size_t r = 0; r < rows; ++r) {
        float* row = y + r * ld;
        if (!bias) {
            for (std::size_t c = 0; c < cols; ++c) row[c] = ew::act_forward(Kind, row[c]);
        } else if (bias_rows) {
            const float b = bias[r];
            for (std::size_t c = 0; c < cols; ++c) row[c] = ew::act_forward(Kind, row[c] + b);
        } else {
            for (std::size_t c = 0; c < cols; ++c) row[c] = ew::act_forward(Kind, row[c] + bias[c]);
        }
    }
}

// The block loops also come compiled for AVX2 (cpu/simd.h): the products' epilogues run over
// every output of a dense layer, and at SSE's 4 floats a vector the ReLU and bias pass of a
// Mackey-Glass step took 5% of it. Element by element the same operations (no contraction,
// -ffp-contract=off), so the same bits.
template <int Kind>
void block_loop_sse(float* y, std::size_t ld, std::size_t rows, std::size_t cols, const float* bias, bool bias_rows) {
    block_body<Kind>(y, ld, rows, cols, bias, bias_rows);
}

template <int Kind>
__attribute__((target("avx2,fma"))) void block_loop_avx2(float* y, std::size_t ld, std::size_t rows, std::size_t cols,
                                                         const float* bias, bool bias_rows) {
    block_body<Kind>(y, ld, rows, cols, bias, bias_rows);
}

template <int Kind>
void block_loop(float* y, std::size_t ld, std::size_t rows, std::size_t cols, const float* bias, bool bias_rows) {
    if (cpu_has_avx2_fma()) block_loop_avx2<Kind>(y, ld, rows, cols, bias, bias_rows);
    else block_loop_sse<Kind>(y, ld, rows, cols, bias, bias_rows);
}

// ReLU: dL_dy * act_derivative is d * 1 = d or d * 0 (+-0, or NaN for an infinite or NaN d);
// both are computed and one is picked by a bit mask, the same bits. Written as a select or a
// multiply by the 0/1 derivative, GCC (without -ffast-math) branches around the multiply, one
// scalar element at a time: a tenth of a Mackey-Glass step.
inline float relu_backward(float d, float x) {
    const float d0 = d * 0.0f;
    std::uint32_t keep, zero;
    std::memcpy(&keep, &d, 4);
    std::memcpy(&zero, &d0, 4);
    const std::uint32_t mask = 0u - static_cast<std::uint32_t>(x > 0.0f);
    const std::uint32_t out = (keep & mask) | (zero & ~mask);
    float r;
    std::memcpy(&r, &out, 4);
    return r;
}

template <int Kind>
void backward_loop(const float* x, const float* y, const float* dL_dy, float* dL_dx, std::size_t n) {
    if constexpr (Kind == 1) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(n); ++i) dL_dx[i] = relu_backward(dL_dy[i], x[i]);
    } else {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(n); ++i) dL_dx[i] = dL_dy[i] * ew::act_derivative(Kind, x[i], y[i]);
    }
}

template <int Kind>
__attribute__((always_inline)) inline void backward_block_body(const float* x, const float* y, float* d, std::size_t ld,
                                                               std::size_t rows, std::size_t cols) {
    for (std::size_t r = 0; r < rows; ++r) {
        const float* xr = x + r * ld;
        const float* yr = y + r * ld;
        float* dr = d + r * ld;
        if constexpr (Kind == 1) {
#pragma omp simd
            for (std::size_t c = 0; c < cols; ++c) dr[c] = relu_backward(dr[c], xr[c]);
        } else {
            for (std::size_t c = 0; c < cols; ++c) dr[c] = dr[c] * ew::act_derivative(Kind, xr[c], yr[c]);
        }
    }
}

template <int Kind>
void backward_block_loop_sse(const float* x, const float* y, float* d, std::size_t ld, std::size_t rows,
                             std::size_t cols) {
    backward_block_body<Kind>(x, y, d, ld, rows, cols);
}

template <int Kind>
__attribute__((target("avx2,fma"))) void backward_block_loop_avx2(const float* x, const float* y, float* d,
                                                                  std::size_t ld, std::size_t rows, std::size_t cols) {
    backward_block_body<Kind>(x, y, d, ld, rows, cols);
}

template <int Kind>
void backward_block_loop(const float* x, const float* y, float* d, std::size_t ld, std::size_t rows,
                         std::size_t cols) {
    if (cpu_has_avx2_fma()) backward_block_loop_avx2<Kind>(x, y, d, ld, rows, cols);
    else backward_block_loop_sse<Kind>(x, y, d, ld, rows, cols);
}

}  // namespace

void activation_forward(Activation a, const float* x, float* y, std::size_t n) {
    switch (static_cast<int>(a)) {
        case 1: forward_loop<1>(x, y, n); break;
        case 2: forward_loop<2>(x, y, n); break;
        case 3: forward_loop<3>(x, y, n); break;
        case 4: forward_loop<4>(x, y, n); break;
        default: forward_loop<0>(x, y, n); break;
    }
}

void activation_block(Activation a, float* y, std::size_t ld, std::size_t rows, std::size_t cols, const float* bias,
                      bool bias_rows) {
    switch (static_cast<int>(a)) {
        case 1: block_loop<1>(y, ld, rows, cols, bias, bias_rows); break;
        case 2: block_loop<2>(y, ld, rows, cols, bias, bias_rows); break;
        case 3: block_loop<3>(y, ld, rows, cols, bias, bias_rows); break;
        case 4: block_loop<4>(y, ld, rows, cols, bias, bias_rows); break;
        default:  // identity: only the bias, if any
            if (bias) block_loop<0>(y, ld, rows, cols, bias, bias_rows);
            break;
    }
}

void activation_backward_block(Activation a, const float* x, const float* y, float* d, std::size_t ld,
                               std::size_t rows, std::size_t cols) {
    switch (static_cast<int>(a)) {
        case 1: backward_block_loop<1>(x, y, d, ld, rows, cols); break;
        case 2: backward_block_loop<2>(x, y, d, ld, rows, cols); break;
        case 3: backward_block_loop<3>(x, y, d, ld, rows, cols); break;
        case 4: backward_block_loop<4>(x, y, d, ld, rows, cols); break;
        default: break;  // identity: d * 1
    }
}

void activation_backward(Activation a, const float* x, const float* y, const float* dL_dy, float* dL_dx,
                         std::size_t n) {
    switch (static_cast<int>(a)) {
        case 1: backward_loop<1>(x, y, dL_dy, dL_dx, n); break;
        case 2: backward_loop<2>(x, y, dL_dy, dL_dx, n); break;
        case 3: backward_loop<3>(x, y, dL_dy, dL_dx, n); break;
        case 4: backward_loop<4>(x, y, dL_dy, dL_dx, n); break;
        default: backward_loop<0>(x, y, dL_dy, dL_dx, n); break;
    }
}

}  // namespace cpu
}  // namespace sparseprox
