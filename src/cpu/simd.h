// Run-time CPU features for the CPU backend's hand-vectorized loops. The library is built for the
// baseline x86-64 instruction set; loops that gain from AVX2 and FMA have a second body compiled
// for them (__attribute__((target("avx2,fma")))) and choose it here, once per process.
#pragma once

#include <immintrin.h>

#include <cstddef>

namespace sparseprox {
namespace cpu {

// Off: the portable bodies run even where AVX2 is present (tests compare the two).
inline bool& avx2_allowed() {
    static bool allowed = true;
    return allowed;
}

inline bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes && avx2_allowed();
#else
    return false;
#endif
}

// The lanes below n: all bits set in lanes 0 .. n - 1 (all of them for n >= 8, none for n <= 0),
// the mask of AVX2's masked loads and stores.
__attribute__((target("avx2,fma"), always_inline)) inline __m256i lanes_below(std::ptrdiff_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The even and the odd floats of the 16 at p (the 2x2 windows' left and right taps of a row).
__attribute__((target("avx2,fma"), always_inline)) inline void split_even_odd(const float* p, __m256& even,
                                                                             __m256& odd) {
    const __m256i evens_first = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(p), evens_first);
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(p + 8), evens_first);
    even = _mm256_permute2f128_ps(lo, hi, 0x20);
    odd = _mm256_permute2f128_ps(lo, hi, 0x31);
}

// The same for the first n floats at p (all 16 when n >= 16): the others read as 0 (masked loads
// read nothing there, so p + n may be the end of an allocation).
__attribute__((target("avx2,fma"), always_inline)) inline void split_even_odd(const float* p, std::ptrdiff_t n,
                                                                             __m256& even, __m256& odd) {
    const __m256i evens_first = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_maskload_ps(p, lanes_below(n)), evens_first);
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_maskload_ps(p + 8, lanes_below(n - 8)), evens_first);
    even = _mm256_permute2f128_ps(lo, hi, 0x20);
    odd = _mm256_permute2f128_ps(lo, hi, 0x31);
}

// The inverse: the 16 floats a0 b0 a1 b1 ... a7 b7 as two vectors (lo: the first 8).
__attribute__((target("avx2,fma"), always_inline)) inline void interleave(__m256 a, __m256 b, __m256& lo,
                                                                         __m256& hi) {
    const __m256 l = _mm256_unpacklo_ps(a, b), h = _mm256_unpackhi_ps(a, b);
    lo = _mm256_permute2f128_ps(l, h, 0x20);
    hi = _mm256_permute2f128_ps(l, h, 0x31);
}

}  // namespace cpu
}  // namespace sparseprox
