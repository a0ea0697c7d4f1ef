import Foundation
import QuadraBench
import QuadraModels

/// One part of a network whose cost is measured on its own: the stem, a downsampling layer, one
/// residual block, or the head (final norm, pooling, classifier and loss).
public enum NetworkPart: Sendable, Equatable {
  /// The stem convolution (`kernelSize`, stride `patchSize`) from `inputChannels` to `width`, then
  /// LayerNorm, on a `resolution`² input.
  case stem(inputChannels: Int, width: Int, patchSize: Int, kernelSize: Int, padding: Int, resolution: Int)
  /// LayerNorm, then a 2×2 stride-2 convolution from `inputWidth` to `width`, on a `resolution`² input.
  case downsample(inputWidth: Int, width: Int, resolution: Int)
  /// One residual block with `mixer` at `width` channels on `resolution`² maps.
  case block(mixer: TokenMixer, width: Int, resolution: Int, mlpRatio: Int)
  /// Global mean pooling, LayerNorm, the linear classifier and the label-smoothed cross-entropy.
  case head(width: Int, resolution: Int, classCount: Int)

  /// The table key, e.g. `block q5 c64 r14 m3`.
  public var key: String {
    switch self {
    case .stem(let inputChannels, let width, let patch, let kernel, let padding, let resolution):
      "stem i\(inputChannels) c\(width) p\(patch) k\(kernel) pad\(padding) r\(resolution)"
    case .downsample(let inputWidth, let width, let resolution): "downsample c\(inputWidth)>\(width) r\(resolution)"
    case .block(let mixer, let width, let resolution, let ratio):
      "block \(Self.mixerKey(mixer)) c\(width) r\(resolution) m\(ratio)"
    case .head(let width, let resolution, let classCount): "head c\(width) r\(resolution) k\(classCount)"
    }
  }

  static func mixerKey(_ mixer: TokenMixer) -> String {
    switch mixer {
    case .quadratic(let k): "q\(k)"
    case .gnConv(let order, let scale): "g\(order)s\(scale)"
    case .depthwise(let k): "d\(k)"
    }
  }

  /// The parts of `config` on `resolution`² images, in network order (a block once per repetition).
  public static func parts(of config: ModelConfig, resolution: Int) -> [NetworkPart] {
    let sizes = config.stageResolutions(inputResolution: resolution)
    var parts: [NetworkPart] = [
      .stem(
        inputChannels: config.inputChannels, width: config.widths[0], patchSize: config.stemPatchSize,
        kernelSize: config.stemKernel, padding: config.stemPadding, resolution: resolution)
    ]
    for stage in config.depths.indices {
      if stage > 0 {
        parts.append(.downsample(inputWidth: config.widths[stage - 1], width: config.widths[stage], resolution: sizes[stage - 1]))
      }
      let block = NetworkPart.block(
        mixer: config.mixers[stage], width: config.widths[stage], resolution: sizes[stage], mlpRatio: config.mlpRatio)
      parts += Array(repeating: block, count: config.depths[stage])
    }
    parts.append(.head(width: config.widths[config.widths.count - 1], resolution: sizes[sizes.count - 1], classCount: config.classCount))
    return parts
  }

  /// Every distinct part the architectures of `space` are made of (a union over all stage counts,
  /// stems, widths, mixers and MLP ratios; stage resolutions follow from the stem).
  public static func parts(of space: SearchSpace) -> [NetworkPart] {
    var seen = Set<String>()
    var result: [NetworkPart] = []
    func add(_ part: NetworkPart) { if seen.insert(part.key).inserted { result.append(part) } }
    for stem in space.stems {
      let probe = ModelConfig(
        name: "probe", inputChannels: space.inputChannels, classCount: space.classCount, stemPatchSize: stem.patchSize,
        stemKernelSize: stem.kernelSize, depths: [1], widths: [8], mixers: [.depthwise(kernelSize: 3)])
      let maximumStages = space.stageCounts.max() ?? 1
      let sizes = ModelConfig(
        name: "probe", stemPatchSize: stem.patchSize, depths: Array(repeating: 1, count: maximumStages),
        widths: Array(repeating: 8, count: maximumStages), mixers: Array(repeating: .depthwise(kernelSize: 3), count: maximumStages)
      ).stageResolutions(inputResolution: space.resolution)
      for width in space.stages[0].widths {
        add(.stem(inputChannels: space.inputChannels, width: width, patchSize: stem.patchSize, kernelSize: probe.stemKernel,
          padding: probe.stemPadding, resolution: space.resolution))
      }
      for (stage, choices) in space.stages.prefix(maximumStages).enumerated() {
        for width in choices.widths {
          for mixer in SearchSpace.compatibleMixers(choices.mixers, width: width) {
            for ratio in space.mlpRatios { add(.block(mixer: mixer, width: width, resolution: sizes[stage], mlpRatio: ratio)) }
          }
          if stage > 0 {
            for inputWidth in space.stages[stage - 1].widths {
              add(.downsample(inputWidth: inputWidth, width: width, resolution: sizes[stage - 1]))
            }
          }
          if space.stageCounts.contains(stage + 1) {
            add(.head(width: width, resolution: sizes[stage], classCount: space.classCount))
          }
        }
      }
    }
    return result
  }
}

