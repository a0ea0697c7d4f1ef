import Foundation
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

/// The `quadranet` binary of this checkout (`swift build -c release` or `swift test -c release` builds it).
let quadranetBinary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent().appendingPathComponent(".build/release/quadranet")

/// Runs the real CLI in child processes; skipped (with this reason) when the binary has not been built.
@Suite(
  .serialized,
  .enabled(
    if: FileManager.default.isExecutableFile(atPath: quadranetBinary.path),
    "needs .build/release/quadranet: run `swift build -c release` first"))
struct CommandLineTests {
  func start(_ arguments: [String], stderr: URL) throws -> Process {
    let process = Process()
    process.executableURL = quadranetBinary
    process.arguments = arguments + ["--threads", "1"]
    _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
    process.standardError = try FileHandle(forWritingTo: stderr)
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    return process
  }

  /// Exit status and standard error of a finished command.
  func run(_ arguments: [String], in directory: URL) throws -> (status: Int32, stderr: String) {
    let log = directory.appendingPathComponent("stderr-\(UUID().uuidString).txt")
    let process = try start(arguments, stderr: log)
    process.waitUntilExit()
    return (process.terminationStatus, try String(contentsOf: log, encoding: .utf8))
  }

  /// Waits until `condition` holds (polling), for at most `seconds`.
  func wait(seconds: Double, until condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if condition() { return true }
      usleep(20_000)
    }
    return condition()
  }

  @Test func killNineDuringTrainingAlwaysLeavesAResumableRun() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    let run = root.appendingPathComponent("run")
    var generator = SystemRandomNumberGenerator()
    var lastSequence = 0
    var lastHistory: [EpochMetrics] = []
    for round in 0..<3 {
      let arguments = round == 0 ? ["train", "--epochs", "60", "--out", run.path] : ["train", "--resume", run.path]
      let child = try start(arguments, stderr: root.appendingPathComponent("log-\(round).txt"))
      // Kill at a random moment after the run's next save began to be possible.
      let saved = wait(seconds: 240) { (RunDirectory.committedSaves(in: run).last?.sequence ?? 0) > lastSequence }
      #expect(saved, "round \(round): no new checkpoint")
      // The running process holds the lock; a second trainer is refused, naming it.
      let refused = thrownError { _ = try RunDirectory(url: run) }
      #expect("\(refused.map { "\($0)" } ?? "none")".contains("process \(child.processIdentifier)"))
      usleep(UInt32.random(in: 0...1_500_000, using: &generator))
      kill(child.processIdentifier, SIGKILL)
      child.waitUntilExit()
      #expect(child.terminationReason == .uncaughtSignal)

      let checkpoint = try TrainingCheckpoint.read(from: run)
      #expect(checkpoint.state.epoch >= 1 && checkpoint.state.history.count == checkpoint.state.epoch)
      #expect(Array(checkpoint.state.history.prefix(lastHistory.count)) == lastHistory)
      _ = try WeightsCheckpoint.read(from: run).makeModel()
      lastHistory = checkpoint.state.history
      lastSequence = RunDirectory.committedSaves(in: run).last?.sequence ?? 0
      // The kernel released the lock with the process.
      try RunDirectory(url: run).unlock()
    }
  }

  /// `search run --resume` continues the recorded search: flags that contradict it are errors naming them, and
  /// a search resumed without them (but with more generations) ends exactly where an uninterrupted one does.
  @Test func searchResumeKeepsTheRecordedProxyCostsAndConstraints() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    let (resumed, whole) = (root.appendingPathComponent("resumed"), root.appendingPathComponent("whole"))
    let common = ["--no-profile", "--population", "8", "--children", "4", "--proxy", "macs", "--max-params", "300000"]
    #expect(try run(["search", "run", "--out", resumed.path, "--generations", "2"] + common, in: root).status == 0)
    #expect(try run(["search", "run", "--out", whole.path, "--generations", "5"] + common, in: root).status == 0)
    let conflict = try run(
      ["search", "run", "--resume", resumed.path, "--proxy", "synflow", "--seed", "3", "--max-params", "100000", "--out", whole.path],
      in: root)
    #expect(conflict.status == 64)
    for named in [
      "--proxy: recorded macs, requested synflow", "--seed: recorded 0, requested 3", "--max-params 3e+05",
      "writes into its --resume directory",
    ] {
      #expect(conflict.stderr.contains(named), "\(conflict.stderr)")
    }
    let missing = root.appendingPathComponent("no-such-search")
    let notThere = try run(["search", "run", "--resume", missing.path], in: root)
    #expect(notThere.status != 0 && notThere.stderr.contains("cannot read the search state"), "\(notThere.stderr)")
    #expect(!FileManager.default.fileExists(atPath: missing.path))
    let shorter = try run(["search", "run", "--resume", resumed.path, "--generations", "1"], in: root)
    #expect(shorter.status == 64 && shorter.stderr.contains("already run 2 generations"), "\(shorter.stderr)")
    #expect(try run(["search", "run", "--resume", resumed.path, "--generations", "5"], in: root).status == 0)
    let state = "state.json"
    #expect(
      try Data(contentsOf: resumed.appendingPathComponent(state)) == Data(contentsOf: whole.appendingPathComponent(state)))
  }

  /// `--proxy predictor` fits to `--ground-truth` and records the fitted predictor: a resume scores with it, and a
  /// ground truth that fits another predictor, a missing one, or one given to another proxy is refused by name.
  @Test func searchWithThePredictorProxyRecordsItsFit() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    let groundTruth = quadranetBinary.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("data/fashion-mnist-ground-truth.json")
    let (resumed, whole) = (root.appendingPathComponent("resumed"), root.appendingPathComponent("whole"))
    let common = ["--no-profile", "--population", "8", "--children", "4", "--proxy", "predictor", "--max-params", "300000"]
    let truth = ["--ground-truth", groundTruth.path]
    var entries = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: groundTruth)) as? [[String: Any]])
    let first = try run(["search", "run", "--out", resumed.path, "--generations", "2"] + common + truth, in: root)
    #expect(first.status == 0 && first.stderr.contains("predictor: fitted to \(entries.count) networks"), "\(first.stderr)")
    #expect(try run(["search", "run", "--out", whole.path, "--generations", "4"] + common + truth, in: root).status == 0)
    // Another ground truth (one accuracy changed) fits another predictor.
    entries[0]["accuracy"] = 0.99
    let other = root.appendingPathComponent("other.json")
    try JSONSerialization.data(withJSONObject: entries).write(to: other)
    let conflict = try run(["search", "run", "--resume", resumed.path, "--ground-truth", other.path], in: root)
    #expect(conflict.status == 64 && conflict.stderr.contains("fits another predictor than the recorded one"), "\(conflict.stderr)")
    // Resumed without the file: the recorded predictor scores, and the result is the uninterrupted run's.
    #expect(try run(["search", "run", "--resume", resumed.path, "--generations", "4"], in: root).status == 0)
    let state = "state.json"
    #expect(
      try Data(contentsOf: resumed.appendingPathComponent(state)) == Data(contentsOf: whole.appendingPathComponent(state)))
    let missing = try run(["search", "run", "--out", root.appendingPathComponent("x").path] + common, in: root)
    #expect(missing.status == 64 && missing.stderr.contains("give --ground-truth FILE"), "\(missing.stderr)")
    let misplaced = try run(
      ["search", "run", "--out", root.appendingPathComponent("y").path, "--no-profile", "--proxy", "macs"] + truth, in: root)
    #expect(misplaced.status == 64 && misplaced.stderr.contains("only with --proxy predictor"), "\(misplaced.stderr)")
  }

  /// A parameter or memory budget below the space's cheapest architecture is refused before the cost profile
  /// is measured (the cache directory stays empty), naming the flag and the cheapest architecture.
  @Test func searchRefusesImpossibleParameterAndMemoryBudgetsBeforeProfiling() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    let cache = root.appendingPathComponent("cache")
    for (flags, named) in [
      (["--max-params", "1"], "--max-params 1 parameters is below what the space allows"),
      (["--max-train-memory-mb", "0.5"], "--max-train-memory-mb 0.5 MiB is below what the space allows"),
      (["--memory-below", "hornet-28", "0.01"], "--max-train-memory-mb"),
    ] {
      let result = try run(
        ["search", "run", "--cache", cache.path, "--out", root.appendingPathComponent("out").path] + flags, in: root)
      #expect(result.status != 0, "\(flags)")
      #expect(result.stderr.contains(named) && result.stderr.contains("the cheapest architecture"), "\(result.stderr)")
      #expect(!result.stderr.contains("profile "), "\(flags): profiled before refusing: \(result.stderr)")
    }
    let cached = (try? FileManager.default.contentsOfDirectory(atPath: cache.path)) ?? []
    #expect(cached.isEmpty, "\(cached)")
  }

  @Test func defaultRecipeAcceptsOneEpochAndATinyLearningRate() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    let result = try run(["train", "--epochs", "1", "--lr", "5e-6", "--out", root.appendingPathComponent("run").path], in: root)
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("warm-up") && result.stderr.contains("decays to"))
  }

  @Test func badOutputDirectoriesGiveCleanMessagesBeforeLoadingData() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    let file = root.appendingPathComponent("file")
    try Data("x".utf8).write(to: file)
    for out in [file.path, file.appendingPathComponent("run").path] {
      let result = try run(["train", "--out", out], in: root)
      #expect(result.status != 0)
      #expect(result.stderr.contains(file.path) && !result.stderr.contains("Domain") && !result.stderr.contains("training "))
    }
  }

  @Test func evalOfNonFiniteWeightsFails() throws {
    let root = try makeTemporaryDirectory()
    defer { removeDirectory(root) }
    var weights = WeightsCheckpoint(model: try VisionModel(config: Tiny.quadraNet), dataset: "digits")
    let shape = weights.tensors["norm.weight"]!.shape
    weights.tensors["norm.weight"] = Tensor(shape: shape, scalars: Array(repeating: .nan, count: shape.reduce(1, *)))
    let url = root.appendingPathComponent("diverged.safetensors")
    try weights.write(to: url)
    let result = try run(["eval", "--checkpoint", url.path], in: root)
    #expect(result.status != 0)
    #expect(result.stderr.contains(url.path) && result.stderr.contains("NaN") && result.stderr.contains("norm.weight"))
  }
}
