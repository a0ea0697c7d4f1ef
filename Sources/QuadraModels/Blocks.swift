import QuadraNN

/// The inverted-bottleneck MLP shared by all three families, applied on NHWC:
/// `pwconv2(GELU(pwconv1(LN(x))))` with hidden width `ratio·C`.
/// (The norm and the layer scale belong to the block, to keep PyTorch's names.)
struct PointwiseMLP {
  let pwconv1: Linear
  let pwconv2: Linear

  init(channels: Int, ratio: Int, generator: inout RandomGenerator) {
    pwconv1 = Linear(inputSize: channels, outputSize: ratio * channels, generator: &generator)
    pwconv2 = Linear(inputSize: ratio * channels, outputSize: channels, generator: &generator)
  }

  /// GELU is fused with pwconv1's bias: one pass over the 4C-wide activation instead of two.
  func callAsFunction(_ x: Variable) -> Variable {
    let hidden = linear(x, weight: pwconv1.weight, bias: nil).biasGELU(bias: pwconv1.bias!)
    return pwconv2(hidden)
  }
}

/// The block shared by QuadraNet and HorNet (a "MetaFormer" block with a high-order mixer):
///
///     x = x + DropPath(γ₁ ⊙ Mixer(LN₁(x)))
///     x = x + DropPath(γ₂ ⊙ pwconv2(GELU(pwconv1(LN₂(x)))))
///
/// Subclasses choose the mixer and its PyTorch name.
public class MixerBlock: Module {
  public let norm1: LayerNorm
  public let norm2: LayerNorm
  let mlp: PointwiseMLP
  public let gamma1: Variable
  public let gamma2: Variable
  public let dropPath: DropPath
  let mixerName: String
  let mixer: any Module & Layer

  init(
    channels: Int, mixerName: String, mixer: any Module & Layer, mlpRatio: Int, layerScaleInit: Float,
    dropPath rate: Float, randomSource: RandomSource, generator: inout RandomGenerator
  ) {
    norm1 = LayerNorm(channels: channels)
    self.mixerName = mixerName
    self.mixer = mixer
    norm2 = LayerNorm(channels: channels)
    mlp = PointwiseMLP(channels: channels, ratio: mlpRatio, generator: &generator)
    gamma1 = makeLayerScale(channels: channels, initialValue: layerScaleInit)
    gamma2 = makeLayerScale(channels: channels, initialValue: layerScaleInit)
    dropPath = DropPath(rate: rate, source: randomSource)
  }

  public override var parameters: [(name: String, parameter: Parameter)] {
    [
      (name: "gamma1", parameter: Parameter(gamma1, weightDecay: false)),
      (name: "gamma2", parameter: Parameter(gamma2, weightDecay: false)),
    ]
  }

  public override var children: [(name: String, module: Module)] {
    [
      (name: "norm1", module: norm1), (name: mixerName, module: mixer), (name: "norm2", module: norm2),
      (name: "pwconv1", module: mlp.pwconv1), (name: "pwconv2", module: mlp.pwconv2),
      (name: "drop_path", module: dropPath),
    ]
  }

  /// Whether the MLP half runs as one fused op (``QuadraAutograd/Variable/residualMLP(parameters:epsilon:)``)
  /// while gradients are recorded, except while DropPath drops samples (training with a rate > 0).
  /// Without recording (inference on the tape) the separate ops run: each intermediate is freed as the
  /// next op consumes it, while the fused op writes what only a backward pass needs. False composes it
  /// from LayerNorm, the two linear maps, GELU, γ ⊙ and the add (same values up to rounding, more passes
  /// over memory), for benchmarks and tests.
  public var fusesMLP = true

  /// Whether the mixer half's join `x + γ₁ ⊙ mixer(LN₁(x))` is one pass
  /// (``QuadraAutograd/Variable/layerScaleResidual(branch:scale:)``) rather than a product and a sum,
  /// except while DropPath drops samples. False composes it (same values up to rounding), for tests.
  public var fusesLayerScale = true

