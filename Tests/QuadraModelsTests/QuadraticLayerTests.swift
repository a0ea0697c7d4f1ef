import Testing

@testable import QuadraModels

/// The three quadratic layers against the composition of their children,
/// `child1(x) * child2(x) + child3(x)`: same outputs and same gradients for the input and every
/// parameter, and PyTorch-style parameter names.
@Suite struct QuadraticLayerTests {
  /// Output and gradients (input first, then parameters in `namedParameters()` order) of `forward`.
  func run(
    _ module: Module, _ input: Tensor, seed: Tensor? = nil, _ forward: (Variable) -> Variable
  ) throws -> [Tensor] {
    module.zeroGradients()
    let x = Variable(input, requiresGrad: true)
    let y = forward(x)
    try y.backward(seed ?? Tensor(shape: y.shape, repeating: 1))
    return [y.value, x.grad!] + module.namedParameters().map { $0.parameter.variable.grad! }
  }

  func randomize(_ module: Module, seed: UInt64) {
    var generator = RandomGenerator(seed: seed)
    for (_, parameter) in module.namedParameters() {
      parameter.variable.update(Tensor.normal(shape: parameter.variable.shape, std: 0.3, using: &generator))
    }
  }

  func expectSame(_ a: [Tensor], _ b: [Tensor], _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == b.count, "\(label): count", sourceLocation: sourceLocation)
    for (i, (x, y)) in zip(a, b).enumerated() {
      #expect(x.shape == y.shape, "\(label) #\(i) shape", sourceLocation: sourceLocation)
      let scale = 1 + y.maxAbs()
      let error = x.shape == y.shape ? x.subtracting(y).maxAbs() / scale : .infinity
      #expect(error < 1e-4, "\(label) #\(i): relative error \(error)", sourceLocation: sourceLocation)
    }
  }

  @Test func depthwiseFusedMatchesComposition() throws {
    var generator = RandomGenerator(seed: 51)
    let layer = QuadraticDepthwiseConv2d(channels: 12, kernelSize: 7, generator: &generator)
    randomize(layer, seed: 52)
    let x = Tensor.normal(shape: [2, 9, 8, 12], using: &generator)
    let dy = Tensor.normal(shape: x.shape, using: &generator)
    #expect(layer.usesFusedKernel)
    let fused = try run(layer, x, seed: dy) { layer($0) }
    layer.usesFusedKernel = false
    let unfused = try run(layer, x, seed: dy) { layer($0) }
    expectSame(fused, unfused, "depthwise")
    #expect(
      layer.namedParameters().map(\.name) == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias",
      ])
  }

  @Test func linearMatchesComposition() throws {
    var generator = RandomGenerator(seed: 53)
    let layer = QuadraticLinear(inputSize: 10, outputSize: 7, generator: &generator)
    randomize(layer, seed: 54)
    let x = Tensor.normal(shape: [3, 5, 10], using: &generator)
    let dy = Tensor.normal(shape: [3, 5, 7], using: &generator)
    let fused = try run(layer, x, seed: dy) { layer($0) }
    let composed = try run(layer, x, seed: dy) { layer.linear1($0) * layer.linear2($0) + layer.linear3($0) }
    expectSame(fused, composed, "linear")
    #expect(layer.namedParameters().map(\.name).first == "linear1.weight")
    #expect(layer.parameterCount == 3 * (7 * 10 + 7))

    let noBias = QuadraticLinear(inputSize: 10, outputSize: 7, bias: false, generator: &generator)
    expectSame(
      try run(noBias, x) { noBias($0) }, try run(noBias, x) { noBias.linear1($0) * noBias.linear2($0) + noBias.linear3($0) },
      "linear without bias")
  }

  @Test func denseConvolutionMatchesComposition() throws {
    var generator = RandomGenerator(seed: 55)
    let layer = QuadraticConv2d(
      inputChannels: 3, outputChannels: 5, kernelSize: 3, stride: 2, padding: 1, generator: &generator)
    randomize(layer, seed: 56)
    let x = Tensor.normal(shape: [2, 9, 7, 3], using: &generator)
    let fused = try run(layer, x) { layer($0) }
    let composed = try run(layer, x) { layer.conv1($0) * layer.conv2($0) + layer.conv3($0) }
    #expect(fused[0].shape == [2, 5, 4, 5])
    expectSame(fused, composed, "dense")
    #expect(layer.namedParameters().map(\.name).last == "conv3.bias")
  }
}

/// The MetaFormer block's fused MLP half (one ``QuadraCore/Tensor/residualMLP(parameters:epsilon:)``)
/// against its composition from LayerNorm, the linear maps, GELU, γ and the residual add.
@Suite struct FusedBlockTests {
  /// A 3×3 QuadraBlock of 12 channels with random parameters, an input and an output gradient.
  static func quadraBlockProblem(seed: UInt64) -> (block: QuadraBlock, x: Tensor, dy: Tensor) {
    var generator = RandomGenerator(seed: seed)
    let block = QuadraBlock(
      channels: 12, kernelSize: 3, mlpRatio: 2, layerScaleInit: 0.5, dropPath: 0, randomSource: RandomSource(seed: 1),
      generator: &generator)
    QuadraticLayerTests().randomize(block, seed: seed + 1)
    let x = Tensor.normal(shape: [2, 5, 6, 12], using: &generator)
    return (block, x, Tensor.normal(shape: x.shape, using: &generator))
  }

