// CPU convolution and pooling, the oracle for the cuDNN twins.
//
// conv2d lowers the batch to GEMMs through im2col, a chunk of samples at a time. A chunk is a
// power of two of samples, about 1024 output pixels in all with OpenBLAS's products and 256 with
// oneDNN's (chunk_samples; lenet5's 8x8 second layer: 16 or 4 samples), fixed by the shape and
// the machine.
// Its samples' im2col matrices sit side by side, col (c_in*kh*kw, chunk*h_out*w_out), so each
// product is one GEMM with N = chunk*h_out*w_out columns, not one per sample (a 7x7 output is
// N = 49: OpenBLAS ran cnn8's 128 x 49 x 576 at 54 GFLOP/s, 128 x 784 x 576 at 66, on the 2-core
// development machine), and a batch is a few parallel regions, not a few per sample:
//   forward  out (c_out, N) = b + W (c_out, c_in*kh*kw) * col, written back per sample (or,
//            followed by a max-pool, pooled per sample from there: conv2d_maxpool_forward);
//   dL_dx    dcol (c_in*kh*kw, N) = W^T * dy, dy the chunk's output gradients side by side,
//            then col2im per sample;
//   dL_dW    the chunk's share dy * col^T (K = N) into a slot of its own, the slots summed in
//            chunk order in double; dL_db the same way, each chunk's channel sums in double.
// The chunks spread over the threads, each with its own scratch (kept between calls), handed
// out one at a time as threads come free, so a thread slowed by another process on its core
// takes fewer (nothing a chunk writes depends on the thread that runs it); with one chunk or one
// thread they run in turn and each GEMM spreads its blocks over the threads. Every
// chunk holds the same samples and every sum runs in the same order at any thread count, so the
// result is the same bits at any thread count.
// FLOPs per sample: 2 * c_out * c_in*kh*kw * h_out*w_out forward, twice that backward (one GEMM
// for dL_dW, one for dL_dx). im2col and col2im are memory-bound copies of about
// kh*kw / (stride_h*stride_w) times the input. Pools are direct loops, one OpenMP iteration per
// (sample, channel) plane, so no two threads ever write the same element; the 2x2 stride-2 pool
// of both presets has a loop of its own with the four taps in registers (the general window
// loop took a tenth of a cnn8 step).
// A layer with one input channel and stride 1 (the presets' first) skips im2col and the GEMM for
// its output and its weight gradient where the CPU has AVX2 and FMA: cpu/conv_direct.h. A 3x3
// stride-1 layer with several input channels (cnn8's second and third) skips im2col for all
// three products, which are Winograd's F(2x2, 3x3) there, in chunks of their own size:
// cpu/conv_winograd.h.
#include "cpu/conv_ops.h"

