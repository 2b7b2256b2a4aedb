// The plane transforms of Winograd's F(4x4, 3x3) for cpu/conv_winograd.cpp (Lavin and Gray, CVPR
// 2016, with the points 0, +-1, +-2 and infinity): each tile yields 4x4 outputs from a 6x6 input
// patch, so the products take 36 multiply-adds per tile and channel pair for 16 outputs where
// F(2x2, 3x3) takes 16 for 4 (2.25 against 4 per output, 1.78x fewer).
//
// With the constant matrices B^T (6x6), G (6x3) and A^T (4x6):
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// the transforms are those of conv_winograd.h with these in place of F(2x2, 3x3)'s. G's 1/6 and
// 1/24 are not dyadic, and B^T and A^T scale by up to 8, so the rounding is larger than
// F(2x2, 3x3)'s (tests/test_conv_ops.cpp bounds it); dyadic data are no longer exact.
//
// The loops run over blocks of 8 consecutive tiles of a plane, one per lane of an AVX2 vector,
// the last block of a plane masked; they need AVX2 and FMA (conv_winograd.h's winograd_tile
// takes F(4x4, 3x3) only then), and every CPU that has them computes the same bits. Points are stored at o + xi * stride + tile, as conv_winograd.cpp
// lays out its transformed matrices.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sparseprox {
namespace cpu {

// How a plane is cut into tiles of n x n outputs (n = 2 or 4), and the bordered planes the input
// and its gradient go through: rows x stride floats, the input's rectangle at (ph, pw), zeros
// elsewhere.
struct WinogradTiling {
    std::ptrdiff_t n;
    std::ptrdiff_t h_in, w_in, ph, pw, h_out, w_out;
    std::ptrdiff_t th, tw, tiles;  // tiles per plane: th x tw
    std::ptrdiff_t rows, stride;
};

// The calling thread's zeroed planes for np input gradients, each rows x stride, one below the
// other, with 8 floats of room after them (a row's last 8-float load); valid until its next call.
float* zeroed_gradient_planes(const WinogradTiling& t, std::ptrdiff_t np);

namespace winograd4 {

// Points of the transform domain: the 6x6 input tile.
constexpr std::size_t kPoints = 36;

// The functions below take a tiling of n = 4: th = ceil(h_out / 4), tw = ceil(w_out / 4),
// bordered planes of rows = 4 th + 2 and stride = 4 tw + 4 (a patch row is read as two 4-float
// loads), as conv_winograd.cpp's tiling makes it.

// The plane functions take a group of np planes at once, consecutive samples of one channel:
// their sources and destinations `step` floats apart, their tiles side by side in the transformed
// matrices' rows (as the samples' are), so that planes of fewer than 8 tiles fill a vector.
// Planes per group: 8 / tiles for planes of 1, 2 or 4 tiles (cnn8's 7x7: 2), else 1.
std::ptrdiff_t group_planes(const WinogradTiling& t);

// V's 36 rows for the input planes x + h x_step (h_in, w_in): v[xi * vs + tile] = (B^T d B)[xi].
void input_planes(const WinogradTiling& t, const float* x, std::ptrdiff_t x_step, std::ptrdiff_t np, float* v,
                  std::size_t vs);

// The output planes y + h y_step (h_out, w_out) = A^T m A + bias per tile, from M's rows
// m[xi * ms + tile] (read up to 7 tiles past the group's last: the caller leaves room).
void output_planes(const WinogradTiling& t, const float* m, std::size_t ms, float bias, float* y,
                   std::ptrdiff_t y_step, std::ptrdiff_t np);

// The planes' 2x2 max-pools from the same outputs (cpu/maxpool_2x2.h's maxima and winners, the
// windows (h_out / 2) x (w_out / 2), plane h's at pooled and arg + h p_step); bit h set when
// plane h's windows hold a NaN.
unsigned pool_planes(const WinogradTiling& t, const float* m, std::size_t ms, float bias, float* pooled,
                     std::int32_t* arg, std::ptrdiff_t p_step, std::ptrdiff_t np);

// dM's 36 rows for the output-gradient planes g + h g_step (h_out, w_out): (A g_t A^T)[xi], g_t 0
// past the plane's edge.
void gradient_planes(const WinogradTiling& t, const float* g, std::ptrdiff_t g_step, std::ptrdiff_t np, float* dm,
                     std::size_t ms);

// dx + h dx_step (h_in, w_in) = the input gradients of the planes from dV's rows (dv[xi * vs +
// tile]): B dv_t B^T added over the tiles, which overlap by 2 rows and columns, in tile order.
void input_gradient_planes(const WinogradTiling& t, const float* dv, std::size_t vs, float* dx,
                           std::ptrdiff_t dx_step, std::ptrdiff_t np);

// U[xi * pairs + k] = (G g G^T)[xi] for the channel pairs k0 .. k0 + 7 (those below pairs), g
// pair k's 3x3 weights at W + 9 k.
void weights(const float* W, std::size_t pairs, std::size_t k0, float* U);

// The 3x3 weight gradients G^T dU G of the channel pairs k0 .. k0 + 7 (those below pairs) from
// dU[xi * pairs + k], to dW + 9 k.
void weight_gradients(const float* dU, std::size_t pairs, std::size_t k0, float* dW);

}  // namespace winograd4
}  // namespace cpu
}  // namespace sparseprox
