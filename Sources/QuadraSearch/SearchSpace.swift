import Foundation
import QuadraIO
import QuadraModels

/// A search space or architecture that is malformed; ``field`` is its JSON path (e.g. `stages[1].widths[0]`).
public struct SearchSpaceError: Error, Equatable, CustomStringConvertible, LocalizedError {
  public var field: String
  public var message: String

  public init(field: String, message: String) {
    self.field = field
    self.message = message
  }

  public var description: String { field.isEmpty ? message : "\(field): \(message)" }
  public var errorDescription: String? { description }
}

/// The stem choice of an architecture: a `kernelSize`×`kernelSize` convolution with stride `patchSize`
/// (`kernelSize` nil for the patchify stem, kernel = stride).
public struct StemChoice: Codable, Sendable, Hashable {
  public var patchSize: Int
  public var kernelSize: Int?

  public init(patchSize: Int, kernelSize: Int? = nil) {
    self.patchSize = patchSize
    self.kernelSize = kernelSize
  }
}

/// The choices of one stage: every depth, width and token mixer the search may give it.
public struct StageChoices: Codable, Sendable, Equatable {
  public var depths: [Int]
  public var widths: [Int]
  /// Token mixers, e.g. `{"quadratic": {"kernelSize": 3}}`, `{"gnConv": {"order": 2, "scale": 0.333}}`,
  /// `{"depthwise": {"kernelSize": 5}}` (the JSON form of ``QuadraModels/TokenMixer``).
  public var mixers: [TokenMixer]

  public init(depths: [Int], widths: [Int], mixers: [TokenMixer]) {
    self.depths = depths
    self.widths = widths
    self.mixers = mixers
  }
}

/// A search space as data: the input it is searched for, and per stage the depths, widths and token
/// mixers allowed, plus the stage counts, stems and MLP ratios. Mixers are chosen per stage, so
/// hybrids (e.g. quadratic early, gnConv late) are part of every space that lists several.
///
/// An architecture with `n` stages uses the first `n` entries of ``stages``; its stage widths need not
/// increase. gnConv of order `n` is only paired with widths divisible by `2^(n−1)`.
public struct SearchSpace: Codable, Sendable, Equatable {
  public var name: String
  public var resolution: Int
  public var inputChannels: Int
  public var classCount: Int
  /// Allowed numbers of stages (each ≤ `stages.count`).
  public var stageCounts: [Int]
  public var stems: [StemChoice]
  public var stages: [StageChoices]
  public var mlpRatios: [Int]
  /// Fixed for every architecture (not searched).
  public var layerScaleInit: Float
  public var weightInitialization: WeightInitialization

  public init(
    name: String, resolution: Int, inputChannels: Int, classCount: Int, stageCounts: [Int], stems: [StemChoice],
    stages: [StageChoices], mlpRatios: [Int], layerScaleInit: Float, weightInitialization: WeightInitialization
  ) {
    self.name = name
    self.resolution = resolution
    self.inputChannels = inputChannels
    self.classCount = classCount
    self.stageCounts = stageCounts
    self.stems = stems
    self.stages = stages
    self.mlpRatios = mlpRatios
    self.layerScaleInit = layerScaleInit
    self.weightInitialization = weightInitialization
  }

  /// Bounds on a space file's lists (a file of any size never makes the search allocate more).
  public enum Limits {
    /// Entries of every choice list (`stageCounts`, `stems`, `depths`, `widths`, `mixers`, `mlpRatios`).
    public static let choices = 1...64
    /// Bytes of a `--space` file.
    public static let fileBytes = 1 << 20
  }

  /// Every mixer the spaces search: quadratic k ∈ {3, 5, 7}, gnConv order 2…5 (s = 1/3),
  /// depthwise k ∈ {3, 5, 7}.
  public static let allMixers: [TokenMixer] =
    [3, 5, 7].map { TokenMixer.quadratic(kernelSize: $0) } + (2...5).map { TokenMixer.gnConv(order: $0, scale: 1.0 / 3.0) }
    + [3, 5, 7].map { TokenMixer.depthwise(kernelSize: $0) }

