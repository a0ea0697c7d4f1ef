import Foundation
import QuadraData
import QuadraDistributed
import QuadraModels

/// What a ``Trainer`` needs as one rank of a data-parallel run.
final class DataParallelRank {
  let communicator: any Communicator
  let exchange: GradientAllReduce
  /// This rank's contiguous share of the test split (evaluation is sharded, then summed).
  let testShard: Dataset?

  init(communicator: any Communicator, exchange: GradientAllReduce, testShard: Dataset?) {
    self.communicator = communicator
    self.exchange = exchange
    self.testShard = testShard
  }
}

extension Trainer {
  /// Makes this trainer one rank of a data-parallel run (DDP) over `communicator`; every rank calls
  /// this with a trainer built the same way (same recipe, model, data, checkpoint), then ``run(in:overwrite:stopAfterEpoch:progress:)``.
  ///
  /// - All ranks compare a hash of their recipe, model config, data, run position and optimizer /
  ///   EMA state; any difference is an error on every rank. Rank 0's weights are then broadcast.
  /// - Every rank runs the same ``BatchIterator`` (same shuffle and augmentation draws) and trains
  ///   on its slice `[⌊r·B/N⌋, ⌊(r+1)·B/N⌋)` of each global batch of B = `--batch-size` samples;
  ///   drop path draws its numbers for the whole global batch and uses the slice's.
  /// - Rank r's loss is its slice's mean ℓ_r, its backward pass is seeded with n_r / B, and the
  ///   gradients are summed over the ranks (``GradientAllReduce``, the first gradient hook), so each
  ///   rank holds ∇ (1/B) Σ_i ℓ_i, the single-process gradient; every rank then takes the same
  ///   optimizer step. The reported loss is Σ_r n_r ℓ_r / B (the global batch's mean).
  /// - The test split is evaluated in shards whose correct counts and loss sums are added up.
  /// - Only rank 0 may be given a run directory (checkpoints, metrics, plots); at every epoch end
  ///   the ranks check that their weights are still bit-identical.
  /// - An error on any rank aborts the whole group (``Communicator/abort(message:)``) with its message.
  ///
  /// - Throws: ``TrainingError/invalidOption(_:)`` when the batch has fewer samples than ranks;
  ///   ``CommunicatorError`` when configurations differ or a collective fails.
  public func distribute(over communicator: any Communicator) throws {
    guard dataParallel == nil else { throw TrainingError.invalidOption("this trainer is already distributed") }
    do {
      guard options.batchSize >= communicator.size else {
        throw TrainingError.invalidOption(
          "--batch-size \(options.batchSize) is the global batch and must be at least the number of ranks (\(communicator.size))")
      }
      let splits = try inMemorySplits()
      try communicator.checkSameConfiguration(configurationDescription(), what: "the recipe, model, data or run position")
      try ParameterSynchronization.broadcast(parameters, over: communicator)
      let shard = communicator.shard(of: splits.test.count)
      let exchange = GradientAllReduce(communicator: communicator)
      gradientHooks.insert(exchange, at: 0)
      dataParallel = DataParallelRank(
        communicator: communicator, exchange: exchange,
        testShard: shard.isEmpty ? nil : splits.test.subset(Array(shard), name: splits.test.name))
    } catch {
      communicator.abort(message: "\(error)")
      throw error
    }
  }

  /// The number of ranks (1 when not distributed) and this trainer's rank.
  public var rankCount: Int { dataParallel?.communicator.size ?? 1 }
  public var rank: Int { dataParallel?.communicator.rank ?? 0 }

  /// Seconds spent exchanging gradients so far (0 when not distributed).
  public var gradientExchangeSeconds: Double { dataParallel?.exchange.seconds ?? 0 }

