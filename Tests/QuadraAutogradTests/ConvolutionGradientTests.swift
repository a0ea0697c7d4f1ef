import Testing

@testable import QuadraAutograd

@Suite struct ConvolutionGradientTests {
  @Test func depthwiseGradientsWithBias() {
    var rng = RandomGenerator(seed: 31)
    let x = Tensor.normal(shape: [2, 5, 6, 11], using: &rng)
    let weight = Tensor.normal(shape: [3, 3, 11], std: 0.5, using: &rng)
    let bias = Tensor.normal(shape: [11], using: &rng)
    checkGradients([x, weight, bias]) { v in depthwiseConv2D(v[0], weight: v[1], bias: v[2]) }
  }

  @Test func depthwiseGradientsWithoutBiasKernel7() {
    var rng = RandomGenerator(seed: 32)
    let x = Tensor.normal(shape: [1, 4, 9, 9], using: &rng)
    let weight = Tensor.normal(shape: [7, 7, 9], std: 0.3, using: &rng)
    checkGradients([x, weight]) { v in depthwiseConv2D(v[0], weight: v[1], bias: nil) }
  }

  @Test func denseGradientsWithBiasStridedPadded() {
    var rng = RandomGenerator(seed: 33)
    let x = Tensor.normal(shape: [2, 7, 6, 3], using: &rng)
    let weight = Tensor.normal(shape: [5, 3, 3, 3], std: 0.5, using: &rng)
    let bias = Tensor.normal(shape: [5], using: &rng)
    checkGradients([x, weight, bias]) { v in
      conv2D(v[0], weight: v[1], bias: v[2], stride: (2, 2), padding: (1, 1))
    }
  }

  @Test func denseGradientsPatchify() {
    var rng = RandomGenerator(seed: 34)
    let x = Tensor.normal(shape: [2, 8, 4, 3], using: &rng)
    let weight = Tensor.normal(shape: [4, 4, 4, 3], std: 0.5, using: &rng)
    let bias = Tensor.normal(shape: [4], using: &rng)
    checkGradients([x, weight, bias]) { v in
      conv2D(v[0], weight: v[1], bias: v[2], stride: (4, 4))
    }
  }

  /// Only tracked inputs get gradients; an untracked input costs no input-gradient pass.
  @Test func untrackedInputGetsNoGradient() throws {
    var rng = RandomGenerator(seed: 35)
    let x = Variable(Tensor.normal(shape: [1, 4, 4, 2], using: &rng))
    let weight = Variable(Tensor.normal(shape: [3, 3, 2], using: &rng), requiresGrad: true)
    let y = depthwiseConv2D(x, weight: weight, bias: nil)
    try y.sum().backward()
    #expect(x.grad == nil)
    #expect(weight.grad?.shape == [3, 3, 2])
  }
}
