import Foundation
import QuadraBench
import QuadraIO
import QuadraModels

/// What a cost profile is valid for: a profile measured on another CPU, vector ISA, thread count,
/// build mode, or at a clearly different FMA peak (another machine load or frequency) is not reused.
public struct HardwareFingerprint: Codable, Sendable, Equatable {
  /// `model name` from /proc/cpuinfo (or `unknown`).
  public var cpuModel: String
  /// The widest vector extension the build uses: `avx512`, `avx2`, `neon` or `portable`.
  public var vectorISA: String
  public var threads: Int
  /// Measured with ``QuadraCore/PeakFLOPS``.
  public var peakGFLOPS: Double
  /// `release` or `debug`.
  public var buildMode: String

  /// The measured peak may vary by this fraction between runs of the same machine.
  public static let peakTolerance = 0.15

  /// This machine's fingerprint at `threads` threads (measures the FMA peak: about a second).
  public static func current(threads: Int) throws -> HardwareFingerprint {
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    func field(_ name: String) -> String? {
      cpuinfo.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { line in
        line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) }
      }
    }
    let flags = Set((field("flags") ?? "").split(separator: " ").map(String.init))
    #if QUADRANET_PORTABLE
      let isa = "portable"
    #elseif arch(arm64)
      let isa = "neon"
    #else
      let isa = flags.contains("avx512f") ? "avx512" : flags.contains("avx2") ? "avx2" : "sse"
    #endif
    #if DEBUG
      let mode = "debug"
    #else
      let mode = "release"
    #endif
    let peak = try PeakFLOPS.measure(threads: threads).gflops
    return HardwareFingerprint(
      cpuModel: String((field("model name") ?? "unknown").prefix(200)), vectorISA: isa, threads: threads,
      peakGFLOPS: peak, buildMode: mode)
  }

  /// Why `other` (a cached profile's) does not describe this machine, or nil when it does.
  public func mismatch(with other: HardwareFingerprint) -> String? {
    if cpuModel != other.cpuModel { return "CPU '\(other.cpuModel)' ≠ '\(cpuModel)'" }
    if vectorISA != other.vectorISA { return "vector ISA \(other.vectorISA) ≠ \(vectorISA)" }
    if threads != other.threads { return "threads \(other.threads) ≠ \(threads)" }
    if buildMode != other.buildMode { return "build \(other.buildMode) ≠ \(buildMode)" }
    if abs(other.peakGFLOPS - peakGFLOPS) > Self.peakTolerance * peakGFLOPS {
      return String(format: "FMA peak %.1f GFLOP/s differs from today's %.1f by more than 15%%", other.peakGFLOPS, peakGFLOPS)
    }
    return nil
  }
}

/// One measured architecture: the profile's and the calibration's raw data.
public struct ArchitectureMeasurement: Codable, Sendable, Equatable {
  public var architecture: Architecture
  public var trainSecondsPerImage: Double
  public var inferSecondsBatch1: Double
  public var inferSecondsPerImage: Double
  public var trainPeakBytes: Int
  public var inferPeakBytes: Int
}

/// A cached cost profile: the fitted model, what it was measured on, and the raw measurements.
public struct CostProfile: Codable, Sendable, Equatable {
  public static let formatVersion = 3
  public var formatVersion: Int
  public var hardware: HardwareFingerprint
  public var space: String
  public var resolution: Int
  public var costModel: CostModel
  public var measurements: [ArchitectureMeasurement]
}

/// `search profile`: measures random architectures of a space end to end and fits the latency models.
public enum Profiler {
  public struct Options: Sendable {
    /// Architectures measured (each: one training measurement at the batch, one batch-1 inference).
    public var samples: Int
    /// Timed repetitions per measurement at least (the fastest is kept).
    public var repetitions: Int
    /// Each measurement repeats until its timed calls add up to at least this many seconds (at most
    /// ``Profiler/maximumRepetitions`` calls).
    public var minimumSeconds: Double
    public var batchSize: Int
    public var threads: Int
    public var seed: UInt64
    /// Whether the per-part table is measured (every part of the space) besides the whole architectures.
    public var measuresParts: Bool

