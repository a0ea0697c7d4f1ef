import Foundation
import Synchronization
import QuadraBench
import QuadraModels

/// The work of one model on one image, split by where it goes: the features the latency model is
/// linear in. MAC counts follow ``QuadraModels/ModelConfig/macs(resolution:)`` (their sum equals it).
public struct CostFeatures: Codable, Sendable, Equatable {
  /// Names of ``values``, in order.
  public static let names = [
    "stem_macs", "downsample_macs", "head_macs", "mlp_macs", "quadratic_macs", "gnconv_macs", "depthwise_macs",
    "elementwise_floats", "blocks", "constant",
  ]
  public var values: [Double]
  /// The index of `mlp_macs` in ``values``.
  static let mlpIndex = names.firstIndex(of: "mlp_macs")!

  /// The features of `config` on a `resolution`² image.
  ///
  /// `elementwise_floats` counts the memory-bound work of a block: the norms, layer scales, residual
  /// additions and the GELU read or write about `(8 + 2·mlpRatio)·H·W·C` floats per block;
  /// `blocks` is the number of residual blocks (a fixed cost per op call: tape nodes, thread dispatch).
  public init(config: ModelConfig, resolution: Int) {
    let sizes = config.stageResolutions(inputResolution: resolution)
    var v = [Double](repeating: 0, count: Self.names.count)
    v[0] = Double(sizes[0] * sizes[0] * config.widths[0] * config.inputChannels * config.stemKernel * config.stemKernel)
    for stage in config.depths.indices {
      let pixels = Double(sizes[stage] * sizes[stage])
      let c = Double(config.widths[stage])
      let depth = Double(config.depths[stage])
      if stage > 0 { v[1] += pixels * c * Double(config.widths[stage - 1]) * 4 }
      v[3] += depth * pixels * 2 * c * Double(config.mlpRatio) * c
      // The mixer's MACs: the config's total for a one-stage slice minus everything but the mixer.
      let one = ModelConfig(
        name: "slice", inputChannels: 1, classCount: 1, stemPatchSize: 1, depths: [1], widths: [config.widths[stage]],
        mixers: [config.mixers[stage]], mlpRatio: config.mlpRatio)
      let sliceMACs = Double(one.macs(resolution: sizes[stage]))
      let mixer = sliceMACs - pixels * c - pixels * 2 * c * Double(config.mlpRatio) * c - c
      switch config.mixers[stage] {
      case .quadratic: v[4] += depth * mixer
      case .gnConv: v[5] += depth * mixer
      case .depthwise: v[6] += depth * mixer
      }
      v[7] += depth * pixels * c * Double(8 + 2 * config.mlpRatio)
      v[8] += depth
    }
    v[2] = Double(config.widths[config.widths.count - 1] * config.classCount)
    v[9] = 1
    values = v
  }

  public init(values: [Double]) { self.values = values }
}

/// A linear latency model: predicted seconds = Σ featureᵢ · coefficientᵢ over ``CostFeatures``
/// (per image for training and batched inference, per call for batch-1 inference). The
/// coefficients are fitted by ``fit(features:seconds:)`` to this machine's measurements
/// (`quadranet search profile`).
public struct LatencyModel: Codable, Sendable, Equatable {
  public var coefficients: [Double]

  public init(coefficients: [Double]) { self.coefficients = coefficients }

  /// Σ featureᵢ · coefficientᵢ.
  public func predict(_ features: CostFeatures) -> Double {
    zip(features.values, coefficients).reduce(0) { $0 + $1.0 * $1.1 }
  }