  /// Whether a quadratic mixer reads `LN₁(x)` through one fused op that normalizes rows as the
  /// convolution reads them (``QuadraNN/QuadraticDepthwiseConv2d/callAsFunction(_:normalizedBy:)``:
  /// `LN₁(x)` is neither written nor kept for backward). False runs the LayerNorm, then the mixer
  /// (same values up to rounding), for benchmarks and tests. Other mixers always compose.
  public var fusesMixerNorm = true

  /// `Mixer(LN₁(x))`.
  private func mixerBranch(_ x: Variable) -> Variable {
    if fusesMixerNorm, let quadratic = mixer as? QuadraticDepthwiseConv2d {
      return quadratic(x, normalizedBy: norm1)
    }
    return mixer(norm1(x))
  }

  /// `x + γ ⊙ branch`, fused unless DropPath drops samples. A function of its own so that `branch`, a
  /// temporary of the caller, is released as soon as the join is computed (a named local of the block's
  /// body could be kept alive through the MLP half and raise the peak by one activation).
  private func join(_ x: Variable, _ branch: Variable, scale: Variable) -> Variable {
    fusesLayerScale && !dropPath.dropsSamples
      ? x.layerScaleResidual(branch: branch, scale: scale) : x + dropPath(branch * scale)
  }

  public func callAsFunction(_ x: Variable) -> Variable {
    let mixed = join(x, mixerBranch(x), scale: gamma1)
    if fusesMLP && GradientMode.isEnabled && !dropPath.dropsSamples, let expandBias = mlp.pwconv1.bias,
      let projectBias = mlp.pwconv2.bias
    {
      return mixed.residualMLP(
        parameters: [
          norm2.weight, norm2.bias, mlp.pwconv1.weight, expandBias, mlp.pwconv2.weight, projectBias, gamma2,
        ], epsilon: norm2.epsilon)
    }
    return join(mixed, mlp(norm2(mixed)), scale: gamma2)
  }
}

/// QuadraBlock (the authors' `QuadraBlock1_dw`): the mixer is a quadratic depthwise k×k convolution,
/// registered as `QuadraConv`.
public final class QuadraBlock: MixerBlock {
  public var quadraConv: QuadraticDepthwiseConv2d { mixer as! QuadraticDepthwiseConv2d }

  public init(
    channels: Int, kernelSize: Int, mlpRatio: Int, layerScaleInit: Float, dropPath rate: Float,
    randomSource: RandomSource, generator: inout RandomGenerator
  ) {
    let mixer = QuadraticDepthwiseConv2d(channels: channels, kernelSize: kernelSize, generator: &generator)
    super.init(
      channels: channels, mixerName: "QuadraConv", mixer: mixer, mlpRatio: mlpRatio, layerScaleInit: layerScaleInit,
      dropPath: rate, randomSource: randomSource, generator: &generator)
  }
}

/// HorNet's recursive gated convolution gⁿConv (order n):
///
///     [p₀, q] = proj_in(x)                       (1×1, C → 2C; p₀ has C/2ⁿ⁻¹ channels)
///     [q₀ … qₙ₋₁] = split(s · DWConv₇(q))        (channel widths C/2ⁿ⁻¹, …, C/2, C)
///     p_{k+1} = pws_k(p_k) ⊙ q_{k+1}, starting from p₀ ⊙ q₀
///     y = proj_out(pₙ₋₁)
public final class GnConv: Module {
  public let order: Int
  public let scale: Float
  public let dims: [Int]
  public let projIn: Linear
  public let dwconv: DepthwiseConv2d
  public let projOut: Linear
  public let pws: ModuleList<Linear>

