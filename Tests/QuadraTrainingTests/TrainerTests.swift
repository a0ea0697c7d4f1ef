import Foundation
import Testing

@testable import QuadraData
@testable import QuadraIO
@testable import QuadraModels
@testable import QuadraTraining

@Suite(.serialized) struct TrainerTests {
  /// Every file under `directory` (relative path → bytes), the lock file excepted (it holds the last holder's pid).
  func files(in directory: URL) throws -> [String: Data] {
    var result: [String: Data] = [:]
    let enumerator = FileManager.default.enumerator(atPath: directory.path)!
    while let name = enumerator.nextObject() as? String {
      var isDirectory: ObjCBool = false
      let url = directory.appendingPathComponent(name)
      guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
        name != RunDirectory.lockFileName
      else { continue }
      result[name] = try Data(contentsOf: url)
    }
    return result
  }

  @Test func resumeReproducesAnUninterruptedRunBitForBit() throws {
    let splits = try Tiny.digits(trainCount: 80, testCount: 24)
    var options = Tiny.options
    options.epochs = 3
    options.emaDecay = 0.8
    options.clipGradientNorm = 1
    options.augmentation = Augmentation(padding: 1, horizontalFlip: true)
    let uninterrupted = try makeTemporaryDirectory()
    let interrupted = try makeTemporaryDirectory()
    let resumed = try makeTemporaryDirectory()
    defer { for url in [uninterrupted, interrupted, resumed] { removeDirectory(url) } }

    let full = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: options.seed), splits: splits, dataset: "digits",
      options: options)
    let fullSummary = try full.run(outputDirectory: uninterrupted)

    let first = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: options.seed), splits: splits, dataset: "digits",
      options: options)
    try first.run(outputDirectory: interrupted, stopAfterEpoch: 1)
    #expect(first.completedEpochs == 1)

    // Resume into another directory: the history is carried over into its metrics file.
    let second = try Trainer(resuming: try TrainingCheckpoint.read(from: interrupted), splits: splits, dataset: "digits")
    let resumedSummary = try second.run(outputDirectory: resumed)

    let a = try JSONLinesWriter.read(EpochMetrics.self, from: uninterrupted.appendingPathComponent(RunFiles.metrics))
    let b = try JSONLinesWriter.read(EpochMetrics.self, from: resumed.appendingPathComponent(RunFiles.metrics))
    #expect(a.count == 3 && b.count == 3)
    #expect(a.map(\.trainLoss.bitPattern) == b.map(\.trainLoss.bitPattern))
    #expect(a.map(\.testAccuracy) == b.map(\.testAccuracy))
    #expect(parametersAreIdentical(full.model, second.model))
    #expect(fullSummary.testAccuracy == resumedSummary.testAccuracy && resumedSummary.epochs == 3)
    // Losses actually vary between epochs (the comparison is not vacuous).
    #expect(Set(a.map(\.trainLoss)).count == 3)
  }

  @Test func runWritesMetricsSummaryAndCurves() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let splits = try Tiny.digits(trainCount: 48, testCount: 16)
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.convNeXt), splits: splits, dataset: "digits", options: Tiny.options)
    var events: [TrainingEvent] = []
    let summary = try trainer.run(outputDirectory: directory.appendingPathComponent("nested/run")) { events.append($0) }
    let run = directory.appendingPathComponent("nested/run")

    let metricsText = try String(contentsOf: run.appendingPathComponent(RunFiles.metrics), encoding: .utf8)
    let lines = metricsText.split(separator: "\n")
    #expect(lines.count == 2)
    for line in lines {
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
      #expect(Set(object.keys) == ["epoch", "train_loss", "test_accuracy", "seconds", "images_per_second"])
    }
    let summaryObject =
      try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent(RunFiles.summary)))
      as! [String: Any]
    #expect(
      Set(["model", "dataset", "epochs", "test_accuracy", "train_seconds", "params", "macs", "peak_bytes"])
        .isSubset(of: Set(summaryObject.keys)))
    #expect(summaryObject["model"] as? String == "tiny-convnext")
    #expect(summaryObject["params"] as? Int == Tiny.convNeXt.parameterCount)
    #expect(summaryObject["macs"] as? Int == Tiny.convNeXt.macs(resolution: 8))
    #expect(summary.epochs == 2 && summary.peakBytes > 0)
    let svg = try String(contentsOf: run.appendingPathComponent(RunFiles.curves), encoding: .utf8)
    #expect(svg.hasPrefix("<svg") && svg.contains("test accuracy"))
    #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent(CheckpointFiles.weights).path))

    // Events: 3 batches and one evaluation per epoch.
    let batches = events.compactMap { if case .batch(let p) = $0 { return p } else { return nil } }
    #expect(batches.count == 6 && batches.last?.batch == 3 && batches.last?.batchesPerEpoch == 3)
    #expect(batches.last?.etaSeconds == 0)
    #expect(events.filter { if case .epochFinished = $0 { return true } else { return false } }.count == 2)
  }

  @Test func trainingReducesTheLossOnDigits() throws {
    let splits = try Tiny.digits(trainCount: 160, testCount: 80)
    var options = Tiny.options
    options.epochs = 10
    options.learningRate = 1e-2
    options.labelSmoothing = 0
    let model = try VisionModel(config: Tiny.quadraNet, seed: 0)
    let before = try Evaluator.evaluate(model, on: splits.train)
    let trainer = try Trainer(model: model, splits: splits, dataset: "digits", options: options)
    try trainer.run(outputDirectory: nil)
    let after = try Evaluator.evaluate(model, on: splits.train)
    #expect(after.loss < 0.8 * before.loss, "loss \(before.loss) → \(after.loss)")
    #expect(trainer.history.last!.trainLoss < trainer.history.first!.trainLoss)
    #expect(after.accuracy > before.accuracy)
  }

  @Test func failedRunsLeaveTheExistingCheckpointUntouched() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let splits = try Tiny.digits(trainCount: 32, testCount: 16)
    var options = Tiny.options
    options.epochs = 1
    try Trainer(model: try VisionModel(config: Tiny.quadraNet), splits: splits, dataset: "digits", options: options)
      .run(outputDirectory: directory)
    let before = try files(in: directory)
    #expect(before.keys.contains(CheckpointFiles.weights) && before.keys.contains(CheckpointFiles.trainingState))

    // A resume on other data fails at validation, before anything is written.
    let other = try Tiny.digits(trainCount: 48, testCount: 16)
    let checkpoint = try TrainingCheckpoint.read(from: directory)
    let mismatch = thrownError { _ = try Trainer(resuming: checkpoint, splits: other, dataset: "digits") }
    #expect("\(mismatch!)".contains("48"))
    let wrongDataset = thrownError { _ = try Trainer(resuming: checkpoint, splits: splits, dataset: "fashion-mnist") }
    #expect("\(wrongDataset!)".contains("fashion-mnist"))

    // Weights that do not fit the requested model fail to load.
    var config = Tiny.quadraNet
    config.depths = [1, 2]
    #expect(throws: CheckpointError.self) { _ = try checkpoint.weights.makeModel(requested: config) }

    // A new run that diverges stops with an error and writes nothing of the failed epoch; with --overwrite
    // the old run's files stay untouched until a complete checkpoint of the new run exists.
    var diverging = options
    diverging.learningRate = 1e30
    diverging.minimumLearningRate = 1e29
    diverging.warmupEpochs = 0
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet), splits: splits, dataset: "digits", options: diverging)
    let error = thrownError { try trainer.run(outputDirectory: directory, overwrite: true) }
    guard case .diverged? = error as? TrainingError else {
      Issue.record("expected divergence, got \(String(describing: error))")
      return
    }
    #expect(try files(in: directory) == before)
    #expect("\(error!)".contains("No checkpoint of this run was written yet"))
    #expect("\(error!)".contains("still holds the files of the run it was to replace"))
  }

  @Test func invalidOptionsAndIncompatibleModelsAreRejected() throws {
    let splits = try Tiny.digits(trainCount: 32, testCount: 16)
    var options = Tiny.options
    options.labelSmoothing = 1.5
    let error = thrownError {
      _ = try Trainer(model: try VisionModel(config: Tiny.quadraNet), splits: splits, dataset: "digits", options: options)
    }
    #expect("\(error!)".contains("label smoothing"))

    options = Tiny.options
    options.batchSize = 33
    #expect(throws: TrainingError.self) {
      _ = try Trainer(model: try VisionModel(config: Tiny.quadraNet), splits: splits, dataset: "digits", options: options)
    }
    var config = Tiny.quadraNet
    config.stemPatchSize = 8  // 8×8 digits are too small for stem 8 plus a downsampling.
    let tooSmall = thrownError {
      _ = try Trainer(model: try VisionModel(config: config), splits: splits, dataset: "digits", options: Tiny.options)
    }
    #expect("\(tooSmall!)".contains("at least 16×16"))
    config = Tiny.quadraNet
    config.classCount = 5
    #expect(throws: TrainingError.self) {
      _ = try Trainer(model: try VisionModel(config: config), splits: splits, dataset: "digits", options: Tiny.options)
    }
  }
}

