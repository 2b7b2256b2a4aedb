// CPU convolution and pooling, the oracle for the cuDNN twins.
//
// conv2d lowers one sample at a time to a GEMM through im2col:
//   col (c_in*kh*kw, h_out*w_out) gathers every input window as a column, then
//   y_n (c_out, h_out*w_out) = W (c_out, c_in*kh*kw) * col + b.
// FLOPs per sample: 2 * c_out * c_in*kh*kw * h_out*w_out forward, twice that backward (one GEMM
// for dL_dW, one for dL_dx). im2col and col2im are memory-bound copies of about
// kh*kw / (stride_h*stride_w) times the input; a 1x1 convolution with stride 1 and no padding
// needs neither (col is x itself). Pools are direct loops, one OpenMP iteration per
// (sample, channel) plane, so no two threads ever write the same element.
#include "cpu/conv_ops.h"

#include "cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace sparseprox {
namespace cpu {

namespace {
using idx = std::ptrdiff_t;  // OpenMP loops want a signed index; padding offsets are negative
constexpr std::size_t kParallelMin = 1 << 14;  // below this, threading costs more than it saves

// The output positions o in [lo, hi) whose input position o*stride + offset lies in [0, n_in),
// where offset = (kernel tap) - pad may be negative. lo == hi when there are none.
void valid_range(idx offset, idx stride, idx n_in, idx n_out, idx& lo, idx& hi) {
    lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;  // ceil(-offset / stride)
    const idx last = n_in - 1 - offset;                        // o*stride <= last
    hi = last < 0 ? 0 : std::min(n_out, last / stride + 1);
    lo = std::min(lo, hi);
}

// A 1x1 convolution with stride 1 and no padding: the im2col matrix of a sample is the sample.
bool is_pointwise(const ConvShape& s) {
    return s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
}

// col (c_in*kh*kw, h_out*w_out) from one sample x (c_in, h_in, w_in). Row (c, i, j) holds
// x[c, oy*stride_h + i - pad_h, ox*stride_w + j - pad_w] over (oy, ox); padded positions are 0.
// Every row is written by one thread only.
void im2col(const ConvShape& s, const float* x, float* col, bool threaded) {
    const idx h_in = static_cast<idx>(s.h_in), w_in = static_cast<idx>(s.w_in);
    const idx h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    const idx kh = static_cast<idx>(s.kh), kw = static_cast<idx>(s.kw);
    const idx sh = static_cast<idx>(s.stride_h), sw = static_cast<idx>(s.stride_w);
    const idx ph = static_cast<idx>(s.pad_h), pw = static_cast<idx>(s.pad_w);
    const idx n_rows = static_cast<idx>(s.c_in) * kh * kw, n_cols = h_out * w_out;
#pragma omp parallel for schedule(static) if (threaded && static_cast<std::size_t>(n_rows * n_cols) >= kParallelMin)
    for (idx r = 0; r < n_rows; ++r) {
        const idx c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
        const float* xc = x + c * h_in * w_in;
        float* dst = col + r * n_cols;
        idx oy_lo, oy_hi, ox_lo, ox_hi;
        valid_range(i - ph, sh, h_in, h_out, oy_lo, oy_hi);
        valid_range(j - pw, sw, w_in, w_out, ox_lo, ox_hi);
        std::fill(dst, dst + oy_lo * w_out, 0.0f);
        for (idx oy = oy_lo; oy < oy_hi; ++oy) {
            const float* row = xc + (oy * sh + i - ph) * w_in;
            float* d = dst + oy * w_out;
            std::fill(d, d + ox_lo, 0.0f);
            for (idx ox = ox_lo; ox < ox_hi; ++ox) d[ox] = row[ox * sw + j - pw];
            std::fill(d + ox_hi, d + w_out, 0.0f);
        }
        std::fill(dst + oy_hi * w_out, dst + n_cols, 0.0f);
    }
}

// The adjoint of im2col: dx (c_in, h_in, w_in) = 0, then every entry of col is added to the
// input position it was gathered from. One thread per channel, since the taps (i, j) of a
// channel overlap whenever stride < kernel; within a channel the order is fixed, so the result
// is deterministic.
void col2im(const ConvShape& s, const float* col, float* dx, bool threaded) {
    const idx c_in = static_cast<idx>(s.c_in);
    const idx h_in = static_cast<idx>(s.h_in), w_in = static_cast<idx>(s.w_in);
    const idx h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    const idx kh = static_cast<idx>(s.kh), kw = static_cast<idx>(s.kw);
    const idx sh = static_cast<idx>(s.stride_h), sw = static_cast<idx>(s.stride_w);
    const idx ph = static_cast<idx>(s.pad_h), pw = static_cast<idx>(s.pad_w);
    const idx n_cols = h_out * w_out;
#pragma omp parallel for schedule(static) if (threaded && static_cast<std::size_t>(c_in * kh * kw * n_cols) >= kParallelMin)
    for (idx c = 0; c < c_in; ++c) {
        float* dxc = dx + c * h_in * w_in;
        std::fill(dxc, dxc + h_in * w_in, 0.0f);
        for (idx i = 0; i < kh; ++i) {
            idx oy_lo, oy_hi;
            valid_range(i - ph, sh, h_in, h_out, oy_lo, oy_hi);
            for (idx j = 0; j < kw; ++j) {
                idx ox_lo, ox_hi;
                valid_range(j - pw, sw, w_in, w_out, ox_lo, ox_hi);
                const float* src = col + ((c * kh + i) * kw + j) * n_cols;
                for (idx oy = oy_lo; oy < oy_hi; ++oy) {
                    float* row = dxc + (oy * sh + i - ph) * w_in;
                    const float* g = src + oy * w_out;
                    for (idx ox = ox_lo; ox < ox_hi; ++ox) row[ox * sw + j - pw] += g[ox];
                }
            }
        }
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

// The sample-parallel loops: one im2col matrix per thread, grown to the largest convolution
// seen and kept (no allocation per step).
float* thread_scratch(std::size_t floats) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < floats) scratch.resize(floats);
    return scratch.data();
}

// Whether a loop over the samples of a batch is worth threading: more than one sample and
// enough multiply-adds (each sample's work is independent of the others and of the thread
// count, so threading it never changes a bit).
bool samples_parallel(const ConvShape& s, std::size_t n_k, std::size_t n_pix) {
    return s.batch > 1 && omp_get_max_threads() > 1 && !omp_in_parallel() &&
           s.batch * s.c_out * n_k * n_pix >= (std::size_t{1} << 18);
}

}  // namespace

void conv2d_im2col(const ConvShape& s, const float* x, float* col) { im2col(s, x, col, true); }

std::size_t conv2d_workspace_floats(const ConvShape& s) { return s.c_in * s.kh * s.kw * s.h_out() * s.w_out(); }

void conv2d_forward(const ConvShape& s, const float* x, const float* W, const float* b, float* y,
                    float* workspace) {
    const std::size_t n_k = s.c_in * s.kh * s.kw, n_pix = s.h_out() * s.w_out();
    const std::size_t x_stride = s.c_in * s.h_in * s.w_in, y_stride = s.c_out * n_pix;
    if (s.batch == 0 || y_stride == 0) return;
    const bool pointwise = is_pointwise(s);
    // One sample per iteration, the samples over the threads: each sample's im2col and GEMM run
    // on one thread (the GEMM's blocks one after another), as many regions per layer as one.
    const bool threaded = samples_parallel(s, n_k, n_pix);
#pragma omp parallel for schedule(static) if (threaded)
    for (idx i = 0; i < static_cast<idx>(s.batch); ++i) {
        const std::size_t n = static_cast<std::size_t>(i);
        const float* xn = x + n * x_stride;  // (c_in, h_in, w_in)
        float* yn = y + n * y_stride;        // (c_out, h_out, w_out)
        const float* col = xn;               // (n_k, n_pix)
        if (!pointwise) {
            float* ws = threaded ? thread_scratch(n_k * n_pix) : workspace;
            im2col(s, xn, ws, !threaded);
            col = ws;
        }
        // yn (c_out, n_pix) = b (per channel) + W (c_out, n_k) * col (n_k, n_pix)
        sgemm(false, false, s.c_out, n_pix, n_k, W, n_k, col, n_pix, 1.0f, yn, n_pix, b, true);
    }
}

void conv2d_backward(const ConvShape& s, const float* x, const float* W, const float* dL_dy, float* dL_dW,
                     float* dL_db, float* dL_dx, float* workspace, bool accumulate) {
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

    // dL_db: channel sums over batch and pixels, in double (a channel sums batch*h_out*w_out
    // terms, 50k for a batch of 64 at 28x28) and in a fixed order per channel.
    const idx c_out = static_cast<idx>(s.c_out);
#pragma omp parallel for schedule(static) if (s.batch * y_stride >= kParallelMin)
    for (idx co = 0; co < c_out; ++co) {
        double sum = 0.0;
        for (std::size_t n = 0; n < s.batch; ++n) {
            const float* g = dL_dy + n * y_stride + static_cast<std::size_t>(co) * n_pix;
            for (std::size_t p = 0; p < n_pix; ++p) sum += g[p];
        }
        dL_db[co] += static_cast<float>(sum);
    }

    // dL_dx: every sample on its own (dcol = W^T dyn, scattered back by col2im), the samples
    // over the threads.
    const bool pointwise = is_pointwise(s);
    if (dL_dx) {
        const bool threaded = samples_parallel(s, n_k, n_pix);
#pragma omp parallel for schedule(static) if (threaded)
        for (idx i = 0; i < static_cast<idx>(s.batch); ++i) {
            const std::size_t n = static_cast<std::size_t>(i);
            const float* dyn = dL_dy + n * y_stride;  // (c_out, n_pix)
            float* dxn = dL_dx + n * x_stride;        // (c_in, h_in, w_in)
            // dcol (n_k, n_pix) = W^T (n_k, c_out) * dyn (c_out, n_pix), written straight into
            // dL_dx when col is x itself, else into scratch and scattered.
            float* dcol = pointwise ? dxn : (threaded ? thread_scratch(n_k * n_pix) : workspace);
            sgemm(true, false, n_k, n_pix, s.c_out, W, n_k, dyn, n_pix, 0.0f, dcol, n_pix);
            if (!pointwise) col2im(s, dcol, dxn, !threaded);
        }
    }

    // dL_dW: samples one after another, so it accumulates over the batch in sample order; each
    // GEMM's order is fixed by its shape (cpu/gemm.h), so the result is the same at any thread
    // count.
    for (std::size_t n = 0; n < s.batch; ++n) {
        const float* xn = x + n * x_stride;       // (c_in, h_in, w_in)
        const float* dyn = dL_dy + n * y_stride;  // (c_out, n_pix)
        const float* col = xn;                    // (n_k, n_pix)
        if (!pointwise) {
            im2col(s, xn, workspace, true);
            col = workspace;
        }
        // dL_dW (c_out, n_k) += dyn (c_out, n_pix) * col^T (n_pix, n_k)
        sgemm(false, true, s.c_out, n_k, n_pix, dyn, n_pix, col, n_pix, 1.0f, dL_dW, n_k);
    }
}

void maxpool2d_forward(const PoolShape& s, const float* x, float* y) {
    const idx n_planes = static_cast<idx>(s.batch * s.channels);
    const idx w_in = static_cast<idx>(s.w_in), h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    const std::size_t in_plane = s.h_in * s.w_in, out_plane = s.h_out() * s.w_out();
#pragma omp parallel for schedule(static) if (pool_parallel(s, n_planes))
    for (idx pl = 0; pl < n_planes; ++pl) {
        const float* xp = x + static_cast<std::size_t>(pl) * in_plane;
        float* yp = y + static_cast<std::size_t>(pl) * out_plane;
        for (idx oy = 0; oy < h_out; ++oy)
            for (idx ox = 0; ox < w_out; ++ox) {
                const idx arg = window_argmax(xp, w_in, pool_window(s, oy, ox));
                yp[oy * w_out + ox] = arg >= 0 ? xp[arg] : -std::numeric_limits<float>::infinity();
            }
    }
}

void maxpool2d_backward(const PoolShape& s, const float* x, const float* /*y*/, const float* dL_dy, float* dL_dx) {
    // The argmax is recomputed from x rather than matched against y, so a window whose maximum
    // appears twice routes its gradient to exactly one position (the first).
    const idx n_planes = static_cast<idx>(s.batch * s.channels);
    const idx w_in = static_cast<idx>(s.w_in), h_out = static_cast<idx>(s.h_out()), w_out = static_cast<idx>(s.w_out());
    const std::size_t in_plane = s.h_in * s.w_in, out_plane = s.h_out() * s.w_out();
#pragma omp parallel for schedule(static) if (pool_parallel(s, n_planes))
    for (idx pl = 0; pl < n_planes; ++pl) {
        const float* xp = x + static_cast<std::size_t>(pl) * in_plane;
        const float* gp = dL_dy + static_cast<std::size_t>(pl) * out_plane;
        float* dxp = dL_dx + static_cast<std::size_t>(pl) * in_plane;
        std::fill(dxp, dxp + in_plane, 0.0f);
        for (idx oy = 0; oy < h_out; ++oy)
            for (idx ox = 0; ox < w_out; ++ox) {
                const idx arg = window_argmax(xp, w_in, pool_window(s, oy, ox));
                if (arg >= 0) dxp[arg] += gp[oy * w_out + ox];
            }
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
