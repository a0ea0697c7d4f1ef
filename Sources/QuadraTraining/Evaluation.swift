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

public enum Evaluator {
  /// Evaluates `model` in inference mode (no drop path, nothing recorded for gradients) on all of
  /// `dataset`, in order, without augmentation. The model's training mode is restored afterwards.
  public static func evaluate(_ model: VisionModel, on dataset: Dataset, batchSize: Int = 250) -> EvaluationResult {
    opPrecondition(batchSize > 0, "Evaluator.evaluate: batch size must be positive, got \(batchSize)")
    let wasTraining = model.isTraining
    model.setTraining(false)
    defer { model.setTraining(wasTraining) }
    var iterator = BatchIterator(dataset: dataset, batchSize: batchSize, shuffle: false, seed: 0)
    var correct = 0
    var lossSum = 0.0
    GradientMode.withoutRecording {
      while let batch = iterator.next() {
        let logits = model(Variable(batch.images)).value
        let predictions = logits.argmaxAlongLastAxis()
        correct += zip(predictions, batch.labels).filter { $0 == $1 }.count
        lossSum += Double(logits.softmaxCrossEntropy(labels: batch.labels).loss) * Double(batch.count)
      }
    }
    return EvaluationResult(correct: correct, count: dataset.count, loss: dataset.count == 0 ? 0 : lossSum / Double(dataset.count))
  }

  /// Throws when `config` cannot run on `dataset`'s images or labels (channels, classes, image size).
  public static func checkCompatibility(_ config: ModelConfig, with dataset: Dataset) throws {
    let shape = dataset.imageShape
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
