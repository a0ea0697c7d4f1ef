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
  ///
  /// - Throws: when `threads` is outside 1...``QuadraCore/ComputeContext/maximumThreadCount``.
  public static func run(threads: Int, progress: (String) -> Void = { _ in }) throws -> KernelReport {
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
      for (name, m, n, k, transposeA, transposeB) in [
        ("gemm_12544x80x40", 12544, 80, 40, false, false), ("gemm_12544x40x80_bt", 12544, 40, 80, false, true),
        ("gemm_40x80x12544_at", 40, 80, 12544, true, false), ("gemm_3136x160x80", 3136, 160, 80, false, false),
      ] {
        var generator = RandomGenerator(seed: 3)
        let a = Tensor.uniform(shape: transposeA ? [k, m] : [m, k], lower: -1, upper: 1, using: &generator)
        let b = Tensor.uniform(shape: transposeB ? [n, k] : [k, n], lower: -1, upper: 1, using: &generator)
        let c = Tensor(uninitializedShape: [m, n])
        let backend = CPUBackend()
        let product = MatrixProduct(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
        let seconds = Stopwatch.best(repetitions: 20) {
          backend.matrixMultiply(a, b, product, columnBias: nil, into: c)
        }
        record(name, flops: 2 * Double(m * n * k), seconds: seconds)
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