  /// Fashion-MNIST (28×28×1, 10 classes), around `quadranet-28` / `hornet-28` / `convnext-28`
  /// (2×2 stem, stages of 14, 7, 3 pixels, widths 40/80/160, MLP ratio 2): 2 or 3 stages, depths 1…4,
  /// widths ±50% of the registered ones (multiples of 8, so every gnConv order fits), MLP ratio 2…4.
  public static let fashionMNIST = SearchSpace(
    name: "fashion-mnist", resolution: 28, inputChannels: 1, classCount: 10, stageCounts: [2, 3],
    stems: [StemChoice(patchSize: 2), StemChoice(patchSize: 2, kernelSize: 4)],
    stages: [
      StageChoices(depths: [1, 2, 3], widths: [24, 32, 40, 48, 64], mixers: allMixers),
      StageChoices(depths: [1, 2, 3, 4], widths: [48, 64, 80, 96, 128], mixers: allMixers),
      StageChoices(depths: [1, 2, 3], widths: [96, 128, 160, 192, 240], mixers: allMixers),
    ],
    mlpRatios: [2, 3, 4], layerScaleInit: 1, weightInitialization: .fanInScaled(gain: 1))

  /// Fashion-MNIST with a full-resolution first stage: a 3×3 stride-1 stem, then four quadratic-3 stages at 28, 14,
  /// 7 and 3 pixels (depths 1–2 / 1–3 / 1–3 / 1–2, widths 16–24 / 32–48 / 64–96 / 128–192, MLP ratio 2 or 3). Every
  /// network of ``fashionMNIST`` starts at 14×14 behind its 2×2 stem; this space's best networks at
  /// `quadranet-28`'s training speed and memory trained to 93.61–93.80% against its 93.43–93.59% (README, stop 32).
  /// Its own space because ``stageCounts`` and ``stems`` combine freely: a fourth stage behind a 2×2 stem would be 1×1.
  public static let fashionMNISTFullResolution = SearchSpace(
    name: "fashion-mnist-full-resolution", resolution: 28, inputChannels: 1, classCount: 10, stageCounts: [4],
    stems: [StemChoice(patchSize: 1, kernelSize: 3)],
    stages: [
      StageChoices(depths: [1, 2], widths: [16, 24], mixers: [.quadratic(kernelSize: 3)]),
      StageChoices(depths: [1, 2, 3], widths: [32, 40, 48], mixers: [.quadratic(kernelSize: 3)]),
      StageChoices(depths: [1, 2, 3], widths: [64, 80, 96], mixers: [.quadratic(kernelSize: 3)]),
      StageChoices(depths: [1, 2], widths: [128, 160, 192], mixers: [.quadratic(kernelSize: 3)]),
    ],
    mlpRatios: [2, 3], layerScaleInit: 1, weightInitialization: .fanInScaled(gain: 1))

  /// ImageNet (224²×3, 1000 classes), around the registered tiny models: 4 stages, 4×4 stem, depths
  /// 2…4 / 2…4 / 6…27 / 2…4, widths 48…128 doubling per stage, MLP ratio 3…4.
  public static let imageNet = SearchSpace(
    name: "imagenet", resolution: 224, inputChannels: 3, classCount: 1000, stageCounts: [4],
    stems: [StemChoice(patchSize: 4)],
    stages: [
      StageChoices(depths: [2, 3, 4], widths: [48, 64, 96, 128], mixers: allMixers),
      StageChoices(depths: [2, 3, 4], widths: [96, 128, 192, 256], mixers: allMixers),
      StageChoices(depths: [6, 9, 12, 18, 27], widths: [192, 256, 384, 512], mixers: allMixers),
      StageChoices(depths: [2, 3, 4], widths: [384, 512, 768, 1024], mixers: allMixers),
    ],
    mlpRatios: [3, 4], layerScaleInit: 1e-6, weightInitialization: .timm)

  /// The built-in spaces by name.
  public static let builtIn: [String: SearchSpace] = [
    "fashion-mnist": fashionMNIST, "fashion-mnist-full-resolution": fashionMNISTFullResolution, "imagenet": imageNet,
  ]

