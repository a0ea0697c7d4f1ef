import Foundation
import Testing

@testable import QuadraData

@Suite struct StreamingTests {
  /// A folder of `perClass` gray images per class, of varying sizes, in `root/train/<class>` and `root/test/<class>`.
  func writeFolder(_ root: URL, classes: Int = 2, perClass: Int = 5) throws {
    for split in ["train", "test"] {
      for label in 0..<classes {
        for i in 0..<perClass {
          let width = 6 + i % 3, height = 5 + (i + label) % 3
          let pixels = (0..<(width * height)).map { UInt8(($0 * (label + 3) + i * 17) % 256) }
          let folder = root.appendingPathComponent("\(split)/c\(label)")
          try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
          try TestNetpbm.encode(width: width, height: height, channels: 1, pixels: pixels)
            .write(to: folder.appendingPathComponent("\(i).pgm"))
        }
      }
    }
  }

  func streams(_ root: URL, decoder: @escaping ImageDecoder = TestNetpbm.decoder) throws -> ImageFolderStreams {
    try DatasetSplits.imageFolderStreams(root, options: ImageFolderOptions(resolution: 4), decoder: decoder)
  }

  func allBatches(_ loader: StreamingBatchLoader, epochs: Int = 2) throws -> [[UInt32]] {
    var result: [[UInt32]] = []
    for _ in 0..<epochs {
      while let batch = try loader.next() { result.append(batch.images.scalars.map(\.bitPattern) + batch.indices.map(UInt32.init)) }
    }
    return result
  }

  @Test func batchesDoNotDependOnWorkersAndResumeMidEpoch() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    try writeFolder(root)
    let train = try streams(root).train
    #expect(train.count == 10 && train.sampleShape == [4, 4, 1] && train.classNames == ["c0", "c1"])
    func loader(workers: Int, prefetch: Int = 2) throws -> StreamingBatchLoader {
      try StreamingBatchLoader(
        dataset: train, batchSize: 3, dropLast: false, augmentation: .randomResizedCropAndFlip,
        loader: LoaderOptions(workers: workers, prefetch: prefetch), seed: 9)
    }
    let serial = try allBatches(try loader(workers: 0))
    #expect(serial.count == 8)
    #expect(try allBatches(try loader(workers: 4, prefetch: 1)) == serial)
    #expect(try allBatches(try loader(workers: 2, prefetch: 5)) == serial)
    // Epochs differ (new order and new crops).
    #expect(serial[0] != serial[4])

