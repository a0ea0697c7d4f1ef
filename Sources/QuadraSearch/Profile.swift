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

  /// This machine's fingerprint at `threads` threads (measures the FMA peak in six runs per vector width: about three seconds).
  public static func current(threads: Int) throws -> HardwareFingerprint {
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    func field(_ name: String) -> String? {
      cpuinfo.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { line in
        line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) }
      }
    }
    // The ISA the kernels run (the processor's, no wider than the build's): an AVX2 build on an AVX-512
    // machine times other kernels than the native build does.
    #if QUADRANET_PORTABLE
      let isa = "portable"
    #elseif arch(arm64)
      let isa = "neon"
    #else
      let isa = CPUInfo.current.kernelVectorISA.description
    #endif
    #if DEBUG
      let mode = "debug"
    #else
      let mode = "release"
    #endif
    // Twice the default repeats, the best kept: a reading taken while something else held a core understates
    // the peak, and a profile recorded with a low peak would mismatch every later reading. Seen here: the
    // first two-thread readings of three `search calibrate` processes in a row came out at one core's worth
    // (≈ 117 of 233 GFLOP/s).
    let peak = try PeakFLOPS.measure(threads: threads, repeats: 6).gflops
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

  /// Whether `recorded` (a cached profile's) differs from this fingerprint only by a peak measured below it:
  /// what a core held by another tenant during the peak's one-second measurement looks like.
  public func peakReadsLow(against recorded: HardwareFingerprint) -> Bool {
    cpuModel == recorded.cpuModel && vectorISA == recorded.vectorISA && threads == recorded.threads
      && buildMode == recorded.buildMode && peakGFLOPS < recorded.peakGFLOPS && mismatch(with: recorded) != nil
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

  public init(
    architecture: Architecture, trainSecondsPerImage: Double, inferSecondsBatch1: Double, inferSecondsPerImage: Double,
    trainPeakBytes: Int, inferPeakBytes: Int
  ) {
    self.architecture = architecture
    self.trainSecondsPerImage = trainSecondsPerImage
    self.inferSecondsBatch1 = inferSecondsBatch1
    self.inferSecondsPerImage = inferSecondsPerImage
    self.trainPeakBytes = trainPeakBytes
    self.inferPeakBytes = inferPeakBytes
  }

  /// `architecture` measured as `costs`.
  public init(_ architecture: Architecture, _ costs: ConfigMeasurement) {
    self.init(
      architecture: architecture, trainSecondsPerImage: costs.trainSecondsPerImage,
      inferSecondsBatch1: costs.inferSecondsBatch1, inferSecondsPerImage: costs.inferSecondsPerImage,
      trainPeakBytes: costs.trainPeakBytes, inferPeakBytes: costs.inferPeakBytes)
  }
}

/// Measured costs of one model config: times per image and per batch-1 pass in seconds (the median
/// over the rounds), peaks in bytes.
public struct ConfigMeasurement: Sendable, Equatable {
  public var trainSecondsPerImage: Double
  public var inferSecondsBatch1: Double
  public var inferSecondsPerImage: Double
  public var trainPeakBytes: Int
  public var inferPeakBytes: Int
  /// Each round's times, per step / per pass (``TimedWorkload/time(repetitions:minimumSeconds:)``):
  /// how far two measurements of the same network differ on this machine.
  public var rounds: [PartCost]
}

