import Testing

@testable import QuadraAutograd

/// `checkGradients` over the three quadratic ops (inputs: x, W_a, W_b, W_c[, b_a, b_b, b_c]).
@Suite struct QuadraticGradientTests {
  static func triple(_ v: [Variable], from index: Int) -> (Variable, Variable, Variable) {
    (v[index], v[index + 1], v[index + 2])
  }

  static func tensors(_ count: Int, _ shape: [Int], std: Float, _ rng: inout RandomGenerator) -> [Tensor] {
    (0..<count).map { _ in Tensor.normal(shape: shape, std: std, using: &rng) }
  }

  @Test(arguments: [true, false])
  func depthwiseGradients(biases: Bool) {
    var rng = RandomGenerator(seed: 41)
    let x = Tensor.normal(shape: [2, 5, 6, 11], using: &rng)
    let w = Self.tensors(3, [3, 3, 11], std: 0.4, &rng)
    let b = biases ? Self.tensors(3, [11], std: 1, &rng) : []
    checkGradients([x] + w + b) { v in
      quadraticDepthwiseConv2D(
        v[0], weights: Self.triple(v, from: 1), biases: biases ? Self.triple(v, from: 4) : nil)
    }
  }

  @Test(arguments: [true, false])
  func depthwiseGradientsKernel7(biases: Bool) {
    var rng = RandomGenerator(seed: 42)
    let x = Tensor.normal(shape: [1, 8, 9, 5], using: &rng)
    let w = Self.tensors(3, [7, 7, 5], std: 0.2, &rng)
    let b = biases ? Self.tensors(3, [5], std: 1, &rng) : []
    checkGradients([x] + w + b) { v in
      quadraticDepthwiseConv2D(
        v[0], weights: Self.triple(v, from: 1), biases: biases ? Self.triple(v, from: 4) : nil)
    }
  }

  @Test(arguments: [true, false])
  func linearGradients(biases: Bool) {
    var rng = RandomGenerator(seed: 43)
    let x = Tensor.normal(shape: [3, 4, 9], using: &rng)
    let w = Self.tensors(3, [6, 9], std: 0.4, &rng)
    let b = biases ? Self.tensors(3, [6], std: 1, &rng) : []
    checkGradients([x] + w + b) { v in
      quadraticLinear(v[0], weights: Self.triple(v, from: 1), biases: biases ? Self.triple(v, from: 4) : nil)
    }
  }

  @Test(arguments: [true, false])
  func denseConvolutionGradients(biases: Bool) {
    var rng = RandomGenerator(seed: 44)
    let x = Tensor.normal(shape: [2, 7, 6, 3], using: &rng)
    let w = Self.tensors(3, [4, 3, 3, 3], std: 0.4, &rng)
    let b = biases ? Self.tensors(3, [4], std: 1, &rng) : []
    checkGradients([x] + w + b) { v in
      quadraticConv2D(
        v[0], weights: Self.triple(v, from: 1), biases: biases ? Self.triple(v, from: 4) : nil, stride: (2, 1),
        padding: (1, 1))
    }
  }

  /// Inputs that do not track gradients get none (and the input gradient is skipped).
  @Test func untrackedInputsGetNoGradient() throws {
    var rng = RandomGenerator(seed: 45)
    let x = Variable(Tensor.normal(shape: [1, 4, 5, 3], using: &rng))
    let w = Self.tensors(3, [3, 3, 3], std: 0.4, &rng).map { Variable($0, requiresGrad: true) }
    let frozen = Variable(Tensor.normal(shape: [3], using: &rng))
    let b = [Variable(Tensor.normal(shape: [3], using: &rng), requiresGrad: true), frozen, frozen]
    try quadraticDepthwiseConv2D(x, weights: (w[0], w[1], w[2]), biases: (b[0], b[1], b[2])).sum().backward()
    #expect(x.grad == nil && frozen.grad == nil)
    #expect(w.allSatisfy { $0.grad?.shape == [3, 3, 3] } && b[0].grad?.shape == [3])
  }

  /// Between forward and backward the fused op's tape holds only `x` (the parameters were live
  /// before); the composition `a * b + c` also holds `a`, `b`, `c` and `a ⊙ b`.
  @Test func fusedTapeHoldsAThirdOfUnfused() throws {
    var rng = RandomGenerator(seed: 46)
    let input = Tensor.normal(shape: [2, 9, 10, 16], using: &rng)
    let w = Self.tensors(3, [7, 7, 16], std: 0.2, &rng).map { Variable($0, requiresGrad: true) }
    let b = Self.tensors(3, [16], std: 1, &rng).map { Variable($0, requiresGrad: true) }
    let activationBytes = input.count * 4

    /// Live bytes the tape adds (the output excluded); `x` is created inside, like a layer's
    /// input that only the tape keeps. A tracker of its own keeps concurrent tests out of the count.
    func saved(_ forward: (Variable) -> Variable) throws -> Int {
      let memory = MemoryTracker()
      let y = memory.run { forward(Variable(input.copy(), requiresGrad: true)) }
      let measured = memory.liveBytes - y.value.count * 4
      try y.backward(Tensor(shape: y.shape, repeating: 1))
      return measured
    }
    let fused = try saved { x in
      quadraticDepthwiseConv2D(x, weights: (w[0], w[1], w[2]), biases: (b[0], b[1], b[2]))
    }
    let unfused = try saved { x in
      depthwiseConv2D(x, weight: w[0], bias: b[0]) * depthwiseConv2D(x, weight: w[1], bias: b[1])
        + depthwiseConv2D(x, weight: w[2], bias: b[2])
    }
    #expect(fused == activationBytes)
    #expect(unfused == 5 * activationBytes)
    #expect(3 * fused <= unfused)
  }
}