  /// Non-negative least squares on relative error: minimizes Σ ((f·β − t)/t)² with β ≥ 0 (a feature
  /// whose coefficient would be negative is dropped and the rest refitted). Relative error, because
  /// the models span orders of magnitude and the calibration reports percentage errors.
  /// Features no sample uses get coefficient 0. Every sample has the same number of features (the
  /// ``CostFeatures/names`` or any other list, e.g. a part table's sums).
  public static func fit(features: [CostFeatures], seconds: [Double]) -> LatencyModel {
    let count = features.first?.values.count ?? CostFeatures.names.count
    var active = (0..<count).filter { index in features.contains { $0.values[index] > 0 } }
    var solution = [Double](repeating: 0, count: count)
    while !active.isEmpty {
      // Normal equations of the weighted problem (rows scaled by 1/t), with a tiny ridge for stability.
      var matrix = [[Double]](repeating: [Double](repeating: 0, count: active.count), count: active.count)
      var rhs = [Double](repeating: 0, count: active.count)
      // Columns are scaled to unit maximum so MAC counts (1e9) and the constant (1) condition alike.
      let scales = active.map { index in features.map { abs($0.values[index]) }.max() ?? 1 }
      for (row, time) in zip(features, seconds) where time > 0 {
        let x = active.enumerated().map { row.values[$0.element] / scales[$0.offset] / time }
        for i in x.indices {
          rhs[i] += x[i]
          for j in x.indices { matrix[i][j] += x[i] * x[j] }
        }
      }
      for i in matrix.indices { matrix[i][i] += 1e-9 }
      guard let beta = solve(matrix, rhs) else { break }
      if let negative = beta.indices.min(by: { beta[$0] < beta[$1] }), beta[negative] < 0 {
        active.remove(at: negative)
        continue
      }
      solution = [Double](repeating: 0, count: count)
      for (i, index) in active.enumerated() { solution[index] = beta[i] / scales[i] }
      break
    }
    return LatencyModel(coefficients: solution)
  }

  /// Gaussian elimination with partial pivoting; nil for a singular system.
  static func solve(_ a: [[Double]], _ b: [Double]) -> [Double]? {
    var a = a
    var b = b
    let n = b.count
    for column in 0..<n {
      guard let pivot = (column..<n).max(by: { abs(a[$0][column]) < abs(a[$1][column]) }), abs(a[pivot][column]) > 1e-300
      else { return nil }
      a.swapAt(column, pivot)
      b.swapAt(column, pivot)
      for row in (column + 1)..<n {
        let factor = a[row][column] / a[column][column]
        for k in column..<n { a[row][k] -= factor * a[column][k] }
        b[row] -= factor * b[column]
      }
    }
    var x = [Double](repeating: 0, count: n)
    for row in stride(from: n - 1, through: 0, by: -1) {
      var sum = b[row]
      for k in (row + 1)..<n { sum -= a[row][k] * x[k] }
      x[row] = sum / a[row][row]
    }
    return x
  }
}

/// Predicted costs of one architecture: what constraints and Pareto fronts are made of.
public struct PredictedCosts: Codable, Sendable, Equatable {
  /// Training step time per image, milliseconds (at the profile's batch size).
  public var trainMillisecondsPerImage: Double
  /// One batch-1 inference, milliseconds.
  public var inferMillisecondsBatch1: Double
  /// Inference per image at the profile's batch size, milliseconds.
  public var inferMillisecondsPerImage: Double
  /// Peak bytes of a training step at the profile's batch size.
  public var trainMemoryBytes: Int
  /// Peak bytes of a batch-1 inference pass.
  public var inferMemoryBytes: Int
  public var parameters: Int
  public var macs: Int
}

/// This machine's cost model at one batch size and thread count: the per-part cost table (when
/// profiled) or else three linear latency models over ``CostFeatures``, and the exact memory model.
public struct CostModel: Codable, Sendable, Equatable {
  public var batchSize: Int
  public var threads: Int
  public var trainPerImage: LatencyModel
  public var inferBatch1: LatencyModel
  public var inferPerImage: LatencyModel
  /// Measured per-part times; latencies come from it for every architecture whose parts it holds.
  public var table: PartCostTable?
  /// How ``latencies(_:resolution:source:)`` combines the table and the linear models. Recorded with the
  /// model, so that a search state resumed by a later version prices its candidates as it did; nil in
  /// models recorded before the choice existed, which predicted from the table (``effectiveLatencySource``).
  public var latencySource: LatencySource?

  /// How this version combines a profile's predictors (``LatencySource``: the table since stop 33), also
  /// for a cached profile that recorded another.
  public static let profileLatencySource = LatencySource.table

  /// ``latencySource``, or ``LatencySource/table`` for a model recorded without one.
  public var effectiveLatencySource: LatencySource { latencySource ?? .table }