#include "cpu/conv_direct.h"
#include "cpu/conv_winograd.h"
#include "cpu/copy_rows.h"
#include "cpu/gemm.h"
#include "cpu/maxpool_2x2.h"
#include "cpu/simd.h"
#include "sparseprox/error.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace sparseprox {
namespace cpu {

namespace {
using idx = std::ptrdiff_t;  // OpenMP loops want a signed index; padding offsets are negative
constexpr std::size_t kParallelMin = 1 << 14;  // below this, threading costs more than it saves

// col (c_in*kh*kw, h_out*w_out) from one sample x (c_in, h_in, w_in), rows ld floats apart. Row
// (c, i, j) holds x[c, oy*stride_h + i - pad_h, ox*stride_w + j - pad_w] over (oy, ox); padded
// positions are 0. With padding, each channel is first copied into a zero-bordered plane (a
// thread's own buffer, (h_in + 2 pad_h) x (w_in + 2 pad_w)), so that every row is a plain block
// copy of h_out runs of w_out floats with no bounds to test: the runs are short (7 floats for a
// 7x7 output, 8 for lenet5's second layer), and the per-run range checks and zero loops that
// clipping needs took more time than the copying (2-4 GB/s written, against 9 for the
// one-channel first layers). The channels go over the threads; every row is written by one
// thread only, and the values are the same copies, so the bits are those of the plain formula.
void im2col(const ConvShape& s, const float* x, float* col, std::size_t ld, bool threaded) {
    const idx c_in = static_cast<idx>(s.c_in);
    const idx h_in = static_cast<idx>(s.h_in), w_in = static_cast<idx>(s.w_in);
    const idx h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    const idx kh = static_cast<idx>(s.kh), kw = static_cast<idx>(s.kw);
    const idx sh = static_cast<idx>(s.stride_h), sw = static_cast<idx>(s.stride_w);
    const idx ph = static_cast<idx>(s.pad_h), pw = static_cast<idx>(s.pad_w);
    const bool padded = ph > 0 || pw > 0;
    const idx hp = h_in + 2 * ph, wp = w_in + 2 * pw;  // the plane the taps read
    const std::size_t n_items = s.c_in * s.kh * s.kw * s.h_out() * s.w_out();
#pragma omp parallel for schedule(static) if (threaded && c_in > 1 && n_items >= kParallelMin)
    for (idx c = 0; c < c_in; ++c) {
        const float* plane = x + c * h_in * w_in;
        if (padded) {
            float* b = bordered_plane_buffer(hp, wp, ph, pw, h_in, w_in);
            copy_rows(plane, w_in, b + ph * wp + pw, wp, h_in, w_in);
            plane = b;
        }
        for (idx i = 0; i < kh; ++i)
            for (idx j = 0; j < kw; ++j) {
                float* dst = col + ((c * kh + i) * kw + j) * static_cast<idx>(ld);
                const float* src = plane + i * wp + j;
                if (sw == 1)
                    copy_rows(src, sh * wp, dst, w_out, h_out, w_out);
                else
                    for (idx oy = 0; oy < h_out; ++oy) {
                        const float* r = src + oy * sh * wp;
                        float* d = dst + oy * w_out;
                        for (idx ox = 0; ox < w_out; ++ox) d[ox] = r[ox * sw];
                    }
            }
    }
}

// One kernel row i of col2im at stride 1 for outputs W wide and kernels KW wide: plane row
// oy * sh + i (W + KW - 1 floats, the padded width) gets the rows of taps (i, 0), ..., (i, KW - 1)
// (each W floats, ld apart in col) added at offsets 0, ..., KW - 1. The row is held in registers
// while its KW taps are added, in the order of the general loop (tap j before tap j + 1), so each
// position receives the same additions in the same order: the same bits.
template <idx W, idx KW>
void col2im_taps_fixed(const float* __restrict taps, idx ld, float* __restrict plane, idx row_step, idx h_out) {
    for (idx oy = 0; oy < h_out; ++oy) {
        float* __restrict row = plane + oy * row_step;
        float acc[W + KW - 1];
        for (idx x = 0; x < W + KW - 1; ++x) acc[x] = row[x];
        for (idx j = 0; j < KW; ++j) {
            const float* __restrict g = taps + j * ld + oy * W;
            for (idx ox = 0; ox < W; ++ox) acc[j + ox] += g[ox];
        }
        for (idx x = 0; x < W + KW - 1; ++x) row[x] = acc[x];
    }
}

using Col2imTaps = void (*)(const float*, idx, float*, idx, idx);

// The fixed-width kernel row for the presets' layers (CNN8's 14 and 7 wide outputs of 3x3
// kernels, lenet5's 8 wide of 5x5), or null.
Col2imTaps col2im_taps_for(idx w_out, idx kw) {
    if (kw == 3 && w_out == 7) return col2im_taps_fixed<7, 3>;
    if (kw == 3 && w_out == 14) return col2im_taps_fixed<14, 3>;
    if (kw == 5 && w_out == 8) return col2im_taps_fixed<8, 5>;
    return nullptr;
}

// The adjoint of im2col: dx (c_in, h_in, w_in) = 0, then every entry of col (rows ld floats
// apart) is added to the input position it was gathered from. One thread per channel, since the
// taps (i, j) of a channel overlap whenever stride < kernel; within a channel the order is
// fixed, so the result is deterministic. With padding the sums go to a zero-bordered plane (as
// in im2col) whose interior is then copied out: the same additions in the same order for every
// input position, without bounds to test, and the border's sums are dropped.
void col2im(const ConvShape& s, const float* col, std::size_t ld, float* dx, bool threaded) {
    const idx c_in = static_cast<idx>(s.c_in);
    const idx h_in = static_cast<idx>(s.h_in), w_in = static_cast<idx>(s.w_in);
    const idx h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    const idx kh = static_cast<idx>(s.kh), kw = static_cast<idx>(s.kw);
    const idx sh = static_cast<idx>(s.stride_h), sw = static_cast<idx>(s.stride_w);
    const idx ph = static_cast<idx>(s.pad_h), pw = static_cast<idx>(s.pad_w);
    const bool padded = ph > 0 || pw > 0;
    const idx hp = h_in + 2 * ph, wp = w_in + 2 * pw;
    const idx n_cols = h_out * w_out;
    // The fixed-width rows need stride 1 across and the padded width w_out + kw - 1.
    const Col2imTaps fixed = sw == 1 && wp == w_out + kw - 1 ? col2im_taps_for(w_out, kw) : nullptr;
#pragma omp parallel for schedule(static) if (threaded && static_cast<std::size_t>(c_in * kh * kw * n_cols) >= kParallelMin)
    for (idx c = 0; c < c_in; ++c) {
        float* plane = dx + c * h_in * w_in;
        if (padded) {
            thread_local std::vector<float> border;
            if (border.size() < static_cast<std::size_t>(hp * wp)) border.resize(static_cast<std::size_t>(hp * wp));
            plane = border.data();
        }
        std::fill(plane, plane + hp * wp, 0.0f);
        if (fixed) {
            for (idx i = 0; i < kh; ++i)
                fixed(col + (c * kh + i) * kw * static_cast<idx>(ld), static_cast<idx>(ld), plane + i * wp, sh * wp,
                      h_out);
        } else
        for (idx i = 0; i < kh; ++i)
            for (idx j = 0; j < kw; ++j) {
                const float* src = col + ((c * kh + i) * kw + j) * static_cast<idx>(ld);
                float* base = plane + i * wp + j;
                for (idx oy = 0; oy < h_out; ++oy) {
                    float* __restrict row = base + oy * sh * wp;
                    const float* __restrict g = src + oy * w_out;
                    if (sw == 1)  // contiguous: vectorizes
                        for (idx ox = 0; ox < w_out; ++ox) row[ox] += g[ox];
                    else
                        for (idx ox = 0; ox < w_out; ++ox) row[ox * sw] += g[ox];
                }
            }
        if (padded) copy_rows(plane + ph * wp + pw, wp, dx + c * h_in * w_in, w_in, h_in, w_in);
    }
}

// Input rows [y_lo, y_hi) x columns [x_lo, x_hi) of the pooling window of output (oy, ox): the
// window clipped to the input, i.e. without its padded positions.
struct Window {
    idx y_lo, y_hi, x_lo, x_hi;
};

Window pool_window(const PoolShape& s, idx oy, idx ox) {
    const idx y0 = oy * static_cast<idx>(s.stride_h) - static_cast<idx>(s.pad_h);
    const idx x0 = ox * static_cast<idx>(s.stride_w) - static_cast<idx>(s.pad_w);
    return {std::max<idx>(y0, 0), std::min(y0 + static_cast<idx>(s.kh), static_cast<idx>(s.h_in)),
            std::max<idx>(x0, 0), std::min(x0 + static_cast<idx>(s.kw), static_cast<idx>(s.w_in))};
}

// Index in the plane xp (h_in, w_in) of the first maximum of window w in row-major order, or -1
// when the window holds no input position (impossible while pad < kernel). Padded positions are
// skipped, which is the same as counting them as -infinity and letting ties go to the first
// maximum: a real -infinity still beats them. The first NaN wins, so NaNs propagate.
idx window_argmax(const float* xp, idx w_in, const Window& w) {
    idx arg = -1;
    float best = 0.0f;
    for (idx iy = w.y_lo; iy < w.y_hi; ++iy)
        for (idx ix = w.x_lo; ix < w.x_hi; ++ix) {
            const float v = xp[iy * w_in + ix];
            if (std::isnan(v)) return iy * w_in + ix;
            if (arg < 0 || v > best) {
                arg = iy * w_in + ix;
                best = v;
            }
        }
    return arg;
}

// Whether a pooling loop over planes is worth threading: enough planes and enough window reads.
bool pool_parallel(const PoolShape& s, idx n_planes) {
    return n_planes > 1 && static_cast<std::size_t>(n_planes) * s.h_out() * s.w_out() * s.kh * s.kw >= kParallelMin;
}

// One chunk's scratch on the calling thread, grown to the largest convolution seen and kept (no
// allocation per step): the chunk's im2col matrix (or its gradient; not for a Winograd layer,
// whose transforms have buffers of their own) and its output (or output gradient) with the
// chunk's samples side by side.
struct ChunkScratch {
    float* col;  // (n_k, cols)
    float* out;  // (c_out, cols)
};

ChunkScratch chunk_scratch(const ConvShape& s, std::size_t chunk, bool with_col) {
    thread_local std::vector<float> buffer;
    const std::size_t cols = chunk * s.h_out() * s.w_out();
    const std::size_t n_col = with_col ? s.c_in * s.kh * s.kw * cols : 0, n_out = s.c_out * cols;
    if (buffer.size() < n_col + n_out) buffer.resize(n_col + n_out);
    return {buffer.data(), buffer.data() + n_col};
}

// A bias gradient's sum over output planes, in double: kBiasLanes running sums, lane l taking the
// plane's positions l, l + kBiasLanes, ... (the last n % kBiasLanes in lane 0), summed pairwise at
// the end; 16 lanes so that the adds do not wait on each other (four chains of 4 doubles with
// AVX2). The AVX2 and the plain loop make the same additions in the same order: the same bits.
constexpr std::size_t kBiasLanes = 16;

__attribute__((target("avx2,fma"))) std::size_t add_to_bias_lanes_avx2(double* lanes, const float* src,
                                                                       std::size_t n) {
    __m256d acc[4];
    for (int v = 0; v < 4; ++v) acc[v] = _mm256_loadu_pd(lanes + 4 * v);
    std::size_t p = 0;
    for (; p + kBiasLanes <= n; p += kBiasLanes)
        for (int v = 0; v < 4; ++v) acc[v] = _mm256_add_pd(acc[v], _mm256_cvtps_pd(_mm_loadu_ps(src + p + 4 * v)));
    for (int v = 0; v < 4; ++v) _mm256_storeu_pd(lanes + 4 * v, acc[v]);
    return p;
}

void add_to_bias_lanes(double* lanes, const float* src, std::size_t n) {
    std::size_t p = 0;
    if (cpu_has_avx2_fma()) {
        p = add_to_bias_lanes_avx2(lanes, src, n);
    } else {
        for (; p + kBiasLanes <= n; p += kBiasLanes)
            for (std::size_t l = 0; l < kBiasLanes; ++l) lanes[l] += src[p + l];
    }
    for (; p < n; ++p) lanes[0] += src[p];
}

double sum_bias_lanes(double* lanes) {
    for (std::size_t w = kBiasLanes / 2; w > 0; w /= 2)
        for (std::size_t l = 0; l < w; ++l) lanes[l] += lanes[l + w];
    return lanes[0];
}

// The calling thread's Winograd weights for W (cpu/conv_winograd.h), made once per call before
// the chunks (every chunk reads them).
const float* winograd_weights_of(const ConvShape& s, const float* W) {
    thread_local std::vector<float> U;
    if (U.size() < winograd_weight_floats(s)) U.resize(winograd_weight_floats(s));
    winograd_weights(s, W, U.data());
    return U.data();
}

// Whether the loop over chunks is worth threading: more than one chunk and enough multiply-adds.
// With one chunk (or one thread) the chunks run one after another and each GEMM spreads its
// blocks over the threads instead (cpu/gemm.h): the same blocks either way, so the same bits.
bool chunks_parallel(const ConvShape& s, std::size_t n_chunks) {
    const std::size_t n_k = s.c_in * s.kh * s.kw, n_pix = s.h_out() * s.w_out();
    return n_chunks > 1 && omp_get_max_threads() > 1 && !omp_in_parallel() &&
           s.batch * s.c_out * n_k * n_pix >= (std::size_t{1} << 18);
}

// The im2col matrices of samples [n0, n0 + m) side by side: col (n_k, m * n_pix), sample j in
// columns [j * n_pix, (j + 1) * n_pix). threaded: the rows over the threads (when the chunks are not).
void im2col_chunk(const ConvShape& s, const float* x, std::size_t n0, std::size_t m, float* col, bool threaded) {
    const std::size_t x_stride = s.c_in * s.h_in * s.w_in, n_pix = s.h_out() * s.w_out();
    for (std::size_t j = 0; j < m; ++j) im2col(s, x + (n0 + j) * x_stride, col + j * n_pix, m * n_pix, threaded);
}

// The common pool (2x2 windows, stride 2, no padding; cpu/maxpool_2x2.h) without the general
// window loop: one pass per plane over pairs of rows, taps in registers, selects instead of
// branches, so the loop vectorizes; a plane holding a NaN is redone by the general loop.
// One plane's maxima, and with kWinners each window's winner (argp: the index in xp of the tap
// first_max picks, the one maxpool_2x2_plane_backward routes the gradient to); false (partly
// written) when the plane holds a NaN.
template <bool kWinners>
bool maxpool_2x2_plane(const float* xp, float* yp, std::int32_t* argp, idx w_in, idx h_out, idx w_out) {
    int nan = 0;
    const std::uint32_t below = static_cast<std::uint32_t>(w_in);
    for (idx oy = 0; oy < h_out; ++oy) {
        const float* top = xp + 2 * oy * w_in;
        const float* bottom = top + w_in;
        float* out = yp + oy * w_out;
        for (idx ox = 0; ox < w_out; ++ox) {
            const float a = top[2 * ox], b = top[2 * ox + 1], c = bottom[2 * ox], d = bottom[2 * ox + 1];
            nan |= unordered_2x2(a, b, c, d);
            const float m = max_2x2(a, b, c, d);
            out[ox] = m;
            if constexpr (kWinners)
                argp[oy * w_out + ox] = winner_2x2(a, b, c, m, static_cast<std::uint32_t>(2 * (oy * w_in + ox)), below);
        }
    }
    return nan == 0;
}

// maxpool_2x2_plane with AVX2, 8 windows at a time. Rows of 8 or more windows: the last 8 of a
// row moved back to end at the row's end (the overlap is computed again, to the same values).
// Shorter rows (cnn8's 7 and 3, lenet5's 4): one vector per row from masked loads, stored whole
// (its extra lanes land in the next rows, which are written after it) except where that would
// pass the plane's end (masked stores there: they are slow on some CPUs). The same maxima
// (_mm256_max_ps(t, best) is "t > best ? t : best") and the same first_max masks as the scalar
// loop, on vectors: the same bits.
template <bool kWinners>
__attribute__((target("avx2,fma"))) bool maxpool_2x2_plane_avx2(const float* xp, float* yp, std::int32_t* argp,
                                                                idx w_in, idx h_out, idx w_out) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lane_at = _mm256_add_epi32(lane, lane);
    const __m256i below = _mm256_set1_epi32(static_cast<int>(w_in));
    const __m256i keep_row = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(w_out)), lane);
    const bool short_rows = w_out < 8;
    __m256 nan = _mm256_setzero_ps();
    for (idx oy = 0; oy < h_out; ++oy) {
        const float* top = xp + 2 * oy * w_in;
        const float* bottom = top + w_in;
        for (idx ox0 = 0; ox0 < w_out; ox0 += 8) {
            const idx ox = short_rows ? 0 : std::min(ox0, w_out - 8);
            __m256 a, b, c, d;
            if (short_rows) {
                split_even_odd(top, 2 * w_out, a, b);
                split_even_odd(bottom, 2 * w_out, c, d);
            } else {
                split_even_odd(top + 2 * ox, a, b);
                split_even_odd(bottom + 2 * ox, c, d);
            }
            nan = _mm256_or_ps(nan, unordered_2x2_avx2(a, b, c, d));
            const __m256 m = max_2x2_avx2(a, b, c, d);
            const idx at_out = oy * w_out + ox;
            const bool whole = !short_rows || at_out + 8 <= h_out * w_out;
            if (whole) _mm256_storeu_ps(yp + at_out, m);
            else _mm256_maskstore_ps(yp + at_out, keep_row, m);
            if constexpr (kWinners) {
                const __m256i at = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(2 * (oy * w_in + ox))), lane_at);
                const __m256i arg = winners_2x2_avx2(a, b, c, m, at, below);
                if (whole) _mm256_storeu_si256(reinterpret_cast<__m256i*>(argp + at_out), arg);
                else _mm256_maskstore_epi32(argp + at_out, keep_row, arg);
            }
        }
    }
    return _mm256_movemask_ps(nan) == 0;
}