  /// A built-in space's name, or a JSON file: read with ``QuadraIO/StrictJSON`` (≤ 1 MiB, no duplicate
  /// keys, errors with JSON paths), then ``validate()``.
  public static func load(nameOrPath: String) throws -> SearchSpace {
    if let space = builtIn[nameOrPath] { return space }
    let url = URL(fileURLWithPath: nameOrPath)
    let data: Data
    do {
      let handle = try FileHandle(forReadingFrom: url)
      defer { try? handle.close() }
      // One byte more than allowed tells an oversized file without reading all of it.
      data = try handle.read(upToCount: Limits.fileBytes + 1) ?? Data()
    } catch {
      throw SearchSpaceError(
        field: "", message: "\(nameOrPath): not a built-in space (\(builtIn.keys.sorted().joined(separator: ", "))) "
          + "and not a readable file (\(error.localizedDescription))")
    }
    return try decode(data, source: nameOrPath)
  }

  /// Decodes and validates a space from JSON; `source` names the file in errors.
  public static func decode(_ data: Data, source: String = "search space") throws -> SearchSpace {
    let space: SearchSpace
    do {
      space = try StrictJSON.decode(
        SearchSpace.self, from: data, limits: StrictJSON.Limits(maximumBytes: Limits.fileBytes, maximumDepth: 16))
    } catch let error as JSONInputError {
      throw SearchSpaceError(field: error.path, message: "\(source): \(error.message)")
    }
    try space.validate()
    return space
  }

  /// Checks every choice is within ``QuadraModels/ModelConfig/Limits`` and ``Limits/choices``, every
  /// stage count has its stages and fits the resolution, and every width has a mixer it can use.
  /// The error's ``SearchSpaceError/field`` names the offending entry.
  public func validate() throws {
    typealias L = ModelConfig.Limits
    func fail(_ field: String, _ message: String) -> SearchSpaceError { SearchSpaceError(field: field, message: message) }
    func check(_ value: Int, _ range: ClosedRange<Int>, _ field: String) throws {
      guard range.contains(value) else {
        throw fail(field, "\(value) is outside the allowed range \(range.lowerBound)...\(range.upperBound)")
      }
    }
    func checkList<T>(_ list: [T], _ field: String) throws {
      guard Limits.choices.contains(list.count) else {
        throw fail(field, "\(list.count) choices; the allowed range is \(Limits.choices.lowerBound)...\(Limits.choices.upperBound)")
      }
    }
    guard L.nameLength.contains(name.count) else { throw fail("name", "must have 1...128 characters") }
    try check(resolution, L.resolution, "resolution")
    try check(inputChannels, L.inputChannels, "inputChannels")
    try check(classCount, L.classCount, "classCount")
    guard L.stages.contains(stages.count) else {
      throw fail("stages", "\(stages.count) stages; the allowed range is \(L.stages.lowerBound)...\(L.stages.upperBound)")
    }
    try checkList(stageCounts, "stageCounts")
    try checkList(stems, "stems")
    try checkList(mlpRatios, "mlpRatios")
    for (i, count) in stageCounts.enumerated() { try check(count, 1...stages.count, "stageCounts[\(i)]") }
    for (i, ratio) in mlpRatios.enumerated() { try check(ratio, L.mlpRatio, "mlpRatios[\(i)]") }
    for (i, stem) in stems.enumerated() {
      try check(stem.patchSize, L.stemSize, "stems[\(i)].patchSize")
      if let kernel = stem.kernelSize { try check(kernel, stem.patchSize...L.stemSize.upperBound, "stems[\(i)].kernelSize") }
      for (j, count) in stageCounts.enumerated() where stem.patchSize << (count - 1) > resolution {
        throw fail(
          "stems[\(i)].patchSize",
          "stride \(stem.patchSize) with stageCounts[\(j)] = \(count) needs a resolution of at least "
            + "\(stem.patchSize << (count - 1)), the space has \(resolution)")
      }
    }
    guard layerScaleInit.isFinite, L.layerScaleInit.contains(layerScaleInit) else {
      throw fail("layerScaleInit", "\(layerScaleInit) is outside the allowed range 0...100 (finite)")
    }
    do { try weightInitialization.validate() } catch { throw fail("weightInitialization", "\(error)") }
    for (s, stage) in stages.enumerated() {
      try checkList(stage.depths, "stages[\(s)].depths")
      try checkList(stage.widths, "stages[\(s)].widths")
      try checkList(stage.mixers, "stages[\(s)].mixers")
      for (i, depth) in stage.depths.enumerated() { try check(depth, L.depth, "stages[\(s)].depths[\(i)]") }
      for (i, width) in stage.widths.enumerated() { try check(width, L.width, "stages[\(s)].widths[\(i)]") }
      for (i, mixer) in stage.mixers.enumerated() {
        // A one-stage config with this mixer checks it with ModelConfig's own rules (kernel odd, order range).
        let probe = ModelConfig(
          name: "probe", depths: [1], widths: [1 << 7], mixers: [mixer], weightInitialization: weightInitialization)
        do { try probe.validate() } catch let error as ModelConfigError {
          throw fail("stages[\(s)].mixers[\(i)]", error.message.replacingOccurrences(of: "mixers[0].", with: ""))
        }
      }
      for (i, width) in stage.widths.enumerated() where Self.compatibleMixers(stage.mixers, width: width).isEmpty {
        throw fail("stages[\(s)].widths[\(i)]", "\(width) is not divisible by 2^(order−1) for any gnConv order listed, and no other mixer is")
      }
    }
  }

