/// Quadratic depthwise convolution, QuadraNet's token mixer:
///
///     y = (W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)
///
/// with three depthwise k×k convolutions (PyTorch names `conv1`, `conv2`, `conv3`, as the
/// authors' `QuadraConv_dw`). The product gives second-order interactions between
/// neighbouring positions without gnConv's recursion.
public final class QuadraticDepthwiseConv2d: Module {
  public let conv1: DepthwiseConv2d
  public let conv2: DepthwiseConv2d
  public let conv3: DepthwiseConv2d

  public init(channels: Int, kernelSize: Int = 7, generator: inout RandomGenerator) {
    conv1 = DepthwiseConv2d(channels: channels, kernelSize: kernelSize, generator: &generator)
    conv2 = DepthwiseConv2d(channels: channels, kernelSize: kernelSize, generator: &generator)
    conv3 = DepthwiseConv2d(channels: channels, kernelSize: kernelSize, generator: &generator)
  }

  public override var children: [(name: String, module: Module)] {
    [(name: "conv1", module: conv1), (name: "conv2", module: conv2), (name: "conv3", module: conv3)]
  }

  /// Whether ``callAsFunction(_:)`` runs the fused kernel (``quadraticDepthwiseConv2D(_:weights:biases:)``);
  /// false composes `conv1(x) * conv2(x) + conv3(x)` from separate ops (same result up to rounding,
  /// slower, and the tape keeps `a`, `b`, `c` and `a ⊙ b`), for benchmarks and tests.
  public var usesFusedKernel = true

  public func callAsFunction(_ x: Variable) -> Variable {
    guard usesFusedKernel, let biases = quadraticBiases(conv1.bias, conv2.bias, conv3.bias) else {
      return conv1(x) * conv2(x) + conv3(x)
    }
    return quadraticDepthwiseConv2D(x, weights: (conv1.weight, conv2.weight, conv3.weight), biases: biases)
  }

  /// `self(norm(x))` — a QuadraBlock's mixer on its normalized input — as one fused op
  /// (``QuadraAutograd/normalizedQuadraticDepthwiseConv2D(_:normalization:weights:biases:)``: `norm(x)` is
  /// never stored) when ``usesFusedKernel``, else composed.
  public func callAsFunction(_ x: Variable, normalizedBy norm: LayerNorm) -> Variable {
    guard usesFusedKernel, let biases = quadraticBiases(conv1.bias, conv2.bias, conv3.bias) else {
      return self(norm(x))
    }
    return normalizedQuadraticDepthwiseConv2D(
      x, normalization: (norm.weight, norm.bias, norm.epsilon), weights: (conv1.weight, conv2.weight, conv3.weight),
      biases: biases)
  }
}

/// `.some(nil)` when no map has a bias, the three biases when all have one, nil when only some do
/// (the fused ops take all or none; such a layer uses the composition).
private func quadraticBiases(
  _ a: Variable?, _ b: Variable?, _ c: Variable?
) -> (Variable, Variable, Variable)?? {
  if let a, let b, let c { return .some((a, b, c)) }
  if a == nil && b == nil && c == nil { return .some(nil) }
  return nil
}

/// Quadratic fully connected layer (QuadraLib's `QuadraFC`), on the last axis:
///
///     y = (x W_aᵀ + b_a) ⊙ (x W_bᵀ + b_b) + x W_cᵀ + b_c
///
/// with children `linear1`, `linear2`, `linear3` (the maps a, b, c). The forward pass is one
/// GEMM with the three weights stacked (`[3·out, in]`); the backward pass keeps only `x` and
/// recomputes that GEMM (see ``quadraticLinear(_:weights:biases:)``).
public final class QuadraticLinear: Module {
  public let linear1: Linear
  public let linear2: Linear
  public let linear3: Linear

  public init(inputSize: Int, outputSize: Int, bias: Bool = true, generator: inout RandomGenerator) {
    linear1 = Linear(inputSize: inputSize, outputSize: outputSize, bias: bias, generator: &generator)
    linear2 = Linear(inputSize: inputSize, outputSize: outputSize, bias: bias, generator: &generator)
    linear3 = Linear(inputSize: inputSize, outputSize: outputSize, bias: bias, generator: &generator)
  }

  public var inputSize: Int { linear1.inputSize }
  public var outputSize: Int { linear1.outputSize }

  public override var children: [(name: String, module: Module)] {
    [(name: "linear1", module: linear1), (name: "linear2", module: linear2), (name: "linear3", module: linear3)]
  }

  public func callAsFunction(_ x: Variable) -> Variable {
    guard let biases = quadraticBiases(linear1.bias, linear2.bias, linear3.bias) else {
      return linear1(x) * linear2(x) + linear3(x)
    }
    return quadraticLinear(x, weights: (linear1.weight, linear2.weight, linear3.weight), biases: biases)
  }
}

/// Quadratic dense k×k convolution on NHWC input (the authors' `QuadraConv` without its
/// BatchNorm and ReLU):
///
///     y = (W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)
///
/// with children `conv1`, `conv2`, `conv3` (PyTorch `nn.Conv2d`s of one geometry). The three
/// convolutions run as one with stacked weights; the backward pass keeps only `x` and
/// recomputes it (see ``quadraticConv2D(_:weights:biases:stride:padding:)``).
public final class QuadraticConv2d: Module {
  public let conv1: Conv2d
  public let conv2: Conv2d
  public let conv3: Conv2d

  public init(
    inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true,
    generator: inout RandomGenerator
  ) {
    func make(_ generator: inout RandomGenerator) -> Conv2d {
      Conv2d(
        inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
        padding: padding, bias: bias, generator: &generator)
    }
    conv1 = make(&generator)
    conv2 = make(&generator)
    conv3 = make(&generator)
  }

  public override var children: [(name: String, module: Module)] {
    [(name: "conv1", module: conv1), (name: "conv2", module: conv2), (name: "conv3", module: conv3)]
  }

  public func callAsFunction(_ x: Variable) -> Variable {
    guard let biases = quadraticBiases(conv1.bias, conv2.bias, conv3.bias) else {
      return conv1(x) * conv2(x) + conv3(x)
    }
    return quadraticConv2D(
      x, weights: (conv1.weight, conv2.weight, conv3.weight), biases: biases, stride: conv1.stride,
      padding: conv1.padding)
  }
}
