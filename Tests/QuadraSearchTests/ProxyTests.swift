import Foundation
import QuadraCore
import QuadraData
import QuadraModels
import QuadraTraining
import Testing

@testable import QuadraSearch

@Suite struct ProxyTests {
  @Test func spearmanOnSyntheticData() throws {
    let x: [Double] = [1, 2, 3, 4, 5, 6]
    #expect(RankCorrelation.spearman(x, x.map { $0 * $0 * $0 }) == 1)
    #expect(RankCorrelation.spearman(x, x.map { -$0 }) == -1)
    // Without ties ρ = 1 − 6·Σd² / (n(n²−1)); here d = (0, −1, 1, 0, −1, 1), Σd² = 4, n = 6.
    let y: [Double] = [1, 3, 2, 4, 6, 5]
    let rho = try #require(RankCorrelation.spearman(x, y))
    #expect(abs(rho - (1 - 6.0 * 4 / 210)) < 1e-12)
    // Ties get average ranks.
    #expect(RankCorrelation.ranks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4])
    #expect(RankCorrelation.spearman([1, 1, 1], [1, 2, 3]) == nil)
    #expect(RankCorrelation.kendallTau(x, x) == 1)
    #expect(RankCorrelation.kendallTau([1, 2, 3], [3, 1, 2]).map { abs($0 + 1.0 / 3) < 1e-12 } == true)
  }

  /// quadranet-28's MLPs (C = 40, 80, 160 at 14², 7², 3², depths 2, 3, 2, ratio 2) do 2·r·C² MACs per pixel:
  /// 2·196·6,400 + 3·49·25,600 + 2·9·102,400 = 8,115,200, well below the whole network's MACs.
  @Test func mlpMACsCountsTheMLPsAlone() throws {
    let config = try ModelRegistry.config(named: "quadranet-28")
    let score = try AccuracyProxy.mlpMACs.score(config, resolution: 28)
    #expect(abs(score - log10(8_115_200)) < 1e-12)
    let macs = try AccuracyProxy.macs.score(config, resolution: 28)
    #expect(score < macs)
    // A gⁿConv mixer adds MACs but no MLP MACs.
    var hornet = config
    hornet.mixers = hornet.mixers.map { _ in .gnConv(order: 3, scale: 1.0 / 3.0) }
    #expect(try AccuracyProxy.mlpMACs.score(hornet, resolution: 28) == score)
    #expect(try AccuracyProxy.macs.score(hornet, resolution: 28) > macs)
  }

  @Test func groundTruthFileIsValidated() throws {
    let config = try ModelRegistry.config(named: "quadranet-28")
    let good = [GroundTruthEntry(config: config, accuracy: 0.93), GroundTruthEntry(config: config, accuracy: 0.9)]
    let data = try JSONEncoder().encode(good)
    #expect(try GroundTruthEntry.load(data, source: "gt.json") == good)
    let bad = try JSONEncoder().encode([good[0], GroundTruthEntry(config: config, accuracy: 1.5)])
    do {
      _ = try GroundTruthEntry.load(bad, source: "gt.json")
      Issue.record("accepted accuracy 1.5")
    } catch let error as SearchSpaceError {
      #expect(error.field == "[1].accuracy")
    }
  }
}

@Suite struct SynflowTests {
  /// Synflow is deterministic, finite, and grows when a stage gets more blocks (more paths).
  @Test func synflowIsFiniteDeterministicAndGrowsWithDepth() throws {
    let space = SearchSpace.fashionMNIST
    let small = Architecture(
      stem: StemChoice(patchSize: 2), depths: [1, 1], widths: [24, 48],
      mixers: [.quadratic(kernelSize: 3), .gnConv(order: 2, scale: 1.0 / 3.0)], mlpRatio: 2)
    var deep = small
    deep.depths = [3, 4]
    let smallScore = try AccuracyProxy.synflow.score(try space.config(for: small), resolution: 28)
    let again = try AccuracyProxy.synflow.score(try space.config(for: small), resolution: 28)
    let deepScore = try AccuracyProxy.synflow.score(try space.config(for: deep), resolution: 28)
    #expect(smallScore.isFinite && smallScore == again)
    #expect(deepScore > smallScore)
  }
}

