import Testing

@testable import QuadraCore

/// The in-place `Aᵀ · B` path of the weight gradients (``GEMM/multiplyTransposedAInPlace(_:blocking:m:n:k:a:lda:b:ldb:c:ldc:alpha:beta:columnBias:)``)
/// and the 8-lane narrow panels of the 14 × 32 kernel, against the Double reference on every
/// micro-kernel shape (forced, so every ISA path runs on any machine).
@Suite struct GEMMTransposedATests {
  /// `m` and `n` off the tiles (last row tiles of 1…13 rows, last panels of 1…31 columns, including the
  /// 8-column and 16-column ones), `k` = 1, and depths that cross the doubling depth blocks; the
  /// quadranet-28 weight-gradient shapes at a reduced depth (80 × 40, 40 × 80).
  static let sizes: [(m: Int, n: Int, k: Int)] = [
    (1, 1, 1), (13, 37, 1), (80, 40, 1045), (40, 80, 700), (15, 8, 300), (29, 67, 97), (45, 48, 33), (3, 72, 260),
  ]

  @Test(arguments: GEMM.MicroKernelShape.allCases)
  func matchesTheReference(shape: GEMM.MicroKernelShape) {
    for (index, size) in Self.sizes.enumerated() {
      // Tight rows (the last depth rows' over-read is copied to padded rows) and padded ones.
      for padding in [0, 3] {
        for threads in [1, 2] {
          let bad = checkGEMM(
            m: size.m, n: size.n, k: size.k, transposeA: true, transposeB: false, alpha: index % 3 == 0 ? 1 : -0.5,
            beta: index % 2 == 0 ? 0 : 0.75, padding: padding, threads: threads, seed: UInt64(40 + index),
            shape: shape, withBias: index % 2 == 1)
          #expect(bad == 0, "m=\(size.m) n=\(size.n) k=\(size.k) padding=\(padding) threads=\(threads) \(shape)")
        }
      }
    }
  }

  /// Tiny blocks: many depth blocks (8 or 15 rows once the ramp ends), so beta and the bias must apply
  /// to the first block only and the prefetch slices of the next block cover every tile; one row tile
  /// with two panels, several row tiles with one.
  @Test(arguments: GEMM.MicroKernelShape.allCases)
  func crossesManyDepthBlocks(shape: GEMM.MicroKernelShape) {
    let cases: [(m: Int, n: Int, blocking: GEMM.Blocking)] = [
      (3, shape.nr + 8, GEMM.Blocking(kc: 16, mc: 2 * shape.mr, nc: 2 * shape.nr)),
      (shape.mr + 3, shape.nr / 4 + 1, GEMM.Blocking(kc: 16, mc: 2 * shape.mr, nc: 2 * shape.nr)),
      (2 * shape.mr + 3, shape.nr - 5, GEMM.Blocking(kc: 32, mc: 4 * shape.mr, nc: 2 * shape.nr)),
    ]
    for (index, size) in cases.enumerated() {
      #expect(GEMM.multipliesTransposedAInPlace(m: size.m, n: size.n, blocking: size.blocking))
      #expect(GEMM.transposedADepth(m: size.m, n: size.n, blocking: size.blocking) < 16)
      for threads in [1, 2] {
        let bad = checkGEMM(
          m: size.m, n: size.n, k: 203, transposeA: true, transposeB: false, alpha: 1.5, beta: -1,
          padding: index, threads: threads, seed: 51, shape: shape, blocking: size.blocking, withBias: true)
        #expect(bad == 0, "m=\(size.m) n=\(size.n) threads=\(threads) \(shape)")
      }
    }
  }

  /// The weight gradients of the 28 × 28 models take the path; a `C` too large for L2 keeps packing.
  @Test func selectsThePathByTheSizeOfC() {
    let blocking = GEMM.Blocking(kc: 256, mc: 504, nc: 4096)
    for (m, n) in [(40, 80), (80, 40), (160, 80), (320, 160)] {
      #expect(GEMM.multipliesTransposedAInPlace(m: m, n: n, blocking: blocking))
    }
    #expect(!GEMM.multipliesTransposedAInPlace(m: 384, n: 1536, blocking: blocking))
  }

  /// Forward-style products whose last panel is at most 8 columns (8-lane vectors on 14 × 32) or 9…16
  /// (16-lane), with B packed (transposed) or read in place, and a bias.
  @Test(arguments: GEMM.MicroKernelShape.allCases)
  func narrowLastPanels(shape: GEMM.MicroKernelShape) {
    for (index, n) in [8, 40, 5, 44, 72].enumerated() {
      for (transposeA, transposeB) in [(false, false), (false, true), (true, true)] {
        for threads in [1, 2] {
          let bad = checkGEMM(
            m: 31, n: n, k: 40, transposeA: transposeA, transposeB: transposeB, alpha: 1, beta: index % 2 == 0 ? 0 : 1,
            threads: threads, seed: UInt64(60 + index), shape: shape, withBias: true)
          #expect(bad == 0, "n=\(n) tA=\(transposeA) tB=\(transposeB) threads=\(threads) \(shape)")
        }
      }
    }
  }
}
