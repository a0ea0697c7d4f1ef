import Foundation

/// Turns decoded images of any sizes into one `[H, W, C]` shape with bilinear resampling.
///
/// Evaluation images follow timm's defaults: the shorter side is resized to `R / 0.875` (rounded
/// down) and the centre `R × R` is cut out. Training images are resized so the shorter side is `R` and
/// centre-cropped to `R × R` (the whole object stays in view; random crops and flips happen per batch).
public enum ImageResizing {
  /// timm's evaluation crop fraction: the centre 87.5 % of the resized image.
  public static let evaluationCropFraction = 0.875

  /// The shorter side resized to `shorterSide`, the other in proportion, then the centre `crop × crop`.
  ///
  /// Sampling is bilinear with pixel centres at `(i + ½)·s − ½` in the source (`s` = source/target
  /// size, PyTorch's `align_corners=False`), clamped at the border, without antialiasing.
  public static func resizeAndCenterCrop(_ image: DecodedImage, shorterSide: Int, crop: Int) -> DecodedImage {
    let scale = Double(shorterSide) / Double(Swift.min(image.width, image.height))
    let resizedWidth = Swift.max(crop, Int((Double(image.width) * scale).rounded()))
    let resizedHeight = Swift.max(crop, Int((Double(image.height) * scale).rounded()))
    let top = (resizedHeight - crop) / 2, left = (resizedWidth - crop) / 2
    let stepY = Double(image.height) / Double(resizedHeight), stepX = Double(image.width) / Double(resizedWidth)
    let c = image.channels
    var pixels = [UInt8](repeating: 0, count: crop * crop * c)
    // Per output column: the two source columns and the weight of the right one.
    let columns = (0..<crop).map { x -> (Int, Int, Double) in
      sourceTaps(Double(left + x), step: stepX, size: image.width)
    }
    image.pixels.withUnsafeBufferPointer { source in
      for y in 0..<crop {
        let (y0, y1, wy) = sourceTaps(Double(top + y), step: stepY, size: image.height)
        for x in 0..<crop {
          let (x0, x1, wx) = columns[x]
          for k in 0..<c {
            let a = Double(source[(y0 * image.width + x0) * c + k]), b = Double(source[(y0 * image.width + x1) * c + k])
            let d = Double(source[(y1 * image.width + x0) * c + k]), e = Double(source[(y1 * image.width + x1) * c + k])
            let top = a + (b - a) * wx, bottom = d + (e - d) * wx
            pixels[(y * crop + x) * c + k] = UInt8((top + (bottom - top) * wy).rounded())
          }
        }
      }
    }
    return DecodedImage(width: crop, height: crop, channels: c, pixels: pixels)
  }

  /// The two source coordinates around output position `i` and the weight of the second.
  @inline(__always)
  static func sourceTaps(_ i: Double, step: Double, size: Int) -> (Int, Int, Double) {
    let position = Swift.min(Swift.max((i + 0.5) * step - 0.5, 0), Double(size - 1))
    let lower = Int(position)
    return (lower, Swift.min(lower + 1, size - 1), position - Double(lower))
  }

  /// A gray image as RGB (each value repeated in the three channels).
  public static func grayToRGB(_ image: DecodedImage) -> DecodedImage {
    guard image.channels == 1 else { return image }
    var pixels = [UInt8](repeating: 0, count: image.pixels.count * 3)
    for (i, value) in image.pixels.enumerated() {
      pixels[3 * i] = value
      pixels[3 * i + 1] = value
      pixels[3 * i + 2] = value
    }
    return DecodedImage(width: image.width, height: image.height, channels: 3, pixels: pixels)
  }
}

/// How a folder of images becomes a dataset.
public struct ImageFolderOptions: Sendable, Equatable {
  /// The side of the square network input (`--resolution`); nil: the images' own size, which must
  /// then be the same for all of them.
  public var resolution: Int?
  /// The fraction of each class held out as the test set for folders without `train/` and `test/`
  /// (`--test-fraction`, in (0, 1)).
  public var testFraction: Double?
  /// The largest image file read, in bytes.
  public var maximumFileBytes: Int
  /// The most pixels one decoded image may have.
  public var maximumPixels: Int

