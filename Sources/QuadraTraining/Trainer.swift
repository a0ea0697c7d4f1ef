import Foundation
import QuadraData
import QuadraDistributed
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
  /// The loss of this step's (global) batch.
  public var batchLoss: Double = 0
}

/// Trains a ``VisionModel`` on a dataset with AdamW or SGD, a per-step cosine schedule with linear
/// warm-up, label smoothing, drop path, the dataset's default augmentation, and optional EMA,
/// gradient clipping and gradient accumulation; evaluates on the test split after every epoch and,
/// given an output directory (a locked ``RunDirectory``), saves the `model.safetensors` +
/// `training_state.safetensors` pair crash-safely, writes `metrics.jsonl`, `curves.svg` and, at the end, `summary.json`.
///
/// One optimizer step takes ``TrainingOptions/accumulateSteps`` (N) micro-batches of
/// ``TrainingOptions/batchSize``: each micro-batch's loss is scaled by 1/N before its backward
/// pass, so the summed gradients are those of the mean loss over the N·batch samples. Then the
/// ``gradientHooks`` run, then gradient clipping, the optimizer update and the EMA. An epoch's
/// trailing k < N micro-batches still make a step, with their losses scaled by 1/k. Steps never
/// span epochs (checkpoints are written at epoch ends), and the learning-rate schedule counts
/// optimizer steps: ⌈batches per epoch / N⌉ per epoch.
///
/// The run is a deterministic function of the seed and the thread count: a run resumed from a
/// checkpoint (``init(resuming:splits:dataset:)``) yields bit-identical losses to an uninterrupted one.
public final class Trainer {
  public let model: VisionModel
  /// The training and test data (in memory or streamed from disk).
  public let data: TrainingData
  /// The dataset as `DatasetName.description` (recorded in checkpoints and the summary).
  public let dataset: String
  public let options: TrainingOptions
  public let schedule: CosineSchedule
  /// Completed epochs' metrics (saved ones first when resumed).
  public private(set) var history: [EpochMetrics]
  /// Optimizer steps taken so far.
  public private(set) var globalStep: Int
  /// Optimizer steps per epoch: ⌈micro-batches per epoch / accumulate steps⌉.
  public let stepsPerEpoch: Int
  /// The optimizer chosen by ``TrainingOptions/optimizer``.
  public let optimizer: any Optimizer
  /// Run on the summed gradients of every optimizer step, in order, before gradient clipping
  /// and the update; see ``GradientHook`` for the contract.
  public var gradientHooks: [any GradientHook] = []

  let parameters: [(name: String, parameter: Parameter)]
  let clipping: GradientNormClipping?
  var ema: ExponentialMovingAverage?
  var iterator: TrainingFeed
  var savedPeakBytes: Int
  /// Set by ``distribute(over:)``: this trainer is one rank of a data-parallel run.
  var dataParallel: DataParallelRank?

  /// Completed epochs.
  public var completedEpochs: Int { iterator.state.epoch }

  /// Starts a run on in-memory splits: `model` should be freshly initialized (e.g. `VisionModel(config:seed: options.seed)`).
  public convenience init(model: VisionModel, splits: DatasetSplits, dataset: String, options: TrainingOptions) throws {
    try self.init(model: model, data: TrainingData(splits), dataset: dataset, options: options)
  }

