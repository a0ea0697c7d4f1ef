import Foundation
import Testing

@testable import QuadraData

/// Binary Netpbm (P5 gray, P6 RGB, maxval 255) for the folder tests: the tests inject this decoder so
/// they do not depend on which decoders the build has.
enum TestNetpbm {
  static func encode(width: Int, height: Int, channels: Int, pixels: [UInt8]) -> Data {
    Data("\(channels == 1 ? "P5" : "P6")\n\(width) \(height)\n255\n".utf8) + Data(pixels)
  }

  struct Malformed: Error { var path: String }

  static let decoder: ImageDecoder = { data, path, _ in
    let bytes = [UInt8](data)
    // Header: magic, width, height, maxval, each followed by one whitespace byte.
    var fields: [String] = [], current = "", offset = 0
    while fields.count < 4, offset < bytes.count {
      let byte = bytes[offset]
      offset += 1
      if byte == 0x20 || byte == 0x0A {
        fields.append(current)
        current = ""
      } else {
        current.append(Character(UnicodeScalar(byte)))
      }
    }
    guard fields.count == 4, let width = Int(fields[1]), let height = Int(fields[2]), fields[0] == "P5" || fields[0] == "P6"
    else { throw Malformed(path: path) }
    let channels = fields[0] == "P5" ? 1 : 3
    guard bytes.count - offset == width * height * channels else { throw Malformed(path: path) }
    return DecodedImage(width: width, height: height, channels: channels, pixels: Array(bytes[offset...]))
  }
}

/// Writes a solid image of `value` as `name` in `folder` (created as needed).
func writeImage(
  _ folder: URL, _ name: String, width: Int = 4, height: Int = 4, channels: Int = 1, value: UInt8
) throws {
  try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  let pixels = [UInt8](repeating: value, count: width * height * channels)
  try TestNetpbm.encode(width: width, height: height, channels: channels, pixels: pixels)
    .write(to: folder.appendingPathComponent(name))
}

@Suite struct ImageFolderTests {
  func load(_ directory: URL, _ options: ImageFolderOptions = ImageFolderOptions(), seed: UInt64 = 0,
    notes: ((String) -> Void)? = nil) throws -> DatasetSplits {
    try DatasetSplits.imageFolder(directory, options: options, splitSeed: seed, decoder: TestNetpbm.decoder, notes: notes)
  }

