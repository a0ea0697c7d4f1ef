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

  public func callAsFunction(_ x: Variable) -> Variable {
    conv1(x) * conv2(x) + conv3(x)
  }
}
