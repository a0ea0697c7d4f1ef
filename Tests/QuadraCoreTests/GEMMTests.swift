import Foundation
import Testing

@testable import QuadraCore

/// `alpha · op(A) · op(B) + beta · C` in Double, plainly, plus the magnitude `Σ|alpha·a·b| + |beta·c|`
/// of each element for the rounding tolerance.
private func referenceGEMM(
  m: Int, n: Int, k: Int, a: [Float], lda: Int, transposeA: Bool, b: [Float], ldb: Int, transposeB: Bool,
  c: [Float], ldc: Int, alpha: Float, beta: Float
) -> (values: [Double], magnitudes: [Double]) {
  var values = [Double](repeating: 0, count: m * n)
  var magnitudes = [Double](repeating: 0, count: m * n)
  for i in 0..<m {
    for j in 0..<n {
      var sum = 0.0, magnitude = 0.0
      for p in 0..<k {
        let x = Double(transposeA ? a[p * lda + i] : a[i * lda + p])
        let y = Double(transposeB ? b[j * ldb + p] : b[p * ldb + j])
        sum += x * y
        magnitude += abs(x * y)
      }
      let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
      values[i * n + j] = Double(alpha) * sum + old
      magnitudes[i * n + j] = abs(Double(alpha)) * magnitude + abs(old)
    }
  }
  return (values, magnitudes)
}

/// Random matrix storage of `rows × ld`; the padding columns past `columns` hold NaN, so a kernel
/// that reads outside the matrix poisons its result.
private func randomMatrix(rows: Int, columns: Int, ld: Int, using generator: inout RandomGenerator) -> [Float] {
  var storage = [Float](repeating: .nan, count: Swift.max(1, rows * ld))
  for i in 0..<rows {
    for j in 0..<columns { storage[i * ld + j] = generator.nextUniform() * 2 - 1 }
  }
  return storage
}

/// Runs GEMM on random data and compares with the Double reference; returns the number of bad elements.
/// `shape` forces a micro-kernel (default: the machine's), `blocking` replaces the cache blocking,
/// `withBias` adds a random column bias.
func checkGEMM(
  m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, alpha: Float, beta: Float,
  padding: Int = 0, threads: Int, seed: UInt64,
  shape: GEMM.MicroKernelShape? = nil, blocking: GEMM.Blocking? = nil, withBias: Bool = false
) -> Int {
  var generator = RandomGenerator(seed: seed)
  let lda = (transposeA ? m : k) + padding
  let ldb = (transposeB ? k : n) + padding
  let ldc = n + padding
  let a = randomMatrix(rows: transposeA ? k : m, columns: transposeA ? m : k, ld: Swift.max(1, lda), using: &generator)
  let b = randomMatrix(rows: transposeB ? n : k, columns: transposeB ? k : n, ld: Swift.max(1, ldb), using: &generator)
  // With beta == 0 the old C is NaN: reading it would poison the result.
  var c =
    beta == 0
    ? [Float](repeating: .nan, count: Swift.max(1, m * ldc))
    : randomMatrix(rows: m, columns: n, ld: Swift.max(1, ldc), using: &generator)
  let original = c
  let bias = withBias ? randomMatrix(rows: 1, columns: n, ld: Swift.max(1, n), using: &generator) : nil
  var expected = referenceGEMM(
    m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb, transposeB: transposeB,
    c: c, ldc: ldc, alpha: alpha, beta: beta)
  if let bias {
    for i in 0..<m {
      for j in 0..<n {
        expected.values[i * n + j] += Double(bias[j])
        expected.magnitudes[i * n + j] += abs(Double(bias[j]))
      }
    }
  }
  Parallel.withThreadCount(threads) {
    GEMM.$shapeOverride.withValue(shape) {
      a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
          c.withUnsafeMutableBufferPointer { pc in
            (bias ?? [0]).withUnsafeBufferPointer { pbias in
              GEMM.multiply(
                m: m, n: n, k: k, a: pa.baseAddress!, lda: Swift.max(1, lda), transposeA: transposeA,
                b: pb.baseAddress!, ldb: Swift.max(1, ldb), transposeB: transposeB,
                c: pc.baseAddress!, ldc: Swift.max(1, ldc), alpha: alpha, beta: beta,
                columnBias: bias == nil ? nil : pbias.baseAddress!, blocking: blocking)
            }
          }
        }
      }
    }
  }
  var bad = 0
  for i in 0..<m {
    for j in 0..<n {
      let got = Double(c[i * ldc + j])
      let want = expected.values[i * n + j]
      let tolerance = 1e-5 * Double(k + 4) * Swift.max(expected.magnitudes[i * n + j], 1e-3)
      if !(abs(got - want) <= tolerance) {
        if bad < 3 {
          Issue.record(
            "m=\(m) n=\(n) k=\(k) tA=\(transposeA) tB=\(transposeB) alpha=\(alpha) beta=\(beta) threads=\(threads): C[\(i),\(j)] = \(got), want \(want)"
          )
        }
        bad += 1
      }
    }
    // Padding columns of C must be left alone.
    for j in n..<ldc where !(c[i * ldc + j].bitPattern == original[i * ldc + j].bitPattern) {
      Issue.record("m=\(m) n=\(n) k=\(k): padding C[\(i),\(j)] was written")
      bad += 1
    }
  }
  return bad
}

