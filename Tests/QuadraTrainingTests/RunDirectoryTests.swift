import Foundation
import Synchronization
import Testing

@testable import QuadraData
@testable import QuadraIO
@testable import QuadraModels
@testable import QuadraTraining

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The failure a test hook throws in place of a crash.
struct InjectedCrash: Error {}

/// Counts file operations and throws at operation `failAt` (never when nil).
final class CrashInjector: Sendable {
  let count = Mutex(0)
  let failAt: Int?

  init(failAt: Int?) { self.failAt = failAt }

  var fileSystem: DurableFileSystem {
    DurableFileSystem { [self] _ in
      let index = count.withLock { value in
        defer { value += 1 }
        return value
      }
      if index == failAt { throw InjectedCrash() }
    }
  }

  var operations: Int { count.withLock { $0 } }
}

/// Copies a directory tree (hard links become separate files, as after `cp -r`).
func copyTree(_ source: URL, to destination: URL) throws {
  try? FileManager.default.removeItem(at: destination)
  try FileManager.default.copyItem(at: source, to: destination)
}

/// All entries under `url`, relative, sorted.
func entries(under url: URL) -> [String] {
  (FileManager.default.enumerator(atPath: url.path)?.allObjects as? [String] ?? []).sorted()
}

@Suite(.serialized) struct RunDirectoryTests {
  /// A trainer after one epoch saved into `directory`, the encoded pair of that epoch, and the pair
  /// of the next epoch (trained in memory, not saved).
  func twoEpochs(into directory: URL, ema: Bool) throws -> (first: [(name: String, data: Data)], second: TrainingCheckpoint) {
    let splits = try Tiny.digits(trainCount: 32, testCount: 16)
    var options = Tiny.options
    options.epochs = 2
    options.emaDecay = ema ? 0.9 : nil
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 2), splits: splits, dataset: "digits", options: options)
    try trainer.run(outputDirectory: directory, stopAfterEpoch: 1)
    let first = try TrainingCheckpoint.read(from: directory).encodedFiles()
    try trainer.run(outputDirectory: nil)
    #expect(trainer.completedEpochs == 2)
    return (first, trainer.checkpoint())
  }

  func bytes(_ files: [(name: String, data: Data)]) -> [String: Data] {
    Dictionary(uniqueKeysWithValues: files.map { ($0.name, $0.data) })
  }

  /// A crash after any prefix of a save's file operations leaves a directory that resumes, bit for bit,
  /// to the previous or the new epoch — for directories with saves and for ones written before saves
  /// existed (top-level files only) — and the next start cleans up and re-publishes the top-level files.
  @Test(arguments: [(false, false), (true, false), (false, true)])
  func crashAtEveryFileOperationLeavesAResumablePair(ema: Bool, legacy: Bool) throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    let original = root.appendingPathComponent("run")
    let (first, second) = try twoEpochs(into: original, ema: ema)
    if legacy { try FileManager.default.removeItem(at: original.appendingPathComponent(RunDirectory.checkpointsFolder)) }
    let previous = bytes(first)
    let next = bytes(try second.encodedFiles())
    #expect(previous[CheckpointFiles.weights] != next[CheckpointFiles.weights])

    // Count the operations of a complete save.
    let scratch = root.appendingPathComponent("scratch")
    try copyTree(original, to: scratch)
    let counter = CrashInjector(failAt: nil)
    let counting = try RunDirectory(url: scratch)
    counting.fileSystem = counter.fileSystem
    try counting.save(second)
    counting.unlock()
    let total = counter.operations
    #expect(total >= 15, "a save should take many steps, took \(total)")

    var resumedEpochs: Set<Int> = []
    for k in 0...total {
      try copyTree(original, to: scratch)
      let injector = CrashInjector(failAt: k)
      let directory = try RunDirectory(url: scratch)
      directory.fileSystem = injector.fileSystem
      let error = thrownError { try directory.save(second) }
      #expect((error is InjectedCrash) == (k < total), "operation \(k): \(String(describing: error))")
      directory.unlock()

      // What --resume reads: exactly the previous or the new pair, bit for bit.
      let resumed = try TrainingCheckpoint.read(from: scratch)
      let expected = resumed.state.epoch == 1 ? previous : next
      #expect(bytes(try resumed.encodedFiles()) == expected, "operation \(k)")
      resumedEpochs.insert(resumed.state.epoch)
      // What PyTorch and `eval` read: a complete weights file of one of the two epochs.
      let topWeights = try Data(contentsOf: scratch.appendingPathComponent(CheckpointFiles.weights))
      #expect(topWeights == previous[CheckpointFiles.weights] || topWeights == next[CheckpointFiles.weights])

      // The next start removes leftovers and makes the top-level files the resumed pair.
      let reopened = try RunDirectory(url: scratch)
      reopened.unlock()
      let left = entries(under: scratch)
      #expect(!left.contains { $0.contains(".partial-") || $0.contains(".tmp-") }, "operation \(k): \(left)")
      #expect(RunDirectory.committedSaves(in: scratch).count <= 1)
      for (name, data) in expected {
        #expect(try Data(contentsOf: scratch.appendingPathComponent(name)) == data, "operation \(k): \(name)")
      }
      if !ema {
        #expect(!FileManager.default.fileExists(atPath: scratch.appendingPathComponent(CheckpointFiles.emaWeights).path))
      }
      #expect(try TrainingCheckpoint.read(from: scratch).state.epoch == resumed.state.epoch)
    }
    #expect(resumedEpochs == [1, 2])
  }

  @Test func leftoversAreRemovedAtTheNextStart() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    _ = try twoEpochs(into: directory, ema: false)
    let checkpoints = directory.appendingPathComponent(RunDirectory.checkpointsFolder)
    let partial = checkpoints.appendingPathComponent(".partial-7-12345")
    try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: false)
    try Data("torn".utf8).write(to: partial.appendingPathComponent(CheckpointFiles.weights))
    for name in [".model.safetensors.tmp-1-2", ".summary.json.tmp-3-4", ".write-probe-99"] {
      try Data("x".utf8).write(to: directory.appendingPathComponent(name))
    }
    // An older save that a crash kept from being removed.
    let stale = checkpoints.appendingPathComponent(RunDirectory.saveName(sequence: 0, epoch: 0))
    try FileManager.default.createDirectory(at: stale, withIntermediateDirectories: false)
    let before = try TrainingCheckpoint.read(from: directory).encodedFiles()

    let reopened = try RunDirectory(url: directory)
    reopened.unlock()
    #expect(try FileManager.default.contentsOfDirectory(atPath: checkpoints.path) == ["000001-epoch-1"])
    let top = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    #expect(top == [RunDirectory.lockFileName, RunDirectory.checkpointsFolder, "curves.svg", "metrics.jsonl",
      "model.safetensors", "summary.json", "training_state.safetensors"].sorted())
    #expect(bytes(try TrainingCheckpoint.read(from: directory).encodedFiles()) == bytes(before))
  }

  @Test func aSecondTrainerIntoALockedDirectoryFailsNamingItAndThePid() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let holder = try RunDirectory(url: directory.appendingPathComponent("run"))
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet), splits: try Tiny.digits(trainCount: 32, testCount: 16),
      dataset: "digits", options: Tiny.options)
    var steps = 0
    let error = thrownError {
      try trainer.run(outputDirectory: directory.appendingPathComponent("run")) { _ in steps += 1 }
    }
    guard case .inUse(let path, let pid)? = error as? RunDirectoryError else {
      Issue.record("expected inUse, got \(String(describing: error))")
      return
    }
    #expect(path == holder.url.path && pid == getpid())
    #expect("\(error!)".contains(holder.url.path) && "\(error!)".contains("process \(getpid())"))
    #expect(steps == 0 && trainer.globalStep == 0)
    holder.unlock()
    // Once released, the directory can be used.
    try trainer.run(outputDirectory: directory.appendingPathComponent("run"))
    #expect(trainer.completedEpochs == Tiny.options.epochs)
  }

  @Test func outputPathsThatCannotBeDirectoriesFailBeforeTraining() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let file = directory.appendingPathComponent("file")
    try Data("x".utf8).write(to: file)
    let notADirectory = thrownError { _ = try RunDirectory(url: file) }
    #expect("\(notADirectory!)".contains("\(file.path): not a directory"))
    let below = thrownError { _ = try RunDirectory(url: file.appendingPathComponent("run")) }
    #expect("\(below!)".contains("\(file.path) is a file, not a directory"))
    #expect(!"\(below!)".contains("NSCocoaErrorDomain") && !"\(notADirectory!)".contains("Error Domain"))
  }

  @Test(.enabled(if: geteuid() != 0, "root writes into read-only directories, so there is nothing to detect"))
  func readOnlyDirectoryFailsBeforeTraining() throws {
    let directory = try makeTemporaryDirectory()
    defer {
      chmod(directory.path, 0o755)
      removeDirectory(directory)
    }
    chmod(directory.path, 0o555)
    let error = thrownError { _ = try RunDirectory(url: directory) }
    #expect("\(error!)".contains(directory.path) && "\(error!)".contains("Permission denied"))
  }

  @Test func aNewRunRefusesAnotherRunsCheckpointUnlessOverwriting() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let splits = try Tiny.digits(trainCount: 32, testCount: 16)
    var options = Tiny.options
    options.epochs = 1
    try Trainer(model: try VisionModel(config: Tiny.quadraNet, seed: 1), splits: splits, dataset: "digits", options: options)
      .run(outputDirectory: directory)
    let old = try TrainingCheckpoint.read(from: directory).encodedFiles()

    let newcomer = try Trainer(
      model: try VisionModel(config: Tiny.convNeXt, seed: 1), splits: splits, dataset: "digits", options: options)
    let refused = thrownError { try newcomer.run(outputDirectory: directory) }
    guard case .occupied? = refused as? RunDirectoryError else {
      Issue.record("expected occupied, got \(String(describing: refused))")
      return
    }
    let message = "\(refused!)"
    #expect(message.contains(directory.path) && message.contains("--resume") && message.contains("--overwrite"))
    #expect(message.contains("tiny-quadranet") && message.contains("epoch 1 of 1"))
    #expect(newcomer.globalStep == 0)
    #expect(bytes(try TrainingCheckpoint.read(from: directory).encodedFiles()) == bytes(old))

    // --overwrite: the new run's pair replaces the old one, which leaves no trace in checkpoints/.
    try newcomer.run(outputDirectory: directory, overwrite: true)
    let replaced = try TrainingCheckpoint.read(from: directory)
    #expect(replaced.state.model == "tiny-convnext")
    #expect(RunDirectory.committedSaves(in: directory).map(\.sequence) == [2])
    #expect(try WeightsCheckpoint.read(from: directory).config == Tiny.convNeXt)
    // The same trainer may keep writing into its own directory (its history extends the saved one).
    #expect(try RunDirectory(url: directory).claim(history: newcomer.history, overwrite: false) == .continuing(epoch: 1))
  }

  @Test func resumeCanExtendAFinishedRunWithARecomputedSchedule() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let splits = try Tiny.digits(trainCount: 32, testCount: 16)
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 1), splits: splits, dataset: "digits", options: Tiny.options)
    try trainer.run(outputDirectory: directory)
    let finished = try TrainingCheckpoint.read(from: directory)
    #expect(finished.state.epoch == 2)

    let sameLength = thrownError { _ = try Trainer(resuming: finished, splits: splits, dataset: "digits", epochs: 2) }
    #expect(sameLength == nil, "the saved length itself is accepted")
    let shorter = thrownError { _ = try Trainer(resuming: finished, splits: splits, dataset: "digits", epochs: 1) }
    #expect("\(shorter!)".contains("at least 3"))

    let extended = try Trainer(resuming: finished, splits: splits, dataset: "digits", epochs: 4)
    let batches = extended.iterator.batchesPerEpoch
    #expect(extended.schedule.totalSteps == 4 * batches)
    #expect(extended.schedule.warmupSteps == finished.state.schedule.warmupSteps)
    // The finished schedule was at its minimum; the recomputed one is halfway down its cosine.
    let step = finished.state.globalStep
    #expect(finished.state.schedule.learningRate(at: step) == Tiny.options.minimumLearningRate)
    #expect(extended.schedule.learningRate(at: step) > 10 * Tiny.options.minimumLearningRate)
    try extended.run(outputDirectory: directory)
    let after = try TrainingCheckpoint.read(from: directory)
    #expect(after.state.epoch == 4 && after.state.options.epochs == 4 && after.state.history.count == 4)
    #expect(Array(after.state.history.prefix(2)) == finished.state.history)
    let metrics = try JSONLinesWriter.read(EpochMetrics.self, from: directory.appendingPathComponent(RunFiles.metrics))
    #expect(metrics.map(\.epoch) == [1, 2, 3, 4])
  }
}

