// Winograd convolution kernels (cpu/conv_winograd.h): the chunks and their GEMMs for both tile
// sizes, and F(2x2, 3x3)'s plane transforms (F(4x4, 3x3)'s are in cpu/winograd_f4.cpp).
//
// Layout: a chunk's T = m * th * tw tiles (th x tw per plane, sample-major, then row-major) are
// the columns of every transformed matrix, V (points, c_in, T), M and dM (points, c_out, T), each
// point's matrix a cache line past the one before (point_stride), so each of the 16 or 36
// products is one row-major GEMM with contiguous operands. A plane's transforms go in two
// passes: a loop over its tiles in order computes the 16 values of each (independent across
// tiles, so it vectorizes), and a plain loop moves them between the plane's 2x2 or 4x4 blocks and
// those arrays.
#include "cpu/conv_winograd.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "cpu/conv_direct.h"
#include "cpu/copy_rows.h"
#include "cpu/gemm.h"
#include "cpu/maxpool_2x2.h"
#include "cpu/simd.h"
#include "cpu/winograd_f4.h"

namespace sparseprox {
namespace cpu {
namespace {

using idx = std::ptrdiff_t;
// Tiles per chunk (the 16 products' T): fewer forward, where the transformed input and output
// of a chunk (16 x (c_in + c_out) x T floats) then stay in the core's cache, more backward,
// where each chunk adds a weight-gradient slot and its transform (cnn8's second and third layers
// at 2 threads, forward and backward: 26.9 ms with 256 and 256, 25.5-26.6 with 128 and 512).
constexpr std::size_t kForwardTiles = 128, kBackwardTiles = 512;
// F(4x4, 3x3)'s chunks: a tile has 36 points, and the backward's chunks must stay several to a
// batch, for the loop over them runs the pools' gradients and the bias sums (cnn8's third layer
// at 512 tiles was one chunk of 128 samples, and one thread made those while the other waited).
// cnn8 at 2 threads: 3,880-4,008 samples/s with 32-128 forward and 128-256 backward.
constexpr std::size_t kForwardTiles4 = 64, kBackwardTiles4 = 256;

// A plane's tiles (cpu/winograd_f4.h's WinogradTiling) and its bordered planes, 2 or 4 rows a tile
// row and 2 more. F(2x2, 3x3)'s stride leaves room for the AVX2 loops' blocks of 8 tiles (16
// columns and 2 more): their reads and adds stay inside the row. F(4x4, 3x3) reads a patch row
// as two 4-float loads, up to 4 tw + 4 columns.
using Tiling = WinogradTiling;

Tiling tiling(const ConvShape& s) {
    Tiling t;
    t.n = static_cast<idx>(winograd_tile(s));
    t.h_in = static_cast<idx>(s.h_in);
    t.w_in = static_cast<idx>(s.w_in);
    t.ph = static_cast<idx>(s.pad_h);
    t.pw = static_cast<idx>(s.pad_w);
    t.h_out = static_cast<idx>(s.h_out());
    t.w_out = static_cast<idx>(s.w_out());
    t.th = (t.h_out + t.n - 1) / t.n;
    t.tw = (t.w_out + t.n - 1) / t.n;
    t.tiles = t.th * t.tw;
    t.rows = t.n * t.th + 2;
    t.stride = t.n == 4 ? 4 * t.tw + 4 : 16 * ((t.tw + 7) / 8) + 2;
    return t;
}

// The transform domain's points: 16 for F(2x2, 3x3), 36 for F(4x4, 3x3).
std::size_t points(const Tiling& t) { return t.n == 4 ? winograd4::kPoints : kWinogradPoints; }

// The input x in the calling thread's bordered plane (cpu/conv_direct.h), rows + 2 by stride: 0
// outside the input's rectangle (the padding, and the rows and columns past the input when the
// output is odd-sized). The 2 rows more: the 4-tile rows' loop reads a pair of tile rows, past
// the last one when their count is odd.
float* bordered_input(const Tiling& t, const float* x) {
    float* P = bordered_plane_buffer(t.rows + 2, t.stride, t.ph, t.pw, t.h_in, t.w_in);
    copy_rows(x, t.w_in, P + t.ph * t.stride + t.pw, t.stride, t.h_in, t.w_in);
    return P;
}

// The input gradient's rectangle of the bordered plane Q, out to dx (h_in, w_in).
void copy_out_gradient(const Tiling& t, const float* Q, float* dx) {
    copy_rows(Q + t.ph * t.stride + t.pw, t.stride, dx, t.w_in, t.h_in, t.w_in);
}

// ---- portable loops ----------------------------------------------------------------------------

// V's 16 rows for one bordered input plane P: v[xi * vs + tile] = (B^T d B)[xi], d the tile's 4x4
// patch, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
void input_transform(const Tiling& t, const float* P, float* v, std::size_t vs) {
    for (idx ty = 0; ty < t.th; ++ty) {
        const float* r0 = P + 2 * ty * t.stride;
        const float* r1 = r0 + t.stride;
        const float* r2 = r1 + t.stride;
        const float* r3 = r2 + t.stride;
        float* o = v + ty * t.tw;
        for (idx tx = 0; tx < t.tw; ++tx) {
            const idx c = 2 * tx;
            float w[4][4];  // B^T d: the rows combined, per column of the patch
            for (idx k = 0; k < 4; ++k) {
                w[0][k] = r0[c + k] - r2[c + k];
                w[1][k] = r1[c + k] + r2[c + k];
                w[2][k] = r2[c + k] - r1[c + k];
                w[3][k] = r1[c + k] - r3[c + k];
            }
            for (idx i = 0; i < 4; ++i) {  // (B^T d) B: the columns combined
                o[(4 * i + 0) * vs + tx] = w[i][0] - w[i][2];
                o[(4 * i + 1) * vs + tx] = w[i][1] + w[i][2];
                o[(4 * i + 2) * vs + tx] = w[i][2] - w[i][1];
                o[(4 * i + 3) * vs + tx] = w[i][1] - w[i][3];
            }
        }
    }
}

// Tile p's 2x2 outputs A^T m A + bias from M's 16 rows (m[xi * ms + tile]), A^T = [1 1 1 0; 0 1 -1 -1].
inline void output_tile(const float* m, std::size_t ms, idx p, float bias, float (&out)[2][2]) {
    float s0[4], s1[4];
    for (idx k = 0; k < 4; ++k) {
        const float a = m[(0 + k) * ms + p], b = m[(4 + k) * ms + p];
        const float c = m[(8 + k) * ms + p], d = m[(12 + k) * ms + p];
        s0[k] = a + b + c;
        s1[k] = b - c - d;
    }
    out[0][0] = (s0[0] + s0[1] + s0[2]) + bias;
    out[0][1] = (s0[1] - s0[2] - s0[3]) + bias;
    out[1][0] = (s1[0] + s1[1] + s1[2]) + bias;
    out[1][1] = (s1[1] - s1[2] - s1[3]) + bias;
}

// One output plane y (h_out, w_out), tile by tile.
void output_transform(const Tiling& t, const float* m, std::size_t ms, float bias, float* y) {
    for (idx ty = 0; ty < t.th; ++ty)
        for (idx tx = 0; tx < t.tw; ++tx) {
            float out[2][2];
            output_tile(m, ms, ty * t.tw + tx, bias, out);
            for (idx i = 0; i < 2 && 2 * ty + i < t.h_out; ++i)
                for (idx j = 0; j < 2 && 2 * tx + j < t.w_out; ++j) y[(2 * ty + i) * t.w_out + 2 * tx + j] = out[i][j];
        }
}

// The plane's 2x2 max-pool from its tiles (window (ty, tx) is tile (ty, tx)): the maxima and
// winners of cpu/maxpool_2x2.h; false when a window holds a NaN.
bool output_pool(const Tiling& t, const float* m, std::size_t ms, float bias, float* pooled, std::int32_t* arg) {
    const idx ph = t.h_out / 2, pw = t.w_out / 2;
    const std::uint32_t below = static_cast<std::uint32_t>(t.w_out);
    int nan = 0;
    for (idx ty = 0; ty < ph; ++ty)
        for (idx tx = 0; tx < pw; ++tx) {
            float out[2][2];
            output_tile(m, ms, ty * t.tw + tx, bias, out);
            const float a = out[0][0], b = out[0][1], c = out[1][0], d = out[1][1];
            nan |= unordered_2x2(a, b, c, d);
            const float mx = max_2x2(a, b, c, d);
            pooled[ty * pw + tx] = mx;
            arg[ty * pw + tx] = winner_2x2(a, b, c, mx, static_cast<std::uint32_t>(2 * (ty * t.w_out + tx)), below);
        }
    return nan == 0;
}

// dM's 16 rows for one output-gradient plane g (h_out, w_out): dm[xi * ms + tile] = (A g_t A^T)[xi],
// g_t the tile's 2x2 gradient (0 past the plane's edge).
void gradient_transform(const Tiling& t, const float* g, float* dm, std::size_t ms) {
    for (idx ty = 0; ty < t.th; ++ty)
        for (idx tx = 0; tx < t.tw; ++tx) {
            const idx oy = 2 * ty, ox = 2 * tx, p = ty * t.tw + tx;
            const bool has_bottom = oy + 1 < t.h_out, has_right = ox + 1 < t.w_out;
            const float* top = g + oy * t.w_out + ox;
            const float g00 = top[0], g01 = has_right ? top[1] : 0.0f;
            const float g10 = has_bottom ? top[t.w_out] : 0.0f, g11 = has_bottom && has_right ? top[t.w_out + 1] : 0.0f;
            // g A^T: each row (g0, g0 + g1, g0 - g1, -g1); then A (that): the same down the columns
            const float h0[4] = {g00, g00 + g01, g00 - g01, -g01};
            const float h1[4] = {g10, g10 + g11, g10 - g11, -g11};
            for (idx k = 0; k < 4; ++k) {
                dm[(0 + k) * ms + p] = h0[k];
                dm[(4 + k) * ms + p] = h0[k] + h1[k];
                dm[(8 + k) * ms + p] = h0[k] - h1[k];
                dm[(12 + k) * ms + p] = -h1[k];
            }
        }
}

// Adds B dv_t B^T for every tile into the zeroed bordered plane Q, from dV's 16 rows for the
// plane (dv[xi * vs + tile]), B = [1 0 0 0; 0 1 -1 1; -1 1 1 0; 0 0 0 -1]. Neighbouring tiles share
// 2 rows or columns; the additions go in the AVX2 loop's order: a row of blocks of 8 tiles, and
// in each of a block's 4 plane rows first every tile's columns 0 and 1, then its columns 2 and 3.
void input_gradient_transform(const Tiling& t, const float* dv, std::size_t vs, float* Q) {
    float c[4][4][8];  // a block's tiles: c[i][k][lane], row i and column k of B dv B^T
    for (idx ty = 0; ty < t.th; ++ty)
        for (idx tx0 = 0; tx0 < t.tw; tx0 += 8) {
            const idx n = std::min<idx>(8, t.tw - tx0);
            for (idx l = 0; l < n; ++l) {
                const idx p = ty * t.tw + tx0 + l;
                float r[4][4];  // B dv: the rows combined
                for (idx k = 0; k < 4; ++k) {
                    const float a = dv[(0 + k) * vs + p], b = dv[(4 + k) * vs + p];
                    const float cc = dv[(8 + k) * vs + p], d = dv[(12 + k) * vs + p];
                    r[0][k] = a;
                    r[1][k] = b - cc + d;
                    r[2][k] = b + cc - a;
                    r[3][k] = -d;
                }
                for (idx i = 0; i < 4; ++i) {  // (B dv) B^T: the columns combined
                    c[i][0][l] = r[i][0];
                    c[i][1][l] = r[i][1] - r[i][2] + r[i][3];
                    c[i][2][l] = r[i][1] + r[i][2] - r[i][0];
                    c[i][3][l] = -r[i][3];
                }
            }
            for (idx i = 0; i < 4; ++i) {
                float* row = Q + (2 * ty + i) * t.stride + 2 * tx0;
                for (idx l = 0; l < n; ++l) {
                    row[2 * l] += c[i][0][l];
                    row[2 * l + 1] += c[i][1][l];
                }
                for (idx l = 0; l < n; ++l) {
                    row[2 * l + 2] += c[i][2][l];
                    row[2 * l + 3] += c[i][3][l];
                }
            }
        }
}

// ---- AVX2: 8 tiles of a row at a time, the same operations in the same order (the same bits) ---

// Stores v's lanes at p: all of them, or with `masked` only those that keep selects (a block
// whose 8 lanes would pass its plane's last tile; otherwise the extra lanes land on tiles of the
// same plane that are written after them).
__attribute__((target("avx2,fma"), always_inline)) inline void store_block(float* p, __m256 v, bool masked,
                                                                          __m256i keep) {
    if (masked) _mm256_maskstore_ps(p, keep, v);
    else _mm256_storeu_ps(p, v);
}

__attribute__((target("avx2,fma"), always_inline)) inline __m256 negate(__m256 v) {
    return _mm256_xor_ps(v, _mm256_set1_ps(-0.0f));
}

// The arithmetic of the four transforms on a block of 8 tiles, shared by the loops over rows of
// tiles and over pairs of 4-tile rows (which differ in how lanes meet plane positions).

// V's 16 points of a block from its patches, a[r][k] holding row r, column k: B^T d B, stored
// at o + xi * vs.
__attribute__((target("avx2,fma"), always_inline)) inline void store_input_points(const __m256 (&a)[4][4], float* o,
                                                                                 std::size_t vs, bool masked,
                                                                                 __m256i keep) {
    __m256 w[4][4];
    for (idx k = 0; k < 4; ++k) {
        w[0][k] = _mm256_sub_ps(a[0][k], a[2][k]);
        w[1][k] = _mm256_add_ps(a[1][k], a[2][k]);
        w[2][k] = _mm256_sub_ps(a[2][k], a[1][k]);
        w[3][k] = _mm256_sub_ps(a[1][k], a[3][k]);
    }
    for (idx i = 0; i < 4; ++i) {
        store_block(o + (4 * i + 0) * vs, _mm256_sub_ps(w[i][0], w[i][2]), masked, keep);
        store_block(o + (4 * i + 1) * vs, _mm256_add_ps(w[i][1], w[i][2]), masked, keep);
        store_block(o + (4 * i + 2) * vs, _mm256_sub_ps(w[i][2], w[i][1]), masked, keep);
        store_block(o + (4 * i + 3) * vs, _mm256_sub_ps(w[i][1], w[i][3]), masked, keep);
    }
}

// A block's outputs from M's 16 points at src + xi * ms: out[i][j] = (A^T m A)[i][j] + bias.
__attribute__((target("avx2,fma"), always_inline)) inline void output_points(const float* src, std::size_t ms,
                                                                            __m256 bias, __m256 (&out)[2][2]) {
    __m256 s0[4], s1[4];
    for (idx k = 0; k < 4; ++k) {
        const __m256 a = _mm256_loadu_ps(src + (0 + k) * ms), b = _mm256_loadu_ps(src + (4 + k) * ms);
        const __m256 c = _mm256_loadu_ps(src + (8 + k) * ms), d = _mm256_loadu_ps(src + (12 + k) * ms);
        s0[k] = _mm256_add_ps(_mm256_add_ps(a, b), c);
        s1[k] = _mm256_sub_ps(_mm256_sub_ps(b, c), d);
    }
    out[0][0] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0[0], s0[1]), s0[2]), bias);
    out[0][1] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s0[1], s0[2]), s0[3]), bias);
    out[1][0] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s1[0], s1[1]), s1[2]), bias);
    out[1][1] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s1[1], s1[2]), s1[3]), bias);
}