@Suite struct GEMMTests {
  static let sizes: [(m: Int, n: Int, k: Int)] = [
    (1, 1, 1), (7, 13, 5), (37, 61, 300), (130, 17, 259), (6, 16, 8), (13, 33, 1),
  ]

  @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
  func matchesReferenceForAllTranspositions(transposeA: Bool, transposeB: Bool) {
    for (index, size) in Self.sizes.enumerated() {
      for threads in [1, 2] {
        let bad = checkGEMM(
          m: size.m, n: size.n, k: size.k, transposeA: transposeA, transposeB: transposeB,
          alpha: 1, beta: 0, threads: threads, seed: UInt64(index))
        #expect(bad == 0)
      }
    }
  }

  @Test(arguments: [(Float(1), Float(1)), (0.5, 0), (-1.5, 0.75), (2, -1)])
  func appliesAlphaAndBeta(alpha: Float, beta: Float) {
    for (transposeA, transposeB) in [(false, false), (true, false), (false, true), (true, true)] {
      for threads in [1, 2] {
        let bad = checkGEMM(
          m: 37, n: 61, k: 300, transposeA: transposeA, transposeB: transposeB, alpha: alpha, beta: beta,
          threads: threads, seed: 11)
        #expect(bad == 0)
      }
    }
  }

  @Test func leadingDimensionsLargerThanTheMatrix() {
    for (transposeA, transposeB) in [(false, false), (true, false), (false, true), (true, true)] {
      for threads in [1, 2] {
        let bad = checkGEMM(
          m: 130, n: 17, k: 259, transposeA: transposeA, transposeB: transposeB, alpha: 1, beta: 0.5,
          padding: 5, threads: threads, seed: 3)
        #expect(bad == 0)
        let small = checkGEMM(
          m: 7, n: 13, k: 5, transposeA: transposeA, transposeB: transposeB, alpha: 1, beta: 0,
          padding: 3, threads: threads, seed: 4)
        #expect(small == 0)
      }
    }
  }

