import Foundation
import Testing

@testable import QuadraCore

/// Every micro-kernel shape on every machine (forced through ``GEMM/shapeOverride``), the cache
/// blocking derived from ``CPUInfo``, and the prepacked-B API.
@Suite struct GEMMKernelShapeTests {
  /// Sizes that are not multiples of either tile (6 × 16, 14 × 32) and one smaller than both; last
  /// panels exactly half a tile wide (n = 48 for 14 × 32, 40 for 6 × 16) and narrower (n = 40 for 14 × 32);
  /// `k` within one depth block (A read in place, a short last row block packed) and deeper (A packed).
  static let oddSizes: [(m: Int, n: Int, k: Int)] = [
    (1, 1, 1), (13, 37, 45), (29, 67, 300), (15, 33, 17), (45, 48, 40), (31, 40, 80), (20, 40, 700),
  ]

  @Test(arguments: GEMM.MicroKernelShape.allCases)
  func everyShapeMatchesTheReference(shape: GEMM.MicroKernelShape) {
    for (index, size) in Self.oddSizes.enumerated() {
      for (transposeA, transposeB) in [(false, false), (true, false), (false, true), (true, true)] {
        for threads in [1, 2] {
          let bad = checkGEMM(
            m: size.m, n: size.n, k: size.k, transposeA: transposeA, transposeB: transposeB, alpha: 1,
            beta: index % 2 == 0 ? 0 : 0.5, threads: threads, seed: UInt64(index), shape: shape)
          #expect(bad == 0)
        }
      }
    }
  }

  /// Tiny blocks make small products cross every block boundary: several `kc` depth blocks, `mc`
  /// row blocks and `nc` column blocks, each with a partial last block.
  @Test(arguments: GEMM.MicroKernelShape.allCases)
  func everyShapeCrossesSmallBlocks(shape: GEMM.MicroKernelShape) {
    let blocking = GEMM.Blocking(kc: 16, mc: 2 * shape.mr, nc: 2 * shape.nr)
    for (transposeA, transposeB) in [(false, false), (true, true)] {
      for threads in [1, 2] {
        let bad = checkGEMM(
          m: 3 * shape.mr + 5, n: 5 * shape.nr + 3, k: 71, transposeA: transposeA, transposeB: transposeB,
          alpha: -1.5, beta: 0.75, padding: 2, threads: threads, seed: 21, shape: shape, blocking: blocking)
        #expect(bad == 0)
      }
    }
  }

