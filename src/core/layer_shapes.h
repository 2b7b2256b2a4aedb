// The shapes the convolution and pooling operations of both backends take, and how they are
// read off a layer of the model spec.
#pragma once

#include <cstddef>

#include "sparseprox/model.h"

namespace sparseprox {

// A convolution over a batch of NCHW tensors (cross-correlation, zero padding, floor-mode output).
struct ConvShape {
    std::size_t batch = 1;
    std::size_t c_in = 1, h_in = 1, w_in = 1;
    std::size_t c_out = 1, kh = 1, kw = 1;
    std::size_t stride_h = 1, stride_w = 1;
    std::size_t pad_h = 0, pad_w = 0;

    std::size_t h_out() const { return (h_in + 2 * pad_h - kh) / stride_h + 1; }
    std::size_t w_out() const { return (w_in + 2 * pad_w - kw) / stride_w + 1; }
    std::size_t n_weights() const { return c_out * c_in * kh * kw; }
};

// Max or average pooling over a batch of NCHW tensors.
struct PoolShape {
    std::size_t batch = 1;
    std::size_t channels = 1, h_in = 1, w_in = 1;
    std::size_t kh = 2, kw = 2;
    std::size_t stride_h = 2, stride_w = 2;
    std::size_t pad_h = 0, pad_w = 0;

    std::size_t h_out() const { return (h_in + 2 * pad_h - kh) / stride_h + 1; }
    std::size_t w_out() const { return (w_in + 2 * pad_w - kw) / stride_w + 1; }
};


inline ConvShape conv_shape(const LayerSpec& l, std::size_t batch) {
    ConvShape c;
    c.batch = batch;
    c.c_in = l.in_shape.channels;
    c.h_in = l.in_shape.height;
    c.w_in = l.in_shape.width;
    c.c_out = l.out_shape.channels;
    c.kh = l.kh;
    c.kw = l.kw;
    c.stride_h = l.stride_h;
    c.stride_w = l.stride_w;
    c.pad_h = l.pad_h;
    c.pad_w = l.pad_w;
    return c;
}

inline PoolShape pool_shape(const LayerSpec& l, std::size_t batch) {
    PoolShape p;
    p.batch = batch;
    p.channels = l.in_shape.channels;
    p.h_in = l.in_shape.height;
    p.w_in = l.in_shape.width;
    p.kh = l.kh;
    p.kw = l.kw;
    p.stride_h = l.stride_h;
    p.stride_w = l.stride_w;
    p.pad_h = l.pad_h;
    p.pad_w = l.pad_w;
    return p;
}

// One layer of a run of dense layers (Backend::dense_forward_chain): the arguments of one
// dense_forward call, y = act(x W^T + b), x (batch, n_in), y (batch, n_out). In a chain each
// layer's x is the y of the one before it.
struct DenseForwardLink {
    const float* x = nullptr;
    const float* W = nullptr;
    const float* b = nullptr;
    float* y = nullptr;
    std::size_t n_in = 0, n_out = 0;
    Activation act = Activation::identity;
};

// One layer of Backend::dense_backward_chain, listed from the top layer down: the arguments of
// one dense_backward call. In a chain each layer's dL_dy is the dL_dx of the one above it; only
// the bottom layer's dL_dx may be null (not wanted).
struct DenseBackwardLink {
    const float* x = nullptr;
    const float* W = nullptr;
    const float* dL_dy = nullptr;
    float* dL_dW = nullptr;
    float* dL_db = nullptr;
    float* dL_dx = nullptr;
    std::size_t n_in = 0, n_out = 0;
    Activation act = Activation::identity;  // the activation before the layer, in dL_dx's pass
    const float* act_x = nullptr;
    const float* act_y = nullptr;
};

}  // namespace sparseprox
