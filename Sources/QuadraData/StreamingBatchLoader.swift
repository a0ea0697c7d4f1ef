import Foundation
import Synchronization

/// How many threads decode ahead and how far (`--workers`, `--prefetch`).
public struct LoaderOptions: Sendable, Equatable {
  /// Background decoding threads; 0 decodes each batch on the calling (training) thread when it is asked for.
  public var workers: Int
  /// Batches decoded ahead of the one being trained on (with workers > 0).
  public var prefetch: Int

  /// Accepted `--workers` values.
  public static let workerRange = 0...64
  /// Accepted `--prefetch` values.
  public static let prefetchRange = 1...64

  public init(workers: Int = 2, prefetch: Int = 2) {
    self.workers = workers
    self.prefetch = prefetch
  }

  /// Throws when a value is outside its range, naming the flag.
  public func validate() throws {
    guard Self.workerRange.contains(workers) else {
      throw DatasetError.invalidLoader("--workers must be in \(Self.workerRange.lowerBound)...\(Self.workerRange.upperBound), got \(workers)")
    }
    guard Self.prefetchRange.contains(prefetch) else {
      throw DatasetError.invalidLoader("--prefetch must be in \(Self.prefetchRange.lowerBound)...\(Self.prefetchRange.upperBound), got \(prefetch)")
    }
  }
}

/// Yields the mini-batches of a ``RandomAccessDataset`` epoch after epoch, decoding and augmenting
/// the next batches on background threads while the current one trains.
///
/// The same contract as ``BatchIterator`` (``next()`` returns an epoch's batches, then `nil` once; the
/// ``state`` resumes exactly), with these differences:
/// - Sample `i` of epoch `e` is augmented with randomness from `RandomGenerator(seed: h(s, e, i))`, `s` the
///   state's augmentation generator (which this loader never advances) and `h` a 64-bit mix, so the
///   batches do not depend on the worker count, the prefetch depth or the order in which workers finish.
/// - Worker `w` decodes whole batches (batch `b` is claimed by the first idle worker), at most
///   ``LoaderOptions/prefetch`` batches ahead of the consumer; batches are handed out in order.
/// - A sample that fails to decode makes ``next()`` throw that error (naming the file) when its batch is
///   reached; ``cancel()`` (also run by `deinit` and at every epoch end) stops and joins the workers.
///
/// Memory: at most `prefetch + 1` batches of `B·H·W·C` floats are held, checked against ``MemoryBudget``.
public final class StreamingBatchLoader: @unchecked Sendable {
  public let dataset: any RandomAccessDataset
  public let batchSize: Int
  public let shuffle: Bool
  public let dropLast: Bool
  public let augmentation: Augmentation
  public let loader: LoaderOptions
  public private(set) var state: BatchIterator.State
  /// The current epoch's sample order and the shuffle generator after drawing it.
  private var order: [Int]
  private var generatorAfterShuffle: RandomGenerator
  /// The background producer of the current epoch (nil before its first batch and with 0 workers).
  private var prefetcher: EpochPrefetcher?

  /// Starts at epoch 0 with the shuffle generator seeded by `seed` and the augmentation seed `~seed`, as ``BatchIterator``.
  public convenience init(
    dataset: any RandomAccessDataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false,
    augmentation: Augmentation = .none, loader: LoaderOptions = LoaderOptions(), seed: UInt64
  ) throws {
    try self.init(
      dataset: dataset, batchSize: batchSize, shuffle: shuffle, dropLast: dropLast, augmentation: augmentation,
      loader: loader,
      resumingFrom: .start(seed: seed))
  }

