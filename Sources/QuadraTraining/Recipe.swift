import QuadraData

extension DatasetName {
  /// Whether a mirrored image shows the same class: Fashion-MNIST and photos in folders, not digits or unknown arrays.
  var hasMirrorableImages: Bool {
    switch self {
    case .fashionMNIST, .imageFolder: return true
    case .digits, .idxDirectory, .numPyArchive: return false
    }
  }
}

/// Default model and recipe per dataset: what `quadranet train` uses when no option overrides them.
public enum TrainingRecipe {
  /// The registered model trained on `dataset` by default.
  public static func defaultModel(for dataset: DatasetName) -> String {
    switch dataset {
    case .digits: return "quadranet-digits"
    case .fashionMNIST, .idxDirectory, .imageFolder, .numPyArchive: return "quadranet-28"
    }
  }

  /// The default recipe for `dataset`.
  ///
  /// Digits (1437 training images of 8×8): 30 short epochs, about a minute on two cores.
  /// Fashion-MNIST and other 28×28 IDX data: 10 epochs with 1-pixel random crops (flips only where
  /// the dataset has them), under 20 minutes for `quadranet-28` on two cores.
  public static func defaultOptions(for dataset: DatasetName) -> TrainingOptions {
    switch dataset {
    case .digits:
      return TrainingOptions(
        epochs: 30, batchSize: 32, learningRate: 3e-3, minimumLearningRate: 1e-5, warmupEpochs: 2,
        weightDecay: 0.05, labelSmoothing: 0.1)
    case .imageFolder:
      // Image folders (photos of any size): timm's random-resized-crop and flips.
      return TrainingOptions(
        epochs: 10, batchSize: 64, learningRate: 4e-3, minimumLearningRate: 1e-5, warmupEpochs: 0.5,
        weightDecay: 0.05, labelSmoothing: 0.1, augmentation: .randomResizedCropAndFlip)
    case .fashionMNIST, .idxDirectory, .numPyArchive:
      // Tuned on a 20k-image proxy: batch 64 (more steps) +1.2 points over 128, lr 4e-3 with a
      // half-epoch warm-up (2e-3: −0.9). Crops: 2-pixel padding cost 3.2 points on a 4-epoch proxy,
      // 1-pixel padding gained 0.5 in full 10-epoch runs (91.8% → 92.3%).
      return TrainingOptions(
        epochs: 10, batchSize: 64, learningRate: 4e-3, minimumLearningRate: 1e-5, warmupEpochs: 0.5,
        weightDecay: 0.05, labelSmoothing: 0.1, augmentation: Augmentation(padding: 1, horizontalFlip: dataset.hasMirrorableImages))
    }
  }

  /// Scales recipe defaults that the user's flags made invalid, keeping the recipe's proportions, and
  /// returns a note per change (nothing that validates is changed):
  /// - a warm-up longer than the run (`--epochs 1` on digits' 2-epoch warm-up), unless the warm-up was
  ///   given: `warm-up = recipe warm-up × epochs / recipe epochs`;
  /// - a final learning rate above the peak (`--lr` below the recipe's 1e-5 minimum):
  ///   `minimum = lr × recipe minimum / recipe peak`.
  public static func fitDefaults(_ options: inout TrainingOptions, recipe: TrainingOptions, warmupGiven: Bool) -> [String] {
    var notes: [String] = []
    if !warmupGiven, options.warmupEpochs > Double(options.epochs), recipe.epochs > 0 {
      let fitted = recipe.warmupEpochs * Double(options.epochs) / Double(recipe.epochs)
      notes.append(
        "the recipe's \(recipe.warmupEpochs)-epoch warm-up exceeds --epochs \(options.epochs); using \(fitted) epochs "
          + "(the same fraction of the run; set --warmup-epochs to choose)")
      options.warmupEpochs = fitted
    }
    if options.minimumLearningRate > options.learningRate, recipe.learningRate > 0 {
      let fitted = options.learningRate * (recipe.minimumLearningRate / recipe.learningRate)
      notes.append(
        "the recipe's final learning rate \(recipe.minimumLearningRate) exceeds --lr \(options.learningRate); the "
          + "cosine schedule decays to \(fitted) instead (the recipe's ratio of final to peak rate)")
      options.minimumLearningRate = fitted
    }
    return notes
  }
}
