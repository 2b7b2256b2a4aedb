// Row copies between planes of the CPU's convolution kernels (cpu/conv_ops.cpp,
// cpu/conv_direct.cpp, cpu/conv_winograd.cpp): into and out of zero-bordered planes, and the
// runs of im2col rows.
#pragma once

#include <cstddef>

namespace sparseprox {
namespace cpu {

// dst[r * dst_stride + i] = src[r * src_stride + i] for r < rows, i < w: the runs of an im2col
// row (dst_stride = w), and the rows of a plane into or out of its zero border. The short rows of
// the presets' layers (7, 8, 14 and 28 floats) get loops of constant trip count, which compile to
// a few vector moves per row instead of a vector loop with its remainder and checks, or a call to
// memcpy (im2col of a batch of 128 at one thread: lenet5's second layer 2.30 -> 0.83 ms, CNN8's
// second and third 4.23 -> 2.11 and 3.68 -> 2.23 ms, least of three alternating rounds).
template <std::ptrdiff_t W>
inline void copy_rows_fixed(const float* __restrict src, std::ptrdiff_t src_stride, float* __restrict dst,
                            std::ptrdiff_t dst_stride, std::ptrdiff_t rows) {
    for (std::ptrdiff_t r = 0; r < rows; ++r)
        for (std::ptrdiff_t i = 0; i < W; ++i) dst[r * dst_stride + i] = src[r * src_stride + i];
}

inline void copy_rows(const float* __restrict src, std::ptrdiff_t src_stride, float* __restrict dst,
                      std::ptrdiff_t dst_stride, std::ptrdiff_t rows, std::ptrdiff_t w) {
    switch (w) {
        case 7: return copy_rows_fixed<7>(src, src_stride, dst, dst_stride, rows);
        case 8: return copy_rows_fixed<8>(src, src_stride, dst, dst_stride, rows);
        case 14: return copy_rows_fixed<14>(src, src_stride, dst, dst_stride, rows);
        case 28: return copy_rows_fixed<28>(src, src_stride, dst, dst_stride, rows);
        default:
            for (std::ptrdiff_t r = 0; r < rows; ++r)
                for (std::ptrdiff_t i = 0; i < w; ++i) dst[r * dst_stride + i] = src[r * src_stride + i];
    }
}

}  // namespace cpu
}  // namespace sparseprox