// dM's 16 points of a block from its tiles' gradients g[i][j]: A g A^T, stored at o + xi * ms.
__attribute__((target("avx2,fma"), always_inline)) inline void store_gradient_points(const __m256 (&g)[2][2], float* o,
                                                                                    std::size_t ms, bool masked,
                                                                                    __m256i keep) {
    const __m256 h0[4] = {g[0][0], _mm256_add_ps(g[0][0], g[0][1]), _mm256_sub_ps(g[0][0], g[0][1]), negate(g[0][1])};
    const __m256 h1[4] = {g[1][0], _mm256_add_ps(g[1][0], g[1][1]), _mm256_sub_ps(g[1][0], g[1][1]), negate(g[1][1])};
    for (idx k = 0; k < 4; ++k) {
        store_block(o + (0 + k) * ms, h0[k], masked, keep);
        store_block(o + (4 + k) * ms, _mm256_add_ps(h0[k], h1[k]), masked, keep);
        store_block(o + (8 + k) * ms, _mm256_sub_ps(h0[k], h1[k]), masked, keep);
        store_block(o + (12 + k) * ms, negate(h1[k]), masked, keep);
    }
}

// A block's input-gradient tiles c[i][k] = (B dv B^T)[i][k] from dV's 16 points at src + xi * vs,
// the lanes that keep leaves out read as 0.
__attribute__((target("avx2,fma"), always_inline)) inline void input_gradient_points(const float* src, std::size_t vs,
                                                                                    __m256i keep,
                                                                                    __m256 (&c)[4][4]) {
    __m256 r[4][4];
    for (idx k = 0; k < 4; ++k) {
        const __m256 a = _mm256_maskload_ps(src + (0 + k) * vs, keep);
        const __m256 b = _mm256_maskload_ps(src + (4 + k) * vs, keep);
        const __m256 cc = _mm256_maskload_ps(src + (8 + k) * vs, keep);
        const __m256 d = _mm256_maskload_ps(src + (12 + k) * vs, keep);
        r[0][k] = a;
        r[1][k] = _mm256_add_ps(_mm256_sub_ps(b, cc), d);
        r[2][k] = _mm256_sub_ps(_mm256_add_ps(b, cc), a);
        r[3][k] = negate(d);
    }
    for (idx i = 0; i < 4; ++i) {
        c[i][0] = r[i][0];
        c[i][1] = _mm256_add_ps(_mm256_sub_ps(r[i][1], r[i][2]), r[i][3]);
        c[i][2] = _mm256_sub_ps(_mm256_add_ps(r[i][1], r[i][2]), r[i][0]);
        c[i][3] = negate(r[i][3]);
    }
}

