#ifndef QUADRA_PREFETCH_H
#define QUADRA_PREFETCH_H

// Software prefetch hints and streaming stores for the kernels. Swift has no intrinsics for
// them (and Clang's `_mm_prefetch` is a macro, which Swift cannot import), so each compiler
// builtin is wrapped in an always-inline function: it compiles to one instruction
// (PREFETCHT1 / PREFETCHW / VMOVNTPS / SFENCE on x86).

/// Asks for the cache line holding `address` in L2 (and L3), for reading soon: not L1, whose 32 KB
/// hold the rows a kernel is working on.
static inline __attribute__((always_inline)) void quadra_prefetch_read(const void *address) {
  __builtin_prefetch(address, 0, 2);
}

/// Asks for the cache line holding `address` in all cache levels, for writing.
static inline __attribute__((always_inline)) void quadra_prefetch_write(const void *address) {
  __builtin_prefetch(address, 1, 3);
}

/// Sixteen floats (one 64-byte cache line); Swift imports it as `SIMD16<Float>`.
typedef float quadra_float16 __attribute__((ext_vector_type(16)));

/// Writes the whole 64-byte cache line at `address` (which must be 64-byte aligned) with a
/// streaming (non-temporal) store: the line is not read first and not kept in the caches
/// (VMOVNTPS on x86). For outputs that will not be read again before they leave the caches.
static inline __attribute__((always_inline)) void quadra_stream_store16(float *address, quadra_float16 value) {
  __builtin_nontemporal_store(value, (quadra_float16 *)address);
}

/// Makes earlier streaming stores visible before later stores (x86 orders them weakly: SFENCE);
/// a thread that wrote with ``quadra_stream_store16`` calls it before others read the data.
static inline __attribute__((always_inline)) void quadra_store_fence(void) {
#if defined(__x86_64__)
  __builtin_ia32_sfence();
#endif
}

#endif