  /// The mixers of `mixers` usable at `width` (gnConv of order n needs `width % 2^(n−1) == 0`).
  static func compatibleMixers(_ mixers: [TokenMixer], width: Int) -> [TokenMixer] {
    mixers.filter {
      if case .gnConv(let order, _) = $0 { return order >= 1 && order <= 62 && width % (1 << (order - 1)) == 0 }
      return true
    }
  }

  /// The number of distinct architectures (saturating), for reports.
  public var size: Double {
    stageCounts.reduce(0.0) { total, count in
      total + Double(stems.count * mlpRatios.count)
        * stages.prefix(count).reduce(1.0) { product, stage in
          product * Double(stage.depths.count)
            * Double(stage.widths.reduce(0) { $0 + Self.compatibleMixers(stage.mixers, width: $1).count })
        }
    }
  }
}

/// One point of a ``SearchSpace``: the chosen stem, per stage depth, width and mixer, and MLP ratio.
public struct Architecture: Codable, Sendable, Hashable {
  public var stem: StemChoice
  public var depths: [Int]
  public var widths: [Int]
  public var mixers: [TokenMixer]
  public var mlpRatio: Int

  public init(stem: StemChoice, depths: [Int], widths: [Int], mixers: [TokenMixer], mlpRatio: Int) {
    self.stem = stem
    self.depths = depths
    self.widths = widths
    self.mixers = mixers
    self.mlpRatio = mlpRatio
  }

  /// A short readable name, e.g. `q3-g2-d5_2x40-3x80_r2_s2` (mixers, depth×width per stage, MLP ratio, stem).
  public var name: String {
    let mixerText = mixers.map { mixer -> String in
      switch mixer {
      case .quadratic(let k): "q\(k)"
      case .gnConv(let order, _): "g\(order)"
      case .depthwise(let k): "d\(k)"
      }
    }.joined(separator: "-")
    let stageText = zip(depths, widths).map { "\($0)x\($1)" }.joined(separator: "-")
    let stemText = stem.kernelSize.map { "s\(stem.patchSize)k\($0)" } ?? "s\(stem.patchSize)"
    return "\(mixerText)_\(stageText)_r\(mlpRatio)_\(stemText)"
  }

  /// ``TokenMixer`` is only `Equatable`, so the hash is the name's (equal architectures have equal names).
  public func hash(into hasher: inout Hasher) {
    hasher.combine(name)
  }
}

extension SearchSpace {
  /// The model of `architecture` (validated by ``QuadraModels/ModelConfig/validate()`` and the space's resolution).
  public func config(for architecture: Architecture, name: String? = nil) throws -> ModelConfig {
    let config = ModelConfig(
      name: name ?? architecture.name, inputChannels: inputChannels, classCount: classCount,
      stemPatchSize: architecture.stem.patchSize, stemKernelSize: architecture.stem.kernelSize,
      depths: architecture.depths, widths: architecture.widths, mixers: architecture.mixers,
      mlpRatio: architecture.mlpRatio, layerScaleInit: layerScaleInit, dropPathRate: 0,
      weightInitialization: weightInitialization)
    try config.validate()
    try config.validate(resolution: resolution)
    return config
  }

