import Foundation

/// An image-folder split read from disk: the file list is indexed once, each image is decoded when
/// its sample is asked for (by the loader's worker threads), so the folder may exceed memory.
///
/// Transforms (bilinear, see ``ImageResizing``), with `R` = ``ImageFolderOptions/resolution``:
/// - evaluation split: shorter side to `⌊R / 0.875⌋`, centre `R × R` crop (timm's crop fraction);
/// - training split without random-resized-crop: shorter side to `R`, centre crop (as the in-memory folder);
/// - training split with ``Augmentation/randomResizedCrop``: the random region of the *decoded* image is
///   resized straight to `R × R` (torchvision's `RandomResizedCrop`), then flipped with probability ½.
/// Without a resolution every image must have the size found when the dataset was opened.
/// Gray images become RGB in an RGB dataset; an RGB image in a gray dataset is an error naming it.
public struct ImageFolderDataset: RandomAccessDataset {
  public let name: String
  /// The image files, in sample order.
  public let files: [URL]
  public let labels: [Int]
  public let classCount: Int
  public let classNames: [String]
  public let sampleShape: [Int]
  public let normalization: Normalization
  /// Whether this split gets the evaluation transform.
  public let isEvaluation: Bool
  let options: ImageFolderOptions
  let decoder: ImageDecoder
  /// Raw byte → normalized value.
  let lookup: [Float]

  init(
    name: String, files: [URL], labels: [Int], classCount: Int, classNames: [String], sampleShape: [Int],
    normalization: Normalization, isEvaluation: Bool, options: ImageFolderOptions, decoder: @escaping ImageDecoder
  ) {
    self.name = name
    self.files = files
    self.labels = labels
    self.classCount = classCount
    self.classNames = classNames
    self.sampleShape = sampleShape
    self.normalization = normalization
    self.isEvaluation = isEvaluation
    self.options = options
    self.decoder = decoder
    lookup = (0..<256).map { normalization.normalize(raw: Float($0)) }
  }

  public var count: Int { files.count }

  /// The samples at `indices`, in that order.
  public func subset(_ indices: [Int]) -> ImageFolderDataset {
    ImageFolderDataset(
      name: name, files: indices.map { files[$0] }, labels: indices.map { labels[$0] }, classCount: classCount,
      classNames: classNames, sampleShape: sampleShape, normalization: normalization, isEvaluation: isEvaluation,
      options: options, decoder: decoder)
  }

  /// The same samples normalized with `normalization` (e.g. the statistics a checkpoint was trained with).
  public func withNormalization(_ normalization: Normalization) -> ImageFolderDataset {
    ImageFolderDataset(
      name: name, files: files, labels: labels, classCount: classCount, classNames: classNames,
      sampleShape: sampleShape, normalization: normalization, isEvaluation: isEvaluation, options: options,
      decoder: decoder)
  }

  public func label(at index: Int) -> Int { labels[index] }

  /// The decoded image of sample `index` with the dataset's channel count and, unless a random-resized-crop
  /// follows, its deterministic resize and centre crop to ``sampleShape``.
  func baseImage(at index: Int, resize: Bool) throws -> DecodedImage {
    let url = files[index]
    return try prepare(try DatasetSplits.decodeImage(url, options: options, decoder: decoder), from: url, resize: resize)
  }

  /// `image` (decoded from `url`) with the dataset's channel count and, if `resize`, its resize and centre crop.
  func prepare(_ image: DecodedImage, from url: URL, resize: Bool) throws -> DecodedImage {
    var image = image
    let channels = sampleShape[2]
    if image.channels == 3 && channels == 1 {
      throw DatasetError.invalidFolder(
        path: url.path,
        reason: "it is RGB but the images sampled when the dataset was opened were gray; convert the folder to one "
          + "channel count (or make the first images of each class RGB)")
    }
    if channels == 3 { image = ImageResizing.grayToRGB(image) }
    if let resolution = options.resolution {
      guard resize else { return image }
      let shorter = isEvaluation ? Int(Double(resolution) / ImageResizing.evaluationCropFraction) : resolution
      return ImageResizing.resizeAndCenterCrop(image, shorterSide: shorter, crop: resolution)
    }
    guard image.height == sampleShape[0] && image.width == sampleShape[1] else {
      throw DatasetError.invalidFolder(
        path: url.path,
        reason: "it is \(image.width)×\(image.height), the other images are \(sampleShape[1])×\(sampleShape[0]); "
          + "choose a size with --resolution")
    }
    return image
  }

