/// Fully connected layer, `y = x Wᵀ + b`, applied to the last axis (PyTorch `nn.Linear`).
///
/// `weight` is `[out, in]` as in PyTorch; leading axes of `x` are batch axes, so on an
/// NHWC activation this is a 1×1 convolution computed as one GEMM over `N·H·W` rows.
public final class Linear: Module {
  public let weight: Variable
  public let bias: Variable?
  /// How checkpoints name the weight's layout: `.pointwiseConvolution` when the PyTorch
  /// definition uses a 1×1 `nn.Conv2d` for this map (HorNet's gnConv projections).
  public let torchLayout: TorchLayout

  public init(
    inputSize: Int, outputSize: Int, bias: Bool = true, torchLayout: TorchLayout = .identical,
    generator: inout RandomGenerator
  ) {
    self.torchLayout = torchLayout
    weight = Variable(
      Tensor.truncatedNormal(shape: [outputSize, inputSize], std: 0.02, using: &generator), requiresGrad: true)
    self.bias = bias ? Variable(Tensor(zeros: [outputSize]), requiresGrad: true) : nil
  }

  public var inputSize: Int { weight.shape[1] }
  public var outputSize: Int { weight.shape[0] }

  public override var parameters: [(name: String, parameter: Parameter)] {
    var result = [(name: "weight", parameter: Parameter(weight, weightDecay: true, torchLayout: torchLayout))]
    if let bias { result.append((name: "bias", parameter: Parameter(bias, weightDecay: false))) }
    return result
  }

  public func callAsFunction(_ x: Variable) -> Variable { linear(x, weight: weight, bias: bias) }
}

/// 2-D convolution on NHWC input (PyTorch `nn.Conv2d` with groups = 1).
///
/// `weight` is stored `[O, kh, kw, I]` so a patch of an NHWC image is one contiguous GEMM row;
/// checkpoints convert it to PyTorch's `[O, I, kh, kw]`.
public final class Conv2d: Module {
  public let weight: Variable
  public let bias: Variable?
  public let stride: (Int, Int)
  public let padding: (Int, Int)

  public init(
    inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true,
    generator: inout RandomGenerator
  ) {
    weight = Variable(
      Tensor.truncatedNormal(shape: [outputChannels, kernelSize, kernelSize, inputChannels], std: 0.02, using: &generator),
      requiresGrad: true)
    self.bias = bias ? Variable(Tensor(zeros: [outputChannels]), requiresGrad: true) : nil
    self.stride = (stride, stride)
    self.padding = (padding, padding)
  }

  public var kernelSize: Int { weight.shape[1] }
  public var inputChannels: Int { weight.shape[3] }
  public var outputChannels: Int { weight.shape[0] }

  public override var parameters: [(name: String, parameter: Parameter)] {
    var result = [(name: "weight", parameter: Parameter(weight, weightDecay: true, torchLayout: .convolution))]
    if let bias { result.append((name: "bias", parameter: Parameter(bias, weightDecay: false))) }
    return result
  }

  public func callAsFunction(_ x: Variable) -> Variable {
    conv2D(x, weight: weight, bias: bias, stride: stride, padding: padding)
  }
}

/// Depthwise k×k convolution with "same" padding on NHWC input
/// (PyTorch `nn.Conv2d(C, C, k, padding=k//2, groups=C)`).
///
/// `weight` is stored `[k, k, C]` so the inner loop vectorizes over channels;
/// checkpoints convert it to PyTorch's `[C, 1, k, k]`.
public final class DepthwiseConv2d: Module {
  public let weight: Variable
  public let bias: Variable?

  public init(channels: Int, kernelSize: Int = 7, bias: Bool = true, generator: inout RandomGenerator) {
    weight = Variable(
      Tensor.truncatedNormal(shape: [kernelSize, kernelSize, channels], std: 0.02, using: &generator),
      requiresGrad: true)
    self.bias = bias ? Variable(Tensor(zeros: [channels]), requiresGrad: true) : nil
  }

  public var channels: Int { weight.shape[2] }
  public var kernelSize: Int { weight.shape[0] }

  public override var parameters: [(name: String, parameter: Parameter)] {
    var result = [(name: "weight", parameter: Parameter(weight, weightDecay: true, torchLayout: .depthwiseConvolution))]
    if let bias { result.append((name: "bias", parameter: Parameter(bias, weightDecay: false))) }
    return result
  }

  public func callAsFunction(_ x: Variable) -> Variable { depthwiseConv2D(x, weight: weight, bias: bias) }
}

/// Layer normalization over the last (channel) axis:
/// `y = (x − μ) / √(σ² + ε) · γ + β` (PyTorch `nn.LayerNorm(C)`; on NHWC it equals
/// the "channels_first" LayerNorm of ConvNeXt/HorNet on NCHW).
public final class LayerNorm: Module {
  public let weight: Variable
  public let bias: Variable
  public let epsilon: Float

  public init(channels: Int, epsilon: Float = 1e-6) {
    weight = Variable(Tensor(shape: [channels], repeating: 1), requiresGrad: true)
    bias = Variable(Tensor(zeros: [channels]), requiresGrad: true)
    self.epsilon = epsilon
  }

  public override var parameters: [(name: String, parameter: Parameter)] {
    [
      (name: "weight", parameter: Parameter(weight, weightDecay: false)),
      (name: "bias", parameter: Parameter(bias, weightDecay: false)),
    ]
  }

  public func callAsFunction(_ x: Variable) -> Variable { x.layerNorm(weight: weight, bias: bias, epsilon: epsilon) }
}

/// A learnable per-channel scale `γ ⊙ x`, initialized to a small constant (CaiT/ConvNeXt layer scale).
/// Not a module of its own in PyTorch: the owning block registers it (e.g. as `gamma1`).
public func makeLayerScale(channels: Int, initialValue: Float) -> Variable {
  Variable(Tensor(shape: [channels], repeating: initialValue), requiresGrad: true)
}

/// A random generator shared by the layers of one model (drop-path masks), so a single
/// state reproduces, saves and restores all of the model's randomness.
public final class RandomSource {
  public var generator: RandomGenerator
  /// Set while a data-parallel rank trains on a shard of a global batch: per-sample draws (drop
  /// path) then draw for the whole global batch and use the shard's numbers; nil otherwise.
  public var sampleWindow: SampleWindow?

  public init(seed: UInt64) { generator = RandomGenerator(seed: seed) }
}

/// Stochastic depth: in training, zeroes a residual branch for a whole sample with probability
/// `rate` and scales surviving samples by 1/(1 − rate); the identity in evaluation.
public final class DropPath: Module {
  public let rate: Float
  private let source: RandomSource

  public init(rate: Float, source: RandomSource) {
    opPrecondition(rate >= 0 && rate < 1, "DropPath: rate must be in [0, 1), got \(rate)")
    self.rate = rate
    self.source = source
  }

  /// Whether a call drops samples now (a rate above 0, in training mode); otherwise it returns its input.
  public var dropsSamples: Bool { rate > 0 && isTraining }

  public func callAsFunction(_ x: Variable) -> Variable {
    guard dropsSamples else { return x }
    return x.dropPath(probability: rate, training: true, using: &source.generator, window: source.sampleWindow)
  }
}
