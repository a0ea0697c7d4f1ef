import ArgumentParser
import Foundation
import QuadraIO
import QuadraModels
import QuadraData
import QuadraSearch
import QuadraTraining

/// `quadranet search`: hardware-aware architecture search.
struct SearchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "search", abstract: "Hardware-aware architecture search (profile, calibrate, run, proxies, predict).",
    subcommands: [SearchProfileCommand.self, SearchCalibrateCommand.self, SearchRunCommand.self, SearchProxiesCommand.self,
      SearchPredictCommand.self,
      SearchGroundTruthCommand.self, SearchSampleCommand.self,
    ])
}

/// Flags shared by the search subcommands that need the cost model.
struct SearchCostOptions: ParsableArguments {
  // Optional so that `search run --resume` can tell a flag given now from the default (see SearchResume).
  @Option(name: .customLong("space"), help: "Search space: fashion-mnist (default), fashion-mnist-full-resolution, imagenet, or a JSON file.")
  var requestedSpace: String?
  @Option(
    name: .customLong("batch-size"), parsing: .unconditional,
    help: "Training batch size the costs are measured at, 1...4096 (default 32).")
  var requestedBatchSize: Int?
  @Option(help: "Directory of the cached cost profile (default ~/.cache/quadranet).") var cache: String?
  @Option(parsing: .unconditional, help: "Architectures the profile measures, 10...10000.") var samples: Int = 100
  @Option(parsing: .unconditional, help: "Timing windows per measurement (each the fastest of its calls, then the speed reference's; the median ratio kept), 1...100.") var repetitions: Int = 5
  @Option(parsing: .unconditional, help: "Seconds of calls per measurement at least, spread over the windows (at most 1000 calls per window), 0...10.")
  var minSeconds: Double = 0.05
  @Option(
    name: .customLong("rounds"), parsing: .unconditional,
    help: "Passes through everything measured, 1...10; each time is the median over the passes (a shared machine's speed drifts by tens of percent over seconds). Default 2 for the profile and --train-best, 8 for calibrate.")
  var requestedRounds: Int?
  @Option(
    parsing: .unconditional,
    help: "Profile architectures calibrate and --train-best re-measure in every pass, each pass scaled so that they come out as stored, 0...100 (0: the speed reference alone).")
  var anchors: Int = Profiler.anchorCount
  @Flag(help: "Profile only whole architectures for the linear feature model, without the per-part table.")
  var noPartTable = false
  @OptionGroup var threadOptions: ThreadOptions

  var space: String { requestedSpace ?? "fashion-mnist" }
  var batchSize: Int { requestedBatchSize ?? 32 }
  /// Passes of the profile (and of `--train-best`'s measurements).
  var rounds: Int { requestedRounds ?? 2 }
  /// Passes of `search calibrate`: its measurements are the truth the predictions are judged by, and their
  /// median steadies with more passes (40 architectures at batch 64 on 2 cores, same profile, 2 → 4 passes:
  /// training-step RMSPE 11.4 → 7.2% and 11.4 → 8.6%, Kendall τ 0.895 → 0.938 and 0.846 → 0.903, in twice the time).
  /// 8, not 4, for batch-1 inference on two threads: one pass of it agreed with the median of the passes within
  /// ±10% for only 81–82% of 40 architectures on the 2-vCPU Zen 3 VM (stop 34), so the median of four still
  /// carried several percent of noise into the truth; same profile and seed, 4 → 8 passes: batch-1 RMSPE 6.1 → 4.4%,
  /// within ±10% 90 → 95% (3.1 → 5.7 minutes).
  var calibrationRounds: Int { requestedRounds ?? 8 }

  func validate() throws {
    try FlagCheck.integer(requestedBatchSize, in: 1...4096, "--batch-size")
    try FlagCheck.integer(samples, in: 10...10_000, "--samples")
    try FlagCheck.integer(repetitions, in: 1...100, "--repetitions")
    try FlagCheck.real(minSeconds, in: 0...10, "0...10", "--min-seconds")
    try FlagCheck.integer(requestedRounds, in: 1...10, "--rounds")
    try FlagCheck.integer(anchors, in: 0...100, "--anchors")
  }

  /// `configs` measured in `rounds` passes beside `reference` and `--anchors` of `profile`'s own architectures,
  /// each pass on the profile's scale by its anchors
  /// (``QuadraSearch/Profiler/measure(_:anchoredTo:space:anchors:repetitions:minimumSeconds:rounds:reference:progress:)``);
  /// prints the factors; `label` starts the progress line.
  func measure(
    _ configs: [ModelConfig], anchoredTo profile: CostProfile, space: SearchSpace, rounds: Int, reference: SpeedReference,
    label: String
  ) throws -> (measurements: [ConfigMeasurement], factors: PartCost) {
    let result = try Profiler.measure(
      configs, anchoredTo: profile, space: space, anchors: anchors, repetitions: repetitions, minimumSeconds: minSeconds,
      rounds: rounds, reference: reference
    ) { done, total in Terminal.status("\(label) \(done)/\(total)") }
    if anchors > 0 && !profile.measurements.isEmpty {
      Terminal.status(
        String(
          format: "%@: each pass on the profile's scale by %d of its architectures (median factors: training ×%.3f, batch 1 ×%.3f, batched ×%.3f)",
          label, Swift.min(anchors, profile.measurements.count), result.factors.train, result.factors.inferBatch1,
          result.factors.inferBatch))
    }
    return result
  }

  func loadSpace() throws -> SearchSpace {
    do { return try SearchSpace.load(nameOrPath: space) } catch let error as SearchSpaceError {
      throw ValidationError("--space \(space.prefix(200)): \(error)")
    }
  }

  var cacheDirectory: URL {
    if let cache { return URL(fileURLWithPath: cache) }
    return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/quadranet")
  }