  /// Shapes that cross every block boundary: several `mc` row blocks and `kc` depth blocks
  /// (m > 144, k > 256), more than one `nc` column block (n > 1024), and a short, wide product that
  /// two threads split by columns.
  @Test func crossesCacheBlocksAndSplitsColumns() {
    for threads in [1, 2] {
      #expect(
        checkGEMM(m: 151, n: 40, k: 530, transposeA: false, transposeB: true, alpha: 1, beta: 0, threads: threads, seed: 5)
          == 0)
      #expect(
        checkGEMM(m: 5, n: 1100, k: 9, transposeA: true, transposeB: false, alpha: 1, beta: 1, threads: threads, seed: 6)
          == 0)
      #expect(
        checkGEMM(m: 5, n: 2000, k: 300, transposeA: false, transposeB: false, alpha: 1, beta: 0, threads: threads, seed: 7)
          == 0)
    }
  }

  /// Products whose rows make 12–24 row tiles and whose `A` is read in place pack `B` two panels at a time
  /// (``GEMM/Blocking/columns(m:mr:nr:readsADirectly:)``): several narrow column blocks, the last one short,
  /// on each micro-kernel, with bias and beta applied once.
  @Test(arguments: GEMM.MicroKernelShape.allCases)
  func narrowColumnBlocksForAFewRowTiles(shape: GEMM.MicroKernelShape) {
    let blocking = GEMM.blocking(for: shape)
    let m = 13 * shape.mr + 5
    #expect(blocking.columns(m: m, mr: shape.mr, nr: shape.nr, readsADirectly: true) == 2 * shape.nr)
    #expect(blocking.columns(m: m, mr: shape.mr, nr: shape.nr, readsADirectly: false) == blocking.nc)
    #expect(blocking.columns(m: 30 * shape.mr, mr: shape.mr, nr: shape.nr, readsADirectly: true) == blocking.nc)
    let bad = checkGEMM(
      m: m, n: 5 * shape.nr + 7, k: 100, transposeA: false, transposeB: false, alpha: 1.5, beta: 0.5, threads: 1,
      seed: 12, shape: shape, withBias: true)
    #expect(bad == 0)
    let transposedB = checkGEMM(
      m: m, n: 3 * shape.nr + 1, k: 37, transposeA: false, transposeB: true, alpha: 1, beta: 0, threads: 1, seed: 13,
      shape: shape)
    #expect(transposedB == 0)
  }

  @Test func emptyDepthScalesC() {
    for beta: Float in [0, 2] {
      var c: [Float] = [1, 2, 3, 4, 5, 6]
      let a: [Float] = [0], b: [Float] = [0]
      GEMM.multiply(m: 2, n: 3, k: 0, a: a, lda: 1, transposeA: false, b: b, ldb: 3, transposeB: false, c: &c, ldc: 3, beta: beta)
      #expect(c == [1, 2, 3, 4, 5, 6].map { $0 * beta })
    }
  }

  @Test func columnBiasIsAddedOnce() {
    // k = 600 spans three depth blocks; the bias must be added in the first only.
    var generator = RandomGenerator(seed: 9)
    let m = 9, n = 21, k = 600
    let a = Tensor.uniform(shape: [m, k], lower: -1, upper: 1, using: &generator)
    let b = Tensor.uniform(shape: [k, n], lower: -1, upper: 1, using: &generator)
    let bias = Tensor.uniform(shape: [n], lower: -1, upper: 1, using: &generator)
    let plain = a.matmul(b)
    let result = Tensor(uninitializedShape: [m, n])
    GEMM.multiply(
      m: m, n: n, k: k, a: a.buffer.pointer, lda: k, transposeA: false, b: b.buffer.pointer, ldb: n,
      transposeB: false, c: result.buffer.pointer, ldc: n, alpha: 1, beta: 0,
      columnBias: UnsafePointer(bias.buffer.pointer))
    var worst: Float = 0
    for i in 0..<m {
      for j in 0..<n { worst = Swift.max(worst, abs(result[i, j] - plain[i, j] - bias[j])) }
    }
    #expect(worst < 1e-4)
  }

  /// The loop must really run: no CPU core reaches 2 TFLOP/s in FP32, so a larger number means
  /// the optimizer removed the work. Threads run at once and share the cores, so oversubscribing
  /// them cannot multiply the rate (the old per-thread sum could).
  @Test func peakFLOPSIsPlausible() throws {
    let one = try PeakFLOPS.measure(threads: 1, seconds: 0.02, repeats: 1)
    #expect(one.gflops > 0.1 && one.gflops < 2000)
    #expect(one.threads == 1 && [8, 16].contains(one.vectorWidth))
    let two = try PeakFLOPS.measure(threads: 2, seconds: 0.02, repeats: 1)
    #expect(two.gflops > 0.1 && two.gflops < 4000)
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let oversubscribed = try PeakFLOPS.measure(threads: 4 * cores, seconds: 0.02, repeats: 1)
    #expect(oversubscribed.gflops < Double(cores) * 2000)
  }

  @Test func peakFLOPSRejectsOutOfRangeArguments() {
    #expect(throws: PeakFLOPSError.threadsOutOfRange(0)) { try PeakFLOPS.measure(threads: 0) }
    #expect(throws: PeakFLOPSError.threadsOutOfRange(1025)) { try PeakFLOPS.measure(threads: 1025) }
    #expect(throws: PeakFLOPSError.secondsOutOfRange(0)) { try PeakFLOPS.measure(threads: 1, seconds: 0) }
    #expect(throws: PeakFLOPSError.secondsOutOfRange(.infinity)) { try PeakFLOPS.measure(threads: 1, seconds: .infinity) }
    #expect(throws: PeakFLOPSError.self) { try PeakFLOPS.measure(threads: 1, seconds: .nan) }
    #expect(throws: PeakFLOPSError.repeatsOutOfRange(0)) { try PeakFLOPS.measure(threads: 1, repeats: 0) }
    #expect("\(PeakFLOPSError.repeatsOutOfRange(0))".contains("repeats must be in 1...100"))
  }

  @Test func smallLeadingDimensionTraps() async {
    await #expect(processExitsWith: .failure) {
      let a = [Float](repeating: 0, count: 12), b = [Float](repeating: 0, count: 12)
      var c = [Float](repeating: 0, count: 9)
      GEMM.multiply(m: 3, n: 3, k: 4, a: a, lda: 3, transposeA: false, b: b, ldb: 3, transposeB: false, c: &c, ldc: 3)
    }
  }
}
