#ifndef QUADRA_PREFETCH_H
#define QUADRA_PREFETCH_H

// Software prefetch hints for the kernels. Swift has no prefetch intrinsic (and Clang's
// `_mm_prefetch` is a macro, which Swift cannot import), so the compiler builtin is wrapped
// in an always-inline function: it compiles to one PREFETCHT0 / PREFETCHW instruction.

/// Asks for the cache line holding `address` in L2 (and L3), for reading soon: not L1, whose 32 KB
/// hold the rows a kernel is working on.
static inline __attribute__((always_inline)) void quadra_prefetch_read(const void *address) {
  __builtin_prefetch(address, 0, 2);
}

/// Asks for the cache line holding `address` in all cache levels, for writing.
static inline __attribute__((always_inline)) void quadra_prefetch_write(const void *address) {
  __builtin_prefetch(address, 1, 3);
}

#endif