  /// Accepted `--resolution` values.
  public static let resolutionRange = 8...4096

  public init(resolution: Int? = nil, testFraction: Double? = nil, maximumFileBytes: Int = 256 << 20, maximumPixels: Int = 1 << 26) {
    self.resolution = resolution
    self.testFraction = testFraction
    self.maximumFileBytes = maximumFileBytes
    self.maximumPixels = maximumPixels
  }
}

/// Reads one image file's bytes into pixels; `ImageDecoding.decode` unless a test substitutes its own.
public typealias ImageDecoder = @Sendable (_ data: Data, _ path: String, _ maximumPixels: Int) throws -> DecodedImage

extension DatasetSplits {
  /// File extensions read as images; other files (README.txt, .DS_Store, …) are skipped and counted.
  public static let imageExtensions: Set<String> = ["png", "jpg", "jpeg", "bmp", "ppm", "pgm", "pnm", "gif", "webp"]

  /// The decoder the folder datasets use by default.
  public static let defaultImageDecoder: ImageDecoder = { data, path, maximumPixels in
    try ImageDecoding.decode(data, path: path, maximumPixels: maximumPixels)
  }

  /// A dataset from a folder of images, one sub-folder per class.
  ///
  /// Layouts: `DIR/train/<class>/…` and `DIR/test/<class>/…` (the same class folders in both), or
  /// `DIR/<class>/…` with ``ImageFolderOptions/testFraction`` (a stratified hold-out seeded by
  /// `splitSeed`). Class names are the sorted folder names, labels their indices. Files whose extension
  /// is not in ``imageExtensions`` (and hidden files) are skipped and reported in `notes`; an image file
  /// that fails to decode is an error naming it, as is a class folder without images.
  ///
  /// When any image is RGB, gray images are converted to RGB (the value repeated in each channel); else
  /// the dataset is gray. Without ``ImageFolderOptions/resolution`` all images must have one size, which
  /// is kept; with it, see ``ImageResizing`` (training: shorter side to R, centre crop; test: shorter side
  /// to R/0.875, centre crop). Images are decoded up front on all compute threads and held in memory.
  public static func imageFolder(
    _ directory: URL, options: ImageFolderOptions = ImageFolderOptions(), validation: HoldOut = .none,
    splitSeed: UInt64 = 0, classCount: Int? = nil, decoder: ImageDecoder = defaultImageDecoder,
    notes: ((String) -> Void)? = nil
  ) throws -> DatasetSplits {
    let listing = try listImageFolder(directory, options: options, classCount: classCount, notes: notes)
    let train = listing.train, test = listing.test, resolvedClassCount = listing.classCount
    let classNames = listing.classNames

    let decodedTrain = try decodeAll(train.files, options: options, decoder: decoder)
    let decodedTest = try test.map { try decodeAll($0.files, options: options, decoder: decoder) } ?? []
    let all = decodedTrain + decodedTest
    let channels = all.contains { $0.channels == 3 } ? 3 : 1
    let side: (height: Int, width: Int)
    if let resolution = options.resolution {
      side = (resolution, resolution)
    } else {
      let first = all[0]
      if let other = all.firstIndex(where: { $0.width != first.width || $0.height != first.height }) {
        let path = other < train.files.count ? train.files[other].path : test!.files[other - train.files.count].path
        throw DatasetError.invalidFolder(
          path: directory.path,
          reason: "images differ in size (\(train.files[0].lastPathComponent) is \(first.width)×\(first.height), "
            + "\(path) is \(all[other].width)×\(all[other].height)); choose a size with --resolution")
      }
      side = (first.height, first.width)
    }
    let sampleBytes = side.height * side.width * channels
    try MemoryBudget.check(
      all.count.multipliedReportingOverflow(by: sampleBytes * 5).partialValue,
      for: "\(all.count) images of \(side.height)×\(side.width)×\(channels) from \(directory.path) (bytes and floats)")

    func raw(_ images: [DecodedImage], evaluation: Bool) -> RawImages {
      var pixels = [UInt8](repeating: 0, count: images.count * sampleBytes)
      let resolution = options.resolution
      pixels.withUnsafeMutableBufferPointer { out in
        nonisolated(unsafe) let target = out
        Parallel.forEach(images.count) { i in
          var image = images[i]
          if let resolution {
            let shorter = evaluation ? Int(Double(resolution) / ImageResizing.evaluationCropFraction) : resolution
            image = ImageResizing.resizeAndCenterCrop(image, shorterSide: shorter, crop: resolution)
          }
          if channels == 3 { image = ImageResizing.grayToRGB(image) }
          for k in 0..<sampleBytes { target[i * sampleBytes + k] = image.pixels[k] }
        }
      }
      return RawImages(count: images.count, height: side.height, width: side.width, channels: channels, maxValue: 255, pixels: pixels)
    }

    let name = directory.lastPathComponent
    let augmentation = Augmentation(padding: 0, horizontalFlip: true)
    if let test {
      return try make(
        name: name, train: raw(decodedTrain, evaluation: false), trainLabels: train.labels,
        test: raw(decodedTest, evaluation: true), testLabels: test.labels, classCount: resolvedClassCount,
        classNames: classNames, validation: validation, splitSeed: splitSeed,
        augmentation: augmentation)
    }
    let split = try testFractionSplit(listing, fraction: options.testFraction!, directory: directory, splitSeed: splitSeed)
    // Held-out images get the evaluation transform, training images the training one.
    return try make(
      name: name, train: raw(decodedTrain, evaluation: false), trainLabels: train.labels,
      test: raw(decodedTrain, evaluation: true), testLabels: train.labels, trainIndices: split.kept,
      testIndices: split.heldOut, classCount: resolvedClassCount, classNames: classNames,
      validation: validation, splitSeed: splitSeed &+ 1, augmentation: augmentation)
  }