  /// The architecture of `config`; throws naming the first field whose value the space does not offer.
  public func architecture(of config: ModelConfig) throws -> Architecture {
    func fail(_ field: String, _ message: String) -> SearchSpaceError { SearchSpaceError(field: field, message: message) }
    guard config.inputChannels == inputChannels, config.classCount == classCount else {
      throw fail("inputChannels/classCount", "the space \(name) is for \(inputChannels) channel(s) and \(classCount) classes")
    }
    guard stageCounts.contains(config.depths.count), config.widths.count == config.depths.count,
      config.mixers.count == config.depths.count
    else {
      throw fail("depths", "\(config.depths.count) stages; the space \(name) allows \(stageCounts)")
    }
    let stem = StemChoice(patchSize: config.stemPatchSize, kernelSize: config.stemKernelSize)
    guard stems.contains(stem) else { throw fail("stemPatchSize", "stem \(stem) is not among the space's stems") }
    guard mlpRatios.contains(config.mlpRatio) else {
      throw fail("mlpRatio", "\(config.mlpRatio) is not among the space's \(mlpRatios)")
    }
    for stage in config.depths.indices {
      guard stages[stage].depths.contains(config.depths[stage]) else {
        throw fail("depths[\(stage)]", "\(config.depths[stage]) is not among \(stages[stage].depths)")
      }
      guard stages[stage].widths.contains(config.widths[stage]) else {
        throw fail("widths[\(stage)]", "\(config.widths[stage]) is not among \(stages[stage].widths)")
      }
      guard stages[stage].mixers.contains(config.mixers[stage]) else {
        throw fail("mixers[\(stage)]", "\(config.mixers[stage]) is not among the stage's mixers")
      }
    }
    return Architecture(
      stem: stem, depths: config.depths, widths: config.widths, mixers: config.mixers, mlpRatio: config.mlpRatio)
  }

  /// A uniformly drawn stage count, stem and MLP ratio, and per stage a depth, a width and a mixer
  /// compatible with it.
  public func randomArchitecture(using generator: inout RandomGenerator) -> Architecture {
    let count = stageCounts[Int(generator.next() % UInt64(stageCounts.count))]
    var architecture = Architecture(
      stem: pick(stems, &generator), depths: [], widths: [], mixers: [], mlpRatio: pick(mlpRatios, &generator))
    for stage in 0..<count {
      let choices = stages[stage]
      let width = pick(choices.widths, &generator)
      architecture.depths.append(pick(choices.depths, &generator))
      architecture.widths.append(width)
      architecture.mixers.append(pick(Self.compatibleMixers(choices.mixers, width: width), &generator))
    }
    return architecture
  }

  /// `architecture` with one gene redrawn (stage count, stem, MLP ratio, or one stage's depth, width or
  /// mixer); the result is always in the space, and differs from the parent whenever the gene has
  /// another value.
  public func mutate(_ parent: Architecture, using generator: inout RandomGenerator) -> Architecture {
    var child = parent
    let stageCount = parent.depths.count
    let genes = 3 + 3 * stageCount
    let gene = Int(generator.next() % UInt64(genes))
    switch gene {
    case 0:
      let others = stageCounts.filter { $0 != stageCount }
      guard !others.isEmpty else { break }
      let count = pick(others, &generator)
      if count < stageCount {
        child.depths.removeLast(stageCount - count)
        child.widths.removeLast(stageCount - count)
        child.mixers.removeLast(stageCount - count)
      } else {
        for stage in stageCount..<count {
          let width = pick(stages[stage].widths, &generator)
          child.depths.append(pick(stages[stage].depths, &generator))
          child.widths.append(width)
          child.mixers.append(pick(Self.compatibleMixers(stages[stage].mixers, width: width), &generator))
        }
      }
    case 1: child.stem = pick(stems, &generator)
    case 2: child.mlpRatio = pick(mlpRatios, &generator)
    default:
      let stage = (gene - 3) / 3
      let choices = stages[stage]
      switch (gene - 3) % 3 {
      case 0: child.depths[stage] = pick(choices.depths, &generator)
      case 1:
        child.widths[stage] = pick(choices.widths, &generator)
        let usable = Self.compatibleMixers(choices.mixers, width: child.widths[stage])
        if !usable.contains(child.mixers[stage]) { child.mixers[stage] = pick(usable, &generator) }
      default:
        child.mixers[stage] = pick(Self.compatibleMixers(choices.mixers, width: child.widths[stage]), &generator)
      }
    }
    return child
  }

  private func pick<T>(_ list: [T], _ generator: inout RandomGenerator) -> T {
    list[Int(generator.next() % UInt64(list.count))]
  }
}