  /// The cached profile, or a new one (measured now and cached) when there is none or it does not match.
  func profile(space: SearchSpace, forceNew: Bool = false) throws -> CostProfile {
    Terminal.status("measuring the FMA peak for the hardware fingerprint…")
    var hardware = try HardwareFingerprint.current(threads: threadOptions.threads)
    let url = Profiler.cacheURL(directory: cacheDirectory, space: space, batchSize: batchSize, threads: threadOptions.threads)
    if !forceNew {
      let threads = threadOptions.threads
      let (cached, warning) = try Profiler.cached(at: url, hardware: &hardware, space: space, batchSize: batchSize) {
        Terminal.status("the FMA peak read below the cached profile's; measuring it again…")
        return try PeakFLOPS.measure(threads: threads).gflops
      }
      if let warning { Terminal.status("warning: " + warning) }
      if let cached {
        Terminal.status("using the cost profile \(url.path)")
        return cached
      }
    }
    let options = Profiler.Options(
      samples: samples, repetitions: repetitions, batchSize: batchSize, threads: threadOptions.threads,
      measuresParts: !noPartTable, minimumSeconds: minSeconds, rounds: rounds)
    let profile = try Profiler.profile(space: space, hardware: hardware, options: options) { Terminal.status($0) }
    try Profiler.save(profile, to: url)
    Terminal.status("wrote \(url.path)")
    return profile
  }
}

/// Flags of the data the `naswot`, `zico`, `meco` and `short-training` proxies score with.
struct ProxyImageOptions: ParsableArguments {
  // Optional so that `search run --resume` can tell a flag given now from the default (see SearchResume).
  @Option(
    name: .customLong("dataset"),
    help: "Dataset of the naswot / zico / meco mini-batch and the short-training subsets (as for `train --dataset`; default fashion-mnist).")
  var requestedDataset: String?
  @Option(name: .customLong("proxy-batch"), parsing: .unconditional, help: "Images in the naswot / zico / meco mini-batch, 2...1024 (default 64).")
  var requestedProxyBatch: Int?
  @Option(
    name: .customLong("proxy-seed"), parsing: .unconditional,
    help: "Seed of the naswot / zico / meco mini-batch and the short-training subsets, 0...2^63 (default 0).")
  var requestedProxySeed: Int?
  @Option(
    parsing: .unconditional,
    help: "short-training: training images of the fixed subset, 1...1000000 (default: 10000, at most 5/6 of the split).")
  var shortTrainingImages: Int?
  @Option(
    parsing: .unconditional,
    help: "short-training: validation images (from the training split, disjoint), 1...1000000 (default: 2000, at most the rest).")
  var shortTrainingValidation: Int?
  @Option(
    name: .customLong("short-training-epochs"), parsing: .unconditional,
    help: "short-training: epochs over the subset, 1...100 (default 1).")
  var requestedShortTrainingEpochs: Int?

  var dataset: String { requestedDataset ?? "fashion-mnist" }
  var proxyBatch: Int { requestedProxyBatch ?? 64 }
  var proxySeed: Int { requestedProxySeed ?? 0 }
  var shortTrainingEpochs: Int { requestedShortTrainingEpochs ?? 1 }

  func validate() throws {
    try FlagCheck.integer(requestedProxyBatch, in: 2...1024, "--proxy-batch")
    try FlagCheck.integer(requestedProxySeed, in: 0...Int.max, "--proxy-seed")
    try FlagCheck.integer(shortTrainingImages, in: 1...1_000_000, "--short-training-images")
    try FlagCheck.integer(shortTrainingValidation, in: 1...1_000_000, "--short-training-validation")
    try FlagCheck.integer(requestedShortTrainingEpochs, in: 1...100, "--short-training-epochs")
  }

  /// What these flags make `proxy` read, as recorded in a search state.
  func settings(for proxy: AccuracyProxy) -> ProxySettings {
    ProxySettings(
      proxy: proxy, dataset: dataset, batch: proxyBatch, seed: UInt64(proxySeed), shortTrainingImages: shortTrainingImages,
      shortTrainingValidation: shortTrainingValidation, shortTrainingEpochs: shortTrainingEpochs)
  }

  /// `--proxy-batch` distinct training images drawn with `--proxy-seed` (normalized as for training) and their
  /// labels, checked against the input the models expect.
  func batch(resolution: Int, channels: Int) throws -> ProxyBatch {
    let train = try DatasetSplits.load(try DatasetName(parsing: dataset)).train
    guard train.imageShape == [resolution, resolution, channels] else {
      throw ValidationError(
        "--dataset \(dataset) has images of shape \(train.imageShape); the models need \([resolution, resolution, channels])")
    }
    guard train.count >= proxyBatch else {
      throw ValidationError("--proxy-batch \(proxyBatch) exceeds the \(train.count) training images of --dataset \(dataset)")
    }
    // Distinct images: a repeated image would make the NASWOT kernel singular.
    var generator = RandomGenerator(seed: UInt64(proxySeed))
    let subset = train.subset(generator.distinctIndices(proxyBatch, below: train.count))
    return ProxyBatch(images: subset.images, labels: subset.labels)
  }

  /// The `short-training` proxy's data: fixed subsets of `--dataset`'s training split drawn with
  /// `--proxy-seed` (`--short-training-images`, `--short-training-validation`), and the dataset's recipe with
  /// `--short-training-epochs` epochs.
  func shortTraining(resolution: Int, channels: Int) throws -> ShortTrainingProxy {
    let name = try DatasetName(parsing: dataset)
    let train = try DatasetSplits.load(name).train
    guard train.imageShape == [resolution, resolution, channels] else {
      throw ValidationError(
        "--dataset \(dataset) has images of shape \(train.imageShape); the models need \([resolution, resolution, channels])")
    }
    let trainImages = shortTrainingImages ?? Swift.min(10_000, train.count * 5 / 6)
    let validationImages = shortTrainingValidation ?? Swift.max(1, Swift.min(2_000, train.count - trainImages))
    guard trainImages + validationImages <= train.count else {
      throw ValidationError(
        "--short-training-images \(trainImages) + --short-training-validation \(validationImages) exceed the "
          + "\(train.count) training images of --dataset \(dataset)")
    }
    do {
      return try ShortTrainingProxy(
        training: train, recipe: TrainingRecipe.defaultOptions(for: name), trainImages: trainImages,
        validationImages: validationImages, epochs: shortTrainingEpochs, seed: UInt64(proxySeed))
    } catch { throw ValidationError("--proxy short-training on --dataset \(dataset): \(error)") }
  }

