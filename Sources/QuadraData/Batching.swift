import Foundation

/// Random-crop and horizontal-flip augmentation for NHWC image batches.
///
/// A random crop with padding `p` pads each image by `p` pixels on every side and cuts a
/// random H×W window back out, i.e. shifts it by `(dy, dx) ∈ [−p, p]²` and fills the uncovered
/// border; a flip mirrors it left–right with probability ½. Both are done in one pass that
/// writes each output pixel once, without materializing the padded image.
public struct Augmentation: Codable, Sendable, Equatable {
  /// Padding of the random crop, in pixels (0 = no crop).
  public var padding: Int
  /// Whether images are mirrored left–right with probability ½.
  public var horizontalFlip: Bool
  /// A random-resized-crop instead of the padded crop (streamed by ``StreamingBatchLoader``); nil for none.
  /// Saved checkpoints without it read as nil.
  public var randomResizedCrop: RandomResizedCrop?

  public init(padding: Int = 0, horizontalFlip: Bool = false, randomResizedCrop: RandomResizedCrop? = nil) {
    opPrecondition(padding >= 0, "Augmentation: padding must be non-negative, got \(padding)")
    opPrecondition(
      padding == 0 || randomResizedCrop == nil, "Augmentation: a padded crop and a random-resized-crop exclude each other")
    self.padding = padding
    self.horizontalFlip = horizontalFlip
    self.randomResizedCrop = randomResizedCrop
  }

  /// No augmentation.
  public static let none = Augmentation()

  /// timm's training augmentation for image folders: random-resized-crop (``RandomResizedCrop/timm``) and flips.
  public static let randomResizedCropAndFlip = Augmentation(horizontalFlip: true, randomResizedCrop: .timm)

  public var isIdentity: Bool { padding == 0 && !horizontalFlip && randomResizedCrop == nil }

  /// The family of this augmentation, as `--augment` names it.
  public var kind: AugmentationKind {
    if randomResizedCrop != nil { return .randomResizedCrop }
    return padding > 0 || horizontalFlip ? .padCrop : .none
  }

  /// The transform of one sample (a crop shift and a flip bit).
  typealias SampleTransform = ImageTransform

  /// Draws the transforms of `count` samples: per sample `dy`, `dx` uniform in `−p…p`, then the flip bit.
  func drawTransforms(_ count: Int, using generator: inout RandomGenerator) -> [SampleTransform] {
    (0..<count).map { _ in
      var t = SampleTransform(dy: 0, dx: 0, flip: false)
      if padding > 0 {
        t.dy = DatasetSplitter.bounded(2 * padding + 1, using: &generator) - padding
        t.dx = DatasetSplitter.bounded(2 * padding + 1, using: &generator) - padding
      }
      if horizontalFlip { t.flip = generator.next() >> 63 == 1 }
      return t
    }
  }

  /// Randomly crops (with `fill` as the padding value) and flips every image of an `[N, H, W, C]` batch.
  ///
  /// `fill` is the value of padded pixels in the tensor's units; for normalized images,
  /// `normalization.normalize(raw: 0)` pads with black, as torchvision's padding before `Normalize` does.
  public func apply(to images: Tensor, fill: Float = 0, using generator: inout RandomGenerator) -> Tensor {
    opPrecondition(images.rank == 4, "Augmentation.apply: images must be [N, H, W, C], got \(images.shape)")
    let n = images.shape[0]
    let transforms = drawTransforms(n, using: &generator)
    return Tensor.gatheringImages(images, indices: Array(0..<n), transforms: transforms, fill: fill)
  }
}

/// The augmentation families `--augment` chooses between.
public enum AugmentationKind: String, CaseIterable, Codable, Sendable {
  /// Random-resized-crop (timm's defaults) and flips: the default for image folders.
  case randomResizedCrop = "rrc"
  /// A random shift within `--crop-padding` pixels and optional flips: the default for the 28×28 and 8×8 data.
  case padCrop = "pad-crop"
  /// No augmentation.
  case none
}

/// One mini-batch.
public struct Batch: Sendable {
  /// `[B, H, W, C]` images (augmented if the iterator augments).
  public var images: Tensor
  /// The labels of the batch's samples.
  public var labels: [Int]
  /// The samples' indices in the dataset.
  public var indices: [Int]

  public var count: Int { labels.count }
}