__attribute__((target("avx2,fma"))) void input_transform_avx2(const Tiling& t, const float* P, float* v,
                                                              std::size_t vs) {
    for (idx ty = 0; ty < t.th; ++ty) {
        const float* row = P + 2 * ty * t.stride;
        for (idx tx0 = 0; tx0 < t.tw; tx0 += 8) {
            const idx n = std::min<idx>(8, t.tw - tx0);
            const bool masked = ty * t.tw + tx0 + 8 > t.tiles;
            const __m256i keep = lanes_below(n);
            __m256 a[4][4];  // a[r][k]: the patches' row r, column k
            for (idx r = 0; r < 4; ++r) {
                split_even_odd(row + r * t.stride + 2 * tx0, a[r][0], a[r][1]);
                split_even_odd(row + r * t.stride + 2 * tx0 + 2, a[r][2], a[r][3]);
            }
            store_input_points(a, v + ty * t.tw + tx0, vs, masked, keep);
        }
    }
}

// One output row's 16 columns from a block's two outputs per tile, interleaved; n: the columns
// left in the row from p, room: the floats left in the plane from p. Past the row's end the
// columns belong to the rows below, written after this one; past the plane's end they are not
// stored.
__attribute__((target("avx2,fma"), always_inline)) inline void store_output_row(float* p, __m256 left, __m256 right,
                                                                               idx n, idx room) {
    __m256 lo, hi;
    interleave(left, right, lo, hi);
    if (room >= 16) {
        _mm256_storeu_ps(p, lo);
        _mm256_storeu_ps(p + 8, hi);
    } else {
        _mm256_maskstore_ps(p, lanes_below(n), lo);
        if (n > 8) _mm256_maskstore_ps(p + 8, lanes_below(n - 8), hi);
    }
}