  /// Resumes from a saved ``state``; throws when the options are out of range or the prefetched batches
  /// exceed the memory budget.
  public init(
    dataset: any RandomAccessDataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false,
    augmentation: Augmentation = .none, loader: LoaderOptions = LoaderOptions(), resumingFrom state: BatchIterator.State
  ) throws {
    try loader.validate()
    opPrecondition(batchSize > 0, "StreamingBatchLoader: batch size must be positive, got \(batchSize)")
    guard state.position >= 0 && state.position <= dataset.count else {
      throw DatasetError.invalidLoader("saved batch position \(state.position) is beyond the \(dataset.count) samples of \(dataset.name)")
    }
    let batchBytes = batchSize.multipliedReportingOverflow(by: dataset.sampleSize * MemoryLayout<Float>.size)
    let held = batchBytes.partialValue.multipliedReportingOverflow(by: loader.prefetch + 1)
    try MemoryBudget.check(
      batchBytes.overflow || held.overflow ? Int.max : held.partialValue,
      for: "\(loader.prefetch + 1) prefetched batches of \(batchSize) samples of \(dataset.sampleShape) from \(dataset.name)")
    self.dataset = dataset
    self.batchSize = batchSize
    self.shuffle = shuffle
    self.dropLast = dropLast
    self.augmentation = augmentation
    self.loader = loader
    self.state = state
    (order, generatorAfterShuffle) = BatchIterator.epochOrder(
      count: dataset.count, shuffle: shuffle, from: state.shuffleGenerator)
  }

  deinit { prefetcher?.cancel() }

  /// Batches per epoch.
  public var batchesPerEpoch: Int {
    dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
  }

  /// The seed of sample `index`'s augmentation in `epoch`: SplitMix64's finalizer over the base seed,
  /// the epoch and the index.
  public static func sampleSeed(base: RandomGenerator, epoch: Int, index: Int) -> UInt64 {
    func mix(_ value: UInt64) -> UInt64 {
      var z = value &+ 0x9E37_79B9_7F4A_7C15
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    let base = base.state.reduce(0) { mix($0 ^ $1) }
    return mix(mix(base ^ UInt64(truncatingIfNeeded: epoch)) ^ UInt64(truncatingIfNeeded: index))
  }

  /// The next batch of the current epoch, or `nil` at its end (the loader then moves to the next epoch).
  public func next() throws -> Batch? {
    let remaining = dataset.count - state.position
    let size = Swift.min(batchSize, remaining)
    if size == 0 || (dropLast && size < batchSize) {
      cancel()
      state.epoch += 1
      state.position = 0
      state.shuffleGenerator = generatorAfterShuffle
      (order, generatorAfterShuffle) = BatchIterator.epochOrder(
        count: dataset.count, shuffle: shuffle, from: state.shuffleGenerator)
      return nil
    }
    let pixels: [Float]
    do {
      if loader.workers == 0 {
        pixels = try EpochPrefetcher.produce(batch: batchIndices(from: state.position, size: size), of: self.plan)
      } else {
        if prefetcher == nil { prefetcher = EpochPrefetcher(plan: plan, batches: remainingBatches(), loader: loader) }
        pixels = try prefetcher!.next()
      }
    } catch {
      cancel()
      throw error
    }
    let indices = batchIndices(from: state.position, size: size)
    state.position += size
    let images = Tensor(shape: [size] + dataset.sampleShape, scalars: pixels)
    return Batch(images: images, labels: indices.map { dataset.label(at: $0) }, indices: indices)
  }

  /// Stops the background workers and waits for them to exit (the next batch starts them again).
  public func cancel() {
    prefetcher?.cancel()
    prefetcher = nil
  }

  private func batchIndices(from position: Int, size: Int) -> [Int] { Array(order[position..<(position + size)]) }

  /// The index lists of the epoch's batches from the current position on.
  private func remainingBatches() -> [[Int]] {
    var batches: [[Int]] = []
    var position = state.position
    while true {
      let size = Swift.min(batchSize, dataset.count - position)
      if size == 0 || (dropLast && size < batchSize) { break }
      batches.append(batchIndices(from: position, size: size))
      position += size
    }
    return batches
  }

  private var plan: EpochPrefetcher.Plan {
    EpochPrefetcher.Plan(
      dataset: dataset, augmentation: augmentation, epoch: state.epoch, base: state.augmentationGenerator)
  }
}

/// Background production of one epoch's batches by worker threads, in order, at most `prefetch` ahead.
final class EpochPrefetcher: @unchecked Sendable {
  /// What a batch's pixels depend on.
  struct Plan: Sendable {
    var dataset: any RandomAccessDataset
    var augmentation: Augmentation
    var epoch: Int
    var base: RandomGenerator
  }