  /// Starts a run on `data` (in memory or streamed): `model` should be freshly initialized.
  ///
  /// The training batches come from a ``BatchIterator`` for in-memory data with a padded-crop/flip
  /// augmentation, else from a ``StreamingBatchLoader`` (random-resized-crop, or data on disk) whose
  /// batches do not depend on ``TrainingData/loader``'s worker count.
  public init(model: VisionModel, data: TrainingData, dataset: String, options: TrainingOptions) throws {
    try options.validate()
    try Evaluator.checkCompatibility(model.config, with: data.train)
    try Evaluator.checkCompatibility(model.config, with: data.test)
    try model.config.checkTrainingMemory(
      batchSize: Swift.min(options.batchSize, data.train.count),
      resolution: Swift.max(data.train.sampleShape[0], data.train.sampleShape[1]))
    try model.config.checkInferenceMemory(
      batchSize: Swift.min(options.evaluationBatchSize, data.test.count),
      resolution: Swift.max(data.test.sampleShape[0], data.test.sampleShape[1]))
    self.model = model
    self.data = data
    self.dataset = dataset
    self.options = options
    parameters = model.namedParameters()
    optimizer = try options.makeOptimizer(parameters: parameters)
    clipping = try options.clipGradientNorm.map { try GradientNormClipping(maxNorm: $0) }
    ema = options.emaDecay.map { ExponentialMovingAverage(parameters: model.namedParameters(), decay: $0) }
    // The iterator's streams are offset from the weight seed so they are not the init's random numbers.
    let seed = options.seed &+ 0x0DA7A
    iterator = try TrainingFeed(
      data: data, batchSize: options.batchSize, augmentation: Self.augmentation(options, data),
      state: .start(seed: seed))
    guard iterator.batchesPerEpoch > 0 else {
      throw TrainingError.invalidOption(
        "batch size \(options.batchSize) exceeds the \(data.train.count) training samples of \(data.train.name)")
    }
    stepsPerEpoch = (iterator.batchesPerEpoch + options.accumulateSteps - 1) / options.accumulateSteps
    schedule = CosineSchedule(
      peak: options.learningRate, minimum: options.minimumLearningRate,
      warmupSteps: Int((options.warmupEpochs * Double(stepsPerEpoch)).rounded()), totalSteps: options.epochs * stepsPerEpoch)
    history = []
    globalStep = 0
    savedPeakBytes = 0
  }

  /// Continues a saved run exactly where it stopped: weights, optimizer moments, EMA, schedule
  /// position, shuffle/augmentation and drop-path generators all come from `checkpoint`.
  ///
  /// Checks the checkpoint against the data first: same dataset name and training-set size.
  ///
  /// `epochs` changes the run's length (e.g. extends a finished run); it must exceed the completed
  /// epochs. The cosine schedule is then recomputed over the new total (warm-up unchanged), so the
  /// remaining steps get the learning rates of the longer (or shorter) schedule: after a finished run
  /// the rate rises again from the minimum to the new schedule's value at this step. The result is
  /// therefore not what a run planned with `epochs` from the start would give.
  public convenience init(
    resuming checkpoint: TrainingCheckpoint, splits: DatasetSplits, dataset: String, epochs: Int? = nil
  ) throws {
    try self.init(resuming: checkpoint, data: TrainingData(splits), dataset: dataset, epochs: epochs)
  }

