import Foundation
import QuadraData
import QuadraIO
import QuadraModels

/// The recipe of a training run: optimizer, schedule, regularization and seed.
public struct TrainingOptions: Codable, Equatable, Sendable {
  public var epochs: Int
  public var batchSize: Int
  /// Peak learning rate of the cosine schedule, reached after the warm-up.
  public var learningRate: Float
  /// Learning rate at the end of the cosine decay.
  public var minimumLearningRate: Float
  /// Linear warm-up length in epochs (converted to steps; fractions allowed).
  public var warmupEpochs: Double
  /// Weight decay λ (convolution and linear weights only): decoupled for AdamW, an L2 term added
  /// to the gradient for SGD.
  public var weightDecay: Float
  /// Label smoothing ε of the cross-entropy.
  public var labelSmoothing: Float
  /// Decay of an exponential moving average of the weights; the average is what gets evaluated.
  public var emaDecay: Float?
  /// Maximum global gradient norm (`clip_grad_norm_`), nil for no clipping.
  public var clipGradientNorm: Float?
  /// Seeds the weights, drop-path masks, shuffling and augmentation.
  public var seed: UInt64
  /// Batch size of the per-epoch test evaluation (does not affect training).
  public var evaluationBatchSize: Int
  /// Training augmentation; nil uses the dataset's default (`Dataset.defaultAugmentation`).
  public var augmentation: Augmentation?
  /// The optimizer (`--optimizer`); checkpoints saved before it existed read as AdamW.
  public var optimizer: OptimizerKind
  /// SGD momentum μ in [0, 1) (`--momentum`); 0 for AdamW.
  public var momentum: Float
  /// Nesterov momentum (`--nesterov`; SGD with μ > 0 only).
  public var nesterov: Bool
  /// Micro-batches of `batchSize` whose gradients are summed into one optimizer step, in
  /// ``accumulateStepsRange`` (`--accumulate-steps`); see ``Trainer``.
  public var accumulateSteps: Int

  public init(
    epochs: Int = 10, batchSize: Int = 64, learningRate: Float = 2e-3, minimumLearningRate: Float = 1e-5,
    warmupEpochs: Double = 1, weightDecay: Float = 0.05, labelSmoothing: Float = 0.1, emaDecay: Float? = nil,
    clipGradientNorm: Float? = nil, seed: UInt64 = 0, evaluationBatchSize: Int = 250, augmentation: Augmentation? = nil,
    optimizer: OptimizerKind = .adamW, momentum: Float = 0, nesterov: Bool = false, accumulateSteps: Int = 1
  ) {
    self.epochs = epochs
    self.batchSize = batchSize
    self.learningRate = learningRate
    self.minimumLearningRate = minimumLearningRate
    self.warmupEpochs = warmupEpochs
    self.weightDecay = weightDecay
    self.labelSmoothing = labelSmoothing
    self.emaDecay = emaDecay
    self.clipGradientNorm = clipGradientNorm
    self.seed = seed
    self.evaluationBatchSize = evaluationBatchSize
    self.augmentation = augmentation
    self.optimizer = optimizer
    self.momentum = momentum
    self.nesterov = nesterov
    self.accumulateSteps = accumulateSteps
  }

  /// The allowed range of every option; the CLI flags (`--epochs`, `--batch-size`, …) use the same ones.
  public enum Limits {
    /// `--epochs`.
    public static let epochs = 1...10_000
    /// `--batch-size` (training) and the evaluation batch size (`eval --batch-size`).
    public static let batchSize = 1...65_536
    /// `--lr`: finite, in (0, 10]. (Options built in code, and saved states, only need a finite positive
    /// rate: a huge one diverges, which training reports as an error, as tests of that path rely on.)
    public static let learningRate: ClosedRange<Float> = Float.leastNormalMagnitude...10
    /// `--crop-padding`, in pixels.
    public static let cropPadding = 0...64
    /// `--clip-grad`: finite, in (0, 1e6].
    public static let clipGradientNorm: ClosedRange<Float> = Float.leastNormalMagnitude...1e6
  }

