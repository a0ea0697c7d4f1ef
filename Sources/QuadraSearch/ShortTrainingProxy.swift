import Foundation
import QuadraCore
import QuadraData
import QuadraModels
import QuadraTraining

/// The short-training accuracy proxy: a candidate trained briefly on a fixed subset of the training split,
/// scored by its accuracy on another fixed, disjoint subset of the training split (the test split is never
/// used to select architectures).
///
/// With the defaults (10,000 images, one epoch, 2,000 validation images) one 28² candidate costs seconds,
/// not the minutes of the full recipe: too slow to score the thousands of candidates an evolution sees,
/// which is why ``AccuracyProxy/shortTraining`` is meant for `search proxies` and for short searches
/// (few generations and children), or to re-rank a front found with a zero-cost proxy.
public struct ShortTrainingProxy: Sendable {
  /// The fixed training subset and the fixed validation subset (disjoint, both from the training split).
  public let train: Dataset
  public let validation: Dataset
  /// The recipe of the short run (the dataset's recipe with fewer epochs, warm-up scaled to match).
  public let options: TrainingOptions

  /// - Parameters:
  ///   - training: the dataset's training split; `trainImages + validationImages` must not exceed its size.
  ///   - recipe: the dataset's full recipe; its epochs become `epochs` and its warm-up the same fraction.
  ///   - seed: the draw of the two subsets (``QuadraCore/RandomGenerator/distinctIndices(_:below:)``).
  /// - Throws: ``SearchSpaceError`` naming the bad count.
  public init(
    training: Dataset, recipe: TrainingOptions, trainImages: Int = 10_000, validationImages: Int = 2_000, epochs: Int = 1,
    seed: UInt64 = 0
  ) throws {
    guard trainImages >= 1, validationImages >= 1, trainImages + validationImages <= training.count else {
      throw SearchSpaceError(
        field: "short-training subsets",
        message: "\(trainImages) training + \(validationImages) validation images need 2...\(training.count) (the training split's size)")
    }
    guard (1...100).contains(epochs) else {
      throw SearchSpaceError(field: "short-training epochs", message: "\(epochs) is outside 1...100")
    }
    var generator = RandomGenerator(seed: seed)
    let indices = generator.distinctIndices(trainImages + validationImages, below: training.count)
    train = training.subset(Array(indices[..<trainImages]), name: "short-training train")
    validation = training.subset(Array(indices[trainImages...]), name: "short-training validation")
    var options = recipe
    options.epochs = epochs
    options.warmupEpochs = recipe.warmupEpochs * Double(epochs) / Double(Swift.max(recipe.epochs, 1))
    options.batchSize = Swift.min(options.batchSize, trainImages)
    try options.validate()
    self.options = options
  }

  /// Validation accuracy (0...1) of `config` after the short run, from the recipe's seed (deterministic
  /// for a thread count).
  public func score(_ config: ModelConfig) throws -> Double {
    var config = config
    config.classCount = train.classCount
    let trainer = try Trainer(
      model: try VisionModel(config: config, seed: options.seed),
      splits: DatasetSplits(train: train, validation: nil, test: validation), dataset: "short-training",
      options: options)
    return try trainer.run(outputDirectory: nil).testAccuracy
  }
}
