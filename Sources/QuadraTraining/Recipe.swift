import QuadraData

/// Default model and recipe per dataset: what `quadranet train` uses when no option overrides them.
public enum TrainingRecipe {
  /// The registered model trained on `dataset` by default.
  public static func defaultModel(for dataset: DatasetName) -> String {
    switch dataset {
    case .digits: return "quadranet-digits"
    case .fashionMNIST, .idxDirectory: return "quadranet-28"
    }
  }

  /// The default recipe for `dataset`.
  ///
  /// Digits (1437 training images of 8×8): 30 short epochs, about a minute on two cores.
  /// Fashion-MNIST and other 28×28 IDX data: 10 epochs without random crops (flips only where the
  /// dataset has them), about 20 minutes for `quadranet-28` on two cores.
  public static func defaultOptions(for dataset: DatasetName) -> TrainingOptions {
    switch dataset {
    case .digits:
      return TrainingOptions(
        epochs: 30, batchSize: 32, learningRate: 3e-3, minimumLearningRate: 1e-5, warmupEpochs: 2,
        weightDecay: 0.05, labelSmoothing: 0.1)
    case .fashionMNIST, .idxDirectory:
      // Tuned on a 20k-image, 4-epoch proxy: batch 64 (more steps) +1.2 points over 128, no random
      // crop +3.2 (flips stay where the dataset has them), lr 4e-3 with a half-epoch warm-up.
      return TrainingOptions(
        epochs: 10, batchSize: 64, learningRate: 4e-3, minimumLearningRate: 1e-5, warmupEpochs: 0.5,
        weightDecay: 0.05, labelSmoothing: 0.1, augmentation: Augmentation(padding: 0, horizontalFlip: dataset == .fashionMNIST))
    }
  }
}