// Reads 8 lanes from m's rows past the plane's tiles (other tiles' values, or the slack after
// the chunk's buffer); those lanes' outputs are never stored.
__attribute__((target("avx2,fma"))) void output_transform_avx2(const Tiling& t, const float* m, std::size_t ms,
                                                               float bias, float* y) {
    const __m256 bv = _mm256_set1_ps(bias);
    const idx plane = t.h_out * t.w_out;
    for (idx ty = 0; ty < t.th; ++ty) {
        const idx oy = 2 * ty;
        for (idx tx0 = 0; tx0 < t.tw; tx0 += 8) {
            __m256 out[2][2];
            output_points(m + ty * t.tw + tx0, ms, bv, out);
            // The top row's extra columns may land on the bottom row only while the bottom row is
            // still to be written: from a row's first block (the last block of a longer row
            // would overwrite the bottom row's first blocks, already stored).
            const idx n = t.w_out - 2 * tx0, at = oy * t.w_out + 2 * tx0;
            store_output_row(y + at, out[0][0], out[0][1], n, tx0 == 0 ? plane - at : n);
            if (oy + 1 < t.h_out) store_output_row(y + at + t.w_out, out[1][0], out[1][1], n, plane - at - t.w_out);
        }
    }
}

__attribute__((target("avx2,fma"))) void gradient_transform_avx2(const Tiling& t, const float* g, float* dm,
                                                                 std::size_t ms) {
    for (idx ty = 0; ty < t.th; ++ty) {
        const idx oy = 2 * ty;
        const float* top = g + oy * t.w_out;
        for (idx tx0 = 0; tx0 < t.tw; tx0 += 8) {
            const idx n_tiles = std::min<idx>(8, t.tw - tx0);
            const bool masked = ty * t.tw + tx0 + 8 > t.tiles;
            const __m256i keep = lanes_below(n_tiles);
            const idx n = t.w_out - 2 * tx0;  // the row's columns from the block's first
            __m256 g[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()}, {_mm256_setzero_ps(), _mm256_setzero_ps()}};
            split_even_odd(top + 2 * tx0, n, g[0][0], g[0][1]);
            if (oy + 1 < t.h_out) split_even_odd(top + t.w_out + 2 * tx0, n, g[1][0], g[1][1]);
            store_gradient_points(g, dm + ty * t.tw + tx0, ms, masked, keep);
        }
    }
}

// output_pool with AVX2, 8 windows of a tile row at a time: the same outputs as
// output_transform_avx2, pooled in registers with cpu/maxpool_2x2.h's vector forms. Stores are
// whole while the 8 lanes fit in the pooled plane (the extra ones land on windows written after
// them), masked at its end; the NaN test counts only the lanes of windows.
__attribute__((target("avx2,fma"))) bool output_pool_avx2(const Tiling& t, const float* m, std::size_t ms,
                                                          float bias, float* pooled, std::int32_t* arg) {
    const idx ph = t.h_out / 2, pw = t.w_out / 2, plane = ph * pw;
    const __m256 bv = _mm256_set1_ps(bias);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lane_at = _mm256_add_epi32(lane, lane), below = _mm256_set1_epi32(static_cast<int>(t.w_out));
    __m256 nan = _mm256_setzero_ps();
    for (idx ty = 0; ty < ph; ++ty)
        for (idx tx0 = 0; tx0 < pw; tx0 += 8) {
            __m256 out[2][2];
            output_points(m + ty * t.tw + tx0, ms, bv, out);
            const __m256 a = out[0][0], b = out[0][1], c = out[1][0], d = out[1][1];
            const idx o = ty * pw + tx0;
            const __m256i keep = lanes_below(pw - tx0);
            nan = _mm256_or_ps(nan, _mm256_and_ps(unordered_2x2_avx2(a, b, c, d), _mm256_castsi256_ps(keep)));
            const __m256 mx = max_2x2_avx2(a, b, c, d);
            const __m256i at = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(2 * (ty * t.w_out + tx0))), lane_at);
            const __m256i w = winners_2x2_avx2(a, b, c, mx, at, below);
            if (plane - o >= 8) {
                _mm256_storeu_ps(pooled + o, mx);
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(arg + o), w);
            } else {
                _mm256_maskstore_ps(pooled + o, keep, mx);
                _mm256_maskstore_epi32(arg + o, keep, w);
            }
        }
    return _mm256_movemask_ps(nan) == 0;
}

// Adds 16 floats (lo, hi) into p.
__attribute__((target("avx2,fma"), always_inline)) inline void add_into(float* p, __m256 lo, __m256 hi) {
    _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), lo));
    _mm256_storeu_ps(p + 8, _mm256_add_ps(_mm256_loadu_ps(p + 8), hi));
}

// dV's lanes past the plane's tiles read as 0 (masked loads), so their columns of Q get +0.
__attribute__((target("avx2,fma"))) void input_gradient_transform_avx2(const Tiling& t, const float* dv,
                                                                       std::size_t vs, float* Q) {
    for (idx ty = 0; ty < t.th; ++ty)
        for (idx tx0 = 0; tx0 < t.tw; tx0 += 8) {
            const __m256i keep = lanes_below(std::min<idx>(8, t.tw - tx0));
            __m256 c[4][4];
            input_gradient_points(dv + ty * t.tw + tx0, vs, keep, c);
            for (idx i = 0; i < 4; ++i) {
                float* row = Q + (2 * ty + i) * t.stride + 2 * tx0;
                __m256 lo, hi;
                interleave(c[i][0], c[i][1], lo, hi);
                add_into(row, lo, hi);
                interleave(c[i][2], c[i][3], lo, hi);
                add_into(row + 2, lo, hi);
            }
        }
}

