import Foundation
import QuadraData
import QuadraModels

/// The data a ``Trainer`` reads: the training and test splits, held in memory or streamed, and how the
/// streamed ones are loaded.
public struct TrainingData: Sendable {
  public var train: any RandomAccessDataset
  public var test: any RandomAccessDataset
  /// Worker threads and prefetch depth of streamed splits (results do not depend on them).
  public var loader: LoaderOptions
  /// The splits when both are in memory (needed for data-parallel runs and the in-memory fast path).
  public let inMemory: DatasetSplits?
  /// The options the data was loaded with, recorded in checkpoints for `eval` and `predict`.
  public var options: DataOptions?

  /// In-memory splits.
  public init(_ splits: DatasetSplits, loader: LoaderOptions = LoaderOptions()) {
    train = splits.train
    test = splits.test
    self.loader = loader
    inMemory = splits
  }

  /// Splits streamed from disk (e.g. ``DatasetSplits/imageFolderStreams(_:options:splitSeed:classCount:decoder:notes:)``).
  public init(streaming streams: ImageFolderStreams, loader: LoaderOptions = LoaderOptions()) {
    train = streams.train
    test = streams.test
    self.loader = loader
    inMemory = nil
  }

  /// The augmentation of runs that do not choose one: the in-memory dataset's own, or random-resized-crop
  /// and flips for streamed image folders.
  public var defaultAugmentation: Augmentation {
    (train as? Dataset)?.defaultAugmentation ?? .randomResizedCropAndFlip
  }

  /// `[H, W, C]` of the training samples.
  public var imageShape: [Int] { train.sampleShape }
}

/// The training batches, from memory (``BatchIterator``, the original fast path, whose augmentation draws
/// come from one generator) or from a ``StreamingBatchLoader`` (per-sample randomness, background decoding).
enum TrainingFeed {
  case memory(BatchIterator)
  case streaming(StreamingBatchLoader)

  /// The streaming loader for anything but an in-memory dataset with a padded-crop/flip augmentation.
  init(data: TrainingData, batchSize: Int, augmentation: Augmentation, state: BatchIterator.State) throws {
    if let dataset = data.train as? Dataset, augmentation.randomResizedCrop == nil {
      self = .memory(
        BatchIterator(
          dataset: dataset, batchSize: batchSize, shuffle: true, dropLast: true, augmentation: augmentation,
          resumingFrom: state))
    } else {
      self = .streaming(
        try StreamingBatchLoader(
          dataset: data.train, batchSize: batchSize, shuffle: true, dropLast: true, augmentation: augmentation,
          loader: data.loader, resumingFrom: state))
    }
  }

  var state: BatchIterator.State {
    switch self {
    case .memory(let iterator): return iterator.state
    case .streaming(let loader): return loader.state
    }
  }

  var batchesPerEpoch: Int {
    switch self {
    case .memory(let iterator): return iterator.batchesPerEpoch
    case .streaming(let loader): return loader.batchesPerEpoch
    }
  }

  mutating func next() throws -> Batch? {
    switch self {
    case .memory(var iterator):
      let batch = iterator.next()
      self = .memory(iterator)
      return batch
    case .streaming(let loader): return try loader.next()
    }
  }

  /// Stops background decoding (after an error, or when training stops mid-epoch).
  func cancel() {
    if case .streaming(let loader) = self { loader.cancel() }
  }
}
