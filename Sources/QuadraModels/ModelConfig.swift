import Foundation
import QuadraNN

/// The token mixer of a stage: what replaces self-attention in the block.
public enum TokenMixer: Codable, Sendable, Equatable {
  /// QuadraNet: a quadratic depthwise convolution `(W_a∗x) ⊙ (W_b∗x) + W_c∗x`.
  case quadratic(kernelSize: Int)
  /// HorNet: recursive gated convolution of the given order with a 7×7 depthwise kernel and scale s.
  case gnConv(order: Int, scale: Float)
  /// ConvNeXt: a plain depthwise convolution.
  case depthwise(kernelSize: Int)

  public var family: String {
    switch self {
    case .quadratic: "quadranet"
    case .gnConv: "hornet"
    case .depthwise: "convnext"
    }
  }

  /// The case's name as it appears in JSON (`quadratic`, `gnConv`, `depthwise`).
  public var caseName: String {
    switch self {
    case .quadratic: "quadratic"
    case .gnConv: "gnConv"
    case .depthwise: "depthwise"
    }
  }
}

/// Everything needed to build a model, as data (timm-style configs): any depths, widths and
/// mixer per stage can be instantiated, which is what the architecture search varies.
///
/// All three families share the macro-architecture: a k×k/k patchify stem + LayerNorm, then per
/// stage (after the first) LayerNorm + 2×2/2 downsampling, `depths[i]` residual blocks of width
/// `widths[i]`, global mean pooling, LayerNorm and a linear head.
public struct ModelConfig: Codable, Sendable, Equatable {
  public var name: String
  public var inputChannels: Int
  public var classCount: Int
  /// Stem stride (4 for 224² ImageNet models): the stem divides the resolution by it.
  public var stemPatchSize: Int
  /// Stem kernel size for an overlapping stem (larger than ``stemPatchSize``, padded by ``stemPadding``
  /// so the output size stays `resolution / stemPatchSize`); `nil` for the official patchify stem.
  public var stemKernelSize: Int?
  public var depths: [Int]
  public var widths: [Int]
  public var mixers: [TokenMixer]
  public var mlpRatio: Int
  public var layerScaleInit: Float
  /// Maximum drop-path rate, increasing linearly over the blocks (timm's `drop_path_rate`).
  public var dropPathRate: Float
  /// How convolution and linear weights are drawn (timm's truncated normal, std 0.02, by default).
  public var weightInitialization: WeightInitialization

  public init(
    name: String, inputChannels: Int = 3, classCount: Int = 1000, stemPatchSize: Int = 4, stemKernelSize: Int? = nil,
    depths: [Int],
    widths: [Int], mixers: [TokenMixer], mlpRatio: Int = 4, layerScaleInit: Float = 1e-6, dropPathRate: Float = 0,
    weightInitialization: WeightInitialization = .timm
  ) {
    self.name = name
    self.inputChannels = inputChannels
    self.classCount = classCount
    self.stemPatchSize = stemPatchSize
    self.stemKernelSize = stemKernelSize
    self.depths = depths
    self.widths = widths
    self.mixers = mixers
    self.mlpRatio = mlpRatio
    self.layerScaleInit = layerScaleInit
    self.dropPathRate = dropPathRate
    self.weightInitialization = weightInitialization
  }

  private enum CodingKeys: String, CodingKey {
    case name, inputChannels, classCount, stemPatchSize, stemKernelSize, depths, widths, mixers, mlpRatio, layerScaleInit,
      dropPathRate, weightInitialization
  }

