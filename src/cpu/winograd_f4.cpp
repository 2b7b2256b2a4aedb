// Winograd F(4x4, 3x3) plane transforms (cpu/winograd_f4.h).
//
// Each transform is two passes of a 1-D one over a tile's 6x6 (or 4x4) values, first down the
// columns and then across the rows, on vectors whose 4 lanes are 4 tiles. A block's patches are
// read as rows of 4 floats per tile and turned into lanes by 4x4 transposes; the points are
// stored as whole vectors, 4 consecutive tiles of a transformed row.
#include "cpu/winograd_f4.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "cpu/conv_direct.h"
#include "cpu/maxpool_2x2.h"
#include "cpu/simd.h"

namespace sparseprox {
namespace cpu {

float* zeroed_gradient_planes(const WinogradTiling& t, std::ptrdiff_t np) {
    thread_local std::vector<float> plane;
    const std::size_t area = static_cast<std::size_t>(np * t.rows * t.stride);
    if (plane.size() < area + 8) plane.resize(area + 8);
    std::fill(plane.begin(), plane.begin() + static_cast<std::ptrdiff_t>(area), 0.0f);
    return plane.data();
}

namespace winograd4 {
namespace {

using idx = std::ptrdiff_t;
constexpr float kSixth = 1.0f / 6.0f, kTwelfth = 1.0f / 12.0f, kTwentyFourth = 1.0f / 24.0f;

#define SP_AVX2 __attribute__((target("avx2,fma")))
#define SP_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

// The 1-D transforms, on vectors of 8 tiles (GCC's vector arithmetic on __m256).

// B^T d for one column d0..d5 of a patch (or one row of B^T d).
SP_AVX2_INLINE void bt(const __m256 (&d)[6], __m256 (&o)[6]) {
    const __m256 a = d[4] - 4.0f * d[2], b = d[3] - 4.0f * d[1];
    const __m256 c = d[4] - d[2], e = 2.0f * (d[3] - d[1]);
    o[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    o[1] = a + b;
    o[2] = a - b;
    o[3] = c + e;
    o[4] = c - e;
    o[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

// A^T m: 4 values from 6.
SP_AVX2_INLINE void at(const __m256 (&m)[6], __m256 (&o)[4]) {
    const __m256 s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + 2.0f * d34;
    o[2] = s12 + 4.0f * s34;
    o[3] = d12 + 8.0f * d34 + m[5];
}

// A g: 6 values from 4 (the adjoint of A^T).
SP_AVX2_INLINE void a_of(const __m256 (&g)[4], __m256 (&o)[6]) {
    const __m256 e = g[0] + g[2], f = g[1] + g[3];
    const __m256 e2 = g[0] + 4.0f * g[2], f2 = 2.0f * g[1] + 8.0f * g[3];
    o[0] = g[0];
    o[1] = e + f;
    o[2] = e - f;
    o[3] = e2 + f2;
    o[4] = e2 - f2;
    o[5] = g[3];
}

// B x: 6 values from 6 (the adjoint of B^T).
SP_AVX2_INLINE void b_of(const __m256 (&x)[6], __m256 (&o)[6]) {
    const __m256 p = x[1] + x[2], q = x[1] - x[2], s34 = x[3] + x[4], d34 = x[3] - x[4];
    o[0] = 4.0f * x[0];
    o[1] = 4.0f * (x[5] - q) - 2.0f * d34;
    o[2] = -(5.0f * x[0] + 4.0f * p + s34);
    o[3] = q + 2.0f * d34 - 5.0f * x[5];
    o[4] = x[0] + p + s34;
    o[5] = x[5];
}

// G g for a column g0..g2 of 3x3 weights (or a row of G g): 6 values.
SP_AVX2_INLINE void g_of(__m256 g0, __m256 g1, __m256 g2, __m256 (&o)[6]) {
    o[0] = 0.25f * g0;
    o[1] = -kSixth * (g0 + g1 + g2);
    o[2] = -kSixth * (g0 - g1 + g2);
    o[3] = kTwentyFourth * (g0 + 2.0f * g1 + 4.0f * g2);
    o[4] = kTwentyFourth * (g0 - 2.0f * g1 + 4.0f * g2);
    o[5] = g2;
}

// G^T x: 3 values from 6 (the adjoint of G).
SP_AVX2_INLINE void gt_of(const __m256 (&x)[6], __m256 (&o)[3]) {
    o[0] = 0.25f * x[0] - kSixth * (x[1] + x[2]) + kTwentyFourth * (x[3] + x[4]);
    o[1] = kSixth * (x[2] - x[1]) + kTwelfth * (x[3] - x[4]);
    o[2] = kSixth * (x[3] + x[4] - x[1] - x[2]) + x[5];
}

constexpr idx kLanes = 8;

// out[.][k] = F(in[.][k]) for each of the Cols columns: a 1-D transform down every column.
template <int In, int Out, int Cols, void (*F)(const __m256 (&)[In], __m256 (&)[Out])>
SP_AVX2_INLINE void down_columns(const __m256 (&in)[In][Cols], __m256 (&out)[Out][Cols]) {
    for (idx k = 0; k < Cols; ++k) {
        __m256 col[In], res[Out];
        for (idx i = 0; i < In; ++i) col[i] = in[i][k];
        F(col, res);
        for (idx i = 0; i < Out; ++i) out[i][k] = res[i];
    }
}

// A block: its first tile p0 in a group of np planes' tiles (plane-major), its tiles (at most 8:
// n), and each lane's plane and tile position; lanes past n repeat the last tile, so their reads
// stay inside the planes.
struct Block {
    idx p0, n;
    idx h[kLanes], ty[kLanes], tx[kLanes];
};

Block block(const WinogradTiling& t, idx np, idx p0) {
    Block b;
    b.p0 = p0;
    b.n = std::min<idx>(kLanes, np * t.tiles - p0);
    idx h = p0 / t.tiles, ty = (p0 - h * t.tiles) / t.tw, tx = p0 - h * t.tiles - ty * t.tw;
    for (idx l = 0; l < kLanes; ++l) {
        b.h[l] = h;
        b.ty[l] = ty;
        b.tx[l] = tx;
        if (l + 1 < b.n && ++tx == t.tw) {
            tx = 0;
            if (++ty == t.th) {
                ty = 0;
                ++h;
            }
        }
    }
    return b;
}

// The 8 lanes' rows at base + off[l] as lanes: o[k] lane l = row l's float k, k < 4.
SP_AVX2_INLINE void rows_to_lanes(const float* base, const idx (&off)[kLanes], __m256 (&o)[4]) {
    __m128 h[2][4];
    for (idx half = 0; half < 2; ++half) {
        __m128 r0 = _mm_loadu_ps(base + off[4 * half]), r1 = _mm_loadu_ps(base + off[4 * half + 1]);
        __m128 r2 = _mm_loadu_ps(base + off[4 * half + 2]), r3 = _mm_loadu_ps(base + off[4 * half + 3]);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        h[half][0] = r0;
        h[half][1] = r1;
        h[half][2] = r2;
        h[half][3] = r3;
    }
    for (idx k = 0; k < 4; ++k) o[k] = _mm256_set_m128(h[1][k], h[0][k]);
}

// Floats 4 and 5 of the 8 lanes' rows at base + off[l] as lanes.
SP_AVX2_INLINE void rows_to_lanes_45(const float* base, const idx (&off)[kLanes], __m256& o4, __m256& o5) {
    __m128 lo[2], hi[2];
    for (idx half = 0; half < 2; ++half) {
        const float* b = base + 4;
        const __m128 h0 = _mm_loadu_ps(b + off[4 * half]), h1 = _mm_loadu_ps(b + off[4 * half + 1]);
        const __m128 h2 = _mm_loadu_ps(b + off[4 * half + 2]), h3 = _mm_loadu_ps(b + off[4 * half + 3]);
        const __m128 a = _mm_unpacklo_ps(h0, h1), c = _mm_unpacklo_ps(h2, h3);
        lo[half] = _mm_movelh_ps(a, c);
        hi[half] = _mm_movehl_ps(c, a);
    }
    o4 = _mm256_set_m128(lo[1], lo[0]);
    o5 = _mm256_set_m128(hi[1], hi[0]);
}

// Stores v at p: 8 lanes, or only the first n (4 in a 7x7 or 8x8 plane's one block). AMD's
// masked stores are slow (vmaskmovps was most of these transforms' time), so whole halves go as
// 128-bit stores and only the rest masked.
SP_AVX2_INLINE void store_lanes(float* p, __m256 v, idx n) {
    if (n == kLanes) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m128 part = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(p, part);
        if (n == 4) return;
        p += 4;
        n -= 4;
        part = _mm256_extractf128_ps(v, 1);
    }
    _mm_maskstore_ps(p, _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(n)), _mm_setr_epi32(0, 1, 2, 3)), part);
}

// rows rows of w floats from src (rows ss apart) into a zero-bordered plane (rows ds apart, at
// least w + 8 floats of room after each row's start, 8 past the last): whole 8-float stores,
// the lanes past w written as 0 (the border's own value; past the row's end they land on the
// next row, written after).
SP_AVX2_INLINE void copy_into_border(const float* src, idx ss, float* dst, idx ds, idx rows, idx w) {
    for (idx r = 0; r < rows; ++r)
        for (idx c = 0; c < w; c += kLanes)
            _mm256_storeu_ps(dst + r * ds + c,
                             c + kLanes <= w ? _mm256_loadu_ps(src + r * ss + c)
                                             : _mm256_maskload_ps(src + r * ss + c, lanes_below(w - c)));
}

// rows rows of w floats from src (rows ss apart) out to dst (rows w apart, the plane's own): the
// last row's tail masked, as past it lies another plane.
SP_AVX2_INLINE void copy_out_of_border(const float* src, idx ss, float* dst, idx rows, idx w) {
    for (idx r = 0; r < rows; ++r)
        for (idx c = 0; c < w; c += kLanes) {
            const __m256 v = _mm256_loadu_ps(src + r * ss + c);
            if (c + kLanes <= w || r + 1 < rows) _mm256_storeu_ps(dst + r * w + c, v);
            else _mm256_maskstore_ps(dst + r * w + c, lanes_below(w - c), v);
        }
}

// The 8x8 matrix of rows v[0..7] transposed in place.
SP_AVX2_INLINE void transpose8(__m256 (&v)[8]) {
    __m256 t[8], u[8];
    for (idx k = 0; k < 4; ++k) {
        t[2 * k] = _mm256_unpacklo_ps(v[2 * k], v[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(v[2 * k], v[2 * k + 1]);
    }
    for (idx k = 0; k < 2; ++k) {
        u[4 * k + 0] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (idx k = 0; k < 4; ++k) {
        v[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        v[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}

// A block's 16 outputs A^T m A + bias, f[i][j][l] = tile l's output (i, j).
SP_AVX2_INLINE void block_outputs(const float* m, std::size_t ms, __m256 bias, float (&f)[4][4][kLanes]) {
    __m256 r[4][6];  // A^T m: the columns combined
    for (idx k = 0; k < 6; ++k) {
        __m256 col[6], res[4];
        for (idx i = 0; i < 6; ++i) col[i] = _mm256_loadu_ps(m + static_cast<std::size_t>(6 * i + k) * ms);
        at(col, res);
        for (idx i = 0; i < 4; ++i) r[i][k] = res[i];
    }
    for (idx i = 0; i < 4; ++i) {
        __m256 res[4];
        at(r[i], res);
        for (idx j = 0; j < 4; ++j) _mm256_store_ps(f[i][j], res[j] + bias);
    }
}

}  // namespace

idx group_planes(const WinogradTiling& t) { return t.tiles <= 4 && kLanes % t.tiles == 0 ? kLanes / t.tiles : 1; }

SP_AVX2 void input_planes(const WinogradTiling& t, const float* x, idx x_step, idx np, float* v, std::size_t vs) {
    const idx area = t.rows * t.stride;
    float* P = bordered_plane_buffer(np * t.rows, t.stride, t.ph, t.pw, t.h_in, t.w_in);
    for (idx h = 0; h < np; ++h)
        copy_into_border(x + h * x_step, t.w_in, P + h * area + t.ph * t.stride + t.pw, t.stride, t.h_in, t.w_in);
    for (idx p0 = 0; p0 < np * t.tiles; p0 += kLanes) {
        const Block b = block(t, np, p0);
        idx off[kLanes];
        for (idx l = 0; l < kLanes; ++l) off[l] = b.h[l] * area + 4 * b.ty[l] * t.stride + 4 * b.tx[l];
        __m256 w[6][6];  // B^T d: the rows combined, per column
        {
            __m256 d[6][6];  // d[r][k]: the patches' row r, column k
            for (idx r = 0; r < 6; ++r) {
                __m256 lo[4];
                rows_to_lanes(P + r * t.stride, off, lo);
                for (idx k = 0; k < 4; ++k) d[r][k] = lo[k];
                rows_to_lanes_45(P + r * t.stride, off, d[r][4], d[r][5]);
            }
            down_columns<6, 6, 6, bt>(d, w);
        }
        float* o = v + p0;
        for (idx i = 0; i < 6; ++i) {  // (B^T d) B: the columns combined
            __m256 res[6];
            bt(w[i], res);
            for (idx k = 0; k < 6; ++k) store_lanes(o + static_cast<std::size_t>(6 * i + k) * vs, res[k], b.n);
        }
    }
}

SP_AVX2 void output_planes(const WinogradTiling& t, const float* m, std::size_t ms, float bias, float* y, idx y_step,
                           idx np) {
    const __m256 bv = _mm256_set1_ps(bias);
    for (idx p0 = 0; p0 < np * t.tiles; p0 += kLanes) {
        const Block b = block(t, np, p0);
        alignas(32) float f[4][4][kLanes];
        block_outputs(m + p0, ms, bv, f);
        for (idx l = 0; l < b.n; ++l) {
            const idx oy = 4 * b.ty[l], ox = 4 * b.tx[l];
            const idx rows = std::min<idx>(4, t.h_out - oy), cols = std::min<idx>(4, t.w_out - ox);
            float* yl = y + b.h[l] * y_step;
            for (idx i = 0; i < rows; ++i)
                for (idx j = 0; j < cols; ++j) yl[(oy + i) * t.w_out + ox + j] = f[i][j][l];
        }
    }
}

SP_AVX2 unsigned pool_planes(const WinogradTiling& t, const float* m, std::size_t ms, float bias, float* pooled,
                             std::int32_t* arg, idx p_step, idx np) {
    const idx ph = t.h_out / 2, pw = t.w_out / 2;
    const __m256i below = _mm256_set1_epi32(static_cast<int>(t.w_out));
    const __m256 bv = _mm256_set1_ps(bias);
    unsigned nan = 0;
    for (idx p0 = 0; p0 < np * t.tiles; p0 += kLanes) {
        const Block b = block(t, np, p0);
        alignas(32) float f[4][4][kLanes];
        block_outputs(m + p0, ms, bv, f);
        alignas(32) std::int32_t base[kLanes];  // each tile's top-left output, times 2
        for (idx l = 0; l < kLanes; ++l) base[l] = static_cast<std::int32_t>(2 * (2 * b.ty[l] * t.w_out + 2 * b.tx[l]));
        const __m256i at0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(base));
        for (idx a = 0; a < 2; ++a)
            for (idx c = 0; c < 2; ++c) {
                const __m256 v00 = _mm256_load_ps(f[2 * a][2 * c]), v01 = _mm256_load_ps(f[2 * a][2 * c + 1]);
                const __m256 v10 = _mm256_load_ps(f[2 * a + 1][2 * c]), v11 = _mm256_load_ps(f[2 * a + 1][2 * c + 1]);
                const __m256 mx = max_2x2_avx2(v00, v01, v10, v11);
                const __m256i at = _mm256_add_epi32(at0, _mm256_set1_epi32(static_cast<int>(2 * (a * t.w_out + c))));
                alignas(32) float mxs[kLanes];
                alignas(32) std::int32_t ws[kLanes], un[kLanes];
                _mm256_store_ps(mxs, mx);
                _mm256_store_si256(reinterpret_cast<__m256i*>(un),
                                   _mm256_castps_si256(unordered_2x2_avx2(v00, v01, v10, v11)));
                _mm256_store_si256(reinterpret_cast<__m256i*>(ws), winners_2x2_avx2(v00, v01, v10, mx, at, below));
                for (idx l = 0; l < b.n; ++l) {
                    const idx wy = 2 * b.ty[l] + a, wx = 2 * b.tx[l] + c;
                    if (wy >= ph || wx >= pw) continue;
                    const idx at_l = b.h[l] * p_step + wy * pw + wx;
                    pooled[at_l] = mxs[l];
                    arg[at_l] = ws[l];
                    nan |= static_cast<unsigned>(un[l] & 1) << b.h[l];
                }
            }
    }
    return nan;
}

SP_AVX2 void gradient_planes(const WinogradTiling& t, const float* g, idx g_step, idx np, float* dm, std::size_t ms) {
    const idx gs = 4 * t.tw, area = 4 * t.th * gs;  // the bordered gradient planes: 4 th x 4 tw, 0 past the output
    float* G = bordered_plane_buffer(np * 4 * t.th, gs, 0, 0, t.h_out, t.w_out);
    for (idx h = 0; h < np; ++h) copy_into_border(g + h * g_step, t.w_out, G + h * area, gs, t.h_out, t.w_out);
    for (idx p0 = 0; p0 < np * t.tiles; p0 += kLanes) {
        const Block b = block(t, np, p0);
        idx off[kLanes];
        for (idx l = 0; l < kLanes; ++l) off[l] = b.h[l] * area + 4 * b.ty[l] * gs + 4 * b.tx[l];
        __m256 r[6][4];  // A g: the rows combined, per column
        {
            __m256 gr[4][4];  // gr[i][k]: the tiles' row i, column k
            for (idx i = 0; i < 4; ++i) rows_to_lanes(G + i * gs, off, gr[i]);
            down_columns<4, 6, 4, a_of>(gr, r);
        }
        float* o = dm + p0;
        for (idx i = 0; i < 6; ++i) {  // (A g) A^T: the columns combined
            __m256 res[6];
            a_of(r[i], res);
            for (idx k = 0; k < 6; ++k) store_lanes(o + static_cast<std::size_t>(6 * i + k) * ms, res[k], b.n);
        }
    }
}

SP_AVX2 void input_gradient_planes(const WinogradTiling& t, const float* dv, std::size_t vs, float* dx, idx dx_step,
                                   idx np) {
    const idx area = t.rows * t.stride;
    float* Q = zeroed_gradient_planes(t, np);
    for (idx p0 = 0; p0 < np * t.tiles; p0 += kLanes) {
        const Block b = block(t, np, p0);
        __m256 r[6][6];  // B dv: the rows combined, per column
        for (idx k = 0; k < 6; ++k) {
            __m256 col[6], res[6];
            for (idx i = 0; i < 6; ++i)
                col[i] = _mm256_loadu_ps(dv + p0 + static_cast<std::size_t>(6 * i + k) * vs);
            b_of(col, res);
            for (idx i = 0; i < 6; ++i) r[i][k] = res[i];
        }
        // Row by row of the patches: each tile's row (6 columns, 2 zeros after them) is a column
        // of the 8x8 matrix of the row's 6 column vectors, transposed. Neighbouring tiles of a
        // tile row overlap by 2 columns: the run's rows are summed in registers, 4 columns at a
        // time (the left tile's columns 4-7 with the right one's 0-3), and each 4 added once
        // into the plane (adding 8-wide rows one after the other made every load wait on a
        // store it overlapped by half).
        for (idx i = 0; i < 6; ++i) {
            __m256 res[6], c[8];
            b_of(r[i], res);
            for (idx k = 0; k < 6; ++k) c[k] = res[k];
            c[6] = c[7] = _mm256_setzero_ps();
            transpose8(c);
            for (idx l = 0; l < b.n;) {
                idx e = l + 1;  // the run: lanes l .. e - 1, one tile row of one plane
                while (e < b.n && b.h[e] == b.h[l] && b.ty[e] == b.ty[l]) ++e;
                float* q = Q + b.h[l] * area + (4 * b.ty[l] + i) * t.stride + 4 * b.tx[l];
                __m128 carry = _mm_setzero_ps();
                for (idx k = l; k < e; ++k, q += 4) {
                    _mm_storeu_ps(q, _mm_add_ps(_mm_loadu_ps(q), _mm_add_ps(carry, _mm256_castps256_ps128(c[k]))));
                    carry = _mm256_extractf128_ps(c[k], 1);
                }
                _mm_storeu_ps(q, _mm_add_ps(_mm_loadu_ps(q), carry));
                l = e;
            }
        }
    }
    for (idx h = 0; h < np; ++h)
        copy_out_of_border(Q + h * area + t.ph * t.stride + t.pw, t.stride, dx + h * dx_step, t.h_in, t.w_in);
}

SP_AVX2 void weights(const float* W, std::size_t pairs, std::size_t k0, float* U) {
    const idx n = std::min<idx>(kLanes, static_cast<idx>(pairs - k0));
    alignas(32) float g[9][kLanes] = {};  // the 8 pairs' weights, lanes
    for (idx l = 0; l < n; ++l)
        for (idx e = 0; e < 9; ++e) g[e][l] = W[9 * (k0 + static_cast<std::size_t>(l)) + static_cast<std::size_t>(e)];
    __m256 r[6][3];  // G g: down the columns
    for (idx j = 0; j < 3; ++j) {
        __m256 res[6];
        g_of(_mm256_load_ps(g[j]), _mm256_load_ps(g[3 + j]), _mm256_load_ps(g[6 + j]), res);
        for (idx i = 0; i < 6; ++i) r[i][j] = res[i];
    }
    for (idx i = 0; i < 6; ++i) {  // (G g) G^T: the same across
        __m256 res[6];
        g_of(r[i][0], r[i][1], r[i][2], res);
        for (idx j = 0; j < 6; ++j) store_lanes(U + static_cast<std::size_t>(6 * i + j) * pairs + k0, res[j], n);
    }
}

SP_AVX2 void weight_gradients(const float* dU, std::size_t pairs, std::size_t k0, float* dW) {
    const idx n = std::min<idx>(kLanes, static_cast<idx>(pairs - k0));
    __m256 r[3][6];  // G^T dU: down the columns
    for (idx j = 0; j < 6; ++j) {
        __m256 x[6], res[3];
        for (idx i = 0; i < 6; ++i) {
            const float* src = dU + static_cast<std::size_t>(6 * i + j) * pairs + k0;
            x[i] = n == kLanes ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, lanes_below(n));
        }
        gt_of(x, res);
        for (idx i = 0; i < 3; ++i) r[i][j] = res[i];
    }
    alignas(32) float w[9][kLanes];
    for (idx i = 0; i < 3; ++i) {  // (G^T dU) G: the same across
        __m256 res[3];
        gt_of(r[i], res);
        for (idx j = 0; j < 3; ++j) _mm256_store_ps(w[3 * i + j], res[j]);
    }
    for (idx l = 0; l < n; ++l)
        for (idx e = 0; e < 9; ++e) dW[9 * (k0 + static_cast<std::size_t>(l)) + static_cast<std::size_t>(e)] = w[e][l];
}

}  // namespace winograd4
}  // namespace cpu
}  // namespace sparseprox
