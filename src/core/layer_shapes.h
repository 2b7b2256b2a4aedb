// The shapes the convolution and pooling operations (cpu/conv_ops.h and their cuDNN twins)
// take, read off a layer of the model spec. Shared by both engines.
#pragma once

#include <cstddef>

#include "cpu/conv_ops.h"
#include "sparseprox/model.h"

namespace sparseprox {

inline cpu::ConvShape conv_shape(const LayerSpec& l, std::size_t batch) {
    cpu::ConvShape c;
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

inline cpu::PoolShape pool_shape(const LayerSpec& l, std::size_t batch) {
    cpu::PoolShape p;
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

}  // namespace sparseprox