  /// What `proxy` needs besides the config: a mini-batch for naswot, zico and meco, training data for short-training.
  func inputs(for proxy: AccuracyProxy, resolution: Int, channels: Int) throws -> (batch: ProxyBatch?, shortTraining: ShortTrainingProxy?) {
    (
      proxy.needsImages ? try batch(resolution: resolution, channels: channels) : nil,
      proxy.needsTrainingData ? try shortTraining(resolution: resolution, channels: channels) : nil
    )
  }
}

struct SearchProfileCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "profile", abstract: "Measure this machine's cost model for a space and cache it.")
  @OptionGroup var cost: SearchCostOptions
  @Flag(help: "Measure again even if a matching profile is cached.") var force = false

  func run() throws {
    let space = try cost.loadSpace()
    let profile = try cost.profile(space: space, forceNew: force)
    try Terminal.printJSON(profile.costModel)
  }
}

struct SearchCalibrateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "calibrate", abstract: "Measure random architectures (not in the profile) against the predictions.")
  @OptionGroup var cost: SearchCostOptions
  @Option(parsing: .unconditional, help: "Architectures to measure, 2...1000.") var archs: Int = 10
  @Option(help: "Write the report as JSON to this file.") var json: String?
  @Option(help: "Write the scatter plots to this SVG file.") var svg: String = "calibration.svg"
  @Option(
    parsing: .unconditional,
    help: "Seed of the architecture draw, 0...2^63 (default: one the profile does not use, so none was fitted).")
  var seed: Int = Int(Profiler.calibrationSeed)

  func validate() throws {
    try FlagCheck.integer(archs, in: 2...1000, "--archs")
    try FlagCheck.integer(seed, in: 0...Int.max, "--seed")
  }

  func run() throws {
    let space = try cost.loadSpace()
    let profile = try cost.profile(space: space)
    var generator = RandomGenerator(seed: UInt64(seed))
    let architectures = (0..<archs).map { _ in space.randomArchitecture(using: &generator) }
    let configs = try architectures.map { try space.config(for: $0) }
    let reference = try SpeedReference(
      space: space, batchSize: cost.batchSize, threads: cost.threadOptions.threads, baseline: profile.speedBaseline)
    let (measured, anchoring) = try cost.measure(
      configs, anchoredTo: profile, space: space, rounds: cost.calibrationRounds, reference: reference, label: "calibrate")
    let measurements = zip(architectures, measured).map { ArchitectureMeasurement($0, $1) }
    let predictions = try configs.map { try profile.costModel.predict($0, resolution: space.resolution) }
    let hasTable = profile.costModel.table != nil
    let source = profile.costModel.effectiveLatencySource
    /// Each source's predictions beside the search's own (those computed once).
    func predicted(by other: LatencySource) throws -> [PredictedCosts]? {
      guard hasTable else { return nil }
      if other == source { return predictions }
      return try configs.map { try profile.costModel.predict($0, resolution: space.resolution, latency: other) }
    }
    let report = CalibrationReport(
      hardware: profile.hardware, measurements: measurements, predictions: predictions, batchSize: cost.batchSize,
      linearPredictions: try predicted(by: .linear), tablePredictions: try predicted(by: .table),
      combinedPredictions: try predicted(by: .combined),
      repeatability: cost.calibrationRounds > 1 ? CalibrationReport.repeatability(of: measured) : nil,
      anchoring: cost.anchors > 0 ? anchoring : nil)
    // The search's predictor first (with a table, the profile's LatencySource), then each source alone.
    let model = hasTable ? source.rawValue : "linear"
    print("metric                   within 5%  within 10%  RMSPE %  Kendall tau  exact")
    func row(_ label: String, _ m: CalibrationMetric) {
      print(label.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: " %9.2f  %10.2f  %7.1f  %11.3f  %5.2f", m.within5, m.within10, m.rmspe, m.kendallTau ?? Double.nan, m.exact))
    }
    for key in ["train_step", "infer_batch1", "infer_batch"] {
      row("\(key) (\(model))", report.metrics[key]!)
      if source != .table, let table = report.tableMetrics?[key] { row("  (table)", table) }
      if source != .combined, let combined = report.combinedMetrics?[key] { row("  (combined)", combined) }
      if let linear = report.linearMetrics?[key] { row("  (linear)", linear) }
    }
    for key in ["train_memory", "infer_memory"] { row(key, report.metrics[key]!) }
    if let repeatability = report.repeatability {
      print("one pass vs the median of \(cost.calibrationRounds) (the measurement's own noise):")
      for key in ["train_step", "infer_batch1", "infer_batch"] { row(key, repeatability[key]!) }
    }
    print("worst predicted (\(model)):")
    for (key, unit) in [("train_step", "ms"), ("infer_batch1", "ms"), ("infer_batch", "ms"), ("train_memory", "bytes")] {
      for worst in report.worstPredicted(key, count: 3, batchSize: cost.batchSize) {
        print(
          "  " + key.padding(toLength: 13, withPad: " ", startingAt: 0)
            + String(format: "%+7.1f%%  predicted %.4g %@, measured %.4g %@  ", worst.relativeError * 100, worst.predicted,
              unit, worst.measured, unit) + measurements[worst.index].architecture.name)
      }
    }
    let panels = CalibrationReport.series(measurements: measurements, predictions: predictions, batchSize: cost.batchSize).map {
      ScatterPlot.Panel(title: "\($0.key): predicted (y) vs measured (x)", x: $0.measured, y: $0.predicted, diagonal: true)
    }
    try AtomicFile.write(ScatterPlot.render(panels), to: URL(fileURLWithPath: svg))
    if let json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
      try AtomicFile.write(try encoder.encode(report), to: URL(fileURLWithPath: json))
    }
  }
}

