import Foundation
import Testing

@testable import QuadraData

@Suite struct IDXTests {
  @Test func encodesTheDocumentedLayout() {
    let array = IDXArray(dimensions: [2, 1, 3], bytes: [1, 2, 3, 4, 5, 6])
    let data = [UInt8](IDX.encode(array))
    #expect(data[0..<4] == [0, 0, 0x08, 3])
    #expect(data[4..<16] == [0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3])
    #expect(data[16...] == [1, 2, 3, 4, 5, 6])
  }

  @Test(arguments: [false, true])
  func roundTripRawAndGzipped(gzip: Bool) throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let images = IDXArray(dimensions: [5, 3, 7], bytes: randomBytes(5 * 3 * 7, seed: 11))
    let labels = IDXArray(dimensions: [5], bytes: [9, 0, 3, 3, 7])
    let imagesURL = directory.appendingPathComponent("images.idx")
    let labelsURL = directory.appendingPathComponent("labels.idx")
    // The gzip decision is by magic bytes, so the names deliberately lack ".gz".
    try (gzip ? Gzip.compress(IDX.encode(images)) : IDX.encode(images)).write(to: imagesURL)
    try (gzip ? Gzip.compress(IDX.encode(labels)) : IDX.encode(labels)).write(to: labelsURL)
    #expect(try IDX.readImages(contentsOf: imagesURL) == images)
    #expect(try IDX.readLabels(contentsOf: labelsURL, classCount: 10) == [9, 0, 3, 3, 7])
  }

  @Test func truncatedPayload() throws {
    let data = IDX.encode(IDXArray(dimensions: [4, 2, 2], bytes: randomBytes(16, seed: 1)))
    let error = thrownError { _ = try IDX.parse(data.dropLast(3), path: "x-idx3-ubyte") }
    #expect(error as? DatasetError == .truncated(path: "x-idx3-ubyte", expectedBytes: 32, foundBytes: 29))
    #expect("\(error!)" == "x-idx3-ubyte: truncated: expected 32 bytes, found 29")
    // A header cut inside the dimensions.
    #expect(throws: DatasetError.truncated(path: "h", expectedBytes: 16, foundBytes: 10)) {
      try IDX.parse(data.prefix(10), path: "h")
    }
  }

  @Test func trailingBytes() throws {
    let data = IDX.encode(IDXArray(dimensions: [3], bytes: [1, 2, 3])) + Data([0, 0])
    #expect(throws: DatasetError.trailingBytes(path: "l", expectedBytes: 11, foundBytes: 13)) {
      try IDX.parse(data, path: "l")
    }
  }

  @Test func badMagicAndType() throws {
    let error = thrownError { _ = try IDX.parse(Data([0x50, 0x4B, 0x03, 0x04, 0, 0]), path: "archive.zip") }
    #expect(error as? DatasetError == .badMagic(path: "archive.zip", bytes: [0x50, 0x4B, 0x03, 0x04]))
    #expect("\(error!)".contains("archive.zip: bad magic number [50 4b 03 04]"))
    let floats = Data([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    let typeError = thrownError { _ = try IDX.parse(floats, path: "f") }
    #expect(typeError as? DatasetError == .unsupportedDataType(path: "f", code: 0x0D))
    #expect("\(typeError!)".contains("0x0D"))
  }

  @Test func corruptAndTruncatedGzipFiles() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let compressed = try Gzip.compress(IDX.encode(IDXArray(dimensions: [100], bytes: randomBytes(100, below: 10, seed: 2))))
    var corrupt = compressed
    corrupt[corrupt.count - 6] ^= 0x55  // CRC-32
    let corruptURL = directory.appendingPathComponent("train-labels-idx1-ubyte.gz")
    try corrupt.write(to: corruptURL)
    let error = thrownError { _ = try IDX.readLabels(contentsOf: corruptURL, classCount: 10) }
    guard case .corruptGzip(let path, let reason) = error as? DatasetError else {
      Issue.record("expected corruptGzip, got \(String(describing: error))")
      return
    }
    #expect(path == corruptURL.path && reason.contains("corrupt"))
    let truncatedURL = directory.appendingPathComponent("cut.gz")
    try compressed.prefix(compressed.count - 10).write(to: truncatedURL)
    guard case .corruptGzip(_, let cutReason) = thrownError({ _ = try IDX.read(contentsOf: truncatedURL) }) as? DatasetError
    else {
      Issue.record("truncated gzip not reported")
      return
    }
    #expect(cutReason.contains("truncated"))
  }

  @Test func labelOutOfRangeNamesLabelAndIndex() throws {
    let array = IDXArray(dimensions: [4], bytes: [0, 3, 12, 1])
    let error = thrownError { _ = try IDX.labels(from: array, classCount: 10, path: "labels") }
    #expect(error as? DatasetError == .labelOutOfRange(path: "labels", label: 12, classCount: 10, index: 2))
    #expect("\(error!)" == "labels: label 12 out of range 0..<10 at index 2")
  }

  @Test func wrongRank() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let url = directory.appendingPathComponent("x")
    try IDX.encode(IDXArray(dimensions: [2, 2], bytes: [1, 2, 3, 4])).write(to: url)
    #expect(throws: DatasetError.unexpectedRank(path: url.path, expected: 1, dimensions: [2, 2])) {
      try IDX.readLabels(contentsOf: url, classCount: 10)
    }
    #expect(throws: DatasetError.unexpectedRank(path: url.path, expected: 3, dimensions: [2, 2])) {
      try IDX.readImages(contentsOf: url)
    }
    #expect(throws: DatasetError.fileNotFound(path: directory.appendingPathComponent("nope").path)) {
      try IDX.read(contentsOf: directory.appendingPathComponent("nope"))
    }
  }
}