    // Stop after two batches, resume from the saved state with other workers: the rest is the same.
    let first = try loader(workers: 2)
    _ = try first.next()
    _ = try first.next()
    let resumed = try StreamingBatchLoader(
      dataset: train, batchSize: 3, dropLast: false, augmentation: .randomResizedCropAndFlip,
      loader: LoaderOptions(workers: 1, prefetch: 3), resumingFrom: first.state)
    first.cancel()
    #expect(try allBatches(resumed, epochs: 2).prefix(6) == serial[2...].prefix(6))
  }

  @Test func evaluationSplitMatchesTheInMemoryFolder() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    try writeFolder(root)
    let streamed = try streams(root)
    let memory = try DatasetSplits.imageFolder(root, options: ImageFolderOptions(resolution: 4), decoder: TestNetpbm.decoder)
    // Every training image is sampled for the statistics here, so both normalizations agree exactly.
    #expect(streamed.train.normalization == memory.train.normalization)
    for index in 0..<memory.test.count {
      #expect(try streamed.test.sample(at: index) == memory.test.sample(at: index))
    }
    for index in 0..<memory.train.count {
      #expect(try streamed.train.sample(at: index) == memory.train.sample(at: index))
    }
  }

  @Test func workerErrorNamesTheFileAndStopsTheWorkers() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    try writeFolder(root, perClass: 12)
    let broken = root.appendingPathComponent("train/c1/7.pgm").path
    let opened = try streams(root)
    // The file turns corrupt after the folder was opened (found mid-epoch).
    let failing: ImageDecoder = { data, path, limit in
      if path == broken { throw DatasetError.invalidFolder(path: path, reason: "corrupt") }
      return try TestNetpbm.decoder(data, path, limit)
    }
    let train = ImageFolderDataset(
      name: opened.train.name, files: opened.train.files, labels: opened.train.labels, classCount: 2,
      classNames: opened.train.classNames, sampleShape: opened.train.sampleShape,
      normalization: opened.train.normalization, isEvaluation: false, options: ImageFolderOptions(resolution: 4),
      decoder: failing)
    for workers in [0, 3] {
      let loader = try StreamingBatchLoader(
        dataset: train, batchSize: 2, augmentation: .randomResizedCropAndFlip,
        loader: LoaderOptions(workers: workers, prefetch: 4), seed: 1)
      var batches = 0
      let error = thrownError { while try loader.next() != nil { batches += 1 } }
      #expect("\(error.map { "\($0)" } ?? "none")".contains(broken))
      #expect(batches < 12)
    }
  }

  @Test func optionsAndMemoryAreBounded() throws {
    let splits = try DatasetSplits.digits()
    let tooMany = thrownError {
      _ = try StreamingBatchLoader(dataset: splits.train, batchSize: 4, loader: LoaderOptions(workers: 65), seed: 0)
    }
    #expect("\(tooMany.map { "\($0)" } ?? "")".contains("--workers must be in 0...64"))
    let noPrefetch = thrownError {
      _ = try StreamingBatchLoader(dataset: splits.train, batchSize: 4, loader: LoaderOptions(prefetch: 0), seed: 0)
    }
    #expect("\(noPrefetch.map { "\($0)" } ?? "")".contains("--prefetch must be in 1...64"))
    // 33 batches of 60 000 samples of 8×8 floats exceed a 64 MiB budget.
    let tooLarge = thrownError {
      try MemoryBudget.withLimit(64 << 20) {
        _ = try StreamingBatchLoader(dataset: splits.train, batchSize: 60_000, loader: LoaderOptions(prefetch: 32), seed: 0)
      }
    }
    #expect(tooLarge is MemoryBudgetError)
  }

  @Test func randomResizedCropRegions() {
    var generator = RandomGenerator(seed: 3)
    var areas: [Double] = []
    for _ in 0..<500 {
      let region = RandomResizedCrop.timm.region(height: 40, width: 60, using: &generator)
      #expect(region.top >= 0 && region.left >= 0 && region.top + region.height <= 40 && region.left + region.width <= 60)
      areas.append(Double(region.height * region.width) / 2400)
    }
    // Areas span the scale range (rounding lets them stray a little past it).
    #expect(areas.min()! < 0.15 && areas.max()! > 0.8)
    // A 2×200 strip never fits a crop: the fallback is the centre with the ratio clamped to 4/3.
    let strip = RandomResizedCrop.timm.region(height: 2, width: 200, using: &generator)
    #expect(strip == CropRegion(top: 0, left: 98, height: 2, width: 3))
  }

  @Test func integerLabelsInArchives() throws {
    let images = NumPyArray(shape: [3, 2, 2], elements: .uint8([UInt8](repeating: 9, count: 12)))
    func archive(_ labels: NumPyArray.Elements) -> [String: NumPyArray] {
      ["x_train": images, "x_test": images, "y_train": NumPyArray(shape: [3], elements: labels), "y_test": NumPyArray(shape: [3], elements: .int32([0, 1, 2]))]
    }
    let splits = try DatasetSplits.numPyArrays(archive(.int64([2, 0, 1])), path: "a.npz")
    #expect(splits.train.labels == [2, 0, 1] && splits.train.classCount == 3)
    let negative = thrownError { _ = try DatasetSplits.numPyArrays(archive(.int64([2, -1, 1])), path: "a.npz") }
    #expect("\(negative.map { "\($0)" } ?? "")".contains("y_train") && "\(negative!)".contains("-1"))
    let huge = thrownError {
      _ = try DatasetSplits.numPyArrays(archive(.int64([0, 1 << 40, 1])), path: "a.npz", classCount: 5)
    }
    #expect(huge is DatasetError)
    // Round trip through the .npy encoding.
    let encoded = NumPyArray(shape: [2], elements: .int64([7, -3])).encoded()
    #expect(try NumPyArray.parse(encoded, path: "x.npy").elements == .int64([7, -3]))
  }
}