/// The measured times of one part, in seconds: a training step at the profile's batch (forward,
/// backward from a seeded output gradient, the AdamW update of its parameters), and inference at
/// batch 1 and at the batch.
public struct PartCost: Codable, Sendable, Equatable {
  public var train: Double
  public var inferBatch1: Double
  public var inferBatch: Double

  public init(train: Double, inferBatch1: Double, inferBatch: Double) {
    self.train = train
    self.inferBatch1 = inferBatch1
    self.inferBatch = inferBatch
  }
}

/// This machine's per-part cost table: a network is predicted from its parts' measured times,
/// corrected by a fitted linear map per quantity,
///
///     t(network) = Σ_kind [ a_kind,1 · Σ t(kind's parts in the first stage) + a_kind,2 · Σ t(kind's parts in later stages) ]
///                + b · (number of parts) + c,
///
/// with kinds quadratic, gⁿConv and depthwise blocks and the other parts (stem and, with one stage, the head
/// in the first stage; downsamplings and the head later), where the `a` say how much slower (or faster) each
/// kind of part runs inside a network than alone (caches: alone, a part's maps and weights stay warm between
/// repetitions; in a network the other parts evict them — which costs the memory-bound gnConv blocks more
/// than the others, and at batch 1 the later stages' blocks, whose wide weights are most of what they read,
/// more than the first stage's: on the 2-vCPU Zen 3 VM, stop 34, 0.87–1.00 in the first stage against
/// 1.13–1.20 later), `b` is the per-call overhead a part pays inside a network but not alone (tape and thread
/// dispatch) and `c` the per-step overhead (input, loss bookkeeping); all ≥ 0, fitted to whole architectures
/// measured by the same profile (``LatencyModel/fit(features:seconds:)``).
public struct PartCostTable: Codable, Sendable, Equatable {
  /// Names of the fit features, in order (the coefficients of ``train``, ``inferBatch1``, ``inferBatch``).
  public static let featureNames = [
    "quadratic_blocks_first_stage", "quadratic_blocks_later", "gnconv_blocks_first_stage", "gnconv_blocks_later",
    "depthwise_blocks_first_stage", "depthwise_blocks_later", "other_parts_first_stage", "other_parts_later", "parts",
    "constant",
  ]
  /// The part-time features (before `parts` and `constant`).
  static let partFeatureCount = featureNames.count - 2
  /// Keyed by ``NetworkPart/key``.
  public var parts: [String: PartCost]
  /// Coefficients (the eight a, then b and c, in ``featureNames``' order) for training, batch-1 and batched inference.
  public var train: LatencyModel
  public var inferBatch1: LatencyModel
  public var inferBatch: LatencyModel

  public init(parts: [String: PartCost], train: LatencyModel, inferBatch1: LatencyModel, inferBatch: LatencyModel) {
    self.parts = parts
    self.train = train
    self.inferBatch1 = inferBatch1
    self.inferBatch = inferBatch
  }

  /// The map that predicts the plain sum of the parts (a = 1, b = c = 0): what ``fitOverheads(configs:measurements:resolution:batchSize:)`` refines.
  public static let unfitted = LatencyModel(coefficients: [Double](repeating: 1, count: partFeatureCount) + [0, 0])

  /// Whether every coefficient and part time is finite and non-negative (one coefficient per feature).
  public var isWellFormed: Bool {
    let maps = [train, inferBatch1, inferBatch]
    let mapsOK = maps.allSatisfy { map in
      map.coefficients.count == Self.featureNames.count && map.coefficients.allSatisfy { $0.isFinite && $0 >= 0 }
    }
    let times: [Double] = parts.values.flatMap { [$0.train, $0.inferBatch1, $0.inferBatch] }
    return mapsOK && times.allSatisfy { $0.isFinite && $0 >= 0 }
  }