/// A cached cost profile: the fitted model, what it was measured on, and the raw measurements.
public struct CostProfile: Codable, Sendable, Equatable {
  /// 5: QuadraBlocks' mixers read their LayerNorm fused (different step times and peaks than format 4 measured).
  /// 6: the residual MLP fuses in slices of L3 where its weights crowd L2 (224² parts on machines with 512 KiB of
  /// L2 run at other costs than format 5 measured).
  /// 7: it also fuses, in an even number of equal blocks, where its weights crowd L2 and its tensors stay in L3
  /// (28² parts with C ≥ 80 on 512 KiB of L2, or C = 160 on 1 MiB, and their memory peaks differ from format 6's).
  /// 8: on 8-lane (AVX2) machines the 7×7 depthwise convolution reads its rows in place, without a padded-row ring
  /// (depthwise-7 parts run at other costs, and their kernel workspace, so their peaks, is smaller than format 7's).
  /// 9: every time is measured in alternation with the speed reference, now the cheapest of its nine draws (another
  /// network, so another ``speedBaseline``, than format 8's).
  /// 10: single-channel stems (`I = 1`, O a multiple of 8) convolve directly, without im2col (other costs, and no
  /// cols workspace, so other peaks, than format 9's).
  /// 11: the part table's correction has a factor per kind of part for the first stage and one for the later stages
  /// (ten coefficients, not six: format 10's maps do not fit).
  /// 12: on 16-lane (AVX-512) machines the 7×7 depthwise convolution reads its rows in place too, in 14-column tiles,
  /// and where 512-bit FMAs are full width its weight gradient takes two kernel rows per pass (depthwise-7 parts run at
  /// other costs, and without the padded-row ring's workspace, than format 11 measured); on those machines the 28²
  /// mixers' C = 40 blocks are 16 lanes wide and the fused MLP's L2 blocks come in even numbers (stop 35).
  /// 13: the unfused residual MLP's backward pass (224² parts whose weights do not fit L2) holds one hidden-sized
  /// tensor fewer (other peaks) and, with the 14 × 32 GEMM's C prefetch spread over its depth loop, runs at other
  /// costs than format 12 measured (stop 38).
  /// 14: the fused residual MLP's blocks are runs of whole GEMM micro-kernel tiles, taken from L3 where L2 holds
  /// fewer than 256 rows, and from a quarter of L3 where an eighth is too short for the tensors that stay in it
  /// (28² and 224² parts run at other costs, and with other workspace peaks, than format 13 measured; stop 40).
  public static let formatVersion = 14
  /// The largest cache file read (profiles are ≈ 200 KB); a larger one is not read into memory but rebuilt.
  public static let maximumFileBytes = 16 << 20
  public var formatVersion: Int
  public var hardware: HardwareFingerprint
  public var space: String
  public var resolution: Int
  public var costModel: CostModel
  public var measurements: [ArchitectureMeasurement]
  /// The speed reference's level the times are on (``SpeedReference``): the median of the profile's
  /// readings; later measurements are scaled to it.
  public var speedBaseline: PartCost
}

/// `search profile`: measures random architectures of a space end to end and fits the latency models.
public enum Profiler {
  /// The default seed of the profile's architecture draw (`search profile`).
  public static let profileSeed: UInt64 = 0x9E37
  /// The default seed of `search calibrate`'s draw: another than the profile's, so that the calibration
  /// architectures were not fitted. Calibrating with ``profileSeed`` re-measures the profile's own
  /// architectures (in-sample): a check that two processes measure the same network alike.
  public static let calibrationSeed: UInt64 = 0xCA11B

  public struct Options: Sendable {
    /// Architectures measured (each: one training measurement at the batch, one batch-1 inference).
    public var samples: Int
    /// Timing windows per measurement, each the fastest of its calls beside the speed reference's
    /// (``SpeedReference/time(_:repetitions:minimumSeconds:)``).
    public var repetitions: Int
    /// Seconds of timed calls per measurement at least, spread over the windows (at most
    /// ``Profiler/maximumRepetitions`` calls per window).
    public var minimumSeconds: Double
    public var batchSize: Int
    public var threads: Int
    public var seed: UInt64
    /// Whether the per-part table is measured (every part of the space) besides the whole architectures.
    public var measuresParts: Bool
    /// Passes through all parts and all architectures; each time is the median over the passes
    /// (why: ``Profiler/measure(_:resolution:batchSize:threads:repetitions:minimumSeconds:rounds:reference:progress:)``).
    public var rounds: Int

    public init(
      samples: Int, repetitions: Int, batchSize: Int, threads: Int, seed: UInt64 = Profiler.profileSeed, measuresParts: Bool = true,
      minimumSeconds: Double = 0, rounds: Int = 1
    ) {
      self.rounds = rounds
      self.minimumSeconds = minimumSeconds
      self.measuresParts = measuresParts
      self.samples = samples
      self.repetitions = repetitions
      self.batchSize = batchSize
      self.threads = threads
      self.seed = seed
    }
  }

  /// Measures `architecture` in one round (``measure(_:resolution:batchSize:threads:repetitions:minimumSeconds:rounds:reference:progress:)``).
  public static func measure(
    _ architecture: Architecture, space: SearchSpace, batchSize: Int, threads: Int, repetitions: Int,
    minimumSeconds: Double = 0
  ) throws -> ArchitectureMeasurement {
    try measure(
      [architecture], space: space, batchSize: batchSize, threads: threads, repetitions: repetitions,
      minimumSeconds: minimumSeconds, rounds: 1)[0]
  }

