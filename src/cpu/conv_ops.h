// CPU convolution and pooling: the oracle the cuDNN twins (cuda/cudnn_ops.h) are compared
// against. Tensors are NCHW, row-major, contiguous; a conv weight is (c_out, c_in, kh, kw) as
// PyTorch's Conv2d, and the operation is a cross-correlation as in PyTorch. Output sizes use
// floor mode: out = (in + 2 pad - k) / stride + 1. Gradients are overwritten unless
// `accumulate` is set.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/layer_shapes.h"

namespace sparseprox {
namespace cpu {

// Floats of the im2col matrix of one sample (c_in*kh*kw rows by h_out*w_out columns): the
// scratch conv2d_im2col writes.
std::size_t conv2d_workspace_floats(const ConvShape& s);

// The samples conv2d lowers to one im2col matrix and one GEMM per product (the last chunk may
// hold fewer): a power of two, about 1,024 output pixels (256 where oneDNN makes the products:
// cpu::conv_gemm_library), at most the batch; for a Winograd layer
// (cpu/conv_winograd.h) the forward's or the backward's chunk of tiles.
std::size_t chunk_samples(const ConvShape& s, bool backward = false);
// The im2col matrix of one sample x (c_in, h_in, w_in): col (c_in*kh*kw, h_out*w_out), row
// (c, i, j) holding x[c, oy*stride_h + i - pad_h, ox*stride_w + j - pad_w], padded positions 0
// (the sparse inference engine multiplies it by a CSR kernel matrix).
void conv2d_im2col(const ConvShape& s, const float* x, float* col);

// y (batch, c_out, h_out, w_out) = W * x + b, for x (batch, c_in, h_in, w_in), W (c_out, c_in,
// kh, kw), b (c_out). Scratch memory is per thread, kept between calls.
void conv2d_forward(const ConvShape& s, const float* x, const float* W, const float* b, float* y);

// dL_dW (c_out, c_in, kh, kw) and dL_db (c_out) summed over the batch; dL_dx (batch, c_in,
// h_in, w_in) skipped when null. With accumulate, dL_dW and dL_db are added to; dL_dx is always
// overwritten.
void conv2d_backward(const ConvShape& s, const float* x, const float* W, const float* dL_dy, float* dL_dW,
                     float* dL_db, float* dL_dx, bool accumulate = false);

// A convolution and the max-pool over its output as one operation, for a network whose conv2d
// layer is followed by a max-pool (directly, or through a ReLU that runs after the pool). The
// forward gives pooled = maxpool2d_forward(pool, conv2d_forward's y), bit for bit, and arg
// (pooled's size): for each window the index, in its plane of y, of the tap maxpool2d_backward
// routes the gradient to (-1 for a window without input taps); each sample's output planes are
// pooled while in cache and y itself is never written. The backward takes arg and dL_dpooled and
// gives conv2d_backward's gradients of maxpool2d_backward's dL_dy, bit for bit, without that
// full-size gradient in memory. pool's input must be the convolution's output (batch, c_out,
// h_out, w_out), or they throw.
void conv2d_maxpool_forward(const ConvShape& s, const PoolShape& pool, const float* x, const float* W,
                            const float* b, float* pooled, std::int32_t* arg);
void conv2d_maxpool_backward(const ConvShape& s, const PoolShape& pool, const float* x, const float* W,
                             const std::int32_t* arg, const float* dL_dpooled, float* dL_dW, float* dL_db,
                             float* dL_dx, bool accumulate = false);

// Max over each window; padded positions never win (they count as -infinity). Ties: the first
// maximum in row-major window order receives the gradient. A NaN in a window is its maximum, so
// NaNs propagate. The backward recomputes the argmax from x and does not read y; dL_dx is
// overwritten.
void maxpool2d_forward(const PoolShape& s, const float* x, float* y);
void maxpool2d_backward(const PoolShape& s, const float* x, const float* y, const float* dL_dy, float* dL_dx);

// Mean over each window, dividing by kh*kw including padded positions (PyTorch's default
// count_include_pad=True, cuDNN's CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING). The backward
// overwrites dL_dx.
void avgpool2d_forward(const PoolShape& s, const float* x, float* y);
void avgpool2d_backward(const PoolShape& s, const float* dL_dy, float* dL_dx);

}  // namespace cpu
}  // namespace sparseprox
