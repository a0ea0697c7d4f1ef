import Foundation
import QuadraData
import QuadraModels

/// Top-1 accuracy and mean cross-entropy of a model on a dataset.
public struct EvaluationResult: Codable, Equatable, Sendable {
  public var correct: Int
  public var count: Int
  /// Mean cross-entropy (no label smoothing).
  public var loss: Double

  /// `correct / count`, in [0, 1].
  public var accuracy: Double { count == 0 ? 0 : Double(correct) / Double(count) }
}

/// Why an evaluation has no meaningful result.
public enum EvaluationError: Error, CustomStringConvertible, LocalizedError {
  case invalidBatchSize(Int)
  /// Weights with NaN or infinite values (e.g. saved from a diverged run): tensor names and counts.
  case nonFiniteWeights(path: String, tensors: [(name: String, count: Int)])
  /// The mean loss is NaN or infinite although the weights are finite (activations overflowed).
  case nonFiniteLoss(path: String, dataset: String, loss: Double)

  public var description: String {
    switch self {
    case .invalidBatchSize(let size):
      return "evaluation batch size must be at least 1, got \(size)"
    case .nonFiniteWeights(let path, let tensors):
      let shown = tensors.prefix(CheckpointError.listedNames).map { "\($0.name) (\($0.count))" }.joined(separator: ", ")
      let more = tensors.count > CheckpointError.listedNames ? ", … (\(tensors.count) tensors in all)" : ""
      return "\(path): the weights contain NaN or infinite values, so the model cannot be evaluated "
        + "(saved from a diverged run?): \(shown)\(more)"
    case .nonFiniteLoss(let path, let dataset, let loss):
      return "\(path): the loss on \(dataset) is \(loss) although the weights are finite (the activations "
        + "overflow); the accuracy would be meaningless"
    }
  }

  public var errorDescription: String? { description }
}

public enum Evaluator {
  /// Evaluates `model` in inference mode (no drop path, nothing recorded for gradients) on every sample of
  /// `dataset`, in order, without augmentation: an in-memory ``Dataset`` directly, any other through a
  /// ``StreamingBatchLoader`` with `loader`'s workers. The model's training mode is restored afterwards.
  public static func evaluate(
    _ model: VisionModel, on dataset: any RandomAccessDataset, batchSize: Int = 250,
    loader: LoaderOptions = LoaderOptions()
  ) throws -> EvaluationResult {
    let wasTraining = model.isTraining
    model.setTraining(false)
    defer { model.setTraining(wasTraining) }
    return try GradientMode.withoutRecording {
      try evaluate(on: dataset, batchSize: batchSize, loader: loader) { model(Variable($0)).value }
    }
  }

  /// Accuracy and mean cross-entropy of the logits `logits(images)` returns for each batch of `dataset`,
  /// in order, without augmentation (for forward passes other than the tape's, e.g. the inference engine).
  /// An in-memory ``Dataset`` is batched directly, any other streamed with `loader`'s workers.
  public static func evaluate(
    on dataset: any RandomAccessDataset, batchSize: Int = 250, loader: LoaderOptions = LoaderOptions(),
    logits: (Tensor) throws -> Tensor
  ) throws -> EvaluationResult {
    guard batchSize > 0 else { throw EvaluationError.invalidBatchSize(batchSize) }
    var correct = 0
    var lossSum = 0.0
    func score(_ batch: Batch) throws {
      let values = try logits(batch.images)
      correct += zip(values.argmaxAlongLastAxis(), batch.labels).filter { $0 == $1 }.count
      lossSum += Double(values.softmaxCrossEntropy(labels: batch.labels).loss) * Double(batch.count)
    }
    if let inMemory = dataset as? Dataset {
      var iterator = BatchIterator(dataset: inMemory, batchSize: batchSize, shuffle: false, seed: 0)
      while let batch = iterator.next() { try score(batch) }
    } else {
      let batches = try StreamingBatchLoader(
        dataset: dataset, batchSize: batchSize, shuffle: false, loader: loader, seed: 0)
      defer { batches.cancel() }
      while let batch = try batches.next() { try score(batch) }
    }
    return EvaluationResult(correct: correct, count: dataset.count, loss: dataset.count == 0 ? 0 : lossSum / Double(dataset.count))
  }

  /// Throws when `weights` hold NaN or infinite values, naming the tensors.
  public static func checkFinite(_ weights: WeightsCheckpoint) throws {
    var bad: [(name: String, count: Int)] = []
    for name in weights.tensors.keys.sorted() {
      let count = weights.tensors[name]!.scalars.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
      if count > 0 { bad.append((name, count)) }
    }
    guard bad.isEmpty else { throw EvaluationError.nonFiniteWeights(path: weights.path, tensors: bad) }
  }

  /// Pixel standard deviations (after scaling to [0, 1]) at or below this mean the images are constant:
  /// the dataset's normalization clamps a zero deviation to it, and dividing by it turns any padding or
  /// rounding difference into inputs of order 10⁴ that overflow the gradients at the first step.
  public static let smallestUsableStandardDeviation: Float = 1e-6

  /// Throws when `config` cannot run on `dataset`'s images or labels (channels, classes, image size),
  /// or when the images carry no signal (pixel variance 0, which makes the input normalization divide by 0).
  public static func checkCompatibility(_ config: ModelConfig, with dataset: some RandomAccessDataset) throws {
    let std = dataset.normalization.std
    guard std > smallestUsableStandardDeviation else {
      throw TrainingError.incompatibleData(
        "\(dataset.name): every training pixel has the same value (pixel variance 0), so the input normalization "
          + "(x/\(dataset.normalization.maxValue) − \(dataset.normalization.mean)) / std has std = 0 (clamped to \(std)) "
          + "and would scale any difference by 1/\(std); there is nothing to learn from constant images")
    }
    let shape = dataset.sampleShape
    guard shape[2] == config.inputChannels else {
      throw TrainingError.incompatibleData(
        "model \(config.name) takes \(config.inputChannels)-channel images, \(dataset.name) has \(shape[2]) channel(s)")
    }
    guard config.classCount == dataset.classCount else {
      throw TrainingError.incompatibleData(
        "model \(config.name) predicts \(config.classCount) classes, \(dataset.name) has \(dataset.classCount)")
    }
    let minimum = config.stemPatchSize << (config.depths.count - 1)
    guard shape[0] >= minimum, shape[1] >= minimum else {
      throw TrainingError.incompatibleData(
        "model \(config.name) needs images of at least \(minimum)×\(minimum) (stem \(config.stemPatchSize), "
          + "\(config.depths.count - 1) downsamplings); \(dataset.name) images are \(shape[0])×\(shape[1])")
    }
  }
}
