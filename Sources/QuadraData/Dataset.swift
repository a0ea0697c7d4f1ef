import Foundation

/// How raw pixel values are mapped to network inputs: `x' = (x / maxValue − mean) / std`.
///
/// `mean` and `std` are the statistics of the training images after scaling to [0, 1]
/// (e.g. ≈ 0.286 / 0.353 for Fashion-MNIST), so training inputs have zero mean and unit
/// variance; validation and test images reuse the training statistics.
public struct Normalization: Codable, Sendable, Equatable {
  /// The largest raw pixel value (255 for IDX bytes, 16 for the 8×8 digits).
  public var maxValue: Float
  public var mean: Float
  public var std: Float

  public init(maxValue: Float, mean: Float, std: Float) {
    opPrecondition(maxValue > 0 && std > 0, "Normalization: maxValue \(maxValue) and std \(std) must be positive")
    self.maxValue = maxValue
    self.mean = mean
    self.std = std
  }

  /// The network input for a raw pixel value.
  public func normalize(raw value: Float) -> Float { (value / maxValue - mean) / std }

  /// The raw pixel value of a network input (inverse of ``normalize(raw:)``).
  public func denormalize(_ value: Float) -> Float { (value * std + mean) * maxValue }
}

/// A labelled image-classification dataset held in memory.
public struct Dataset: Sendable {
  /// A short name for logs and result files (e.g. "digits/train").
  public var name: String
  /// Normalized images, `[N, H, W, C]` (NHWC).
  public var images: Tensor
  /// Class labels in `0..<classCount`, one per image.
  public var labels: [Int]
  public var classCount: Int
  /// Human-readable class names, `classCount` of them.
  public var classNames: [String]
  /// The normalization applied to ``images``.
  public var normalization: Normalization
  /// The augmentation that suits this dataset (no flips for digits, whose mirror images are other glyphs).
  public var defaultAugmentation: Augmentation

  public init(
    name: String, images: Tensor, labels: [Int], classCount: Int, classNames: [String]? = nil,
    normalization: Normalization, defaultAugmentation: Augmentation = .none
  ) {
    opPrecondition(
      images.rank == 4 && images.shape[0] == labels.count,
      "Dataset: images \(images.shape) must be [N, H, W, C] with N = \(labels.count) labels")
    opPrecondition(
      labels.allSatisfy { $0 >= 0 && $0 < classCount }, "Dataset: labels must lie in 0..<\(classCount)")
    let names = classNames ?? (0..<classCount).map(String.init)
    opPrecondition(names.count == classCount, "Dataset: \(names.count) class names for \(classCount) classes")
    self.name = name
    self.images = images
    self.labels = labels
    self.classCount = classCount
    self.classNames = names
    self.normalization = normalization
    self.defaultAugmentation = defaultAugmentation
  }

  /// The number of samples.
  public var count: Int { labels.count }
  /// `[H, W, C]` of one image.
  public var imageShape: [Int] { Array(images.shape.dropFirst()) }

  /// The samples at `indices`, in that order.
  public func subset(_ indices: [Int], name: String? = nil) -> Dataset {
    for index in indices {
      opPrecondition(index >= 0 && index < count, "Dataset.subset: index \(index) out of range 0..<\(count)")
    }
    let result = Tensor.gatheringImages(images, indices: indices)
    var copy = self
    copy.name = name ?? self.name
    copy.images = result
    copy.labels = indices.map { labels[$0] }
    return copy
  }

  /// Samples per class, indexed by label.
  public var classHistogram: [Int] {
    var histogram = [Int](repeating: 0, count: classCount)
    for label in labels { histogram[label] += 1 }
    return histogram
  }
}

/// The splits of a dataset: train, an optional validation split carved from train, and test.
public struct DatasetSplits: Sendable {
  /// The accepted class counts (the model config's range).
  public static let classCountRange = 1...100_000

  public var train: Dataset
  public var validation: Dataset?
  public var test: Dataset

  public init(train: Dataset, validation: Dataset?, test: Dataset) {
    self.train = train
    self.validation = validation
    self.test = test
  }

