import Foundation
import QuadraAutograd
import QuadraBench
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

  /// Each quantity timed in alternation with `reference`'s same quantity: after one warm-up call of
  /// this workload, `repetitions` windows (at least one), each the fastest of this workload's calls over
  /// `minimumSeconds / repetitions` (at least one call), then the fastest of the reference's calls over
  /// half that (at least one call). Returns per quantity the median over the windows of the two
  /// fastest calls' ratio, and the median of the reference's. Why windows and ratios: the machine's
  /// speed drifts on the scale of seconds, alike for both (``SpeedReference``). The reference runs in
  /// `context`, this workload in the caller's.
  func time(repetitions: Int, minimumSeconds: Double, beside reference: TimedWorkload, in context: ComputeContext) throws -> (
    ratio: PartCost, reference: PartCost
  ) {
    let windows = Swift.max(1, repetitions)
    let seconds = minimumSeconds / Double(windows)
    func alternate(_ body: () throws -> Void, _ other: () throws -> Void) throws -> (ratio: Double, reference: Double) {
      // The reference runs between every two windows and stays warm; the workload may be new.
      try body()
      var ratios: [Double] = []
      var references: [Double] = []
      for _ in 0..<windows {
        let own = try Stopwatch.best(
          warmup: 0, repetitions: 1, minimumSeconds: seconds, maximumRepetitions: Profiler.maximumRepetitions, body)
        let theirs = try context.run {
          try Stopwatch.best(
            warmup: 0, repetitions: 1, minimumSeconds: seconds / 2, maximumRepetitions: Profiler.maximumRepetitions, other)
        }
        ratios.append(own / theirs)
        references.append(theirs)
      }
      return (PartCost.median(ratios), PartCost.median(references))
    }
    setTraining(true)
    reference.setTraining(true)
    let train = try alternate(trainStep, reference.trainStep)
    setTraining(false)
    reference.setTraining(false)
    let batch = try alternate(inferBatch, reference.inferBatch)
    let one = try alternate(inferBatch1, reference.inferBatch1)
    return (
      PartCost(train: train.ratio, inferBatch1: one.ratio, inferBatch: batch.ratio),
      PartCost(train: train.reference, inferBatch1: one.reference, inferBatch: batch.reference)
    )
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
  /// The median of `values` (the mean of the middle two for an even count); `values` is not empty.
  static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
  }

  /// Each quantity times `factor`'s same quantity.
  func multiplied(by factor: PartCost) -> PartCost {
    PartCost(train: train * factor.train, inferBatch1: inferBatch1 * factor.inferBatch1, inferBatch: inferBatch * factor.inferBatch)
  }

  /// The median of each quantity over `costs` (one per round; the mean of the middle two for an even
  /// count), nil for none.
  static func median(_ costs: [PartCost]) -> PartCost? {
    guard !costs.isEmpty else { return nil }
    return PartCost(
      train: median(costs.map(\.train)), inferBatch1: median(costs.map(\.inferBatch1)),
      inferBatch: median(costs.map(\.inferBatch)))
  }
}

/// A fixed small network of the search space, timed in alternation with every measurement: the
/// machine's speed at that moment.
///
/// A virtual machine's cores share caches, memory bandwidth and (as SMT siblings) execution units with
/// other tenants, and its speed moves between levels that last from a second to minutes. On the 2-core
/// Zen 3 VM of stops 26–33, the same batch-1 network timed in 20 ms windows ran at 1.24 ms for a minute
/// and at 1.63 ms in the next process, and a network's windows spread by 17–25% within one second of
/// drift; networks timed side by side moved together (window-to-window correlation 0.86–0.94), so the
/// ratio of two networks timed in alternation stayed within 2–7% across those levels. A reference read
/// only every few seconds (this type's first design: every 5 s, the median of the last five readings)
/// could not follow: its level lagged the machine's by tens of seconds, and batch-1 predictions for a
/// profile measured at one level were judged by calibrations at another.
///
/// So ``time(_:repetitions:minimumSeconds:)`` times each quantity (training step, batch inference,
/// batch-1 inference) in windows alternating the workload and the reference's same quantity, takes the
/// median over the windows of workload ÷ reference, and reports it times `r₀`, the reference's
/// ``baseline`` — the median of the profile's reference readings, stored with the profile — so
/// measurements taken later (calibration, `--train-best`) are on the predictions' scale.
public final class SpeedReference {
  /// The network timed.
  public let config: ModelConfig
  /// `r₀`: what times are scaled to; nil until the first measurement when the initializer got none.
  public private(set) var baseline: PartCost?
  /// The reference's own time during each measurement so far (median over its windows), oldest first.
  public private(set) var readings: [PartCost] = []
  private let workload: TimedWorkload
  private let threads: Int

  /// The reference of `space`: the cheapest by MACs of nine architectures drawn with a fixed seed, each
  /// stage cut to its smallest depth, so that it is a network of that space with a mix of its parts,
  /// the same in every process, and cheap to time beside every measurement (one of its calls at least
  /// per window, also beside a part that takes a millisecond: on the `fashion-mnist` space at batch 64
  /// the uncut cheapest draw's training step took 34 ms and made the profile 12.5 minutes long).
  public static func config(for space: SearchSpace) throws -> ModelConfig {
    var generator = RandomGenerator(seed: 0x5EED)
    let architectures = (0..<9).map { _ in space.randomArchitecture(using: &generator) }
    let configs = try architectures.map { try space.config(for: $0) }
    let cheapest = configs.indices.min { configs[$0].macs(resolution: space.resolution) < configs[$1].macs(resolution: space.resolution) }!
    var architecture = architectures[cheapest]
    architecture.depths = architecture.depths.indices.map { space.stages[$0].depths.min()! }
    return try space.config(for: architecture)
  }

  /// The reference of `space` at `batchSize` and `threads`; `baseline` is a profile's
  /// ``CostProfile/speedBaseline`` (nil: the reference's time during the first measurement, until the
  /// profile sets the median of all).
  public convenience init(space: SearchSpace, batchSize: Int, threads: Int, baseline: PartCost? = nil) throws {
    let config = try Self.config(for: space)
    self.init(
      config: config, workload: try TimedWorkload.network(config, resolution: space.resolution, batchSize: batchSize),
      threads: threads, baseline: baseline)
  }

  /// A reference timing `workload` (for tests: a workload of known cost).
  init(config: ModelConfig, workload: TimedWorkload, threads: Int, baseline: PartCost? = nil) {
    self.config = config
    self.workload = workload
    self.threads = threads
    self.baseline = baseline
  }

  /// `workload`'s seconds per quantity on the baseline's scale: the median over `repetitions` windows
  /// (at least `minimumSeconds` of the workload's calls together) of its fastest call in a window ÷ the
  /// reference's fastest call in the next (``TimedWorkload/time(repetitions:minimumSeconds:beside:in:)``),
  /// times ``baseline``. The workload runs in the caller's context; the reference in a fresh memory
  /// tracker with the reference's threads. Appends the reference's own times to ``readings``.
  public func time(_ workload: TimedWorkload, repetitions: Int, minimumSeconds: Double) throws -> PartCost {
    let context = try ComputeContext.current.with(threads: threads).with(memory: MemoryTracker())
    let paired = try workload.time(repetitions: repetitions, minimumSeconds: minimumSeconds, beside: self.workload, in: context)
    readings.append(paired.reference)
    if baseline == nil { baseline = paired.reference }
    return paired.ratio.multiplied(by: baseline!)
  }
}
