import ArgumentParser
import Foundation
import QuadraBench
import QuadraModels

struct InferenceBenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inference",
    abstract: "Latency (p50/p90/p99) and throughput of the tape-free inference engine beside the tape forward.")

  @Option(parsing: .unconditional, help: "Comma-separated model names (see `quadranet models`).")
  var models: String = "quadranet-28,quadranet-t18,quadranet-t"
  @Option(parsing: .unconditional, help: "Comma-separated batch sizes, each 1...4096, at most 8 of them.")
  var batchSizes: String = "1,32"
  @Option(
    parsing: .unconditional,
    help: "Square input resolution, 1...4096 and at least each model's minimum; default 224 for the ImageNet-size models, 28 for the others.")
  var resolution: Int?
  @Option(parsing: .unconditional, help: "Timed runs per model and batch size (after one warm-up run), 1...10000.")
  var runs: Int = 20
  @Flag(help: "Skip the tape forward (engine numbers only).") var noTape = false
  @OptionGroup var threadOptions: ThreadOptions
  @OptionGroup var memoryOptions: MemoryOptions
  @Flag(help: "Print one JSON array instead of a table.") var json = false

  static let batchSizeRange = 1...4096
  static let batchSizeCount = 1...8
  static let resolutionRange = 1...4096
  static let runsRange = 1...10_000

  var modelNames: [String] { models.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

  /// The `--batch-sizes` list, each entry checked.
  func parsedBatchSizes() throws -> [Int] {
    let parts = batchSizes.split(separator: ",", omittingEmptySubsequences: false)
    guard Self.batchSizeCount.contains(parts.count) else {
      throw ValidationError("--batch-sizes must list 1...8 sizes, got \(parts.count)")
    }
    return try parts.map { part in
      let text = part.trimmingCharacters(in: .whitespaces)
      guard let size = Int(text) else {
        throw ValidationError("--batch-sizes: '\(text.prefix(32))' is not an integer in 1...4096")
      }
      try FlagCheck.integer(size, in: Self.batchSizeRange, "--batch-sizes")
      return size
    }
  }

  func validate() throws {
    try FlagCheck.integer(resolution, in: Self.resolutionRange, "--resolution")
    try FlagCheck.integer(runs, in: Self.runsRange, "--runs")
    _ = try parsedBatchSizes()
    try FlagCheck.registeredModels(modelNames, "--models")
  }

  func run() throws {
    try memoryOptions.apply()
    let options = InferenceBenchmark.Options(
      models: modelNames, batchSizes: try parsedBatchSizes(), threads: threadOptions.threads, resolution: resolution,
      runs: runs, measuresTape: !noTape)
    let results = try InferenceBenchmark.run(options) { Terminal.status($0) }
    if json {
      try Terminal.printJSON(results)
      return
    }
    print("\(threadOptions.threads) thread(s), \(runs) timed runs each; latency of a whole batch in ms")
    print("model            res  batch  engine p50    p90    p99    img/s   tape p50   img/s  speed-up")
    for r in results {
      var line = r.model.padding(toLength: 16, withPad: " ", startingAt: 0)
      line += String(
        format: "%4d %6d %10.3f %7.3f %7.3f %8.1f", r.resolution, r.batchSize, r.engine.p50Milliseconds,
        r.engine.p90Milliseconds, r.engine.p99Milliseconds, r.engine.imagesPerSecond)
      if let tape = r.tape, let speedup = r.speedup {
        line += String(format: " %10.3f %7.1f %8.2fx", tape.p50Milliseconds, tape.imagesPerSecond, speedup)
      }
      print(line)
    }
  }
}
