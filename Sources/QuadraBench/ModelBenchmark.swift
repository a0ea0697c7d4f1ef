import Foundation
import QuadraModels

/// One model's measurements in `quadranet bench models`.
public struct ModelResult: Codable, Sendable {
  public var model: String
  public var params: Int
  public var macs: Int
  /// Images per second of the fastest timed training step.
  public var trainImagesPerSecond: Double
  /// Images per second of the median timed training step: on a machine whose speed drifts, the best
  /// step and the median can differ by a third, so comparisons with another engine use the same statistic.
  public var trainImagesPerSecondMedian: Double
  public var inferImagesPerSecond: Double
  /// Peak bytes of live tensors during a training step (weights, gradients, AdamW moments, activations).
  public var trainPeakBytes: Int
  /// Peak bytes of live tensors during an inference forward pass (weights and activations).
  public var inferPeakBytes: Int
  /// Training FLOPs (3 × 2 × MACs per image: forward, input and weight gradients) per second over the FMA peak.
  public var trainFractionOfPeak: Double
  /// The per-primitive breakdown of a training step (`--profile`), nil when not profiled.
  public var trainProfile: StepProfile?

  enum CodingKeys: String, CodingKey {
    case model, params, macs
    case trainImagesPerSecond = "train_images_per_second"
    case trainImagesPerSecondMedian = "train_images_per_second_median"
    case inferImagesPerSecond = "infer_images_per_second"
    case trainPeakBytes = "train_peak_bytes"
    case inferPeakBytes = "infer_peak_bytes"
    case trainFractionOfPeak = "train_fraction_of_peak"
    case trainProfile = "train_profile"
  }
}

/// Trains and runs each model in the same process and engine, for side-by-side comparison.
public enum ModelBenchmark {
  public struct Options: Sendable {
    public var models: [String]
    public var resolution: Int
    public var batchSize: Int
    public var threads: Int
    /// Timed training steps after one warm-up step.
    public var steps: Int
    /// Whether ``ModelBenchmark/measure(config:options:progress:)`` times training steps; when false only
    /// inference is timed (training time and peak are reported as 0).
    public var measuresTraining: Bool
    /// Whether `steps` further training steps run with every backend primitive timed
    /// (``ModelResult/trainProfile``); the throughput numbers come from the unprofiled steps.
    public var profilesTraining: Bool

    public init(
      models: [String], resolution: Int = 224, batchSize: Int = 16, threads: Int, steps: Int = 2,
      measuresTraining: Bool = true, profilesTraining: Bool = false
    ) {
      self.models = models
      self.resolution = resolution
      self.batchSize = batchSize
      self.threads = threads
      self.steps = steps
      self.measuresTraining = measuresTraining
      self.profilesTraining = profilesTraining
    }
  }

  /// Measures the FMA peak once, then every registered model of `options.models`. `progress` receives
  /// human-readable status lines.
  ///
  /// Each model runs in its own ``QuadraCore/ComputeContext`` (with `options.threads` threads and a
  /// fresh memory tracker), so its peak bytes count only its own tensors.
  public static func run(
    _ options: Options, progress: (String) -> Void = { _ in }
  ) throws -> (peakGFLOPS: Double, results: [ModelResult]) {
    try run(configs: options.models.map { try ModelRegistry.config(named: $0) }, options: options, progress: progress)
  }

  /// ``run(_:progress:)`` for any configs, registered or not (a searched `best.json`, say); `options.models`
  /// is not read.
  public static func run(
    configs: [ModelConfig], options: Options, progress: (String) -> Void = { _ in }
  ) throws -> (peakGFLOPS: Double, results: [ModelResult]) {
    try ComputeContext.current.with(threads: options.threads).run {
      if let warning = BenchmarkWarnings.oversubscription(threads: options.threads) {
        progress("warning: " + warning)
      }
      progress("measuring FMA peak with \(options.threads) thread(s)…")
      let peakBefore = try PeakFLOPS.measure(threads: options.threads).gflops
      var results: [ModelResult] = []
      for config in configs {
        let context = ComputeContext.current.with(memory: MemoryTracker())
        results.append(try context.run { try measure(config: config, options: options, progress: progress) })
      }
      // The peak is measured again at the end and the higher value kept: a run disturbed by other
      // work on the machine would otherwise understate the peak and overstate every fraction.
      let peak = Swift.max(peakBefore, try PeakFLOPS.measure(threads: options.threads).gflops)
      for index in results.indices {
        let flops = 6 * Double(results[index].macs) * results[index].trainImagesPerSecond
        results[index].trainFractionOfPeak = flops / 1e9 / peak
        if let warning = BenchmarkWarnings.abovePeak(results[index].model, fraction: flops / 1e9 / peak) {
          progress("warning: " + warning)
        }
      }
      return (peak, results)
    }
  }

