import Foundation
import QuadraBench
import QuadraModels
import Testing

@testable import QuadraSearch

@Suite struct CostModelTests {
  /// The MAC features split the model's MACs without loss or double counting.
  @Test func macFeaturesSumToTheModelsMACs() throws {
    var generator = RandomGenerator(seed: 3)
    for space in SearchSpace.builtIn.values {
      for _ in 0..<50 {
        let config = try space.config(for: space.randomArchitecture(using: &generator))
        let features = CostFeatures(config: config, resolution: space.resolution)
        #expect(features.values[0..<7].reduce(0, +) == Double(config.macs(resolution: space.resolution)))
        #expect(features.values[8] == Double(config.depths.reduce(0, +)))
      }
    }
  }

  /// Composition: times made from known per-feature costs are fitted back to those costs, and the
  /// fitted model predicts unseen architectures exactly.
  @Test func fitRecoversKnownCoefficientsAndComposes() throws {
    let truth: [Double] = [2e-11, 3e-11, 1e-11, 1.5e-11, 6e-11, 2.5e-11, 5e-11, 1e-10, 3e-5, 2e-4]
    let space = SearchSpace.fashionMNIST
    var generator = RandomGenerator(seed: 11)
    func sample() throws -> CostFeatures {
      CostFeatures(config: try space.config(for: space.randomArchitecture(using: &generator)), resolution: 28)
    }
    let training = try (0..<60).map { _ in try sample() }
    let model = LatencyModel.fit(features: training, seconds: training.map { LatencyModel(coefficients: truth).predict($0) })
    for _ in 0..<20 {
      let unseen = try sample()
      let expected = LatencyModel(coefficients: truth).predict(unseen)
      #expect(abs(model.predict(unseen) - expected) / expected < 1e-6)
    }
  }

  @Test func fitKeepsCoefficientsNonNegative() {
    // Time falls with feature 0 in this synthetic data: the unconstrained fit would make it negative.
    let features = (1...12).map { i in
      CostFeatures(values: [Double(i), Double(i % 3), 0, 0, 0, 0, 0, 0, 0, 1])
    }
    let seconds = (1...12).map { i in 10 - 0.1 * Double(i) + Double(i % 3) }
    let model = LatencyModel.fit(features: features, seconds: seconds)
    #expect(model.coefficients.allSatisfy { $0 >= 0 })
  }

}

@Suite struct ProfileCacheTests {
  static let hardware = HardwareFingerprint(
    cpuModel: "Test CPU", vectorISA: "avx512", threads: 2, peakGFLOPS: 100, buildMode: "release")

  static func profile(_ hardware: HardwareFingerprint) -> CostProfile {
    CostProfile(
      formatVersion: CostProfile.formatVersion, hardware: hardware, space: "fashion-mnist", resolution: 28,
      costModel: .analytic(batchSize: 8, threads: 2), measurements: [],
      speedBaseline: PartCost(train: 0.01, inferBatch1: 0.001, inferBatch: 0.005))
  }

  @Test func matchingCacheIsUsedAndMismatchingOrCorruptOnesAreRebuiltWithAWarning() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("search-cache-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let space = SearchSpace.fashionMNIST
    let url = Profiler.cacheURL(directory: directory, space: space, batchSize: 8, threads: 2)
    let none = Profiler.cached(at: url, hardware: Self.hardware, space: space, batchSize: 8)
    #expect(none.profile == nil && none.warning == nil)

    try Profiler.save(Self.profile(Self.hardware), to: url)
    // A peak within the tolerance is the same machine.
    var noisy = Self.hardware
    noisy.peakGFLOPS = 110
    #expect(Profiler.cached(at: url, hardware: noisy, space: space, batchSize: 8).profile == Self.profile(Self.hardware))

    var others: [HardwareFingerprint] = []
    for change in 0..<5 {
      var other = Self.hardware
      switch change {
      case 0: other.cpuModel = "Other CPU"
      case 1: other.vectorISA = "avx2"
      case 2: other.threads = 1
      case 3: other.buildMode = "debug"
      default: other.peakGFLOPS = 50
      }
      others.append(other)
    }
    for other in others {
      let result = Profiler.cached(at: url, hardware: other, space: space, batchSize: 8)
      #expect(result.profile == nil)
      #expect(result.warning?.contains("other hardware") == true)
    }
    #expect(Profiler.cached(at: url, hardware: Self.hardware, space: space, batchSize: 16).profile == nil)

    // A profile saved without a latency source, or with another, is used with this version's source.
    for recorded in [nil, LatencySource.combined, .linear] {
      var older = Self.profile(Self.hardware)
      older.costModel.latencySource = recorded
      try Profiler.save(older, to: url)
      #expect(
        Profiler.cached(at: url, hardware: Self.hardware, space: space, batchSize: 8).profile?.costModel.latencySource
          == CostModel.profileLatencySource)
    }

