import Foundation
import QuadraData
import QuadraIO
import QuadraModels

/// What a running ``Trainer`` reports (for progress lines).
public enum TrainingEvent: Sendable {
  /// A training step finished.
  case batch(TrainingProgress)
  /// The epoch's batches are done; the test evaluation starts.
  case evaluating(epoch: Int)
  /// An epoch finished (and its checkpoint was written, if the run has an output directory).
  case epochFinished(EpochMetrics, totalEpochs: Int)
}

/// The position of a run after a step.
public struct TrainingProgress: Sendable, Equatable {
  /// 1-based epoch and its total.
  public var epoch: Int
  public var epochs: Int
  /// 1-based batch within the epoch and the epoch's batch count.
  public var batch: Int
  public var batchesPerEpoch: Int
  /// Mean training loss of the epoch so far.
  public var loss: Double
  /// Training throughput of the epoch so far.
  public var imagesPerSecond: Double
  /// Estimated seconds until the run ends (training and evaluation), from this run's pace.
  public var etaSeconds: Double
}

/// Trains a ``VisionModel`` on a dataset with AdamW, a per-step cosine schedule with linear warm-up,
/// label smoothing, drop path, the dataset's default augmentation, and optional EMA and gradient clipping;
/// evaluates on the test split after every epoch and, given an output directory, writes
/// `model.safetensors` + `training_state.safetensors` (atomically), `metrics.jsonl`, `curves.svg` and,
/// at the end, `summary.json`.
///
/// The run is a deterministic function of the seed and the thread count: a run resumed from a
/// checkpoint (``init(resuming:splits:dataset:)``) yields bit-identical losses to an uninterrupted one.
public final class Trainer {
  public let model: VisionModel
  public let splits: DatasetSplits
  /// The dataset as `DatasetName.description` (recorded in checkpoints and the summary).
  public let dataset: String
  public let options: TrainingOptions
  public let schedule: CosineSchedule
  /// Completed epochs' metrics (saved ones first when resumed).
  public private(set) var history: [EpochMetrics]
  /// Optimizer steps taken so far.
  public private(set) var globalStep: Int

  let parameters: [(name: String, parameter: Parameter)]
  let optimizer: AdamW
  var ema: ExponentialMovingAverage?
  var iterator: BatchIterator
  var savedPeakBytes: Int

  /// Completed epochs.
  public var completedEpochs: Int { iterator.state.epoch }

  /// Starts a run: `model` should be freshly initialized (e.g. `VisionModel(config:seed: options.seed)`).
  public init(model: VisionModel, splits: DatasetSplits, dataset: String, options: TrainingOptions) throws {
    try options.validate()
    try Evaluator.checkCompatibility(model.config, with: splits.train)
    try Evaluator.checkCompatibility(model.config, with: splits.test)
    try model.config.checkTrainingMemory(
      batchSize: Swift.min(options.batchSize, splits.train.count),
      resolution: Swift.max(splits.train.imageShape[0], splits.train.imageShape[1]))
    try model.config.checkInferenceMemory(
      batchSize: Swift.min(options.evaluationBatchSize, splits.test.count),
      resolution: Swift.max(splits.test.imageShape[0], splits.test.imageShape[1]))
    self.model = model
    self.splits = splits
    self.dataset = dataset
    self.options = options
    parameters = model.namedParameters()
    optimizer = AdamW(parameters: parameters, learningRate: options.learningRate, weightDecay: options.weightDecay)
    ema = options.emaDecay.map { ExponentialMovingAverage(parameters: model.namedParameters(), decay: $0) }
    // The iterator's streams are offset from the weight seed so they are not the init's random numbers.
    iterator = BatchIterator(
      dataset: splits.train, batchSize: options.batchSize, shuffle: true, dropLast: true,
      augmentation: options.augmentation ?? splits.train.defaultAugmentation, seed: options.seed &+ 0x0DA7A)
    guard iterator.batchesPerEpoch > 0 else {
      throw TrainingError.invalidOption(
        "batch size \(options.batchSize) exceeds the \(splits.train.count) training samples of \(splits.train.name)")
    }
    let steps = options.epochs * iterator.batchesPerEpoch
    schedule = CosineSchedule(
      peak: options.learningRate, minimum: options.minimumLearningRate,
      warmupSteps: Int((options.warmupEpochs * Double(iterator.batchesPerEpoch)).rounded()), totalSteps: steps)
    history = []
    globalStep = 0
    savedPeakBytes = 0
  }

