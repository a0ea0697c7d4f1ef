import Foundation
import QuadraAutograd
import QuadraCore
import QuadraNN

/// Time and tape memory of one way of running the quadratic depthwise mixer.
public struct MixerMeasurement: Codable, Sendable {
  /// Forward + backward seconds (best of several runs after a warm-up).
  public var seconds: Double
  /// Bytes the tape holds between forward and backward: live bytes after the forward minus live
  /// bytes before the mixer's input was created, without the output `y`. The input `x` counts
  /// (both variants keep it for the backward pass, and in a network nothing else would).
  public var savedBytes: Int

  public init(seconds: Double, savedBytes: Int) {
    self.seconds = seconds
    self.savedBytes = savedBytes
  }

  enum CodingKeys: String, CodingKey {
    case seconds
    case savedBytes = "saved_bytes"
  }
}

/// Fused vs unfused at one input shape.
public struct MixerShapeResult: Codable, Sendable {
  /// `[N, H, W, C]`.
  public var shape: [Int]
  public var fused: MixerMeasurement
  public var unfused: MixerMeasurement
}

/// The report of `quadranet bench mixer`: totals over the shapes, then the breakdown.
public struct MixerReport: Codable, Sendable {
  public var fused: MixerMeasurement
  public var unfused: MixerMeasurement
  public var shapes: [MixerShapeResult]
}

/// Compares the fused quadratic depthwise convolution with the unfused composition
/// `conv1(x) * conv2(x) + conv3(x)`, both through ``QuadraNN/QuadraticDepthwiseConv2d``
/// (``QuadraNN/QuadraticDepthwiseConv2d/usesFusedKernel``), on the token-mixer shapes of
/// quadranet-t's four stages (batch 16, 224² input).
public enum MixerBenchmark {
  /// `[N, H, W, C]` of quadranet-t's stages at batch 16 and a 224² input.
  public static let stageShapes: [[Int]] = [[16, 56, 56, 64], [16, 28, 28, 128], [16, 14, 14, 256], [16, 7, 7, 512]]

  public static func run(
    threads: Int, shapes: [[Int]] = stageShapes, kernelSize: Int = 7, repetitions: Int = 3,
    progress: (String) -> Void = { _ in }
  ) throws -> MixerReport {
    try ComputeContext.current.with(threads: threads).run {
      var results: [MixerShapeResult] = []
      for shape in shapes {
        opPrecondition(shape.count == 4, "MixerBenchmark: shapes must be [N, H, W, C], got \(shape)")
        var generator = RandomGenerator(seed: 3)
        let layer = QuadraticDepthwiseConv2d(channels: shape[3], kernelSize: kernelSize, generator: &generator)
        let input = Tensor.normal(shape: shape, using: &generator)
        let seed = Tensor.normal(shape: shape, using: &generator)
        func measure(fused: Bool) throws -> MixerMeasurement {
          layer.usesFusedKernel = fused
          let x = Variable(input, requiresGrad: true)
          let seconds = try Stopwatch.best(repetitions: repetitions) {
            layer.zeroGradients()
            x.zeroGradient()
            try layer(x).backward(seed)
          }
          let saved = try savedBytes(layer: layer, input: input, seed: seed)
          layer.zeroGradients()
          return MixerMeasurement(seconds: seconds, savedBytes: saved)
        }
        let fused = try measure(fused: true)
        let unfused = try measure(fused: false)
        layer.usesFusedKernel = true
        results.append(MixerShapeResult(shape: shape, fused: fused, unfused: unfused))
        progress(
          "\(shape)".padding(toLength: 20, withPad: " ", startingAt: 0)
            + "fused \(format(fused))   unfused \(format(unfused))   "
            + String(format: "speedup %.2f×", unfused.seconds / fused.seconds))
      }
      func total(_ pick: (MixerShapeResult) -> MixerMeasurement) -> MixerMeasurement {
        MixerMeasurement(
          seconds: results.map { pick($0).seconds }.reduce(0, +),
          savedBytes: results.map { pick($0).savedBytes }.reduce(0, +))
      }
      return MixerReport(fused: total(\.fused), unfused: total(\.unfused), shapes: results)
    }
  }

  /// Live bytes the tape adds between forward and backward, without the output: the input is
  /// created (as a fresh copy, like a preceding layer's output) after the first reading, so it
  /// counts exactly when the tape keeps it.
  static func savedBytes(layer: QuadraticDepthwiseConv2d, input: Tensor, seed: Tensor) throws -> Int {
    // A tracker of its own: tensors allocated concurrently elsewhere in the process do not count.
    let memory = MemoryTracker()
    let y = memory.run { layer(Variable(input.copy(), requiresGrad: true)) }
    let saved = memory.liveBytes - y.value.count * MemoryLayout<Float>.size
    try y.backward(seed)  // releases the tape
    return saved
  }

  static func format(_ m: MixerMeasurement) -> String {
    String(format: "%8.1f ms %7.1f MiB", m.seconds * 1000, Double(m.savedBytes) / 1_048_576)
  }
}