  /// Continues a saved run on `data` (in memory or streamed); see ``init(resuming:splits:dataset:epochs:)``.
  public convenience init(
    resuming checkpoint: TrainingCheckpoint, data: TrainingData, dataset: String, epochs: Int? = nil
  ) throws {
    let state = checkpoint.state
    let path = checkpoint.weights.path
    var options = state.options
    if let epochs, epochs != options.epochs {
      guard epochs > state.epoch else {
        throw CheckpointError.resumeMismatch(
          path: path, reason: "it already completed \(state.epoch) epoch(s); to continue, the number of epochs must "
            + "be at least \(state.epoch + 1), got \(epochs)")
      }
      options.epochs = epochs
    }
    guard state.dataset == dataset else {
      throw CheckpointError.resumeMismatch(path: path, reason: "it was trained on '\(state.dataset)', not '\(dataset)'")
    }
    guard state.trainCount == data.train.count else {
      throw CheckpointError.resumeMismatch(
        path: path, reason: "it was trained on \(state.trainCount) samples, \(data.train.name) has \(data.train.count)")
    }
    let model = try checkpoint.weights.makeModel()
    try self.init(model: model, data: data, dataset: dataset, options: options)
    let (a, b) = (state.schedule, schedule)
    let lengthChanged = options.epochs != state.options.epochs
    guard a.peak == b.peak, a.minimum == b.minimum, a.warmupSteps == b.warmupSteps,
      a.totalSteps == b.totalSteps || lengthChanged
    else {
      throw CheckpointError.resumeMismatch(path: path, reason: "its learning-rate schedule \(state.schedule) differs from \(schedule)")
    }
    guard state.batchIterator.position <= data.train.count else {
      throw CheckpointError.resumeMismatch(path: path, reason: "its batch position is beyond the training set")
    }
    // Optimizer state: exactly the tensors the optimizer holds after the saved step count, each of
    // its parameter's shape (PyTorch layout in the file).
    var moments: [String: Tensor] = [:]
    var missing: [String] = []
    var unknown: [String] = []
    var wrongShapes: [CheckpointError.ShapeMismatch] = []
    let expectedKeys = optimizer.stateKeys(afterSteps: state.optimizerStep)
    for (key, index) in expectedKeys {
      let parameter = parameters[index].parameter
      guard let tensor = checkpoint.optimizerMoments[key] else {
        missing.append(TrainingCheckpoint.optimizerPrefix + key)
        continue
      }
      let expected = parameter.torchLayout.torchShape(engineShape: parameter.variable.shape)
      guard tensor.shape == expected else {
        wrongShapes.append(.init(name: TrainingCheckpoint.optimizerPrefix + key, expected: expected, found: tensor.shape))
        continue
      }
      moments[key] = parameter.torchLayout.fromTorch(tensor)
    }
    unknown += Set(checkpoint.optimizerMoments.keys).subtracting(expectedKeys.map(\.key))
      .map { TrainingCheckpoint.optimizerPrefix + $0 }
    let byName = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.parameter) })
    var shadow: [String: Tensor]?
    if let saved = checkpoint.emaShadow {
      missing += parameters.map(\.name).filter { saved[$0] == nil }.map { TrainingCheckpoint.emaPrefix + $0 }
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
    guard missing.isEmpty, unknown.isEmpty, wrongShapes.isEmpty else {
      throw CheckpointError.stateDictMismatch(
        path: path, missing: missing, unexpected: unknown.sorted(), wrongShapes: wrongShapes)
    }
    try optimizer.load(state: OptimizerState(step: state.optimizerStep, tensors: moments))
    if let shadow, let decay = options.emaDecay {
      ema = ExponentialMovingAverage(shadow: shadow, decay: decay)
    }
    model.randomSource.generator = state.dropPathGenerator
    iterator.cancel()
    iterator = try TrainingFeed(
      data: data, batchSize: options.batchSize, augmentation: Self.augmentation(options, data),
      state: state.batchIterator)
    history = state.history
    globalStep = state.globalStep
    savedPeakBytes = state.peakBytes
  }

  /// The training augmentation: the options' or else the dataset's default (random-resized-crop and flips
  /// for streamed image folders).
  static func augmentation(_ options: TrainingOptions, _ data: TrainingData) -> Augmentation {
    options.augmentation ?? data.defaultAugmentation
  }

  /// Test evaluation of the current weights on this process's data (the non-distributed case).
  func evaluateTestData() throws -> EvaluationResult {
    try Evaluator.evaluate(model, on: data.test, batchSize: options.evaluationBatchSize, loader: data.loader)
  }

  /// The in-memory splits, which data-parallel training needs.
  func inMemorySplits() throws -> DatasetSplits {
    guard let splits = data.inMemory else {
      throw TrainingError.invalidOption(
        "data-parallel training needs the dataset in memory; \(data.train.name) is streamed from disk")
    }
    return splits
  }

  /// The checkpoint of the current state (weights, optimizer, EMA, generators, schedule position, history).
  public func checkpoint(peakBytes: Int = 0) -> TrainingCheckpoint {
    let layouts = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.parameter.torchLayout) })
    var moments: [String: Tensor] = [:]
    let stateTensors = optimizer.stateTensors
    for (key, index) in optimizer.stateKeys(afterSteps: optimizer.step) {
      moments[key] = parameters[index].parameter.torchLayout.toTorch(stateTensors[key]!)
    }
    let shadow = ema.map { ema in
      Dictionary(uniqueKeysWithValues: ema.shadow.map { ($0.key, layouts[$0.key]!.toTorch($0.value)) })
    }
    let state = TrainingState(
      model: model.config.name, dataset: dataset, trainCount: data.train.count, options: options,
      epoch: completedEpochs, globalStep: globalStep, schedule: schedule, optimizerStep: optimizer.step,
      batchIterator: iterator.state, dropPathGenerator: model.randomSource.generator, history: history,
      peakBytes: Swift.max(peakBytes, savedPeakBytes), threads: Parallel.threadCount)
    let weights = WeightsCheckpoint(
      model: model, dataset: dataset, normalization: data.train.normalization, classNames: data.train.classNames,
      epoch: completedEpochs, globalStep: globalStep, dataOptions: data.options)
    return TrainingCheckpoint(weights: weights, state: state, optimizerMoments: moments, emaShadow: shadow)
  }

  /// Runs the remaining epochs (or up to `stopAfterEpoch`, to simulate an interruption).
  ///
  /// With an `outputDirectory`, it is opened as a ``RunDirectory`` (created, locked, probed) before the
  /// first step, and every completed epoch saves a crash-safe checkpoint pair; a failing epoch writes
  /// nothing. The directory must be empty or hold this run's own earlier checkpoint, unless `overwrite`
  /// (then another run's files stay until this run's first checkpoint is complete).
  @discardableResult
  public func run(
    outputDirectory: URL?, overwrite: Bool = false, stopAfterEpoch: Int? = nil,
    progress: (TrainingEvent) -> Void = { _ in }
  ) throws -> TrainingSummary {
    let directory = try outputDirectory.map { try RunDirectory(url: $0) }
    defer { directory?.unlock() }
    return try run(in: directory, overwrite: overwrite, stopAfterEpoch: stopAfterEpoch, progress: progress)
  }

  /// Runs the remaining epochs into an opened (locked) run directory; see ``run(outputDirectory:overwrite:stopAfterEpoch:progress:)``.
  @discardableResult
  public func run(
    in directory: RunDirectory?, overwrite: Bool = false, stopAfterEpoch: Int? = nil,
    progress: (TrainingEvent) -> Void = { _ in }
  ) throws -> TrainingSummary {
    guard let dataParallel else {
      return try runEpochs(in: directory, overwrite: overwrite, stopAfterEpoch: stopAfterEpoch, progress: progress)
    }
    do {
      guard directory == nil || dataParallel.communicator.rank == 0 else {
        throw TrainingError.invalidOption("only rank 0 of a data-parallel run writes a run directory")
      }
      return try runEpochs(in: directory, overwrite: overwrite, stopAfterEpoch: stopAfterEpoch, progress: progress)
    } catch {
      // One failing rank ends all of them, so none waits forever in a collective.
      dataParallel.communicator.abort(message: "\(error)")
      throw error
    }
  }

  func runEpochs(
    in directory: RunDirectory?, overwrite: Bool, stopAfterEpoch: Int?, progress: (TrainingEvent) -> Void
  ) throws -> TrainingSummary {
    let lastEpoch = Swift.min(options.epochs, stopAfterEpoch ?? options.epochs)
    let firstEpoch = completedEpochs
    let claim = try directory?.claim(history: history, overwrite: overwrite)
    // The newest checkpoint of *this* run on disk (for the divergence message).
    var savedEpoch: Int?
    if case .continuing(let epoch)? = claim { savedEpoch = epoch }
    let outputDirectory = directory?.url
    // Background decoding stops however the run ends (an error mid-epoch, or stopAfterEpoch).
    defer { iterator.cancel() }
    var metricsWriter: JSONLinesWriter?
    defer { try? metricsWriter?.close() }
    ComputeContext.current.memory.resetPeak()
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
      while let batch = try iterator.next() {
        let loss = try step(batch)
        guard loss.isFinite else {
          throw TrainingError.diverged(
            epoch: epoch + 1, step: globalStep, loss: loss, cause: divergenceCause(batch),
            checkpoint: checkpointStatus(directory, savedEpoch: savedEpoch, claim: claim))
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
              etaSeconds: runElapsed / Double(batchesThisRun) * Double(totalBatchesThisRun - batchesThisRun),
              batchLoss: Double(loss))))
      }
      let trainSeconds = Date().timeIntervalSince(epochStart)
      progress(.evaluating(epoch: epoch + 1))
      let evaluation = try evaluateTestSplit()
      try checkRanksInSync()
      let metrics = EpochMetrics(
        epoch: epoch + 1, trainLoss: lossSum / Double(Swift.max(samples, 1)), testAccuracy: evaluation.accuracy,
        seconds: Date().timeIntervalSince(epochStart), imagesPerSecond: Double(samples) / Swift.max(trainSeconds, 1e-9))
      history.append(metrics)
      if let directory, let outputDirectory {
        try directory.save(checkpoint(peakBytes: ComputeContext.current.memory.peakBytes))
        if savedEpoch == nil, case .replacing? = claim {
          // The replaced run's summary would describe the other run; its metrics and curves are rewritten below.
          let summaryURL = outputDirectory.appendingPathComponent(RunFiles.summary)
          if FileManager.default.fileExists(atPath: summaryURL.path) { try directory.fileSystem.removeFile(summaryURL) }
        }
        savedEpoch = epoch + 1
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

    let summary = makeSummary(peakBytes: Swift.max(ComputeContext.current.memory.peakBytes, savedPeakBytes))
    if let outputDirectory {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
      try AtomicFile.write(try encoder.encode(summary), to: outputDirectory.appendingPathComponent(RunFiles.summary))
    }
    return summary
  }

  /// Trains on `batch`, the micro-batch the iterator has just yielded (its position in the
  /// epoch comes from the iterator); returns the batch's loss.
  func step(_ batch: Batch) throws -> Float {
    try step(batch, microBatchIndex: iterator.state.position / options.batchSize - 1)
  }

  /// Forward and backward on micro-batch `microBatchIndex` (0-based, within the epoch) with the
  /// loss scaled by 1 / (micro-batches of its optimizer step); the step's last micro-batch then
  /// runs the hooks, clipping, the update and the EMA. Returns the unscaled loss; a non-finite
  /// loss returns before the backward pass.
  func step(_ batch: Batch, microBatchIndex: Int) throws -> Float {
    let accumulate = options.accumulateSteps
    let firstOfStep = microBatchIndex / accumulate * accumulate
    let microBatches = Swift.min(accumulate, iterator.batchesPerEpoch - firstOfStep)
    // Data-parallel: this rank's slice, weighted by its share of the global batch (1 otherwise).
    let (local, share, window) = localShard(of: batch)
    model.randomSource.sampleWindow = window
    defer { model.randomSource.sampleWindow = nil }
    let logits = model(Variable(local.images))
    let loss = logits.softmaxCrossEntropy(labels: local.labels, labelSmoothing: options.labelSmoothing)
    // Every rank sees the global loss, so all of them stop together when it is not finite.
    let value = try globalMeanLoss(loss.value.scalar, count: local.count, total: batch.count)
    guard value.isFinite else { return value }
    if microBatchIndex == firstOfStep { model.zeroGradients() }
    // Gradients add up across micro-batches (and ranks); the seed makes them those of the step's mean loss.
    try loss.backward(Tensor(shape: loss.shape, repeating: share / Float(microBatches)))
    guard microBatchIndex == firstOfStep + microBatches - 1 else { return value }
    try applyOptimizerStep()
    return value
  }

  /// Hooks, clipping, update and EMA on the summed gradients, then clears them.
  func applyOptimizerStep() throws {
    if !gradientHooks.isEmpty {
      for hook in gradientHooks { try hook.processGradients(of: parameters, step: globalStep) }
      for (name, parameter) in parameters {
        if let gradient = parameter.variable.grad, gradient.shape != parameter.variable.shape {
          throw TrainingError.invalidGradient(parameter: name, expected: parameter.variable.shape, found: gradient.shape)
        }
      }
    }
    clipping?.processGradients(of: parameters, step: globalStep)
    optimizer.learningRate = schedule.learningRate(at: globalStep)
    optimizer.update()
    ema?.update(from: parameters)
    model.zeroGradients()
    globalStep += 1
  }

  /// Why the loss of a step on `batch` became non-finite, as a sentence with what to do.
  func divergenceCause(_ batch: Batch) -> String {
    // A Double sum of squared Floats cannot overflow, so it is non-finite exactly when an input is.
    let finiteInputs = batch.images.squaredSum().isFinite
    let largest = finiteInputs ? batch.images.maxAbs() : .infinity
    let normalization = data.train.normalization
    if !finiteInputs { return "The input images contain NaN or infinite values; the data, not the recipe, is the cause." }
    if largest > Self.largestPlausibleInput {
      return "The normalized inputs reach |x| = \(largest): the dataset's normalization (x/\(normalization.maxValue) − "
        + "\(normalization.mean)) / \(normalization.std) divides by a standard deviation near 0 (the training pixels "
        + "hardly vary), so the gradients overflow; the learning rate is not the cause."
    }
    let weightsFinite = parameters.allSatisfy { entry in
      entry.parameter.variable.value.scalars.allSatisfy(\.isFinite)
    }
    let rate = schedule.learningRate(at: globalStep)
    return (weightsFinite ? "" : "The weights hold NaN or infinite values. ")
      + "The learning rate at this step was \(rate); try a lower --lr or gradient clipping (--clip-grad)."
  }

  /// Inputs normalized to zero mean and unit variance stay far below this; larger ones mean a degenerate normalization.
  static let largestPlausibleInput: Float = 1e3

  /// What is left to resume from after a divergence, as a sentence.
  func checkpointStatus(_ directory: RunDirectory?, savedEpoch: Int?, claim: RunDirectory.Claim?) -> String {
    guard let directory else { return "Nothing was saved (no output directory)." }
    let path = directory.url.path
    guard let savedEpoch else {
      var text = "No checkpoint of this run was written yet (it diverged before its first epoch ended)."
      if case .replacing? = claim { text += " \(path) still holds the files of the run it was to replace, untouched." }
      return text
    }
    return "The checkpoint of epoch \(savedEpoch) in \(path) is intact: `quadranet train --resume \(path)` continues "
      + "from it (with the same recipe and thread count it repeats these steps exactly); to change the recipe, start "
      + "over with --overwrite."
  }

  /// Test-split evaluation of the weights that matter: the EMA average when EMA is on.
  public func evaluateTestSplit() throws -> EvaluationResult {
    guard let ema else { return try evaluateCurrentWeights() }
    let saved = parameters.map { $0.parameter.variable.value }
    for (name, parameter) in parameters { parameter.variable.update(ema.shadow[name]!) }
    defer { for (index, entry) in parameters.enumerated() { entry.parameter.variable.update(saved[index]) } }
    return try evaluateCurrentWeights()
  }

  func makeSummary(peakBytes: Int) -> TrainingSummary {
    let resolution = data.train.sampleShape[0]
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
