// Run-time CPU features for the CPU backend's hand-vectorized loops. The library is built for the
// baseline x86-64 instruction set; loops that gain from AVX2 and FMA have a second body compiled
// for them (__attribute__((target("avx2,fma")))) and choose it here, once per process.
#pragma once

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

}  // namespace cpu
}  // namespace sparseprox