    public init(
      samples: Int, repetitions: Int, batchSize: Int, threads: Int, seed: UInt64 = 0x9E37, measuresParts: Bool = true,
      minimumSeconds: Double = 0
    ) {
      self.minimumSeconds = minimumSeconds
      self.measuresParts = measuresParts
      self.samples = samples
      self.repetitions = repetitions
      self.batchSize = batchSize
      self.threads = threads
      self.seed = seed
    }
  }

  /// Measures `architecture`: its times (``timeArchitecture(_:space:batchSize:threads:repetitions:minimumSeconds:)``)
  /// and its peaks as ``QuadraBench/ModelBenchmark`` measures them (what ``MemoryModel`` replays), each
  /// in a fresh ``QuadraCore/MemoryTracker``.
  public static func measure(
    _ architecture: Architecture, space: SearchSpace, batchSize: Int, threads: Int, repetitions: Int,
    minimumSeconds: Double = 0
  ) throws -> ArchitectureMeasurement {
    let config = try space.config(for: architecture)
    let costs = try measure(
      config, resolution: space.resolution, batchSize: batchSize, threads: threads, repetitions: repetitions,
      minimumSeconds: minimumSeconds)
    return ArchitectureMeasurement(
      architecture: architecture, trainSecondsPerImage: costs.trainSecondsPerImage,
      inferSecondsBatch1: costs.inferSecondsBatch1, inferSecondsPerImage: costs.inferSecondsPerImage,
      trainPeakBytes: costs.trainPeakBytes, inferPeakBytes: costs.inferPeakBytes)
  }

  /// ``measure(_:space:batchSize:threads:repetitions:minimumSeconds:)`` for any model config (a registered
  /// model, a retrained candidate): times per image and per batch-1 pass in seconds, peaks in bytes.
  public static func measure(
    _ config: ModelConfig, resolution: Int, batchSize: Int, threads: Int, repetitions: Int, minimumSeconds: Double = 0
  ) throws -> (
    trainSecondsPerImage: Double, inferSecondsBatch1: Double, inferSecondsPerImage: Double, trainPeakBytes: Int,
    inferPeakBytes: Int
  ) {
    let base = try ComputeContext.current.with(threads: threads)
    let options = ModelBenchmark.Options(
      models: [], resolution: resolution, batchSize: batchSize, threads: threads, steps: 1)
    let batched = try base.with(memory: MemoryTracker()).run { try ModelBenchmark.measure(config: config, options: options) { _ in } }
    var single = options
    single.batchSize = 1
    single.measuresTraining = false
    let one = try base.with(memory: MemoryTracker()).run { try ModelBenchmark.measure(config: config, options: single) { _ in } }
    let times = try base.with(memory: MemoryTracker()).run {
      try timeArchitecture(
        config, resolution: resolution, batchSize: batchSize, repetitions: repetitions, minimumSeconds: minimumSeconds)
    }
    return (
      times.train / Double(batchSize), times.inferBatch1, times.inferBatch / Double(batchSize), batched.trainPeakBytes,
      one.inferPeakBytes
    )
  }