  public init(
    batchSize: Int, threads: Int, trainPerImage: LatencyModel, inferBatch1: LatencyModel, inferPerImage: LatencyModel,
    table: PartCostTable? = nil, latencySource: LatencySource = CostModel.profileLatencySource
  ) {
    self.table = table
    self.latencySource = latencySource
    self.batchSize = batchSize
    self.threads = threads
    self.trainPerImage = trainPerImage
    self.inferBatch1 = inferBatch1
    self.inferPerImage = inferPerImage
  }

  /// Whether a decoded model can be used: one finite, non-negative coefficient per feature in each
  /// latency model, a well-formed table if any, and batch size and threads in the CLI's ranges.
  public var isWellFormed: Bool {
    let coefficientsOK = [trainPerImage, inferBatch1, inferPerImage].allSatisfy {
      $0.coefficients.count == CostFeatures.names.count && $0.coefficients.allSatisfy { $0.isFinite && $0 >= 0 }
    }
    return coefficientsOK && (table?.isWellFormed ?? true) && (1...4096).contains(batchSize) && (1...1024).contains(threads)
  }

  /// A model from first principles for when no profile exists (tests, `--no-profile`): every MAC at
  /// `gflops` (training 3× the forward work), every elementwise float at 4 GB/s-equivalent, 20 µs per
  /// block call. Only its ranking is meaningful, not its milliseconds.
  public static func analytic(batchSize: Int, threads: Int, gflops: Double = 50) -> CostModel {
    let mac = 2 / (gflops * 1e9)
    let forward = [mac, mac, mac, mac, mac * 4, mac, mac * 4, 1e-9, 2e-5, 1e-4]
    let train = forward.map { $0 * 3 }
    return CostModel(
      batchSize: batchSize, threads: threads, trainPerImage: LatencyModel(coefficients: train),
      inferBatch1: LatencyModel(coefficients: forward), inferPerImage: LatencyModel(coefficients: forward))
  }

  /// All predicted costs of `config` on `resolution`² images.
  ///
  /// - Parameters:
  ///   - latency: which latency predictor (``LatencySource``; nil: ``effectiveLatencySource``); every
  ///     source falls back to the linear models for an architecture with a part the table lacks.
  ///   - memory: ``MemoryEstimate/exact`` replays the step in a meta execution (tens to hundreds of
  ///     milliseconds); ``MemoryEstimate/upperBound`` is a closed-form bound (microseconds) that is never
  ///     below the exact peak, for scoring thousands of candidates (see ``MemoryModel/upperBound``).
  /// - Throws: when the model cannot be built (the exact memory model runs it; a validated config always can).
  public func predict(
    _ config: ModelConfig, resolution: Int, latency: LatencySource? = nil, memory: MemoryEstimate = .exact
  ) throws -> PredictedCosts {
    let times = latencies(config, resolution: resolution, source: latency)
    let training: Int
    let inference: Int
    switch memory {
    case .exact:
      training = try MemoryModel.trainingPeakBytes(
        config: config, batchSize: batchSize, resolution: resolution, threads: threads)
      // Inference memory is the deployment case, batch 1 (what `search calibrate` measures).
      inference = try MemoryModel.inferencePeakBytes(config: config, batchSize: 1, resolution: resolution, threads: threads)
    case .upperBound:
      training = MemoryModel.upperBound(config: config, batchSize: batchSize, resolution: resolution).trainingBytes
      inference = MemoryModel.upperBound(config: config, batchSize: 1, resolution: resolution).inferenceBytes
    }
    return PredictedCosts(
      trainMillisecondsPerImage: times.trainPerImage * 1000, inferMillisecondsBatch1: times.inferBatch1 * 1000,
      inferMillisecondsPerImage: times.inferPerImage * 1000, trainMemoryBytes: training, inferMemoryBytes: inference,
      parameters: config.parameterCount, macs: config.macs(resolution: resolution))
  }