  /// Decodes configs written before `stemKernelSize` and `weightInitialization` existed as using a
  /// patchify stem and the timm initialization.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      name: try c.decode(String.self, forKey: .name), inputChannels: try c.decode(Int.self, forKey: .inputChannels),
      classCount: try c.decode(Int.self, forKey: .classCount),
      stemPatchSize: try c.decode(Int.self, forKey: .stemPatchSize),
      stemKernelSize: try c.decodeIfPresent(Int.self, forKey: .stemKernelSize), depths: try c.decode([Int].self, forKey: .depths),
      widths: try c.decode([Int].self, forKey: .widths), mixers: try c.decode([TokenMixer].self, forKey: .mixers),
      mlpRatio: try c.decode(Int.self, forKey: .mlpRatio), layerScaleInit: try c.decode(Float.self, forKey: .layerScaleInit),
      dropPathRate: try c.decode(Float.self, forKey: .dropPathRate),
      weightInitialization: try c.decodeIfPresent(WeightInitialization.self, forKey: .weightInitialization) ?? .timm)
  }

  /// The allowed range of every field (also documented on ``validate()``).
  public enum Limits {
    /// Characters of ``ModelConfig/name``; letters, digits and `-_.+` only (it becomes part of run-directory names).
    public static let nameLength = 1...128
    public static let inputChannels = 1...64
    public static let classCount = 1...100_000
    /// ``ModelConfig/stemPatchSize`` and ``ModelConfig/stemKernelSize``.
    public static let stemSize = 1...32
    /// Entries of ``ModelConfig/depths``, ``ModelConfig/widths`` and ``ModelConfig/mixers``.
    public static let stages = 1...8
    public static let depth = 0...64
    public static let width = 1...8192
    /// Depthwise and quadratic kernel sizes (odd).
    public static let kernelSize = 1...31
    /// gnConv order; the stage width must be divisible by `2^(order−1)`.
    public static let gnConvOrder = 1...8
    /// gnConv scale `s` (finite).
    public static let gnConvScale: ClosedRange<Float> = -100...100
    public static let mlpRatio = 1...16
    /// ``ModelConfig/layerScaleInit`` (finite).
    public static let layerScaleInit: ClosedRange<Float> = 0...100
    /// ``ModelConfig/dropPathRate`` is in `[0, 1)`.
    public static let dropPathRate: Range<Float> = 0..<1
    /// Input resolutions accepted by ``ModelConfig/validate(resolution:)`` and the CLI.
    public static let resolution = 1...8192
  }

  /// Checks the config describes a buildable model within ``Limits``; the message names the field
  /// (as its JSON path, e.g. `mixers[2].quadratic.kernelSize`) and the allowed range.
  ///
  /// Ranges: name 1…128 characters of `[A-Za-z0-9-_.+]`, not starting with `.`; inputChannels 1…64;
  /// classCount 1…100 000; stemPatchSize 1…32; stemKernelSize stemPatchSize…32; 1…8 stages with one
  /// depth (0…64), width (1…8192) and mixer each; quadratic / depthwise kernelSize odd in 1…31;
  /// gnConv order 1…8 with the width divisible by 2^(order−1) and a finite scale in −100…100;
  /// mlpRatio 1…16; layerScaleInit finite in 0…100; dropPathRate in [0, 1); weightInitialization
  /// as in ``WeightInitialization/validate()``.
  public func validate() throws {
    func fail(_ field: String, _ message: String) -> ModelConfigError {
      ModelConfigError(model: String(name.prefix(Limits.nameLength.upperBound)), message: "\(field): \(message)")
    }
    func check(_ value: Int, _ range: ClosedRange<Int>, _ field: String) throws {
      guard range.contains(value) else {
        throw fail(field, "\(value) is outside the allowed range \(range.lowerBound)...\(range.upperBound)")
      }
    }
    func check(_ value: Float, _ range: ClosedRange<Float>, _ field: String) throws {
      guard value.isFinite, range.contains(value) else {
        throw fail(field, "\(value) is outside the allowed range \(range.lowerBound)...\(range.upperBound) (finite)")
      }
    }
    guard Limits.nameLength.contains(name.count),
      name.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.+".unicodeScalars.contains($0)) }),
      !name.hasPrefix(".")
    else {
      throw ModelConfigError(
        model: String(name.prefix(32).unicodeScalars.filter { $0.isASCII && $0.value >= 0x20 }.map(Character.init)),
        message: "name: must be 1...128 characters of letters, digits and -_.+, not starting with '.'")
    }
    try check(inputChannels, Limits.inputChannels, "inputChannels")
    try check(classCount, Limits.classCount, "classCount")
    try check(stemPatchSize, Limits.stemSize, "stemPatchSize")
    if let stemKernelSize {
      try check(stemKernelSize, stemPatchSize...Limits.stemSize.upperBound, "stemKernelSize")
    }
    guard Limits.stages.contains(depths.count) else {
      throw fail("depths", "\(depths.count) stages; the allowed range is \(Limits.stages.lowerBound)...\(Limits.stages.upperBound)")
    }
    guard depths.count == widths.count, depths.count == mixers.count else {
      throw fail(
        "depths/widths/mixers",
        "need one entry per stage each, got \(depths.count) depths, \(widths.count) widths and \(mixers.count) mixers")
    }
    for (stage, depth) in depths.enumerated() { try check(depth, Limits.depth, "depths[\(stage)]") }
    for (stage, width) in widths.enumerated() { try check(width, Limits.width, "widths[\(stage)]") }
    try check(mlpRatio, Limits.mlpRatio, "mlpRatio")
    try check(layerScaleInit, Limits.layerScaleInit, "layerScaleInit")
    guard dropPathRate.isFinite, Limits.dropPathRate.contains(dropPathRate) else {
      throw fail("dropPathRate", "\(dropPathRate) is outside the allowed range [0, 1)")
    }
    for (stage, mixer) in mixers.enumerated() {
      switch mixer {
      case .quadratic(let k), .depthwise(let k):
        let field = "mixers[\(stage)].\(mixer.caseName).kernelSize"
        try check(k, Limits.kernelSize, field)
        guard k % 2 == 1 else { throw fail(field, "\(k) must be odd (1, 3, 5, ..., 31)") }
      case .gnConv(let order, let scale):
        try check(order, Limits.gnConvOrder, "mixers[\(stage)].gnConv.order")
        guard widths[stage] % (1 << (order - 1)) == 0 else {
          throw fail(
            "mixers[\(stage)].gnConv.order",
            "order \(order) needs widths[\(stage)] divisible by \(1 << (order - 1)), got \(widths[stage])")
        }
        try check(scale, Limits.gnConvScale, "mixers[\(stage)].gnConv.scale")
      }
    }
    do {
      try weightInitialization.validate()
    } catch let error as WeightInitializationError {
      throw fail("weightInitialization", error.description)
    }
  }

  /// Checks `resolution` is in ``Limits/resolution`` and large enough for the stem and the downsamplings.
  public func validate(resolution: Int) throws {
    let minimum = minimumResolution
    guard Limits.resolution.contains(resolution), resolution >= minimum else {
      throw ModelConfigError(
        model: name,
        message: "resolution \(resolution) is outside the allowed range \(minimum)...\(Limits.resolution.upperBound) "
          + "(the stem and \(depths.count - 1) downsampling(s) need at least \(minimum))")
    }
  }

  /// The smallest input resolution the stem and the 2×2 downsamplings accept: `stemPatchSize · 2^(stages−1)`
  /// (for a validated config).
  public var minimumResolution: Int {
    Swift.max(stemPatchSize, 1) << Swift.min(Swift.max(depths.count - 1, 0), 16)
  }

  /// Zero padding of the stem on each side: `(kernel − stride + 1) / 2`, so an overlapping stem
  /// (e.g. kernel 4, stride 2, padding 1) keeps the patchify stem's output size.
  public var stemPadding: Int { (stemKernel - stemPatchSize + 1) / 2 }

  /// The stem's kernel size: ``stemKernelSize``, or ``stemPatchSize`` for a patchify stem.
  public var stemKernel: Int { stemKernelSize ?? stemPatchSize }

  /// The spatial size after the stem and each downsampling, for a square input of `resolution`.
  /// Never traps: out-of-range inputs (of an unvalidated config) are clamped first.
  public func stageResolutions(inputResolution resolution: Int) -> [Int] {
    let bound = 1 << 24
    let kernel = Swift.min(Swift.max(stemKernel, 1), bound)
    let stride = Swift.min(Swift.max(stemPatchSize, 1), bound)
    let padding = Swift.max((kernel - stride + 1) / 2, 0)
    var size = Swift.max((Swift.min(Swift.max(resolution, 0), bound) + 2 * padding - kernel) / stride + 1, 0)
    var sizes = [size]
    for _ in 0..<Swift.max(depths.count - 1, 0) {
      size /= 2
      sizes.append(size)
    }
    return sizes
  }
}

public struct ModelConfigError: Error, CustomStringConvertible {
  public var model: String
  public var message: String
  public var description: String { "model \(model): \(message)" }
}
