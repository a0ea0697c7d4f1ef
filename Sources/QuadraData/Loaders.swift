import Foundation

/// The datasets the engine can load, parsed from a command-line word.
public enum DatasetName: Hashable, Sendable, CustomStringConvertible {
  /// scikit-learn's 8×8 handwritten digits, embedded in the module.
  case digits
  /// Fashion-MNIST from the Debian package `dataset-fashion-mnist`.
  case fashionMNIST
  /// A directory with MNIST-style IDX files (`train-images-idx3-ubyte[.gz]` etc.).
  case idxDirectory(String)
  /// A directory of images, one folder per class (`DIR/<class>/…` or `DIR/train/<class>/…` + `DIR/test/<class>/…`).
  case imageFolder(String)
  /// A `.npz` archive with `x_train`, `y_train`, `x_test`, `y_test`.
  case numPyArchive(String)

  /// Parses "digits", "fashion-mnist" (also "fashion_mnist", "fashionmnist"), a `.npz` path, or a directory
  /// path: an existing directory without `train-images…` IDX files is an image folder, any other an IDX directory.
  ///
  /// A word that is neither a known name nor path-like (no `/`, not starting with `.` or `~`,
  /// not an existing directory) is rejected, so a typo reads "unknown dataset" rather than
  /// "directory not found".
  public init(parsing text: String) throws {
    let word = text.trimmingCharacters(in: .whitespaces)
    switch word.lowercased() {
    case "digits", "sklearn-digits":
      self = .digits
    case "fashion-mnist", "fashion_mnist", "fashionmnist":
      self = .fashionMNIST
    default:
      var isDirectory: ObjCBool = false
      let exists = FileManager.default.fileExists(atPath: word, isDirectory: &isDirectory)
      let pathLike = word.contains("/") || word.hasPrefix(".") || word.hasPrefix("~")
      guard !word.isEmpty, pathLike || (exists && isDirectory.boolValue) else {
        throw DatasetError.unknownDataset(name: text)
      }
      let path = (word as NSString).expandingTildeInPath
      if path.lowercased().hasSuffix(".npz") {
        self = .numPyArchive(path)
      } else if exists, isDirectory.boolValue, !DatasetSplits.idxCandidates("train", "images").contains(where: {
        FileManager.default.fileExists(atPath: URL(fileURLWithPath: path).appendingPathComponent($0).path)
      }) {
        self = .imageFolder(path)
      } else {
        self = .idxDirectory(path)
      }
    }
  }

  public var description: String {
    switch self {
    case .digits: return "digits"
    case .fashionMNIST: return "fashion-mnist"
    case .idxDirectory(let path), .imageFolder(let path), .numPyArchive(let path): return path
    }
  }
}

extension DatasetSplits {
  /// Where the Debian package `dataset-fashion-mnist` installs the IDX files.
  public static let fashionMNISTDirectory = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist")
  /// The Debian package that provides Fashion-MNIST.
  public static let fashionMNISTPackage = "dataset-fashion-mnist"