  /// Checks every value is finite and in its range (``Limits``); the error names the option and the range.
  ///
  /// Ranges: epochs 1…10 000; batch size and evaluation batch size 1…65 536; learning rate finite
  /// and positive (the CLI's `--lr` allows (0, 10]); minimum learning rate in [0, learning rate]; warm-up epochs in [0, epochs]; weight
  /// decay and label smoothing in [0, 1); EMA decay in (0, 1); gradient clipping norm in (0, 1e6];
  /// crop padding 0…64.
  public func validate() throws {
    func fail(_ message: String) -> TrainingError { .invalidOption(message) }
    func range(_ r: ClosedRange<Int>) -> String { "\(r.lowerBound)...\(r.upperBound)" }
    guard Limits.epochs.contains(epochs) else { throw fail("epochs must be in \(range(Limits.epochs)), got \(epochs)") }
    guard Limits.batchSize.contains(batchSize) else {
      throw fail("batch size must be in \(range(Limits.batchSize)), got \(batchSize)")
    }
    guard Limits.batchSize.contains(evaluationBatchSize) else {
      throw fail("evaluation batch size must be in \(range(Limits.batchSize)), got \(evaluationBatchSize)")
    }
    guard learningRate.isFinite, learningRate > 0 else {
      throw fail("learning rate must be finite and positive, got \(learningRate)")
    }
    guard minimumLearningRate.isFinite, minimumLearningRate >= 0, minimumLearningRate <= learningRate else {
      throw fail("minimum learning rate must be in [0, \(learningRate)], got \(minimumLearningRate)")
    }
    guard warmupEpochs.isFinite, warmupEpochs >= 0, warmupEpochs <= Double(epochs) else {
      throw fail("warm-up epochs must be in [0, \(epochs)], got \(warmupEpochs)")
    }
    guard weightDecay.isFinite, weightDecay >= 0, weightDecay < 1 else {
      throw fail("weight decay must be in [0, 1), got \(weightDecay)")
    }
    guard labelSmoothing.isFinite, labelSmoothing >= 0, labelSmoothing < 1 else {
      throw fail("label smoothing must be in [0, 1), got \(labelSmoothing)")
    }
    if let emaDecay, !(emaDecay > 0 && emaDecay < 1) { throw fail("EMA decay must be in (0, 1), got \(emaDecay)") }
    if let clipGradientNorm, !(clipGradientNorm.isFinite && Limits.clipGradientNorm.contains(clipGradientNorm)) {
      throw fail("gradient clipping norm must be in (0, 1e6], got \(clipGradientNorm)")
    }
    if let augmentation, !Limits.cropPadding.contains(augmentation.padding) {
      throw fail("crop padding must be in \(range(Limits.cropPadding)), got \(augmentation.padding)")
    }
    try validateOptimizer()
  }

  /// Human-readable differences (for a resume whose flags contradict the checkpoint).
  public func differences(from other: TrainingOptions) -> [String] {
    var result: [String] = []
    func compare<T: Equatable>(_ label: String, _ a: T, _ b: T) {
      if a != b { result.append("\(label): saved \(a), requested \(b)") }
    }
    compare("epochs", epochs, other.epochs)
    compare("batch size", batchSize, other.batchSize)
    compare("learning rate", learningRate, other.learningRate)
    compare("minimum learning rate", minimumLearningRate, other.minimumLearningRate)
    compare("warm-up epochs", warmupEpochs, other.warmupEpochs)
    compare("weight decay", weightDecay, other.weightDecay)
    compare("label smoothing", labelSmoothing, other.labelSmoothing)
    compare("EMA decay", emaDecay.map { "\($0)" } ?? "none", other.emaDecay.map { "\($0)" } ?? "none")
    compare("gradient clipping", clipGradientNorm.map { "\($0)" } ?? "none", other.clipGradientNorm.map { "\($0)" } ?? "none")
    compare("seed", seed, other.seed)
    compare("evaluation batch size", evaluationBatchSize, other.evaluationBatchSize)
    func describe(_ a: Augmentation?) -> String {
      a.map {
        $0.randomResizedCrop.map { "random-resized-crop \($0.scale), ratio \($0.ratio)" } ?? "crop padding \($0.padding)"
      }.map { text in "\(text), flip \(a!.horizontalFlip)" } ?? "dataset default"
    }
    compare("augmentation", describe(augmentation), describe(other.augmentation))
    result += optimizerDifferences(from: other)
    return result
  }
}

