import Foundation
import QuadraCore
import QuadraModels
import Testing

@testable import QuadraSearch

@Suite struct MeasurementRoundsTests {
  @Test func medianOfRoundsPerQuantity() throws {
    let costs = [
      PartCost(train: 3, inferBatch1: 0.1, inferBatch: 5), PartCost(train: 1, inferBatch1: 0.3, inferBatch: 4),
      PartCost(train: 2, inferBatch1: 0.2, inferBatch: 9),
    ]
    #expect(PartCost.median(costs) == PartCost(train: 2, inferBatch1: 0.2, inferBatch: 5))
    // An even count: the mean of the middle two.
    #expect(PartCost.median(Array(costs.prefix(2))) == PartCost(train: 2, inferBatch1: 0.2, inferBatch: 4.5))
    #expect(PartCost.median([]) == nil)
  }

  /// Two tiny architectures in three passes: every pass recorded, the reported time is their median,
  /// progress counts every timed configuration, and the peaks are those of one pass.
  @Test func roundsAreRecordedAndTheirMedianReported() throws {
    let space = SearchSpace.fashionMNIST
    var generator = RandomGenerator(seed: 9)
    let configs = try (0..<2).map { _ in try space.config(for: space.randomArchitecture(using: &generator)) }
    var progress: [Int] = []
    let measured = try Profiler.measure(
      configs, resolution: 28, batchSize: 2, threads: 1, repetitions: 1, rounds: 3
    ) { done, total in
      #expect(total == 6)
      progress.append(done)
    }
    #expect(progress == Array(1...6))
    for measurement in measured {
      #expect(measurement.rounds.count == 3)
      let median = try #require(PartCost.median(measurement.rounds))
      #expect(measurement.trainSecondsPerImage == median.train / 2)
      #expect(measurement.inferSecondsPerImage == median.inferBatch / 2)
      #expect(measurement.inferSecondsBatch1 == median.inferBatch1)
      #expect(measurement.rounds.allSatisfy { $0.train > 0 && $0.inferBatch > 0 && $0.inferBatch1 > 0 })
      #expect(measurement.trainPeakBytes > 0 && measurement.inferPeakBytes > 0)
    }
  }

  @Test func repeatabilityComparesEachPassWithTheMedian() throws {
    func measurement(_ trains: [Double]) -> ConfigMeasurement {
      ConfigMeasurement(
        trainSecondsPerImage: 0, inferSecondsBatch1: 0, inferSecondsPerImage: 0, trainPeakBytes: 0, inferPeakBytes: 0,
        rounds: trains.map { PartCost(train: $0, inferBatch1: 1, inferBatch: 1) })
    }
    // Medians 1.0 and 2.0; the passes off by 0, 0, +30% and −4%, 0, +8%.
    let metrics = CalibrationReport.repeatability(of: [measurement([1, 1, 1.3]), measurement([1.92, 2, 2.16])])
    let train = try #require(metrics["train_step"])
    #expect(abs(train.within5 - 4.0 / 6) < 1e-12)
    #expect(abs(train.within10 - 5.0 / 6) < 1e-12)
    #expect(abs(train.rmspe - ((0.09 + 0.0016 + 0.0064) / 6).squareRoot() * 100) < 1e-9)
    #expect(metrics["infer_batch1"]?.within5 == 1)
  }
}

@Suite struct SpeedReferenceTests {
  @Test func referenceIsTheSameMidSizedNetworkInEveryProcess() throws {
    let space = SearchSpace.fashionMNIST
    let reference = try SpeedReference.config(for: space)
    #expect(try SpeedReference.config(for: space) == reference)
    // The median of nine draws by MACs: at least five of the same draws are no dearer, five no cheaper.
    var generator = RandomGenerator(seed: 0x5EED)
    let macs = try (0..<9).map { _ in
      try space.config(for: space.randomArchitecture(using: &generator)).macs(resolution: space.resolution)
    }
    let own = reference.macs(resolution: space.resolution)
    #expect(macs.filter { $0 <= own }.count >= 5 && macs.filter { $0 >= own }.count >= 5)
  }

  @Test func timesAreScaledByBaselineOverLevelPerQuantity() throws {
    let baseline = PartCost(train: 1, inferBatch1: 0.5, inferBatch: 2)
    let reference = try SpeedReference(space: .fashionMNIST, batchSize: 2, threads: 1, baseline: baseline)
    let scaled = reference.scaled(
      PartCost(train: 0.3, inferBatch1: 0.02, inferBatch: 0.1), at: PartCost(train: 2, inferBatch1: 0.25, inferBatch: 2))
    #expect(abs(scaled.train - 0.15) < 1e-15)
    #expect(abs(scaled.inferBatch1 - 0.04) < 1e-15)
    #expect(abs(scaled.inferBatch - 0.1) < 1e-15)
  }

  /// The level is the median of the last five readings; a reading younger than the interval is reused;
  /// without a given baseline the first level becomes it.
  @Test func levelIsTheMedianOfRecentReadings() throws {
    let everyCall = try SpeedReference(space: .fashionMNIST, batchSize: 2, threads: 1, readingInterval: 0)
    var levels: [PartCost] = []
    for _ in 0..<7 { levels.append(try everyCall.level(repetitions: 1, minimumSeconds: 0)) }
    #expect(everyCall.readings.count == 7)
    #expect(levels.last == PartCost.median(Array(everyCall.readings.suffix(5))))
    #expect(everyCall.baseline == everyCall.readings[0])

    let once = try SpeedReference(space: .fashionMNIST, batchSize: 2, threads: 1, readingInterval: 3600)
    let first = try once.level(repetitions: 1, minimumSeconds: 0)
    #expect(try once.level(repetitions: 1, minimumSeconds: 0) == first)
    #expect(once.readings.count == 1)
  }

  /// Measured beside a reference whose level equals its baseline, the times are the clock's; the
  /// reference read once for the whole measurement (a long interval).
  @Test func measurementBesideTheReferenceReadsItAndKeepsEveryRound() throws {
    let space = SearchSpace.fashionMNIST
    let reference = try SpeedReference(space: space, batchSize: 2, threads: 1, readingInterval: 3600)
    var generator = RandomGenerator(seed: 9)
    let configs = try (0..<2).map { _ in try space.config(for: space.randomArchitecture(using: &generator)) }
    let measured = try Profiler.measure(
      configs, resolution: 28, batchSize: 2, threads: 1, repetitions: 1, rounds: 2, reference: reference)
    #expect(reference.readings.count == 1)
    #expect(reference.baseline == reference.readings[0])
    for measurement in measured {
      #expect(measurement.rounds.count == 2)
      #expect(measurement.rounds.allSatisfy { $0.train > 0 && $0.inferBatch > 0 && $0.inferBatch1 > 0 })
    }
  }
}
