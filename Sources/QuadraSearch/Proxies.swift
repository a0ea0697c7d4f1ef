import Foundation
import QuadraCore
import QuadraIO
import QuadraModels

/// Zero-cost accuracy proxies: scores computed from an untrained architecture, meant to rank
/// architectures like their trained accuracy would.
public enum AccuracyProxy: String, Codable, Sendable, CaseIterable {
  /// log₁₀ of the trainable parameters.
  case parameters = "params"
  /// log₁₀ of the forward multiply-accumulates at the space's resolution.
  case macs
  /// log₁₀ of the multiply-accumulates of the blocks' MLPs alone (`Σ depth · H·W · 2·r·C²` over the stages:
  /// ``CostFeatures``' `mlp_macs`); the token mixers, stem, downsampling and head are left out. On the
  /// Fashion-MNIST ground truth, MACs that gⁿConv spends in its projections bought no accuracy, while the
  /// channel MLPs' did (see the README's proxy table for what was measured, and how the claim was tested).
  case mlpMACs = "mlp-macs"
  /// log₁₀ of synflow (Tanaka et al. 2020): `R = Σ model(1)` on an all-ones batch-1 input with every
  /// parameter replaced by its absolute value, then `Σ |θ ⊙ ∂R/∂θ|`. Builds and runs the model once
  /// (forward and backward at batch 1), so it costs milliseconds per architecture at 28².
  case synflow
  /// ``NASWOT`` (Mellor et al. 2021): log |det K| of the GELU activation codes of a mini-batch of real
  /// images of the space's dataset. One batched forward pass per architecture.
  case naswot
  /// ``ZiCo`` (Li et al. 2023): Σ over weight tensors of log Σ mean|g| / std(g), the gradients' inverse
  /// coefficient of variation across two halves of a labelled mini-batch. Two forward and backward passes.
  case zico
  /// ``MeCo`` (Jiang et al. 2023): Σ over the residual joins of the smallest eigenvalue of the channel
  /// correlation matrix of each image's feature map, averaged over a mini-batch. One batched forward pass.
  case meco
  /// Validation accuracy after a short training run (``ShortTrainingProxy``: one epoch on 10,000 images of
  /// the training split, checked on 2,000 others): seconds per 28² candidate, so not for long searches.
  case shortTraining = "short-training"
  /// ``AccuracyPredictor``: not zero-cost but learned — kernel ridge regression on an encoding of the
  /// architecture, fitted to a ground truth of networks trained with the default recipe (`--ground-truth`).
  /// `search proxies` judges it out of sample (each network predicted by a fit without it).
  case predictor

  /// Whether ``score(_:resolution:batch:shortTraining:)`` needs a mini-batch of real images (and labels).
  public var needsImages: Bool { self == .naswot || self == .zico || self == .meco }
  /// Whether the proxy trains (``ShortTrainingProxy``): scored by ``score(_:resolution:batch:shortTraining:)``
  /// with the training data.
  public var needsTrainingData: Bool { self == .shortTraining }
  /// Whether the proxy is fitted to trained accuracies (``AccuracyPredictor``).
  public var needsGroundTruth: Bool { self == .predictor }