@Suite struct NASWOTTests {
  @Test func logDeterminantOfKnownMatrices() {
    #expect(abs(NASWOT.logAbsoluteDeterminant([[4, 2], [2, 3]]) - log(8.0)) < 1e-12)
    // Needs a row exchange; det = −2.
    #expect(abs(NASWOT.logAbsoluteDeterminant([[0, 1, 0], [1, 0, 0], [0, 0, 2]]) - log(2.0)) < 1e-12)
    #expect(NASWOT.logAbsoluteDeterminant([[1, 2], [2, 4]]) == -.infinity)
  }

  /// K = N_A − Hamming: codes 101 and 110 differ in 2 of 3 units.
  @Test func kernelOfHandWrittenCodes() {
    #expect(NASWOT.kernel(codes: [[true, false, true], [true, true, false]]) == [[3, 1], [1, 3]])
  }

  /// The recorder reads the signs of every GELU (one per image slice) and packs them 64 to a word:
  /// its kernel equals the one from explicit codes, across word boundaries.
  @Test func recorderMatchesExplicitCodes() throws {
    var generator = RandomGenerator(seed: 4)
    let x = Tensor.normal(shape: [3, 130], using: &generator)
    let y = Tensor.normal(shape: [3, 2, 5], using: &generator)
    let recorder = ActivationCodeRecorder(batch: 3)
    ComputeContext.current.with(backend: recorder).run {
      _ = x.gelu()
      _ = y.gelu()
    }
    let xs = x.scalars, ys = y.scalars
    let codes = (0..<3).map { i in xs[(i * 130)..<((i + 1) * 130)].map { $0 > 0 } + ys[(i * 10)..<((i + 1) * 10)].map { $0 > 0 } }
    #expect(recorder.kernel() == NASWOT.kernel(codes: codes))
    #expect(recorder.kernel()[0][0] == 140)
  }

  /// On a real model: deterministic, finite for distinct images, −∞ when two images are equal
  /// (two equal rows of K).
  @Test func scoreIsDeterministicAndSeesRepeatedImages() throws {
    let config = try SearchSpace.fashionMNIST.config(
      for: Architecture(
        stem: StemChoice(patchSize: 2), depths: [1, 1], widths: [24, 48],
        mixers: [.quadratic(kernelSize: 3), .gnConv(order: 2, scale: 1.0 / 3.0)], mlpRatio: 2))
    var generator = RandomGenerator(seed: 5)
    let images = Tensor.normal(shape: [8, 28, 28, 1], using: &generator)
    let score = try NASWOT.score(config, images: images)
    #expect(score.isFinite)
    #expect(try NASWOT.score(config, images: images) == score)
    var scalars = images.scalars
    for i in 0..<(28 * 28) { scalars[28 * 28 + i] = scalars[i] }
    #expect(try NASWOT.score(config, images: Tensor(shape: [8, 28, 28, 1], scalars: scalars)) == -.infinity)
    #expect(throws: SearchSpaceError.self) { try NASWOT.score(config, images: Tensor(zeros: [1, 28, 28, 1])) }
    #expect(throws: SearchSpaceError.self) { try AccuracyProxy.naswot.score(config, resolution: 28) }
  }
}

@Suite struct ZiCoTests {
  /// Hand-computed: element 0 has mean |g| 2 and σ 1, element 1 agrees across groups (σ 0: left out),
  /// element 2 has mean |g| 2.5 and σ 2.5 (signs differ, mean 0.5): 2 + 1 = 3.
  @Test func inverseCoefficientOfVariationKnownValue() {
    #expect(ZiCo.inverseCoefficientOfVariation([[1, 2, 3], [3, 2, -2]]) == 3)
    #expect(ZiCo.inverseCoefficientOfVariation([[0, 4], [0, 4]]) == 0)
    #expect(ZiCo.inverseCoefficientOfVariation([[1, 2]]) == 0)
  }

  static let config = try! SearchSpace.fashionMNIST.config(
    for: Architecture(
      stem: StemChoice(patchSize: 2), depths: [1, 1], widths: [24, 48],
      mixers: [.quadratic(kernelSize: 3), .depthwise(kernelSize: 5)], mlpRatio: 2))

