import QuadraNN

/// A module with a single-input forward pass (blocks, mixers).
public protocol Layer: AnyObject {
  func callAsFunction(_ x: Variable) -> Variable
}

extension MixerBlock: Layer {}
extension ConvNeXtBlock: Layer {}
extension QuadraticDepthwiseConv2d: Layer {}
extension GnConv: Layer {}

/// A named pair of modules applied in order (PyTorch `nn.Sequential` of two), used for the
/// stem (`conv → LN`) and the downsampling layers (`LN → conv`).
final class NormAndConv: Module {
  let norm: LayerNorm
  let conv: Conv2d
  let normFirst: Bool

  init(norm: LayerNorm, conv: Conv2d, normFirst: Bool) {
    self.norm = norm
    self.conv = conv
    self.normFirst = normFirst
  }

  override var children: [(name: String, module: Module)] {
    normFirst ? [(name: "0", module: norm), (name: "1", module: conv)] : [(name: "0", module: conv), (name: "1", module: norm)]
  }

  func callAsFunction(_ x: Variable) -> Variable { normFirst ? conv(norm(x)) : norm(conv(x)) }
}

/// The hierarchical backbone shared by QuadraNet, HorNet and ConvNeXt, built from a ``ModelConfig``.
///
/// Input: NHWC images `[N, H, W, inputChannels]`; output: logits `[N, classCount]`.
/// Parameter names equal the official PyTorch `state_dict` keys.
public final class VisionModel: Module, Layer {
  public let config: ModelConfig
  /// Drop-path randomness of all blocks (saved in checkpoints for exact resumption).
  public let randomSource: RandomSource
  let downsampleLayers: ModuleList<NormAndConv>
  let stageModules: ModuleList<ModuleList<Module>>
  let stages: [[any Layer]]
  public let norm: LayerNorm
  public let head: Linear

  /// Builds the model with weights drawn from `seed` with `config.weightInitialization`; zero biases.
  /// Throws when the config is invalid (``ModelConfig/validate()``) or its parameters, with gradients
  /// and AdamW moments, exceed the memory limit (``ModelConfig/checkParameterMemory()``), before allocating.
  public init(config: ModelConfig, seed: UInt64 = 0) throws {
    try config.validate()
    try config.checkParameterMemory()
    self.config = config
    var generator = RandomGenerator(seed: seed)
    randomSource = RandomSource(seed: seed &+ 0x5EED)
    let widths = config.widths
    var downsample: [NormAndConv] = [
      NormAndConv(
        norm: LayerNorm(channels: widths[0]),
        conv: Conv2d(
          inputChannels: config.inputChannels, outputChannels: widths[0], kernelSize: config.stemKernel,
          stride: config.stemPatchSize, padding: config.stemPadding, generator: &generator),
        normFirst: false)
    ]
    for i in 1..<widths.count {
      downsample.append(
        NormAndConv(
          norm: LayerNorm(channels: widths[i - 1]),
          conv: Conv2d(
            inputChannels: widths[i - 1], outputChannels: widths[i], kernelSize: 2, stride: 2, generator: &generator),
          normFirst: true))
    }
    downsampleLayers = ModuleList(downsample)

    let totalBlocks = config.depths.reduce(0, +)
    var blockIndex = 0
    var stageLayers: [[any Layer]] = []
    var stageLists: [ModuleList<Module>] = []
    for (stage, depth) in config.depths.enumerated() {
      var blocks: [Module & Layer] = []
      for _ in 0..<depth {
        // Linearly increasing drop-path rate over all blocks, as torch.linspace(0, rate, total).
        let rate = totalBlocks > 1 ? config.dropPathRate * Float(blockIndex) / Float(totalBlocks - 1) : 0
        blockIndex += 1
        switch config.mixers[stage] {
        case .quadratic(let kernelSize):
          blocks.append(
            QuadraBlock(
              channels: widths[stage], kernelSize: kernelSize, mlpRatio: config.mlpRatio,
              layerScaleInit: config.layerScaleInit, dropPath: rate, randomSource: randomSource, generator: &generator))
        case .gnConv(let order, let scale):
          blocks.append(
            HorNetBlock(
              channels: widths[stage], order: order, scale: scale, mlpRatio: config.mlpRatio,
              layerScaleInit: config.layerScaleInit, dropPath: rate, randomSource: randomSource, generator: &generator))
        case .depthwise(let kernelSize):
          blocks.append(
            ConvNeXtBlock(
              channels: widths[stage], kernelSize: kernelSize, mlpRatio: config.mlpRatio,
              layerScaleInit: config.layerScaleInit, dropPath: rate, randomSource: randomSource, generator: &generator))
        }
      }
      stageLayers.append(blocks)
      stageLists.append(ModuleList(blocks.map { $0 as Module }))
    }
    stages = stageLayers
    stageModules = ModuleList(stageLists)
    norm = LayerNorm(channels: widths[widths.count - 1])
    head = Linear(inputSize: widths[widths.count - 1], outputSize: config.classCount, generator: &generator)
    super.init()
    // The layers draw timm's default as they are built; another scheme redraws (keeping the
    // default's weights for a given seed unchanged).
    if config.weightInitialization != .timm {
      initializeWeights(config.weightInitialization, using: &generator)
    }
  }

  public override var children: [(name: String, module: Module)] {
    [
      (name: "downsample_layers", module: downsampleLayers), (name: "stages", module: stageModules),
      (name: "norm", module: norm), (name: "head", module: head),
    ]
  }

  /// Pooled, normalized features `[N, widths.last]`.
  public func features(_ images: Variable) -> Variable {
    opPrecondition(
      images.rank == 4 && images.shape[3] == config.inputChannels,
      "\(config.name): expected NHWC images [N, H, W, \(config.inputChannels)], got \(images.shape)")
    let patch = config.stemPatchSize
    opPrecondition(
      images.shape[1] >= patch << (config.depths.count - 1) && images.shape[2] >= patch << (config.depths.count - 1),
      "\(config.name): input \(images.shape[1])×\(images.shape[2]) is too small for stem \(patch) and \(config.depths.count - 1) downsamplings")
    var x = images
    for stage in 0..<stages.count {
      x = downsampleLayers[stage](x)
      for block in stages[stage] { x = block(x) }
    }
    return norm(x.globalMeanPooled())
  }

  /// Logits `[N, classCount]`.
  public func callAsFunction(_ images: Variable) -> Variable { head(features(images)) }
}