  public func writeSample(
    at index: Int, augmentation: Augmentation, seed: UInt64, into destination: UnsafeMutableBufferPointer<Float>
  ) throws {
    opPrecondition(destination.count == sampleSize, "\(name): a sample holds \(sampleSize) floats, not \(destination.count)")
    let randomCrop = augmentation.randomResizedCrop != nil
    let image = try baseImage(at: index, resize: !randomCrop)
    var source = [Float](unsafeUninitializedCapacity: image.pixels.count) { out, initialized in
      lookup.withUnsafeBufferPointer { table in
        for (k, value) in image.pixels.enumerated() { out[k] = table[Int(value)] }
      }
      initialized = image.pixels.count
    }
    var generator = RandomGenerator(seed: seed)
    source.withUnsafeMutableBufferPointer { pixels in
      let pixels = UnsafeBufferPointer(pixels)
      if let crop = augmentation.randomResizedCrop {
        let region = crop.region(height: image.height, width: image.width, using: &generator)
        let flip = augmentation.horizontalFlip && generator.next() >> 63 == 1
        SampleTransforms.resizeRegion(
          pixels, height: image.height, width: image.width, channels: image.channels, region: region, flip: flip,
          outputHeight: sampleShape[0], outputWidth: sampleShape[1], into: destination)
      } else {
        SampleTransforms.apply(
          augmentation, to: pixels, height: sampleShape[0], width: sampleShape[1], channels: sampleShape[2],
          fill: lookup[0], using: &generator, into: destination)
      }
    }
  }
}

/// The train and test splits of an image folder, both streamed from disk.
public struct ImageFolderStreams: Sendable {
  public var train: ImageFolderDataset
  public var test: ImageFolderDataset
}

extension DatasetSplits {
  /// Images decoded when a folder is opened for streaming, to find the channel count, the size (without
  /// a resolution) and the normalization statistics: evenly spaced over the training files.
  public static let streamingStatisticsSamples = 512

  /// Opens an image folder for streaming: lists and splits it like
  /// ``imageFolder(_:options:validation:splitSeed:classCount:decoder:notes:)`` (same files, labels, split
  /// and class names), decoding only up to ``streamingStatisticsSamples`` training images.
  ///
  /// Those images fix the channel count (RGB when any is) and, without a resolution, the image size; their
  /// pixels after the training split's centre-crop transform give the normalization `(x/255 − μ)/σ`, one
  /// `μ`, `σ` over all channels. With every image sampled (small folders) this is exactly the in-memory
  /// dataset's normalization.
  public static func imageFolderStreams(
    _ directory: URL, options: ImageFolderOptions = ImageFolderOptions(), splitSeed: UInt64 = 0, classCount: Int? = nil,
    decoder: @escaping ImageDecoder = defaultImageDecoder, notes: ((String) -> Void)? = nil
  ) throws -> ImageFolderStreams {
    let listing = try listImageFolder(directory, options: options, classCount: classCount, notes: notes)
    var trainFiles = listing.train.files, trainLabels = listing.train.labels
    var testFiles: [URL], testLabels: [Int]
    if let test = listing.test {
      (testFiles, testLabels) = test
    } else {
      let split = try testFractionSplit(
        listing, fraction: options.testFraction!, directory: directory, splitSeed: splitSeed)
      testFiles = split.heldOut.map { trainFiles[$0] }
      testLabels = split.heldOut.map { trainLabels[$0] }
      trainFiles = split.kept.map { trainFiles[$0] }
      trainLabels = split.kept.map { trainLabels[$0] }
    }
    let sampled = Swift.min(trainFiles.count, streamingStatisticsSamples)
    let sampleIndices = (0..<sampled).map { $0 * trainFiles.count / sampled }
    let images = try decodeAll(sampleIndices.map { trainFiles[$0] }, options: options, decoder: decoder)
    let channels = images.contains { $0.channels == 3 } ? 3 : 1
    let shape: [Int]
    if let resolution = options.resolution {
      shape = [resolution, resolution, channels]
    } else {
      shape = [images[0].height, images[0].width, channels]
    }
    let name = directory.lastPathComponent
    func split(_ part: String, _ files: [URL], _ labels: [Int], evaluation: Bool, _ normalization: Normalization)
      -> ImageFolderDataset
    {
      ImageFolderDataset(
        name: "\(name)/\(part)", files: files, labels: labels, classCount: listing.classCount,
        classNames: listing.classNames, sampleShape: shape, normalization: normalization, isEvaluation: evaluation,
        options: options, decoder: decoder)
    }
    // Statistics over the sampled images' training transform (the placeholder normalization is not used by it).
    let unnormalized = split("train", trainFiles, trainLabels, evaluation: false, Normalization(maxValue: 255, mean: 0, std: 1))
    let sampleBytes = shape.reduce(1, *)
    var pixels = [UInt8]()
    pixels.reserveCapacity(sampled * sampleBytes)
    for (image, index) in zip(images, sampleIndices) {
      pixels += try unnormalized.prepare(image, from: trainFiles[index], resize: true).pixels
    }
    let raw = RawImages(count: sampled, height: shape[0], width: shape[1], channels: channels, maxValue: 255, pixels: pixels)
    let normalization = raw.normalization(over: Array(0..<sampled))
    return ImageFolderStreams(
      train: split("train", trainFiles, trainLabels, evaluation: false, normalization),
      test: split("test", testFiles, testLabels, evaluation: true, normalization))
  }
}