/// Why training could not start or continue.
public enum TrainingError: Error, CustomStringConvertible, LocalizedError {
  case invalidOption(String)
  /// The model does not fit the data (channels, classes or image size).
  case incompatibleData(String)
  /// The loss became NaN or infinite at 0-based optimizer `step`; nothing of the failed epoch is written.
  /// `cause` is the diagnosis, `checkpoint` what is left to resume from (both sentences).
  case diverged(epoch: Int, step: Int, loss: Float, cause: String, checkpoint: String)
  /// A gradient hook left a gradient whose shape is not its parameter's.
  case invalidGradient(parameter: String, expected: [Int], found: [Int])

  public var description: String {
    switch self {
    case .invalidOption(let message): return "invalid option: \(message)"
    case .incompatibleData(let message): return message
    case .diverged(let epoch, let step, let loss, let cause, let checkpoint):
      return "training diverged: loss \(loss) at epoch \(epoch), step \(step). \(cause) \(checkpoint)"
    case .invalidGradient(let parameter, let expected, let found):
      return "a gradient hook left the gradient of \(parameter) with shape \(found), the parameter has shape \(expected)"
    }
  }

  public var errorDescription: String? { description }
}

/// One line of `metrics.jsonl`.
public struct EpochMetrics: Codable, Equatable, Sendable {
  /// 1-based epoch number.
  public var epoch: Int
  /// Mean training loss over the epoch's samples (with label smoothing and drop path, as optimized).
  public var trainLoss: Double
  /// Top-1 accuracy on the test split, in [0, 1] (of the EMA weights when EMA is on).
  public var testAccuracy: Double
  /// Wall time of the epoch, training and evaluation.
  public var seconds: Double
  /// Training throughput: samples of the epoch / training time (evaluation excluded).
  public var imagesPerSecond: Double

  public init(epoch: Int, trainLoss: Double, testAccuracy: Double, seconds: Double, imagesPerSecond: Double) {
    self.epoch = epoch
    self.trainLoss = trainLoss
    self.testAccuracy = testAccuracy
    self.seconds = seconds
    self.imagesPerSecond = imagesPerSecond
  }

  enum CodingKeys: String, CodingKey {
    case epoch
    case trainLoss = "train_loss"
    case testAccuracy = "test_accuracy"
    case seconds
    case imagesPerSecond = "images_per_second"
  }
}

/// `summary.json`: the result of a run.
public struct TrainingSummary: Codable, Equatable, Sendable {
  public var model: String
  public var dataset: String
  /// Completed epochs.
  public var epochs: Int
  /// Test accuracy after the last epoch, in [0, 1].
  public var testAccuracy: Double
  /// Wall time of all epochs (training and evaluation), resumed parts included.
  public var trainSeconds: Double
  public var params: Int
  /// Multiply-accumulates of one forward pass at the dataset's resolution.
  public var macs: Int
  /// Peak bytes held by live tensors while training (the dataset's tensors included).
  public var peakBytes: Int
  /// Mean of the epochs' training throughput.
  public var imagesPerSecond: Double
  /// Kernel threads the run used (results are bit-reproducible for a given seed and thread count).
  public var threads: Int

  enum CodingKeys: String, CodingKey {
    case model, dataset, epochs, params, macs, threads
    case testAccuracy = "test_accuracy"
    case trainSeconds = "train_seconds"
    case peakBytes = "peak_bytes"
    case imagesPerSecond = "images_per_second"
  }
}