  /// Measures `architectures` of `space` (``measure(_:resolution:batchSize:threads:repetitions:minimumSeconds:rounds:reference:progress:)``).
  public static func measure(
    _ architectures: [Architecture], space: SearchSpace, batchSize: Int, threads: Int, repetitions: Int,
    minimumSeconds: Double = 0, rounds: Int, reference: SpeedReference? = nil,
    progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }
  ) throws -> [ArchitectureMeasurement] {
    let configs = try architectures.map { try space.config(for: $0) }
    let costs = try measure(
      configs, resolution: space.resolution, batchSize: batchSize, threads: threads, repetitions: repetitions,
      minimumSeconds: minimumSeconds, rounds: rounds, reference: reference, progress: progress)
    return zip(architectures, costs).map { ArchitectureMeasurement($0, $1) }
  }

  /// Measures model configs (architectures of a space, registered models, retrained candidates): their
  /// peaks as ``QuadraBench/ModelBenchmark`` measures them (what ``MemoryModel`` replays), each in a fresh
  /// ``QuadraCore/MemoryTracker``, and their times (``TimedWorkload/time(repetitions:minimumSeconds:)``)
  /// in `rounds` round-robin passes through all of `configs`, each time the median over the passes,
  /// scaled to `reference`'s baseline when there is a reference.
  ///
  /// Why passes and the median: a virtual machine's cores share caches and memory bandwidth with other
  /// tenants. On the 2-core Zen 4 VM this project is measured on, a small network's training step timed
  /// for 20 s had its fastest call in each quarter second at 1.0–1.5× the fastest of all (mostly
  /// 1.2–1.35×, drifting over seconds), and the same 40 architectures timed once in two processes
  /// differed by 12% (standard deviation) — as much as the prediction errors. One fastest-of-a-few is
  /// a draw from that drift; the median of passes spread over the run is a steadier estimate, and the
  /// passes show the noise itself (``ConfigMeasurement/rounds``). With a `reference`, each quantity is
  /// timed in alternation with it and reported on its baseline's scale (``SpeedReference``), which
  /// divides out the machine's drift between levels.
  /// `progress(done, total)` follows each timed configuration (`total` = `configs.count · rounds`).
  public static func measure(
    _ configs: [ModelConfig], resolution: Int, batchSize: Int, threads: Int, repetitions: Int,
    minimumSeconds: Double = 0, rounds: Int, reference: SpeedReference? = nil,
    progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }
  ) throws -> [ConfigMeasurement] {
    precondition(rounds >= 1, "rounds must be at least 1")
    let base = try ComputeContext.current.with(threads: threads)
    var peaks: [(train: Int, infer: Int)] = []
    var times = [[PartCost]](repeating: [], count: configs.count)
    for round in 0..<rounds {
      for (index, config) in configs.enumerated() {
        if round == 0 {
          // Peaks are deterministic: measured once.
          let options = ModelBenchmark.Options(
            models: [], resolution: resolution, batchSize: batchSize, threads: threads, steps: 1)
          let batched = try base.with(memory: MemoryTracker()).run {
            try ModelBenchmark.measure(config: config, options: options) { _ in }
          }
          var single = options
          single.batchSize = 1
          single.measuresTraining = false
          let one = try base.with(memory: MemoryTracker()).run {
            try ModelBenchmark.measure(config: config, options: single) { _ in }
          }
          peaks.append((batched.trainPeakBytes, one.inferPeakBytes))
        }
        let time = try base.with(memory: MemoryTracker()).run {
          let workload = try TimedWorkload.network(config, resolution: resolution, batchSize: batchSize)
          return try reference?.time(workload, repetitions: repetitions, minimumSeconds: minimumSeconds)
            ?? workload.time(repetitions: repetitions, minimumSeconds: minimumSeconds)
        }
        times[index].append(time)
        progress(round * configs.count + index + 1, rounds * configs.count)
      }
    }
    let perImage = 1 / Double(batchSize)
    return configs.indices.map { index in
      let median = PartCost.median(times[index])!
      return ConfigMeasurement(
        trainSecondsPerImage: median.train * perImage, inferSecondsBatch1: median.inferBatch1,
        inferSecondsPerImage: median.inferBatch * perImage, trainPeakBytes: peaks[index].train,
        inferPeakBytes: peaks[index].infer, rounds: times[index])
    }
  }

  /// The profile's architectures ``measure(_:anchoredTo:space:anchors:repetitions:minimumSeconds:rounds:reference:progress:)``
  /// measures beside the configs by default.
  public static let anchorCount = 8

  /// Measures `configs` (``measure(_:resolution:batchSize:threads:repetitions:minimumSeconds:rounds:reference:progress:)``,
  /// at `profile`'s batch size and threads) in passes that also re-measure `anchors` of the profile's own
  /// architectures, spread among the configs; each pass's times are multiplied per quantity by the median
  /// over the anchors of `stored time / time in this pass`, and each config's time is the median of its
  /// scaled passes. Returns the measurements and the median over the passes of those factors (1 with no
  /// anchors, or where the profile has no measurements).
  ///
  /// Why: the speed reference, timed in alternation with every measurement, takes out the machine's drift
  /// over seconds, but it is one network, and its speed relative to others moved between processes and
  /// over minutes — most at batch 1 on two threads, where a pass is a millisecond of small ops on both
  /// cores. On the 2-vCPU Zen 3 VM (stops 33–34) the profile's own architectures, re-measured in a fresh
  /// process, came out 3% faster at batch 1 than stored, and four calibrations of one profile measured
  /// their held-out networks a median 7% slower to 2% faster than predicted at batch 1, while anchors
  /// re-measured once before them moved by at most 2%. Anchors in every pass follow such shifts on the
  /// scale the predictions are on, with the median over eight of them; they were fitted, so they only set
  /// the scale and are never judged. Anchors are spread over the profile's batch-1 times, the same ones in
  /// every process.
  public static func measure(
    _ configs: [ModelConfig], anchoredTo profile: CostProfile, space: SearchSpace, anchors count: Int = anchorCount,
    repetitions: Int, minimumSeconds: Double, rounds: Int, reference: SpeedReference?,
    progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }
  ) throws -> (measurements: [ConfigMeasurement], factors: PartCost) {
    let stored = profile.measurements.sorted { $0.inferSecondsBatch1 < $1.inferSecondsBatch1 }
    let chosen = Swift.min(Swift.max(count, 0), stored.count)
    let anchors = (0..<chosen).map { stored[chosen == 1 ? stored.count / 2 : $0 * (stored.count - 1) / (chosen - 1)] }
    let anchorConfigs = try anchors.map { try space.config(for: $0.architecture) }
    // Anchor i goes before config i·n/k, so the anchors of a pass span it.
    var order: [(isAnchor: Bool, index: Int)] = []
    var nextAnchor = 0
    for index in configs.indices {
      while nextAnchor < chosen && nextAnchor * configs.count / chosen <= index {
        order.append((true, nextAnchor))
        nextAnchor += 1
      }
      order.append((false, index))
    }
    while nextAnchor < chosen {
      order.append((true, nextAnchor))
      nextAnchor += 1
    }
    let measured = try measure(
      order.map { $0.isAnchor ? anchorConfigs[$0.index] : configs[$0.index] }, resolution: space.resolution,
      batchSize: profile.costModel.batchSize, threads: profile.costModel.threads, repetitions: repetitions,
      minimumSeconds: minimumSeconds, rounds: rounds, reference: reference, progress: progress)
    let batch = Double(profile.costModel.batchSize)
    let storedCosts = anchors.map {
      PartCost(train: $0.trainSecondsPerImage * batch, inferBatch1: $0.inferSecondsBatch1, inferBatch: $0.inferSecondsPerImage * batch)
    }
    return scaledByAnchors(measured, isAnchor: order.map(\.isAnchor), stored: storedCosts, batchSize: profile.costModel.batchSize)
  }

  /// The passes of the measurements that are not anchors (`isAnchor[i]` false, in their order) each multiplied
  /// per quantity by the median over the anchors of `stored / the anchor's time in that pass` (per step / per
  /// pass, as ``ConfigMeasurement/rounds``), their medians recomputed; and the median over the passes of
  /// those factors (1 without anchors).
  static func scaledByAnchors(
    _ measured: [ConfigMeasurement], isAnchor: [Bool], stored: [PartCost], batchSize: Int
  ) -> (measurements: [ConfigMeasurement], factors: PartCost) {
    let batch = Double(batchSize)
    let anchorRounds = measured.indices.filter { isAnchor[$0] }.map { measured[$0].rounds }
    let passes = measured.first?.rounds.count ?? 0
    let factors: [PartCost] = (0..<passes).map { pass in
      func factor(_ quantity: KeyPath<PartCost, Double>) -> Double {
        let ratios = zip(stored, anchorRounds).compactMap { old, new -> Double? in
          let ratio = old[keyPath: quantity] / new[pass][keyPath: quantity]
          return ratio.isFinite && ratio > 0 ? ratio : nil
        }
        return ratios.isEmpty ? 1 : PartCost.median(ratios)
      }
      return PartCost(train: factor(\.train), inferBatch1: factor(\.inferBatch1), inferBatch: factor(\.inferBatch))
    }
    let results = measured.indices.filter { !isAnchor[$0] }.map { index in
      var measurement = measured[index]
      measurement.rounds = zip(measurement.rounds, factors).map { $0.multiplied(by: $1) }
      let median = PartCost.median(measurement.rounds)!
      measurement.trainSecondsPerImage = median.train / batch
      measurement.inferSecondsBatch1 = median.inferBatch1
      measurement.inferSecondsPerImage = median.inferBatch / batch
      return measurement
    }
    return (results, PartCost.median(factors) ?? PartCost(train: 1, inferBatch1: 1, inferBatch: 1))
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

  /// Measures `options.samples` random architectures (and the space's parts) in `options.rounds` passes
  /// and fits the three latency models. `progress` gets one line per measurement with the estimated time left.
  public static func profile(
    space: SearchSpace, hardware: HardwareFingerprint, options: Options, progress: (String) -> Void = { _ in }
  ) throws -> CostProfile {
    precondition(options.rounds >= 1, "rounds must be at least 1")
    var generator = RandomGenerator(seed: options.seed)
    let architectures = (0..<options.samples).map { _ in space.randomArchitecture(using: &generator) }
    let clock = ContinuousClock()
    let start = clock.now
    let parts = options.measuresParts ? NetworkPart.parts(of: space) : []
    let partUnits = parts.count * options.rounds
    let units = partUnits + options.samples * options.rounds
    // A whole architecture costs several parts (measured: 6–8 at 28², batch 64), so the ETA counts the
    // remaining units of each phase at that phase's average so far, and the architectures at
    // `architectureWeight` parts each until the first one has been timed.
    let architectureWeight = 7.0
    var partsSeconds = 0.0
    func report(_ done: Int, _ what: String) {
      let elapsed = (clock.now - start) / .seconds(1)
      let partsDone = Swift.min(done, partUnits)
      if done <= partUnits { partsSeconds = elapsed }
      let perPart = partsDone > 0 ? partsSeconds / Double(partsDone) : 0
      let architecturesDone = done - partsDone
      let perArchitecture =
        architecturesDone > 0 ? (elapsed - partsSeconds) / Double(architecturesDone) : perPart * architectureWeight
      let left =
        perPart * Double(partUnits - partsDone) + perArchitecture * Double(units - partUnits - architecturesDone)
      progress(String(format: "profile %d/%d %@ (%.0f s elapsed, about %.0f s left)", done, units, what, elapsed, left))
    }
    let reference = try SpeedReference(space: space, batchSize: options.batchSize, threads: options.threads)
    var partRounds: [String: [PartCost]] = [:]
    for round in 0..<options.rounds {
      for (index, part) in parts.enumerated() {
        let time = try PartProfiler.measure(
          part, batchSize: options.batchSize, threads: options.threads, repetitions: options.repetitions,
          minimumSeconds: options.minimumSeconds, layerScaleInit: space.layerScaleInit, reference: reference)
        partRounds[part.key, default: []].append(time)
        report(round * parts.count + index + 1, part.key)
      }
    }
    var measurements = try measure(
      architectures, space: space, batchSize: options.batchSize, threads: options.threads,
      repetitions: options.repetitions, minimumSeconds: options.minimumSeconds, rounds: options.rounds,
      reference: reference
    ) { done, _ in report(partUnits + done, architectures[(done - 1) % architectures.count].name) }
    // Everything is on the scale of the reference's time during the first measurement; move it to the
    // median of all its readings (the machine's typical speed during the profile), the baseline kept
    // with the profile.
    let first = reference.baseline!
    let baseline = PartCost.median(reference.readings)!
    let rescale = PartCost(
      train: baseline.train / first.train, inferBatch1: baseline.inferBatch1 / first.inferBatch1,
      inferBatch: baseline.inferBatch / first.inferBatch)
    let costs = partRounds.compactMapValues(PartCost.median).mapValues { $0.multiplied(by: rescale) }
    for index in measurements.indices {
      measurements[index].trainSecondsPerImage *= rescale.train
      measurements[index].inferSecondsBatch1 *= rescale.inferBatch1
      measurements[index].inferSecondsPerImage *= rescale.inferBatch
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
      inferPerImage: LatencyModel.fit(features: features, seconds: measurements.map(\.inferSecondsPerImage)), table: table,
      latencySource: CostModel.profileLatencySource)
    return CostProfile(
      formatVersion: CostProfile.formatVersion, hardware: hardware, space: space.name, resolution: space.resolution,
      costModel: model, measurements: measurements, speedBaseline: baseline)
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
    let (profile, warning) = readCache(at: url)
    guard let profile else { return (nil, warning) }
    return check(profile, at: url, hardware: hardware, space: space, batchSize: batchSize)
  }

  /// ``cached(at:hardware:space:batchSize:)``, measuring the FMA peak again with `measurePeak` (at most
  /// `remeasurements` times, keeping the highest reading in `hardware`) while the only mismatch is a peak
  /// below the recorded one (``HardwareFingerprint/peakReadsLow(against:)``).
  ///
  /// Why: the fingerprint's peak is measured for a few seconds, and on a shared virtual machine a neighbour
  /// (or the hypervisor) that holds one of the cores for that time halves a two-thread reading — seen here:
  /// 117.5 GFLOP/s against the 232.9 recorded, while `bench kernels --threads 2` read 233 a minute later; once
  /// both of the fingerprint's readings and the first re-reading were low — and a valid profile was thrown
  /// away for a profile run of 7–17 minutes. A machine that is really slower reads low every time, and its
  /// profile is still rebuilt (after ≈ 5 s of re-reading).
  public static func cached(
    at url: URL, hardware: inout HardwareFingerprint, space: SearchSpace, batchSize: Int, remeasurements: Int = 3,
    measurePeak: () throws -> Double
  ) rethrows -> (profile: CostProfile?, warning: String?) {
    let (profile, warning) = readCache(at: url)
    guard let profile else { return (nil, warning) }
    var left = remeasurements
    while left > 0, hardware.peakReadsLow(against: profile.hardware) {
      hardware.peakGFLOPS = Swift.max(hardware.peakGFLOPS, try measurePeak())
      left -= 1
    }
    return check(profile, at: url, hardware: hardware, space: space, batchSize: batchSize)
  }

  /// The profile decoded from `url`, or nil with the reason (nil reason: no file).
  private static func readCache(at url: URL) -> (profile: CostProfile?, warning: String?) {
    guard FileManager.default.fileExists(atPath: url.path) else { return (nil, nil) }
    do {
      let data = try BoundedFile.read(url, maximumBytes: CostProfile.maximumFileBytes)
      let limits = StrictJSON.Limits(maximumBytes: CostProfile.maximumFileBytes)
      return (try StrictJSON.decode(CostProfile.self, from: data, limits: limits), nil)
    } catch {
      return (nil, "\(url.path) is not a readable profile (\(error)); measuring again")
    }
  }

  /// `profile` (read from `url`) if it matches `hardware`, `space` and the batch size; else nil and why.
  private static func check(
    _ profile: CostProfile, at url: URL, hardware: HardwareFingerprint, space: SearchSpace, batchSize: Int
  ) -> (profile: CostProfile?, warning: String?) {
    var profile = profile
    if profile.formatVersion != CostProfile.formatVersion {
      return (nil, "\(url.path) has format version \(profile.formatVersion); measuring again")
    }
    if let reason = hardware.mismatch(with: profile.hardware) {
      return (nil, "\(url.path) was measured on other hardware (\(reason)); measuring again")
    }
    if profile.space != space.name || profile.resolution != space.resolution || profile.costModel.batchSize != batchSize
      || !profile.costModel.isWellFormed
    {
      return (nil, "\(url.path) is for another space, resolution or batch size, or has invalid coefficients; measuring again")
    }
    // A profile is measurements; how they are combined is this version's choice (a search state, by
    // contrast, keeps the source that priced its candidates).
    profile.costModel.latencySource = CostModel.profileLatencySource
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
