import Testing

@testable import QuadraAutograd

/// Finite-difference checks of every differentiable op, at odd sizes and with batch > 1.
@Suite struct OpGradientTests {
  static func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    return Tensor.normal(shape: shape, std: scale, using: &generator)
  }

  /// A pre-norm residual, `y = LN(h) + h` with `h` recorded: LayerNorm's pullback gets the join's
  /// gradient pending on `h` and folds it into its ∂L/∂h — the same bits as the plain backward plus a sum.
  @Test func layerNormFoldsThePendingResidualGradient() throws {
    var rng = RandomGenerator(seed: 90)
    let x = Variable(Tensor.normal(shape: [3, 4, 6], using: &rng), requiresGrad: true)
    let weight = Variable(Tensor.normal(shape: [6], using: &rng), requiresGrad: true)
    let bias = Variable(Tensor.normal(shape: [6], using: &rng), requiresGrad: true)
    let dy = Tensor.normal(shape: [3, 4, 6], using: &rng)
    let h = x + x
    let y = h.layerNorm(weight: weight, bias: bias) + h
    try y.backward(dy)
    let statistics = h.value.layerNorm(weight: weight.value, bias: bias.value).statistics
    let plain = h.value.layerNormBackward(outputGradient: dy, weight: weight.value, statistics: statistics)
    let dh = plain.input.adding(dy)
    #expect(x.grad?.scalars == dh.adding(dh).scalars)
    #expect(weight.grad?.scalars == plain.weight.scalars)
    #expect(bias.grad?.scalars == plain.bias.scalars)
  }

  @Test func broadcastAdd() {
    checkGradients([Self.random([2, 3, 5, 7], seed: 1), Self.random([7], seed: 2)]) { v in v[0] + v[1] }
    checkGradients([Self.random([7], seed: 3), Self.random([2, 3, 5, 7], seed: 4)]) { v in v[0] + v[1] }
  }

  @Test func broadcastSubtract() {
    checkGradients([Self.random([2, 3, 5, 7], seed: 1), Self.random([1, 3, 1, 7], seed: 2)]) { v in v[0] - v[1] }
    checkGradients([Self.random([3, 1], seed: 3), Self.random([1, 4], seed: 4)]) { v in v[0] - v[1] }
  }

  @Test func broadcastMultiply() {
    checkGradients([Self.random([2, 3, 5, 7], seed: 1), Self.random([1, 3, 1, 7], seed: 2)]) { v in v[0] * v[1] }
    checkGradients([Self.random([2, 3, 5, 7], seed: 3), Self.random([7], seed: 4)]) { v in v[0] * v[1] }
    checkGradients([Self.random([9], seed: 5), Self.random([4, 9], seed: 6)]) { v in v[0] * v[1] }
    checkGradients([Self.random([3, 11], seed: 7), Self.random([3, 11], seed: 8)]) { v in v[0] * v[1] }
    // The same variable on both sides: d(x²)/dx = 2x.
    checkGradients([Self.random([2, 5], seed: 9)]) { v in v[0] * v[0] }
  }

  @Test func scalarArithmetic() {
    checkGradients([Self.random([2, 3, 5], seed: 1)]) { v in 2.5 * v[0] + 1 }
    checkGradients([Self.random([2, 3, 5], seed: 2)]) { v in 3 - v[0] * 0.5 - 1 }
    checkGradients([Self.random([2, 3, 5], seed: 3)]) { v in -(1 + v[0]).scaled(by: 2) }
  }

  @Test func sumsAndMeans() {
    let x = Self.random([2, 3, 5, 7], seed: 1)
    checkGradients([x]) { v in v[0].sum() }
    checkGradients([x]) { v in v[0].mean() }
    checkGradients([x]) { v in v[0].sum(alongAxes: [1, 3]) }
    checkGradients([x]) { v in v[0].mean(alongAxes: [0, -2], keepingDimensions: true) }
  }

  @Test(arguments: [[2, 3, 5], [2, 2, 3, 33], [1, 8]])
  func layerNorm(_ shape: [Int]) {
    let c = shape.last!
    checkGradients(
      [Self.random(shape, seed: 1, scale: 2), Self.random([c], seed: 2), Self.random([c], seed: 3)]
    ) { v in v[0].layerNorm(weight: v[1], bias: v[2]) }
  }

  @Test func geluAndBiasGELU() {
    checkGradients([Self.random([2, 3, 5, 7], seed: 1, scale: 2)]) { v in gelu(v[0]) }
    checkGradients([Self.random([3, 4, 9], seed: 2, scale: 2), Self.random([9], seed: 3)]) { v in
      v[0].biasGELU(bias: v[1])
    }
  }

  @Test func softmax() {
    checkGradients([Self.random([4, 7], seed: 1, scale: 2)]) { v in v[0].softmax() }
  }

  @Test func crossEntropyWithLabelSmoothing() {
    let labels = [0, 6, 3, 3, 1]
    for smoothing: Float in [0, 0.1] {
      checkGradients([Self.random([5, 7], seed: 1, scale: 2)]) { v in
        softmaxCrossEntropy(logits: v[0], labels: labels, labelSmoothing: smoothing)
      }
    }
    // Scaling the loss scales the gradient (the seed of the pullback is honoured).
    checkGradients([Self.random([5, 7], seed: 2)]) { v in
      v[0].softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1) * 3
    }
  }

  @Test func splitAndConcat() {
    // Pieces used in a different order, one twice, one only through the input's other use.
    checkGradients([Self.random([2, 3, 4, 9], seed: 1)]) { v in
      let parts = v[0].split(alongLastAxis: [2, 3, 4])
      return Variable.concat(alongLastAxis: [parts[2], parts[0] * parts[0], parts[1] + parts[1]]) + v[0]
    }
    checkGradients([Self.random([2, 3, 4, 9], seed: 2)]) { v in
      let parts = v[0].split(alongLastAxis: [2, 3, 4])
      return parts[1] * 2  // the other pieces are unused
    }
    checkGradients([Self.random([2, 3, 5], seed: 3), Self.random([2, 1, 5], seed: 4)]) { v in
      Variable.concat([v[1], v[0] * v[0]], axis: 1)
    }
    checkGradients([Self.random([6, 4], seed: 5)]) { v in
      let parts = v[0].split(sizes: [1, 3, 2], axis: 0)
      return Variable.concat([parts[2], parts[0]], axis: 0)
    }
  }

  /// The first pass releases the split's hub node; a second pass from another piece needs it,
  /// so it must fail loudly (and leave the first gradient untouched) instead of losing its gradient.
  @Test func secondBackwardThroughAReleasedSplitThrows() throws {
    let x = Variable(Tensor(shape: [1, 4], scalars: [1, 2, 3, 4]), requiresGrad: true)
    let parts = x.split(alongLastAxis: [2, 2])
    try (parts[0] * 3).sum().backward()
    #expect(x.grad?.scalars == [3, 3, 0, 0])
    let second = (parts[1] * 5).sum()
    #expect {
      try second.backward()
    } throws: { error in
      guard case .graphAlreadyReleased = error as? AutogradError else { return false }
      return "\(error)".contains("backward through the graph a second time")
    }
    #expect(x.grad?.scalars == [3, 3, 0, 0])
  }

  @Test func reshapePermuteTranspose() {
    let x = Self.random([2, 3, 5, 7], seed: 1)
    checkGradients([x]) { v in v[0].permuted([0, 2, 3, 1]) * v[0].permuted([0, 2, 3, 1]) }
    checkGradients([x]) { v in v[0].permuted([3, 1, 0, 2]) }
    checkGradients([x]) { v in v[0].reshaped([6, -1]).transposed() * 2 }
  }

  @Test func globalMeanPool() {
    checkGradients([Self.random([2, 3, 5, 7], seed: 1)]) { v in (v[0] * v[0]).globalMeanPooled() }
  }

  @Test func dropPathWithAFixedSeed() {
    let x = Self.random([8, 2, 3, 5], seed: 1)
    checkGradients([x]) { v in
      var generator = RandomGenerator(seed: 42)
      return v[0].dropPath(probability: 0.5, training: true, using: &generator) * v[0]
    }
    // The mask is per sample: each sample is all zeros or all x/(1 − p); with this seed both occur.
    var generator = RandomGenerator(seed: 42)
    let y = Variable(x).dropPath(probability: 0.5, training: true, using: &generator).value
    var kept = 0, dropped = 0
    for n in 0..<8 {
      let sample = y.scalars[(n * 30)..<((n + 1) * 30)], input = x.scalars[(n * 30)..<((n + 1) * 30)]
      if sample.allSatisfy({ $0 == 0 }) {
        dropped += 1
      } else {
        kept += 1
        #expect(zip(sample, input).allSatisfy { $0 == $1 * 2 })
      }
    }
    #expect(kept > 0 && dropped > 0)
    // Not training, or p = 0: identity, and nothing is drawn.
    var untouched = RandomGenerator(seed: 42)
    let v = Variable(x)
    #expect(v.dropPath(probability: 0.5, training: false, using: &untouched) === v)
    #expect(v.dropPath(probability: 0, training: true, using: &untouched) === v)
    #expect(untouched == RandomGenerator(seed: 42))
  }

  @Test func untrackedInputsGetNoGradient() throws {
    let x = Variable(Self.random([3, 4], seed: 1), requiresGrad: true)
    let constant = Variable(Self.random([4], seed: 2))
    let y = (x * constant + constant).sum()
    try y.backward()
    #expect(x.grad?.shape == [3, 4])
    #expect(constant.grad == nil)
    let z = GradientMode.withoutRecording { x.split(alongLastAxis: [1, 3]) }
    #expect(z.allSatisfy { $0.node == nil })
  }
}