    try Data("{\"formatVersion\": 1, ".utf8).write(to: url)
    let corrupt = Profiler.cached(at: url, hardware: Self.hardware, space: space, batchSize: 8)
    #expect(corrupt.profile == nil)
    #expect(corrupt.warning?.contains("not a readable profile") == true)

    // A cache file over the size limit (sparse here) is not read into memory, only reported and rebuilt.
    let handle = try FileHandle(forWritingTo: url)
    try handle.truncate(atOffset: UInt64(CostProfile.maximumFileBytes + 1))
    try handle.close()
    let huge = Profiler.cached(at: url, hardware: Self.hardware, space: space, batchSize: 8)
    #expect(huge.profile == nil)
    #expect(huge.warning?.contains("at most \(CostProfile.maximumFileBytes) are accepted") == true, "\(huge.warning ?? "")")
  }

  /// A peak that reads low (a core busy during the measurement) is measured again before a cached profile is
  /// thrown away; one that stays low, or any other mismatch, still rebuilds it.
  @Test func lowPeakIsMeasuredAgainBeforeTheCacheIsRejected() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("search-cache-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let space = SearchSpace.fashionMNIST
    let url = Profiler.cacheURL(directory: directory, space: space, batchSize: 8, threads: 2)
    try Profiler.save(Self.profile(Self.hardware), to: url)

    // Half the recorded peak, then the full one on the second reading: the cache is used.
    var readings = [50.0, 99.0]
    var hardware = Self.hardware
    hardware.peakGFLOPS = 45
    let recovered = Profiler.cached(at: url, hardware: &hardware, space: space, batchSize: 8) { readings.removeFirst() }
    #expect(recovered.profile == Self.profile(Self.hardware) && recovered.warning == nil)
    #expect(hardware.peakGFLOPS == 99 && readings.isEmpty)

    // Low every time: measured `remeasurements` times, then rebuilt with the warning.
    var calls = 0
    hardware.peakGFLOPS = 45
    let slow = Profiler.cached(at: url, hardware: &hardware, space: space, batchSize: 8, remeasurements: 3) {
      calls += 1
      return 40
    }
    #expect(slow.profile == nil && slow.warning?.contains("FMA peak") == true && calls == 3)
    #expect(hardware.peakGFLOPS == 45)

    // A higher peak or another CPU is not a low reading: no second measurement.
    for change in 0..<2 {
      var other = Self.hardware
      if change == 0 { other.peakGFLOPS = 200 } else { other.cpuModel = "Other CPU"; other.peakGFLOPS = 45 }
      var measured = false
      let result = Profiler.cached(at: url, hardware: &other, space: space, batchSize: 8) {
        measured = true
        return 100
      }
      #expect(result.profile == nil && !measured)
    }
  }

  /// A tiny real profile: two architectures measured in two rounds, the models fitted with non-negative
  /// coefficients.
  @Test func tinyProfileMeasuresAndFits() throws {
    let options = Profiler.Options(
      samples: 2, repetitions: 1, batchSize: 2, threads: 1, measuresParts: false, rounds: 2)
    var lines = 0
    let profile = try Profiler.profile(space: .fashionMNIST, hardware: Self.hardware, options: options) { _ in lines += 1 }
    #expect(lines == 4)
    #expect(profile.speedBaseline.train > 0 && profile.speedBaseline.inferBatch1 > 0 && profile.speedBaseline.inferBatch > 0)
    #expect(profile.costModel.table == nil)
    #expect(profile.measurements.count == 2)
    for measurement in profile.measurements {
      #expect(measurement.trainSecondsPerImage > 0 && measurement.inferSecondsBatch1 > 0 && measurement.trainPeakBytes > 0)
    }
    #expect(profile.costModel.trainPerImage.coefficients.allSatisfy { $0 >= 0 })
  }
}
