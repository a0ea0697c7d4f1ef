import Foundation
import QuadraModels
import Testing

@testable import QuadraSearch

@Suite struct PartCostTableTests {
  /// A space small enough to profile part by part in a test: 2 stages, one depth, two widths per
  /// stage, a quadratic and a depthwise mixer, one MLP ratio.
  static let tinySpace = SearchSpace(
    name: "tiny", resolution: 16, inputChannels: 1, classCount: 4, stageCounts: [1, 2], stems: [StemChoice(patchSize: 2)],
    stages: [
      StageChoices(depths: [1, 2], widths: [8, 16], mixers: [.quadratic(kernelSize: 3), .depthwise(kernelSize: 3)]),
      StageChoices(depths: [1], widths: [16], mixers: [.gnConv(order: 2, scale: 1.0 / 3.0)]),
    ],
    mlpRatios: [2], layerScaleInit: 1, weightInitialization: .fanInScaled(gain: 1))

  /// A network is its stem, one downsampling per later stage, its blocks and the head; every part of
  /// every architecture of a space is among the space's parts.
  @Test func networksDecomposeIntoTheSpacesParts() throws {
    var generator = RandomGenerator(seed: 8)
    for space in [SearchSpace.fashionMNIST, .imageNet, Self.tinySpace] {
      let keys = Set(NetworkPart.parts(of: space).map(\.key))
      #expect(keys.count == NetworkPart.parts(of: space).count)
      for _ in 0..<40 {
        let config = try space.config(for: space.randomArchitecture(using: &generator))
        let parts = NetworkPart.parts(of: config, resolution: space.resolution)
        #expect(parts.count == 1 + (config.depths.count - 1) + config.depths.reduce(0, +) + 1)
        for part in parts { #expect(keys.contains(part.key), "\(part.key) of \(config.name) is not in \(space.name)'s parts") }
      }
    }
    // The tiny space: stems 2 widths, blocks 2 mixers × 2 widths + 1, downsamplings 2, heads 2 + 1.
    #expect(NetworkPart.parts(of: Self.tinySpace).count == 2 + 5 + 2 + 3)
  }

  /// With synthetic part times, predictions are Σ_kinds,stages a·Σ + b·parts + c, and the fit recovers the a
  /// (one per kind of part in the first stage and one in the later stages), b and c from whole-network times
  /// made that way.
  @Test func predictionsComposeAndTheOverheadFitRecoversTheMaps() throws {
    let space = SearchSpace.fashionMNIST
    var parts: [String: PartCost] = [:]
    for (index, part) in NetworkPart.parts(of: space).enumerated() {
      let t = 1e-3 * Double(1 + index % 17)
      parts[part.key] = PartCost(train: 3 * t, inferBatch1: t / 10, inferBatch: t)
    }
    let sum = PartCostTable.unfitted
    var table = PartCostTable(parts: parts, train: sum, inferBatch1: sum, inferBatch: sum)
    var generator = RandomGenerator(seed: 9)
    let configs = try (0..<30).map { _ in try space.config(for: space.randomArchitecture(using: &generator)) }
    // Inside a network, first-stage gnConv blocks run 1.3× their time alone and later ones 1.4×; the other
    // kinds 1.2× / 1.25×, 1.1× / 1.15× and 1.05× / 1.0×.
    let truth = [1.2, 1.25, 1.3, 1.4, 1.1, 1.15, 1.05, 1.0, 2e-4, 5e-3]
    #expect(PartCostTable.featureNames.count == truth.count)
    let batch = 8
    var measurements: [ArchitectureMeasurement] = []
    for config in configs {
      let list = NetworkPart.parts(of: config, resolution: 28)
      let sums = list.reduce((0.0, 0.0, 0.0)) { total, part in
        let cost = parts[part.key]!
        return (total.0 + cost.train, total.1 + cost.inferBatch1, total.2 + cost.inferBatch)
      }
      #expect(abs(table.predict(config, resolution: 28)!.train - sums.0) < 1e-12)
      let features = table.features(of: config, resolution: 28)!
      #expect(features.train.values[PartCostTable.partFeatureCount] == Double(list.count))
      // The first stage's parts and the later ones' add up to all of them.
      #expect(abs(features.train.values[0..<PartCostTable.partFeatureCount].reduce(0, +) - sums.0) < 1e-12)
      let firstStageBlocks = list.prefix { if case .downsample = $0 { false } else { true } }.reduce(0.0) { total, part in
        if case .block = part { total + parts[part.key]!.train } else { total }
      }
      #expect(abs(features.train.values[0] + features.train.values[2] + features.train.values[4] - firstStageBlocks) < 1e-12)
      func make(_ f: CostFeatures) -> Double { zip(f.values, truth).reduce(0) { $0 + $1.0 * $1.1 } }
      measurements.append(
        ArchitectureMeasurement(
          architecture: try space.architecture(of: config), trainSecondsPerImage: make(features.train) / Double(batch),
          inferSecondsBatch1: make(features.inferBatch1), inferSecondsPerImage: make(features.inferBatch) / Double(batch),
          trainPeakBytes: 1, inferPeakBytes: 1))
    }
    table.fitOverheads(configs: configs, measurements: measurements, resolution: 28, batchSize: batch)
    for map in [table.train, table.inferBatch1, table.inferBatch] {
      for (fitted, expected) in zip(map.coefficients, truth) {
        #expect(abs(fitted - expected) < 1e-4 * expected, "\(map.coefficients) ≠ \(truth)")
      }
    }
    #expect(table.isWellFormed)
    // An architecture with a part the table lacks falls back to the linear model.
    var model = CostModel.analytic(batchSize: batch, threads: 1)
    model.table = table
    var outside = configs[0]
    outside.widths[0] = 8
    #expect(table.predict(outside, resolution: 28) == nil)
    for source in LatencySource.allCases {
      #expect(model.latencies(outside, resolution: 28, source: source) == model.latencies(outside, resolution: 28, source: .linear))
    }
    let inside = model.latencies(configs[0], resolution: 28, source: .table)
    #expect(abs(inside.trainPerImage - measurements[0].trainSecondsPerImage) < 1e-9)
    // The default is the table; `combined` is the geometric mean of the two for the training step and
    // batched inference, the table alone at batch 1.
    #expect(model.latencies(configs[0], resolution: 28) == inside)
    let linear = model.latencies(configs[0], resolution: 28, source: .linear)
    let combined = model.latencies(configs[0], resolution: 28, source: .combined)
    #expect(linear.trainPerImage > 0 && abs(linear.trainPerImage / inside.trainPerImage - 1) > 0.01, "the two differ")
    #expect(abs(combined.trainPerImage - (inside.trainPerImage * linear.trainPerImage).squareRoot()) < 1e-15)
    #expect(abs(combined.inferPerImage - (inside.inferPerImage * linear.inferPerImage).squareRoot()) < 1e-15)
    #expect(combined.inferBatch1 == inside.inferBatch1)
    // A model recorded before the source existed (a resumed search state) predicts as it did: from the table.
    var object = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(model)) as? [String: Any])
    #expect(object.removeValue(forKey: "latencySource") != nil)
    let recorded = try JSONDecoder().decode(CostModel.self, from: JSONSerialization.data(withJSONObject: object))
    #expect(recorded.latencySource == nil && recorded.effectiveLatencySource == .table)
    #expect(recorded.latencies(configs[0], resolution: 28) == inside)
  }

  /// With fewer architectures than twice the ten per-kind coefficients, the map has one `a` for all
  /// kinds and stages and predicts every architecture a positive time (an underdetermined per-kind fit could
  /// zero the coefficients an architecture uses: `tinySpaceProfileMeasuresEveryPart` once predicted 0 ms).
  @Test func fewArchitecturesFitOneFactorForAllKinds() {
    // Four architectures: times 1.1 · (sum of the parts) + 1 ms per part, ±3% noise.
    let rows = [
      CostFeatures(values: [0.010, 0, 0, 0, 0.004, 0, 0.0005, 0.0005, 6, 1]),
      CostFeatures(values: [0, 0, 0.012, 0.008, 0, 0, 0.001, 0.001, 8, 1]),
      CostFeatures(values: [0.005, 0, 0, 0.005, 0, 0.005, 0.0005, 0.0005, 9, 1]),
      CostFeatures(values: [0, 0, 0, 0, 0.010, 0.020, 0.001, 0.002, 7, 1]),
    ]
    let n = PartCostTable.partFeatureCount
    let noise = [1.03, 0.97, 1.02, 0.98]
    let seconds = zip(rows, noise).map { row, factor in
      (1.1 * row.values[0..<n].reduce(0, +) + 0.001 * row.values[n]) * factor
    }
    let map = PartCostTable.fitMap(rows, seconds: seconds)
    #expect(Set(map.coefficients[0..<n]).count == 1, "\(map.coefficients)")
    for (row, time) in zip(rows, seconds) {
      #expect(map.predict(row) > 0 && abs(map.predict(row) - time) / time < 0.1, "\(map.predict(row)) vs \(time)")
    }
  }

  /// A real profile of the tiny space: every part measured (positive times), the table used for prediction.
  @Test func tinySpaceProfileMeasuresEveryPart() throws {
    let options = Profiler.Options(samples: 4, repetitions: 1, batchSize: 2, threads: 1)
    var lines = 0
    let profile = try Profiler.profile(space: Self.tinySpace, hardware: ProfileCacheTests.hardware, options: options) { _ in
      lines += 1
    }
    let table = try #require(profile.costModel.table)
    #expect(lines == 12 + 4)
    #expect(table.parts.count == 12)
    #expect(table.parts.values.allSatisfy { $0.train > 0 && $0.inferBatch1 > 0 && $0.inferBatch > 0 })
    #expect(table.isWellFormed)
    for measurement in profile.measurements {
      let config = try Self.tinySpace.config(for: measurement.architecture)
      let predicted = try profile.costModel.predict(config, resolution: 16)
      for time in [predicted.trainMillisecondsPerImage, predicted.inferMillisecondsBatch1, predicted.inferMillisecondsPerImage] {
        #expect(time > 0 && time.isFinite, "\(config.name): \(predicted)")
      }
    }
  }
}
