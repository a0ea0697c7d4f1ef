import Foundation
import QuadraModels

/// A mini-batch of real training images `[N, H, W, C]` with their labels, for the proxies that look at
/// data: ``NASWOT`` reads the images, ``ZiCo`` both.
public struct ProxyBatch: Sendable {
  public var images: Tensor
  public var labels: [Int]

  public init(images: Tensor, labels: [Int]) {
    self.images = images
    self.labels = labels
  }
}

/// ZiCo, "Zero-shot NAS via Inverse Coefficient of Variation on Gradients" (Li et al., ICLR 2023): how
/// large and how consistent an untrained network's gradients are across mini-batches.
///
/// The batch is split into `B` equal groups; each gives the cross-entropy gradient `g_b` of every
/// convolution and linear weight (the parameters of rank ≥ 2; norms, biases and layer scales are left
/// out, as in the paper). For each weight tensor `θ` with elements `i`,
///
///     μᵢ = (1/B) Σ_b |g_bᵢ|,   σᵢ = √((1/B) Σ_b (g_bᵢ − ḡᵢ)²),   score = Σ_θ log Σ_{i: σᵢ > 0} μᵢ / σᵢ
///
/// (natural log; a tensor whose sum is 0 adds nothing). Large, low-variance gradients predict a network
/// that trains fast and well. Weights come from seed 0 and the model runs in inference mode (no drop path),
/// so the score is a pure function of the architecture and the batch.
public enum ZiCo {
  /// Groups the batch is split into (the paper's two batches).
  public static let defaultGroups = 2

  /// The score of `config` on `batch` (`N ≥ groups` images, labels in `0..<classCount`).
  ///
  /// - Throws: ``SearchSpaceError`` when the batch is too small, its labels do not match it or the model.
  public static func score(_ config: ModelConfig, batch: ProxyBatch, groups: Int = defaultGroups) throws -> Double {
    let images = batch.images
    guard groups >= 2, images.rank == 4, images.shape[0] >= groups, images.shape[3] == config.inputChannels else {
      throw SearchSpaceError(
        field: "images",
        message: "ZiCo needs a batch [N ≥ \(Swift.max(groups, 2)), H, W, \(config.inputChannels)] split into ≥ 2 groups, got \(images.shape)")
    }
    guard batch.labels.count == images.shape[0], batch.labels.allSatisfy({ (0..<config.classCount).contains($0) }) else {
      throw SearchSpaceError(
        field: "labels", message: "ZiCo needs one label in 0..<\(config.classCount) per image (\(images.shape[0]) images)")
    }
    try config.validate(resolution: images.shape[1])
    let model = try VisionModel(config: config, seed: 0)
    model.setTraining(false)
    let weights = model.namedParameters().map(\.parameter.variable).filter { $0.shape.count >= 2 }
    // gradients[w][b]: weight w's gradient for group b (zeros where a weight got none).
    var gradients = weights.map { _ in [[Float]]() }
    let imageSize = images.count / images.shape[0]
    for group in 0..<groups {
      let range = (group * images.shape[0] / groups)..<((group + 1) * images.shape[0] / groups)
      let slice = Tensor(
        shape: [range.count] + images.shape.dropFirst(),
        scalars: Array(images.scalars[(range.lowerBound * imageSize)..<(range.upperBound * imageSize)]))
      for weight in weights { weight.zeroGradient() }
      try softmaxCrossEntropy(logits: model(Variable(slice)), labels: Array(batch.labels[range])).backward()
      for (index, weight) in weights.enumerated() {
        gradients[index].append(weight.grad?.scalars ?? [Float](repeating: 0, count: weight.value.count))
      }
    }
    return gradients.reduce(0.0) { total, groups in
      let ratio = inverseCoefficientOfVariation(groups)
      return ratio > 0 && ratio.isFinite ? total + log(ratio) : total
    }
  }

  /// `Σ_{i: σᵢ > 0} μᵢ / σᵢ` for one weight tensor's gradients, one array per group (all of one length):
  /// `μᵢ` the mean of `|g_bᵢ|` over the groups, `σᵢ` the population standard deviation of `g_bᵢ`.
  public static func inverseCoefficientOfVariation(_ gradients: [[Float]]) -> Double {
    guard let count = gradients.first?.count, gradients.count >= 2 else { return 0 }
    let groups = Double(gradients.count)
    var total = 0.0
    for i in 0..<count {
      var (absolute, sum) = (0.0, 0.0)
      for group in gradients {
        absolute += Swift.abs(Double(group[i]))
        sum += Double(group[i])
      }
      let mean = sum / groups
      // Two passes for the variance: E[g²] − E[g]² cancels badly when the groups nearly agree.
      let variance = gradients.reduce(0.0) { $0 + (Double($1[i]) - mean) * (Double($1[i]) - mean) } / groups
      guard variance > 0 else { continue }
      total += (absolute / groups) / variance.squareRoot()
    }
    return total
  }
}
