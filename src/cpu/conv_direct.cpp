// Direct single-channel convolution kernels (cpu/conv_direct.h).
//
// Napkin math (cnn8's first layer, batch 128, one core of the development machine at about 3 GHz,
// 2 FMA ports of 8 floats): the forward is 128 * 784 * 32 * 9 = 29M multiply-adds, 3.6M vector
// FMAs, about 0.6 ms at 2 per cycle; each 16-pixel strip of 4 channels loads 2 input vectors and
// broadcasts 4 weights per tap (6 loads for 8 FMAs), so the loads keep up. The weight gradient is
// the same count of multiply-adds with one gradient and up to 12 input loads per 12 FMAs: about the
// load ports' rate, under a millisecond. It runs over the gradient laid out on the bordered
// plane's width (28 x 30 for cnn8, 7% more products) in one loop: per output row, 3 vectors of 8
// and a masked tail with its own pointer set-up took twice as long at one thread.
#include "cpu/conv_direct.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <vector>

#include "cpu/copy_rows.h"
#include "cpu/simd.h"

namespace sparseprox {
namespace cpu {
namespace {

using idx = std::ptrdiff_t;

// The sample's plane with its zero border, (h_in + 2 pad_h) x (w_in + 2 pad_w), copied into the
// calling thread's bordered plane; without padding and unless `copy`, the input itself.
const float* bordered_plane(const ConvShape& s, const float* x, bool copy = false) {
    if (s.pad_h == 0 && s.pad_w == 0 && !copy) return x;
    const idx h_in = static_cast<idx>(s.h_in), w_in = static_cast<idx>(s.w_in);
    const idx ph = static_cast<idx>(s.pad_h), pw = static_cast<idx>(s.pad_w);
    const idx wp = w_in + 2 * pw;
    float* plane = bordered_plane_buffer(h_in + 2 * ph, wp, ph, pw, h_in, w_in);
    copy_rows(x, w_in, plane + ph * wp + pw, wp, h_in, w_in);
    return plane;
}

// CB output channels (weights W, K = kh*kw per channel; biases b) of one sample: every output row
// in strips of 16 pixels, the last strip moved back to end at the row's end (its overlap with the
// one before is computed again, to the same values). Needs w_out >= 16.
template <int CB>
__attribute__((target("avx2,fma"))) void forward_channels(const float* plane, idx wp, const float* W, const float* b,
                                                          idx kh, idx kw, idx h_out, idx w_out, float* out,
                                                          idx out_stride) {
    const idx K = kh * kw;
    for (idx oy = 0; oy < h_out; ++oy)
        for (idx ox0 = 0; ox0 < w_out; ox0 += 16) {
            const idx ox = std::min(ox0, w_out - 16);
            __m256 acc[CB][2];
            for (int c = 0; c < CB; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
            for (idx i = 0; i < kh; ++i) {
                const float* row = plane + (oy + i) * wp + ox;
                const float* w_row = W + i * kw;
                for (idx j = 0; j < kw; ++j) {
                    const __m256 x0 = _mm256_loadu_ps(row + j), x1 = _mm256_loadu_ps(row + j + 8);
                    for (int c = 0; c < CB; ++c) {
                        const __m256 w = _mm256_broadcast_ss(w_row + c * K + j);
                        acc[c][0] = _mm256_fmadd_ps(w, x0, acc[c][0]);
                        acc[c][1] = _mm256_fmadd_ps(w, x1, acc[c][1]);
                    }
                }
            }
            for (int c = 0; c < CB; ++c) {
                const __m256 bias = _mm256_set1_ps(b[c]);
                float* o = out + c * out_stride + oy * w_out + ox;
                _mm256_storeu_ps(o, _mm256_add_ps(acc[c][0], bias));
                _mm256_storeu_ps(o + 8, _mm256_add_ps(acc[c][1], bias));
            }
        }
}

// G taps (offsets off[t] = i * wp + j in the bordered plane) of one output channel's gradient g
// laid out on the plane's width: g (h_out, wp) with zeros in the columns past w_out and after the
// last row, n floats in all (a multiple of 8). part[t] (8 lanes) += the sum, lane by lane, of
// g[q] * plane[q + off[t]] over q in order, 8 at a time: one loop over the plane with no row ends
// (the zero columns' products are 0 for finite inputs; an infinite or NaN input already makes
// the step's loss infinite or NaN).
template <int G>
__attribute__((target("avx2,fma"))) void weight_grad_taps(const float* plane, const idx* off, const float* g, idx n,
                                                          float* part) {
    __m256 acc[G];
    for (int t = 0; t < G; ++t) acc[t] = _mm256_setzero_ps();
    for (idx q = 0; q < n; q += 8) {
        const __m256 gv = _mm256_loadu_ps(g + q);
        for (int t = 0; t < G; ++t) acc[t] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(plane + off[t] + q), acc[t]);
    }
    for (int t = 0; t < G; ++t) _mm256_storeu_ps(part + 8 * t, _mm256_add_ps(_mm256_loadu_ps(part + 8 * t), acc[t]));
}

using WeightGradTaps = void (*)(const float*, const idx*, const float*, idx, float*);

// Up to 12 taps per pass over a gradient plane (12 accumulators, the gradient and an input: 14 of
// the 16 vector registers).
constexpr idx kMaxTaps = 12;

WeightGradTaps weight_grad_taps_for(idx g) {
    switch (g) {
        case 1: return weight_grad_taps<1>;
        case 2: return weight_grad_taps<2>;
        case 3: return weight_grad_taps<3>;
        case 4: return weight_grad_taps<4>;
        case 5: return weight_grad_taps<5>;
        case 6: return weight_grad_taps<6>;
        case 7: return weight_grad_taps<7>;
        case 8: return weight_grad_taps<8>;
        case 9: return weight_grad_taps<9>;
        case 10: return weight_grad_taps<10>;
        case 11: return weight_grad_taps<11>;
        default: return weight_grad_taps<12>;
    }
}

}  // namespace

float* bordered_plane_buffer(idx hp, idx wp, idx ph, idx pw, idx h_in, idx w_in) {
    thread_local std::vector<float> plane;
    thread_local std::array<idx, 6> key = {-1, -1, -1, -1, -1, -1};
    const std::array<idx, 6> now = {hp, wp, ph, pw, h_in, w_in};
    if (key != now) {
        plane.assign(static_cast<std::size_t>(hp * wp + wp + 8), 0.0f);  // and a zero row and 8 more
        key = now;
    }
    return plane.data();
}

bool conv_direct_applies(const ConvShape& s) {
    return s.c_in == 1 && s.stride_h == 1 && s.stride_w == 1 && s.kh > 0 && s.kw > 0 && s.h_out() > 0 &&
           s.w_out() >= 16 && cpu_has_avx2_fma();
}

void conv_direct_forward(const ConvShape& s, const float* x, const float* W, const float* b, float* out,
                         std::size_t out_stride) {
    const idx wp = static_cast<idx>(s.w_in + 2 * s.pad_w), kh = static_cast<idx>(s.kh), kw = static_cast<idx>(s.kw);
    const idx h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out()), K = kh * kw;
    const idx c_out = static_cast<idx>(s.c_out), os = static_cast<idx>(out_stride);
    const float* plane = bordered_plane(s, x);
    idx co = 0;
    for (; co + 4 <= c_out; co += 4)
        forward_channels<4>(plane, wp, W + co * K, b + co, kh, kw, h_out, w_out, out + co * os, os);
    for (; co < c_out; ++co) forward_channels<1>(plane, wp, W + co * K, b + co, kh, kw, h_out, w_out, out + co * os, os);
}

void conv_direct_weight_grad(const ConvShape& s, const float* x, std::size_t m, const float* dy,
                             std::size_t dy_stride, float* dW) {
    const idx wp = static_cast<idx>(s.w_in + 2 * s.pad_w), kh = static_cast<idx>(s.kh), kw = static_cast<idx>(s.kw);
    const idx h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out()), K = kh * kw;
    const idx c_out = static_cast<idx>(s.c_out), n_pix = h_out * w_out;
    const idx n = (h_out * wp + 7) / 8 * 8;  // the gradient on the plane's width, in whole vectors
    const std::size_t x_plane = s.h_in * s.w_in;
    thread_local std::vector<idx> off;  // each tap's offset in the bordered plane (kept: no allocation per chunk)
    off.resize(static_cast<std::size_t>(K));
    for (idx i = 0; i < kh; ++i)
        for (idx j = 0; j < kw; ++j) off[static_cast<std::size_t>(i * kw + j)] = i * wp + j;
    const idx passes = (K + kMaxTaps - 1) / kMaxTaps;  // taps split evenly: 9 in one, 25 as 8 + 8 + 9
    thread_local std::vector<float> part;  // (c_out, K, 8 lanes)
    part.assign(static_cast<std::size_t>(c_out * K * 8), 0.0f);
    // The gradient plane on the plane's width: its columns past w_out and its end stay 0 (zeroed
    // when the shape changes, then only the first w_out of each row written).
    thread_local std::vector<float> g_wide;
    thread_local idx g_key[2] = {-1, -1};
    if (g_key[0] != h_out || g_key[1] != wp || g_wide.size() < static_cast<std::size_t>(n)) {
        g_wide.assign(static_cast<std::size_t>(n), 0.0f);
        g_key[0] = h_out;
        g_key[1] = wp;
    }
    for (std::size_t j = 0; j < m; ++j) {
        // Read up to n - 1 + (kh - 1) * wp + kw - 1 floats in: inside the plane and its zero slack.
        const float* plane = bordered_plane(s, x + j * x_plane, true);
        for (idx co = 0; co < c_out; ++co) {
            const float* g = dy + static_cast<std::size_t>(co) * dy_stride + j * static_cast<std::size_t>(n_pix);
            copy_rows(g, w_out, g_wide.data(), wp, h_out, w_out);
            for (idx p = 0; p < passes; ++p) {
                const idx t0 = K * p / passes, t1 = K * (p + 1) / passes;
                weight_grad_taps_for(t1 - t0)(plane, off.data() + t0, g_wide.data(), n, part.data() + (co * K + t0) * 8);
            }
        }
    }
    for (idx i = 0; i < c_out * K; ++i) {
        const float* l = part.data() + i * 8;
        dW[i] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    }
}

}  // namespace cpu
}  // namespace sparseprox
