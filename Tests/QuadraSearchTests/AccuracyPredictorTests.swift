import Foundation
import QuadraCore
import QuadraModels
import Testing

@testable import QuadraSearch

@Suite struct AccuracyPredictorTests {
  static func config(_ mixers: [TokenMixer], depths: [Int], widths: [Int], ratio: Int = 2, stemKernel: Int? = nil) -> ModelConfig {
    ModelConfig(
      name: "t", inputChannels: 1, classCount: 10, stemPatchSize: 2, stemKernelSize: stemKernel, depths: depths, widths: widths,
      mixers: mixers, mlpRatio: ratio)
  }

  /// Seven values per stage slot (present, the mixer's kind one-hot, its kernel or order, depth, ln width),
  /// zeros for a slot the network lacks, then ratio, stem patch and kernel, log₁₀ MACs.
  @Test func encodingOfAKnownNetwork() throws {
    let config = Self.config([.gnConv(order: 3, scale: 1.0 / 3), .quadratic(kernelSize: 5)], depths: [2, 1], widths: [24, 48], ratio: 3, stemKernel: 4)
    let row = try #require(AccuracyPredictor.encode(config, resolution: 28, stageSlots: 3))
    #expect(row.count == 3 * AccuracyPredictor.featuresPerStage + AccuracyPredictor.globalFeatures)
    #expect(Array(row[0..<6]) == [1, 0, 1, 0, 3, 2])
    #expect(abs(row[6] - log(24)) < 1e-12)
    #expect(Array(row[7..<13]) == [1, 1, 0, 0, 5, 1])
    #expect(Array(row[14..<21]) == [0, 0, 0, 0, 0, 0, 0])
    #expect(Array(row[21..<24]) == [3, 2, 4])
    #expect(abs(row[24] - log10(Double(config.macs(resolution: 28)))) < 1e-12)
    #expect(AccuracyPredictor.encode(config, resolution: 28, stageSlots: 1) == nil)
  }

  @Test func choleskyInverseInvertsAndRefusesAnIndefiniteMatrix() throws {
    let a: [[Double]] = [[4, 1, 0.5], [1, 3, 0.2], [0.5, 0.2, 2]]
    let inverse = try #require(AccuracyPredictor.symmetricInverse(a))
    for i in 0..<3 {
      for j in 0..<3 {
        let product = (0..<3).reduce(0.0) { $0 + a[i][$1] * inverse[$1][j] }
        #expect(abs(product - (i == j ? 1 : 0)) < 1e-12)
      }
    }
    #expect(AccuracyPredictor.symmetricInverse([[1, 2], [2, 1]]) == nil)
  }

  /// The closed-form leave-one-out residual equals refitting without the point (the selection criterion
  /// is exactly what it claims to be).
  @Test func closedFormLeaveOneOutEqualsRefitting() throws {
    let points: [Double] = [0, 0.4, 1.1, 1.5, 2.3, 3.0]
    let targets: [Double] = [0.2, -0.1, 0.4, 0.3, -0.5, 0.1]
    func kernel(_ a: Double, _ b: Double) -> Double { exp(-(a - b) * (a - b)) }
    let full = points.map { a in points.map { b in kernel(a, b) } }
    let solved = try #require(AccuracyPredictor.leaveOneOut(kernel: full, regularization: 0.1, targets: targets))
    for left in points.indices {
      let kept = points.indices.filter { $0 != left }
      let sub = kept.map { a in kept.map { b in full[a][b] } }
      let fit = try #require(AccuracyPredictor.leaveOneOut(kernel: sub, regularization: 0.1, targets: kept.map { targets[$0] }))
      let prediction = zip(kept, fit.weights).reduce(0.0) { $0 + $1.1 * full[left][$1.0] }
      #expect(abs((targets[left] - prediction) - solved.residuals[left]) < 1e-10)
    }
  }

