import Foundation
import QuadraData
import QuadraIO
import QuadraModels
import Testing

@testable import QuadraTraining

@Suite struct StreamingTrainingTests {
  /// A tiny RGB, 3-class model for 8×8 inputs.
  static let config = ModelConfig(
    name: "tiny-rgb", inputChannels: 3, classCount: 3, stemPatchSize: 2, depths: [1, 1], widths: [8, 16],
    mixers: [.quadratic(kernelSize: 3), .quadratic(kernelSize: 3)], mlpRatio: 2, layerScaleInit: 0.1,
    dropPathRate: 0.1)

  static let options = TrainingOptions(
    epochs: 3, batchSize: 6, learningRate: 3e-3, minimumLearningRate: 1e-4, warmupEpochs: 0.5, weightDecay: 0.05,
    labelSmoothing: 0.1, seed: 11, evaluationBatchSize: 4)

  static func streams(_ root: URL) throws -> ImageFolderStreams {
    try DatasetSplits.imageFolderStreams(root, options: ImageFolderOptions(resolution: 8))
  }

  static func metrics(_ directory: URL) throws -> [EpochMetrics] {
    try JSONLinesWriter.read(EpochMetrics.self, from: directory.appendingPathComponent(RunFiles.metrics))
  }

  @Test func folderRunResumesExactlyAndIgnoresWorkerCount() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    try TestPNG.writeFolder(at: root.appendingPathComponent("data"))
    let streams = try Self.streams(root.appendingPathComponent("data"))
    #expect(streams.train.count == 24 && streams.test.count == 9 && streams.train.sampleShape == [8, 8, 3])
    let runs = ["serial", "workers", "interrupted", "resumed"].map { root.appendingPathComponent($0) }

    func trainer(workers: Int) throws -> Trainer {
      try Trainer(
        model: try VisionModel(config: Self.config, seed: Self.options.seed),
        data: TrainingData(streaming: streams, loader: LoaderOptions(workers: workers, prefetch: 2)),
        dataset: "folder", options: Self.options)
    }
    let serial = try trainer(workers: 0)
    try serial.run(outputDirectory: runs[0])
    let parallel = try trainer(workers: 2)
    try parallel.run(outputDirectory: runs[1])
    let first = try trainer(workers: 2)
    try first.run(outputDirectory: runs[2], stopAfterEpoch: 1)
    let resumed = try Trainer(
      resuming: try TrainingCheckpoint.read(from: runs[2]),
      data: TrainingData(streaming: streams, loader: LoaderOptions(workers: 1, prefetch: 1)), dataset: "folder")
    try resumed.run(outputDirectory: runs[3])

    let reference = try Self.metrics(runs[0])
    #expect(reference.count == 3 && Set(reference.map(\.trainLoss)).count == 3)
    for run in [runs[1], runs[3]] {
      let other = try Self.metrics(run)
      #expect(other.map(\.trainLoss.bitPattern) == reference.map(\.trainLoss.bitPattern))
      #expect(other.map(\.testAccuracy) == reference.map(\.testAccuracy))
    }
    #expect(parametersAreIdentical(serial.model, parallel.model))
    #expect(parametersAreIdentical(serial.model, resumed.model))
  }

  @Test func corruptFileMidRunStopsWithItsNameAndKeepsTheCheckpoint() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    let data = root.appendingPathComponent("data"), run = root.appendingPathComponent("run")
    try TestPNG.writeFolder(at: data)
    let streams = try Self.streams(data)
    let loader = LoaderOptions(workers: 2, prefetch: 3)
    let first = try Trainer(
      model: try VisionModel(config: Self.config, seed: 3), data: TrainingData(streaming: streams, loader: loader),
      dataset: "folder", options: Self.options)
    try first.run(outputDirectory: run, stopAfterEpoch: 1)
    let saved = try Data(contentsOf: run.appendingPathComponent("model.safetensors"))

    // Found after the folder was opened: the next epoch reaches it.
    let corrupt = data.appendingPathComponent("train/class1/2.png")
    try Data([0x89, 0x50, 0x4E, 0x47, 0, 1, 2, 3]).write(to: corrupt)
    let resumed = try Trainer(
      resuming: try TrainingCheckpoint.read(from: run), data: TrainingData(streaming: streams, loader: loader),
      dataset: "folder")
    let error = thrownError { try resumed.run(outputDirectory: run) }
    #expect("\(error.map { "\($0)" } ?? "")".contains(corrupt.path))
    #expect(resumed.completedEpochs == 1)
    #expect(try Data(contentsOf: run.appendingPathComponent("model.safetensors")) == saved)
    #expect(try TrainingCheckpoint.read(from: run).state.epoch == 1)
  }

  @Test func inMemoryDatasetStreamsWithRandomResizedCrop() throws {
    // The same loader over an in-memory dataset: batches identical for 0 and 3 workers.
    let splits = try Tiny.digits(trainCount: 40, testCount: 8)
    var augmentation = Augmentation.randomResizedCropAndFlip
    augmentation.horizontalFlip = true
    func batches(workers: Int) throws -> [[UInt32]] {
      let loader = try StreamingBatchLoader(
        dataset: splits.train, batchSize: 7, dropLast: false, augmentation: augmentation,
        loader: LoaderOptions(workers: workers, prefetch: 2), seed: 5)
      var result: [[UInt32]] = []
      for _ in 0..<2 {
        while let batch = try loader.next() { result.append(bitPatterns(batch.images)) }
      }
      return result
    }
    let serial = try batches(workers: 0)
    #expect(serial.count == 12)
    #expect(try batches(workers: 3) == serial)
    // The crops change the pixels (not the identity).
    let plain = try StreamingBatchLoader(dataset: splits.train, batchSize: 7, dropLast: false, seed: 5)
    #expect(bitPatterns(try plain.next()!.images) != serial[0])
  }
}