  @Test func quadraBlockFusedMatchesComposition() throws {
    let tests = QuadraticLayerTests()
    let (block, x, dy) = Self.quadraBlockProblem(seed: 71)
    #expect(block.fusesMLP)
    let fused = try tests.run(block, x, seed: dy) { block($0) }
    block.fusesMLP = false
    let composed = try tests.run(block, x, seed: dy) { block($0) }
    tests.expectSame(fused, composed, "QuadraBlock")
    // The joins alone (`x + γ ⊙ branch` as one op against a product and a sum), with the MLP unfused.
    #expect(block.fusesLayerScale)
    block.fusesLayerScale = false
    let productAndSum = try tests.run(block, x, seed: dy) { block($0) }
    tests.expectSame(composed, productAndSum, "QuadraBlock joins")
    // Without recording (inference), both joins of the fused block are one op.
    block.fusesLayerScale = true
    block.fusesMLP = true
    let inference = GradientMode.withoutRecording { block(Variable(x)).value }
    tests.expectSame([inference], [productAndSum[0]], "QuadraBlock inference")
  }

  /// The mixer half with the block's LayerNorm fused into the quadratic kernel (`LN₁(x)` never stored)
  /// against LayerNorm then the mixer: output and every gradient, recording and not.
  @Test func quadraBlockNormalizedMixerMatchesComposition() throws {
    let tests = QuadraticLayerTests()
    let (block, x, dy) = Self.quadraBlockProblem(seed: 78)
    #expect(block.fusesMixerNorm)
    let fused = try tests.run(block, x, seed: dy) { block($0) }
    let fusedInference = GradientMode.withoutRecording { block(Variable(x)).value }
    block.fusesMixerNorm = false
    let composed = try tests.run(block, x, seed: dy) { block($0) }
    tests.expectSame(fused, composed, "QuadraBlock mixer norm")
    tests.expectSame([fusedInference], [composed[0]], "QuadraBlock mixer norm, inference")
    // The LayerNorm's parameters get gradients through the fused op.
    let names = block.namedParameters().map(\.name)
    let normWeight = try #require(names.firstIndex(of: "norm1.weight"))
    #expect(fused[2 + normWeight].maxAbs() > 0)
  }

  /// Two blocks in a row: the second block's input is recorded (the first block's output), so its fused
  /// mixer folds the residual join's pending gradient into its own ∂L/∂x; against the composition, which
  /// sums the two in a separate add.
  @Test func quadraBlockFoldsTheResidualGradientIntoTheMixer() throws {
    let tests = QuadraticLayerTests()
    let (block, x, dy) = Self.quadraBlockProblem(seed: 79)
    let folded = try tests.run(block, x, seed: dy) { block(block($0)) }
    block.fusesMixerNorm = false
    let composed = try tests.run(block, x, seed: dy) { block(block($0)) }
    tests.expectSame(folded, composed, "two QuadraBlocks")
  }

  @Test func convNeXtBlockJoinMatchesComposition() throws {
    let tests = QuadraticLayerTests()
    var generator = RandomGenerator(seed: 73)
    let block = ConvNeXtBlock(
      channels: 10, kernelSize: 5, mlpRatio: 3, layerScaleInit: 0.5, dropPath: 0, randomSource: RandomSource(seed: 1),
      generator: &generator)
    tests.randomize(block, seed: 74)
    let x = Tensor.normal(shape: [3, 4, 5, 10], using: &generator)
    let dy = Tensor.normal(shape: x.shape, using: &generator)
    #expect(block.fusesLayerScale)
    let fused = try tests.run(block, x, seed: dy) { block($0) }
    block.fusesLayerScale = false
    let composed = try tests.run(block, x, seed: dy) { block($0) }
    tests.expectSame(fused, composed, "ConvNeXtBlock")
  }

  /// While DropPath drops samples the blocks compose their joins (the drop acts on `γ ⊙ branch`): the
  /// fused flag must change nothing, and the output must differ from the block without drops.
  @Test func dropPathTrainingComposesJoins() throws {
    let tests = QuadraticLayerTests()
    func makeBlock() -> QuadraBlock {
      var generator = RandomGenerator(seed: 75)
      let block = QuadraBlock(
        channels: 8, kernelSize: 3, mlpRatio: 2, layerScaleInit: 0.5, dropPath: 0.5,
        randomSource: RandomSource(seed: 2), generator: &generator)
      tests.randomize(block, seed: 76)
      return block
    }
    var generator = RandomGenerator(seed: 77)
    let x = Tensor.normal(shape: [8, 3, 3, 8], using: &generator)
    let fusedFlag = makeBlock(), composedFlag = makeBlock()
    composedFlag.fusesLayerScale = false
    composedFlag.fusesMLP = false
    #expect(fusedFlag.dropPath.dropsSamples)
    let a = try tests.run(fusedFlag, x) { fusedFlag($0) }
    let b = try tests.run(composedFlag, x) { composedFlag($0) }
    tests.expectSame(a, b, "DropPath training")
    fusedFlag.setTraining(false)
    #expect(!fusedFlag.dropPath.dropsSamples)
    let evaluation = GradientMode.withoutRecording { fusedFlag(Variable(x)).value }
    #expect(evaluation.subtracting(a[0]).maxAbs() > 1e-3, "DropPath dropped no sample")
  }
}