@Suite struct ProgressPrinterTests {
  final class Clock: @unchecked Sendable {
    var now = Date(timeIntervalSince1970: 0)
  }

  func progress(_ batch: Int) -> TrainingEvent {
    .batch(
      TrainingProgress(
        epoch: 2, epochs: 10, batch: batch, batchesPerEpoch: 468, loss: 0.41234, imagesPerSecond: 812.4,
        etaSeconds: 192))
  }

  @Test func formatsTheProgressLine() {
    guard case .batch(let p) = progress(120) else { return }
    #expect(ProgressPrinter.format(p) == "epoch 2/10  batch 120/468  loss 0.4123  812 img/s  ETA 3m12s")
    #expect(ProgressPrinter.duration(45) == "45s")
    #expect(ProgressPrinter.duration(3605) == "1h00m")
    let metrics = EpochMetrics(epoch: 2, trainLoss: 0.41234, testAccuracy: 0.91234, seconds: 52.06, imagesPerSecond: 812)
    #expect(
      ProgressPrinter.format(metrics, totalEpochs: 10)
        == "epoch 2/10: train loss 0.4123, test accuracy 91.23%, 52.1 s, 812 img/s")
  }

  @Test func terminalRedrawsInPlace() {
    let clock = Clock()
    var output: [String] = []
    let printer = ProgressPrinter(isTerminal: true, refreshInterval: 0.1, clock: { clock.now }) { output.append($0) }
    printer.handle(progress(1))
    clock.now += 0.05
    printer.handle(progress(2))  // too soon: skipped
    clock.now += 0.1
    printer.handle(progress(3))
    printer.handle(.epochFinished(EpochMetrics(epoch: 2, trainLoss: 0.4, testAccuracy: 0.9, seconds: 1, imagesPerSecond: 1), totalEpochs: 10))
    #expect(output.count == 3)
    #expect(output[0].hasPrefix("\r") && !output[0].hasSuffix("\n"))
    #expect(output[1].contains("batch   3/468"))
    #expect(output[2].hasPrefix("\r") && output[2].hasSuffix("\n"))
  }

  @Test func logsGetPlainLinesAtIntervals() {
    let clock = Clock()
    var output: [String] = []
    let printer = ProgressPrinter(isTerminal: false, plainInterval: 10, clock: { clock.now }) { output.append($0) }
    for batch in 1...30 {
      printer.handle(progress(batch))
      clock.now += 1
    }
    // Lines at t = 10 and t = 20 (not at the start), each a whole line without control characters.
    #expect(output.count == 2)
    #expect(output.allSatisfy { $0.hasSuffix("\n") && !$0.contains("\r") && !$0.contains("\u{1B}") })
  }
}