  /// Decodes and augments the samples `indices` into one `[B·H·W·C]` buffer.
  static func produce(batch indices: [Int], of plan: Plan, cancelled: (() -> Bool)? = nil) throws -> [Float] {
    let size = plan.dataset.sampleSize
    var pixels = [Float](repeating: 0, count: indices.count * size)
    try pixels.withUnsafeMutableBufferPointer { buffer in
      for (row, index) in indices.enumerated() {
        if let cancelled, cancelled() { throw CancellationError() }
        let seed = StreamingBatchLoader.sampleSeed(base: plan.base, epoch: plan.epoch, index: index)
        try plan.dataset.writeSample(
          at: index, augmentation: plan.augmentation, seed: seed,
          into: UnsafeMutableBufferPointer(rebasing: buffer[(row * size)..<((row + 1) * size)]))
      }
    }
    return pixels
  }

  private let plan: Plan
  private let batches: [[Int]]
  private let prefetch: Int
  private let condition = NSCondition()
  private let cancelled = Atomic<Bool>(false)
  // Guarded by `condition`:
  private var results: [Int: Result<[Float], Error>] = [:]
  private var nextToClaim = 0
  private var nextToConsume = 0
  private var failed = false
  private var running: Int

  init(plan: Plan, batches: [[Int]], loader: LoaderOptions) {
    self.plan = plan
    self.batches = batches
    self.prefetch = loader.prefetch
    running = loader.workers
    for worker in 0..<loader.workers {
      let thread = Thread { [self] in work() }
      thread.name = "quadranet-loader-\(worker)"
      thread.start()
    }
  }

  private func work() {
    while true {
      condition.lock()
      while !cancelled.load(ordering: .relaxed) && !failed && nextToClaim < batches.count
        && nextToClaim - nextToConsume >= prefetch
      {
        condition.wait()
      }
      guard !cancelled.load(ordering: .relaxed) && !failed && nextToClaim < batches.count else {
        running -= 1
        condition.broadcast()
        condition.unlock()
        return
      }
      let batch = nextToClaim
      nextToClaim += 1
      condition.unlock()
      let result = Result {
        try Self.produce(batch: batches[batch], of: plan) { self.cancelled.load(ordering: .relaxed) }
      }
      condition.lock()
      results[batch] = result
      if case .failure = result { failed = true }
      condition.broadcast()
      condition.unlock()
    }
  }

  /// The next batch's pixels in order, waiting for its worker; rethrows the worker's error.
  func next() throws -> [Float] {
    condition.lock()
    defer { condition.unlock() }
    // Batches are claimed in order and a failure stops further claims, so the awaited batch is either
    // claimed (and will arrive) or follows a failed one, which was handed out (thrown) before it.
    while results[nextToConsume] == nil {
      guard running > 0 || nextToConsume < nextToClaim else {
        throw DatasetError.invalidLoader("the loader's workers stopped before batch \(nextToConsume) was decoded")
      }
      condition.wait()
    }
    let result = results.removeValue(forKey: nextToConsume)!
    nextToConsume += 1
    condition.broadcast()
    return try result.get()
  }

  /// Stops the workers (a sample in progress finishes) and waits until all have exited.
  func cancel() {
    cancelled.store(true, ordering: .relaxed)
    condition.lock()
    condition.broadcast()
    while running > 0 { condition.wait() }
    condition.unlock()
  }
}