// ---- AVX2, rows of 4 tiles (7 or 8 wide outputs: cnn8's third layer): a block is the 8 tiles of
// two tile rows, one per 128-bit half, so the lanes are full. The same operations and, for the
// overlapping input-gradient tiles, the same order as the loops above.

// Two 8-float rows a (low halves) and b (high halves) as their even and odd floats: half h of
// `even` holds floats 0, 2, 4, 6 of row h.
__attribute__((target("avx2,fma"), always_inline)) inline void split_pair(__m256 a, __m256 b, __m256& even,
                                                                         __m256& odd) {
    const __m256 lo = _mm256_permute2f128_ps(a, b, 0x20), hi = _mm256_permute2f128_ps(a, b, 0x31);
    even = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    odd = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
}

// The inverse for each half: row h = left[h][0] right[h][0] ... left[h][3] right[h][3].
__attribute__((target("avx2,fma"), always_inline)) inline void interleave_pair(__m256 left, __m256 right,
                                                                              __m256& row0, __m256& row1) {
    const __m256 l = _mm256_unpacklo_ps(left, right), h = _mm256_unpackhi_ps(left, right);
    row0 = _mm256_permute2f128_ps(l, h, 0x20);
    row1 = _mm256_permute2f128_ps(l, h, 0x31);
}

__attribute__((target("avx2,fma"))) void input_transform_pairs_avx2(const Tiling& t, const float* P, float* v,
                                                                    std::size_t vs) {
    for (idx ty = 0; ty < t.th; ty += 2) {
        const idx p0 = ty * 4;
        const bool masked = p0 + 8 > t.tiles;
        const __m256i keep = lanes_below(t.tiles - p0);
        const float* row = P + 2 * ty * t.stride;  // tile row ty + 1's patches start 2 rows below
        __m256 a[4][4];
        for (idx r = 0; r < 4; ++r) {
            const float* upper = row + r * t.stride;
            const float* lower = upper + 2 * t.stride;
            split_pair(_mm256_loadu_ps(upper), _mm256_loadu_ps(lower), a[r][0], a[r][1]);
            split_pair(_mm256_loadu_ps(upper + 2), _mm256_loadu_ps(lower + 2), a[r][2], a[r][3]);
        }
        store_input_points(a, v + p0, vs, masked, keep);
    }
}

// One output row of 8 columns at `at` in the plane y of `plane` floats (w_out <= 8 wide): whole
// while the 8 floats fit in the plane (the columns past w_out land on the next rows, written
// after this one), else its first w_out.
__attribute__((target("avx2,fma"), always_inline)) inline void store_row8(float* y, idx at, idx plane, idx w_out,
                                                                         __m256 row) {
    if (plane - at >= 8) _mm256_storeu_ps(y + at, row);
    else _mm256_maskstore_ps(y + at, lanes_below(w_out), row);
}

__attribute__((target("avx2,fma"))) void output_transform_pairs_avx2(const Tiling& t, const float* m,
                                                                     std::size_t ms, float bias, float* y) {
    const __m256 bv = _mm256_set1_ps(bias);
    const idx plane = t.h_out * t.w_out;
    for (idx ty = 0; ty < t.th; ty += 2) {
        __m256 out[2][2];
        output_points(m + ty * 4, ms, bv, out);
        __m256 top[2], bottom[2];  // [h]: tile row ty + h's two output rows
        interleave_pair(out[0][0], out[0][1], top[0], top[1]);
        interleave_pair(out[1][0], out[1][1], bottom[0], bottom[1]);
        for (idx h = 0; h < 2; ++h) {  // rows in order: each one's extra columns are overwritten next
            const idx oy = 2 * (ty + h);
            if (oy >= t.h_out) break;
            store_row8(y, oy * t.w_out, plane, t.w_out, top[h]);
            if (oy + 1 < t.h_out) store_row8(y, (oy + 1) * t.w_out, plane, t.w_out, bottom[h]);
        }
    }
}

// The gradient's row oy of a plane at most 8 wide: 0 past the plane and past w_out.
__attribute__((target("avx2,fma"), always_inline)) inline __m256 gradient_row(const Tiling& t, const float* g,
                                                                             idx oy) {
    return oy < t.h_out ? _mm256_maskload_ps(g + oy * t.w_out, lanes_below(t.w_out)) : _mm256_setzero_ps();
}

__attribute__((target("avx2,fma"))) void gradient_transform_pairs_avx2(const Tiling& t, const float* g, float* dm,
                                                                       std::size_t ms) {
    for (idx ty = 0; ty < t.th; ty += 2) {
        const idx p0 = ty * 4, oy = 2 * ty;
        const bool masked = p0 + 8 > t.tiles;
        const __m256i keep = lanes_below(t.tiles - p0);
        __m256 gt[2][2];
        split_pair(gradient_row(t, g, oy), gradient_row(t, g, oy + 2), gt[0][0], gt[0][1]);
        split_pair(gradient_row(t, g, oy + 1), gradient_row(t, g, oy + 3), gt[1][0], gt[1][1]);
        store_gradient_points(gt, dm + p0, ms, masked, keep);
    }
}

// Pooled planes 3 or 4 windows wide (7- and 8-wide outputs) from rows of 4 tiles: lane 4h + tx is
// window (ty + h, tx), its top-left tap 2 ((ty + h) w_out + tx); a pooled row of 3 leaves lanes
// 3 and 7 without a window, and the lanes are packed into the pooled plane's order by a
// permutation.
struct PairLanes {
    __m256i at;      // the top-left taps, less 2 ty w_out
    __m256i pack;     // lane i of the packed vector: lane pack[i]
    __m256i windows;  // the lanes of windows when both rows are inside the pooled plane
};

__attribute__((target("avx2,fma"), always_inline)) inline PairLanes pair_lanes(const Tiling& t) {
    const int w2 = 2 * static_cast<int>(t.w_out);
    PairLanes l;
    l.at = _mm256_setr_epi32(0, 2, 4, 6, w2, w2 + 2, w2 + 4, w2 + 6);
    if (t.w_out / 2 == 3) {
        l.pack = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
        l.windows = _mm256_setr_epi32(-1, -1, -1, 0, -1, -1, -1, 0);
    } else {
        l.pack = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        l.windows = _mm256_set1_epi32(-1);
    }
    return l;
}

