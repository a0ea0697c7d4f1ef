#ifndef QUADRA_TARGET_H
#define QUADRA_TARGET_H

// Which vector instructions this *build* may use. Swift has no `#if` for target features, but the
// Clang importer compiles this header for the same `-target-cpu` as the Swift code around it, so
// Clang's feature macros answer for the build: a `-target-cpu znver3` build on an AVX-512 machine
// says AVX2 here, and its kernels must not pick register tiles that need 32 vector registers.

/// 2: AVX-512F (32 × 512-bit registers); 1: AVX2 with FMA (16 × 256-bit); 0: neither.
static inline int quadra_build_vector_isa(void) {
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
  return 2;
#elif defined(__AVX2__) && defined(__FMA__)
  return 1;
#else
  return 0;
#endif
}

#endif
