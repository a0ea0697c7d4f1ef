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
  public var results: [KernelResult]

  enum CodingKeys: String, CodingKey {
    case threads, results
    case peakGFLOPS = "peak_gflops"
  }
}

/// Measures the machine's FMA peak, then the GEMM shapes and the depthwise 7×7
/// convolution that dominate QuadraNet, HorNet and ConvNeXt, as GFLOP/s and as a
/// fraction of that peak (measured in the same process with the same thread count).
public enum KernelBenchmark {
  public static func run(threads: Int, progress: (String) -> Void = { _ in }) -> KernelReport {
    Parallel.withThreadCount(threads) {
      progress("measuring FMA peak with \(threads) thread(s)…")
      // Best of three: another process briefly using the core must not understate the peak.
      let peak = (0..<3).map { _ in PeakFLOPS.measure(threads: threads, seconds: 0.2) }.max()!
      var results: [KernelResult] = []
      func record(_ name: String, flops: Double, seconds: Double) {
        let gflops = flops / seconds / 1e9
        results.append(KernelResult(name: name, gflops: gflops, fractionOfPeak: gflops / peak, seconds: seconds))
        progress(
          name.padding(toLength: 20, withPad: " ", startingAt: 0)
            + String(format: "%8.2f GFLOP/s  %5.1f%% of peak", gflops, 100 * gflops / peak))
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
      return KernelReport(threads: threads, peakGFLOPS: peak, results: results)
    }
  }
}
