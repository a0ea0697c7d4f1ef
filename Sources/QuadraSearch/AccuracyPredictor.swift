import Foundation
import QuadraModels

/// A learned accuracy predictor — the approach of OFA's (Cai et al. 2020), on a ground truth of networks
/// trained with the default recipe — where zero-cost proxies rank poorly: kernel ridge regression with a
/// Gaussian kernel on an encoding of the architecture,
///
///     accuracy(x) = ȳ + Σⱼ αⱼ · exp(−γ/d · ‖z(x) − z(xⱼ)‖²),   α = (K + λI)⁻¹ (y − ȳ),
///
/// where z standardizes the encoding (``encode(_:resolution:stageSlots:)``) with the ground truth's means and
/// standard deviations (a feature constant on the ground truth is left out; d features remain), K is the
/// kernel matrix of the ground truth and ȳ its mean accuracy. λ and γ are chosen from
/// ``regularizations`` × ``bandwidths`` by the Spearman ρ of the ground truth's leave-one-out predictions
/// (closed form: `ŷ₋ᵢ = yᵢ − αᵢ / (K + λI)⁻¹ᵢᵢ`).
///
/// Judge it only out of sample: ``outOfSamplePredictions(_:resolution:)`` predicts each network by a
/// predictor fitted, hyperparameters included, without it (what `search proxies` reports).
public struct AccuracyPredictor: Codable, Sendable, Equatable {
  /// The ridge terms λ tried.
  public static let regularizations: [Double] = [0.01, 0.03, 0.1, 0.3, 1]
  /// The kernel widths γ tried (divided by the feature count, so they mean the same for any stage count).
  public static let bandwidths: [Double] = [0.3, 0.5, 1, 2, 3]
  /// Networks a predictor is fitted to: at least enough for a leave-one-out ρ, at most what a fit
  /// (25 inversions of an n × n matrix) does in seconds.
  public static let entryRange = 4...500
  /// Encoded values per stage slot: present, quadratic, gⁿConv, depthwise, kernel size (gⁿConv: order),
  /// depth, ln(width).
  public static let featuresPerStage = 7
  /// Encoded values after the stage slots: MLP ratio, stem patch size, stem kernel size, log₁₀ MACs.
  public static let globalFeatures = 4

  /// Input resolution the MACs are counted at.
  public var resolution: Int
  /// Stages encoded: the most any ground-truth network has.
  public var stageSlots: Int
  /// Per encoded feature: the ground truth's mean, and standard deviation (0: constant, left out).
  public var means: [Double]
  public var scales: [Double]
  /// The ground truth standardized (kept features only), one row per network.
  public var inputs: [[Double]]
  /// α.
  public var weights: [Double]
  /// ȳ.
  public var offset: Double
  /// λ and γ chosen.
  public var regularization: Double
  public var bandwidth: Double

  /// What ``predict(_:)`` or ``fit(_:resolution:)`` could not do.
  public struct PredictorError: Error, CustomStringConvertible {
    public var description: String
  }

  /// The encoding of `config` (``featuresPerStage`` values per stage slot, zeros for a slot the network
  /// lacks, then ``globalFeatures``); nil when it has more than `stageSlots` stages.
  public static func encode(_ config: ModelConfig, resolution: Int, stageSlots: Int) -> [Double]? {
    guard config.depths.count <= stageSlots else { return nil }
    var values: [Double] = []
    values.reserveCapacity(stageSlots * featuresPerStage + globalFeatures)
    for stage in 0..<stageSlots {
      guard stage < config.depths.count else {
        values += [Double](repeating: 0, count: featuresPerStage)
        continue
      }
      let kind: [Double]
      let size: Int
      switch config.mixers[stage] {
      case .quadratic(let k): (kind, size) = ([1, 0, 0], k)
      case .gnConv(let order, _): (kind, size) = ([0, 1, 0], order)
      case .depthwise(let k): (kind, size) = ([0, 0, 1], k)
      }
      values += [1] + kind + [Double(size), Double(config.depths[stage]), log(Double(config.widths[stage]))]
    }
    values += [
      Double(config.mlpRatio), Double(config.stemPatchSize), Double(config.stemKernel),
      log10(Double(Swift.max(config.macs(resolution: resolution), 1))),
    ]
    return values
  }