@Suite struct IDXDatasetTests {
  @Test(arguments: [false, true])
  func loadsDirectoryAndNormalizesWithTrainStatistics(gzip: Bool) throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let files = try writeIDXDirectory(directory, trainCount: 23, testCount: 9, height: 5, width: 3, gzip: gzip, seed: 5)
    let splits = try DatasetSplits.idxDirectory(directory, name: "tiny")
    #expect(splits.train.images.shape == [23, 5, 3, 1])
    #expect(splits.test.images.shape == [9, 5, 3, 1])
    #expect(splits.validation == nil)
    #expect(splits.train.labels == files.trainLabels.bytes.map(Int.init))
    #expect(splits.test.labels == files.testLabels.bytes.map(Int.init))
    #expect(splits.train.name == "tiny/train")

    // Naive statistics over the training pixels scaled to [0, 1].
    let scaled = files.trainImages.bytes.map { Double($0) / 255 }
    let mean = scaled.reduce(0, +) / Double(scaled.count)
    let std = (scaled.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(scaled.count)).squareRoot()
    #expect(abs(Double(splits.train.normalization.mean) - mean) < 1e-6)
    #expect(abs(Double(splits.train.normalization.std) - std) < 1e-6)
    #expect(splits.test.normalization == splits.train.normalization)
    let expectedTest = files.testImages.bytes.map { Float((Double($0) / 255 - mean) / std) }
    for (a, b) in zip(splits.test.images.scalars, expectedTest) { #expect(abs(a - b) < 1e-4) }
    // Training inputs are standardized.
    let values = splits.train.images.scalars.map(Double.init)
    let m = values.reduce(0, +) / Double(values.count)
    let s = (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count)).squareRoot()
    #expect(abs(m) < 1e-4 && abs(s - 1) < 1e-4)
  }

  @Test func validationIsCarvedFromTrain() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let files = try writeIDXDirectory(directory, trainCount: 50, testCount: 4, height: 2, width: 2, gzip: false, seed: 8)
    let splits = try DatasetSplits.idxDirectory(directory, validation: .fraction(0.2), splitSeed: 3)
    let validation = try #require(splits.validation)
    #expect(splits.train.count == 40 && validation.count == 10)
    // Every training sample lands in exactly one of the two splits: match images back to source rows.
    let normalization = splits.train.normalization
    func sourceRows(_ dataset: Dataset) -> [Int] {
      (0..<dataset.count).map { row in
        let pixels = (0..<4).map { UInt8(normalization.denormalize(dataset.images.scalars[row * 4 + $0]).rounded()) }
        return (0..<50).first { Array(files.trainImages.bytes[($0 * 4)..<($0 * 4 + 4)]) == pixels }!
      }
    }
    // (The 50 random 2×2 images are distinct, so each maps back to one row.)
    let trainRows = sourceRows(splits.train), validationRows = sourceRows(validation)
    #expect(Set(trainRows + validationRows) == Set(0..<50))
    #expect(trainRows == trainRows.sorted() && validationRows == validationRows.sorted())
    #expect(splits.train.labels == trainRows.map { Int(files.trainLabels.bytes[$0]) })
    #expect(validation.labels == validationRows.map { Int(files.trainLabels.bytes[$0]) })
    let again = try DatasetSplits.idxDirectory(directory, validation: .fraction(0.2), splitSeed: 3)
    #expect(again.validation!.labels == validation.labels)
    #expect(again.validation!.images.scalars == validation.images.scalars)
  }

  @Test func countMismatchIsReported() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    try writeIDXDirectory(directory, trainCount: 6, testCount: 3, height: 2, width: 2, gzip: false, seed: 1)
    let labelsURL = directory.appendingPathComponent("train-labels-idx1-ubyte")
    try IDX.encode(IDXArray(dimensions: [5], bytes: [1, 2, 3, 4, 5])).write(to: labelsURL)
    let error = thrownError { _ = try DatasetSplits.idxDirectory(directory) }
    let imagesPath = directory.appendingPathComponent("train-images-idx3-ubyte").path
    #expect(
      error as? DatasetError
        == .countMismatch(imagesPath: imagesPath, imageCount: 6, labelsPath: labelsURL.path, labelCount: 5))
    #expect("\(error!)".contains("has 6 images but"))
  }

  @Test func missingFilesAndDirectories() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let error = thrownError { _ = try DatasetSplits.idxDirectory(directory) }
    guard case .missingIDXFile(_, let tried) = error as? DatasetError else {
      Issue.record("expected missingIDXFile, got \(String(describing: error))")
      return
    }
    #expect(tried.contains("train-images-idx3-ubyte") && tried.contains("train-images-idx3-ubyte.gz"))
    let absent = directory.appendingPathComponent("absent")
    let fashion = thrownError { _ = try DatasetSplits.fashionMNIST(directory: absent) }
    #expect(
      fashion as? DatasetError
        == .notInstalled(dataset: "Fashion-MNIST", directory: absent.path, package: "dataset-fashion-mnist"))
    #expect("\(fashion!)".contains("apt-get install -y dataset-fashion-mnist"))
  }

  @Test func parsesDatasetNames() throws {
    #expect(try DatasetName(parsing: "digits") == .digits)
    #expect(try DatasetName(parsing: "Fashion-MNIST") == .fashionMNIST)
    #expect(try DatasetName(parsing: "fashion_mnist") == .fashionMNIST)
    #expect(try DatasetName(parsing: "/data/mnist") == .idxDirectory("/data/mnist"))
    #expect(try DatasetName(parsing: "./mnist") == .idxDirectory("./mnist"))
    #expect(throws: DatasetError.unknownDataset(name: "digitz")) { try DatasetName(parsing: "digitz") }
    #expect(DatasetName.fashionMNIST.description == "fashion-mnist")
  }

  /// The real Fashion-MNIST, when the Debian package is installed.
  @Test(.enabled(if: FileManager.default.fileExists(atPath: DatasetSplits.fashionMNISTDirectory.path)))
  func loadsInstalledFashionMNIST() throws {
    let splits = try DatasetSplits.fashionMNIST(validation: .count(5000))
    #expect(splits.train.count == 55_000 && splits.validation?.count == 5000 && splits.test.count == 10_000)
    #expect(splits.test.images.shape == [10_000, 28, 28, 1])
    #expect(splits.train.classHistogram == [Int](repeating: 5500, count: 10))
    #expect(splits.test.classNames[9] == "Ankle boot")
    // The well-known statistics of the training images (0.2860 / 0.3530 on all 60000).
    #expect(abs(splits.train.normalization.mean - 0.286) < 0.002)
    #expect(abs(splits.train.normalization.std - 0.353) < 0.002)
    #expect(splits.train.defaultAugmentation == Augmentation(padding: 2, horizontalFlip: true))
  }
}