  @Test func blockingFollowsTheCaches() {
    let zen4 = CPUInfo(
      vectorISA: .avx512, level1DataCacheBytes: 32 << 10, level2CacheBytes: 1 << 20, level3CacheBytes: 32 << 20)
    // 14 × 32: a B micro-panel twice the L1 deep, A read in place up to 1.5 L1-panels (384), weight
    // gradients with a C of up to half of L2 (128 × 512 floats and a little more) in place; 6 × 16: a quarter.
    #expect(
      GEMM.Blocking(shape: .rows14Columns32, cpu: zen4)
        == GEMM.Blocking(
          kc: 512, mc: 252, nc: 1024, inPlaceDepth: 384, inPlaceTransposedAProduct: 252 * 512, inPlaceBlockFloats: 4096))
    #expect(
      GEMM.Blocking(shape: .rows6Columns16, cpu: zen4)
        == GEMM.Blocking(kc: 256, mc: 510, nc: 2048, inPlaceBlockFloats: 4096))
    #expect(GEMM.Blocking(shape: .rows6Columns16, cpu: zen4).inPlaceTransposedAProduct == 510 * 256 / 2)
    #expect(GEMM.Blocking(shape: .rows6Columns16, cpu: zen4).inPlaceDepth == 384)
    let tiny = CPUInfo(vectorISA: .avx2, level1DataCacheBytes: 1 << 10, level2CacheBytes: 1 << 10, level3CacheBytes: 1 << 10)
    let huge = CPUInfo(vectorISA: .avx2, level1DataCacheBytes: 1 << 30, level2CacheBytes: 1 << 30, level3CacheBytes: 1 << 30)
    for cpu in [tiny, huge, CPUInfo.fallback, CPUInfo.current] {
      for shape in GEMM.MicroKernelShape.allCases {
        let blocking = GEMM.Blocking(shape: shape, cpu: cpu)
        #expect((64...512).contains(blocking.kc))
        #expect(blocking.inPlaceDepth >= 64 && blocking.inPlaceDepth <= blocking.kc + blocking.kc / 2)
        #expect(blocking.mc % shape.mr == 0 && (shape.mr...4096).contains(blocking.mc))
        #expect(blocking.nc % shape.nr == 0 && (shape.nr...4096).contains(blocking.nc))
      }
    }
    // A block of op(A) read in place keeps to half of L1 (4096 floats on Zen 4) when four or more column
    // panels reuse it and that holds four row tiles or more; otherwise it takes mc rows.
    let wide = GEMM.Blocking(shape: .rows14Columns32, cpu: zen4)
    #expect(wide.inPlaceRows(k: 64, n: 256, mr: 14, nr: 32) == 56)
    #expect(wide.inPlaceRows(k: 16, n: 256, mr: 14, nr: 32) == 252)
    #expect(wide.inPlaceRows(k: 20, n: 128, mr: 14, nr: 32) == 196)
    #expect(wide.inPlaceRows(k: 64, n: 96, mr: 14, nr: 32) == 252)
    #expect(wide.inPlaceRows(k: 80, n: 1024, mr: 14, nr: 32) == 252)
    #expect(wide.inPlaceRows(k: 384, n: 1024, mr: 14, nr: 32) == 252)
    #expect(wide.inPlaceRows(k: 0, n: 1024, mr: 14, nr: 32) == 252)
    // One pass over k up to 1.5 kc, otherwise equal blocks of at most kc.
    let blocking = GEMM.Blocking(kc: 256, mc: 504, nc: 2048)
    #expect(blocking.depth(0) == 1 && blocking.depth(384) == 384 && blocking.depth(385) == 193)
    #expect(blocking.depth(1024) == 256)
  }

  @Test func shapeFollowsTheVectorISA() {
    #expect(GEMM.MicroKernelShape.preferred(for: .avx2) == .rows6Columns16)
    #expect(GEMM.MicroKernelShape.preferred(for: .baseline) == .rows6Columns16)
    #if QUADRANET_PORTABLE
      #expect(GEMM.MicroKernelShape.preferred(for: .avx512) == .rows6Columns16)
    #else
      #expect(GEMM.MicroKernelShape.preferred(for: .avx512) == .rows14Columns32)
    #endif
    #expect(GEMM.$shapeOverride.withValue(.rows14Columns32) { GEMM.currentShape } == .rows14Columns32)
    #expect(GEMM.$shapeOverride.withValue(.rows6Columns16) { GEMM.currentShape } == .rows6Columns16)
  }

  /// `C = op(A) · packed(op(B)) + beta · C + bias` against the plain multiply on the same data, for
  /// odd shapes, `k` deeper than one packed block and `n` wider than the largest column block.
  @Test(arguments: GEMM.MicroKernelShape.allCases)
  func packedMatrixMatchesThePlainMultiply(shape: GEMM.MicroKernelShape) {
    let sizes: [(m: Int, n: Int, k: Int)] = [(1, 1, 1), (20, 45, 7), (37, 61, 600), (3, 4100, 259)]
    for (index, size) in sizes.enumerated() {
      for (transposeA, transposeB) in [(false, false), (true, false), (false, true), (true, true)] {
        for threads in [1, 2] {
          let worst = packedError(
            m: size.m, n: size.n, k: size.k, transposeA: transposeA, transposeB: transposeB,
            beta: index % 2 == 0 ? 0 : 0.5, withBias: index != 1, threads: threads, packShape: shape,
            seed: UInt64(10 + index))
          #expect(worst < 1e-5, "m=\(size.m) n=\(size.n) k=\(size.k) tA=\(transposeA) tB=\(transposeB) threads=\(threads)")
        }
      }
    }
  }

  /// A matrix packed for one shape keeps working when the calls around it default to the other.
  @Test func packedMatrixKeepsItsOwnShape() {
    let worst = packedError(
      m: 17, n: 50, k: 33, transposeA: false, transposeB: false, beta: 0, withBias: true, threads: 1,
      packShape: .rows6Columns16, multiplyShape: .rows14Columns32, seed: 3)
    #expect(worst < 1e-5)
    let other = packedError(
      m: 17, n: 50, k: 33, transposeA: true, transposeB: true, beta: 1, withBias: false, threads: 2,
      packShape: .rows14Columns32, multiplyShape: .rows6Columns16, seed: 4)
    #expect(other < 1e-5)
  }

  @Test func packedMatrixWithEmptyDimensions() {
    let b = [Float](repeating: 1, count: 4)
    let empty = GEMM.PackedMatrix(k: 0, n: 3, b: b, ldb: 3, transposeB: false)
    #expect(empty.k == 0 && empty.n == 3)
    var c: [Float] = [1, 2, 3, 4, 5, 6]
    let bias: [Float] = [10, 20, 30]
    let a: [Float] = [0]
    GEMM.multiply(m: 2, a: a, lda: 1, packedB: empty, c: &c, ldc: 3, beta: 2, columnBias: bias)
    #expect(c == [12, 24, 36, 18, 30, 42])
    let noColumns = GEMM.PackedMatrix(k: 2, n: 0, b: b, ldb: 1, transposeB: false)
    GEMM.multiply(m: 2, a: a, lda: 2, packedB: noColumns, c: &c, ldc: 1)
    #expect(c == [12, 24, 36, 18, 30, 42])
  }

  @Test func packedMatrixRejectsASmallLeadingDimension() async {
    await #expect(processExitsWith: .failure) {
      let b = [Float](repeating: 0, count: 12)
      _ = GEMM.PackedMatrix(k: 3, n: 4, b: b, ldb: 3, transposeB: false)
    }
  }
}