struct SearchRunCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run", abstract: "Constrained evolution over predicted costs and an accuracy proxy.")
  @OptionGroup var cost: SearchCostOptions
  @Option(help: "Output directory (pareto.json, pareto.svg, best.json, state.json; default search-out; a resumed search writes into its --resume directory).")
  var out: String?
  @Option(
    help: "Continue the search whose state.json is in this directory, with the settings it recorded (flags given now must agree; only --generations may change).")
  var resume: String?
  // Optional so that --resume can tell a flag given now from the default (see SearchResume.swift).
  @Option(parsing: .unconditional, help: "Random seed, 0...2^63 (default 0).") var seed: Int?
  @Option(parsing: .unconditional, help: "Generations, 0...100000 (default 100; with --resume: the new total).") var generations: Int?
  @Option(parsing: .unconditional, help: "Population size, 2...10000 (default 64).") var population: Int?
  @Option(parsing: .unconditional, help: "Children scored per generation, 1...100000 (default 100).") var children: Int?
  @Option(help: "Accuracy proxy: params (default), macs, mlp-macs, synflow, naswot, zico, meco, short-training or predictor (synflow, naswot, zico and meco run each candidate once or twice: ~10k candidates take minutes; short-training trains each for one epoch on 10k images: seconds per candidate; predictor is fitted to --ground-truth).") var proxy: AccuracyProxy?
  @OptionGroup var proxyImages: ProxyImageOptions
  @Option(
    help: "predictor: the ground truth it is fitted to, a JSON array of {\"config\", \"accuracy\"} of 4...500 trained networks (e.g. data/fashion-mnist-ground-truth.json).")
  var groundTruth: String?
  @Option(parsing: .unconditional, help: "Largest predicted training time per image, ms (0, 1e6].") var maxTrainMsPerImage: Double?
  @Option(parsing: .unconditional, help: "Largest predicted batch-1 inference time, ms (0, 1e6].") var maxInferMs: Double?
  @Option(parsing: .unconditional, help: "Largest predicted training-step memory, MiB (0, 1e7].") var maxTrainMemoryMb: Double?
  @Option(parsing: .unconditional, help: "Most parameters, 1...1e10.") var maxParams: Int?
  @Option(parsing: .upToNextOption, help: "MODEL FACTOR: train at least FACTOR (1...1000) times faster than a registered model.")
  var fasterThan: [String] = []
  @Option(parsing: .upToNextOption, help: "MODEL FACTOR: training memory at most FACTOR (0.001...1000) times a registered model's.")
  var memoryBelow: [String] = []
  @Flag(help: "Use the analytic cost model instead of measuring a profile (ranking only, not real milliseconds).")
  var noProfile = false
  @Option(
    parsing: .unconditional,
    help: "Then retrain the K best candidates (by proxy) with --dataset's default recipe and measure them beside the --faster-than/--memory-below models, 0...100 (writes train-best.json).")
  var trainBest: Int = 0

  func validate() throws {
    try FlagCheck.integer(seed, in: 0...Int.max, "--seed")
    try FlagCheck.integer(generations, in: 0...100_000, "--generations")
    try FlagCheck.integer(population, in: 2...10_000, "--population")
    try FlagCheck.integer(children, in: 1...100_000, "--children")
    try FlagCheck.real(maxTrainMsPerImage, in: Double.leastNonzeroMagnitude...1e6, "(0, 1e6]", "--max-train-ms-per-image")
    try FlagCheck.real(maxInferMs, in: Double.leastNonzeroMagnitude...1e6, "(0, 1e6]", "--max-infer-ms")
    try FlagCheck.real(maxTrainMemoryMb, in: Double.leastNonzeroMagnitude...1e7, "(0, 1e7]", "--max-train-memory-mb")
    try FlagCheck.integer(maxParams, in: 1...10_000_000_000, "--max-params")
    try FlagCheck.integer(trainBest, in: 0...100, "--train-best")
    if trainBest > 0 && noProfile {
      throw ValidationError("--train-best compares measured costs with predicted ones; it needs the profile (drop --no-profile)")
    }
    _ = try Self.relative(fasterThan, "--faster-than", 1...1000)
    _ = try Self.relative(memoryBelow, "--memory-below", 0.001...1000)
    // A resumed search may use its recorded proxy: checked in `adopt`.
    if resume == nil {
      if proxy == .predictor && groundTruth == nil {
        throw ValidationError(
          "--proxy predictor is fitted to trained accuracies: give --ground-truth FILE (e.g. data/fashion-mnist-ground-truth.json)")
      }
      if proxy != .predictor && groundTruth != nil { throw ValidationError("--ground-truth is read only with --proxy predictor") }
    }
  }

  /// The `predictor` proxy fitted to `--ground-truth` at the space's resolution, checked to encode every
  /// stage count of the space.
  func fittedPredictor(space: SearchSpace) throws -> AccuracyPredictor {
    guard let groundTruth else {
      throw ValidationError("--proxy predictor needs --ground-truth FILE (e.g. data/fashion-mnist-ground-truth.json)")
    }
    let entries = try GroundTruthEntry.read(path: groundTruth, minimumCount: AccuracyPredictor.entryRange.lowerBound)
    let predictor: AccuracyPredictor
    do { predictor = try AccuracyPredictor.fit(entries, resolution: space.resolution) } catch {
      throw ValidationError("--ground-truth \(groundTruth.prefix(200)): \(error)")
    }
    let stages = space.stageCounts.max() ?? 0
    guard stages <= predictor.stageSlots else {
      throw ValidationError(
        "--ground-truth \(groundTruth.prefix(200)): its networks have at most \(predictor.stageSlots) stages; the space \(space.name) has up to \(stages)")
    }
    return predictor
  }

  /// The absolute limits of the constraint flags; relative ones (`--faster-than`, `--memory-below`) with the
  /// registered model's cost predicted by `costModel`.
  func constraints(costModel: CostModel, space: SearchSpace) throws -> SearchConstraints {
    var constraints = SearchConstraints(
      maxTrainMillisecondsPerImage: maxTrainMsPerImage, maxInferMilliseconds: maxInferMs,
      maxTrainMemoryBytes: maxTrainMemoryMb.map { Int($0 * 1_048_576) }, maxParameters: maxParams)
    if let (model, factor) = try Self.relative(fasterThan, "--faster-than", 1...1000) {
      let limit = try costModel.predict(model, resolution: space.resolution).trainMillisecondsPerImage / factor
      constraints.maxTrainMillisecondsPerImage = min(constraints.maxTrainMillisecondsPerImage ?? .infinity, limit)
    }
    if let (model, factor) = try Self.relative(memoryBelow, "--memory-below", 0.001...1000) {
      let limit = Int(Double(try costModel.predict(model, resolution: space.resolution).trainMemoryBytes) * factor)
      constraints.maxTrainMemoryBytes = min(constraints.maxTrainMemoryBytes ?? .max, limit)
    }
    return constraints
  }

  /// Whether any constraint flag was given.
  var hasConstraintFlags: Bool {
    maxTrainMsPerImage != nil || maxInferMs != nil || maxTrainMemoryMb != nil || maxParams != nil || !fasterThan.isEmpty
      || !memoryBelow.isEmpty
  }

  /// `MODEL FACTOR` as a registered config and a factor in `range`.
  static func relative(_ values: [String], _ flag: String, _ range: ClosedRange<Double>) throws -> (ModelConfig, Double)? {
    guard !values.isEmpty else { return nil }
    guard values.count == 2, let factor = Double(values[1]), factor.isFinite, range.contains(factor) else {
      throw ValidationError("\(flag) takes MODEL FACTOR with FACTOR in \(range.lowerBound)...\(range.upperBound)")
    }
    do { return (try ModelRegistry.config(named: values[0]), factor) } catch {
      throw ValidationError("\(flag): \(error)")
    }
  }

  mutating func run() throws {
    let outURL = URL(fileURLWithPath: resume ?? out ?? "search-out")
    // A mistyped --resume must not leave an empty directory behind: only a new search creates one.
    if resume == nil { try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true) }
    let stateURL = outURL.appendingPathComponent("state.json")
    var state: EvolutionState?
    if resume != nil {
      var recorded = try Evolution.load(from: stateURL)
      try adopt(&recorded)
      state = recorded
    }
    let space = try state?.space ?? cost.loadSpace()
    if state == nil { try checkTimelessLimits(space: space) }
    // A resumed search keeps the cost model it recorded; the profile is then only needed for --train-best.
    let profile = (state?.costModel == nil && !noProfile) || trainBest > 0 ? try cost.profile(space: space) : nil
    let costModel =
      state?.costModel ?? profile?.costModel
      ?? CostModel.analytic(batchSize: cost.batchSize, threads: cost.threadOptions.threads)
    let proxy = self.proxy ?? .parameters
    let (batch, shortTraining) = try proxyImages.inputs(for: proxy, resolution: space.resolution, channels: space.inputChannels)
    // A resumed search scores with the predictor it recorded.
    let predictor = proxy.needsGroundTruth ? try state?.proxySettings?.predictor ?? fittedPredictor(space: space) : nil
    if let predictor, state == nil {
      Terminal.status(
        String(format: "predictor: fitted to %d networks (λ %g, γ %g)", predictor.inputs.count, predictor.regularization, predictor.bandwidth))
    }
    var proxySettings = proxyImages.settings(for: proxy)
    proxySettings.predictor = predictor
    let evolution = Evolution(costModel: costModel) { _, config in
      try proxy.score(config, resolution: space.resolution, batch: batch, shortTraining: shortTraining, predictor: predictor)
    }
    if state == nil {
      let options = EvolutionOptions(
        seed: UInt64(seed ?? 0), populationSize: population ?? 64, sampleSize: max(1, (population ?? 64) / 4),
        childrenPerGeneration: children ?? 100, generations: generations ?? 100)
      state = try evolution.start(
        space: space, constraints: try constraints(costModel: costModel, space: space), options: options,
        proxySettings: proxySettings, costsAreMeasured: profile != nil
      ) { seed in
        Terminal.status(
          "note: \(options.maximumAttempts) random draws in a row broke the limits together; the rest of the "
            + "population grows by mutation from \(seed.name)")
      }
      try Evolution.save(state!, to: stateURL)
    }
    var running = state!
    let clock = ContinuousClock()
    let start = clock.now
    try evolution.run(&running) { state in
      try Evolution.save(state, to: stateURL)
      let elapsed = (clock.now - start) / .seconds(1)
      Terminal.status(
        String(format: "generation %d/%d: %d scored, %d rejected by constraints, front %d (%.1f s)", state.generation,
          state.options.generations, state.evaluated, state.rejected, state.front.count, elapsed))
    }
    try writeResults(
      running, proxy: proxy, costModel: costModel, batch: batch, shortTraining: shortTraining, predictor: predictor, to: outURL)
    if trainBest > 0 {
      // The registered models of --faster-than and --memory-below, each once.
      var references: [ModelConfig] = []
      for case let (model, _)? in try [
        Self.relative(fasterThan, "--faster-than", 1...1000), Self.relative(memoryBelow, "--memory-below", 0.001...1000),
      ] where !references.contains(where: { $0.name == model.name }) {
        references.append(model)
      }
      try TrainBest.run(
        state: running, costModel: costModel, profile: profile, count: trainBest,
        dataset: proxyImages.dataset, cost: cost, references: references, to: outURL)
    }
  }

  /// Refuses parameter and memory limits that no architecture of `space` meets before anything is timed:
  /// parameter counts and memory peaks are computed from the configs (``MemoryModel``), not measured, so they
  /// need no profile, and a user who asked for the impossible learns it in a second, not after a
  /// ten-minute profile. Latency limits are checked once the profile's costs are known.
  func checkTimelessLimits(space: SearchSpace) throws {
    let analytic = CostModel.analytic(batchSize: cost.batchSize, threads: cost.threadOptions.threads)
    var timeless = try constraints(costModel: analytic, space: space)
    timeless.maxTrainMillisecondsPerImage = nil
    timeless.maxInferMilliseconds = nil
    try Evolution(costModel: analytic) { _, _ in 0 }.checkFeasible(space: space, constraints: timeless)
  }

  func writeResults(
    _ state: EvolutionState, proxy: AccuracyProxy, costModel: CostModel, batch: ProxyBatch?, shortTraining: ShortTrainingProxy?,
    predictor: AccuracyPredictor?, to directory: URL
  ) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    // Scoring used the memory upper bound; what is written carries the exact peaks.
    let front = try state.front.map { candidate in
      var exact = candidate
      exact.costs = try costModel.predict(try state.space.config(for: candidate.architecture), resolution: state.space.resolution)
      return exact
    }.sorted { $0.costs.trainMillisecondsPerImage < $1.costs.trainMillisecondsPerImage }
    try AtomicFile.write(try encoder.encode(front), to: directory.appendingPathComponent("pareto.json"))
    guard var best = state.best else { return }
    best.costs = try costModel.predict(try state.space.config(for: best.architecture), resolution: state.space.resolution)
    let bestConfig = try state.space.config(for: best.architecture)
    try AtomicFile.write(try encoder.encode(bestConfig), to: directory.appendingPathComponent("best.json"))
    // Registered models of the same input shape, marked on the plots for reference.
    let registered = try ModelRegistry.all.filter {
      $0.inputChannels == state.space.inputChannels && (try? $0.validate(resolution: state.space.resolution)) != nil
        && $0.stageResolutions(inputResolution: state.space.resolution).allSatisfy { $0 > 0 }
    }.map { config -> (String, PredictedCosts, Double) in
      var resized = config
      resized.classCount = state.space.classCount
      return (config.name, try costModel.predict(resized, resolution: state.space.resolution),
        (try? proxy.score(
          resized, resolution: state.space.resolution, batch: batch, shortTraining: shortTraining, predictor: predictor)) ?? .nan)
    }
    let panels = [
      ScatterPlot.Panel(
        title: "proxy vs train ms/image", x: front.map(\.costs.trainMillisecondsPerImage), y: front.map(\.score),
        marked: registered.map { ($0.0, $0.1.trainMillisecondsPerImage, $0.2) }, diagonal: false),
      ScatterPlot.Panel(
        title: "proxy vs train memory MiB", x: front.map { Double($0.costs.trainMemoryBytes) / 1_048_576 },
        y: front.map(\.score), marked: registered.map { ($0.0, Double($0.1.trainMemoryBytes) / 1_048_576, $0.2) },
        diagonal: false),
    ]
    try AtomicFile.write(ScatterPlot.render(panels), to: directory.appendingPathComponent("pareto.svg"))
    print(
      String(format: "best: %@ (proxy %.3f, %.3f ms/image training, %.1f MiB, %d params) -> %@", best.architecture.name, best.score,
        best.costs.trainMillisecondsPerImage, Double(best.costs.trainMemoryBytes) / 1_048_576, best.costs.parameters,
        directory.appendingPathComponent("best.json").path))
  }
}