// One plane's input gradient, every position written once (the tap that wins gets 0 + g, the
// general loop's 0 += g, and the others 0); false when the plane holds a NaN.
bool maxpool_2x2_plane_backward(const float* xp, const float* gp, float* dxp, idx h_in, idx w_in, idx h_out,
                                idx w_out) {
    int nan = 0;
    for (idx oy = 0; oy < h_out; ++oy) {
        const float* top = xp + 2 * oy * w_in;
        const float* bottom = top + w_in;
        float* d_top = dxp + 2 * oy * w_in;
        float* d_bottom = d_top + w_in;
        const float* g = gp + oy * w_out;
        for (idx ox = 0; ox < w_out; ++ox) {
            const float a = top[2 * ox], b = top[2 * ox + 1], c = bottom[2 * ox], d = bottom[2 * ox + 1];
            nan |= unordered_2x2(a, b, c, d);
            const FirstMax w = first_max(a, b, c, max_2x2(a, b, c, d));
            const float gv = 0.0f + g[ox];
            d_top[2 * ox] = keep_if(w.a, gv);
            d_top[2 * ox + 1] = keep_if(w.b, gv);
            d_bottom[2 * ox] = keep_if(w.c, gv);
            d_bottom[2 * ox + 1] = keep_if(w.d, gv);
        }
        for (idx ix = 2 * w_out; ix < w_in; ++ix) d_top[ix] = d_bottom[ix] = 0.0f;  // odd width
    }
    for (idx p = 2 * h_out * w_in; p < h_in * w_in; ++p) dxp[p] = 0.0f;  // odd height: the last row
    return nan == 0;
}