/// Largest `|packed − plain| / max(1, |plain|)` over `C` for one product with random data.
private func packedError(
  m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, beta: Float, withBias: Bool, threads: Int,
  packShape: GEMM.MicroKernelShape, multiplyShape: GEMM.MicroKernelShape? = nil, seed: UInt64
) -> Float {
  var generator = RandomGenerator(seed: seed)
  func random(_ count: Int) -> [Float] { (0..<Swift.max(count, 1)).map { _ in generator.nextUniform() * 2 - 1 } }
  let lda = transposeA ? m : k, ldb = transposeB ? k : n
  let a = random(m * k), b = random(k * n), start = random(m * n), bias = random(n)
  var expected = start, packedResult = start
  Parallel.withThreadCount(threads) {
    let packed = GEMM.$shapeOverride.withValue(packShape) {
      GEMM.PackedMatrix(k: k, n: n, b: b, ldb: Swift.max(1, ldb), transposeB: transposeB)
    }
    #expect(packed.k == k && packed.n == n)
    GEMM.$shapeOverride.withValue(multiplyShape ?? packShape) {
      bias.withUnsafeBufferPointer { biasPointer in
        let columnBias = withBias ? biasPointer.baseAddress : nil
        GEMM.multiply(
          m: m, n: n, k: k, a: a, lda: Swift.max(1, lda), transposeA: transposeA, b: b, ldb: Swift.max(1, ldb),
          transposeB: transposeB, c: &expected, ldc: n, alpha: 1, beta: beta, columnBias: columnBias)
        GEMM.multiply(
          m: m, a: a, lda: Swift.max(1, lda), transposeA: transposeA, packedB: packed, c: &packedResult, ldc: n,
          beta: beta, columnBias: columnBias)
      }
    }
  }
  var worst: Float = 0
  for (got, want) in zip(packedResult, expected) { worst = Swift.max(worst, abs(got - want) / Swift.max(1, abs(want))) }
  return worst
}
