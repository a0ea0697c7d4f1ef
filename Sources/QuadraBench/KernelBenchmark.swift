import Foundation
import QuadraCore

/// One measured kernel.
public struct KernelResult: Codable, Sendable {
  public var name: String
  public var gflops: Double
  public var fractionOfPeak: Double
  public var seconds: Double

  enum CodingKeys: String, CodingKey {
    case name, gflops, seconds
    case fractionOfPeak = "fraction_of_peak"
  }
}

/// The report of `quadranet bench kernels`.
public struct KernelReport: Codable, Sendable {
  public var threads: Int
  public var peakGFLOPS: Double
  /// Lanes of the FMA vectors that reached the peak (8: AVX2-wide, 16: AVX-512-wide).
  public var peakVectorWidth: Int
  public var results: [KernelResult]
  /// Conditions that make the numbers less trustworthy (more threads than cores, a kernel above the peak).
  public var warnings: [String]
  /// The processor as the kernels see it (``QuadraCore/CPUInfo``): vector ISA and cache sizes.
  public var cpu: String
  /// The GEMM micro-kernel tile chosen for it (`rows`x`columns`).
  public var gemmMicroKernel: String

  enum CodingKeys: String, CodingKey {
    case threads, results, warnings, cpu
    case gemmMicroKernel = "gemm_micro_kernel"
    case peakGFLOPS = "peak_gflops"
    case peakVectorWidth = "peak_vector_width"
  }
}