  /// The files and labels of an image folder, found without decoding anything.
  struct FolderListing {
    var classNames: [String]
    var classCount: Int
    var train: (files: [URL], labels: [Int])
    /// The `test/` files, or nil when the test set is a `--test-fraction` of `train`.
    var test: (files: [URL], labels: [Int])?
  }

  /// Lists `directory`'s class folders and image files (sorted), checking the layout; see ``imageFolder(_:options:validation:splitSeed:classCount:decoder:notes:)``.
  static func listImageFolder(
    _ directory: URL, options: ImageFolderOptions, classCount: Int?, notes: ((String) -> Void)?
  ) throws -> FolderListing {
    let manager = FileManager.default
    func isDirectory(_ url: URL) -> Bool {
      var flag: ObjCBool = false
      return manager.fileExists(atPath: url.path, isDirectory: &flag) && flag.boolValue
    }
    guard isDirectory(directory) else { throw DatasetError.fileNotFound(path: directory.path) }
    func classFolders(_ root: URL) throws -> [String] {
      let entries = try contents(of: root)
      return entries.filter { !$0.hasPrefix(".") && isDirectory(root.appendingPathComponent($0)) }.sorted()
    }
    let trainRoot = directory.appendingPathComponent("train"), testRoot = directory.appendingPathComponent("test")
    let hasSplits = isDirectory(trainRoot) && isDirectory(testRoot)
    let classNames = try classFolders(hasSplits ? trainRoot : directory)
    guard !classNames.isEmpty else {
      throw DatasetError.invalidFolder(path: directory.path, reason: "no class folders (expected DIR/<class>/… or DIR/train/<class>/… and DIR/test/<class>/…)")
    }
    if hasSplits {
      let testClasses = try classFolders(testRoot)
      guard testClasses == classNames else {
        let missing = Set(classNames).symmetricDifference(testClasses).sorted().prefix(5)
        throw DatasetError.invalidFolder(
          path: testRoot.path, reason: "its class folders differ from train/'s (e.g. \(missing.joined(separator: ", ")))")
      }
      if options.testFraction != nil {
        throw DatasetError.invalidFolder(
          path: directory.path, reason: "it has train/ and test/, so a test fraction does not apply")
      }
    } else if options.testFraction == nil {
      throw DatasetError.invalidFolder(
        path: directory.path, reason: "without train/ and test/ sub-folders a test fraction is needed (--test-fraction)")
    }
    let resolvedClassCount = classCount ?? classNames.count
    guard classNames.count <= resolvedClassCount else {
      throw DatasetError.labelOutOfRange(
        path: directory.path, label: classNames.count - 1, classCount: resolvedClassCount, index: classNames.count - 1)
    }

    var skipped = 0
    func listFiles(_ root: URL) throws -> (files: [URL], labels: [Int]) {
      var files: [URL] = [], labels: [Int] = []
      for (label, name) in classNames.enumerated() {
        let folder = root.appendingPathComponent(name)
        var found = 0
        for entry in try contents(of: folder).sorted() {
          let url = folder.appendingPathComponent(entry)
          guard !entry.hasPrefix("."), imageExtensions.contains(url.pathExtension.lowercased()), !isDirectory(url) else {
            skipped += 1
            continue
          }
          files.append(url)
          labels.append(label)
          found += 1
        }
        guard found > 0 else { throw DatasetError.invalidFolder(path: folder.path, reason: "the class folder holds no images") }
      }
      return (files, labels)
    }
    let train = try listFiles(hasSplits ? trainRoot : directory)
    let test = hasSplits ? try listFiles(testRoot) : nil
    if skipped > 0 {
      notes?("skipped \(skipped) file(s) in \(directory.path) without an image extension (\(imageExtensions.sorted().joined(separator: ", ")))")
    }
    return FolderListing(
      classNames: padded(classNames, to: resolvedClassCount), classCount: resolvedClassCount, train: train, test: test)
  }

