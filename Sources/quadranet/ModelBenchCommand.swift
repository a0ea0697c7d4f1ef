import ArgumentParser
import Foundation
import QuadraBench
import QuadraModels

struct ModelBenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "models",
    abstract: "Training and inference throughput and peak memory of models, side by side in one process.")

  @Option(
    parsing: .unconditional,
    help: "Comma-separated model names (see `quadranet models`) or model config files (*.json, as `train --config` takes, e.g. a searched best.json).")
  var models: String = "quadranet-t18,quadranet-t,hornet-t,convnext-t"
  @Option(
    parsing: .unconditional,
    help: "Square input resolution, 1...4096 and at least each model's minimum (stem stride × 2^(stages−1); 28 for the 28×28 models).")
  var resolution: Int = 224
  @Option(parsing: .unconditional, help: "Images per step, 1...4096.") var batchSize: Int = 16
  @Option(parsing: .unconditional, help: "Timed steps per model (after one warm-up step), 1...1000; the best step and the median are reported.")
  var steps: Int = 2
  @OptionGroup var threadOptions: ThreadOptions
  @OptionGroup var memoryOptions: MemoryOptions

  /// The accepted `--resolution`, `--batch-size` and `--steps`.
  static let resolutionRange = 1...4096
  static let batchSizeRange = 1...4096
  static let stepsRange = 1...1000
  @Flag(help: "Print one JSON array instead of a table.") var json = false
  @Flag(
    help: """
      After the timed steps, run --steps more training steps with every backend primitive timed and print \
      each primitive's calls, milliseconds, share of the step and GFLOP/s or GB/s (per phase: forward, \
      backward, optimizer); in --json as train_profile.
      """)
  var profile = false

  var modelNames: [String] { models.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

  func validate() throws {
    try FlagCheck.integer(resolution, in: Self.resolutionRange, "--resolution")
    try FlagCheck.integer(batchSize, in: Self.batchSizeRange, "--batch-size")
    try FlagCheck.integer(steps, in: Self.stepsRange, "--steps")
    guard (1...64).contains(modelNames.count) else {
      throw ValidationError("--models must list 1...64 models or config files, got \(modelNames.count)")
    }
    try FlagCheck.knownModels(modelNames.filter { !Self.isConfigFile($0) })
  }

  /// Whether a `--models` entry names a config file rather than a registered model.
  static func isConfigFile(_ entry: String) -> Bool { entry.hasSuffix(".json") }

  /// Each `--models` entry as a config: registered by name, or read from its file.
  func configs() throws -> [ModelConfig] {
    try modelNames.map {
      Self.isConfigFile($0) ? try FlagCheck.modelConfig(file: $0, "--models") : try ModelRegistry.config(named: $0)
    }
  }

  func run() throws {
    try memoryOptions.apply()
    // Every model's training step must fit before the first one is built.
    let configs = try configs()
    for config in configs {
      try config.validate(resolution: resolution)
      try config.checkTrainingMemory(batchSize: batchSize, resolution: resolution)
    }
    let options = ModelBenchmark.Options(
      models: modelNames, resolution: resolution, batchSize: batchSize, threads: threadOptions.threads, steps: steps,
      profilesTraining: profile)
    let (peak, results) = try ModelBenchmark.run(configs: configs, options: options) { Terminal.status($0) }
    if json {
      try Terminal.printJSON(results)
      return
    }
    let baseline = results.first { $0.model == "hornet-t" }
    print(String(format: "FMA peak %.1f GFLOP/s, %d thread(s), batch %d, %d²", peak, threadOptions.threads, batchSize, resolution))
    // Searched configs have long names (q7-d3-d7_1x24-2x48-2x192_r3_s2): the column fits the longest.
    let nameWidth = Swift.max(16, (results.map(\.model.count).max() ?? 0) + 1)
    print("model".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  params   GMACs  train img/s  (median)  infer img/s  train peak  infer peak  train/peak  vs hornet-t (speed, memory)")
    for r in results {
      var line = r.model.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
      line += String(
        format: "%7.2fM %7.3f %12.2f %9.2f %12.2f %9.2f GiB %7.2f GiB %10.2f",
        Double(r.params) / 1e6, Double(r.macs) / 1e9, r.trainImagesPerSecond, r.trainImagesPerSecondMedian,
        r.inferImagesPerSecond,
        Double(r.trainPeakBytes) / 1_073_741_824, Double(r.inferPeakBytes) / 1_073_741_824, r.trainFractionOfPeak)
      if let baseline {
        line += String(
          format: "   %.2fx, %.2fx", r.trainImagesPerSecond / baseline.trainImagesPerSecond,
          Double(r.trainPeakBytes) / Double(baseline.trainPeakBytes))
      }
      print(line)
    }
    for r in results {
      if let profile = r.trainProfile { printProfile(profile, model: r.model) }
    }
  }

  /// The per-primitive table of one model's training step.
  func printProfile(_ profile: StepProfile, model: String) {
    print("")
    let phases = ["forward", "backward", "optimizer"].map {
      "\($0) " + String(format: "%.1f ms", profile.phaseMilliseconds[$0] ?? 0)
    }
    print(
      "\(model): training step "
        + String(format: "%.1f ms (mean of %d profiled), ", profile.stepMilliseconds, profile.steps)
        + phases.joined(separator: ", "))
    print("phase      primitive                               calls/step   ms/step   share   GFLOP/s    GB/s")
    for row in profile.rows {
      var line = row.phase.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
      line += row.primitive.padding(toLength: 38, withPad: " ", startingAt: 0)
      line += String(
        format: "%12.1f %9.2f %6.1f%% %9.1f %7.1f", row.calls, row.milliseconds, row.share * 100,
        row.gigaflopsPerSecond, row.gigabytesPerSecond)
      print(line)
    }
    print(
      String(
        format: "outside primitives (autograd graph, backward traversal, bookkeeping): %.2f ms, %.1f%%",
        profile.unattributedShare * profile.stepMilliseconds, profile.unattributedShare * 100))
  }
}
