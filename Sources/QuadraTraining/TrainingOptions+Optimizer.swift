import QuadraData
import QuadraModels

/// The optimizer of a training run (`--optimizer`).
public enum OptimizerKind: String, Codable, CaseIterable, Sendable {
  /// ``AdamW``: decoupled weight decay, β = (0.9, 0.999), ε = 10⁻⁸.
  case adamW = "adamw"
  /// ``SGD`` with optional (Nesterov) momentum and weight decay added to the gradient.
  case sgd
}

extension TrainingOptions {
  /// The allowed ``accumulateSteps``.
  public static let accumulateStepsRange = 1...1024

  /// The JSON keys (the property names). A new stored property needs a key here and a line in
  /// ``init(from:)``.
  enum CodingKeys: String, CodingKey {
    case epochs, batchSize, learningRate, minimumLearningRate, warmupEpochs, weightDecay, labelSmoothing, emaDecay
    case clipGradientNorm, seed, evaluationBatchSize, augmentation, optimizer, momentum, nesterov, accumulateSteps
  }

  /// Reads options saved by any version: the optimizer settings that older checkpoints lack
  /// take their defaults (AdamW, no accumulation), which is what those runs used.
  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      epochs: try container.decode(Int.self, forKey: .epochs),
      batchSize: try container.decode(Int.self, forKey: .batchSize),
      learningRate: try container.decode(Float.self, forKey: .learningRate),
      minimumLearningRate: try container.decode(Float.self, forKey: .minimumLearningRate),
      warmupEpochs: try container.decode(Double.self, forKey: .warmupEpochs),
      weightDecay: try container.decode(Float.self, forKey: .weightDecay),
      labelSmoothing: try container.decode(Float.self, forKey: .labelSmoothing),
      emaDecay: try container.decodeIfPresent(Float.self, forKey: .emaDecay),
      clipGradientNorm: try container.decodeIfPresent(Float.self, forKey: .clipGradientNorm),
      seed: try container.decode(UInt64.self, forKey: .seed),
      evaluationBatchSize: try container.decode(Int.self, forKey: .evaluationBatchSize),
      augmentation: try container.decodeIfPresent(Augmentation.self, forKey: .augmentation),
      optimizer: try container.decodeIfPresent(OptimizerKind.self, forKey: .optimizer) ?? .adamW,
      momentum: try container.decodeIfPresent(Float.self, forKey: .momentum) ?? 0,
      nesterov: try container.decodeIfPresent(Bool.self, forKey: .nesterov) ?? false,
      accumulateSteps: try container.decodeIfPresent(Int.self, forKey: .accumulateSteps) ?? 1)
  }

  /// The optimizer these options describe, over `parameters`.
  public func makeOptimizer(parameters: [(name: String, parameter: Parameter)]) throws -> any Optimizer {
    switch optimizer {
    case .adamW:
      return try AdamW(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay)
    case .sgd:
      return try SGD(
        parameters: parameters, learningRate: learningRate, momentum: momentum, nesterov: nesterov,
        weightDecay: weightDecay)
    }
  }

  /// The optimizer part of ``validate()``.
  func validateOptimizer() throws {
    func fail(_ message: String) -> TrainingError { .invalidOption(message) }
    guard Self.accumulateStepsRange.contains(accumulateSteps) else {
      throw fail("accumulate steps (--accumulate-steps) must be in \(Self.accumulateStepsRange), got \(accumulateSteps)")
    }
    guard momentum.isFinite, momentum >= 0, momentum < 1 else {
      throw fail("momentum (--momentum) must be in [0, 1), got \(momentum)")
    }
    switch optimizer {
    case .adamW:
      guard momentum == 0, !nesterov else {
        throw fail("momentum (--momentum) and Nesterov (--nesterov) apply only to the sgd optimizer (--optimizer sgd)")
      }
    case .sgd:
      guard !nesterov || momentum > 0 else {
        throw fail("Nesterov momentum (--nesterov) needs a momentum (--momentum) in (0, 1), got 0")
      }
    }
  }

  /// The optimizer part of ``differences(from:)``.
  func optimizerDifferences(from other: TrainingOptions) -> [String] {
    var result: [String] = []
    if optimizer != other.optimizer { result.append("optimizer: saved \(optimizer.rawValue), requested \(other.optimizer.rawValue)") }
    if momentum != other.momentum { result.append("momentum: saved \(momentum), requested \(other.momentum)") }
    if nesterov != other.nesterov { result.append("Nesterov: saved \(nesterov), requested \(other.nesterov)") }
    if accumulateSteps != other.accumulateSteps {
      result.append("accumulate steps: saved \(accumulateSteps), requested \(other.accumulateSteps)")
    }
    return result
  }
}
