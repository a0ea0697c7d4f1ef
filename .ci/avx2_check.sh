#!/usr/bin/env bash
# The AVX2 code paths, compiled as an AVX2 machine compiles them. On an AVX-512 machine the native build
# never generates AVX2-only code (16 vector registers, no AVX-512 instructions): the tests force the 6x16
# GEMM tile and the 8-lane depthwise blocks, but the compiler still has 32 registers for them. This builds
# for `haswell` (AVX2 + FMA) into .build-avx2 and runs the whole test suite on it, so kernel selection by
# the build's ISA and every kernel's AVX2 code are checked on each CI run. On a machine without AVX-512 the
# native build already is that build, and this script does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "$(uname -m)" != "x86_64" ]] || ! grep -qw avx512f /proc/cpuinfo; then
  echo "avx2_check: SKIPPED (not an x86-64 machine with AVX-512: the native build is the AVX2 or arm64 build)"
  exit 0
fi
# `swift test` also builds the quadranet binary (the command-line tests run it).
QUADRANET_TARGET_CPU=haswell swift test -c release --scratch-path .build-avx2
info="$(.build-avx2/release/quadranet info)"
echo "$info"
# The kernels must take the AVX2 tiles although the processor reports AVX-512.
grep -q "^kernels: avx2 (GEMM micro-kernel 6x16)" <<<"$info" \
  || { echo "avx2_check: FAILED: an AVX2 build chose other kernels"; exit 1; }
echo "avx2_check: passed"
