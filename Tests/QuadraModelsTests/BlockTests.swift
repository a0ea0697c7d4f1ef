import Testing

@testable import QuadraModels

/// Each block against a straightforward composition of tensor-level engine ops (no fusion,
/// no autograd), on random weights — including non-trivial layer scales so both branches matter.
@Suite struct BlockTests {
  func randomInput(_ shape: [Int], seed: UInt64) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    return Tensor.normal(shape: shape, using: &generator)
  }

  /// Replaces every parameter with random values so biases, norms and γ are all non-trivial.
  func randomize(_ module: Module, seed: UInt64) {
    var generator = RandomGenerator(seed: seed)
    for (_, parameter) in module.namedParameters() {
      parameter.variable.update(Tensor.normal(shape: parameter.variable.shape, std: 0.3, using: &generator))
    }
  }

  func ln(_ x: Tensor, _ norm: LayerNorm) -> Tensor {
    x.layerNorm(weight: norm.weight.value, bias: norm.bias.value, epsilon: norm.epsilon).output
  }

  func mlp(_ x: Tensor, _ fc1: Linear, _ fc2: Linear) -> Tensor {
    x.linear(weight: fc1.weight.value, bias: fc1.bias!.value).gelu().linear(weight: fc2.weight.value, bias: fc2.bias!.value)
  }

  func dw(_ x: Tensor, _ conv: DepthwiseConv2d) -> Tensor {
    x.depthwiseConv2D(weight: conv.weight.value, bias: conv.bias?.value)
  }

  @Test func quadraBlockMatchesReference() {
    var generator = RandomGenerator(seed: 1)
    let block = QuadraBlock(
      channels: 12, kernelSize: 7, mlpRatio: 4, layerScaleInit: 1e-6, dropPath: 0,
      randomSource: RandomSource(seed: 2), generator: &generator)
    randomize(block, seed: 3)
    let x = randomInput([2, 9, 11, 12], seed: 4)
    let h = ln(x, block.norm1)
    let q = block.quadraConv
    let mixer = dw(h, q.conv1) * dw(h, q.conv2) + dw(h, q.conv3)
    let y1 = x + mixer * block.gamma1.value
    let expected = y1 + mlp(ln(y1, block.norm2), block.mlp.pwconv1, block.mlp.pwconv2) * block.gamma2.value
    let actual = block(Variable(x)).value
    #expect(maxAbsDifference(actual, expected) < 1e-4 * max(1, expected.maxAbs()))
  }

  @Test func horNetBlockMatchesReference() {
    var generator = RandomGenerator(seed: 5)
    let block = HorNetBlock(
      channels: 16, order: 3, scale: 1.0 / 3.0, mlpRatio: 4, layerScaleInit: 1e-6, dropPath: 0,
      randomSource: RandomSource(seed: 6), generator: &generator)
    randomize(block, seed: 7)
    let x = randomInput([2, 7, 10, 16], seed: 8)
    let g = block.gnconv
    #expect(g.dims == [4, 8, 16])
    let projected = ln(x, block.norm1).linear(weight: g.projIn.weight.value, bias: g.projIn.bias!.value)
    // Reference split by explicit channel slicing (not the engine's split op).
    func channels(_ t: Tensor, _ range: Range<Int>) -> Tensor {
      let c = t.shape[3]
      let rows = t.count / c
      var out = Tensor(zeros: Array(t.shape.dropLast()) + [range.count])
      out.withUnsafeMutableBufferPointer { o in
        t.withUnsafeBufferPointer { s in
          for r in 0..<rows { for (j, k) in range.enumerated() { o[r * range.count + j] = s[r * c + k] } }
        }
      }
      return out
    }
    let pwa = channels(projected, 0..<4)
    let abc = dw(channels(projected, 4..<32), g.dwconv) * (1.0 / 3.0)
    var y = pwa * channels(abc, 0..<4)
    y = y.linear(weight: g.pws[0].weight.value, bias: g.pws[0].bias!.value) * channels(abc, 4..<12)
    y = y.linear(weight: g.pws[1].weight.value, bias: g.pws[1].bias!.value) * channels(abc, 12..<28)
    let mixer = y.linear(weight: g.projOut.weight.value, bias: g.projOut.bias!.value)
    let y1 = x + mixer * block.gamma1.value
    let expected = y1 + mlp(ln(y1, block.norm2), block.mlp.pwconv1, block.mlp.pwconv2) * block.gamma2.value
    let actual = block(Variable(x)).value
    #expect(maxAbsDifference(actual, expected) < 1e-4 * max(1, expected.maxAbs()))
  }

  @Test func convNeXtBlockMatchesReference() {
    var generator = RandomGenerator(seed: 9)
    let block = ConvNeXtBlock(
      channels: 10, kernelSize: 7, mlpRatio: 4, layerScaleInit: 1e-6, dropPath: 0,
      randomSource: RandomSource(seed: 10), generator: &generator)
    randomize(block, seed: 11)
    let x = randomInput([3, 8, 8, 10], seed: 12)
    let expected = x + mlp(ln(dw(x, block.dwconv), block.norm), block.mlp.pwconv1, block.mlp.pwconv2) * block.gamma.value
    let actual = block(Variable(x)).value
    #expect(maxAbsDifference(actual, expected) < 1e-4 * max(1, expected.maxAbs()))
  }

  @Test(arguments: ["quadranet", "hornet", "convnext"])
  func tinyModelTrainsEndToEnd(family: String) throws {
    let mixers = tinyMixers(family: family)
    let config = ModelConfig(
      name: "tiny-\(family)", inputChannels: 1, classCount: 3, stemPatchSize: 2, depths: [1, 1], widths: [8, 16],
      mixers: mixers, layerScaleInit: 0.5, dropPathRate: 0.1)
    let model = try VisionModel(config: config, seed: 3)
    let images = Variable(randomInput([4, 8, 8, 1], seed: 13))
    let logits = model(images)
    #expect(logits.shape == [4, 3])
    let loss = logits.softmaxCrossEntropy(labels: [0, 1, 2, 1], labelSmoothing: 0.1)
    try loss.backward()
    for (name, parameter) in model.namedParameters() {
      let gradient = try #require(parameter.variable.grad, "no gradient for \(name)")
      #expect(gradient.shape == parameter.variable.shape)
    }
  }

  @Test func parameterNamesFollowTheOfficialDefinitions() throws {
    func names(_ model: String) throws -> Set<String> {
      var config = try ModelRegistry.config(named: model, classCount: 10)
      config.widths = config.widths.map { $0 / 8 }
      return Set(try VisionModel(config: config).namedParameters().map(\.name))
    }
    let hornet = try names("hornet-t")
    for key in [
      "downsample_layers.0.0.weight", "downsample_layers.0.1.bias", "downsample_layers.3.0.weight",
      "downsample_layers.3.1.weight", "stages.2.5.gnconv.proj_in.weight", "stages.3.1.gnconv.pws.3.bias",
      "stages.2.17.gnconv.dwconv.weight", "stages.0.1.pwconv1.weight", "stages.0.1.gamma2", "norm.weight",
      "head.bias",
    ] { #expect(hornet.contains(key), "hornet-t lacks \(key)") }
    #expect(!hornet.contains("stages.0.0.gnconv.pws.1.weight"))
    let quadra = try names("quadranet-t")
    for key in ["stages.2.26.QuadraConv.conv3.bias", "stages.1.2.norm1.weight", "stages.3.2.gamma1"] {
      #expect(quadra.contains(key), "quadranet-t lacks \(key)")
    }
    let convnext = try names("convnext-t")
    for key in ["stages.2.8.dwconv.weight", "stages.0.0.gamma", "stages.3.2.norm.bias"] {
      #expect(convnext.contains(key), "convnext-t lacks \(key)")
    }
  }
}

func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
  precondition(a.shape == b.shape, "maxAbsDifference: \(a.shape) vs \(b.shape)")
  return (a - b).maxAbs()
}