  /// This rank's slice of a global batch, the slice's share n_r / B of it, and where it lies in it.
  func localShard(of batch: Batch) -> (batch: Batch, share: Float, window: SampleWindow?) {
    guard let dataParallel else { return (batch, 1, nil) }
    let range = dataParallel.communicator.shard(of: batch.count)
    let indices = Array(range)
    var local = batch
    local.images = Tensor.gatheringImages(batch.images, indices: indices)
    local.labels = indices.map { batch.labels[$0] }
    local.indices = indices.map { batch.indices[$0] }
    return (local, Float(range.count) / Float(batch.count), SampleWindow(offset: range.lowerBound, total: batch.count))
  }

  /// The global batch's mean loss Σ_r n_r ℓ_r / B from this rank's slice mean `loss` over `count` samples.
  func globalMeanLoss(_ loss: Float, count: Int, total: Int) throws -> Float {
    guard let dataParallel else { return loss }
    let sum = try dataParallel.communicator.sumInRankOrder([Double(loss) * Double(count)])[0]
    return Float(sum / Double(total))
  }

  /// The test evaluation of the current weights: the whole split, or this rank's shard summed over all ranks.
  func evaluateCurrentWeights() throws -> EvaluationResult {
    guard let dataParallel else {
      return try evaluateTestData()
    }
    let local = try dataParallel.testShard.map {
      try Evaluator.evaluate(model, on: $0, batchSize: options.evaluationBatchSize)
    } ?? EvaluationResult(correct: 0, count: 0, loss: 0)
    let sums = try dataParallel.communicator.sumInRankOrder([
      Double(local.correct), Double(local.count), local.loss * Double(local.count),
    ])
    let count = Int(sums[1])
    return EvaluationResult(correct: Int(sums[0]), count: count, loss: count == 0 ? 0 : sums[2] / Double(count))
  }

  /// Throws unless every rank's weights are bit-identical (they must be after identical steps).
  func checkRanksInSync() throws {
    guard let dataParallel else { return }
    try dataParallel.communicator.checkSameConfiguration(
      String(ParameterSynchronization.fingerprint(parameters), radix: 16), what: "the weights after the epoch")
  }

  /// Everything that must agree between ranks at the start, as canonical text.
  func configurationDescription() throws -> String {
    let splits = try inMemorySplits()
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    func json<Value: Encodable>(_ value: Value) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }
    var stateHash = FNV1a.hash(Array("optimizer".utf8))
    let stateTensors = optimizer.stateTensors
    for key in stateTensors.keys.sorted() {
      stateHash = FNV1a.hash(Array(key.utf8), into: stateHash)
      stateTensors[key]!.withUnsafeBufferPointer { stateHash = FNV1a.hash(UnsafeRawBufferPointer($0), into: stateHash) }
    }
    for (key, tensor) in (ema?.shadow ?? [:]).sorted(by: { $0.key < $1.key }) {
      stateHash = FNV1a.hash(Array(key.utf8), into: stateHash)
      tensor.withUnsafeBufferPointer { stateHash = FNV1a.hash(UnsafeRawBufferPointer($0), into: stateHash) }
    }
    return [
      "options=\(try json(options))", "model=\(try json(model.config))", "dataset=\(dataset)",
      "data=\(Self.dataFingerprint(splits.train)),\(Self.dataFingerprint(splits.test))",
      "position=epoch \(completedEpochs) step \(globalStep) optimizer step \(optimizer.step) \(try json(iterator.state))",
      "dropPath=\(try json(model.randomSource.generator))", "state=\(String(stateHash, radix: 16))",
    ].joined(separator: "; ")
  }

  /// A hash of a dataset's size, labels and every 97th pixel (cheap, and catches a different file or order).
  static func dataFingerprint(_ dataset: Dataset) -> String {
    var hash = FNV1a.hash(Array("\(dataset.count) \(dataset.imageShape)".utf8))
    for label in dataset.labels { hash = FNV1a.hash(withUnsafeBytes(of: Int64(label).littleEndian, Array.init), into: hash) }
    dataset.images.withUnsafeBufferPointer { pixels in
      for index in stride(from: 0, to: pixels.count, by: 97) {
        hash = FNV1a.hash(withUnsafeBytes(of: pixels[index].bitPattern.littleEndian, Array.init), into: hash)
      }
    }
    return String(hash, radix: 16)
  }
}