// One plane's max-pool, xp (h_in, w_in) -> yp (h_out, w_out), and where argp is not null each
// window's winner (the index in xp that maxpool_plane_backward routes the window's gradient to,
// -1 for a window without input taps): the 2x2 loop where it applies and the plane holds no NaN,
// the general window loop otherwise.
void maxpool_plane(const PoolShape& s, const float* xp, float* yp, std::int32_t* argp = nullptr) {
    const idx w_in = static_cast<idx>(s.w_in), h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    if (is_pool_2x2(s)) {
        const bool done = cpu_has_avx2_fma()
                              ? (argp ? maxpool_2x2_plane_avx2<true>(xp, yp, argp, w_in, h_out, w_out)
                                      : maxpool_2x2_plane_avx2<false>(xp, yp, nullptr, w_in, h_out, w_out))
                              : (argp ? maxpool_2x2_plane<true>(xp, yp, argp, w_in, h_out, w_out)
                                      : maxpool_2x2_plane<false>(xp, yp, nullptr, w_in, h_out, w_out));
        if (done) return;
    }
    for (idx oy = 0; oy < h_out; ++oy)
        for (idx ox = 0; ox < w_out; ++ox) {
            const idx arg = window_argmax(xp, w_in, pool_window(s, oy, ox));
            yp[oy * w_out + ox] = arg >= 0 ? xp[arg] : -std::numeric_limits<float>::infinity();
            if (argp) argp[oy * w_out + ox] = static_cast<std::int32_t>(arg);
        }
}