  /// Predicted seconds: training and batched inference per image, batch-1 inference per call, from
  /// `source` (see ``LatencySource``; nil: ``effectiveLatencySource``).
  public func latencies(_ config: ModelConfig, resolution: Int, source: LatencySource? = nil) -> (
    trainPerImage: Double, inferBatch1: Double, inferPerImage: Double
  ) {
    let source = source ?? effectiveLatencySource
    // The features are computed only when the linear model is used (scoring runs this per candidate).
    func linearLatencies() -> (trainPerImage: Double, inferBatch1: Double, inferPerImage: Double) {
      let features = CostFeatures(config: config, resolution: resolution)
      return (trainPerImage.predict(features), inferBatch1.predict(features), inferPerImage.predict(features))
    }
    guard source != .linear, let table, let times = table.predict(config, resolution: resolution) else {
      return linearLatencies()
    }
    let batch = Double(batchSize)
    let fromTable = (trainPerImage: times.train / batch, inferBatch1: times.inferBatch1, inferPerImage: times.inferBatch / batch)
    guard source == .combined else { return fromTable }
    let linear = linearLatencies()
    /// √(a·b) when both are positive (a model that predicts 0 has nothing to add), else the table's.
    func geometricMean(_ a: Double, _ b: Double) -> Double { a > 0 && b > 0 ? (a * b).squareRoot() : a }
    return (
      geometricMean(fromTable.trainPerImage, linear.trainPerImage), fromTable.inferBatch1,
      geometricMean(fromTable.inferPerImage, linear.inferPerImage)
    )
  }
}

/// Which of a ``CostModel``'s latency predictors ``CostModel/latencies(_:resolution:source:)`` uses.
///
/// Profiles use ``table`` (since stop 33). The history: on Zen 4, with times scaled by a reference read every
/// few seconds, the two models erred differently and their geometric mean (``combined``) had the lower RMSPE
/// for the training step (7.6–8.2% against the table's 8.2–9.9% in three `search calibrate --archs 40` runs,
/// 11.4% against 14.7% in two more) and for batched inference, so profiles used it. Once every time was
/// measured in alternation with the reference (stop 33, Zen 3, `--batch-size 64 --threads 2`), the table alone
/// was at least as good on every latency metric in all five calibrations — four on the `fashion-mnist`
/// space, one on `fashion-mnist-full-resolution`: training step within ±5% for 93–100% of the networks
/// (combined 93–100%), RMSPE 1.6–2.5% (combined 2.4–2.8%); batched inference within ±5% for 93–100% (combined
/// 62–88%), RMSPE 1.4–3.0% (3.9–4.6%). At batch 1, where fixed per-call costs dominate, the linear model was
/// worse in every run, so even ``combined`` used the table alone there.
public enum LatencySource: String, Codable, Sendable, CaseIterable {
  /// For the training step and batched inference, the geometric mean of the part table's and the linear
  /// model's predictions; for batch-1 inference, the table's (what profiles of formats up to 8 used).
  case combined
  /// The part table alone (``PartCostTable``).
  case table
  /// The linear feature models alone (``LatencyModel`` over ``CostFeatures``).
  case linear
}

/// How ``CostModel/predict(_:resolution:latency:memory:)`` predicts peak memory.
public enum MemoryEstimate: String, Codable, Sendable {
  /// The allocator's peak byte for byte, by meta execution (``MemoryModel``).
  case exact
  /// ``MemoryModel/upperBound(config:batchSize:resolution:)``: closed form, never below the exact peak.
  case upperBound = "upper-bound"
}