  /// On a real model: deterministic, finite, the same with the two groups swapped (the statistic is
  /// symmetric in the groups), 0 when both groups are the same images (every σ is 0), and bad batches named.
  @Test func scoreIsSymmetricDeterministicAndZeroForEqualGroups() throws {
    var generator = RandomGenerator(seed: 9)
    let images = Tensor.normal(shape: [8, 28, 28, 1], using: &generator)
    let labels = [3, 1, 4, 1, 5, 9, 2, 6]
    let score = try ZiCo.score(Self.config, batch: ProxyBatch(images: images, labels: labels))
    #expect(score.isFinite && score != 0)
    #expect(try AccuracyProxy.zico.score(Self.config, resolution: 28, batch: ProxyBatch(images: images, labels: labels)) == score)
    let half = 4 * 28 * 28
    let swapped = Tensor(shape: images.shape, scalars: Array(images.scalars[half...] + images.scalars[..<half]))
    let swappedScore = try ZiCo.score(Self.config, batch: ProxyBatch(images: swapped, labels: Array(labels[4...] + labels[..<4])))
    #expect(abs(swappedScore - score) <= 1e-9 * abs(score))
    let repeated = Tensor(shape: images.shape, scalars: Array(images.scalars[..<half] + images.scalars[..<half]))
    #expect(try ZiCo.score(Self.config, batch: ProxyBatch(images: repeated, labels: Array(labels[..<4] + labels[..<4]))) == 0)

    func expectRejected(_ field: String, _ batch: ProxyBatch) {
      do {
        _ = try ZiCo.score(Self.config, batch: batch)
        Issue.record("accepted a bad \(field)")
      } catch let error as SearchSpaceError {
        #expect(error.field == field)
      } catch { Issue.record("\(error)") }
    }
    expectRejected("labels", ProxyBatch(images: images, labels: [1, 2]))
    expectRejected("labels", ProxyBatch(images: images, labels: [10] + labels.dropFirst()))
    expectRejected("images", ProxyBatch(images: Tensor(zeros: [1, 28, 28, 1]), labels: [0]))
    expectRejected("images", ProxyBatch(images: Tensor(zeros: [2, 28, 28, 3]), labels: [0, 1]))
    #expect(throws: SearchSpaceError.self) { try AccuracyProxy.zico.score(Self.config, resolution: 28) }
  }
}

@Suite struct ShortTrainingProxyTests {
  /// A tiny 8×8 network on the embedded digits: subsets disjoint and of the asked sizes, the recipe cut to
  /// one epoch, the score a validation accuracy that is deterministic and better than chance.
  @Test func scoresAValidationAccuracyDeterministically() throws {
    let training = try DatasetSplits.load(.digits).train
    let proxy = try ShortTrainingProxy(
      training: training, recipe: TrainingRecipe.defaultOptions(for: .digits), trainImages: 600, validationImages: 300,
      epochs: 2, seed: 5)
    #expect(proxy.train.count == 600 && proxy.validation.count == 300)
    #expect(proxy.options.epochs == 2 && proxy.options.warmupEpochs < TrainingRecipe.defaultOptions(for: .digits).warmupEpochs)
    let config = ModelConfig(
      name: "tiny", inputChannels: 1, classCount: 10, stemPatchSize: 2, depths: [1, 1], widths: [16, 32],
      mixers: [.quadratic(kernelSize: 3), .depthwise(kernelSize: 3)], layerScaleInit: 1, dropPathRate: 0)
    let first = try proxy.score(config)
    let second = try proxy.score(config)
    #expect(first == second)
    #expect(first > 0.2 && first <= 1, "accuracy \(first) on 10 classes")
    #expect(try AccuracyProxy.shortTraining.score(config, resolution: 8, shortTraining: proxy) == first)
  }

  @Test func rejectsSubsetsLargerThanTheSplitAndMissingData() throws {
    let training = try DatasetSplits.load(.digits).train
    #expect(throws: SearchSpaceError.self) {
      try ShortTrainingProxy(
        training: training, recipe: TrainingRecipe.defaultOptions(for: .digits), trainImages: training.count,
        validationImages: 1)
    }
    #expect(throws: SearchSpaceError.self) {
      try ShortTrainingProxy(
        training: training, recipe: TrainingRecipe.defaultOptions(for: .digits), trainImages: 100, validationImages: 50, epochs: 0)
    }
    let config = try ModelRegistry.config(named: "quadranet-digits")
    #expect(throws: SearchSpaceError.self) { try AccuracyProxy.shortTraining.score(config, resolution: 8) }
  }
}

