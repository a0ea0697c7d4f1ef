import Foundation
import QuadraAutograd
import QuadraCore
import QuadraInference
import QuadraModels

/// Latency percentiles and throughput of one forward pass over a batch.
public struct InferenceTiming: Codable, Sendable, Equatable {
  /// Latency of a whole batch, nearest-rank percentiles over the timed runs, in milliseconds.
  public var p50Milliseconds: Double
  public var p90Milliseconds: Double
  public var p99Milliseconds: Double
  /// `batch / mean latency`.
  public var imagesPerSecond: Double

  /// Nearest-rank percentiles (`sorted[⌈p·n⌉ − 1]`) of `seconds`, one sample per run of `batch` images.
  public init(seconds: [Double], batch: Int) {
    let sorted = seconds.sorted()
    func percentile(_ p: Double) -> Double {
      let rank = Int((p * Double(sorted.count)).rounded(.up))
      return sorted[Swift.min(Swift.max(rank, 1), sorted.count) - 1] * 1000
    }
    p50Milliseconds = percentile(0.5)
    p90Milliseconds = percentile(0.9)
    p99Milliseconds = percentile(0.99)
    imagesPerSecond = Double(batch) * Double(sorted.count) / sorted.reduce(0, +)
  }
}

/// One model at one batch size: the inference engine and (optionally) the tape forward.
public struct InferenceBenchResult: Codable, Sendable {
  public var model: String
  public var resolution: Int
  public var batchSize: Int
  public var threads: Int
  public var runs: Int
  public var engine: InferenceTiming
  /// The eval-mode tape forward (`model(Variable(x))` without recording), nil when skipped.
  public var tape: InferenceTiming?
  /// Tape p50 / engine p50.
  public var speedup: Double?
}

/// `quadranet bench inference`: latency percentiles and throughput of the tape-free engine beside the
/// tape forward, per model and batch size, on random normalized images.
public enum InferenceBenchmark {
  public struct Options: Sendable {
    public var models: [String]
    public var batchSizes: [Int]
    public var threads: Int
    /// Square input size; nil: each model's own (``defaultResolution(for:)``).
    public var resolution: Int?
    /// Timed runs per measurement (after one untimed warm-up run).
    public var runs: Int
    public var measuresTape: Bool

    public init(models: [String], batchSizes: [Int], threads: Int, resolution: Int?, runs: Int, measuresTape: Bool) {
      self.models = models
      self.batchSizes = batchSizes
      self.threads = threads
      self.resolution = resolution
      self.runs = runs
      self.measuresTape = measuresTape
    }
  }

  /// 224 for the ImageNet-size models (1,000 classes), else 28 (the 28×28 models; 8×8 digits models run at it too).
  public static func defaultResolution(for config: ModelConfig) -> Int { config.classCount == 1000 ? 224 : 28 }

  /// Checks every model's resolution and memory before building any, then measures each.
  public static func run(_ options: Options, progress: (String) -> Void) throws -> [InferenceBenchResult] {
    let configs = try options.models.map { try ModelRegistry.config(named: $0) }
    for config in configs {
      let resolution = options.resolution ?? defaultResolution(for: config)
      try config.validate(resolution: resolution)
      try config.checkInferenceMemory(batchSize: options.batchSizes.max() ?? 1, resolution: resolution)
    }
    let context = try ComputeContext(threads: options.threads)
    return try context.run {
      var results: [InferenceBenchResult] = []
      for config in configs {
        let resolution = options.resolution ?? defaultResolution(for: config)
        let model = try VisionModel(config: config, seed: 0)
        model.setTraining(false)
        let engine = try InferenceEngine(model: model)
        for batch in options.batchSizes {
          progress("\(config.name): batch \(batch), \(resolution)², \(options.threads) thread(s)")
          var generator = RandomGenerator(seed: UInt64(batch))
          let images = Tensor.truncatedNormal(
            shape: [batch, resolution, resolution, config.inputChannels], std: 1, using: &generator)
          let engineTiming = try time(runs: options.runs, batch: batch) { _ = try engine.logits(images) }
          var tapeTiming: InferenceTiming?
          if options.measuresTape {
            tapeTiming = try time(runs: options.runs, batch: batch) {
              GradientMode.withoutRecording { _ = model(Variable(images)) }
            }
          }
          results.append(
            InferenceBenchResult(
              model: config.name, resolution: resolution, batchSize: batch, threads: options.threads, runs: options.runs,
              engine: engineTiming, tape: tapeTiming,
              speedup: tapeTiming.map { $0.p50Milliseconds / engineTiming.p50Milliseconds }))
        }
      }
      return results
    }
  }

  /// One untimed warm-up call (it allocates the engine's workspace), then `runs` timed calls.
  static func time(runs: Int, batch: Int, _ body: () throws -> Void) throws -> InferenceTiming {
    try body()
    var seconds: [Double] = []
    seconds.reserveCapacity(runs)
    for _ in 0..<runs { seconds.append(try Stopwatch.seconds(body)) }
    return InferenceTiming(seconds: seconds, batch: batch)
  }
}