// One plane's max-pool gradient, every position of dxp (h_in, w_in) written: the argmax is
// recomputed from xp, so a window whose maximum appears twice routes its gradient to exactly one
// position (the first).
void maxpool_plane_backward(const PoolShape& s, const float* xp, const float* gp, float* dxp) {
    const idx h_in = static_cast<idx>(s.h_in), w_in = static_cast<idx>(s.w_in);
    const idx h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    // 2x2 windows never overlap: each input gets at most one term.
    if (is_pool_2x2(s) && maxpool_2x2_plane_backward(xp, gp, dxp, h_in, w_in, h_out, w_out)) return;
    std::fill(dxp, dxp + h_in * w_in, 0.0f);
    for (idx oy = 0; oy < h_out; ++oy)
        for (idx ox = 0; ox < w_out; ++ox) {
            const idx arg = window_argmax(xp, w_in, pool_window(s, oy, ox));
            if (arg >= 0) dxp[arg] += gp[oy * w_out + ox];
        }
}

// maxpool_plane_backward from the recorded winners: dxp (h_in, w_in) = 0, then each window's
// gradient added at its winner, windows in row-major order: the same additions in the same order
// as maxpool_plane_backward (whose 2x2 loop writes 0 + g at the winner and +0 elsewhere).
void maxpool_plane_backward_arg(std::size_t in_plane, std::size_t out_plane, const std::int32_t* argp,
                                const float* gp, float* dxp) {
    std::fill(dxp, dxp + in_plane, 0.0f);
    for (std::size_t o = 0; o < out_plane; ++o)
        if (argp[o] >= 0) dxp[argp[o]] += gp[o];
}

// The max-pool that follows a convolution in conv2d_maxpool_forward/backward: its input must be
// the convolution's output.
void check_pool_of(const ConvShape& c, const PoolShape& p) {
    if (p.batch != c.batch || p.channels != c.c_out || p.h_in != c.h_out() || p.w_in != c.w_out())
        throw Error("conv2d_maxpool: the pool's input (" + std::to_string(p.batch) + ", " +
                    std::to_string(p.channels) + ", " + std::to_string(p.h_in) + ", " + std::to_string(p.w_in) +
                    ") is not the convolution's output (" + std::to_string(c.batch) + ", " +
                    std::to_string(c.c_out) + ", " + std::to_string(c.h_out()) + ", " + std::to_string(c.w_out()) +
                    ")");
}

}  // namespace

