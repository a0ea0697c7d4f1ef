import Foundation
import Testing

@testable import QuadraData
@testable import QuadraDistributed
@testable import QuadraModels
@testable import QuadraTraining

/// One result slot per rank; each thread writes only its own slot, read after all threads finished.
final class ResultSlots<Value: Sendable>: @unchecked Sendable {
  var results: [Swift.Result<Value, any Error>?]
  init(count: Int) { results = Array(repeating: nil, count: count) }
}

/// Runs `body` once per member of an in-process group, each on its own thread (with a 1-thread
/// compute context), and returns the results in rank order.
func runRanks<Result: Sendable>(
  _ size: Int, _ body: @escaping @Sendable (InProcessCommunicator) throws -> Result
) throws -> [Swift.Result<Result, any Error>] {
  let group = try InProcessCommunicator.makeGroup(size: size)
  let box = ResultSlots<Result>(count: size)
  let done = DispatchGroup()
  for communicator in group {
    done.enter()
    let rank = communicator.rank
    let thread = Thread {
      defer { done.leave() }
      let outcome = Swift.Result { try ComputeContext(threads: 1).run { try body(communicator) } }
      box.results[rank] = outcome
    }
    thread.stackSize = 16 << 20
    thread.start()
  }
  done.wait()
  return box.results.map { $0! }
}

enum Fixture {
  /// A two-stage QuadraNet with drop path, so the per-sample drop-path draws are exercised.
  static let config = ModelConfig(
    name: "ddp-quadranet", inputChannels: 1, classCount: 10, stemPatchSize: 2, depths: [1, 1], widths: [8, 16],
    mixers: [.quadratic(kernelSize: 3), .quadratic(kernelSize: 3)], mlpRatio: 2, layerScaleInit: 0.1,
    dropPathRate: 0.2)

  static func splits() throws -> DatasetSplits {
    let full = try DatasetSplits.digits()
    return DatasetSplits(
      train: full.train.subset(Array(0..<128)), validation: nil, test: full.test.subset(Array(0..<45)))
  }

  /// Crop augmentation on, so the global batch's augmentation draws must reach every shard unchanged.
  static func options(batchSize: Int = 32, accumulateSteps: Int = 1) -> TrainingOptions {
    TrainingOptions(
      epochs: 2, batchSize: batchSize, learningRate: 3e-3, minimumLearningRate: 1e-4, warmupEpochs: 0.5,
      weightDecay: 0.05, labelSmoothing: 0.1, clipGradientNorm: 1, seed: 11, evaluationBatchSize: 16,
      augmentation: Augmentation(padding: 1, horizontalFlip: true), accumulateSteps: accumulateSteps)
  }

  static func trainer(_ options: TrainingOptions) throws -> Trainer {
    try Trainer(
      model: try VisionModel(config: config, seed: options.seed), splits: try splits(), dataset: "digits",
      options: options)
  }
}

/// What a run produced: per-step losses, per-epoch test results, final weights.
struct RunRecord: Sendable {
  var losses: [Float] = []
  var evaluations: [EvaluationResult] = []
  var weights: [String: [Float]] = [:]
}

/// Trains `epochs` epochs step by step, evaluating after each.
func record(_ trainer: Trainer, epochs: Int) throws -> RunRecord {
  var record = RunRecord()
  for _ in 0..<epochs {
    trainer.model.setTraining(true)
    while let batch = try trainer.iterator.next() { record.losses.append(try trainer.step(batch)) }
    record.evaluations.append(try trainer.evaluateTestSplit())
  }
  for (name, parameter) in trainer.model.namedParameters() { record.weights[name] = parameter.variable.value.scalars }
  return record
}

func relativeDifference(_ a: Float, _ b: Float) -> Float { abs(a - b) / max(abs(a), abs(b), 1e-12) }

/// The largest relative difference over the weights, relative to each tensor's largest magnitude.
func largestWeightDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Float {
  var largest: Float = 0
  for (name, x) in a {
    guard let y = b[name], y.count == x.count else { return .infinity }
    let scale = max(x.map(abs).max() ?? 0, 1e-12)
    for (u, v) in zip(x, y) { largest = max(largest, abs(u - v) / scale) }
  }
  return a.count == b.count ? largest : .infinity
}

