import Foundation
import QuadraAutograd
import QuadraCore
import QuadraModels
import QuadraNN

/// The three timed quantities of a network or of one part of it: a training step at the batch size,
/// an inference pass at the batch size and one at batch 1.
public struct TimedWorkload {
  /// One training step (forward, loss, backward, optimizer update).
  var trainStep: () throws -> Void
  /// One inference pass at the batch size.
  var inferBatch: () -> Void
  /// One inference pass at batch 1.
  var inferBatch1: () -> Void
  /// Switches the modules between training and inference behaviour (outside the timed calls).
  var setTraining: (Bool) -> Void

  /// Seconds of each quantity (per step / per pass), each the fastest of at least `repetitions` timed
  /// calls lasting at least `minimumSeconds` together, after a warm-up call
  /// (``Profiler/fastest(repetitions:minimumSeconds:_:)``). The minimum, because on a shared machine the
  /// noise only ever adds time; the time floor, because a 1 ms batch-1 pass timed twice is mostly noise.
  /// Parts and whole networks are timed alike, so sums of parts and networks compare.
  func time(repetitions: Int, minimumSeconds: Double) throws -> PartCost {
    setTraining(true)
    let train = try Profiler.fastest(repetitions: repetitions, minimumSeconds: minimumSeconds) { try trainStep() }
    setTraining(false)
    let batch = Profiler.fastest(repetitions: repetitions, minimumSeconds: minimumSeconds) { inferBatch() }
    let one = Profiler.fastest(repetitions: repetitions, minimumSeconds: minimumSeconds) { inferBatch1() }
    return PartCost(train: train, inferBatch1: one, inferBatch: batch)
  }

  /// A whole network: a training step is forward, label-smoothed cross-entropy, backward and an AdamW
  /// update, as ``QuadraBench/ModelBenchmark`` steps, on fixed random images.
  static func network(_ config: ModelConfig, resolution: Int, batchSize: Int) throws -> TimedWorkload {
    let model = try VisionModel(config: config, seed: 0)
    var generator = RandomGenerator(seed: 1)
    let images = Tensor.normal(shape: [batchSize, resolution, resolution, config.inputChannels], using: &generator)
    let one = Tensor.normal(shape: [1, resolution, resolution, config.inputChannels], using: &generator)
    let labels = (0..<batchSize).map { $0 % config.classCount }
    let optimizer = try AdamW(parameters: model.namedParameters(), learningRate: 1e-4)
    return TimedWorkload(
      trainStep: {
        let loss = model(Variable(images)).softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1)
        try loss.backward()
        optimizer.update()
        model.zeroGradients()
      },
      inferBatch: { GradientMode.withoutRecording { _ = model(Variable(images)) } },
      inferBatch1: { GradientMode.withoutRecording { _ = model(Variable(one)) } },
      setTraining: { model.setTraining($0) })
  }
}

extension PartCost {
  /// Each quantity times `factor`'s same quantity.
  func multiplied(by factor: PartCost) -> PartCost {
    PartCost(train: train * factor.train, inferBatch1: inferBatch1 * factor.inferBatch1, inferBatch: inferBatch * factor.inferBatch)
  }

  /// The median of each quantity over `costs` (one per round; the mean of the middle two for an even
  /// count), nil for none.
  static func median(_ costs: [PartCost]) -> PartCost? {
    guard !costs.isEmpty else { return nil }
    func median(_ values: [Double]) -> Double {
      let sorted = values.sorted()
      let middle = sorted.count / 2
      return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
    return PartCost(
      train: median(costs.map(\.train)), inferBatch1: median(costs.map(\.inferBatch1)),
      inferBatch: median(costs.map(\.inferBatch)))
  }
}

/// A fixed network of the search space, timed beside the profile's and the calibration's measurements:
/// the machine's speed level at the time.
///
/// A virtual machine's cores share caches and memory bandwidth with other tenants. On the 2-core Zen 4
/// VM this project is measured on, the speed level drifted over minutes: a 10-minute profile measured
/// at one level predicted a calibration run at another 20–50% off, all in one direction, while two
/// calibration runs a minute apart agreed on average. Every time `t` measured while the reference's
/// level is `r` is reported as `t · r₀ / r`, with `r₀` the reference's ``baseline`` — the median of the
/// profile's readings, stored with the profile — so measurements taken later (calibration,
/// `--train-best`) are on the predictions' scale. Each quantity (training step, batch inference,
/// batch-1 inference) is scaled by the reference's same quantity.
///
/// One reading is itself a noisy measurement (one pass strays ~10% from the median of three), so the
/// level `r` is the median of the last ``levelReadings`` readings, taken at most every
/// ``readingInterval`` seconds: the drift is slow, the noise fast.
public final class SpeedReference {
  /// Readings whose median is the current level.
  public static let levelReadings = 5

  /// Seconds a reading stays current.
  public let readingInterval: Double
  /// The network timed.
  public let config: ModelConfig
  /// `r₀`: what times are scaled to; nil until the first reading when the initializer got none.
  public private(set) var baseline: PartCost?
  /// Every reading so far, oldest first.
  public private(set) var readings: [PartCost] = []
  private let workload: TimedWorkload
  private let threads: Int
  private var lastReading: ContinuousClock.Instant?

  /// The reference of `space`: the median by MACs of nine architectures drawn with a fixed seed, so
  /// that it is mid-sized in that space and the same in every process.
  public static func config(for space: SearchSpace) throws -> ModelConfig {
    var generator = RandomGenerator(seed: 0x5EED)
    let configs = try (0..<9).map { _ in try space.config(for: space.randomArchitecture(using: &generator)) }
    let sorted = configs.sorted { $0.macs(resolution: space.resolution) < $1.macs(resolution: space.resolution) }
    return sorted[sorted.count / 2]
  }

  /// The reference of `space` at `batchSize` and `threads`; `baseline` is a profile's
  /// ``CostProfile/speedBaseline`` (nil: the first level, until the profile sets the median of all).
  public init(
    space: SearchSpace, batchSize: Int, threads: Int, baseline: PartCost? = nil, readingInterval: Double = 5
  ) throws {
    self.readingInterval = readingInterval
    config = try Self.config(for: space)
    self.baseline = baseline
    self.threads = threads
    workload = try TimedWorkload.network(config, resolution: space.resolution, batchSize: batchSize)
  }

  /// The current level: the median of the last ``levelReadings`` readings, after a new reading when the
  /// last is older than ``readingInterval`` (timed in a fresh memory tracker with the reference's threads).
  public func level(repetitions: Int, minimumSeconds: Double) throws -> PartCost {
    let clock = ContinuousClock()
    if lastReading.map({ clock.now - $0 >= .seconds(readingInterval) }) ?? true {
      readings.append(
        try ComputeContext.current.with(threads: threads).with(memory: MemoryTracker()).run {
          try workload.time(repetitions: repetitions, minimumSeconds: minimumSeconds)
        })
      lastReading = clock.now
    }
    let level = PartCost.median(Array(readings.suffix(Self.levelReadings)))!
    if baseline == nil { baseline = level }
    return level
  }

  /// `time` measured at `level`, on the baseline's scale: each quantity times `baseline / level`.
  public func scaled(_ time: PartCost, at level: PartCost) -> PartCost {
    guard let baseline else { return time }
    return PartCost(
      train: time.train * baseline.train / level.train,
      inferBatch1: time.inferBatch1 * baseline.inferBatch1 / level.inferBatch1,
      inferBatch: time.inferBatch * baseline.inferBatch / level.inferBatch)
  }
}