  /// The part times of `config` summed by kind as fit features (``featureNames``) per quantity, or nil
  /// when a part is not in the table (an architecture outside the profiled space).
  public func features(of config: ModelConfig, resolution: Int) -> (train: CostFeatures, inferBatch1: CostFeatures, inferBatch: CostFeatures)? {
    let list = NetworkPart.parts(of: config, resolution: resolution)
    let count = Double(list.count)
    var sums = [[Double]](repeating: [Double](repeating: 0, count: Self.partFeatureCount) + [count, 1], count: 3)
    // The parts come in network order: a downsampling starts each stage after the first.
    var isFirstStage = true
    for part in list {
      guard let cost = parts[part.key] else { return nil }
      let kind: Int
      switch part {
      case .block(.quadratic, _, _, _): kind = 0
      case .block(.gnConv, _, _, _): kind = 1
      case .block(.depthwise, _, _, _): kind = 2
      case .downsample:
        isFirstStage = false
        kind = 3
      case .stem, .head: kind = 3
      }
      let slot = 2 * kind + (isFirstStage ? 0 : 1)
      sums[0][slot] += cost.train
      sums[1][slot] += cost.inferBatch1
      sums[2][slot] += cost.inferBatch
    }
    return (CostFeatures(values: sums[0]), CostFeatures(values: sums[1]), CostFeatures(values: sums[2]))
  }

  /// Predicted seconds (training step and batched inference per batch, batch-1 inference per call),
  /// or nil when a part of `config` is not in the table.
  public func predict(_ config: ModelConfig, resolution: Int) -> (train: Double, inferBatch1: Double, inferBatch: Double)? {
    guard let f = features(of: config, resolution: resolution) else { return nil }
    return (train.predict(f.train), inferBatch1.predict(f.inferBatch1), inferBatch.predict(f.inferBatch))
  }

  /// Fits the three correction maps to whole-architecture measurements (seconds per batch step /
  /// per batch-1 call / per batch pass); architectures with parts missing from the table are skipped.
  public mutating func fitOverheads(configs: [ModelConfig], measurements: [ArchitectureMeasurement], resolution: Int, batchSize: Int) {
    var rows: [(CostFeatures, CostFeatures, CostFeatures, ArchitectureMeasurement)] = []
    for (config, measurement) in zip(configs, measurements) {
      if let f = features(of: config, resolution: resolution) { rows.append((f.0, f.1, f.2, measurement)) }
    }
    let batch = Double(batchSize)
    train = Self.fitMap(rows.map(\.0), seconds: rows.map { $0.3.trainSecondsPerImage * batch })
    inferBatch1 = Self.fitMap(rows.map(\.1), seconds: rows.map { $0.3.inferSecondsBatch1 })
    inferBatch = Self.fitMap(rows.map(\.2), seconds: rows.map { $0.3.inferSecondsPerImage * batch })
  }

  /// The per-kind map when there are enough architectures to fit its ten coefficients (twice as many)
  /// and it predicts every one of them a positive time; else one `a` for all kinds and stages
  /// (`a · Σ t(parts) + b · parts + c`); else, when even that degenerates, the plain sum of the parts.
  /// (With a handful of architectures the per-kind fit is underdetermined and its non-negative solution
  /// may zero every coefficient an architecture uses.)
  static func fitMap(_ rows: [CostFeatures], seconds: [Double]) -> LatencyModel {
    func predictsEveryRow(_ map: LatencyModel, _ rows: [CostFeatures]) -> Bool {
      !rows.isEmpty && rows.allSatisfy { map.predict($0) > 0 }
    }
    let byKind = LatencyModel.fit(features: rows, seconds: seconds)
    if rows.count >= 2 * featureNames.count && predictsEveryRow(byKind, rows) { return byKind }
    let n = partFeatureCount
    let pooledRows = rows.map { CostFeatures(values: [$0.values[0..<n].reduce(0, +), $0.values[n], $0.values[n + 1]]) }
    let pooled = LatencyModel.fit(features: pooledRows, seconds: seconds)
    guard predictsEveryRow(pooled, pooledRows) else { return unfitted }
    let (a, b, c) = (pooled.coefficients[0], pooled.coefficients[1], pooled.coefficients[2])
    return LatencyModel(coefficients: [Double](repeating: a, count: n) + [b, c])
  }
}