  /// Accuracies that are a smooth function of the architecture (more depth and width in the first stage,
  /// quadratic first mixers) are learned: networks the predictor was fitted without are ranked well.
  @Test func aSmoothAccuracyIsLearnedOutOfSample() throws {
    let space = SearchSpace.fashionMNIST
    var generator = RandomGenerator(seed: 21)
    let entries = try (0..<40).map { _ -> GroundTruthEntry in
      let config = try space.config(for: space.randomArchitecture(using: &generator))
      let quadratic: Double = if case .quadratic = config.mixers[0] { 1 } else { 0 }
      let accuracy = 0.9 + 0.004 * Double(config.depths[0]) + 0.0002 * Double(config.widths[0]) + 0.006 * quadratic
      return GroundTruthEntry(config: config, accuracy: accuracy)
    }
    let predictions = try AccuracyPredictor.outOfSamplePredictions(entries, resolution: 28)
    let rho = try #require(RankCorrelation.spearman(predictions, entries.map(\.accuracy)))
    #expect(rho > 0.8)
    // Deterministic: the same fit twice.
    #expect(try AccuracyPredictor.fit(entries, resolution: 28) == AccuracyPredictor.fit(entries, resolution: 28))
    let predictor = try AccuracyPredictor.fit(entries, resolution: 28)
    #expect(predictor.isWellFormed)
    #expect(AccuracyPredictor.regularizations.contains(predictor.regularization))
    #expect(AccuracyPredictor.bandwidths.contains(predictor.bandwidth))
    // The space's stem never varies: its patch-size feature is left out rather than divided by zero.
    #expect(predictor.scales[predictor.stageSlots * AccuracyPredictor.featuresPerStage + 1] == 0)
    #expect(try predictor.predict(entries[0].config).isFinite)
  }

  @Test func misuseIsNamed() throws {
    let small = Self.config([.quadratic(kernelSize: 3)], depths: [1], widths: [16])
    let entries = (0..<5).map { GroundTruthEntry(config: small, accuracy: 0.9 + 0.01 * Double($0)) }
    #expect(throws: AccuracyPredictor.PredictorError.self) { try AccuracyPredictor.fit(Array(entries.prefix(3)), resolution: 28) }
    #expect(throws: AccuracyPredictor.PredictorError.self) {
      try AccuracyPredictor.outOfSamplePredictions(Array(entries.prefix(4)), resolution: 28)
    }
    // Identical networks: no feature varies, the kernel is all ones, and the prediction is the mean.
    let constant = try AccuracyPredictor.fit(entries, resolution: 28)
    #expect(abs(try constant.predict(small) - 0.92) < 1e-6)
    let deeper = Self.config([.quadratic(kernelSize: 3), .quadratic(kernelSize: 3)], depths: [1, 1], widths: [16, 32])
    #expect(throws: AccuracyPredictor.PredictorError.self) { try constant.predict(deeper) }

    var broken = constant
    broken.weights.append(1)
    #expect(!broken.isWellFormed)
    broken = constant
    broken.offset = .nan
    #expect(!broken.isWellFormed)
    var settings = ProxySettings(proxy: .predictor, dataset: "fashion-mnist", batch: 64, seed: 0)
    #expect(throws: SearchSpaceError.self) { try settings.validate() }
    settings.predictor = broken
    #expect(throws: SearchSpaceError.self) { try settings.validate() }
    settings.predictor = constant
    try settings.validate()
    #expect(throws: SearchSpaceError.self) { try AccuracyProxy.predictor.score(small, resolution: 28) }
    #expect(abs(try AccuracyProxy.predictor.score(small, resolution: 28, predictor: constant) - 0.92) < 1e-6)
  }

  /// On the committed Fashion-MNIST ground truth the out-of-sample predictions are defined and deterministic
  /// (their ρ is a measurement reported by `search proxies`, not asserted here).
  @Test func committedGroundTruthIsPredictedOutOfSample() throws {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("data/fashion-mnist-ground-truth.json")
    let entries = try GroundTruthEntry.read(path: url.path, minimumCount: 5)
    let first = try AccuracyPredictor.outOfSamplePredictions(entries, resolution: 28)
    #expect(first.count == entries.count && first.allSatisfy { $0.isFinite && $0 > 0.8 && $0 < 1 })
    #expect(try AccuracyPredictor.outOfSamplePredictions(entries, resolution: 28) == first)
  }
}
