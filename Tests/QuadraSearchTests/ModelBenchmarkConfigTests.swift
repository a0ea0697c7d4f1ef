import Foundation
@testable import QuadraBench
import QuadraModels
import Testing

@testable import QuadraSearch

/// `bench models` measures searched configs (a `best.json`) beside registered models:
/// ``ModelBenchmark/run(configs:options:progress:)`` must measure exactly the configs given, in order.
@Suite struct ModelBenchmarkConfigTests {
  @Test func measuresUnregisteredConfigsInOrder() throws {
    let searched = ModelConfig(
      name: "searched-tiny", inputChannels: 1, classCount: 10, stemPatchSize: 2, depths: [1, 1], widths: [8, 16],
      mixers: [.quadratic(kernelSize: 3), .depthwise(kernelSize: 3)], layerScaleInit: 1, dropPathRate: 0)
    #expect(!ModelRegistry.names.contains(searched.name))
    let registered = try ModelRegistry.config(named: "quadranet-digits")
    let options = ModelBenchmark.Options(models: [], resolution: 8, batchSize: 2, threads: 1, steps: 1)
    let (peak, results) = try ModelBenchmark.run(configs: [searched, registered], options: options)
    #expect(peak > 0)
    #expect(results.map(\.model) == [searched.name, registered.name])
    for (config, result) in zip([searched, registered], results) {
      #expect(result.params == config.parameterCount, "\(config.name)")
      #expect(result.macs == config.macs(resolution: 8), "\(config.name)")
      #expect(result.trainImagesPerSecond > 0 && result.inferImagesPerSecond > 0, "\(config.name)")
      // One timed step: the median step is that step.
      #expect(result.trainImagesPerSecondMedian == result.trainImagesPerSecond, "\(config.name)")
      #expect(result.trainFractionOfPeak > 0, "\(config.name): the fraction of peak is filled in")
      // The peak is the allocator's exact count, so the same config measured alone gives the same bytes.
      let alone = try ComputeContext(threads: 1, memory: MemoryTracker()).run {
        try ModelBenchmark.measure(config: config, options: options) { _ in }
      }
      #expect(result.trainPeakBytes == alone.trainPeakBytes && result.inferPeakBytes == alone.inferPeakBytes, "\(config.name)")
    }
    // The name-based entry point is the same measurement of the registry's configs.
    let byName = try ModelBenchmark.run(
      ModelBenchmark.Options(models: [registered.name], resolution: 8, batchSize: 2, threads: 1, steps: 1))
    #expect(byName.results.map(\.model) == [registered.name])
    #expect(byName.results[0].trainPeakBytes == results[1].trainPeakBytes)
  }

  /// The median is the middle step, the upper of the middle two for an even count (as `scripts/torch_bench.py`).
  @Test func medianTakesTheUpperMiddleValue() {
    #expect(ModelBenchmark.median([0.3, 0.1, 0.2]) == 0.2)
    #expect(ModelBenchmark.median([0.4, 0.1, 0.3, 0.2]) == 0.3)
    #expect(ModelBenchmark.median([5]) == 5)
  }
}