// A power of two, about kChunkColumns output pixels (GEMM columns) per chunk, at most the batch:
// 1024 with OpenBLAS, 256 with oneDNN (conv_gemm_library). lenet5's second layer's three products
// (M or K = 50, K or M = 500) per 1024 columns at one thread, on the 2-core AVX-512 machine:
// oneDNN 1.88 ms in chunks of 1024 columns, 1.64 in chunks of 512, 1.54 in chunks of 256 (the
// im2col matrix, 500 x 256 floats, then fits the core's 1 MB L2); OpenBLAS's AVX2 kernels 1.65
// ms in chunks of 1024 or 512 and 1.86 in chunks of 256. The chunk depends on the shape and the
// machine alone, so every chunk holds the same samples and every GEMM has the same operands at
// any thread count (the bits do not change with threads).
std::size_t chunk_samples(const ConvShape& s, bool backward) {
    if (!conv_direct_applies(s) && conv_winograd_applies(s)) return winograd_chunk_samples(s, backward);
    const std::size_t kChunkColumns = conv_gemm_library() == GemmLibrary::onednn ? 256 : 1024;
    const std::size_t n_pix = std::max<std::size_t>(s.h_out() * s.w_out(), 1);
    std::size_t chunk = 1;
    while (chunk * 2 * n_pix <= kChunkColumns) chunk *= 2;
    return std::min(chunk, std::max<std::size_t>(s.batch, 1));
}

void conv2d_im2col(const ConvShape& s, const float* x, float* col) {
    im2col(s, x, col, s.h_out() * s.w_out(), true);
}

std::size_t conv2d_workspace_floats(const ConvShape& s) { return s.c_in * s.kh * s.kw * s.h_out() * s.w_out(); }

namespace {

// conv2d_forward, and with a pool conv2d_maxpool_forward: then each sample's output planes are
// pooled from the chunk's scratch, while they are in cache, and never written to memory; with
// Winograd and a 2x2 pool, each tile is pooled in the output transform itself, in registers
// (cpu/conv_winograd.h), and the scratch holds only the planes with a NaN.
void conv2d_forward_impl(const ConvShape& s, const float* x, const float* W, const float* b, float* y,
                         const PoolShape* pool, float* pooled, std::int32_t* arg) {
    const std::size_t n_k = s.c_in * s.kh * s.kw, n_pix = s.h_out() * s.w_out();
    const std::size_t y_stride = s.c_out * n_pix;
    if (s.batch == 0 || y_stride == 0) return;
    const std::size_t chunk = chunk_samples(s, false), n_chunks = (s.batch + chunk - 1) / chunk;
    const std::size_t c_out = s.c_out;
    const std::size_t pooled_plane = pool ? pool->h_out() * pool->w_out() : 0;
    const bool threaded = chunks_parallel(s, n_chunks);
    const bool direct = conv_direct_applies(s);
    const bool winograd = !direct && conv_winograd_applies(s);
    const bool winograd_pool = winograd && pool && conv_winograd_pool_applies(s, *pool);
    const float* U = winograd ? winograd_weights_of(s, W) : nullptr;
    const std::size_t x_stride = s.c_in * s.h_in * s.w_in;
#pragma omp parallel for schedule(dynamic) if (threaded)
    for (idx q = 0; q < static_cast<idx>(n_chunks); ++q) {
        const std::size_t n0 = static_cast<std::size_t>(q) * chunk, m = std::min(chunk, s.batch - n0);
        const std::size_t cols = m * n_pix;
        const ChunkScratch sc = chunk_scratch(s, chunk, !winograd);
        // One sample without a pool: the product's (c_out, n_pix) is the sample's output as laid
        // out in y, so it goes there directly.
        const bool in_place = m == 1 && !pool;
        float* const dst = in_place ? y + n0 * y_stride : sc.out;
        if (direct) {
            for (std::size_t j = 0; j < m; ++j) conv_direct_forward(s, x + (n0 + j) * x_stride, W, b, dst + j * n_pix, cols);
        } else if (winograd_pool) {
            // The pool in Winograd's output transform; only planes whose windows hold a NaN come
            // out whole (into the scratch), for the general window loop.
            thread_local std::vector<unsigned char> redo;
            if (redo.size() < m * c_out) redo.resize(m * c_out);
            const std::size_t at = n0 * c_out * pooled_plane;
            const WinogradPooledOutput out{pooled + at, arg + at, redo.data()};
            conv_winograd_forward(s, U, x + n0 * x_stride, m, b, dst, cols, !threaded, &out);
            for (std::size_t j = 0; j < m; ++j)
                for (std::size_t co = 0; co < c_out; ++co) {
                    const std::size_t plane = j * c_out + co;
                    if (redo[plane])
                        maxpool_plane(*pool, sc.out + co * cols + j * n_pix, pooled + at + plane * pooled_plane,
                                      arg + at + plane * pooled_plane);
                }
            continue;
        } else if (winograd) {
            conv_winograd_forward(s, U, x + n0 * x_stride, m, b, dst, cols, !threaded);
        } else {
            // dst (c_out, cols) = b + W (c_out, n_k) * col (n_k, cols), the bias added as
            // cpu::sgemm adds it for the library
            im2col_chunk(s, x, n0, m, sc.col, !threaded);
            sgemm(false, false, c_out, cols, n_k, W, n_k, sc.col, cols, 1.0f, dst, cols, b, true, {},
                  conv_gemm_library());
        }
        if (in_place) continue;
        // y[n0 + j] (c_out, n_pix) = out's columns of sample j, copied out while in cache (or
        // pooled from there)
        for (std::size_t j = 0; j < m; ++j)
            for (std::size_t co = 0; co < c_out; ++co) {
                const float* src = sc.out + co * cols + j * n_pix;
                if (pool) {
                    const std::size_t at = ((n0 + j) * c_out + co) * pooled_plane;
                    maxpool_plane(*pool, src, pooled + at, arg + at);
                } else {
                    copy_rows(src, 0, y + (n0 + j) * y_stride + co * n_pix, 0, 1, static_cast<idx>(n_pix));
                }
            }
    }
}

}  // namespace