  /// The splits with `classCount` classes (e.g. `--classes` above the labels present, for a model
  /// that will later see more classes). Every label must lie below it; class names beyond the data's
  /// are their indices.
  public func withClassCount(_ classCount: Int) throws -> DatasetSplits {
    guard Self.classCountRange.contains(classCount) else {
      throw DatasetError.invalidSplit(
        "class count \(classCount) is outside \(Self.classCountRange.lowerBound)...\(Self.classCountRange.upperBound)")
    }
    func resized(_ dataset: Dataset) throws -> Dataset {
      if let index = dataset.labels.firstIndex(where: { $0 >= classCount }) {
        throw DatasetError.labelOutOfRange(
          path: dataset.name, label: dataset.labels[index], classCount: classCount, index: index)
      }
      var copy = dataset
      let names = dataset.classNames.prefix(classCount)
      copy.classNames = Array(names) + (names.count..<classCount).map(String.init)
      copy.classCount = classCount
      return copy
    }
    return DatasetSplits(train: try resized(train), validation: try validation.map(resized), test: try resized(test))
  }
}

/// How many training samples to hold out (for validation or, for the digits, as the test set).
public enum HoldOut: Sendable, Equatable {
  case count(Int)
  /// A fraction of the samples, rounded to the nearest count.
  case fraction(Double)

  public static let none = HoldOut.count(0)

  func resolved(total: Int) throws -> Int {
    let value: Int
    switch self {
    case .count(let count): value = count
    case .fraction(let fraction):
      guard fraction >= 0 && fraction < 1 else {
        throw DatasetError.invalidSplit("hold-out fraction \(fraction) must be in [0, 1)")
      }
      value = Int((Double(total) * fraction).rounded())
    }
    guard value >= 0 && value < total else {
      throw DatasetError.invalidSplit("cannot hold out \(value) of \(total) samples")
    }
    return value
  }
}

/// Deterministic dataset splits.
public enum DatasetSplitter {
  /// Splits sample indices into kept and held-out sets, stratified by class.
  ///
  /// Each class contributes `⌊n_c · H / N⌋` samples to the held-out set; the remaining
  /// `H − Σ⌊…⌋` go to the classes with the largest fractional parts (ties: lower label), so
  /// class proportions match the whole set within one sample. Which samples of a class are held
  /// out is chosen by a Fisher–Yates shuffle from `RandomGenerator(seed:)`, classes in label
  /// order. Both index lists are returned sorted, so the split depends only on `labels`,
  /// `holdOutCount` and `seed`.
  public static func stratified(
    labels: [Int], classCount: Int, holdOutCount: Int, seed: UInt64
  ) -> (kept: [Int], heldOut: [Int]) {
    let total = labels.count
    opPrecondition(
      holdOutCount >= 0 && holdOutCount <= total,
      "DatasetSplitter.stratified: cannot hold out \(holdOutCount) of \(total) samples")
    var byClass = [[Int]](repeating: [], count: classCount)
    for (index, label) in labels.enumerated() { byClass[label].append(index) }
    guard total > 0 else { return ([], []) }
    var quotas = byClass.map { $0.count * holdOutCount / total }
    let remainder = holdOutCount - quotas.reduce(0, +)
    let byFraction = (0..<classCount).sorted {
      let a = byClass[$0].count * holdOutCount % total, b = byClass[$1].count * holdOutCount % total
      return a != b ? a > b : $0 < $1
    }
    for c in byFraction.prefix(remainder) { quotas[c] += 1 }

    var generator = RandomGenerator(seed: seed)
    var kept: [Int] = [], heldOut: [Int] = []
    kept.reserveCapacity(total - holdOutCount)
    heldOut.reserveCapacity(holdOutCount)
    for c in 0..<classCount {
      var members = byClass[c]
      shuffle(&members, using: &generator)
      heldOut += members[..<quotas[c]]
      kept += members[quotas[c]...]
    }
    return (kept.sorted(), heldOut.sorted())
  }

  /// A uniform random permutation of `0..<count` (Fisher–Yates).
  public static func permutation(_ count: Int, using generator: inout RandomGenerator) -> [Int] {
    var order = Array(0..<count)
    shuffle(&order, using: &generator)
    return order
  }

  /// Fisher–Yates with our own bounded draw, so the order does not depend on the standard
  /// library's shuffle algorithm (which may change between Swift versions).
  static func shuffle<T>(_ array: inout [T], using generator: inout RandomGenerator) {
    guard array.count > 1 else { return }
    for i in stride(from: array.count - 1, to: 0, by: -1) {
      let j = bounded(i + 1, using: &generator)
      if i != j { array.swapAt(i, j) }
    }
  }

  /// A draw in `0..<bound` by the multiply-high method (bias below 2⁻⁴⁰ for bound < 2²⁴).
  @inline(__always)
  static func bounded(_ bound: Int, using generator: inout RandomGenerator) -> Int {
    Int(generator.next().multipliedFullWidth(by: UInt64(bound)).high)
  }
}

