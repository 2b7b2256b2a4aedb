// The arithmetic of the common max-pool (2x2 windows, stride 2, no padding: every window inside
// its input, no two overlapping), shared by the pool's own loops (cpu/conv_ops.cpp) and by
// Winograd's transforms with the pool fused in (cpu/conv_winograd.cpp), so that both give the
// same maxima, winners and gradients, bit for bit.
//
// A window's taps are a, b (top row) and c, d (bottom row). Without NaNs its winner is the first
// tap, in row-major order, equal to the maximum, where "t > best ? t : best" keeps the earlier
// tap on ties (so -0 before +0 stays -0). A NaN breaks that, so the loops also OR together "a tap
// is NaN", and a plane holding one is redone by the general window loop (the first NaN wins
// there). Winners are indices into the pool's input plane: the top-left tap's index `at`, plus
// 0, 1, `below` (the plane's width) or below + 1.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/layer_shapes.h"

namespace sparseprox {
namespace cpu {

inline bool is_pool_2x2(const PoolShape& s) {
    return s.kh == 2 && s.kw == 2 && s.stride_h == 2 && s.stride_w == 2 && s.pad_h == 0 && s.pad_w == 0;
}

inline float max_first(float best, float t) { return t > best ? t : best; }

inline float max_2x2(float a, float b, float c, float d) { return max_first(max_first(max_first(a, b), c), d); }

inline int unordered_2x2(float a, float b, float c, float d) { return (a != a) | (b != b) | (c != c) | (d != d); }

// v where w is 1, +0 where w is 0, by masking the bits.
inline float keep_if(std::uint32_t w, float v) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    bits &= 0u - w;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

// The first of a window's taps equal to its maximum m, as 0/1 masks. Bitwise, not && and ?:
// (which compile to branches that random data mispredicts).
struct FirstMax {
    std::uint32_t a, b, c, d;
};

inline FirstMax first_max(float a, float b, float c, float m) {
    const std::uint32_t ea = a == m, eb = b == m, ec = c == m;
    const std::uint32_t none_above = (ea | eb) ^ 1u;
    return {ea, (ea ^ 1u) & eb, none_above & ec, none_above & (ec ^ 1u)};
}

inline std::int32_t winner_2x2(float a, float b, float c, float m, std::uint32_t at, std::uint32_t below) {
    const FirstMax w = first_max(a, b, c, m);
    return static_cast<std::int32_t>(at + w.b + w.c * below + w.d * (below + 1));
}

// ---- the same on 8 windows at a time (AVX2) ------------------------------------------------------

// _mm256_max_ps(t, best) is "t > best ? t : best".
__attribute__((target("avx2,fma"), always_inline)) inline __m256 max_2x2_avx2(__m256 a, __m256 b, __m256 c,
                                                                             __m256 d) {
    return _mm256_max_ps(d, _mm256_max_ps(c, _mm256_max_ps(b, a)));
}

// All ones in the lanes where a tap is NaN.
__attribute__((target("avx2,fma"), always_inline)) inline __m256 unordered_2x2_avx2(__m256 a, __m256 b, __m256 c,
                                                                                   __m256 d) {
    return _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q), _mm256_cmp_ps(c, d, _CMP_UNORD_Q));
}

// The winners of 8 windows with maxima m, their top-left taps' indices in `at`.
__attribute__((target("avx2,fma"), always_inline)) inline __m256i winners_2x2_avx2(__m256 a, __m256 b, __m256 c,
                                                                                  __m256 m, __m256i at,
                                                                                  __m256i below) {
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i ea = _mm256_castps_si256(_mm256_cmp_ps(a, m, _CMP_EQ_OQ));
    const __m256i eb = _mm256_castps_si256(_mm256_cmp_ps(b, m, _CMP_EQ_OQ));
    const __m256i ec = _mm256_castps_si256(_mm256_cmp_ps(c, m, _CMP_EQ_OQ));
    const __m256i ab = _mm256_or_si256(ea, eb);
    const __m256i wb = _mm256_andnot_si256(ea, eb);
    const __m256i wc = _mm256_andnot_si256(ab, ec);
    const __m256i wd = _mm256_andnot_si256(_mm256_or_si256(ab, ec), _mm256_set1_epi32(-1));
    const __m256i step =
        _mm256_or_si256(_mm256_and_si256(wb, one), _mm256_or_si256(_mm256_and_si256(wc, below),
                                                                   _mm256_and_si256(wd, _mm256_add_epi32(below, one))));
    return _mm256_add_epi32(at, step);
}

}  // namespace cpu
}  // namespace sparseprox