/// Measures the machine's FMA peak, then the GEMM shapes (one also with B prepacked, see
/// ``QuadraCore/GEMM/PackedMatrix``) and the depthwise 7×7
/// convolution that dominate QuadraNet, HorNet and ConvNeXt, as GFLOP/s and as a
/// fraction of that peak (measured in the same process with the same thread count).
public enum KernelBenchmark {
  /// Runs the benchmark with `threads` kernel threads; `progress` receives the table's lines and warnings.
  /// `extraProducts` are timed after the built-in shapes (the `--gemm` option: a user's own layer sizes).
  ///
  /// - Throws: when `threads` is outside 1...``QuadraCore/ComputeContext/maximumThreadCount``.
  public static func run(
    threads: Int, extraProducts: [GEMMShape] = [], progress: (String) -> Void = { _ in }
  ) throws -> KernelReport {
    try ComputeContext.current.with(threads: threads).run {
      var warnings: [String] = []
      func warn(_ warning: String) {
        warnings.append(warning)
        progress("warning: " + warning)
      }
      if let warning = BenchmarkWarnings.oversubscription(threads: threads) { warn(warning) }
      progress("cpu: \(CPUInfo.current); GEMM micro-kernel \(GEMM.microKernel)")
      progress("measuring FMA peak with \(threads) thread(s)…")
      let peakMeasurement = try PeakFLOPS.measure(threads: threads)
      let peak = peakMeasurement.gflops
      var results: [KernelResult] = []
      func record(_ name: String, flops: Double, seconds: Double) {
        let gflops = flops / seconds / 1e9
        results.append(KernelResult(name: name, gflops: gflops, fractionOfPeak: gflops / peak, seconds: seconds))
        progress(
          name.padding(toLength: 28, withPad: " ", startingAt: 0)
            + String(format: "%8.2f GFLOP/s  %5.1f%% of peak", gflops, 100 * gflops / peak))
        if let warning = BenchmarkWarnings.abovePeak(name, fraction: gflops / peak) { warn(warning) }
      }
      for (name, m, n, k) in [
        ("gemm_1024", 1024, 1024, 1024), ("gemm_3136x256x64", 3136, 256, 64), ("gemm_196x1536x384", 196, 1536, 384),
      ] {
        var generator = RandomGenerator(seed: 1)
        let a = Tensor.uniform(shape: [m, k], lower: -1, upper: 1, using: &generator)
        let b = Tensor.uniform(shape: [k, n], lower: -1, upper: 1, using: &generator)
        let c = Tensor(uninitializedShape: [m, n])
        let backend = CPUBackend()
        let seconds = Stopwatch.best(repetitions: 5) {
          backend.matrixMultiply(a, b, MatrixProduct(m: m, n: n, k: k), columnBias: nil, into: c)
        }
        record(name, flops: 2 * Double(m * n * k), seconds: seconds)
        if name == "gemm_196x1536x384" {
          // The same product with B packed once, as inference does with its weights.
          let packed = GEMM.PackedMatrix(k: k, n: n, b: b.buffer.pointer, ldb: n, transposeB: false)
          let prepacked = Stopwatch.best(repetitions: 5) {
            GEMM.multiply(m: m, a: a.buffer.pointer, lda: k, packedB: packed, c: c.buffer.pointer, ldc: n)
          }
          record("gemm_prepacked_196x1536x384", flops: 2 * Double(m * n * k), seconds: prepacked)
        }
      }
      // The shallow products of the 28×28 models (quadranet-28's first stage at batch 64: 64·14² rows,
      // widths 40 → 80): forward, input gradient (B transposed) and weight gradient (A transposed).
      // Their k of 40–80 makes packing and tile stores a large share, unlike the square shapes above.
      /// Times `shape` (operands drawn from `seed`) as the best of `repetitions` calls, recorded as `gemm_` + its shape.
      func timeProduct(_ shape: GEMMShape, seed: UInt64, repetitions: Int) {
        var generator = RandomGenerator(seed: seed)
        let (m, n, k) = (shape.m, shape.n, shape.k)
        let a = Tensor.uniform(shape: shape.transposeA ? [k, m] : [m, k], lower: -1, upper: 1, using: &generator)
        let b = Tensor.uniform(shape: shape.transposeB ? [n, k] : [k, n], lower: -1, upper: 1, using: &generator)
        let c = Tensor(uninitializedShape: [m, n])
        let backend = CPUBackend()
        let product = MatrixProduct(m: m, n: n, k: k, transposeA: shape.transposeA, transposeB: shape.transposeB)
        let seconds = Stopwatch.best(repetitions: repetitions) {
          backend.matrixMultiply(a, b, product, columnBias: nil, into: c)
        }
        record("gemm_" + shape.description, flops: 2 * Double(m * n * k), seconds: seconds)
      }
      for shape in [
        GEMMShape(m: 12544, n: 80, k: 40), GEMMShape(m: 12544, n: 40, k: 80, transposeB: true),
        GEMMShape(m: 40, n: 80, k: 12544, transposeA: true), GEMMShape(m: 3136, n: 160, k: 80),
      ] {
        timeProduct(shape, seed: 3, repetitions: 20)
      }
      for shape in extraProducts {
        // At least 5 calls and about 0.2 s, so small products are not timed by a single call.
        let flops = 2 * Double(shape.m * shape.n * shape.k)
        timeProduct(shape, seed: 4, repetitions: Swift.max(5, Swift.min(1000, Int(2e10 / Swift.max(1, flops)))))
      }
      var generator = RandomGenerator(seed: 2)
      let (batch, size, channels, kernel) = (32, 56, 64, 7)
      let x = Tensor.uniform(shape: [batch, size, size, channels], lower: -1, upper: 1, using: &generator)
      let w = Tensor.uniform(shape: [kernel, kernel, channels], lower: -1, upper: 1, using: &generator)
      let bias = Tensor(zeros: [channels])
      let flops = 2 * Double(batch * size * size * channels * kernel * kernel)
      var output = x
      let forward = Stopwatch.best(repetitions: 3) { output = x.depthwiseConv2D(weight: w, bias: bias) }
      record("dwconv7_forward", flops: flops, seconds: forward)
      let backward = Stopwatch.best(repetitions: 3) {
        _ = Tensor.depthwiseConv2DBackward(
          input: x, weight: w, outputGradient: output, needsInputGradient: true, hasBias: true)
      }
      // Backward computes both the input and the weight gradient: twice the forward FLOPs.
      record("dwconv7_backward", flops: 2 * flops, seconds: backward)
      return KernelReport(
        threads: threads, peakGFLOPS: peak, peakVectorWidth: peakMeasurement.vectorWidth, results: results,
        warnings: warnings, cpu: CPUInfo.current.description, gemmMicroKernel: GEMM.microKernel)
    }
  }
}