__attribute__((target("avx2,fma"))) bool output_pool_pairs_avx2(const Tiling& t, const float* m, std::size_t ms,
                                                                float bias, float* pooled, std::int32_t* arg) {
    const idx ph = t.h_out / 2, pw = t.w_out / 2, plane = ph * pw;
    const __m256 bv = _mm256_set1_ps(bias);
    const __m256i below = _mm256_set1_epi32(static_cast<int>(t.w_out));
    const PairLanes l = pair_lanes(t);
    __m256 nan = _mm256_setzero_ps();
    for (idx ty = 0; ty < ph; ty += 2) {
        __m256 out[2][2];
        output_points(m + ty * 4, ms, bv, out);
        const __m256 a = out[0][0], b = out[0][1], c = out[1][0], d = out[1][1];
        const bool two_rows = ty + 1 < ph;
        const __m256i windows = two_rows ? l.windows : _mm256_and_si256(l.windows, lanes_below(4));
        nan = _mm256_or_ps(nan, _mm256_and_ps(unordered_2x2_avx2(a, b, c, d), _mm256_castsi256_ps(windows)));
        const __m256 mx = max_2x2_avx2(a, b, c, d);
        const __m256i at = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(2 * ty * t.w_out)), l.at);
        const __m256i w = winners_2x2_avx2(a, b, c, mx, at, below);
        const __m256 mx_packed = _mm256_permutevar8x32_ps(mx, l.pack);
        const __m256i w_packed = _mm256_permutevar8x32_epi32(w, l.pack);
        const idx o = ty * pw;
        if (plane - o >= 8) {
            _mm256_storeu_ps(pooled + o, mx_packed);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(arg + o), w_packed);
        } else {
            const __m256i keep = lanes_below((two_rows ? 2 : 1) * pw);
            _mm256_maskstore_ps(pooled + o, keep, mx_packed);
            _mm256_maskstore_epi32(arg + o, keep, w_packed);
        }
    }
    return _mm256_movemask_ps(nan) == 0;
}

// Adds 8 floats into p.
__attribute__((target("avx2,fma"), always_inline)) inline void add_into8(float* p, __m256 v) {
    _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v));
}

__attribute__((target("avx2,fma"))) void input_gradient_transform_pairs_avx2(const Tiling& t, const float* dv,
                                                                             std::size_t vs, float* Q) {
    for (idx ty = 0; ty < t.th; ty += 2) {
        const idx p0 = ty * 4;
        const __m256i keep = lanes_below(t.tiles - p0);
        __m256 c[4][4];
        input_gradient_points(dv + p0, vs, keep, c);
        __m256 A[4][2], B[4][2];  // [i][h]: tile row ty + h's plane row 2 (ty + h) + i
        for (idx i = 0; i < 4; ++i) {
            interleave_pair(c[i][0], c[i][1], A[i][0], A[i][1]);
            interleave_pair(c[i][2], c[i][3], B[i][0], B[i][1]);
        }
        // tile row ty before ty + 1 (when there is one), as the portable loop adds them
        for (idx h = 0; h < (ty + 1 < t.th ? 2 : 1); ++h)
            for (idx i = 0; i < 4; ++i) {
                float* q = Q + (2 * (ty + h) + i) * t.stride;
                add_into8(q, A[i][h]);
                add_into8(q + 2, B[i][h]);
            }
    }
}

// ---- one plane of F(2x2, 3x3), on the loops this CPU takes ---------------------------------------

void transform_input_plane(const Tiling& t, const float* x, float* v, std::size_t vs) {
    const float* P = bordered_input(t, x);
    if (cpu_has_avx2_fma()) (t.tw == 4 ? input_transform_pairs_avx2 : input_transform_avx2)(t, P, v, vs);
    else input_transform(t, P, v, vs);
}

void transform_output_plane(const Tiling& t, const float* m, std::size_t ms, float bias, float* y) {
    if (cpu_has_avx2_fma()) (t.tw == 4 ? output_transform_pairs_avx2 : output_transform_avx2)(t, m, ms, bias, y);
    else output_transform(t, m, ms, bias, y);
}

void transform_gradient_plane(const Tiling& t, const float* g, float* dm, std::size_t ms) {
    if (cpu_has_avx2_fma()) (t.tw == 4 ? gradient_transform_pairs_avx2 : gradient_transform_avx2)(t, g, dm, ms);
    else gradient_transform(t, g, dm, ms);
}

bool pool_output_plane(const Tiling& t, const float* m, std::size_t ms, float bias, float* pooled,
                       std::int32_t* arg) {
    if (cpu_has_avx2_fma())
        return (t.tw == 4 ? output_pool_pairs_avx2 : output_pool_avx2)(t, m, ms, bias, pooled, arg);
    return output_pool(t, m, ms, bias, pooled, arg);
}

void transform_input_gradient_plane(const Tiling& t, const float* dv, std::size_t vs, float* dx) {
    float* Q = zeroed_gradient_planes(t, 1);
    if (cpu_has_avx2_fma())
        (t.tw == 4 ? input_gradient_transform_pairs_avx2 : input_gradient_transform_avx2)(t, dv, vs, Q);
    else input_gradient_transform(t, dv, vs, Q);
    copy_out_gradient(t, Q, dx);
}

// Floats from one point's matrix (c rows of T tiles) to the next: 16 more than c T, so that the
// transforms' stores to the points of a block of tiles, one per point, fall in as many cache sets.
// Without them a matrix of a multiple of 1024 floats (cnn8's third layer: 64 x 128 tiles) put
// every point's row in the same set of the core's L1 and each store missed.
std::size_t point_stride(std::size_t c, std::size_t T) { return c * T + 16; }

// The loops over a chunk's planes go by groups of consecutive samples of one channel: one plane
// each for F(2x2, 3x3), winograd4::group_planes for F(4x4, 3x3). Group q of a chunk of m samples
// and `channels` channels: channel c, samples j0 .. j0 + n - 1.
struct Group {
    std::size_t c, j0, n;
};

std::size_t group_size(const Tiling& t) { return t.n == 4 ? static_cast<std::size_t>(winograd4::group_planes(t)) : 1; }