/// Measures single parts (what `search profile` fills the table with).
public enum PartProfiler {
  /// Times `part` at `batchSize` with `threads` threads: each quantity the best of at least
  /// `repetitions` runs lasting at least `minimumSeconds` together (``Profiler/fastest(repetitions:minimumSeconds:_:)``), in a
  /// fresh memory tracker, by the same ``TimedWorkload/time(repetitions:minimumSeconds:)`` as whole architectures;
  /// with a `reference`, in alternation with it and on its baseline's scale (``SpeedReference/time(_:repetitions:minimumSeconds:)``).
  public static func measure(
    _ part: NetworkPart, batchSize: Int, threads: Int, repetitions: Int, minimumSeconds: Double = 0,
    layerScaleInit: Float, reference: SpeedReference? = nil
  ) throws -> PartCost {
    try ComputeContext(threads: threads, memory: MemoryTracker()).run {
      var generator = RandomGenerator(seed: 5)
      let randomSource = RandomSource(seed: 6)
      let module: Module
      let inputShape: [Int]
      let forward: (Variable) -> Variable
      switch part {
      case .stem(let inputChannels, let width, let patch, let kernel, let padding, let resolution):
        let conv = Conv2d(
          inputChannels: inputChannels, outputChannels: width, kernelSize: kernel, stride: patch, padding: padding,
          generator: &generator)
        let norm = LayerNorm(channels: width)
        module = ModuleList<Module>([conv, norm])
        inputShape = [resolution, resolution, inputChannels]
        forward = { norm(conv($0)) }
      case .downsample(let inputWidth, let width, let resolution):
        let norm = LayerNorm(channels: inputWidth)
        let conv = Conv2d(inputChannels: inputWidth, outputChannels: width, kernelSize: 2, stride: 2, generator: &generator)
        module = ModuleList<Module>([norm, conv])
        inputShape = [resolution, resolution, inputWidth]
        forward = { conv(norm($0)) }
      case .block(let mixer, let width, let resolution, let ratio):
        let block: Module & Layer
        switch mixer {
        case .quadratic(let k):
          block = QuadraBlock(
            channels: width, kernelSize: k, mlpRatio: ratio, layerScaleInit: layerScaleInit, dropPath: 0,
            randomSource: randomSource, generator: &generator)
        case .gnConv(let order, let scale):
          block = HorNetBlock(
            channels: width, order: order, scale: scale, mlpRatio: ratio, layerScaleInit: layerScaleInit, dropPath: 0,
            randomSource: randomSource, generator: &generator)
        case .depthwise(let k):
          block = ConvNeXtBlock(
            channels: width, kernelSize: k, mlpRatio: ratio, layerScaleInit: layerScaleInit, dropPath: 0,
            randomSource: randomSource, generator: &generator)
        }
        module = block
        inputShape = [resolution, resolution, width]
        forward = { block($0) }
      case .head(let width, let resolution, let classCount):
        let norm = LayerNorm(channels: width)
        let linear = Linear(inputSize: width, outputSize: classCount, generator: &generator)
        module = ModuleList<Module>([norm, linear])
        inputShape = [resolution, resolution, width]
        forward = { linear(norm($0.globalMeanPooled())) }
      }
      let isStem = if case .stem = part { true } else { false }
      let isHead = if case .head = part { true } else { false }
      let optimizer = try AdamW(parameters: module.namedParameters(), learningRate: 1e-4)
      func input(_ batch: Int) -> Tensor { Tensor.normal(shape: [batch] + inputShape, using: &generator) }
      let images = input(batchSize)
      let one = input(1)
      let labels = (0..<batchSize).map { $0 % 2 }
      let workload = TimedWorkload(
        trainStep: {
          // The stem's input needs no gradient in a network; every other part passes one back.
          let x = Variable(images, requiresGrad: !isStem)
          let y = forward(x)
          if isHead {
            try y.softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1).backward()
          } else {
            try y.backward(Tensor(shape: y.shape, repeating: 1))
          }
          optimizer.update()
          module.zeroGradients()
        },
        inferBatch: { GradientMode.withoutRecording { _ = forward(Variable(images)) } },
        inferBatch1: { GradientMode.withoutRecording { _ = forward(Variable(one)) } },
        setTraining: { module.setTraining($0) })
      return try reference?.time(workload, repetitions: repetitions, minimumSeconds: minimumSeconds)
        ?? workload.time(repetitions: repetitions, minimumSeconds: minimumSeconds)
    }
  }
}
