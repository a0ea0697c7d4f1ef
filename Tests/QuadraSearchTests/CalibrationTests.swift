import Foundation
import QuadraModels
import Testing

@testable import QuadraSearch

@Suite struct CalibrationTests {
  /// `search calibrate` lists the architectures the model predicts worst: largest |relative error|
  /// first, whatever its sign, with the predicted and measured values of the metric.
  @Test func worstPredictedAreTheLargestRelativeErrors() throws {
    var generator = RandomGenerator(seed: 4)
    let space = SearchSpace.fashionMNIST
    // Measured 10 ms per step (batch 2 → 5 ms per image); predicted off by the listed fractions.
    let errors = [0.02, -0.30, 0.10, 0.25, -0.05]
    let measurements = errors.map { _ in
      ArchitectureMeasurement(
        architecture: space.randomArchitecture(using: &generator), trainSecondsPerImage: 0.005, inferSecondsBatch1: 0.001,
        inferSecondsPerImage: 0.002, trainPeakBytes: 1000, inferPeakBytes: 100)
    }
    let predictions = errors.map { error in
      PredictedCosts(
        trainMillisecondsPerImage: 5 * (1 + error), inferMillisecondsBatch1: 1, inferMillisecondsPerImage: 2,
        trainMemoryBytes: 1000, inferMemoryBytes: 100, parameters: 1, macs: 1)
    }
    let report = CalibrationReport(
      hardware: ProfileCacheTests.hardware, measurements: measurements, predictions: predictions, batchSize: 2)
    let worst = report.worstPredicted("train_step", count: 3, batchSize: 2)
    #expect(worst.map(\.index) == [1, 3, 2])
    #expect(abs(worst[0].relativeError + 0.30) < 1e-12)
    #expect(abs(worst[0].measured - 10) < 1e-12 && abs(worst[0].predicted - 7) < 1e-12)
    #expect(report.worstPredicted("train_memory", count: 3, batchSize: 2).allSatisfy { $0.relativeError == 0 })
    #expect(report.worstPredicted("no such metric", count: 3, batchSize: 2).isEmpty)
  }
}