std::size_t groups(const Tiling& t, std::size_t m, std::size_t channels) {
    return (m + group_size(t) - 1) / group_size(t) * channels;
}

Group group(const Tiling& t, std::size_t m, std::size_t channels, idx q) {
    const std::size_t g = group_size(t), jg = static_cast<std::size_t>(q) / channels;
    return {static_cast<std::size_t>(q) % channels, jg * g, std::min(g, m - jg * g)};
}

// V (points, c_in, T) of m consecutive samples x (m, c_in, h_in, w_in), T = m * tiles; threaded:
// the planes over the OpenMP team.
void transform_inputs(const Tiling& t, const float* x, std::size_t m, std::size_t c_in, float* V, bool threaded) {
    const std::size_t T = m * static_cast<std::size_t>(t.tiles), x_plane = static_cast<std::size_t>(t.h_in * t.w_in);
    const std::size_t tiles = static_cast<std::size_t>(t.tiles), vs = point_stride(c_in, T);
    const idx n_groups = static_cast<idx>(groups(t, m, c_in));
#pragma omp parallel for schedule(static) if (threaded && n_groups > 1)
    for (idx q = 0; q < n_groups; ++q) {
        const Group g = group(t, m, c_in, q);
        const float* xq = x + (g.j0 * c_in + g.c) * x_plane;
        float* vq = V + g.c * T + g.j0 * tiles;
        if (t.n == 4)
            winograd4::input_planes(t, xq, static_cast<idx>(c_in * x_plane), static_cast<idx>(g.n), vq, vs);
        else
            transform_input_plane(t, xq, vq, vs);
    }
}

// The calling thread's chunk scratch, grown to the largest seen and kept.
float* chunk_buffer(std::size_t floats) {
    thread_local std::vector<float> buffer;
    floats += 8;  // the AVX2 output transform reads up to 7 floats past the last plane's tiles
    if (buffer.size() < floats) buffer.resize(floats);
    return buffer.data();
}

}  // namespace

bool conv_winograd_applies(const ConvShape& s) {
    return s.kh == 3 && s.kw == 3 && s.stride_h == 1 && s.stride_w == 1 && s.c_in > 1 && s.c_out > 0 &&
           s.h_in + 2 * s.pad_h >= 3 && s.w_in + 2 * s.pad_w >= 3;
}

bool conv_winograd_pool_applies(const ConvShape& s, const PoolShape& pool) {
    return conv_winograd_applies(s) && is_pool_2x2(pool) && pool.h_in == s.h_out() && pool.w_in == s.w_out() &&
           s.h_out() >= 2 && s.w_out() >= 2;
}

std::size_t winograd_chunk_samples(const ConvShape& s, bool backward) {
    const Tiling t = tiling(s);
    const std::size_t tiles = static_cast<std::size_t>(std::max<idx>(t.tiles, 1));
    std::size_t chunk = 1;
    const std::size_t max_tiles =
        t.n == 4 ? (backward ? kBackwardTiles4 : kForwardTiles4) : (backward ? kBackwardTiles : kForwardTiles);
    while (chunk * 2 * tiles <= max_tiles) chunk *= 2;
    return std::min(chunk, std::max<std::size_t>(s.batch, 1));
}

std::size_t winograd_tile(const ConvShape& s) {
    const std::size_t h = s.h_out(), w = s.w_out();
    const std::size_t small = kWinogradPoints * ((h + 1) / 2) * ((w + 1) / 2);
    const std::size_t large = winograd4::kPoints * ((h + 3) / 4) * ((w + 3) / 4);
    return winograd_large_tiles_allowed() && cpu_has_avx2_fma() && large < small ? 4 : 2;
}

std::size_t winograd_weight_floats(const ConvShape& s) { return points(tiling(s)) * s.c_out * s.c_in; }

