import Foundation
import QuadraModels
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
