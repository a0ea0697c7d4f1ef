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
  /// Digits (1437 training images of 8×8): short and fast. Fashion-MNIST and other 28×28 IDX data:
  /// at most 10 epochs, sized to finish in minutes on two cores.
  public static func defaultOptions(for dataset: DatasetName) -> TrainingOptions {
    switch dataset {
    case .digits:
      return TrainingOptions(
        epochs: 30, batchSize: 32, learningRate: 3e-3, minimumLearningRate: 1e-5, warmupEpochs: 2,
        weightDecay: 0.05, labelSmoothing: 0.1)
    case .fashionMNIST, .idxDirectory:
      return TrainingOptions(
        epochs: 10, batchSize: 128, learningRate: 3e-3, minimumLearningRate: 1e-5, warmupEpochs: 1,
        weightDecay: 0.05, labelSmoothing: 0.1)
    }
  }
}