@Suite(.serialized) struct NumericsTests {
  @Test func divergenceNamesTheIntactCheckpointAndTheResumeCommand() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let splits = try Tiny.digits(trainCount: 32, testCount: 16)
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 1), splits: splits, dataset: "digits", options: Tiny.options)
    try trainer.run(outputDirectory: directory, stopAfterEpoch: 1)
    let saved = try TrainingCheckpoint.read(from: directory).encodedFiles()
    // Poison one weight: the next step's loss is NaN.
    let head = trainer.model.namedParameters().first { $0.name == "head.bias" }!.parameter
    head.variable.update(Tensor(shape: head.variable.shape, scalars: Array(repeating: .nan, count: head.variable.value.count)))
    let error = thrownError { try trainer.run(outputDirectory: directory) }
    guard case .diverged? = error as? TrainingError else {
      Issue.record("expected divergence, got \(String(describing: error))")
      return
    }
    let message = "\(error!)"
    #expect(message.contains("The checkpoint of epoch 1 in \(directory.standardizedFileURL.path) is intact"))
    #expect(message.contains("quadranet train --resume \(directory.standardizedFileURL.path)"))
    #expect(message.contains("The weights hold NaN or infinite values"))
    #expect(try TrainingCheckpoint.read(from: directory).encodedFiles().map(\.data) == saved.map(\.data))
  }

  @Test func divergenceWithoutOutputSaysNothingWasSaved() throws {
    var options = Tiny.options
    options.learningRate = 1e30
    options.minimumLearningRate = 1e29
    options.warmupEpochs = 0
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet), splits: try Tiny.digits(trainCount: 32, testCount: 16),
      dataset: "digits", options: options)
    let message = "\(thrownError { try trainer.run(outputDirectory: nil) }!)"
    #expect(message.contains("Nothing was saved") && message.contains("learning rate at this step was"))
  }

  @Test func constantImagesAreRefusedNamingTheZeroVariance() throws {
    let count = 20
    let raw = RawImages(count: count, height: 8, width: 8, maxValue: 255, pixels: Array(repeating: 7, count: count * 64))
    let splits = try DatasetSplits.make(
      name: "constant", train: raw, trainLabels: (0..<count).map { $0 % 10 }, test: raw,
      testLabels: (0..<count).map { $0 % 10 }, classCount: 10, classNames: nil, validation: .none, splitSeed: 0,
      augmentation: Augmentation(padding: 1, horizontalFlip: false))
    var options = Tiny.options
    options.batchSize = 4
    let error = thrownError {
      _ = try Trainer(model: try VisionModel(config: Tiny.quadraNet), splits: splits, dataset: "constant", options: options)
    }
    let message = "\(error!)"
    #expect(message.contains("constant/train") && message.contains("pixel variance 0"))
    #expect(!message.contains("learning rate"))
  }

  @Test func evaluationRefusesNonFiniteWeightsAndBadBatchSizes() throws {
    let model = try VisionModel(config: Tiny.quadraNet)
    var weights = WeightsCheckpoint(model: model)
    try Evaluator.checkFinite(weights)
    var poisoned = weights.tensors["head.weight"]!.scalars
    poisoned[3] = .infinity
    poisoned[5] = .nan
    weights.tensors["head.weight"] = Tensor(shape: weights.tensors["head.weight"]!.shape, scalars: poisoned)
    weights.path = "run/model.safetensors"
    let error = thrownError { try Evaluator.checkFinite(weights) }
    #expect("\(error!)".contains("run/model.safetensors") && "\(error!)".contains("head.weight (2)"))
    let splits = try Tiny.digits(trainCount: 16, testCount: 8)
    #expect(throws: EvaluationError.self) { _ = try Evaluator.evaluate(model, on: splits.test, batchSize: 0) }
  }

  @Test func recipeDefaultsFitOneEpochAndTinyLearningRates() throws {
    let recipe = TrainingRecipe.defaultOptions(for: .digits)
    var options = recipe
    options.epochs = 1
    options.learningRate = 5e-6
    #expect(throws: TrainingError.self) { try options.validate() }
    let notes = TrainingRecipe.fitDefaults(&options, recipe: recipe, warmupGiven: false)
    #expect(notes.count == 2)
    try options.validate()
    #expect(options.warmupEpochs == recipe.warmupEpochs / Double(recipe.epochs))
    #expect(options.minimumLearningRate < options.learningRate && options.minimumLearningRate > 0)
    // Values that already fit are kept, and an explicit warm-up is never changed.
    var untouched = recipe
    #expect(TrainingRecipe.fitDefaults(&untouched, recipe: recipe, warmupGiven: false).isEmpty && untouched == recipe)
    var explicit = recipe
    explicit.epochs = 1
    _ = TrainingRecipe.fitDefaults(&explicit, recipe: recipe, warmupGiven: true)
    #expect(explicit.warmupEpochs == recipe.warmupEpochs)
    // The fitted recipe trains.
    options.batchSize = 16
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet), splits: try Tiny.digits(trainCount: 32, testCount: 16),
      dataset: "digits", options: options)
    try trainer.run(outputDirectory: nil)
    #expect(trainer.history.count == 1 && trainer.history[0].trainLoss.isFinite)
  }
}