@Suite struct BootstrapIntervalTests {
  /// Perfectly ordered pairs give ρ = 1 on every resample with two distinct points, so the interval is
  /// [1, 1]; reversed ones [−1, −1]. A constant statistic has a zero-width interval at its value.
  @Test func degenerateCasesHaveZeroWidth() throws {
    let x: [Double] = (0..<12).map(Double.init)
    let increasing = try #require(
      RankCorrelation.bootstrapInterval(count: 12) { i in RankCorrelation.spearman(i.map { x[$0] }, i.map { x[$0] * 3 }) })
    #expect(increasing == 1...1)
    let decreasing = try #require(
      RankCorrelation.bootstrapInterval(count: 12) { i in RankCorrelation.spearman(i.map { x[$0] }, i.map { -x[$0] }) })
    #expect(decreasing == -1 ... -1)
    #expect(RankCorrelation.bootstrapInterval(count: 5) { _ in 0.25 } == 0.25...0.25)
  }

  /// The interval of a mean is the percentile of resampled means: deterministic for a seed, different for
  /// another, narrower for more data, and near the normal approximation's ±1.645·σ/√n.
  @Test func meanIntervalMatchesTheNormalApproximation() throws {
    var generator = RandomGenerator(seed: 3)
    let values = (0..<400).map { _ in Double(generator.nextNormal()) }
    func interval(_ n: Int, seed: UInt64) throws -> ClosedRange<Double> {
      try #require(
        RankCorrelation.bootstrapInterval(count: n, resamples: 4000, seed: seed) { i in
          i.reduce(0) { $0 + values[$1] } / Double(i.count)
        })
    }
    let first = try interval(400, seed: 1)
    #expect(try interval(400, seed: 1) == first)
    #expect(try interval(400, seed: 2) != first)
    let mean = values.reduce(0, +) / 400
    let sd = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 399).squareRoot()
    let halfWidth = (first.upperBound - first.lowerBound) / 2
    #expect(abs(halfWidth - 1.645 * sd / 20) < 0.15 * 1.645 * sd / 20, "half width \(halfWidth), σ \(sd)")
    #expect(abs((first.lowerBound + first.upperBound) / 2 - mean) < 0.02)
    let small = try interval(25, seed: 1)
    #expect(small.upperBound - small.lowerBound > 2 * (first.upperBound - first.lowerBound))
  }

  /// Too few points, or a statistic undefined on most resamples, gives no interval.
  @Test func undefinedCases() {
    #expect(RankCorrelation.bootstrapInterval(count: 1) { _ in 1 } == nil)
    #expect(RankCorrelation.bootstrapInterval(count: 10) { _ in nil } == nil)
    #expect(RankCorrelation.bootstrapInterval(count: 10, confidence: 1) { _ in 1 } == nil)
  }
}