/// Raw unsigned-byte images before normalization, `[count, height, width, channels]` (HWC per image).
struct RawImages {
  var count: Int
  var height: Int
  var width: Int
  var channels: Int = 1
  var maxValue: UInt8
  var pixels: [UInt8]

  init(count: Int, height: Int, width: Int, channels: Int = 1, maxValue: UInt8, pixels: [UInt8]) {
    opPrecondition(
      pixels.count == count * height * width * channels,
      "RawImages: \(pixels.count) bytes for \(count)×\(height)×\(width)×\(channels)")
    self.count = count
    self.height = height
    self.width = width
    self.channels = channels
    self.maxValue = maxValue
    self.pixels = pixels
  }

  var sampleSize: Int { height * width * channels }

  /// Mean and standard deviation of the pixels of the samples at `indices`, scaled to [0, 1].
  /// Integer sums make the statistics exact and independent of summation order.
  func normalization(over indices: [Int]) -> Normalization {
    var sum: UInt64 = 0, sumOfSquares: UInt64 = 0
    pixels.withUnsafeBufferPointer { p in
      for index in indices {
        let base = index * sampleSize
        for k in 0..<sampleSize {
          let v = UInt64(p[base + k])
          sum += v
          sumOfSquares += v * v
        }
      }
    }
    let n = Double(Swift.max(indices.count * sampleSize, 1))
    let scale = Double(maxValue)
    let mean = Double(sum) / n
    let variance = Swift.max(Double(sumOfSquares) / n - mean * mean, 0)
    let std = variance.squareRoot() / scale
    return Normalization(maxValue: Float(maxValue), mean: Float(mean / scale), std: Float(Swift.max(std, 1e-6)))
  }

  /// The samples at `indices` as a normalized `[N, H, W, C]` tensor (one mean and std for all channels).
  func tensor(_ indices: [Int], normalization: Normalization) -> Tensor {
    // A 256-entry table replaces a divide per pixel and is exact for every byte value.
    var table = [Float](repeating: 0, count: 256)
    for v in 0..<256 { table[v] = normalization.normalize(raw: Float(v)) }
    let size = sampleSize
    // Normalized on the host, then copied to the tensor's device in one transfer.
    let values = [Float](unsafeUninitializedCapacity: indices.count * size) { out, initialized in
      let target = out.baseAddress!
      table.withUnsafeBufferPointer { lookup in
        pixels.withUnsafeBufferPointer { source in
          let lut = lookup.baseAddress!, src = source.baseAddress!
          Parallel.forRanges(indices.count, minimumChunk: 256) { range in
            for row in range {
              let from = src + indices[row] * size, to = target + row * size
              for k in 0..<size { to[k] = lut[Int(from[k])] }
            }
          }
        }
      }
      initialized = indices.count * size
    }
    return Tensor(shape: [indices.count, height, width, channels], scalars: values)
  }
}

extension DatasetSplits {
  /// Builds normalized splits from raw train/test images: carves a stratified validation split
  /// from train, computes the normalization on the remaining training samples, applies it everywhere.
  static func make(
    name: String, train: RawImages, trainLabels: [Int], test: RawImages, testLabels: [Int],
    trainIndices: [Int]? = nil, testIndices: [Int]? = nil,
    classCount: Int, classNames: [String]?, validation: HoldOut, splitSeed: UInt64,
    augmentation: Augmentation
  ) throws -> DatasetSplits {
    let candidates = trainIndices ?? Array(0..<train.count)
    let holdOut = try validation.resolved(total: candidates.count)
    let split = DatasetSplitter.stratified(
      labels: candidates.map { trainLabels[$0] }, classCount: classCount, holdOutCount: holdOut, seed: splitSeed)
    let kept = split.kept.map { candidates[$0] }
    let heldOut = split.heldOut.map { candidates[$0] }
    let testSet = testIndices ?? Array(0..<test.count)
    let normalization = train.normalization(over: kept)

    func dataset(_ raw: RawImages, _ labels: [Int], _ indices: [Int], _ part: String) -> Dataset {
      Dataset(
        name: "\(name)/\(part)", images: raw.tensor(indices, normalization: normalization),
        labels: indices.map { labels[$0] }, classCount: classCount, classNames: classNames,
        normalization: normalization, defaultAugmentation: augmentation)
    }
    return DatasetSplits(
      train: dataset(train, trainLabels, kept, "train"),
      validation: holdOut > 0 ? dataset(train, trainLabels, heldOut, "validation") : nil,
      test: dataset(test, testLabels, testSet, "test"))
  }
}
