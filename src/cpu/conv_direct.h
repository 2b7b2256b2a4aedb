// Direct kernels for a convolution with one input channel and stride 1 (the first layer of an
// image network), used inside cpu::conv2d_forward/backward and their max-pool forms in place of
// im2col and the GEMM on CPUs with AVX2 and FMA.
//
// Why: with one input channel a GEMM has K = kh*kw (9 for cnn8, 25 for lenet5), too thin for
// OpenBLAS's blocking: cnn8's 32 x 784 x 9 per sample ran at about 25 GFLOP/s on one core of the
// 2-core development machine (against 65-80 for the deeper layers), and with im2col and the
// weight gradient's products the first layer took about 5 ms of a 60 ms cnn8 step at two threads
// for 0.3% of its multiply-adds. Here each output row is read straight from the (zero-bordered)
// input plane: 4 output channels x 16 pixels in 8 registers, one multiply-add per weight and
// output vector, no column matrix.
//
// The sums run in a fixed order given by the shape alone (forward: taps in row-major order, then
// the bias; weight gradient: per sample and channel 8 lanes over the gradient laid out on the
// bordered plane's width, one pass with no row ends, the samples of a chunk in order, then the
// lanes pairwise), so the bits do not depend on the thread count. They differ from the GEMM
// path's (another summation order), as OpenBLAS's own do between CPUs.
#pragma once

#include <cstddef>

#include "core/layer_shapes.h"

namespace sparseprox {
namespace cpu {

// The calling thread's zero-bordered plane, hp x wp holding an h_in x w_in input at (ph, pw),
// followed by wp + 8 zeros (the direct weight gradient reads past the last row): zeroed when any
// of these change (the same plane size with another padding or input has another interior),
// after which its users write only the input's rectangle, so everything else stays 0. im2col
// (hp = h_in + 2 ph), the direct kernels and Winograd's input transform (a plane rounded up to
// whole tiles and vector blocks) share it.
float* bordered_plane_buffer(std::ptrdiff_t hp, std::ptrdiff_t wp, std::ptrdiff_t ph, std::ptrdiff_t pw,
                             std::ptrdiff_t h_in, std::ptrdiff_t w_in);

// Whether conv2d's CPU operations take the direct kernels for s on this CPU: one input channel,
// stride 1, an output at least 16 pixels wide, and a CPU with AVX2 and FMA.
bool conv_direct_applies(const ConvShape& s);

// One sample: out[co * out_stride + oy * w_out + ox] = b[co] + sum over taps (i, j) of
// W[co, i, j] * x[oy + i - pad_h, ox + j - pad_w] (0 outside the input), for every output
// channel co. x is the sample's (h_in, w_in) plane.
void conv_direct_forward(const ConvShape& s, const float* x, const float* W, const float* b, float* out,
                         std::size_t out_stride);

// The weight gradient of m consecutive samples (x: the first one's plane, the others following):
// dW (c_out, kh*kw) = sum over the samples j and output pixels p of dy_j[co, p] * (the input the
// tap reads at p), with dy_j's channel co at dy + co * dy_stride + j * h_out*w_out.
void conv_direct_weight_grad(const ConvShape& s, const float* x, std::size_t m, const float* dy,
                             std::size_t dy_stride, float* dW);

}  // namespace cpu
}  // namespace sparseprox