  public init(channels: Int, order: Int, scale: Float, generator: inout RandomGenerator) {
    self.order = order
    self.scale = scale
    dims = (0..<order).map { channels >> $0 }.reversed()
    projIn = Linear(
      inputSize: channels, outputSize: 2 * channels, torchLayout: .pointwiseConvolution, generator: &generator)
    dwconv = DepthwiseConv2d(channels: dims.reduce(0, +), kernelSize: 7, generator: &generator)
    projOut = Linear(
      inputSize: channels, outputSize: channels, torchLayout: .pointwiseConvolution, generator: &generator)
    var projections: [Linear] = []
    for i in 0..<(order - 1) {
      projections.append(
        Linear(inputSize: dims[i], outputSize: dims[i + 1], torchLayout: .pointwiseConvolution, generator: &generator))
    }
    pws = ModuleList(projections)
  }

  public override var children: [(name: String, module: Module)] {
    [(name: "proj_in", module: projIn), (name: "dwconv", module: dwconv), (name: "proj_out", module: projOut),
     (name: "pws", module: pws)]
  }

  public func callAsFunction(_ x: Variable) -> Variable {
    let fused = projIn(x)
    let parts = fused.split(alongLastAxis: [dims[0], dims.reduce(0, +)])
    let gates = (dwconv(parts[1]) * scale).split(alongLastAxis: dims)
    var y = parts[0] * gates[0]
    for i in 0..<(order - 1) {
      y = pws[i](y) * gates[i + 1]
    }
    return projOut(y)
  }
}

/// HorNet block (`hornet.py` `Block`): the mixer is gⁿConv, registered as `gnconv`.
public final class HorNetBlock: MixerBlock {
  public var gnconv: GnConv { mixer as! GnConv }

  public init(
    channels: Int, order: Int, scale: Float, mlpRatio: Int, layerScaleInit: Float, dropPath rate: Float,
    randomSource: RandomSource, generator: inout RandomGenerator
  ) {
    let mixer = GnConv(channels: channels, order: order, scale: scale, generator: &generator)
    super.init(
      channels: channels, mixerName: "gnconv", mixer: mixer, mlpRatio: mlpRatio, layerScaleInit: layerScaleInit,
      dropPath: rate, randomSource: randomSource, generator: &generator)
  }
}

/// ConvNeXt block: `x + DropPath(γ ⊙ pwconv2(GELU(pwconv1(LN(DWConv₇(x))))))`.
public final class ConvNeXtBlock: Module {
  public let dwconv: DepthwiseConv2d
  public let norm: LayerNorm
  let mlp: PointwiseMLP
  public let gamma: Variable
  public let dropPath: DropPath

  public init(
    channels: Int, kernelSize: Int, mlpRatio: Int, layerScaleInit: Float, dropPath rate: Float,
    randomSource: RandomSource, generator: inout RandomGenerator
  ) {
    dwconv = DepthwiseConv2d(channels: channels, kernelSize: kernelSize, generator: &generator)
    norm = LayerNorm(channels: channels)
    mlp = PointwiseMLP(channels: channels, ratio: mlpRatio, generator: &generator)
    gamma = makeLayerScale(channels: channels, initialValue: layerScaleInit)
    dropPath = DropPath(rate: rate, source: randomSource)
  }

  public override var parameters: [(name: String, parameter: Parameter)] {
    [(name: "gamma", parameter: Parameter(gamma, weightDecay: false))]
  }

  public override var children: [(name: String, module: Module)] {
    [
      (name: "dwconv", module: dwconv), (name: "norm", module: norm),
      (name: "pwconv1", module: mlp.pwconv1), (name: "pwconv2", module: mlp.pwconv2),
      (name: "drop_path", module: dropPath),
    ]
  }

  /// Whether the join `x + γ ⊙ branch` is one pass (``QuadraAutograd/Variable/layerScaleResidual(branch:scale:)``)
  /// rather than a product and a sum, except while DropPath drops samples. False composes it, for tests.
  public var fusesLayerScale = true

  public func callAsFunction(_ x: Variable) -> Variable {
    fusesLayerScale && !dropPath.dropsSamples
      ? x.layerScaleResidual(branch: mlp(norm(dwconv(x))), scale: gamma) : x + dropPath(mlp(norm(dwconv(x))) * gamma)
  }
}