void conv2d_forward(const ConvShape& s, const float* x, const float* W, const float* b, float* y) {
    conv2d_forward_impl(s, x, W, b, y, nullptr, nullptr, nullptr);
}

void conv2d_maxpool_forward(const ConvShape& s, const PoolShape& pool, const float* x, const float* W,
                            const float* b, float* pooled, std::int32_t* arg) {
    check_pool_of(s, pool);
    conv2d_forward_impl(s, x, W, b, nullptr, &pool, pooled, arg);
}

namespace {

// conv2d_backward, and with a pool conv2d_maxpool_backward: there dL_dy is the gradient of the
// pooled output, and each plane of the convolution's output gradient is made from it and the
// recorded winners straight into the chunk's scratch, where the products read it, instead of
// being written to memory by the pool and gathered from there.
void conv2d_backward_impl(const ConvShape& s, const float* x, const float* W, const float* dL_dy, float* dL_dW,
                          float* dL_db, float* dL_dx, bool accumulate, const PoolShape* pool,
                          const std::int32_t* arg) {
    const std::size_t n_k = s.c_in * s.kh * s.kw, n_pix = s.h_out() * s.w_out();
    const std::size_t x_stride = s.c_in * s.h_in * s.w_in, y_stride = s.c_out * n_pix;
    if (!accumulate) {
        std::fill(dL_dW, dL_dW + s.n_weights(), 0.0f);
        std::fill(dL_db, dL_db + s.c_out, 0.0f);
    }
    if (s.batch == 0 || y_stride == 0) {
        if (dL_dx) std::fill(dL_dx, dL_dx + s.batch * x_stride, 0.0f);
        return;
    }
    const std::size_t chunk = chunk_samples(s, true), n_chunks = (s.batch + chunk - 1) / chunk;
    const std::size_t c_out = s.c_out, n_w = s.n_weights();
    const std::size_t pooled_plane = pool ? pool->h_out() * pool->w_out() : 0;

    // Every chunk's dL_dW and dL_db (its terms in double) go to a slot of their own, summed in
    // chunk order afterwards: the same sums in the same order at any thread count.
    thread_local std::vector<float> partial_W;
    thread_local std::vector<double> partial_b;
    if (partial_W.size() < n_chunks * n_w) partial_W.resize(n_chunks * n_w);
    if (partial_b.size() < n_chunks * c_out) partial_b.resize(n_chunks * c_out);
    float* const pW = partial_W.data();
    double* const pb = partial_b.data();

    const bool threaded = chunks_parallel(s, n_chunks);
    const bool direct = conv_direct_applies(s);
    const bool winograd = !direct && conv_winograd_applies(s);
    const float* U = winograd ? winograd_weights_of(s, W) : nullptr;
#pragma omp parallel for schedule(dynamic) if (threaded)
    for (idx q = 0; q < static_cast<idx>(n_chunks); ++q) {
        const std::size_t n0 = static_cast<std::size_t>(q) * chunk, m = std::min(chunk, s.batch - n0);
        const std::size_t cols = m * n_pix;
        const ChunkScratch sc = chunk_scratch(s, chunk, !winograd);
        // dy (c_out, cols): the chunk's output gradients side by side, and the bias terms. With
        // one sample and no pool that is the sample's gradient as it lies in dL_dy, read in place.
        double* bq = pb + static_cast<std::size_t>(q) * c_out;
        const float* dy = m == 1 && !pool ? dL_dy + n0 * y_stride : sc.out;
        for (std::size_t co = 0; co < c_out; ++co) {
            double lanes[kBiasLanes] = {};
            for (std::size_t j = 0; j < m; ++j) {
                // The plane's gradient: made in the scratch from the winners with a pool, else
                // read where it lies (and copied into the scratch when the chunk has several
                // samples); then its bias terms.
                const float* src = dL_dy + (n0 + j) * y_stride + co * n_pix;
                float* scratch = sc.out + co * cols + j * n_pix;
                if (pool) {
                    const std::size_t at = ((n0 + j) * c_out + co) * pooled_plane;
                    maxpool_plane_backward_arg(n_pix, pooled_plane, arg + at, dL_dy + at, scratch);
                    src = scratch;
                } else if (m > 1) {
                    copy_rows(src, 0, scratch, 0, 1, static_cast<idx>(n_pix));
                }
                add_to_bias_lanes(lanes, src, n_pix);
            }
            bq[co] = sum_bias_lanes(lanes);
        }
        float* const dWq = pW + static_cast<std::size_t>(q) * n_w;
        if (winograd) {
            conv_winograd_backward(s, U, x + n0 * x_stride, m, dy, cols, dL_dx ? dL_dx + n0 * x_stride : nullptr, dWq,
                                   !threaded);
            continue;
        }
        if (dL_dx) {
            // dcol (n_k, cols) = W^T (n_k, c_out) * dy (c_out, cols), scattered back per sample.
            sgemm(true, false, n_k, cols, c_out, W, n_k, dy, cols, 0.0f, sc.col, cols, nullptr, false, {},
                  conv_gemm_library());
            for (std::size_t j = 0; j < m; ++j) col2im(s, sc.col + j * n_pix, cols, dL_dx + (n0 + j) * x_stride, !threaded);
        }
        // This chunk's dL_dW (c_out, n_k) = dy (c_out, cols) * col^T (cols, n_k)
        if (direct) {
            conv_direct_weight_grad(s, x + n0 * x_stride, m, dy, cols, dWq);
            continue;
        }
        im2col_chunk(s, x, n0, m, sc.col, !threaded);
        sgemm(false, true, c_out, n_k, cols, dy, cols, sc.col, cols, 0.0f, dWq, n_k, nullptr, false, {},
              conv_gemm_library());
    }

#pragma omp parallel for schedule(static) if (n_chunks * n_w >= kParallelMin && !omp_in_parallel())
    for (idx i = 0; i < static_cast<idx>(n_w); ++i) {
        double sum = 0.0;
        for (std::size_t q = 0; q < n_chunks; ++q) sum += pW[q * n_w + static_cast<std::size_t>(i)];
        dL_dW[i] += static_cast<float>(sum);
    }
    for (std::size_t co = 0; co < c_out; ++co) {
        double sum = 0.0;
        for (std::size_t q = 0; q < n_chunks; ++q) sum += pb[q * c_out + co];
        dL_db[co] += static_cast<float>(sum);
    }
}

}  // namespace