  /// Continues a saved run exactly where it stopped: weights, optimizer moments, EMA, schedule
  /// position, shuffle/augmentation and drop-path generators all come from `checkpoint`.
  ///
  /// Checks the checkpoint against the data first: same dataset name and training-set size.
  public convenience init(resuming checkpoint: TrainingCheckpoint, splits: DatasetSplits, dataset: String) throws {
    let state = checkpoint.state
    let path = checkpoint.weights.path
    guard state.dataset == dataset else {
      throw CheckpointError.resumeMismatch(path: path, reason: "it was trained on '\(state.dataset)', not '\(dataset)'")
    }
    guard state.trainCount == splits.train.count else {
      throw CheckpointError.resumeMismatch(
        path: path, reason: "it was trained on \(state.trainCount) samples, \(splits.train.name) has \(splits.train.count)")
    }
    let model = try checkpoint.weights.makeModel()
    try self.init(model: model, splits: splits, dataset: dataset, options: state.options)
    let (a, b) = (state.schedule, schedule)
    guard a.peak == b.peak, a.minimum == b.minimum, a.warmupSteps == b.warmupSteps, a.totalSteps == b.totalSteps else {
      throw CheckpointError.resumeMismatch(path: path, reason: "its learning-rate schedule \(state.schedule) differs from \(schedule)")
    }
    guard state.batchIterator.position <= splits.train.count else {
      throw CheckpointError.resumeMismatch(path: path, reason: "its batch position is beyond the training set")
    }
    // Optimizer moments: check names and shapes against the parameters, then convert layouts.
    var moments: [String: Tensor] = [:]
    var unknown: [String] = []
    var wrongShapes: [CheckpointError.ShapeMismatch] = []
    let byName = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.parameter) })
    for (key, tensor) in checkpoint.optimizerMoments {
      let name = key.hasPrefix("exp_avg_sq.") ? String(key.dropFirst(11)) : key.hasPrefix("exp_avg.") ? String(key.dropFirst(8)) : nil
      guard let name, let parameter = byName[name] else {
        unknown.append(TrainingCheckpoint.optimizerPrefix + key)
        continue
      }
      let expected = parameter.torchLayout.torchShape(engineShape: parameter.variable.shape)
      guard tensor.shape == expected else {
        wrongShapes.append(.init(name: TrainingCheckpoint.optimizerPrefix + key, expected: expected, found: tensor.shape))
        continue
      }
      moments[key] = parameter.torchLayout.fromTorch(tensor)
    }
    var shadow: [String: Tensor]?
    if let saved = checkpoint.emaShadow {
      let missing = parameters.map(\.name).filter { saved[$0] == nil }.map { TrainingCheckpoint.emaPrefix + $0 }
      var converted: [String: Tensor] = [:]
      for (name, tensor) in saved {
        guard let parameter = byName[name] else {
          unknown.append(TrainingCheckpoint.emaPrefix + name)
          continue
        }
        let expected = parameter.torchLayout.torchShape(engineShape: parameter.variable.shape)
        guard tensor.shape == expected else {
          wrongShapes.append(.init(name: TrainingCheckpoint.emaPrefix + name, expected: expected, found: tensor.shape))
          continue
        }
        converted[name] = parameter.torchLayout.fromTorch(tensor).copy()
      }
      guard missing.isEmpty, unknown.isEmpty, wrongShapes.isEmpty else {
        throw CheckpointError.stateDictMismatch(path: path, missing: missing, unexpected: unknown.sorted(), wrongShapes: wrongShapes)
      }
      shadow = converted
    }
    guard unknown.isEmpty, wrongShapes.isEmpty else {
      throw CheckpointError.stateDictMismatch(path: path, missing: [], unexpected: unknown.sorted(), wrongShapes: wrongShapes)
    }
    try optimizer.load(step: state.optimizerStep, tensors: moments)
    if let shadow, let decay = options.emaDecay {
      ema = ExponentialMovingAverage(shadow: shadow, decay: decay)
    }
    model.randomSource.generator = state.dropPathGenerator
    iterator = BatchIterator(
      dataset: splits.train, batchSize: options.batchSize, shuffle: true, dropLast: true,
      augmentation: options.augmentation ?? splits.train.defaultAugmentation, resumingFrom: state.batchIterator)
    history = state.history
    globalStep = state.globalStep
    savedPeakBytes = state.peakBytes
  }

  /// The checkpoint of the current state (weights, optimizer, EMA, generators, schedule position, history).
  public func checkpoint(peakBytes: Int = 0) -> TrainingCheckpoint {
    let layouts = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.parameter.torchLayout) })
    var moments: [String: Tensor] = [:]
    for (key, tensor) in optimizer.state.tensors {
      let name = key.hasPrefix("exp_avg_sq.") ? String(key.dropFirst(11)) : String(key.dropFirst(8))
      moments[key] = layouts[name]!.toTorch(tensor)
    }
    let shadow = ema.map { ema in
      Dictionary(uniqueKeysWithValues: ema.shadow.map { ($0.key, layouts[$0.key]!.toTorch($0.value)) })
    }
    let state = TrainingState(
      model: model.config.name, dataset: dataset, trainCount: splits.train.count, options: options,
      epoch: completedEpochs, globalStep: globalStep, schedule: schedule, optimizerStep: optimizer.step,
      batchIterator: iterator.state, dropPathGenerator: model.randomSource.generator, history: history,
      peakBytes: Swift.max(peakBytes, savedPeakBytes), threads: Parallel.threadCount)
    let weights = WeightsCheckpoint(
      model: model, dataset: dataset, normalization: splits.train.normalization, epoch: completedEpochs,
      globalStep: globalStep)
    return TrainingCheckpoint(weights: weights, state: state, optimizerMoments: moments, emaShadow: shadow)
  }

  /// Runs the remaining epochs (or up to `stopAfterEpoch`, to simulate an interruption).
  ///
  /// With an `outputDirectory`, it is created only now — after everything was validated — and every
  /// completed epoch replaces the checkpoint atomically; a failing epoch writes nothing.
  @discardableResult
  public func run(
    outputDirectory: URL?, stopAfterEpoch: Int? = nil, progress: (TrainingEvent) -> Void = { _ in }
  ) throws -> TrainingSummary {
    let lastEpoch = Swift.min(options.epochs, stopAfterEpoch ?? options.epochs)
    let firstEpoch = completedEpochs
    if let outputDirectory {
      try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
    }
    var metricsWriter: JSONLinesWriter?
    defer { try? metricsWriter?.close() }
    MemoryAllocator.shared.resetPeak()
    let runStart = Date()
    let batchesPerEpoch = iterator.batchesPerEpoch
    var batchesThisRun = 0
    let totalBatchesThisRun = Swift.max(lastEpoch - firstEpoch, 0) * batchesPerEpoch

    for epoch in firstEpoch..<Swift.max(lastEpoch, firstEpoch) {
      let epochStart = Date()
      model.setTraining(true)
      var lossSum = 0.0
      var samples = 0
      var batchIndex = 0
      while let batch = iterator.next() {
        let loss = step(batch)
        guard loss.isFinite else {
          throw TrainingError.diverged(epoch: epoch + 1, step: globalStep, loss: loss)
        }
        lossSum += Double(loss) * Double(batch.count)
        samples += batch.count
        batchIndex += 1
        batchesThisRun += 1
        let elapsed = Date().timeIntervalSince(epochStart)
        let runElapsed = Date().timeIntervalSince(runStart)
        progress(
          .batch(
            TrainingProgress(
              epoch: epoch + 1, epochs: options.epochs, batch: batchIndex, batchesPerEpoch: batchesPerEpoch,
              loss: lossSum / Double(samples), imagesPerSecond: Double(samples) / Swift.max(elapsed, 1e-9),
              etaSeconds: runElapsed / Double(batchesThisRun) * Double(totalBatchesThisRun - batchesThisRun))))
      }
      let trainSeconds = Date().timeIntervalSince(epochStart)
      progress(.evaluating(epoch: epoch + 1))
      let evaluation = evaluateTestSplit()
      let metrics = EpochMetrics(
        epoch: epoch + 1, trainLoss: lossSum / Double(Swift.max(samples, 1)), testAccuracy: evaluation.accuracy,
        seconds: Date().timeIntervalSince(epochStart), imagesPerSecond: Double(samples) / Swift.max(trainSeconds, 1e-9))
      history.append(metrics)
      if let outputDirectory {
        try checkpoint(peakBytes: MemoryAllocator.shared.peakBytes).write(to: outputDirectory)
        if let writer = metricsWriter {
          try writer.append(metrics)
        } else {
          // The first epoch of this run rewrites the file: saved history (if resumed), then this epoch.
          let writer = try JSONLinesWriter(
            url: outputDirectory.appendingPathComponent(RunFiles.metrics), mode: .truncate)
          for record in history { try writer.append(record) }
          metricsWriter = writer
        }
        try AtomicFile.write(curves(), to: outputDirectory.appendingPathComponent(RunFiles.curves))
      }
      progress(.epochFinished(metrics, totalEpochs: options.epochs))
    }

    let summary = makeSummary(peakBytes: Swift.max(MemoryAllocator.shared.peakBytes, savedPeakBytes))
    if let outputDirectory {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
      try AtomicFile.write(try encoder.encode(summary), to: outputDirectory.appendingPathComponent(RunFiles.summary))
    }
    return summary
  }

  /// One optimizer step on `batch`; returns the batch's loss.
  func step(_ batch: Batch) -> Float {
    optimizer.learningRate = schedule.learningRate(at: globalStep)
    let logits = model(Variable(batch.images))
    let loss = logits.softmaxCrossEntropy(labels: batch.labels, labelSmoothing: options.labelSmoothing)
    let value = loss.value.scalar
    guard value.isFinite else { return value }
    model.zeroGradients()
    loss.backward()
    if let clip = options.clipGradientNorm { clipGradientNorm(parameters, maxNorm: clip) }
    optimizer.update()
    ema?.update(from: parameters)
    model.zeroGradients()
    globalStep += 1
    return value
  }

  /// Test-split evaluation of the weights that matter: the EMA average when EMA is on.
  public func evaluateTestSplit() -> EvaluationResult {
    guard let ema else { return Evaluator.evaluate(model, on: splits.test, batchSize: options.evaluationBatchSize) }
    let saved = parameters.map { $0.parameter.variable.value }
    for (name, parameter) in parameters { parameter.variable.update(ema.shadow[name]!) }
    defer { for (index, entry) in parameters.enumerated() { entry.parameter.variable.update(saved[index]) } }
    return Evaluator.evaluate(model, on: splits.test, batchSize: options.evaluationBatchSize)
  }

  func makeSummary(peakBytes: Int) -> TrainingSummary {
    let resolution = splits.train.imageShape[0]
    return TrainingSummary(
      model: model.config.name, dataset: dataset, epochs: history.count,
      testAccuracy: history.last?.testAccuracy ?? 0, trainSeconds: history.reduce(0) { $0 + $1.seconds },
      params: model.parameterCount, macs: model.config.macs(resolution: resolution), peakBytes: peakBytes,
      imagesPerSecond: history.isEmpty ? 0 : history.reduce(0) { $0 + $1.imagesPerSecond } / Double(history.count),
      threads: Parallel.threadCount)
  }

  /// Training loss (left axis) and test accuracy in % (right axis) per epoch.
  func curves() -> String {
    let epochs = history.map { Double($0.epoch) }
    let plot = SVGPlot(
      title: "\(model.config.name) on \(dataset)", xLabel: "epoch", leftLabel: "train loss",
      rightLabel: "test accuracy (%)",
      series: [
        .init(name: "train loss", x: epochs, y: history.map(\.trainLoss)),
        .init(name: "test accuracy", x: epochs, y: history.map { 100 * $0.testAccuracy }, axis: .right),
      ])
    return plot.render()
  }
}

/// File names of a run directory besides the checkpoint.
public enum RunFiles {
  public static let metrics = "metrics.jsonl"
  public static let summary = "summary.json"
  public static let curves = "curves.svg"
}