extension AccuracyProxy: ExpressibleByArgument {}

struct SearchProxiesCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "proxies", abstract: "Spearman rho of each accuracy proxy against a ground-truth file of trained accuracies.")
  @Argument(help: "JSON array of {\"config\": ModelConfig, \"accuracy\": 0...1}.") var groundTruth: String
  @Option(parsing: .unconditional, help: "Input resolution of the ground truth, 1...8192.") var resolution: Int = 28
  @OptionGroup var proxyImages: ProxyImageOptions
  @Option(
    help: ArgumentHelp(
      "Comma-separated proxies to score (default: all of \(AccuracyProxy.allCases.map(\.rawValue).joined(separator: ", "))).",
      valueName: "list"))
  var proxies: String?
  @Option(help: "Write each proxy's rho and per-architecture scores as JSON to this file.") var json: String?

  func validate() throws {
    try FlagCheck.integer(resolution, in: 1...8192, "--resolution")
    _ = try selectedProxies()
    // Checked before the proxies run (short-training takes minutes), not when the report is written.
    try FlagCheck.outputFile(json, "--json")
  }

  /// `--proxies` parsed: each name once, in the order given.
  func selectedProxies() throws -> [AccuracyProxy] {
    guard let proxies else { return AccuracyProxy.allCases }
    var selected: [AccuracyProxy] = []
    for name in proxies.split(separator: ",", omittingEmptySubsequences: false) {
      let trimmed = name.trimmingCharacters(in: .whitespaces)
      guard let proxy = AccuracyProxy(rawValue: trimmed) else {
        throw ValidationError(
          "--proxies: unknown proxy \"\(trimmed.prefix(100))\"; expected a comma-separated list of "
            + AccuracyProxy.allCases.map(\.rawValue).joined(separator: ", "))
      }
      if !selected.contains(proxy) { selected.append(proxy) }
    }
    return selected
  }

  /// One proxy's result in `--json`: ρ with its 90% bootstrap interval, and ρ − ρ(MACs) with its interval
  /// (paired: the same resamples for both).
  struct ProxyCorrelation: Encodable {
    let proxy: String
    let spearmanRho: Double?
    let rhoInterval90: [Double]?
    let aboveMACs: Double?
    let aboveMACsInterval90: [Double]?
    let scores: [Double]
  }

  /// The `--json` report: ground-truth names and accuracies beside each proxy's scores.
  struct Report: Encodable {
    let architectures: [String]
    let accuracies: [Double]
    let proxies: [ProxyCorrelation]
  }

  func run() throws {
    let entries = try GroundTruthEntry.read(path: groundTruth, minimumCount: 2)
    let accuracies = entries.map(\.accuracy)
    let channels = entries[0].config.inputChannels
    let selected = try selectedProxies()
    let batch = selected.contains(where: \.needsImages) ? try proxyImages.batch(resolution: resolution, channels: channels) : nil
    let shortTraining =
      selected.contains(where: \.needsTrainingData)
      ? try proxyImages.shortTraining(resolution: resolution, channels: channels) : nil
    // The target compares each proxy with MACs, so MACs (milliseconds to compute) is always scored.
    let macsScores = try entries.map { try AccuracyProxy.macs.score($0.config, resolution: resolution) }
    func rho(_ scores: [Double], _ indices: [Int]) -> Double? {
      RankCorrelation.spearman(indices.map { scores[$0] }, indices.map { accuracies[$0] })
    }
    func interval(_ statistic: ([Int]) -> Double?) -> ClosedRange<Double>? {
      RankCorrelation.bootstrapInterval(count: entries.count, statistic: statistic)
    }
    func text(_ range: ClosedRange<Double>?, sign: Bool = false) -> String {
      guard let range else { return "undefined" }
      let format = sign ? "%+.2f" : "%.2f"
      return String(format: format, range.lowerBound) + "…" + String(format: format, range.upperBound)
    }
    var results: [ProxyCorrelation] = []
    for proxy in selected {
      if proxy.needsTrainingData { Terminal.status("\(proxy.rawValue): training each of \(entries.count) architectures briefly…") }
      let scores: [Double]
      if proxy.needsGroundTruth {
        // Learned from these accuracies: judged only on networks it was fitted without.
        do {
          scores = try AccuracyPredictor.outOfSamplePredictions(entries, resolution: resolution)
        } catch let error as AccuracyPredictor.PredictorError {
          print("predictor: skipped (\(error))")
          continue
        }
        let scheme = entries.count <= 100 ? "leave-one-out" : "10-fold"
        let fitted = try? AccuracyPredictor.fit(entries, resolution: resolution)
        Terminal.status(
          "predictor: \(scheme) predictions, each from a fit without the network"
            + (fitted.map { String(format: " (fitted to all %d: λ %g, γ %g)", entries.count, $0.regularization, $0.bandwidth) } ?? ""))
      } else {
        scores = try entries.map {
          try proxy.score($0.config, resolution: resolution, batch: batch, shortTraining: shortTraining)
        }
      }
      let all = Array(entries.indices)
      let value = rho(scores, all)
      let range = interval { rho(scores, $0) }
      let above = value.flatMap { value in rho(macsScores, all).map { value - $0 } }
      let aboveRange = interval { indices in rho(scores, indices).flatMap { value in rho(macsScores, indices).map { value - $0 } } }
      var line = "\(proxy.rawValue): Spearman rho \(value.map { String(format: "%.3f", $0) } ?? "undefined (constant)")"
      line += " (90% bootstrap interval \(text(range)))"
      if proxy != .macs, let above { line += String(format: ", %+.3f vs macs", above) + " (\(text(aboveRange, sign: true)))" }
      print(line)
      results.append(
        ProxyCorrelation(
          proxy: proxy.rawValue, spearmanRho: value, rhoInterval90: range.map { [$0.lowerBound, $0.upperBound] },
          aboveMACs: proxy == .macs ? nil : above,
          aboveMACsInterval90: proxy == .macs ? nil : aboveRange.map { [$0.lowerBound, $0.upperBound] }, scores: scores))
    }
    if let json {
      let report = Report(architectures: entries.map(\.config.name), accuracies: accuracies, proxies: results)
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
      try AtomicFile.write(try encoder.encode(report), to: URL(fileURLWithPath: json))
      Terminal.status("wrote \(json)")
    }
  }
}