  /// Fits a predictor to `entries` (``entryRange`` of them) at `resolution`, choosing λ and γ by
  /// leave-one-out ρ.
  public static func fit(_ entries: [GroundTruthEntry], resolution: Int) throws -> AccuracyPredictor {
    guard entryRange.contains(entries.count) else {
      throw PredictorError(
        description: "the accuracy predictor needs \(entryRange.lowerBound)...\(entryRange.upperBound) ground-truth networks, not \(entries.count)")
    }
    let slots = entries.map(\.config.depths.count).max()!
    let rows = entries.map { encode($0.config, resolution: resolution, stageSlots: slots)! }
    let count = Double(rows.count)
    let width = rows[0].count
    var means = [Double](repeating: 0, count: width)
    var scales = [Double](repeating: 0, count: width)
    for feature in 0..<width {
      let mean = rows.reduce(0) { $0 + $1[feature] } / count
      let variance = rows.reduce(0) { $0 + ($1[feature] - mean) * ($1[feature] - mean) } / count
      means[feature] = mean
      // A feature the ground truth does not vary carries nothing to learn from (and would divide by 0).
      scales[feature] = variance > 1e-18 * Swift.max(1, mean * mean) ? variance.squareRoot() : 0
    }
    var predictor = AccuracyPredictor(
      resolution: resolution, stageSlots: slots, means: means, scales: scales, inputs: [], weights: [], offset: 0,
      regularization: regularizations[0], bandwidth: bandwidths[0])
    predictor.inputs = rows.map(predictor.standardized)
    let accuracies = entries.map(\.accuracy)
    predictor.offset = accuracies.reduce(0, +) / count
    let centered = accuracies.map { $0 - predictor.offset }
    let distances = predictor.inputs.map { a in predictor.inputs.map { b in squaredDistance(a, b) } }
    var best: (rho: Double, regularization: Double, bandwidth: Double, weights: [Double])?
    for regularization in regularizations {
      for bandwidth in bandwidths {
        predictor.bandwidth = bandwidth
        let scale = -bandwidth / Double(predictor.keptFeatures)
        let kernel = distances.map { row in row.map { exp(scale * $0) } }
        guard let solved = leaveOneOut(kernel: kernel, regularization: regularization, targets: centered) else { continue }
        let alpha = solved.weights
        let leftOut = accuracies.indices.map { accuracies[$0] - solved.residuals[$0] }
        let rho = RankCorrelation.spearman(leftOut, accuracies) ?? -.infinity
        if best == nil || rho > best!.rho { best = (rho, regularization, bandwidth, alpha) }
      }
    }
    guard let best else { throw PredictorError(description: "the accuracy predictor's kernel matrix is singular") }
    predictor.regularization = best.regularization
    predictor.bandwidth = best.bandwidth
    predictor.weights = best.weights
    return predictor
  }

  /// α = (K + λI)⁻¹ t and the leave-one-out residuals of kernel ridge regression, tᵢ − ŷ₋ᵢ = αᵢ / (K + λI)⁻¹ᵢᵢ
  /// (the prediction for i from the fit to the others equals tᵢ minus it); nil when K + λI is not
  /// positive definite.
  static func leaveOneOut(kernel: [[Double]], regularization: Double, targets: [Double]) -> (
    weights: [Double], residuals: [Double]
  )? {
    var matrix = kernel
    for i in matrix.indices { matrix[i][i] += regularization }
    guard let inverse = symmetricInverse(matrix) else { return nil }
    let alpha = inverse.map { row in zip(row, targets).reduce(0) { $0 + $1.0 * $1.1 } }
    return (alpha, alpha.indices.map { alpha[$0] / inverse[$0][$0] })
  }

