import Foundation
import QuadraBench
import QuadraModels
import Testing

@testable import QuadraCore
@testable import QuadraSearch

/// The memory model replays the benchmark under the ``QuadraCore/MetaBackend``: its predictions must
/// equal the tracking allocator's measured peaks byte for byte.
@Suite struct MemoryModelTests {
  /// Measures `config` for real (two timed steps, so the peak is the steady state's) and compares.
  static func expectExact(_ config: ModelConfig, batchSize: Int, resolution: Int, threads: Int) throws {
    let training = ModelBenchmark.Options(
      models: [], resolution: resolution, batchSize: batchSize, threads: threads, steps: 2)
    var inference = training
    inference.batchSize = 1
    inference.measuresTraining = false
    func measured(_ options: ModelBenchmark.Options) throws -> ModelResult {
      try ComputeContext(threads: threads, memory: MemoryTracker()).run {
        try ModelBenchmark.measure(config: config, options: options) { _ in }
      }
    }
    let train = try measured(training).trainPeakBytes
    let infer = try measured(inference).inferPeakBytes
    let predictedTrain = try MemoryModel.trainingPeakBytes(
      config: config, batchSize: batchSize, resolution: resolution, threads: threads)
    let predictedInfer = try MemoryModel.inferencePeakBytes(
      config: config, batchSize: 1, resolution: resolution, threads: threads)
    #expect(predictedTrain == train, "\(config.name): training peak predicted \(predictedTrain), measured \(train)")
    #expect(predictedInfer == infer, "\(config.name): inference peak predicted \(predictedInfer), measured \(infer)")
    // The closed-form bound that scoring uses must never be below the exact peaks.
    let bound = MemoryModel.upperBound(config: config, batchSize: batchSize, resolution: resolution)
    #expect(bound.trainingBytes >= train, "\(config.name): training bound \(bound.trainingBytes) < measured \(train)")
    let inferenceBound = MemoryModel.upperBound(config: config, batchSize: 1, resolution: resolution)
    #expect(inferenceBound.inferenceBytes >= infer, "\(config.name): inference bound \(inferenceBound.inferenceBytes) < measured \(infer)")
  }

  /// 14 random architectures of the fashion-mnist space at its resolution, batch 4, 2 threads.
  @Test func fashionMNISTPredictionsEqualMeasuredPeaks() throws {
    let space = SearchSpace.fashionMNIST
    var generator = RandomGenerator(seed: 21)
    for _ in 0..<14 {
      let config = try space.config(for: space.randomArchitecture(using: &generator))
      try Self.expectExact(config, batchSize: 4, resolution: space.resolution, threads: 2)
    }
  }

  /// 8 random architectures of the imagenet space's 4-stage structure and mixers (its smallest depths
  /// and two smallest widths per stage, so the real runs stay quick) at 32², batch 2, 2 threads.
  @Test func imageNetPredictionsEqualMeasuredPeaks() throws {
    var space = SearchSpace.imageNet
    for stage in space.stages.indices {
      space.stages[stage].depths = [space.stages[stage].depths.min()!]
      space.stages[stage].widths = Array(space.stages[stage].widths.sorted().prefix(2))
    }
    var generator = RandomGenerator(seed: 22)
    for _ in 0..<8 {
      let config = try space.config(for: space.randomArchitecture(using: &generator))
      try config.validate(resolution: 32)
      try Self.expectExact(config, batchSize: 2, resolution: 32, threads: 2)
    }
  }

  /// At batch 64 on 28² the last stage's weight gradients (k = 64 · 7 · 7 = 3136 deep, a few hundred
  /// wide) are depth-sliced, and the slices' partial products are tracked workspace. Before the meta
  /// replay charged them, this architecture's measured training peak was 147,200 bytes above the
  /// prediction (`search calibrate` at 2 threads); measured several times, so a peak that varied
  /// with thread timing would show too.
  @Test func depthSlicedWeightGradientsAreCharged() throws {
    let architecture = Architecture(
      stem: StemChoice(patchSize: 2), depths: [2, 2], widths: [40, 64],
      mixers: [.quadratic(kernelSize: 7), .depthwise(kernelSize: 5)], mlpRatio: 3)
    let config = try SearchSpace.fashionMNIST.config(for: architecture)
    for _ in 0..<3 { try Self.expectExact(config, batchSize: 64, resolution: 28, threads: 2) }
  }

  /// Where the weights crowd L2 and the activations outgrow L3, the residual MLP runs the fused kernel in
  /// blocks of hundreds of rows (``ResidualMLPKernels/Shape/fusesInLevel3(rows:hidden:weightBytes:bytesPerRow:level3CacheBytes:partialCount:)``);
  /// the shapes that take that path are too large for a test, so the same kernel is forced here with tall
  /// blocks (a partial last one, and a stage with a single block on one of the two workers), on an
  /// architecture no other test uses (the workspace probes are cached per shape for the process).
  @Test func fusedMLPInTallBlocksIsPredictedExactly() throws {
    let config = try SearchSpace.fashionMNIST.config(
      for: Architecture(
        stem: StemChoice(patchSize: 2), depths: [1, 1], widths: [32, 96],
        mixers: [.quadratic(kernelSize: 5), .gnConv(order: 3, scale: 1.0 / 3.0)], mlpRatio: 2))
    try ResidualMLPKernels.Shape.$fusesOverride.withValue(true) {
      try ResidualMLPKernels.Shape.$blockRowsOverride.withValue(1000) {
        try Self.expectExact(config, batchSize: 16, resolution: 28, threads: 2)
      }
    }
  }

  /// The thread count changes the kernels' workspace (per-thread partial sums), and the model follows it.
  @Test func predictionsFollowTheThreadCount() throws {
    let config = try SearchSpace.fashionMNIST.config(
      for: Architecture(
        stem: StemChoice(patchSize: 2), depths: [2, 2], widths: [32, 64],
        mixers: [.quadratic(kernelSize: 5), .gnConv(order: 3, scale: 1.0 / 3.0)], mlpRatio: 3))
    for threads in [1, 3] { try Self.expectExact(config, batchSize: 8, resolution: 28, threads: threads) }
  }
}