/// `search ground-truth`: trains random architectures of a space with the dataset's default recipe and
/// records their test accuracy, for `search proxies`. Hours of CPU for 12 Fashion-MNIST architectures.
struct SearchGroundTruthCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ground-truth",
    abstract: "Train random architectures with the default recipe and write {config, accuracy} entries (resumable).")
  @Option(help: "Search space: fashion-mnist, fashion-mnist-full-resolution, imagenet, or a JSON file.") var space: String = "fashion-mnist"
  @Option(help: "Dataset (as for `train --dataset`).") var dataset: String = "fashion-mnist"
  @Option(parsing: .unconditional, help: "Architectures to train, 2...1000.") var archs: Int = 12
  @Option(parsing: .unconditional, help: "Epochs per architecture, 1...1000 (default: the recipe's).") var epochs: Int?
  @Option(parsing: .unconditional, help: "Seed of the architecture draw, 0...2^63.") var seed: Int = 12
  @Option(help: "Ground-truth JSON file; entries already in it are kept and their architectures skipped.")
  var out: String = "ground-truth.json"
  @Option(help: "Directory of the per-architecture run directories (checkpoints, metrics).") var runs: String = "ground-truth-runs"
  @OptionGroup var threadOptions: ThreadOptions

  func validate() throws {
    try FlagCheck.integer(archs, in: 2...1000, "--archs")
    try FlagCheck.integer(epochs, in: 1...1000, "--epochs")
    try FlagCheck.integer(seed, in: 0...Int.max, "--seed")
  }

  func run() throws {
    let searchSpace: SearchSpace
    do { searchSpace = try SearchSpace.load(nameOrPath: space) } catch { throw ValidationError("--space: \(error)") }
    let datasetName = try DatasetName(parsing: dataset)
    let outURL = URL(fileURLWithPath: out)
    var entries: [GroundTruthEntry] = []
    if FileManager.default.fileExists(atPath: outURL.path) {
      entries = try GroundTruthEntry.load(try BoundedFile.read(outURL, maximumBytes: 16 << 20), source: out, minimumCount: 0)
    }
    let splits = try DatasetSplits.load(datasetName)
    let expected = [searchSpace.resolution, searchSpace.resolution, searchSpace.inputChannels]
    guard splits.train.imageShape == expected else {
      throw ValidationError(
        "--dataset \(dataset) has images of shape \(splits.train.imageShape); the space \(searchSpace.name) is for \(expected)")
    }
    var generator = RandomGenerator(seed: UInt64(seed))
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    try ComputeContext.current.with(threads: threadOptions.threads).run {
      for index in 0..<archs {
        let architecture = searchSpace.randomArchitecture(using: &generator)
        var config = try searchSpace.config(for: architecture)
        config.classCount = splits.train.classCount
        if entries.contains(where: { $0.config == config }) {
          Terminal.status("ground truth \(index + 1)/\(archs): \(config.name) already trained, skipped")
          continue
        }
        var options = TrainingRecipe.defaultOptions(for: datasetName)
        if let epochs { options.epochs = epochs }
        _ = TrainingRecipe.fitDefaults(&options, recipe: TrainingRecipe.defaultOptions(for: datasetName), warmupGiven: false)
        try options.validate()
        Terminal.status("ground truth \(index + 1)/\(archs): training \(config.name) for \(options.epochs) epochs…")
        let trainer = try Trainer(
          model: try VisionModel(config: config, seed: options.seed), splits: splits, dataset: datasetName.description,
          options: options)
        // A killed architecture is retrained from scratch (overwrite); finished ones are in the file.
        let summary = try trainer.run(
          outputDirectory: URL(fileURLWithPath: runs).appendingPathComponent(config.name), overwrite: true)
        entries.append(GroundTruthEntry(config: config, accuracy: summary.testAccuracy))
        try AtomicFile.write(try encoder.encode(entries), to: outURL)
        Terminal.status(String(format: "%@: test accuracy %.2f%%", config.name, 100 * summary.testAccuracy))
      }
    }
  }
}