  @Test func trainAndTestFoldersWithSortedClassNamesAndSkippedFiles() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    for (split, count) in [("train", 3), ("test", 2)] {
      for (label, name) in ["zebra", "apple", "mango"].enumerated() {
        for i in 0..<count {
          try writeImage(root.appendingPathComponent("\(split)/\(name)"), "\(i).pgm", value: UInt8(label * 50 + i))
        }
      }
    }
    try Data("notes".utf8).write(to: root.appendingPathComponent("train/apple/README.txt"))
    try Data([0]).write(to: root.appendingPathComponent("train/apple/.DS_Store"))
    var messages: [String] = []
    let splits = try load(root, notes: { messages.append($0) })
    #expect(splits.train.classNames == ["apple", "mango", "zebra"])
    #expect(splits.train.classCount == 3 && splits.test.classCount == 3)
    #expect(splits.train.images.shape == [9, 4, 4, 1] && splits.test.images.shape == [6, 4, 4, 1])
    #expect(splits.train.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2])
    #expect(messages.count == 1 && messages[0].contains("skipped 2 file(s)"))
    // "apple" (label 0) images hold 50 + i: raw values survive normalization.
    let first = splits.train.normalization.denormalize(splits.train.images.scalars[0])
    #expect(abs(first - 50) < 1e-3)
  }

  @Test func emptyClassFolderIsNamed() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    try writeImage(root.appendingPathComponent("cat"), "a.pgm", value: 1)
    try writeImage(root.appendingPathComponent("dog"), "a.pgm", value: 2)
    let empty = root.appendingPathComponent("emu")
    try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
    try Data("x".utf8).write(to: empty.appendingPathComponent("notes.txt"))
    let error = thrownError { _ = try load(root, ImageFolderOptions(testFraction: 0.5)) }
    #expect(error as? DatasetError == .invalidFolder(path: empty.path, reason: "the class folder holds no images"))
  }

  @Test func undecodableImageIsAnErrorNamingIt() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    try writeImage(root.appendingPathComponent("cat"), "a.pgm", value: 1)
    try writeImage(root.appendingPathComponent("cat"), "b.pgm", value: 1)
    let bad = root.appendingPathComponent("cat/broken.png")
    try Data("not an image".utf8).write(to: bad)
    let error = thrownError { _ = try load(root, ImageFolderOptions(testFraction: 0.5)) }
    #expect((error as? TestNetpbm.Malformed)?.path == bad.path)
  }

  @Test func mixedSizesNeedAResolutionAndAreResized() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    try writeImage(root.appendingPathComponent("train/a"), "0.pgm", width: 6, height: 4, value: 10)
    try writeImage(root.appendingPathComponent("train/b"), "0.pgm", width: 3, height: 9, value: 200)
    try writeImage(root.appendingPathComponent("test/a"), "0.pgm", width: 8, height: 8, value: 10)
    try writeImage(root.appendingPathComponent("test/b"), "0.pgm", width: 5, height: 5, value: 200)
    let error = thrownError { _ = try load(root) }
    #expect("\(error!)".contains("--resolution"))
    let splits = try load(root, ImageFolderOptions(resolution: 8))
    #expect(splits.train.images.shape == [2, 8, 8, 1] && splits.test.images.shape == [2, 8, 8, 1])
    // Solid images stay solid under bilinear resampling.
    let raw = splits.test.images.scalars.map { splits.test.normalization.denormalize($0).rounded() }
    #expect(Set(raw[0..<64]) == [10] && Set(raw[64...]) == [200])
  }

  @Test func grayImagesBecomeRGBWhenAnyImageIsRGB() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    try writeImage(root.appendingPathComponent("gray"), "0.pgm", value: 70)
    try writeImage(root.appendingPathComponent("gray"), "1.pgm", value: 70)
    try writeImage(root.appendingPathComponent("color"), "0.ppm", channels: 3, value: 90)
    try writeImage(root.appendingPathComponent("color"), "1.ppm", channels: 3, value: 90)
    let splits = try load(root, ImageFolderOptions(testFraction: 0.5))
    #expect(splits.train.imageShape == [4, 4, 3] && splits.test.imageShape == [4, 4, 3])
    let values = Set(splits.train.images.scalars.map { splits.train.normalization.denormalize($0).rounded() })
    #expect(values == [70, 90])
  }

  @Test func testFractionIsStratifiedAndSeeded() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    for i in 0..<10 {
      try writeImage(root.appendingPathComponent("a"), "\(i).pgm", value: UInt8(i))
      try writeImage(root.appendingPathComponent("b"), "\(i).pgm", value: UInt8(100 + i))
    }
    let splits = try load(root, ImageFolderOptions(testFraction: 0.2), seed: 4)
    #expect(splits.test.classHistogram == [2, 2] && splits.train.classHistogram == [8, 8])
    let again = try load(root, ImageFolderOptions(testFraction: 0.2), seed: 4)
    #expect(again.test.images.scalars == splits.test.images.scalars)
    #expect(thrownError { _ = try load(root) } != nil)  // no train/test and no fraction
  }

  @Test func resizeAndCenterCropMatchesTheGeometry() {
    // A horizontal ramp 0, 10, …, 70, 8 wide and 2 tall.
    let ramp = DecodedImage(width: 8, height: 2, channels: 1, pixels: (0..<16).map { UInt8(($0 % 8) * 10) })
    let resized = ImageResizing.resizeAndCenterCrop(ramp, shorterSide: 1, crop: 1)
    // Shorter side 2 → 1 scales by ½ to 4×1; the centre crop is column 1, which samples source x = 2.5 → 25.
    #expect(resized.pixels == [25])
    let same = ImageResizing.resizeAndCenterCrop(ramp, shorterSide: 2, crop: 2)
    #expect(same.pixels == [30, 40, 30, 40])
  }
}