void conv2d_backward(const ConvShape& s, const float* x, const float* W, const float* dL_dy, float* dL_dW,
                     float* dL_db, float* dL_dx, bool accumulate) {
    conv2d_backward_impl(s, x, W, dL_dy, dL_dW, dL_db, dL_dx, accumulate, nullptr, nullptr);
}

void conv2d_maxpool_backward(const ConvShape& s, const PoolShape& pool, const float* x, const float* W,
                             const std::int32_t* arg, const float* dL_dpooled, float* dL_dW, float* dL_db,
                             float* dL_dx, bool accumulate) {
    check_pool_of(s, pool);
    conv2d_backward_impl(s, x, W, dL_dpooled, dL_dW, dL_db, dL_dx, accumulate, &pool, arg);
}

void maxpool2d_forward(const PoolShape& s, const float* x, float* y) {
    const idx n_planes = static_cast<idx>(s.batch * s.channels);
    const std::size_t in_plane = s.h_in * s.w_in, out_plane = s.h_out() * s.w_out();
#pragma omp parallel for schedule(static) if (pool_parallel(s, n_planes))
    for (idx pl = 0; pl < n_planes; ++pl)
        maxpool_plane(s, x + static_cast<std::size_t>(pl) * in_plane, y + static_cast<std::size_t>(pl) * out_plane);
}

void maxpool2d_backward(const PoolShape& s, const float* x, const float* /*y*/, const float* dL_dy, float* dL_dx) {
    const idx n_planes = static_cast<idx>(s.batch * s.channels);
    const std::size_t in_plane = s.h_in * s.w_in, out_plane = s.h_out() * s.w_out();
#pragma omp parallel for schedule(static) if (pool_parallel(s, n_planes))
    for (idx pl = 0; pl < n_planes; ++pl) {
        const std::size_t at = static_cast<std::size_t>(pl);
        maxpool_plane_backward(s, x + at * in_plane, dL_dy + at * out_plane, dL_dx + at * in_plane);
    }
}

void avgpool2d_forward(const PoolShape& s, const float* x, float* y) {
    const idx n_planes = static_cast<idx>(s.batch * s.channels);
    const idx w_in = static_cast<idx>(s.w_in), h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    const std::size_t in_plane = s.h_in * s.w_in, out_plane = s.h_out() * s.w_out();
    const float area = static_cast<float>(s.kh * s.kw);  // padded positions included
#pragma omp parallel for schedule(static) if (pool_parallel(s, n_planes))
    for (idx pl = 0; pl < n_planes; ++pl) {
        const float* xp = x + static_cast<std::size_t>(pl) * in_plane;
        float* yp = y + static_cast<std::size_t>(pl) * out_plane;
        for (idx oy = 0; oy < h_out; ++oy)
            for (idx ox = 0; ox < w_out; ++ox) {
                const Window w = pool_window(s, oy, ox);
                float sum = 0.0f;
                for (idx iy = w.y_lo; iy < w.y_hi; ++iy)
                    for (idx ix = w.x_lo; ix < w.x_hi; ++ix) sum += xp[iy * w_in + ix];
                yp[oy * w_out + ox] = sum / area;
            }
    }
}

void avgpool2d_backward(const PoolShape& s, const float* dL_dy, float* dL_dx) {
    const idx n_planes = static_cast<idx>(s.batch * s.channels);
    const idx w_in = static_cast<idx>(s.w_in), h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    const std::size_t in_plane = s.h_in * s.w_in, out_plane = s.h_out() * s.w_out();
    const float area = static_cast<float>(s.kh * s.kw);
#pragma omp parallel for schedule(static) if (pool_parallel(s, n_planes))
    for (idx pl = 0; pl < n_planes; ++pl) {
        const float* gp = dL_dy + static_cast<std::size_t>(pl) * out_plane;
        float* dxp = dL_dx + static_cast<std::size_t>(pl) * in_plane;
        std::fill(dxp, dxp + in_plane, 0.0f);
        for (idx oy = 0; oy < h_out; ++oy)
            for (idx ox = 0; ox < w_out; ++ox) {
                const Window w = pool_window(s, oy, ox);
                const float g = gp[oy * w_out + ox] / area;
                for (idx iy = w.y_lo; iy < w.y_hi; ++iy)
                    for (idx ix = w.x_lo; ix < w.x_hi; ++ix) dxp[iy * w_in + ix] += g;
            }
    }
}

}  // namespace cpu
}  // namespace sparseprox
