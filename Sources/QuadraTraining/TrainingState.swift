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

  /// Checks every value is usable; the error names the option.
  public func validate() throws {
    func fail(_ message: String) -> TrainingError { .invalidOption(message) }
    guard epochs >= 1 else { throw fail("epochs must be at least 1, got \(epochs)") }
    guard batchSize >= 1 else { throw fail("batch size must be at least 1, got \(batchSize)") }
    guard evaluationBatchSize >= 1 else { throw fail("evaluation batch size must be at least 1, got \(evaluationBatchSize)") }
    guard learningRate.isFinite, learningRate > 0 else { throw fail("learning rate must be positive, got \(learningRate)") }
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
    if let clipGradientNorm, !(clipGradientNorm.isFinite && clipGradientNorm > 0) {
      throw fail("gradient clipping norm must be positive, got \(clipGradientNorm)")
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
      a.map { "crop padding \($0.padding), flip \($0.horizontalFlip)" } ?? "dataset default"
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
      state = try JSONDecoder().decode(TrainingState.self, from: Data(json.utf8))
    } catch {
      throw CheckpointError.invalidMetadata(
        path: stateURL.path, key: CheckpointFiles.Key.trainingState, reason: "not a valid training state (\(error))")
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