@Suite struct InProcessCommunicatorTests {
  @Test func collectivesGiveEveryRankTheSameResult() throws {
    let results = try runRanks(3) { communicator -> [Float] in
      let r = Float(communicator.rank)
      var sum = try communicator.allReduceSum([r, 10 * r, 1])
      let gathered = try communicator.allGather(Array(repeating: UInt8(communicator.rank), count: communicator.rank + 1))
      #expect(gathered == [[0], [1, 1], [2, 2, 2]])
      var root = [Float](repeating: r, count: 4)
      try root.withUnsafeMutableBufferPointer { try communicator.broadcast($0, root: 2) }
      sum += root
      sum += try communicator.sumInRankOrder([Double(communicator.rank) + 0.5]).map(Float.init)
      return sum
    }
    for result in results { #expect(try result.get() == [3, 30, 3, 2, 2, 2, 2, 4.5]) }
  }

  @Test func shardsCoverEverySampleOnce() {
    for size in 1...5 {
      for count in 0...13 {
        let shards = (0..<size).map { InProcessCommunicator.shard(of: count, rank: $0, size: size) }
        #expect(shards.flatMap { Array($0) } == Array(0..<count))
        #expect((shards.map(\.count).max() ?? 0) - (shards.map(\.count).min() ?? 0) <= 1)
      }
    }
  }

  @Test func anAbortReleasesTheOtherRanks() throws {
    let results = try runRanks(2) { communicator -> Int in
      if communicator.rank == 1 {
        communicator.abort(message: "bad data in shard 1")
        return 1
      }
      _ = try communicator.allReduceSum([1])
      return 0
    }
    #expect(throws: CommunicatorError.aborted(rank: 1, message: "bad data in shard 1")) { try results[0].get() }
  }

  @Test func gradientBucketsSumEveryParameter() throws {
    // Tiny buckets force several exchanges, and a gradient larger than a bucket travels alone.
    let results = try runRanks(2) { communicator -> [[Float]] in
      let model = try VisionModel(config: Fixture.config, seed: 3)
      let parameters = model.namedParameters()
      for (index, entry) in parameters.enumerated() where index != 1 || communicator.rank == 0 {
        entry.parameter.variable.grad = Tensor(
          shape: entry.parameter.variable.shape, repeating: Float(communicator.rank + 1) * Float(index))
      }
      let hook = GradientAllReduce(communicator: communicator, bucketBytes: 256)
      try hook.processGradients(of: parameters, step: 0)
      return parameters.map { $0.parameter.variable.grad!.scalars }
    }
    for result in results {
      for (index, gradient) in try result.get().enumerated() {
        // Parameter 1 has a gradient on rank 0 only (rank 1 contributes zeros).
        let expected = index == 1 ? Float(index) : 3 * Float(index)
        #expect(gradient.allSatisfy { $0 == expected })
      }
    }
  }
}

@Suite(.serialized) struct DataParallelTrainingTests {
  /// 2 ranks (equal shards) and 3 ranks (shards of 10, 11, 11) match the single-process run at the
  /// same global batch: per-step losses and final weights within 1e-5 relative, same test accuracy.
  @Test(arguments: [2, 3]) func matchesSingleProcessTraining(ranks: Int) throws {
    let options = Fixture.options()
    let reference = try ComputeContext(threads: 1).run { try record(try Fixture.trainer(options), epochs: 2) }
    let results = try runRanks(ranks) { communicator -> RunRecord in
      let trainer = try Fixture.trainer(options)
      try trainer.distribute(over: communicator)
      return try record(trainer, epochs: 2)
    }
    for result in results {
      let run = try result.get()
      #expect(run.losses.count == reference.losses.count)
      let worstLoss = zip(run.losses, reference.losses).map { relativeDifference($0, $1) }.max() ?? .infinity
      #expect(worstLoss <= 1e-5, "per-step loss differs by \(worstLoss) relative")
      let worstWeight = largestWeightDifference(run.weights, reference.weights)
      #expect(worstWeight <= 1e-5, "weights differ by \(worstWeight) relative")
      #expect(run.evaluations.map(\.correct) == reference.evaluations.map(\.correct))
      #expect(run.evaluations.map(\.count) == reference.evaluations.map(\.count))
    }
    // Every rank holds bit-identical weights.
    let first = try results[0].get().weights
    for result in results.dropFirst() { #expect(try result.get().weights == first) }
  }

  @Test func matchesWithGradientAccumulation() throws {
    let options = Fixture.options(batchSize: 16, accumulateSteps: 3)
    let reference = try ComputeContext(threads: 1).run { try record(try Fixture.trainer(options), epochs: 1) }
    let results = try runRanks(2) { communicator -> RunRecord in
      let trainer = try Fixture.trainer(options)
      try trainer.distribute(over: communicator)
      return try record(trainer, epochs: 1)
    }
    let run = try results[1].get()
    #expect((zip(run.losses, reference.losses).map { relativeDifference($0, $1) }.max() ?? 1) <= 1e-5)
    #expect(largestWeightDifference(run.weights, reference.weights) <= 1e-5)
  }

  /// A distributed run's checkpoint (written by rank 0) resumes single-process, and the result
  /// matches an uninterrupted single-process run; only rank 0 may write.
  @Test func checkpointsResumeAcrossModes() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("quadra-ddp-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let options = Fixture.options()
    let uninterrupted = try ComputeContext(threads: 1).run { () -> [String: [Float]] in
      let trainer = try Fixture.trainer(options)
      try trainer.run(outputDirectory: nil)
      return Dictionary(uniqueKeysWithValues: trainer.model.namedParameters().map { ($0.name, $0.parameter.variable.value.scalars) })
    }
    let results = try runRanks(2) { communicator -> Int in
      let trainer = try Fixture.trainer(options)
      try trainer.distribute(over: communicator)
      try trainer.run(outputDirectory: communicator.rank == 0 ? directory : nil, stopAfterEpoch: 1)
      return trainer.completedEpochs
    }
    for result in results { #expect(try result.get() == 1) }
    let resumed = try ComputeContext(threads: 1).run { () -> [String: [Float]] in
      let checkpoint = try TrainingCheckpoint.read(from: directory)
      let trainer = try Trainer(resuming: checkpoint, splits: try Fixture.splits(), dataset: "digits")
      try trainer.run(outputDirectory: directory)
      #expect(trainer.history.count == 2)
      return Dictionary(uniqueKeysWithValues: trainer.model.namedParameters().map { ($0.name, $0.parameter.variable.value.scalars) })
    }
    #expect(largestWeightDifference(resumed, uninterrupted) <= 1e-5)
    // Rank 1 must not be given a run directory.
    let refused = try runRanks(2) { communicator -> Int in
      let trainer = try Fixture.trainer(options)
      try trainer.distribute(over: communicator)
      try trainer.run(outputDirectory: communicator.rank == 1 ? directory : nil)
      return 0
    }
    #expect(refused.allSatisfy { (try? $0.get()) == nil })
  }

  @Test func differentConfigurationsAreRejectedOnEveryRank() throws {
    let results = try runRanks(2) { communicator -> Int in
      var options = Fixture.options()
      if communicator.rank == 1 { options.learningRate = 1e-3 }
      let trainer = try Fixture.trainer(options)
      try trainer.distribute(over: communicator)
      return 0
    }
    for result in results {
      #expect(throws: (any Error).self) { try result.get() }
    }
    if case .failure(let error) = results[0] { #expect("\(error)".contains("rank(s) 1 differ")) }
  }

  /// A rank whose step fails ends the other one too (no hang), which reports the failing rank's message.
  @Test func aFailingRankAbortsTheJob() throws {
    struct Failure: Error, CustomStringConvertible { var description: String { "rank 1 failed on purpose" } }
    struct FailingHook: GradientHook {
      func processGradients(of parameters: [(name: String, parameter: Parameter)], step: Int) throws {
        if step == 1 { throw Failure() }
      }
    }
    let results = try runRanks(2) { communicator -> Int in
      let trainer = try Fixture.trainer(Fixture.options())
      try trainer.distribute(over: communicator)
      if communicator.rank == 1 { trainer.gradientHooks.append(FailingHook()) }
      try trainer.run(outputDirectory: nil)
      return 0
    }
    #expect(throws: CommunicatorError.aborted(rank: 1, message: "rank 1 failed on purpose")) { try results[0].get() }
    #expect(throws: Failure.self) { try results[1].get() }
  }

  @Test func aBatchSmallerThanTheRankCountIsRejected() throws {
    let results = try runRanks(3) { communicator -> Int in
      let trainer = try Fixture.trainer(Fixture.options(batchSize: 2))
      try trainer.distribute(over: communicator)
      return 0
    }
    for result in results { #expect(throws: (any Error).self) { try result.get() } }
  }
}