  /// The middle value (the upper one of the middle two for an even count, as `scripts/torch_bench.py` takes it).
  static func median(_ values: [Double]) -> Double {
    values.sorted()[values.count / 2]
  }

  /// Measures one model (any config, registered or not; `options.models` is not read) in the current
  /// ``QuadraCore/ComputeContext``; `trainFractionOfPeak` is left 0 (``run(_:progress:)`` fills it in).
  /// The peaks are those of the context's memory tracker, so run it in a context with a fresh one.
  public static func measure(config: ModelConfig, options: Options, progress: (String) -> Void) throws -> ModelResult {
    let memory = ComputeContext.current.memory
    // Each model starts from an empty pool so one model's cached blocks don't hide another's allocations.
    MemoryAllocator.shared.releaseCache()
    let model = try VisionModel(config: config, seed: 0)
    var generator = RandomGenerator(seed: 1)
    let images = Tensor.normal(
      shape: [options.batchSize, options.resolution, options.resolution, config.inputChannels], using: &generator)
    let labels = (0..<options.batchSize).map { $0 % config.classCount }
    let parameters = model.namedParameters()
    let optimizer = try AdamW(parameters: parameters, learningRate: 1e-4)
    let macs = config.macs(resolution: options.resolution)

    func trainStep() throws {
      let loss = model(Variable(images)).softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1)
      try loss.backward()
      optimizer.update()
      model.zeroGradients()
    }

    var trainSeconds = Double.infinity
    var stepSeconds: [Double] = []
    if options.measuresTraining {
      progress("\(config.name): warm-up training step (batch \(options.batchSize), \(options.resolution)²)…")
      model.setTraining(true)
      try trainStep()
      memory.resetPeak()
    }
    for step in 0..<(options.measuresTraining ? options.steps : 0) {
      let seconds = try Stopwatch.seconds(trainStep)
      stepSeconds.append(seconds)
      trainSeconds = Swift.min(trainSeconds, seconds)
      progress(
        "\(config.name): training step \(step + 1)/\(options.steps): "
          + String(
            format: "%.3f s, %.2f images/s (best so far %.2f)", seconds, Double(options.batchSize) / seconds,
            Double(options.batchSize) / trainSeconds))
    }
    let trainPeak = options.measuresTraining ? memory.peakBytes : 0
    var profile: StepProfile?
    if options.measuresTraining && options.profilesTraining {
      progress("\(config.name): \(options.steps) profiled training step(s)…")
      profile = try StepProfile.measure(
        steps: options.steps, model: model, images: images, labels: labels, optimizer: optimizer)
    }

    model.setTraining(false)
    func inferStep() {
      GradientMode.withoutRecording { _ = model(Variable(images)) }
    }
    inferStep()
    memory.resetPeak()
    var inferSeconds = Double.infinity
    for _ in 0..<options.steps { inferSeconds = Swift.min(inferSeconds, Stopwatch.seconds(inferStep)) }
    let inferPeak = memory.peakBytes

    return ModelResult(
      model: config.name, params: config.parameterCount, macs: macs,
      trainImagesPerSecond: options.measuresTraining ? Double(options.batchSize) / trainSeconds : 0,
      trainImagesPerSecondMedian: stepSeconds.isEmpty ? 0 : Double(options.batchSize) / median(stepSeconds),
      inferImagesPerSecond: Double(options.batchSize) / inferSeconds,
      trainPeakBytes: trainPeak, inferPeakBytes: inferPeak,
      trainFractionOfPeak: 0, trainProfile: profile)
  }
}
