// Winograd's minimal filtering F(2x2, 3x3) for the CPU's 3x3 stride-1 convolutions (Lavin and
// Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016), used inside
// cpu::conv2d_forward/backward and their max-pool forms in place of im2col and its GEMMs.
//
// Each output plane is cut into 2x2 tiles; tile t reads the 4x4 patch d_t of the zero-bordered
// input above it. With the constant matrices B (4x4), G (4x3) and A (4x2):
//   forward   Y_t = A^T [ sum_ci (G g G^T) . (B^T d_t B) ] A       (. elementwise)
// i.e. 16 GEMMs, one per point xi of the 4x4 transform domain:
//   M[xi] (c_out, T) = U[xi] (c_out, c_in) * V[xi] (c_in, T),  U = G g G^T, V = B^T d B,
// over the T tiles of a chunk of samples, then each tile's 2x2 outputs from its 16 values. The
// backward passes are the adjoints of the same linear maps:
//   dM[xi] = (A dY_t A^T)[xi];  dV[xi] = U[xi]^T dM[xi], dL_dx += B dV_t B^T (tiles overlap by
//   2 rows and columns: added in tile order);  dU[xi] = dM[xi] V[xi]^T, dL_dW = G^T dU G.
// So all three products (forward, input gradient, weight gradient) take 16 multiply-adds per
// tile and channel pair where im2col's take 36 (2.25x fewer for an even-sized output; cnn8's
// 7x7 planes are 4x4 tiles over 8x8, 1.72x fewer), for transforms that read and write about as
// much memory as im2col and col2im do. The entries of B, G and A are 0, +-1 and +-1/2, so the
// rounding stays close to the direct sum's (tests/test_conv_ops.cpp bounds it).
//
// On CPUs with AVX2 and FMA, layers whose output planes are larger than 2x2 take F(4x4, 3x3)
// instead (cpu/winograd_f4.h, winograd_tile below): the same three products as 36 GEMMs over 4x4
// tiles, 1.36x fewer multiply-adds than F(2x2, 3x3) at cnn8's 14x14 planes and 1.78x at 7x7, for
// a larger rounding error (its constants hold 1/6 and 1/24).
//
// The sums run in a fixed order given by the shape alone (each GEMM as cpu::sgemm cuts it; the
// overlapping input-gradient tiles in row-major tile order), so the bits do not depend on the
// thread count; they differ from the im2col path's, as OpenBLAS's own do between CPUs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/layer_shapes.h"

namespace sparseprox {
namespace cpu {

// Points of F(2x2, 3x3)'s transform domain: the 4x4 input tile.
constexpr std::size_t kWinogradPoints = 16;

// The tile conv2d's Winograd kernels cut s's output planes into: 4 (F(4x4, 3x3), 36 points a
// tile: cpu/winograd_f4.h) when its products are smaller than F(2x2, 3x3)'s, 36 ceil(h/4)
// ceil(w/4) < 16 ceil(h/2) ceil(w/2) (every output plane larger than 2x2: cnn8's 14x14 planes
// 576 against 784, 7x7 144 against 256), else 2.
std::size_t winograd_tile(const ConvShape& s);

// Whether winograd_tile may return 4 (tests set it to false to reach F(2x2, 3x3) on any shape).
inline bool& winograd_large_tiles_allowed() {
    static bool allowed = true;
    return allowed;
}

// Whether conv2d's CPU operations take F(2x2, 3x3) for s: a 3x3 kernel, stride 1, a non-empty
// output, and more than one input channel (one-channel layers have their direct kernels,
// cpu/conv_direct.h, and too few multiply-adds per tile for the transforms to pay).
bool conv_winograd_applies(const ConvShape& s);

// Samples per chunk of the forward or the backward: a power of two, at most 128 tiles in all
// forward and 512 backward with F(2x2, 3x3), 64 and 256 with F(4x4, 3x3) (the products' T; a
// plane larger than that is a chunk alone), at most the batch; the shape and the CPU decide it.
std::size_t winograd_chunk_samples(const ConvShape& s, bool backward);

// Floats of the transformed weights: points * c_out * c_in (16 or 36 points, winograd_tile).
std::size_t winograd_weight_floats(const ConvShape& s);

// U[xi] (c_out, c_in) = (G W[co, ci] G^T)[xi] for the 16 points, from W (c_out, c_in, 3, 3).
void winograd_weights(const ConvShape& s, const float* W, float* U);

// A 2x2 max-pool of stride 2 without padding after the convolution (cpu/maxpool_2x2.h), fused
// into the transforms: its windows are the output's 2x2 tiles (those of the tiles of an odd-sized
// plane's last row and column lie in no window). Planes (j, co) of a chunk, j-major, each
// h x w = floor(h_out / 2) x floor(w_out / 2) windows; winners index the output plane.
bool conv_winograd_pool_applies(const ConvShape& s, const PoolShape& pool);

struct WinogradPooledOutput {
    float* pooled;         // (m, c_out, h, w): each window's maximum
    std::int32_t* arg;     // the same: its winner
    unsigned char* redo;   // (m, c_out): 1 where the plane's windows hold a NaN (see below)
};

// m consecutive samples x (m, c_in, h_in, w_in): out[co * out_ld + j * h_out*w_out + p] =
// b[co] + the convolution of sample j at output pixel p. threaded: the transforms' planes and
// each GEMM's blocks over the OpenMP team (from outside a parallel region). With pool: the
// pooled maxima and winners instead, and out is written only for the planes marked redo, whose
// windows hold a NaN: the caller pools those with the general window loop (the bits of
// cpu::maxpool2d_forward on out either way).
void conv_winograd_forward(const ConvShape& s, const float* U, const float* x, std::size_t m, const float* b,
                           float* out, std::size_t out_ld, bool threaded,
                           const WinogradPooledOutput* pool = nullptr);

// The gradients of m consecutive samples from their output gradients dy (laid out as the forward's
// out, rows dy_ld apart): dW (c_out, c_in, 3, 3) = their weight gradient (overwritten), and when
// dx is not null dx (m, c_in, h_in, w_in) = their input gradients (overwritten).
void conv_winograd_backward(const ConvShape& s, const float* U, const float* x, std::size_t m, const float* dy,
                            std::size_t dy_ld, float* dx, float* dW, bool threaded);

}  // namespace cpu
}  // namespace sparseprox