/// The memory model: the exact peak bytes of the ``QuadraCore/MemoryTracker`` during a training
/// step and an inference pass, as ``QuadraBench/ModelBenchmark`` (and so `search profile` /
/// `search calibrate`) measures them.
///
/// It is a *meta execution*, not a formula: the benchmark's own code (model construction, input
/// batch, AdamW, one warm-up step, one measured step; then the inference passes) runs in a context
/// whose backend is a ``QuadraCore/MetaBackend``. Every tensor the tape, the layers and the optimizer
/// allocate is allocated with its real size in the engine's real order, and each kernel's transient
/// workspace is charged from a probe of the real CPU kernel, so
///
///     training peak  = max over the step of live bytes
///                    = weights + gradients + AdamW m, v + input batch + saved activations + workspace
///     inference peak = max over the pass of live bytes (weights, optimizer state if any, input,
///                      the live block maps and workspace)
///
/// equal the measured peaks byte for byte, without computing anything. A formula would have to
/// restate every op's saved tensors and every kernel's workspace, and silently drift when either
/// changes; the replay cannot. The probes are cached in one shared backend (keyed by primitive,
/// shapes and threads), so after the first architectures a prediction costs only the bookkeeping
/// of the tape and the weight initialization.
public enum MemoryModel {
  /// A closed-form upper bound on the peaks, for scoring many candidates quickly:
  ///
  ///     training  = 16 · params (weights, gradients, AdamW m and v)  + saved activations
  ///     inference =  8 · params (weights, transient weight copies)     + the largest live block maps
  ///
  /// with the per-block activation factors of ``QuadraModels/ModelConfig/trainingActivationBytes(batchSize:resolution:)``
  /// and ``QuadraModels/ModelConfig/inferenceActivationBytes(batchSize:resolution:)``, which count every map an op
  /// may save. Never below the exact peak (`MemoryModelTests` checks it); measured 1.2–1.9× above it, so a
  /// memory constraint checked with it only ever rejects feasible architectures, never admits infeasible ones.
  public static func upperBound(config: ModelConfig, batchSize: Int, resolution: Int) -> (
    trainingBytes: Int, inferenceBytes: Int
  ) {
    // Inference also holds kernels' transient copies of weights (e.g. repacked depthwise filters), which
    // the activation factors do not count; all weights once more bounds them (measured: the activation
    // term alone fell up to 160 KB short at 32² on the imagenet space).
    let weights = config.parameterCount.multipliedReportingOverflow(by: 8)
    let training = config.trainingParameterBytes.addingReportingOverflow(
      config.trainingActivationBytes(batchSize: batchSize, resolution: resolution))
    let inference = weights.partialValue.addingReportingOverflow(
      config.inferenceActivationBytes(batchSize: batchSize, resolution: resolution))
    return (
      training.overflow ? Int.max : training.partialValue,
      weights.overflow || inference.overflow ? Int.max : inference.partialValue
    )
  }

  /// The backend every prediction runs in: its workspace probes are shared by all predictions.
  static let backend = MetaBackend()

  /// Peak bytes of a training step (AdamW, label-smoothed cross-entropy) at `batchSize` on
  /// `resolution`² images with `threads` kernel threads (workspace depends on the thread count).
  public static func trainingPeakBytes(config: ModelConfig, batchSize: Int, resolution: Int, threads: Int) throws -> Int {
    try replay(config: config, batchSize: batchSize, resolution: resolution, threads: threads, training: true)
  }

  /// Peak bytes of an inference pass at `batchSize` (the benchmark's inference-only measurement).
  public static func inferencePeakBytes(config: ModelConfig, batchSize: Int, resolution: Int, threads: Int) throws -> Int {
    try replay(config: config, batchSize: batchSize, resolution: resolution, threads: threads, training: false)
  }

  /// Replayed peaks by configuration (a search revisits architectures; the replay is a pure
  /// function of its arguments). Cleared when it reaches ``memoLimit`` entries.
  private static let memo = Mutex<[String: Int]>([:])
  static let memoLimit = 100_000

  private static func replay(
    config: ModelConfig, batchSize: Int, resolution: Int, threads: Int, training: Bool
  ) throws -> Int {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    let key = "\(training) b\(batchSize) r\(resolution) t\(threads) " + String(decoding: try encoder.encode(config), as: UTF8.self)
    if let known = memo.withLock({ $0[key] }) { return known }
    let result = try run(config: config, batchSize: batchSize, resolution: resolution, threads: threads, training: training)
    let bytes = training ? result.trainPeakBytes : result.inferPeakBytes
    memo.withLock { table in
      if table.count >= memoLimit { table.removeAll() }
      table[key] = bytes
    }
    return bytes
  }

  private static func run(
    config: ModelConfig, batchSize: Int, resolution: Int, threads: Int, training: Bool
  ) throws -> ModelResult {
    let options = ModelBenchmark.Options(
      models: [], resolution: resolution, batchSize: batchSize, threads: threads, steps: 1, measuresTraining: training)
    let context = try ComputeContext(threads: threads, memory: MemoryTracker(), backend: backend)
    return try context.run { try ModelBenchmark.measure(config: config, options: options) { _ in } }
  }
}