@Suite struct NumPyDatasetTests {
  func arrays(_ images: NumPyArray, testImages: NumPyArray? = nil, labels: [UInt8], testLabels: [UInt8]) -> [String: NumPyArray] {
    [
      "x_train": images, "x_test": testImages ?? images,
      "y_train": NumPyArray(shape: [labels.count], elements: .uint8(labels)),
      "y_test": NumPyArray(shape: [testLabels.count], elements: .uint8(testLabels)),
    ]
  }

  @Test func infersLayoutAndClassCount() throws {
    // Two 3-channel 5×2 images in NCHW; channel c of image n holds 10n + c.
    let nchw = (0..<2).flatMap { n in (0..<3).flatMap { c in [UInt8](repeating: UInt8(10 * n + c), count: 10) } }
    let splits = try DatasetSplits.numPyArrays(
      arrays(NumPyArray(shape: [2, 3, 5, 2], elements: .uint8(nchw)), labels: [0, 2], testLabels: [1, 0]), path: "d.npz")
    #expect(splits.train.imageShape == [5, 2, 3] && splits.train.classCount == 3)
    let raw = splits.train.images.scalars.prefix(3).map { splits.train.normalization.denormalize($0).rounded() }
    #expect(raw == [0, 1, 2])
    let floats = NumPyArray(shape: [2, 4, 4], elements: .float32([Float](repeating: 0.5, count: 32)))
    let gray = try DatasetSplits.numPyArrays(arrays(floats, labels: [0, 1], testLabels: [1, 1]), path: "g.npz")
    #expect(gray.train.imageShape == [4, 4, 1] && gray.train.normalization.maxValue == 255)
  }

  @Test func ambiguousLayoutAndBadLabelsAreNamed() throws {
    let ambiguous = NumPyArray(shape: [1, 3, 3, 3], elements: .uint8([UInt8](repeating: 0, count: 27)))
    let error = thrownError {
      _ = try DatasetSplits.numPyArrays(arrays(ambiguous, labels: [0], testLabels: [0]), path: "a.npz")
    }
    #expect("\(error!)".contains("--layout"))
    _ = try DatasetSplits.numPyArrays(arrays(ambiguous, labels: [0], testLabels: [0]), path: "a.npz", layout: .nhwc)
    let images = NumPyArray(shape: [2, 2, 2], elements: .uint8([UInt8](repeating: 0, count: 8)))
    let outOfRange = thrownError {
      _ = try DatasetSplits.numPyArrays(arrays(images, labels: [0, 1], testLabels: [0, 5]), path: "b.npz", classCount: 3)
    }
    #expect(outOfRange as? DatasetError == .labelOutOfRange(path: "b.npz:y_test", label: 5, classCount: 3, index: 1))
    var missing = arrays(images, labels: [0, 1], testLabels: [0, 1])
    missing["y_train"] = nil
    #expect("\(thrownError { _ = try DatasetSplits.numPyArrays(missing, path: "c.npz") }!)".contains("'y_train'"))
  }

  @Test func classCountOverrideChecksLabels() throws {
    let splits = try DatasetSplits.load(.digits)
    #expect(try splits.withClassCount(12).train.classNames.suffix(2) == ["10", "11"])
    let error = thrownError { _ = try splits.withClassCount(5) }
    guard case .labelOutOfRange(_, let label, 5, _)? = error as? DatasetError else {
      Issue.record("expected labelOutOfRange, got \(String(describing: error))")
      return
    }
    #expect(label >= 5)
  }
}