void winograd_weights(const ConvShape& s, const float* W, float* U) {
    const std::size_t pairs = s.c_out * s.c_in;
    if (tiling(s).n == 4) {
#pragma omp parallel for schedule(static) if (pairs >= 1024 && !omp_in_parallel())
        for (idx k0 = 0; k0 < static_cast<idx>(pairs); k0 += 8) winograd4::weights(W, pairs, static_cast<std::size_t>(k0), U);
        return;
    }
    // Each channel pair on its own, so over the threads when called outside a parallel region (it
    // runs before the chunks: on one thread, cnn8's second and third layers, forward and backward
    // at two threads, took 26.9-28.9 ms, four alternating rounds; 26.5-28.1 ms spread).
#pragma omp parallel for schedule(static) if (pairs >= 1024 && !omp_in_parallel())
    for (idx kk = 0; kk < static_cast<idx>(pairs); ++kk) {
        const std::size_t k = static_cast<std::size_t>(kk);
        const float* g = W + 9 * k;
        float r[4][3];  // G g: rows (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2)
        for (int j = 0; j < 3; ++j) {
            r[0][j] = g[j];
            r[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
            r[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
            r[3][j] = g[6 + j];
        }
        for (int i = 0; i < 4; ++i) {  // (G g) G^T: the same across
            U[(4 * i + 0) * pairs + k] = r[i][0];
            U[(4 * i + 1) * pairs + k] = 0.5f * (r[i][0] + r[i][1] + r[i][2]);
            U[(4 * i + 2) * pairs + k] = 0.5f * (r[i][0] - r[i][1] + r[i][2]);
            U[(4 * i + 3) * pairs + k] = r[i][2];
        }
    }
}

void conv_winograd_forward(const ConvShape& s, const float* U, const float* x, std::size_t m, const float* b,
                           float* out, std::size_t out_ld, bool threaded, const WinogradPooledOutput* pool) {
    const Tiling t = tiling(s);
    const std::size_t c_in = s.c_in, c_out = s.c_out;
    const std::size_t T = m * static_cast<std::size_t>(t.tiles);
    const std::size_t n_pix = static_cast<std::size_t>(t.h_out * t.w_out);
    const std::size_t np = points(t);
    const std::size_t vs = point_stride(c_in, T), ms = point_stride(c_out, T);
    float* V = chunk_buffer(np * (vs + ms));
    float* M = V + np * vs;
    transform_inputs(t, x, m, c_in, V, threaded);
    for (std::size_t xi = 0; xi < np; ++xi)
        sgemm(false, false, c_out, T, c_in, U + xi * c_out * c_in, c_in, V + xi * vs, T, 0.0f, M + xi * ms, T);
    const std::size_t pooled_plane = static_cast<std::size_t>((t.h_out / 2) * (t.w_out / 2));
    const std::size_t tiles = static_cast<std::size_t>(t.tiles);
    const idx n_groups = static_cast<idx>(groups(t, m, c_out));
#pragma omp parallel for schedule(static) if (threaded && n_groups > 1)
    for (idx q = 0; q < n_groups; ++q) {
        const Group g = group(t, m, c_out, q);
        const std::size_t co = g.c;
        const float* mq = M + co * T + g.j0 * tiles;
        const float bias = b ? b[co] : 0.0f;
        float* yq = out + co * out_ld + g.j0 * n_pix;
        if (t.n == 4) {
            unsigned redo = ~0u;  // planes to write whole: all of them without a pool
            if (pool) {
                const std::size_t at = (g.j0 * c_out + co) * pooled_plane;
                redo = winograd4::pool_planes(t, mq, ms, bias, pool->pooled + at, pool->arg + at,
                                              static_cast<idx>(c_out * pooled_plane), static_cast<idx>(g.n));
                for (std::size_t h = 0; h < g.n; ++h) pool->redo[(g.j0 + h) * c_out + co] = (redo >> h) & 1u;
            }
            if (redo == ~0u) {
                winograd4::output_planes(t, mq, ms, bias, yq, static_cast<idx>(n_pix), static_cast<idx>(g.n));
                continue;
            }
            for (std::size_t h = 0; h < g.n; ++h)
                if ((redo >> h) & 1u) winograd4::output_planes(t, mq + h * tiles, ms, bias, yq + h * n_pix, 0, 1);
            continue;
        }
        if (pool) {
            const std::size_t at = (g.j0 * c_out + co) * pooled_plane;
            const bool clean = pool_output_plane(t, mq, ms, bias, pool->pooled + at, pool->arg + at);
            pool->redo[g.j0 * c_out + co] = clean ? 0 : 1;
            if (clean) continue;
        }
        transform_output_plane(t, mq, ms, bias, yq);
    }
}

void conv_winograd_backward(const ConvShape& s, const float* U, const float* x, std::size_t m, const float* dy,
                            std::size_t dy_ld, float* dx, float* dW, bool threaded) {
    const Tiling t = tiling(s);
    const std::size_t c_in = s.c_in, c_out = s.c_out, pairs = c_in * c_out;
    const std::size_t T = m * static_cast<std::size_t>(t.tiles);
    const std::size_t n_pix = static_cast<std::size_t>(t.h_out * t.w_out), x_plane = s.h_in * s.w_in;
    const std::size_t np = points(t);
    const std::size_t vs = point_stride(c_in, T), ms = point_stride(c_out, T);
    float* V = chunk_buffer(np * (vs + ms + pairs));
    float* dM = V + np * vs;
    float* dU = dM + np * ms;
    const std::size_t tiles = static_cast<std::size_t>(t.tiles);
    const idx out_groups = static_cast<idx>(groups(t, m, c_out)), in_groups = static_cast<idx>(groups(t, m, c_in));
#pragma omp parallel for schedule(static) if (threaded && out_groups > 1)
    for (idx q = 0; q < out_groups; ++q) {
        const Group g = group(t, m, c_out, q);
        const float* gq = dy + g.c * dy_ld + g.j0 * n_pix;
        float* dmq = dM + g.c * T + g.j0 * tiles;
        if (t.n == 4) winograd4::gradient_planes(t, gq, static_cast<idx>(n_pix), static_cast<idx>(g.n), dmq, ms);
        else transform_gradient_plane(t, gq, dmq, ms);
    }
    transform_inputs(t, x, m, c_in, V, threaded);
    // dU[xi] (c_out, c_in) = dM[xi] (c_out, T) * V[xi]^T, then dW = G^T dU G per channel pair
    for (std::size_t xi = 0; xi < np; ++xi)
        sgemm(false, true, c_out, c_in, T, dM + xi * ms, T, V + xi * vs, T, 0.0f, dU + xi * pairs,
              c_in);
    if (t.n == 4) {
        for (std::size_t k0 = 0; k0 < pairs; k0 += 8) winograd4::weight_gradients(dU, pairs, k0, dW);
    } else {
        for (std::size_t k = 0; k < pairs; ++k) {
            float r[3][4];  // G^T dU: rows (u0 + (u1 + u2) / 2, (u1 - u2) / 2, (u1 + u2) / 2 + u3)
            for (std::size_t j = 0; j < 4; ++j) {
                const float u0 = dU[(0 + j) * pairs + k], u1 = dU[(4 + j) * pairs + k];
                const float u2 = dU[(8 + j) * pairs + k], u3 = dU[(12 + j) * pairs + k];
                r[0][j] = u0 + 0.5f * (u1 + u2);
                r[1][j] = 0.5f * (u1 - u2);
                r[2][j] = 0.5f * (u1 + u2) + u3;
            }
            float* w = dW + 9 * k;
            for (int i = 0; i < 3; ++i) {  // (G^T dU) G: the same across
                w[3 * i + 0] = r[i][0] + 0.5f * (r[i][1] + r[i][2]);
                w[3 * i + 1] = 0.5f * (r[i][1] - r[i][2]);
                w[3 * i + 2] = 0.5f * (r[i][1] + r[i][2]) + r[i][3];
            }
        }
    }
    if (!dx) return;
    // dV[xi] (c_in, T) = U[xi]^T (c_in, c_out) * dM[xi] (c_out, T), into V's place (read above)
    for (std::size_t xi = 0; xi < np; ++xi)
        sgemm(true, false, c_in, T, c_out, U + xi * pairs, c_in, dM + xi * ms, T, 0.0f, V + xi * vs, T);
#pragma omp parallel for schedule(static) if (threaded && in_groups > 1)
    for (idx q = 0; q < in_groups; ++q) {
        const Group g = group(t, m, c_in, q);
        const float* dvq = V + g.c * T + g.j0 * tiles;
        float* dxq = dx + (g.j0 * c_in + g.c) * x_plane;
        if (t.n == 4)
            winograd4::input_gradient_planes(t, dvq, vs, dxq, static_cast<idx>(c_in * x_plane), static_cast<idx>(g.n));
        else
            transform_input_gradient_plane(t, dvq, vs, dxq);
    }
}

}  // namespace cpu
}  // namespace sparseprox