  /// Each entry's accuracy predicted by a predictor fitted to the others (hyperparameters chosen
  /// without it): leave-one-out up to 100 entries, else 10 folds (entry i in fold i mod 10).
  public static func outOfSamplePredictions(_ entries: [GroundTruthEntry], resolution: Int) throws -> [Double] {
    guard entries.count > entryRange.lowerBound else {
      throw PredictorError(
        description: "judging the accuracy predictor out of sample needs \(entryRange.lowerBound + 1) or more ground-truth networks, not \(entries.count)")
    }
    let folds = entries.count <= 100 ? entries.count : 10
    var predictions = [Double](repeating: 0, count: entries.count)
    for fold in 0..<folds {
      let held = entries.indices.filter { $0 % folds == fold }
      let kept = entries.indices.filter { $0 % folds != fold }.map { entries[$0] }
      let predictor = try fit(kept, resolution: resolution)
      for index in held {
        // A held-out network with more stages than any kept one cannot be encoded: predicted as the mean.
        predictions[index] = (try? predictor.predict(entries[index].config)) ?? predictor.offset
      }
    }
    return predictions
  }

  /// The predicted test accuracy of `config` (0…1 on the ground truth's scale).
  ///
  /// - Throws: ``PredictorError`` for a network with more stages than the ground truth's.
  public func predict(_ config: ModelConfig) throws -> Double {
    guard let row = Self.encode(config, resolution: resolution, stageSlots: stageSlots) else {
      throw PredictorError(
        description: "\(config.name.prefix(100)) has \(config.depths.count) stages; the accuracy predictor's ground truth has networks of at most \(stageSlots)")
    }
    let z = standardized(row)
    var total = offset
    // The kernel's scale once per prediction (the search predicts every candidate it scores).
    let scale = -bandwidth / Double(keptFeatures)
    for (input, weight) in zip(inputs, weights) { total += weight * exp(scale * Self.squaredDistance(z, input)) }
    return total
  }

  /// Whether a decoded predictor is usable: consistent sizes, finite numbers, positive λ and γ.
  public var isWellFormed: Bool {
    let width = stageSlots * Self.featuresPerStage + Self.globalFeatures
    let kept = scales.filter { $0 > 0 }.count
    let numbers = means + scales + weights + inputs.joined() + [offset, regularization, bandwidth]
    return (1...1024).contains(stageSlots) && (1...8192).contains(resolution) && means.count == width
      && scales.count == width && Self.entryRange.contains(inputs.count) && weights.count == inputs.count
      && inputs.allSatisfy { $0.count == kept } && numbers.allSatisfy(\.isFinite) && scales.allSatisfy { $0 >= 0 }
      && regularization > 0 && bandwidth > 0
  }

  /// The kept features of `row`, each minus its mean over its standard deviation.
  func standardized(_ row: [Double]) -> [Double] {
    row.indices.compactMap { scales[$0] > 0 ? (row[$0] - means[$0]) / scales[$0] : nil }
  }

  /// d: the features kept (at least 1 in the kernel's scale, so that none kept gives exp(0) = 1).
  var keptFeatures: Int { Swift.max(1, scales.filter { $0 > 0 }.count) }

  static func squaredDistance(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
  }

  /// The inverse of a symmetric positive definite matrix by its Cholesky factor; nil when it is not
  /// positive definite (numerically).
  static func symmetricInverse(_ a: [[Double]]) -> [[Double]]? {
    let n = a.count
    var l = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
    for i in 0..<n {
      for j in 0...i {
        var sum = a[i][j]
        for k in 0..<j { sum -= l[i][k] * l[j][k] }
        if i == j {
          guard sum > 0, sum.isFinite else { return nil }
          l[i][i] = sum.squareRoot()
        } else {
          l[i][j] = sum / l[j][j]
        }
      }
    }
    // L⁻¹ by forward substitution, then A⁻¹ = L⁻ᵀ L⁻¹.
    var inverseL = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
    for column in 0..<n {
      inverseL[column][column] = 1 / l[column][column]
      for row in (column + 1)..<n {
        var sum = 0.0
        for k in column..<row { sum -= l[row][k] * inverseL[k][column] }
        inverseL[row][column] = sum / l[row][row]
      }
    }
    var inverse = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
    for i in 0..<n {
      for j in 0...i {
        var sum = 0.0
        for k in i..<n { sum += inverseL[k][i] * inverseL[k][j] }
        inverse[i][j] = sum
        inverse[j][i] = sum
      }
    }
    return inverse
  }
}