  /// Seconds of one training step (forward, label-smoothed cross-entropy, backward, AdamW update, as
  /// ``QuadraBench/ModelBenchmark`` steps), one inference pass at `batchSize` and one at batch 1, each the
  /// fastest of at least `repetitions` timed calls that together last at least `minimumSeconds`
  /// (``fastest(repetitions:minimumSeconds:_:)``), after a warm-up call. The minimum, because on a
  /// shared machine the noise only ever adds time; the time floor, because a 1 ms batch-1 pass timed
  /// twice is mostly noise. The parts of the cost table are timed the same way (``PartProfiler``), so
  /// sums of parts and whole networks compare.
  public static func timeArchitecture(
    _ config: ModelConfig, resolution: Int, batchSize: Int, repetitions: Int, minimumSeconds: Double
  ) throws -> (train: Double, inferBatch: Double, inferBatch1: Double) {
    let model = try VisionModel(config: config, seed: 0)
    var generator = RandomGenerator(seed: 1)
    let images = Tensor.normal(shape: [batchSize, resolution, resolution, config.inputChannels], using: &generator)
    let one = Tensor.normal(shape: [1, resolution, resolution, config.inputChannels], using: &generator)
    let labels = (0..<batchSize).map { $0 % config.classCount }
    let optimizer = try AdamW(parameters: model.namedParameters(), learningRate: 1e-4)
    model.setTraining(true)
    let train = try fastest(repetitions: repetitions, minimumSeconds: minimumSeconds) {
      let loss = model(Variable(images)).softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1)
      try loss.backward()
      optimizer.update()
      model.zeroGradients()
    }
    model.setTraining(false)
    let inferBatch = fastest(repetitions: repetitions, minimumSeconds: minimumSeconds) {
      GradientMode.withoutRecording { _ = model(Variable(images)) }
    }
    let inferBatch1 = fastest(repetitions: repetitions, minimumSeconds: minimumSeconds) {
      GradientMode.withoutRecording { _ = model(Variable(one)) }
    }
    return (train, inferBatch, inferBatch1)
  }

  /// The most timed calls of one measurement: a 50 µs part at batch 1 gets 1000 tries at an
  /// undisturbed run within 50 ms.
  public static let maximumRepetitions = 1000

  /// The fastest of at least `repetitions` timed calls of `body` that together last at least
  /// `minimumSeconds` (at most ``maximumRepetitions`` calls), after one untimed warm-up call.
  public static func fastest(repetitions: Int, minimumSeconds: Double, _ body: () throws -> Void) rethrows -> Double {
    try Stopwatch.best(
      warmup: 1, repetitions: repetitions, minimumSeconds: minimumSeconds, maximumRepetitions: maximumRepetitions, body)
  }

  /// Measures `options.samples` random architectures and fits the three latency models.
  /// `progress` gets one line per architecture with the estimated time left.
  public static func profile(
    space: SearchSpace, hardware: HardwareFingerprint, options: Options, progress: (String) -> Void = { _ in }
  ) throws -> CostProfile {
    var generator = RandomGenerator(seed: options.seed)
    var measurements: [ArchitectureMeasurement] = []
    let clock = ContinuousClock()
    let start = clock.now
    let parts = options.measuresParts ? NetworkPart.parts(of: space) : []
    let units = parts.count + options.samples
    // A whole architecture costs several parts (measured: 6–8 at 28², batch 64), so the ETA counts the
    // remaining units of each phase at that phase's average so far, and the architectures at
    // `architectureWeight` parts each until the first one has been timed.
    let architectureWeight = 7.0
    var partsSeconds = 0.0
    func report(_ done: Int, _ what: String) {
      let elapsed = (clock.now - start) / .seconds(1)
      let partsDone = Swift.min(done, parts.count)
      if done <= parts.count { partsSeconds = elapsed }
      let perPart = partsDone > 0 ? partsSeconds / Double(partsDone) : 0
      let architecturesDone = done - partsDone
      let perArchitecture =
        architecturesDone > 0 ? (elapsed - partsSeconds) / Double(architecturesDone) : perPart * architectureWeight
      let left = perPart * Double(parts.count - partsDone) + perArchitecture * Double(options.samples - architecturesDone)
      progress(String(format: "profile %d/%d %@ (%.0f s elapsed, about %.0f s left)", done, units, what, elapsed, left))
    }
    var costs: [String: PartCost] = [:]
    for (index, part) in parts.enumerated() {
      costs[part.key] = try PartProfiler.measure(
        part, batchSize: options.batchSize, threads: options.threads, repetitions: options.repetitions,
        minimumSeconds: options.minimumSeconds,
        layerScaleInit: space.layerScaleInit)
      report(index + 1, part.key)
    }
    for index in 0..<options.samples {
      let architecture = space.randomArchitecture(using: &generator)
      measurements.append(
        try measure(
          architecture, space: space, batchSize: options.batchSize, threads: options.threads,
          repetitions: options.repetitions, minimumSeconds: options.minimumSeconds))
      report(parts.count + index + 1, architecture.name)
    }
    let configs = try measurements.map { try space.config(for: $0.architecture) }
    let features = configs.map { CostFeatures(config: $0, resolution: space.resolution) }
    var table: PartCostTable?
    if options.measuresParts {
      let sum = PartCostTable.unfitted
      var fitted = PartCostTable(parts: costs, train: sum, inferBatch1: sum, inferBatch: sum)
      fitted.fitOverheads(
        configs: configs, measurements: measurements, resolution: space.resolution, batchSize: options.batchSize)
      table = fitted
    }
    let model = CostModel(
      batchSize: options.batchSize, threads: options.threads,
      trainPerImage: LatencyModel.fit(features: features, seconds: measurements.map(\.trainSecondsPerImage)),
      inferBatch1: LatencyModel.fit(features: features, seconds: measurements.map(\.inferSecondsBatch1)),
      inferPerImage: LatencyModel.fit(features: features, seconds: measurements.map(\.inferSecondsPerImage)), table: table)
    return CostProfile(
      formatVersion: CostProfile.formatVersion, hardware: hardware, space: space.name, resolution: space.resolution,
      costModel: model, measurements: measurements)
  }

  /// The cache file of a space at a batch size and thread count under `directory`.
  public static func cacheURL(directory: URL, space: SearchSpace, batchSize: Int, threads: Int) -> URL {
    let safeName = String(space.name.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }.prefix(64))
    return directory.appendingPathComponent("search-profile-\(safeName)-\(space.resolution)px-b\(batchSize)-t\(threads).json")
  }

  /// The cached profile at `url` if it exists, is well formed and matches `hardware`, `space` and the
  /// batch size; otherwise nil with the reason in `warning` (nil reason: no file).
  public static func cached(at url: URL, hardware: HardwareFingerprint, space: SearchSpace, batchSize: Int) -> (
    profile: CostProfile?, warning: String?
  ) {
    guard FileManager.default.fileExists(atPath: url.path) else { return (nil, nil) }
    let profile: CostProfile
    do {
      let data = try Data(contentsOf: url)
      profile = try StrictJSON.decode(CostProfile.self, from: data, limits: StrictJSON.Limits(maximumBytes: 16 << 20))
    } catch {
      return (nil, "\(url.path) is not a readable profile (\(error)); measuring again")
    }
    if profile.formatVersion != CostProfile.formatVersion {
      return (nil, "\(url.path) has format version \(profile.formatVersion); measuring again")
    }
    if let reason = hardware.mismatch(with: profile.hardware) {
      return (nil, "\(url.path) was measured on other hardware (\(reason)); measuring again")
    }
    let coefficientsOK = [profile.costModel.trainPerImage, profile.costModel.inferBatch1, profile.costModel.inferPerImage]
      .allSatisfy { $0.coefficients.count == CostFeatures.names.count && $0.coefficients.allSatisfy { $0.isFinite && $0 >= 0 } }
    let tableOK = profile.costModel.table?.isWellFormed ?? true
    if profile.space != space.name || profile.resolution != space.resolution || profile.costModel.batchSize != batchSize
      || !coefficientsOK || !tableOK
    {
      return (nil, "\(url.path) is for another space, resolution or batch size, or has invalid coefficients; measuring again")
    }
    return (profile, nil)
  }

  /// Writes `profile` atomically.
  public static func save(_ profile: CostProfile, to url: URL) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    try AtomicFile.write(try encoder.encode(profile), to: url)
  }
}