/// Everything besides weights and tensors that an exact resume needs, stored as JSON in the
/// training-state file's metadata.
public struct TrainingState: Codable, Sendable {
  public var model: String
  /// The dataset as `DatasetName.description`.
  public var dataset: String
  /// Training samples (a resume on different data is refused).
  public var trainCount: Int
  public var options: TrainingOptions
  /// Completed epochs.
  public var epoch: Int
  /// Optimizer steps taken; the schedule position.
  public var globalStep: Int
  public var schedule: CosineSchedule
  /// The optimizer's step count (AdamW's bias-correction t); equals `globalStep`.
  public var optimizerStep: Int
  /// Shuffle and augmentation generators and the position in the epoch.
  public var batchIterator: BatchIterator.State
  /// The model's drop-path generator.
  public var dropPathGenerator: RandomGenerator
  /// Metrics of the completed epochs, so a resumed run continues the files and the plot.
  public var history: [EpochMetrics]
  /// Largest peak of live bytes over the saved run's parts.
  public var peakBytes: Int
  /// Threads the run used so far (bitwise reproduction needs the same count).
  public var threads: Int

  /// Decodes the JSON saved under the `training_state` metadata key strictly (no duplicate keys, at most
  /// 16 MiB and 32 levels deep) and checks it with ``validate()``; errors are ``QuadraIO/JSONInputError``s
  /// naming the JSON path.
  public static func decode(json: String) throws -> TrainingState {
    let state = try StrictJSON.decode(TrainingState.self, from: Data(json.utf8))
    try state.validate()
    return state
  }

  /// The largest training set a saved state may describe.
  public static let trainCountRange = 1...100_000_000
  /// The thread counts a saved state may record (the range of `--threads`).
  public static let threadRange = 1...1024

  /// Checks every number is in range and consistent with the others, so a damaged or hand-edited
  /// state is an error here rather than a trap (or an endless loop) when training resumes.
  ///
  /// The options pass ``TrainingOptions/validate()`` (the CLI's ranges); trainCount is in 1…10⁸ and at
  /// least the batch size; `0 ≤ epoch ≤ options.epochs`; the batch position is a multiple of the batch
  /// size within the epoch's full batches; `0 ≤ globalStep, optimizerStep ≤` the batches consumed
  /// (`epoch × ⌊trainCount / batchSize⌋ + position / batchSize`); the schedule is finite with
  /// `0 ≤ warmupSteps ≤ totalSteps ≤ epochs × batches`; every generator state has 4 words, not all zero;
  /// the history has one entry per completed epoch, numbered 1…epoch, with finite values;
  /// peakBytes ≥ 0; threads 1…1024. The error names the field (JSON path) and the allowed range.
  public func validate() throws {
    func fail(_ field: String, _ message: String) -> JSONInputError { JSONInputError(path: field, message: message) }
    func check(_ value: Int, _ range: ClosedRange<Int>, _ field: String) throws {
      guard range.contains(value) else {
        throw fail(field, "\(value) is outside the allowed range \(range.lowerBound)...\(range.upperBound)")
      }
    }
    guard (1...ModelConfig.Limits.nameLength.upperBound).contains(model.count) else {
      throw fail("model", "must have 1...\(ModelConfig.Limits.nameLength.upperBound) characters")
    }
    guard (1...4096).contains(dataset.utf8.count) else { throw fail("dataset", "must have 1...4096 bytes") }
    do {
      try options.validate()
    } catch let error as TrainingError {
      throw fail("options", "\(error)")
    }
    try check(trainCount, Self.trainCountRange, "trainCount")
    try check(trainCount, options.batchSize...Self.trainCountRange.upperBound, "trainCount")
    try check(epoch, 0...options.epochs, "epoch")
    // The trainer drops the last partial batch, so an epoch is ⌊trainCount / batchSize⌋ batches.
    let batchesPerEpoch = trainCount / options.batchSize
    let position = batchIterator.position
    try check(position, 0...(batchesPerEpoch * options.batchSize), "batchIterator.position")
    guard position % options.batchSize == 0 else {
      throw fail("batchIterator.position", "\(position) is not a multiple of the batch size \(options.batchSize)")
    }
    try check(batchIterator.epoch, epoch...epoch, "batchIterator.epoch")
    // At most 10⁴ epochs × 10⁸ batches: no overflow.
    let batchesConsumed = epoch * batchesPerEpoch + position / options.batchSize
    try check(globalStep, 0...batchesConsumed, "globalStep")
    try check(optimizerStep, 0...batchesConsumed, "optimizerStep")
    let totalBatches = options.epochs * batchesPerEpoch
    guard schedule.peak.isFinite, schedule.minimum.isFinite else {
      throw fail("schedule", "peak \(schedule.peak) and minimum \(schedule.minimum) must be finite")
    }
    try check(schedule.totalSteps, 1...Swift.max(totalBatches, 1), "schedule.totalSteps")
    try check(schedule.warmupSteps, 0...schedule.totalSteps, "schedule.warmupSteps")
    for (field, generator) in [
      ("batchIterator.shuffleGenerator", batchIterator.shuffleGenerator),
      ("batchIterator.augmentationGenerator", batchIterator.augmentationGenerator),
      ("dropPathGenerator", dropPathGenerator),
    ] {
      guard generator.state.count == 4, generator.state.contains(where: { $0 != 0 }) else {
        throw fail("\(field).state", "must be 4 unsigned 64-bit words, not all zero (found \(generator.state.count) words)")
      }
    }
    guard history.count == epoch else {
      throw fail("history", "has \(history.count) entries; one per completed epoch (\(epoch)) is required")
    }
    for (index, entry) in history.enumerated() {
      let field = "history[\(index)]"
      try check(entry.epoch, (index + 1)...(index + 1), "\(field).epoch")
      guard entry.trainLoss.isFinite, entry.seconds.isFinite, entry.seconds >= 0, entry.imagesPerSecond.isFinite,
        entry.imagesPerSecond >= 0, entry.testAccuracy >= 0, entry.testAccuracy <= 1
      else {
        throw fail(field, "values must be finite, seconds and images per second ≥ 0, test accuracy in [0, 1]")
      }
    }
    try check(peakBytes, 0...Int.max, "peakBytes")
    try check(threads, Self.threadRange, "threads")
  }
}

