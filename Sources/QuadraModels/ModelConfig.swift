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

  /// Checks the config describes a buildable model; the message names the first problem.
  public func validate() throws {
    func fail(_ message: String) -> ModelConfigError { ModelConfigError(model: name, message: message) }
    guard !depths.isEmpty else { throw fail("no stages") }
    guard depths.count == widths.count, depths.count == mixers.count else {
      throw fail("depths (\(depths.count)), widths (\(widths.count)) and mixers (\(mixers.count)) must have one entry per stage")
    }
    guard depths.allSatisfy({ $0 >= 0 }), widths.allSatisfy({ $0 > 0 }) else {
      throw fail("depths must be ≥ 0 and widths > 0 (depths \(depths), widths \(widths))")
    }
    guard inputChannels > 0, classCount > 0, stemPatchSize > 0, mlpRatio > 0 else {
      throw fail("inputChannels, classCount, stemPatchSize and mlpRatio must be positive")
    }
    guard stemKernel >= stemPatchSize else {
      throw fail("stemKernelSize (\(stemKernel)) must be at least stemPatchSize (\(stemPatchSize))")
    }
    guard dropPathRate >= 0, dropPathRate < 1 else { throw fail("dropPathRate must be in [0, 1), got \(dropPathRate)") }
    for (stage, mixer) in mixers.enumerated() {
      switch mixer {
      case .quadratic(let k), .depthwise(let k):
        guard k > 0, k % 2 == 1 else { throw fail("stage \(stage): kernel size must be odd and positive, got \(k)") }
      case .gnConv(let order, _):
        guard order >= 1, widths[stage] % (1 << (order - 1)) == 0 else {
          throw fail("stage \(stage): gnConv order \(order) needs a width divisible by \(1 << max(order - 1, 0)), got \(widths[stage])")
        }
      }
    }
  }

  /// Zero padding of the stem on each side: `(kernel − stride + 1) / 2`, so an overlapping stem
  /// (e.g. kernel 4, stride 2, padding 1) keeps the patchify stem's output size.
  public var stemPadding: Int { (stemKernel - stemPatchSize + 1) / 2 }

  /// The stem's kernel size: ``stemKernelSize``, or ``stemPatchSize`` for a patchify stem.
  public var stemKernel: Int { stemKernelSize ?? stemPatchSize }

  /// The spatial size after the stem and each downsampling, for a square input of `resolution`.
  public func stageResolutions(inputResolution resolution: Int) -> [Int] {
    var size = (resolution + 2 * stemPadding - stemKernel) / stemPatchSize + 1
    var sizes = [size]
    for _ in 1..<depths.count {
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