  /// The proxy's value for `config` at `resolution` (higher is meant to predict higher accuracy).
  /// `batch` (images `[N ≥ 2, resolution, resolution, C]` and labels) is the mini-batch of ``naswot``,
  /// ``zico`` and ``meco``, `shortTraining` the data of ``shortTraining`` and `predictor` the fitted
  /// ``predictor`` (each ignored by the others).
  ///
  /// - Throws: ``SearchSpaceError`` for ``naswot``, ``zico`` or ``meco`` without a usable batch, or for
  ///   ``predictor`` without a predictor; ``AccuracyPredictor/PredictorError`` for a network it cannot encode.
  public func score(
    _ config: ModelConfig, resolution: Int, batch: ProxyBatch? = nil, shortTraining: ShortTrainingProxy? = nil,
    predictor: AccuracyPredictor? = nil
  ) throws -> Double {
    switch self {
    case .predictor:
      guard let predictor else {
        throw SearchSpaceError(field: "ground truth", message: "the predictor proxy needs a ground truth to be fitted to")
      }
      return try predictor.predict(config)
    case .shortTraining:
      guard let shortTraining else {
        throw SearchSpaceError(field: "training data", message: "the short-training proxy needs a training split")
      }
      return try shortTraining.score(config)
    case .parameters: return log10(Double(Swift.max(config.parameterCount, 1)))
    case .macs: return log10(Double(Swift.max(config.macs(resolution: resolution), 1)))
    case .mlpMACs:
      let mlp = CostFeatures(config: config, resolution: resolution).values[CostFeatures.mlpIndex]
      return log10(Swift.max(mlp, 1))
    case .synflow: return try Self.synflow(config, resolution: resolution)
    case .naswot, .zico, .meco:
      guard let batch else {
        throw SearchSpaceError(field: "images", message: "the \(rawValue) proxy needs a mini-batch of real images")
      }
      switch self {
      case .naswot: return try NASWOT.score(config, images: batch.images)
      case .zico: return try ZiCo.score(config, batch: batch)
      default: return try MeCo.score(config, images: batch.images)
      }
    }
  }

  /// See ``synflow``; the sum is taken in `Double`, and a non-finite result (Float overflow in a very
  /// deep model) is reported as the largest finite log value so rankings stay defined.
  static func synflow(_ config: ModelConfig, resolution: Int) throws -> Double {
    let model = try VisionModel(config: config, seed: 0)
    model.setTraining(false)
    let parameters = model.namedParameters().map(\.parameter.variable)
    for variable in parameters {
      variable.update(Tensor(shape: variable.shape, scalars: variable.value.scalars.map { Swift.abs($0) }))
    }
    let input = Variable(Tensor(shape: [1, resolution, resolution, config.inputChannels], repeating: 1))
    try model(input).sum().backward()
    var total = 0.0
    for variable in parameters {
      guard let gradient = variable.grad else { continue }
      for (theta, g) in zip(variable.value.scalars, gradient.scalars) { total += Double(Swift.abs(theta * g)) }
    }
    guard total.isFinite else { return log10(Double.greatestFiniteMagnitude) }
    return log10(Swift.max(total, Double.leastNormalMagnitude))
  }
}

/// Rank statistics used to judge proxies and cost models.
public enum RankCorrelation {
  /// Ranks 1…n with ties given their average rank.
  public static func ranks(_ values: [Double]) -> [Double] {
    let order = values.indices.sorted { values[$0] < values[$1] }
    var result = [Double](repeating: 0, count: values.count)
    var start = 0
    while start < order.count {
      var end = start
      while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
      let average = Double(start + end) / 2 + 1
      for position in start...end { result[order[position]] = average }
      start = end + 1
    }
    return result
  }

  /// Spearman's ρ: the Pearson correlation of the ranks (ties averaged); nil for fewer than two
  /// points or a constant series.
  public static func spearman(_ x: [Double], _ y: [Double]) -> Double? {
    guard x.count == y.count, x.count >= 2 else { return nil }
    return pearson(ranks(x), ranks(y))
  }

  /// Pearson's r; nil when either series is constant.
  public static func pearson(_ x: [Double], _ y: [Double]) -> Double? {
    let n = Double(x.count)
    let mx = x.reduce(0, +) / n
    let my = y.reduce(0, +) / n
    var sxy = 0.0
    var sxx = 0.0
    var syy = 0.0
    for (a, b) in zip(x, y) {
      sxy += (a - mx) * (b - my)
      sxx += (a - mx) * (a - mx)
      syy += (b - my) * (b - my)
    }
    guard sxx > 0, syy > 0 else { return nil }
    return sxy / (sxx * syy).squareRoot()
  }