/// A resumable training checkpoint: the weights file plus the training-state file next to it.
///
/// `training_state.safetensors` holds the optimizer state as `optimizer.<state>.<name>` (AdamW:
/// `exp_avg`, `exp_avg_sq`; SGD with momentum: `momentum_buffer`), the EMA shadow as `ema.<name>` (all in PyTorch layout, like the
/// weights) and ``TrainingState`` as JSON under the metadata key `training_state`. Both files carry
/// the epoch and global step, so a pair from different saves is detected.
public struct TrainingCheckpoint {
  public var weights: WeightsCheckpoint
  public var state: TrainingState
  /// Optimizer state by `<state>.<name>` (`exp_avg.<name>`, `momentum_buffer.<name>`, …), PyTorch layout.
  public var optimizerMoments: [String: Tensor]
  /// EMA shadow by parameter name, PyTorch layout.
  public var emaShadow: [String: Tensor]?

  public static let optimizerPrefix = "optimizer."
  public static let emaPrefix = "ema."
  public static let formatName = "quadranet-training-state-v1"

  public init(
    weights: WeightsCheckpoint, state: TrainingState, optimizerMoments: [String: Tensor], emaShadow: [String: Tensor]?
  ) {
    self.weights = weights
    self.state = state
    self.optimizerMoments = optimizerMoments
    self.emaShadow = emaShadow
  }