/// `search predict`: the accuracy predictor's estimate for model configs — what `--proxy predictor` scores
/// candidates by, for networks a user has at hand (and, written down before they are trained, a
/// prospective test of the predictor).
struct SearchPredictCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "predict",
    abstract: "Predict the test accuracy of model configs with the accuracy predictor fitted to a ground truth.")
  @Argument(help: "Model config files (JSON, as `train --config` takes), 1...1000.") var configs: [String]
  @Option(help: "Ground truth the predictor is fitted to: a JSON array of {\"config\", \"accuracy\"}, 4...500 entries.")
  var groundTruth: String
  @Option(parsing: .unconditional, help: "Input resolution of the ground truth and the configs, 1...8192.") var resolution: Int = 28
  @Option(help: "Write the predictions as JSON to this file.") var json: String?

  func validate() throws {
    guard (1...1000).contains(configs.count) else {
      throw ValidationError("expected 1...1000 model config files, got \(configs.count)")
    }
    try FlagCheck.integer(resolution, in: 1...8192, "--resolution")
    try FlagCheck.outputFile(json, "--json")
  }

  /// One line of `--json`.
  struct Prediction: Encodable {
    let file: String
    let name: String
    let macs: Int
    let parameters: Int
    let predictedAccuracy: Double

    enum CodingKeys: String, CodingKey {
      case file, name, macs, parameters, predictedAccuracy = "predicted_accuracy"
    }
  }

  func run() throws {
    let entries: [GroundTruthEntry]
    do {
      entries = try GroundTruthEntry.read(path: groundTruth, minimumCount: AccuracyPredictor.entryRange.lowerBound)
    } catch {
      throw ValidationError("--ground-truth: \(error)")
    }
    let predictor: AccuracyPredictor
    do { predictor = try AccuracyPredictor.fit(entries, resolution: resolution) } catch let error as AccuracyPredictor.PredictorError {
      throw ValidationError("--ground-truth \(groundTruth.prefix(200)): \(error)")
    }
    // The encoding leaves input channels and classes out: a config that differs in them is another task.
    let task = (entries[0].config.inputChannels, entries[0].config.classCount)
    var predictions: [Prediction] = []
    for path in configs {
      let config = try FlagCheck.modelConfig(file: path, "config")
      guard (config.inputChannels, config.classCount) == task else {
        throw ValidationError(
          "\(path.prefix(200)): \(config.inputChannels) input channel(s) and \(config.classCount) classes; the ground truth's networks have \(task.0) and \(task.1)")
      }
      let accuracy: Double
      do { accuracy = try predictor.predict(config) } catch let error as AccuracyPredictor.PredictorError {
        throw ValidationError("\(path.prefix(200)): \(error)")
      }
      predictions.append(
        Prediction(
          file: path, name: config.name, macs: config.macs(resolution: resolution), parameters: config.parameterCount,
          predictedAccuracy: accuracy))
    }
    print(
      String(
        format: "accuracy predictor fitted to %d networks (lambda %g, gamma %g)", entries.count, predictor.regularization,
        predictor.bandwidth))
    print("predicted  MMACs   params  name")
    for prediction in predictions {
      print(
        String(
          format: "%8.2f%%  %6.1f  %6.3fM  %@", 100 * prediction.predictedAccuracy, Double(prediction.macs) / 1e6,
          Double(prediction.parameters) / 1e6, prediction.name))
    }
    if let json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
      try AtomicFile.write(try encoder.encode(predictions), to: URL(fileURLWithPath: json))
    }
  }
}