  /// A percentile bootstrap interval of a statistic of `count` paired observations: `resamples` draws of
  /// `count` indices with replacement (``QuadraCore/RandomGenerator`` from `seed`, so deterministic), the
  /// statistic of each, and the `(1 − confidence)/2` and `(1 + confidence)/2` quantiles of those defined
  /// (a resample whose statistic is nil — a constant series — is skipped). nil when fewer than half the
  /// resamples are defined, or for `count < 2`.
  ///
  /// How far a correlation measured on a dozen architectures can be trusted: with 12 points a ρ of 0.55 has
  /// a 90% interval about 0.8 wide.
  public static func bootstrapInterval(
    count: Int, resamples: Int = 2000, confidence: Double = 0.9, seed: UInt64 = 0,
    statistic: ([Int]) -> Double?
  ) -> ClosedRange<Double>? {
    guard count >= 2, resamples >= 1, confidence > 0, confidence < 1 else { return nil }
    var generator = RandomGenerator(seed: seed)
    var values: [Double] = []
    values.reserveCapacity(resamples)
    var indices = [Int](repeating: 0, count: count)
    for _ in 0..<resamples {
      for position in indices.indices { indices[position] = Int(generator.next() % UInt64(count)) }
      if let value = statistic(indices), value.isFinite { values.append(value) }
    }
    guard values.count * 2 >= resamples else { return nil }
    values.sort()
    func quantile(_ q: Double) -> Double {
      let position = q * Double(values.count - 1)
      let lower = Int(position.rounded(.down))
      let upper = Swift.min(lower + 1, values.count - 1)
      return values[lower] + (values[upper] - values[lower]) * (position - Double(lower))
    }
    return quantile((1 - confidence) / 2)...quantile((1 + confidence) / 2)
  }

  /// Kendall's τ-b: (concordant − discordant) / √((n₀ − ties_x)(n₀ − ties_y)); nil when undefined.
  public static func kendallTau(_ x: [Double], _ y: [Double]) -> Double? {
    guard x.count == y.count, x.count >= 2 else { return nil }
    var concordant = 0.0
    var discordant = 0.0
    var tiesX = 0.0
    var tiesY = 0.0
    for i in x.indices {
      for j in (i + 1)..<x.count {
        let dx = x[i] - x[j]
        let dy = y[i] - y[j]
        if dx == 0 && dy == 0 { continue }
        if dx == 0 { tiesX += 1; continue }
        if dy == 0 { tiesY += 1; continue }
        if (dx > 0) == (dy > 0) { concordant += 1 } else { discordant += 1 }
      }
    }
    let denominator = ((concordant + discordant + tiesX) * (concordant + discordant + tiesY)).squareRoot()
    guard denominator > 0 else { return nil }
    return (concordant - discordant) / denominator
  }
}

/// One trained architecture of a ground-truth file: its config and the test accuracy reached with the
/// default recipe.
public struct GroundTruthEntry: Codable, Sendable, Equatable {
  public var config: ModelConfig
  public var accuracy: Double

  public init(config: ModelConfig, accuracy: Double) {
    self.config = config
    self.accuracy = accuracy
  }

  /// Reads the ground-truth file at `path` (at most 16 MiB; see ``load(_:source:minimumCount:)``).
  public static func read(path: String, minimumCount: Int) throws -> [GroundTruthEntry] {
    try load(try BoundedFile.read(URL(fileURLWithPath: path), maximumBytes: 16 << 20), source: path, minimumCount: minimumCount)
  }

  /// Reads a ground-truth file (a JSON array of `minimumCount`…10 000 entries, ≤ 16 MiB); every config
  /// is validated and every accuracy must be in [0, 1]; errors name the entry.
  public static func load(_ data: Data, source: String, minimumCount: Int = 2) throws -> [GroundTruthEntry] {
    let entries: [GroundTruthEntry]
    do {
      entries = try StrictJSON.decode([GroundTruthEntry].self, from: data)
    } catch let error as JSONInputError {
      throw SearchSpaceError(field: error.path, message: "\(source): \(error.message)")
    }
    guard (minimumCount...10_000).contains(entries.count) else {
      throw SearchSpaceError(field: "", message: "\(source): \(entries.count) entries; \(minimumCount)...10000 are needed")
    }
    for (index, entry) in entries.enumerated() {
      do { try entry.config.validate() } catch {
        throw SearchSpaceError(field: "[\(index)].config", message: "\(source): \(error)")
      }
      guard entry.accuracy.isFinite, (0...1).contains(entry.accuracy) else {
        throw SearchSpaceError(field: "[\(index)].accuracy", message: "\(source): \(entry.accuracy) is outside 0...1")
      }
    }
    return entries
  }
}
