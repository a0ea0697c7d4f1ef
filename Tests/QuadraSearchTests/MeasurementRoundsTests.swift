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
  @Test func referenceIsTheSameCheapNetworkInEveryProcess() throws {
    let space = SearchSpace.fashionMNIST
    let reference = try SpeedReference.config(for: space)
    #expect(try SpeedReference.config(for: space) == reference)
    // The cheapest of nine draws by MACs, its stages cut to their smallest depths.
    var generator = RandomGenerator(seed: 0x5EED)
    let architectures = (0..<9).map { _ in space.randomArchitecture(using: &generator) }
    let macs = try architectures.map { try space.config(for: $0).macs(resolution: space.resolution) }
    var cheapest = architectures[macs.firstIndex(of: macs.min()!)!]
    #expect(reference.depths.enumerated().allSatisfy { $0.element == space.stages[$0.offset].depths.min() })
    cheapest.depths = reference.depths
    #expect(try space.config(for: cheapest) == reference)
    #expect(reference.macs(resolution: space.resolution) <= macs.min()!)
  }

  /// A workload timed beside the reference with a given baseline is reported as its ratio to the
  /// reference times the baseline: the same network as the reference comes out at the baseline
  /// (within the windows' noise), whatever the machine's speed; without a baseline, the reference's
  /// time during the first measurement becomes it, and each measurement adds one reading.
  @Test func aWorkloadIsReportedAsItsRatioToTheReferenceTimesTheBaseline() throws {
    let space = SearchSpace.fashionMNIST
    let baseline = PartCost(train: 1, inferBatch1: 0.5, inferBatch: 2)
    let scaled = try SpeedReference(space: space, batchSize: 2, threads: 1, baseline: baseline)
    let twin = try TimedWorkload.network(try SpeedReference.config(for: space), resolution: 28, batchSize: 2)
    let time = try scaled.time(twin, repetitions: 9, minimumSeconds: 0.02)
    // Two identical networks alternated: the median ratio is 1 up to timing noise (a factor of two is
    // far beyond it; a time in seconds rather than on the baseline's scale would be 100–1000× off).
    for (measured, expected) in [(time.train, 1.0), (time.inferBatch1, 0.5), (time.inferBatch, 2.0)] {
      #expect(measured > expected / 2 && measured < expected * 2)
    }
    #expect(scaled.baseline == baseline)
    #expect(scaled.readings.count == 1)

    let unscaled = try SpeedReference(space: space, batchSize: 2, threads: 1)
    var generator = RandomGenerator(seed: 9)
    let other = try space.config(for: space.randomArchitecture(using: &generator))
    _ = try unscaled.time(try TimedWorkload.network(other, resolution: 28, batchSize: 2), repetitions: 1, minimumSeconds: 0)
    _ = try unscaled.time(try TimedWorkload.network(other, resolution: 28, batchSize: 2), repetitions: 1, minimumSeconds: 0)
    #expect(unscaled.readings.count == 2)
    #expect(unscaled.baseline == unscaled.readings[0])
  }

  /// Paired timing of a workload whose calls cost a known multiple of the reference's: the ratio recovers
  /// it, and the reference's median time is its own.
  @Test func pairedTimingRecoversTheRatioOfTwoWorkloads() throws {
    func spin(_ seconds: Double) -> () -> Void {
      {
        let end = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while DispatchTime.now().uptimeNanoseconds < end {}
      }
    }
    func workload(_ seconds: Double) -> TimedWorkload {
      TimedWorkload(
        trainStep: spin(seconds * 3), inferBatch: spin(seconds * 2), inferBatch1: spin(seconds), setTraining: { _ in })
    }
    let context = ComputeContext.current.with(memory: MemoryTracker())
    let paired = try workload(0.002).time(repetitions: 9, minimumSeconds: 0, beside: workload(0.001), in: context)
    // Busy-waiting only ever overshoots its deadline: each ratio is 2 ms over 1 ms, the median over
    // nine windows tolerant of preempted calls in up to four (other tests run on the same cores).
    for ratio in [paired.ratio.train, paired.ratio.inferBatch, paired.ratio.inferBatch1] {
      #expect(ratio > 1.3 && ratio < 3.5)
    }
    #expect(paired.reference.inferBatch1 >= 0.001 && paired.reference.train >= 0.003 && paired.reference.inferBatch >= 0.002)
  }

  /// Anchoring re-measures the profile's architectures and multiplies the reference's baseline by
  /// stored ÷ now per quantity: a profile that stored times 3×, 4× and 0.5× what they measure now moves the
  /// baseline by about those factors (later measurements come out that much slower); no anchors, no change.
  @Test func anchoringPutsTheReferenceOnTheProfilesScale() throws {
    let space = SearchSpace.fashionMNIST
    let baseline = PartCost(train: 0.02, inferBatch1: 0.001, inferBatch: 0.01)
    let reference = try SpeedReference(space: space, batchSize: 2, threads: 1, baseline: baseline)
    var generator = RandomGenerator(seed: 11)
    let architectures = (0..<3).map { _ in space.randomArchitecture(using: &generator) }
    let now = try Profiler.measure(
      architectures, space: space, batchSize: 2, threads: 1, repetitions: 3, minimumSeconds: 0.01, rounds: 1,
      reference: reference)
    let stored = now.map { measurement in
      var scaled = measurement
      scaled.trainSecondsPerImage *= 3
      scaled.inferSecondsBatch1 *= 4
      scaled.inferSecondsPerImage *= 0.5
      return scaled
    }
    var profile = ProfileCacheTests.profile(ProfileCacheTests.hardware)
    profile.costModel = .analytic(batchSize: 2, threads: 1)
    profile.measurements = stored

    let none = try Profiler.anchor(reference, to: profile, space: space, count: 0, repetitions: 1, minimumSeconds: 0, rounds: 1)
    #expect(none == PartCost(train: 1, inferBatch1: 1, inferBatch: 1))
    #expect(reference.baseline == baseline)

    let factors = try Profiler.anchor(
      reference, to: profile, space: space, count: 3, repetitions: 3, minimumSeconds: 0.01, rounds: 1)
    // The same networks timed twice beside the same reference agree far better than within 1.6×
    // (an inverted ratio would give 1/3, 1/4 and 2).
    for (factor, expected) in [(factors.train, 3.0), (factors.inferBatch1, 4.0), (factors.inferBatch, 0.5)] {
      #expect(factor > expected / 1.6 && factor < expected * 1.6)
    }
    #expect(reference.baseline == baseline.multiplied(by: factors))
  }

  /// Measured beside a reference, every round is kept and the reference read once per measurement.
  @Test func measurementBesideTheReferenceReadsItAndKeepsEveryRound() throws {
    let space = SearchSpace.fashionMNIST
    let reference = try SpeedReference(space: space, batchSize: 2, threads: 1)
    var generator = RandomGenerator(seed: 9)
    let configs = try (0..<2).map { _ in try space.config(for: space.randomArchitecture(using: &generator)) }
    let measured = try Profiler.measure(
      configs, resolution: 28, batchSize: 2, threads: 1, repetitions: 1, rounds: 2, reference: reference)
    #expect(reference.readings.count == 4)
    #expect(reference.baseline == reference.readings[0])
    for measurement in measured {
      #expect(measurement.rounds.count == 2)
      #expect(measurement.rounds.allSatisfy { $0.train > 0 && $0.inferBatch > 0 && $0.inferBatch1 > 0 })
    }
  }
}