/// `search sample`: architectures spread over a space, as model config files for `quadranet train --config`.
struct SearchSampleCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sample",
    abstract: "Write architectures spread over a space (evenly spaced MAC quantiles of random draws) as model configs.")
  @Option(help: "Search space: fashion-mnist, fashion-mnist-full-resolution, imagenet, or a JSON file.") var space: String = "fashion-mnist"
  @Option(parsing: .unconditional, help: "Architectures to write, 2...1000.") var archs: Int = 12
  @Option(parsing: .unconditional, help: "Random architectures drawn to pick them from, 2...100000 (at least --archs).")
  var pool: Int = 1000
  @Option(parsing: .unconditional, help: "Seed of the draw, 0...2^63.") var seed: Int = 12
  @Option(help: "Directory of the config files (NN-<architecture>.json).") var out: String = "search-sample"

  func validate() throws {
    try FlagCheck.integer(archs, in: 2...1000, "--archs")
    try FlagCheck.integer(pool, in: 2...100_000, "--pool")
    try FlagCheck.integer(seed, in: 0...Int.max, "--seed")
    guard pool >= archs else { throw ValidationError("--pool \(pool) must be at least --archs \(archs)") }
  }

  func run() throws {
    let searchSpace: SearchSpace
    do { searchSpace = try SearchSpace.load(nameOrPath: space) } catch { throw ValidationError("--space: \(error)") }
    var generator = RandomGenerator(seed: UInt64(seed))
    var seen = Set<String>()
    var drawn: [(config: ModelConfig, macs: Int)] = []
    for _ in 0..<pool {
      let architecture = searchSpace.randomArchitecture(using: &generator)
      guard seen.insert(architecture.name).inserted else { continue }
      let config = try searchSpace.config(for: architecture)
      drawn.append((config, config.macs(resolution: searchSpace.resolution)))
    }
    guard drawn.count >= archs else {
      throw ValidationError("only \(drawn.count) distinct architectures in --pool \(pool) draws; --archs \(archs) needs more")
    }
    // Sorted by MACs (then name, for a total order), picked at evenly spaced ranks: cheap and costly ones alike.
    drawn.sort { ($0.macs, $0.config.name) < ($1.macs, $1.config.name) }
    let directory = URL(fileURLWithPath: out)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    for index in 0..<archs {
      let rank = Int((Double(index) * Double(drawn.count - 1) / Double(archs - 1)).rounded())
      let config = drawn[rank].config
      let url = directory.appendingPathComponent(String(format: "%02d-", index) + config.name + ".json")
      try AtomicFile.write(try encoder.encode(config), to: url)
      print(String(format: "%@  %.1f MMACs, %.2f M params", url.path, Double(drawn[rank].macs) / 1e6, Double(config.parameterCount) / 1e6))
    }
  }
}