/// A product `C[m×n] = op(A)[m×k] · op(B)[k×n]` to time, written `MxNxK` with an optional `_at` (A stored
/// transposed, as in a weight gradient) and `_bt` (B stored transposed, as a linear layer's weight is),
/// e.g. `3136x1024x256_bt`.
public struct GEMMShape: Sendable, Equatable, CustomStringConvertible {
  public var m: Int, n: Int, k: Int
  public var transposeA: Bool, transposeB: Bool

  /// Each operand may hold at most this many floats (1 GiB), so a typo cannot allocate without bound.
  public static let maximumOperandCount = 1 << 28

  public init(m: Int, n: Int, k: Int, transposeA: Bool = false, transposeB: Bool = false) {
    (self.m, self.n, self.k, self.transposeA, self.transposeB) = (m, n, k, transposeA, transposeB)
  }

  /// Parses `MxNxK[_at][_bt]`; the error names the text and what is wrong with it.
  public init(parsing text: String) throws {
    var parts = text.lowercased().split(separator: "_", omittingEmptySubsequences: false).map(String.init)
    let sizes = parts.removeFirst().split(separator: "x", omittingEmptySubsequences: false)
    func fail(_ why: String) -> GEMMShapeError { GEMMShapeError(text: text, reason: why) }
    guard sizes.count == 3 else { throw fail("expected three sizes MxNxK, such as 3136x1024x256") }
    let values = try sizes.map { size -> Int in
      guard let value = Int(size), value >= 1, value <= 1 << 20 else {
        throw fail("size '\(size)' is not an integer in 1...\(1 << 20)")
      }
      return value
    }
    (m, n, k) = (values[0], values[1], values[2])
    (transposeA, transposeB) = (false, false)
    for flag in parts {
      switch flag {
      case "at" where !transposeA: transposeA = true
      case "bt" where !transposeB: transposeB = true
      default: throw fail("unknown or repeated suffix '_\(flag)' (allowed: _at, _bt)")
      }
    }
    for (name, count) in [("A", m * k), ("B", k * n), ("C", m * n)] where count > Self.maximumOperandCount {
      throw fail("\(name) would hold \(count) floats, more than \(Self.maximumOperandCount) (1 GiB)")
    }
  }

  public var description: String {
    "\(m)x\(n)x\(k)" + (transposeA ? "_at" : "") + (transposeB ? "_bt" : "")
  }
}

/// A `--gemm` shape that does not parse or is too large.
public struct GEMMShapeError: Error, CustomStringConvertible {
  public var text: String
  public var reason: String
  public var description: String { "invalid GEMM shape '\(text)': \(reason)" }
}

/// The warnings `bench kernels` and `bench models` print next to fractions of the FMA peak.
enum BenchmarkWarnings {
  /// A warning when `threads` exceeds the cores this process may use: the threads then share
  /// cores, so neither the peak nor the kernels gain from the extra threads.
  static func oversubscription(threads: Int) -> String? {
    let cores = ProcessInfo.processInfo.activeProcessorCount
    guard threads > cores else { return nil }
    return "--threads \(threads) exceeds the \(cores) active core(s); threads share cores, "
      + "so use --threads 1...\(cores) for meaningful speeds"
  }

  /// A warning when `name` ran faster than the measured peak: impossible for a correct peak, so the
  /// peak run was slowed down (by other work on the machine, or a frequency change).
  static func abovePeak(_ name: String, fraction: Double) -> String? {
    guard fraction > 1 else { return nil }
    return String(
      format: "%@ reached %.0f%% of the measured FMA peak; the peak was understated "
        + "(machine busy or clock changed while it was measured)", name, 100 * fraction)
  }
}