/// Yields the mini-batches of a dataset epoch after epoch, with seeded shuffling and augmentation.
///
/// ``next()`` returns the batches of the current epoch, then `nil` once, and moves to the next
/// epoch (a fresh shuffle), so `while let batch = iterator.next() { … }` runs one epoch.
/// ``state`` is a small `Codable` value (epoch, position, two generator states); an iterator made
/// with ``init(dataset:batchSize:shuffle:dropLast:augmentation:resumingFrom:)`` from a saved state
/// yields exactly the batches the original would have.
public struct BatchIterator: Sendable {
  /// Everything that determines the remaining batches.
  public struct State: Codable, Sendable, Equatable {
    /// Completed epochs.
    public var epoch: Int
    /// Samples of the current epoch already yielded.
    public var position: Int
    /// The shuffle generator as it was before this epoch's permutation was drawn.
    public var shuffleGenerator: RandomGenerator
    /// The augmentation generator, now (a ``StreamingBatchLoader`` keeps it as its per-sample base seed).
    public var augmentationGenerator: RandomGenerator

    /// The state before the first batch: the shuffle generator seeded with `seed`, the augmentation one with `~seed`.
    public static func start(seed: UInt64) -> State {
      State(
        epoch: 0, position: 0, shuffleGenerator: RandomGenerator(seed: seed),
        augmentationGenerator: RandomGenerator(seed: ~seed))
    }
  }

  public let dataset: Dataset
  public let batchSize: Int
  public let shuffle: Bool
  public let dropLast: Bool
  public let augmentation: Augmentation
  public private(set) var state: State
  /// The current epoch's sample order.
  private var order: [Int]
  /// The shuffle generator after drawing ``order`` (the next epoch starts from it).
  private var generatorAfterShuffle: RandomGenerator
  /// The value of padded pixels: black, i.e. the normalized raw value 0.
  private let fill: Float

  /// - Parameters:
  ///   - shuffle: draw a new random order every epoch (off: dataset order, e.g. for evaluation).
  ///   - dropLast: skip the last batch of an epoch when it has fewer than `batchSize` samples.
  ///   - augmentation: crop/flip applied to every batch (use ``Augmentation/none`` for evaluation).
  ///   - seed: seeds the shuffle and augmentation generators (two independent streams).
  public init(
    dataset: Dataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false,
    augmentation: Augmentation = .none, seed: UInt64
  ) {
    self.init(
      dataset: dataset, batchSize: batchSize, shuffle: shuffle, dropLast: dropLast, augmentation: augmentation,
      resumingFrom: .start(seed: seed))
  }

  /// Resumes from a saved ``state`` (the dataset and options must be those of the saved run).
  public init(
    dataset: Dataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false,
    augmentation: Augmentation = .none, resumingFrom state: State
  ) {
    opPrecondition(batchSize > 0, "BatchIterator: batch size must be positive, got \(batchSize)")
    opPrecondition(
      state.position >= 0 && state.position <= dataset.count,
      "BatchIterator: saved position \(state.position) is beyond the dataset's \(dataset.count) samples")
    self.dataset = dataset
    self.batchSize = batchSize
    self.shuffle = shuffle
    self.dropLast = dropLast
    self.augmentation = augmentation
    self.state = state
    self.fill = dataset.normalization.normalize(raw: 0)
    self.order = []
    self.generatorAfterShuffle = state.shuffleGenerator
    drawOrder()
  }

  /// Batches per epoch.
  public var batchesPerEpoch: Int {
    dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
  }

  /// The current epoch's sample order.
  public var epochOrder: [Int] { order }

  private mutating func drawOrder() {
    (order, generatorAfterShuffle) = Self.epochOrder(count: dataset.count, shuffle: shuffle, from: state.shuffleGenerator)
  }

  /// An epoch's sample order and the shuffle generator after drawing it (the next epoch's start).
  static func epochOrder(count: Int, shuffle: Bool, from generator: RandomGenerator) -> ([Int], RandomGenerator) {
    var generator = generator
    let order = shuffle ? DatasetSplitter.permutation(count, using: &generator) : Array(0..<count)
    return (order, generator)
  }

  /// The next batch of the current epoch, or `nil` at its end (the iterator then moves to the next epoch).
  public mutating func next() -> Batch? {
    let remaining = dataset.count - state.position
    let size = Swift.min(batchSize, remaining)
    if size == 0 || (dropLast && size < batchSize) {
      state.epoch += 1
      state.position = 0
      state.shuffleGenerator = generatorAfterShuffle
      drawOrder()
      return nil
    }
    let indices = Array(order[state.position..<(state.position + size)])
    state.position += size
    let transforms =
      augmentation.isIdentity ? nil : augmentation.drawTransforms(size, using: &state.augmentationGenerator)
    let images = Tensor.gatheringImages(dataset.images, indices: indices, transforms: transforms, fill: fill)
    return Batch(images: images, labels: indices.map { dataset.labels[$0] }, indices: indices)
  }
}