@Suite struct MeCoTests {
  /// A = Q·D·Qᵀ with Q = I − 2uuᵀ (a reflection, orthogonal): the eigenvalues are D's, the smallest −1.5
  /// (the solver sees a dense matrix, and a negative and a repeated eigenvalue).
  @Test func smallestEigenvalueOfAKnownDenseMatrix() {
    let d: [Double] = [3, -1.5, 0.25, 3, 7]
    let n = d.count
    let raw: [Double] = [1, -2, 0.5, 3, 1]
    let length = raw.map { $0 * $0 }.reduce(0, +).squareRoot()
    let u = raw.map { $0 / length }
    var q = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { q[i * n + j] = (i == j ? 1 : 0) - 2 * u[i] * u[j] } }
    var a = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { for k in 0..<n { a[i * n + j] += q[i * n + k] * d[k] * q[j * n + k] } } }
    #expect(abs(MeCo.smallestEigenvalue(symmetric: &a, order: n) - -1.5) < 1e-9)
    // Already tridiagonal: tridiag(−1, 2, −1) of order 6 has λ_min = 2 − 2cos(π/7).
    var t = [Double](repeating: 0, count: 36)
    for i in 0..<6 {
      t[i * 6 + i] = 2
      if i > 0 { t[i * 6 + i - 1] = -1; t[(i - 1) * 6 + i] = -1 }
    }
    #expect(abs(MeCo.smallestEigenvalue(symmetric: &t, order: 6) - (2 - 2 * cos(Double.pi / 7))) < 1e-9)
    var one: [Double] = [4]
    #expect(MeCo.smallestEigenvalue(symmetric: &one, order: 1) == 4)
  }

  /// Channels that are uncorrelated over the positions give P = I (λ_min 1); a channel that is an affine
  /// copy of another makes P singular (0); a constant channel correlates with nothing (its row is 0, so
  /// λ_min 0); no more positions than channels: 0 without computing.
  @Test func correlationEigenvalueOfHandMadeMaps() {
    // Positions × 2 channels: (1, 1), (1, −1), (−1, 1), (−1, −1): centred, orthogonal, equal variance.
    let orthogonal: [Float] = [1, 1, 1, -1, -1, 1, -1, -1]
    orthogonal.withUnsafeBufferPointer {
      #expect(abs(MeCo.minimumCorrelationEigenvalue($0, positions: 4, channels: 2) - 1) < 1e-12)
    }
    // Channel 1 = 3·channel 0 + 2; channel 2 independent of both.
    let copied: [Float] = [1, 5, 1, 2, 8, -1, 3, 11, 1, 4, 14, -1]
    copied.withUnsafeBufferPointer {
      #expect(abs(MeCo.minimumCorrelationEigenvalue($0, positions: 4, channels: 3)) < 1e-9)
    }
    let constant: [Float] = [1, 7, 2, 7, 3, 7]
    constant.withUnsafeBufferPointer {
      #expect(abs(MeCo.minimumCorrelationEigenvalue($0, positions: 3, channels: 2)) < 1e-12)
    }
    // Channels a and ½a + (√3/2)b for the orthogonal a, b above: correlation 0.5, λ_min = 1 − 0.5.
    let mixed: [Float] = (0..<4).flatMap { p -> [Float] in
      let a = orthogonal[2 * p], b = orthogonal[2 * p + 1]
      return [a, 0.5 * a + Float(0.75.squareRoot()) * b]
    }
    mixed.withUnsafeBufferPointer {
      #expect(abs(MeCo.minimumCorrelationEigenvalue($0, positions: 4, channels: 2) - 0.5) < 1e-6)
    }
    let wide = [Float](repeating: 1, count: 12)
    wide.withUnsafeBufferPointer { #expect(MeCo.minimumCorrelationEigenvalue($0, positions: 3, channels: 4) == 0) }
  }

  /// The recorder adds, per residual join, the batch mean of each image's λ_min: an image whose two
  /// channels are uncorrelated (1) and one whose channels are equal (0) give 0.5 for the join.
  @Test func recorderAveragesOverTheBatch() {
    let first: [Float] = [1, 1, 1, -1, -1, 1, -1, -1]
    let second: [Float] = [1, 1, 2, 2, 3, 3, 4, 4]
    let x = Tensor(shape: [2, 2, 2, 2], scalars: first + second)
    let zero = Tensor(zeros: [2, 2, 2, 2])
    let recorder = FeatureMapRecorder(batch: 2)
    ComputeContext.current.with(backend: recorder).run {
      _ = x.layerScaleResidual(branch: zero, scale: Tensor(zeros: [2]))
    }
    #expect(abs(recorder.total - 0.5) < 1e-9)
  }

  /// On a real model: deterministic, finite, non-negative; the proxy needs a batch; a bad batch is refused.
  @Test func scoreIsDeterministicAndValidatesItsBatch() throws {
    let config = try SearchSpace.fashionMNIST.config(
      for: Architecture(
        stem: StemChoice(patchSize: 2), depths: [1, 1], widths: [24, 48],
        mixers: [.quadratic(kernelSize: 3), .depthwise(kernelSize: 5)], mlpRatio: 2))
    var generator = RandomGenerator(seed: 6)
    let images = Tensor.normal(shape: [4, 28, 28, 1], using: &generator)
    let score = try MeCo.score(config, images: images)
    #expect(score.isFinite && score > 0)
    #expect(try MeCo.score(config, images: images) == score)
    #expect(throws: SearchSpaceError.self) { try MeCo.score(config, images: Tensor(zeros: [2, 28, 28, 3])) }
    #expect(throws: SearchSpaceError.self) { try AccuracyProxy.meco.score(config, resolution: 28) }
    #expect(AccuracyProxy.meco.needsImages)
  }
}