  /// The Fashion-MNIST class names, in label order.
  public static let fashionMNISTClassNames = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
  ]

  /// Loads a dataset by name.
  ///
  /// - Parameters:
  ///   - validation: training samples to hold out as a validation split (stratified, see
  ///     ``DatasetSplitter/stratified(labels:classCount:holdOutCount:seed:)``).
  ///   - splitSeed: seeds the hold-out choices. It is separate from the training seed so the
  ///     evaluation sets stay the same when only the training seed changes.
  ///   - classCount: the number of classes, overriding the count the data implies (`--classes`); every
  ///     label must lie below it. Nil: 10 for digits and Fashion-MNIST, `max label + 1` for IDX data.
  ///   - folder: resolution and test fraction of image folders.
  ///   - layout: the axis order of `.npz` images (nil: inferred).
  ///   - notes: receives remarks such as skipped files.
  public static func load(
    _ name: DatasetName, validation: HoldOut = .none, splitSeed: UInt64 = 0, classCount: Int? = nil,
    folder: ImageFolderOptions = ImageFolderOptions(), layout: ArrayLayout? = nil, notes: ((String) -> Void)? = nil
  ) throws -> DatasetSplits {
    let splits: DatasetSplits
    switch name {
    case .digits:
      splits = try digits(validation: validation, splitSeed: splitSeed)
    case .fashionMNIST:
      splits = try fashionMNIST(validation: validation, splitSeed: splitSeed)
    case .idxDirectory(let path):
      return try idxDirectory(URL(fileURLWithPath: path), classCount: classCount, validation: validation, splitSeed: splitSeed)
    case .imageFolder(let path):
      return try imageFolder(
        URL(fileURLWithPath: path), options: folder, validation: validation, splitSeed: splitSeed,
        classCount: classCount, notes: notes)
    case .numPyArchive(let path):
      return try numPyArchive(
        URL(fileURLWithPath: path), layout: layout, classCount: classCount, validation: validation, splitSeed: splitSeed)
    }
    guard let classCount else { return splits }
    return try splits.withClassCount(classCount)
  }

  // MARK: Digits

  /// The test-set size of the digits split (1797 = 1437 train + 360 test, about 80/20).
  public static let digitsTestCount = 360

  /// scikit-learn's 8×8 digits: 1797 images with values 0…16, 10 classes.
  ///
  /// The data has no official train/test split, so one is made here: a stratified split
  /// (``DatasetSplitter/stratified(labels:classCount:holdOutCount:seed:)``) holding out
  /// ``digitsTestCount`` = 360 samples (36 per class, ±1) as the test set, seeded by `splitSeed`
  /// (default 0), leaving 1437 for training. A validation split, if asked for, is then carved
  /// from those 1437 the same way. Normalization statistics come from the final training samples.
  /// Augmentation default: pad 1 + random crop, no flip (a mirrored digit is not the same digit).
  public static func digits(validation: HoldOut = .none, splitSeed: UInt64 = 0) throws -> DatasetSplits {
    let (raw, labels) = try loadDigitsCSV()
    let split = DatasetSplitter.stratified(
      labels: labels, classCount: 10, holdOutCount: digitsTestCount, seed: splitSeed)
    return try make(
      name: "digits", train: raw, trainLabels: labels, test: raw, testLabels: labels,
      trainIndices: split.kept, testIndices: split.heldOut, classCount: 10, classNames: nil,
      validation: validation, splitSeed: splitSeed &+ 1,
      augmentation: Augmentation(padding: 1, horizontalFlip: false))
  }

  /// Parses the embedded `digits.csv.gz`: one sample per line, 64 pixel values then the label.
  static func loadDigitsCSV() throws -> (RawImages, [Int]) {
    guard let url = Bundle.module.url(forResource: "digits.csv", withExtension: "gz", subdirectory: "Resources")
      ?? Bundle.module.url(forResource: "digits.csv", withExtension: "gz")
    else { throw DatasetError.missingResource(name: "Resources/digits.csv.gz") }
    // The embedded file inflates to about 180 KB; 16 MiB bounds a damaged resource.
    let text = try IDX.readFileDecompressing(url, maximumBytes: 16 << 20)
    var pixels: [UInt8] = []
    pixels.reserveCapacity(1797 * 64)
    var labels: [Int] = []
    var fields: [Int] = []
    fields.reserveCapacity(65)
    var line = 1
    var value = 0, digits = 0

    func finishLine() throws {
      guard !fields.isEmpty else { return }  // blank line
      guard fields.count == 65 else {
        throw DatasetError.invalidCSV(path: url.path, line: line, reason: "expected 65 fields, found \(fields.count)")
      }
      if let bad = fields[..<64].firstIndex(where: { $0 > 16 }) {
        throw DatasetError.invalidCSV(path: url.path, line: line, reason: "pixel \(fields[bad]) out of range 0...16")
      }
      guard fields[64] < 10 else {
        throw DatasetError.labelOutOfRange(path: url.path, label: fields[64], classCount: 10, index: labels.count)
      }
      pixels += fields[..<64].map { UInt8($0) }
      labels.append(fields[64])
      fields.removeAll(keepingCapacity: true)
    }

    for byte in text {
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"):
        value = value * 10 + Int(byte - UInt8(ascii: "0"))
        digits += 1
        guard digits <= 6 else {
          throw DatasetError.invalidCSV(path: url.path, line: line, reason: "number too long")
        }
      case UInt8(ascii: ","), UInt8(ascii: "\n"):
        if digits == 0 && !(byte == UInt8(ascii: "\n") && fields.isEmpty) {
          throw DatasetError.invalidCSV(path: url.path, line: line, reason: "empty field")
        }
        if digits > 0 { fields.append(value) }
        value = 0
        digits = 0
        if byte == UInt8(ascii: "\n") {
          try finishLine()
          line += 1
        }
      case UInt8(ascii: "\r"), UInt8(ascii: " "):
        continue
      default:
        throw DatasetError.invalidCSV(path: url.path, line: line, reason: "unexpected character \(UnicodeScalar(byte))")
      }
    }
    if digits > 0 { fields.append(value) }
    try finishLine()
    let raw = RawImages(count: labels.count, height: 8, width: 8, maxValue: 16, pixels: pixels)
    return (raw, labels)
  }

  // MARK: IDX datasets

  /// Fashion-MNIST (60000 train / 10000 test, 28×28, 10 classes) from `directory`.
  ///
  /// When the directory is missing the error names the Debian package and the `apt-get` command.
  /// Augmentation default of the dataset: pad 2 + random crop, horizontal flip. (`quadranet train`
  /// does not use it: its recipe for 28×28 data, `TrainingRecipe.defaultOptions(for:)`, pads by 1.)
  public static func fashionMNIST(
    directory: URL = fashionMNISTDirectory, validation: HoldOut = .none, splitSeed: UInt64 = 0
  ) throws -> DatasetSplits {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue
    else {
      throw DatasetError.notInstalled(dataset: "Fashion-MNIST", directory: directory.path, package: fashionMNISTPackage)
    }
    return try idxDirectory(
      directory, name: "fashion-mnist", classNames: fashionMNISTClassNames, validation: validation,
      splitSeed: splitSeed, augmentation: Augmentation(padding: 2, horizontalFlip: true))
  }

  /// The file names accepted for each part of an IDX dataset, in the order they are tried.
  static func idxCandidates(_ split: String, _ kind: String) -> [String] {
    let rank = kind == "images" ? 3 : 1
    let bases = ["\(split)-\(kind)-idx\(rank)-ubyte", "\(split)-\(kind).idx\(rank)-ubyte"]
    return bases.flatMap { [$0, $0 + ".gz"] }
  }

  static func locate(_ split: String, _ kind: String, in directory: URL) throws -> URL {
    let candidates = idxCandidates(split, kind)
    for name in candidates {
      let url = directory.appendingPathComponent(name)
      if FileManager.default.fileExists(atPath: url.path) { return url }
    }
    throw DatasetError.missingIDXFile(directory: directory.path, tried: candidates)
  }

  /// An MNIST-style dataset from a directory holding `train-images-idx3-ubyte`,
  /// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`
  /// (each optionally gzipped, also accepted with `.idx` instead of `-idx`).
  ///
  /// Checks that the images are 3-D, the labels 1-D and in `0..<classCount`, and that images and
  /// labels agree in count. Without `classCount` the class count is `max label + 1` over both splits
  /// (a 3-class set gets a 3-way head). Augmentation default of the dataset: pad 2 + random crop, no
  /// flip (MNIST digits); `quadranet train`'s recipe for 28×28 data pads by 1 instead.
  public static func idxDirectory(
    _ directory: URL, name: String? = nil, classCount: Int? = nil, classNames: [String]? = nil,
    validation: HoldOut = .none, splitSeed: UInt64 = 0,
    augmentation: Augmentation = Augmentation(padding: 2, horizontalFlip: false)
  ) throws -> DatasetSplits {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue
    else { throw DatasetError.fileNotFound(path: directory.path) }
    // Byte labels are below 256; the class count is checked against them once it is known.
    let bound = classCount ?? 256
    let (train, trainLabels) = try loadIDXPair(split: "train", directory: directory, classCount: bound)
    let (test, testLabels) = try loadIDXPair(split: "t10k", directory: directory, classCount: bound)
    let classCount = classCount ?? ((trainLabels + testLabels).max() ?? 0) + 1
    if let classNames, classNames.count != classCount {
      throw DatasetError.invalidSplit("\(classNames.count) class names for \(classCount) classes in \(directory.path)")
    }
    return try make(
      name: name ?? directory.lastPathComponent, train: train, trainLabels: trainLabels, test: test,
      testLabels: testLabels, classCount: classCount, classNames: classNames, validation: validation,
      splitSeed: splitSeed, augmentation: augmentation)
  }

  static func loadIDXPair(split: String, directory: URL, classCount: Int) throws -> (RawImages, [Int]) {
    let imagesURL = try locate(split, "images", in: directory)
    let labelsURL = try locate(split, "labels", in: directory)
    let images = try IDX.readImages(contentsOf: imagesURL)
    // The pixels become 32-bit floats: check those too before anything is converted.
    let floatBytes = images.bytes.count.multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
    try MemoryBudget.check(
      floatBytes.overflow ? Int.max : floatBytes.partialValue,
      for: "\(imagesURL.path) as 32-bit floats (IDX dimensions \(images.dimensions))")
    let labels = try IDX.readLabels(contentsOf: labelsURL, classCount: classCount)
    guard images.dimensions[0] == labels.count else {
      throw DatasetError.countMismatch(
        imagesPath: imagesURL.path, imageCount: images.dimensions[0], labelsPath: labelsURL.path,
        labelCount: labels.count)
    }
    let raw = RawImages(
      count: images.dimensions[0], height: images.dimensions[1], width: images.dimensions[2], maxValue: 255,
      pixels: images.bytes)
    return (raw, labels)
  }
}