  /// Reads the checkpoint pair a run directory (or a weights file in it) resumes from: the newest
  /// complete save in `checkpoints/` (see ``RunDirectory``), or, for directories written before saves
  /// existed, `model.safetensors` (or the weights file given) and `training_state.safetensors` next to it.
  public static func read(from path: URL) throws -> TrainingCheckpoint {
    let weightsURL = RunDirectory.resumeWeightsURL(for: path)
    let stateURL = weightsURL.deletingLastPathComponent().appendingPathComponent(CheckpointFiles.trainingState)
    let weights = try WeightsCheckpoint.read(from: weightsURL)
    guard FileManager.default.fileExists(atPath: stateURL.path) else {
      throw CheckpointError.missingTrainingState(path: weightsURL.path)
    }
    let file = try readSafetensors(stateURL)
    guard let json = file.metadata[CheckpointFiles.Key.trainingState] else {
      throw CheckpointError.invalidMetadata(path: stateURL.path, key: CheckpointFiles.Key.trainingState, reason: "missing")
    }
    let state: TrainingState
    do {
      state = try TrainingState.decode(json: json)
    } catch let error as JSONInputError {
      throw CheckpointError.invalidMetadata(
        path: stateURL.path, key: CheckpointFiles.Key.trainingState, reason: "not a valid training state: \(error)")
    }
    guard weights.epoch == state.epoch, weights.globalStep == state.globalStep else {
      throw CheckpointError.inconsistentFiles(
        weights: weightsURL.path, state: stateURL.path,
        reason: "weights at epoch \(weights.epoch.map(String.init) ?? "?") step \(weights.globalStep.map(String.init) ?? "?"), "
          + "training state at epoch \(state.epoch) step \(state.globalStep) (a crash between the two writes of a "
          + "version before paired checkpoints; this pair cannot be resumed: start over with --overwrite)")
    }
    guard weights.config?.name == state.model else {
      throw CheckpointError.inconsistentFiles(
        weights: weightsURL.path, state: stateURL.path,
        reason: "weights of model '\(weights.config?.name ?? "?")', training state of '\(state.model)'")
    }
    var moments: [String: Tensor] = [:]
    var shadow: [String: Tensor] = [:]
    for (name, tensor) in file.tensors {
      if name.hasPrefix(optimizerPrefix) {
        moments[String(name.dropFirst(optimizerPrefix.count))] = tensor
      } else if name.hasPrefix(emaPrefix) {
        shadow[String(name.dropFirst(emaPrefix.count))] = tensor
      } else {
        throw CheckpointError.invalidMetadata(
          path: stateURL.path, key: name, reason: "unexpected tensor (expected \(optimizerPrefix)… or \(emaPrefix)…)")
      }
    }
    if state.options.emaDecay != nil && shadow.isEmpty {
      throw CheckpointError.invalidMetadata(path: stateURL.path, key: "ema.*", reason: "EMA is on but no shadow weights are saved")
    }
    return TrainingCheckpoint(
      weights: weights, state: state, optimizerMoments: moments, emaShadow: shadow.isEmpty ? nil : shadow)
  }

  /// The pair's files and their bytes: weights, EMA weights (when EMA is on), training state.
  public func encodedFiles() throws -> [(name: String, data: Data)] {
    var tensors: [String: Tensor] = [:]
    for (name, tensor) in optimizerMoments { tensors[Self.optimizerPrefix + name] = tensor }
    for (name, tensor) in emaShadow ?? [:] { tensors[Self.emaPrefix + name] = tensor }
    let metadata = [
      CheckpointFiles.Key.format: Self.formatName,
      CheckpointFiles.Key.trainingState: WeightsCheckpoint.json(state),
      CheckpointFiles.Key.epoch: String(state.epoch),
      CheckpointFiles.Key.globalStep: String(state.globalStep),
    ]
    var files = [(name: CheckpointFiles.weights, data: try Safetensors.encode(weights.tensors, metadata: weights.metadata))]
    if let emaShadow {
      files.append((CheckpointFiles.emaWeights, try Safetensors.encode(emaShadow, metadata: weights.metadata)))
    }
    files.append((CheckpointFiles.trainingState, try Safetensors.encode(tensors, metadata: metadata)))
    return files
  }

  /// Saves the pair into the run directory `directory` (created if needed), crash-safely: see ``RunDirectory``.
  /// Fails if another process holds the directory's lock.
  public func write(to directory: URL) throws {
    try RunDirectory(url: directory).save(self)
  }
}