  /// The stratified `--test-fraction` split of a folder without `test/`: (kept, held-out) indices.
  static func testFractionSplit(
    _ listing: FolderListing, fraction: Double, directory: URL, splitSeed: UInt64
  ) throws -> (kept: [Int], heldOut: [Int]) {
    guard fraction > 0 && fraction < 1 else {
      throw DatasetError.invalidSplit("test fraction \(fraction) must be in (0, 1)")
    }
    let labels = listing.train.labels
    let holdOut = Int((Double(labels.count) * fraction).rounded())
    guard holdOut >= 1 && holdOut < labels.count else {
      throw DatasetError.invalidSplit(
        "a test fraction of \(fraction) holds out \(holdOut) of \(labels.count) images in \(directory.path); need 1...\(labels.count - 1)")
    }
    return DatasetSplitter.stratified(labels: labels, classCount: listing.classCount, holdOutCount: holdOut, seed: splitSeed)
  }

  /// `names` followed by the indices of the classes beyond them.
  static func padded(_ names: [String], to count: Int) -> [String] {
    names + (names.count..<Swift.max(count, names.count)).map(String.init)
  }

  static func contents(of folder: URL) throws -> [String] {
    do {
      return try FileManager.default.contentsOfDirectory(atPath: folder.path)
    } catch {
      throw DatasetError.unreadable(path: folder.path, reason: error.localizedDescription)
    }
  }

  /// Reads and decodes one image file (size-bounded), checking the decoder's result; errors name the file.
  static func decodeImage(_ url: URL, options: ImageFolderOptions, decoder: ImageDecoder) throws -> DecodedImage {
    let data = try BoundedFile.read(url, maximumBytes: options.maximumFileBytes)
    let image = try decoder(data, url.path, options.maximumPixels)
    guard image.channels == 1 || image.channels == 3, image.width > 0, image.height > 0,
      image.pixels.count == image.width * image.height * image.channels
    else {
      throw DatasetError.invalidFolder(
        path: url.path, reason: "decoded to \(image.width)×\(image.height)×\(image.channels) with \(image.pixels.count) bytes")
    }
    return image
  }

  /// Decodes `files` on the compute threads; the first failure (in file order) is thrown, naming its file.
  static func decodeAll(_ files: [URL], options: ImageFolderOptions, decoder: ImageDecoder) throws -> [DecodedImage] {
    // Each worker writes only its own slots.
    let slots = UnsafeMutablePointer<Result<DecodedImage, Error>?>.allocate(capacity: files.count)
    slots.initialize(repeating: nil, count: files.count)
    defer { slots.deinitialize(count: files.count); slots.deallocate() }
    nonisolated(unsafe) let results = slots
    Parallel.forEach(files.count) { i in
      results[i] = Result { try decodeImage(files[i], options: options, decoder: decoder) }
    }
    return try (0..<files.count).map { try slots[$0]!.get() }
  }
}
