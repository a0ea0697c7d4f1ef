import Foundation
import QuadraData
import QuadraIO
import QuadraModels
import QuadraTraining
import SwiftProtobuf

/// Exports a ``VisionModel`` (any config: QuadraNet, HorNet, ConvNeXt, hybrids, overlapping stems) as an
/// ONNX model that mirrors the engine's forward pass in evaluation mode.
///
/// The graph:
/// - input `images` `[batch, C, H, W]` float (NCHW, already normalized as `(pixel / maxValue − mean) / std`),
///   with a dynamic batch axis and, unless a resolution is fixed, dynamic `height` and `width`;
/// - output `logits` `[batch, classes]`;
/// - every weight an initializer under its PyTorch `state_dict` name and shape, exactly as in the checkpoint;
/// - `metadata_props`: `model`, `config` (JSON), `normalization` (JSON), `class_names` (JSON), `dataset`,
///   `input_layout`, `input_normalization`.
///
/// **Opset 17**: the first opset with `LayerNormalization`. The `Gelu` op only arrived in opset 20, which
/// older ONNX Runtime and TensorRT releases reject, so GELU is written in its exact erf form
/// `0.5 · x · (1 + erf(x / √2))` (`Div`, `Erf`, `Add`, `Mul`, `Mul`), the pattern PyTorch's exporter emits
/// and ONNX Runtime and TensorRT fuse back into one GELU kernel.
///
/// **Layout**: activations are NCHW throughout, so convolutions use the checkpoint's PyTorch weights as they are
/// (`Conv` with `group = C` for depthwise maps, 1×1 `Conv` for gnConv's projections). LayerNorm over channels is
/// `Transpose` to NHWC, one fused `LayerNormalization(axis = −1)` and `Transpose` back — rather than the seven-op
/// `ReduceMean` formulation — because it is a single kernel in ONNX Runtime and TensorRT with exactly the engine's
/// formula (biased variance, ε inside the square root), and the channel MLPs that follow it run in NHWC anyway
/// (`MatMul` on the last axis, as in ConvNeXt's own PyTorch code), so each block needs only one transpose pair
/// per branch.
///
/// **Quadratic mixer** `(W_a∗x + b_a) ⊙ (W_b∗x + b_b) + (W_c∗x + b_c)`: three depthwise `Conv`s, `Mul`, `Add`.
/// One grouped `Conv` with 3C outputs would interleave a, b, c per channel (output o reads group ⌊o/3⌋), needing
/// a 5-D reshape to split, and leaves ONNX Runtime's depthwise fast path (which requires one output per group):
/// measured with ONNX Runtime 1.32 on one CPU thread (C = 80, 14×14, batch 32, 3×3), three depthwise `Conv`s
/// took 1.1 ms and the fused grouped `Conv` + `Reshape` + `Split` 36 ms.
///
/// Drop path and dropout are the identity at inference and emit nothing; layer scale γ is a `Mul`.
public enum ONNXExporter {
  /// The opset the graph uses (see the type's documentation for why 17).
  public static let opsetVersion: Int64 = 17
  /// IR version 8 is the one ONNX 1.13 writes for opset 17; every runtime that knows opset 17 reads it.
  public static let irVersion: Int64 = 8
  /// Every op type the exporter emits; all are standard ONNX (default domain) at opset 17.
  public static let emittedOperators: Set<String> = [
    "Conv", "Transpose", "LayerNormalization", "MatMul", "Add", "Mul", "Div", "Erf", "Split", "Reshape",
    "ReduceMean", "Gemm",
  ]
  public static let inputName = "images"
  public static let outputName = "logits"

  /// Metadata keys of the exported model.
  public enum MetadataKey {
    public static let model = "model"
    public static let config = "config"
    public static let normalization = "normalization"
    public static let classNames = "class_names"
    public static let dataset = "dataset"
    public static let inputLayout = "input_layout"
    public static let inputNormalization = "input_normalization"
  }

  /// The largest fixed resolution accepted (beyond it a model is not an image classifier this engine trains).
  public static let maximumResolution = 8192

  /// The ONNX model of `deployable`'s network.
  ///
  /// - Parameter resolution: fixes the input's height and width; nil leaves them dynamic. Must lie in
  ///   `minimumInputSize...maximumResolution`.
  public static func makeModel(_ deployable: DeployableModel, resolution: Int? = nil) throws -> Onnx_ModelProto {
    let config = deployable.config
    if let resolution {
      guard (deployable.minimumInputSize...maximumResolution).contains(resolution) else {
        throw DeploymentError.invalidOption(
          option: "--resolution",
          reason: "must be in \(deployable.minimumInputSize)...\(maximumResolution) for \(config.name), got \(resolution)")
      }
    }
    var graph = GraphBuilder(tensors: WeightsCheckpoint.torchStateDict(of: deployable.model), epsilon: deployable.model.norm.epsilon)
    let logits = try graph.emitNetwork(config: config, input: inputName)
    graph.rename(logits, to: outputName)

    var model = Onnx_ModelProto()
    model.irVersion = irVersion
    model.producerName = "quadranet"
    model.producerVersion = "1"
    model.domain = "org.quadranet"
    model.modelVersion = 1
    model.docString = "\(config.name) exported by quadranet (\(config.mixers.map(\.family).joined(separator: ", ")))"
    var opset = Onnx_OperatorSetIdProto()
    opset.domain = ""
    opset.version = opsetVersion
    model.opsetImport = [opset]

    var graphProto = Onnx_GraphProto()
    graphProto.name = config.name
    graphProto.node = graph.nodes
    graphProto.initializer = graph.initializers
    let spatial: Dimension = resolution.map { .fixed($0) } ?? .symbolic("height")
    let spatialWidth: Dimension = resolution.map { .fixed($0) } ?? .symbolic("width")
    graphProto.input = [
      valueInfo(inputName, [.symbolic("batch"), .fixed(config.inputChannels), spatial, spatialWidth])
    ]
    graphProto.output = [valueInfo(outputName, [.symbolic("batch"), .fixed(config.classCount)])]
    model.graph = graphProto
    model.metadataProps = metadata(deployable).map { key, value in
      var entry = Onnx_StringStringEntryProto()
      entry.key = key
      entry.value = value
      return entry
    }
    return model
  }

  /// Writes the ONNX file atomically.
  public static func export(_ deployable: DeployableModel, resolution: Int? = nil, to url: URL) throws {
    let model = try makeModel(deployable, resolution: resolution)
    try AtomicFile.write(try model.serializedData(), to: url)
  }

  /// The metadata entries, sorted by key.
  static func metadata(_ deployable: DeployableModel) -> [(String, String)] {
    let config = deployable.config
    var result: [String: String] = [
      MetadataKey.model: config.name,
      MetadataKey.config: json(config),
      MetadataKey.classNames: json(deployable.classNames ?? (0..<config.classCount).map(String.init)),
      MetadataKey.inputLayout: "NCHW",
    ]
    if let normalization = deployable.checkpoint.normalization {
      result[MetadataKey.normalization] = json(normalization)
      result[MetadataKey.inputNormalization] =
        "images = (pixel / \(normalization.maxValue) - \(normalization.mean)) / \(normalization.std)"
    }
    if let dataset = deployable.checkpoint.dataset { result[MetadataKey.dataset] = dataset }
    return result.sorted { $0.key < $1.key }
  }

  static func json<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    // Configs, normalizations and string arrays always encode.
    return String(decoding: try! encoder.encode(value), as: UTF8.self)
  }

  enum Dimension {
    case fixed(Int)
    case symbolic(String)
  }

  static func valueInfo(_ name: String, _ dimensions: [Dimension]) -> Onnx_ValueInfoProto {
    var shape = Onnx_TensorShapeProto()
    shape.dim = dimensions.map { dimension in
      var proto = Onnx_TensorShapeProto.Dimension()
      switch dimension {
      case .fixed(let value): proto.dimValue = Int64(value)
      case .symbolic(let name): proto.dimParam = name
      }
      return proto
    }
    var tensorType = Onnx_TypeProto.Tensor()
    tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
    tensorType.shape = shape
    var type = Onnx_TypeProto()
    type.tensorType = tensorType
    var info = Onnx_ValueInfoProto()
    info.name = name
    info.type = type
    return info
  }
}

/// Builds the node list and initializers, naming values after the module that produces them.
struct GraphBuilder {
  /// The state dict in PyTorch layout; each tensor becomes an initializer of the same name when first used.
  let tensors: [String: Tensor]
  let epsilon: Float
  private(set) var nodes: [Onnx_NodeProto] = []
  private(set) var initializers: [Onnx_TensorProto] = []
  private var initialized: Set<String> = []
  private var usedNames: Set<String> = []

  init(tensors: [String: Tensor], epsilon: Float) {
    self.tensors = tensors
    self.epsilon = epsilon
  }

  // MARK: Values and nodes

  /// A fresh value name under `scope`.
  mutating func unique(_ scope: String, _ op: String) -> String {
    var name = "\(scope)/\(op)"
    var suffix = 1
    while usedNames.contains(name) {
      suffix += 1
      name = "\(scope)/\(op)_\(suffix)"
    }
    usedNames.insert(name)
    return name
  }

  /// Appends a node and returns its output names.
  @discardableResult
  mutating func node(
    _ op: String, _ inputs: [String], scope: String, outputs outputCount: Int = 1, attributes: [Onnx_AttributeProto] = []
  ) -> [String] {
    var proto = Onnx_NodeProto()
    proto.opType = op
    proto.name = unique(scope, op)
    proto.input = inputs
    proto.output = (0..<outputCount).map { outputCount == 1 ? proto.name : "\(proto.name):\($0)" }
    proto.attribute = attributes
    nodes.append(proto)
    return proto.output
  }

  mutating func single(_ op: String, _ inputs: [String], scope: String, attributes: [Onnx_AttributeProto] = []) -> String {
    node(op, inputs, scope: scope, attributes: attributes)[0]
  }

  /// Renames the graph's final value (the last node's output) so the graph output has a fixed name.
  mutating func rename(_ value: String, to name: String) {
    guard let index = nodes.lastIndex(where: { $0.output.contains(value) }) else { return }
    nodes[index].output = nodes[index].output.map { $0 == value ? name : $0 }
  }

  /// The checkpoint tensor `name` as an initializer (added once).
  mutating func weight(_ name: String) throws -> String {
    guard let tensor = tensors[name] else {
      throw DeploymentError.invalidInput(input: name, reason: "the model has no parameter of this name (exporter bug)")
    }
    if initialized.insert(name).inserted {
      initializers.append(Self.floatTensor(name, shape: tensor.shape, values: tensor.scalars))
    }
    return name
  }

  /// A constant float initializer (shared by name).
  mutating func constant(_ name: String, _ values: [Float], shape: [Int] = []) -> String {
    if initialized.insert(name).inserted {
      initializers.append(Self.floatTensor(name, shape: shape, values: values))
    }
    return name
  }

  /// A constant int64 initializer (shapes, split sizes).
  mutating func constant(_ name: String, int64 values: [Int64]) -> String {
    if initialized.insert(name).inserted {
      var proto = Onnx_TensorProto()
      proto.name = name
      proto.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
      proto.dims = [Int64(values.count)]
      proto.int64Data = values
      initializers.append(proto)
    }
    return name
  }

  static func floatTensor(_ name: String, shape: [Int], values: [Float]) -> Onnx_TensorProto {
    var proto = Onnx_TensorProto()
    proto.name = name
    proto.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
    proto.dims = shape.map(Int64.init)
    // raw_data is little-endian by the ONNX spec.
    var data = Data(capacity: 4 * values.count)
    for value in values {
      let bits = value.bitPattern.littleEndian
      withUnsafeBytes(of: bits) { data.append(contentsOf: $0) }
    }
    proto.rawData = data
    return proto
  }

  static func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
    var proto = Onnx_AttributeProto()
    proto.name = name
    proto.type = .ints
    proto.ints = values.map(Int64.init)
    return proto
  }

  static func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
    var proto = Onnx_AttributeProto()
    proto.name = name
    proto.type = .int
    proto.i = Int64(value)
    return proto
  }

  static func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
    var proto = Onnx_AttributeProto()
    proto.name = name
    proto.type = .float
    proto.f = value
    return proto
  }

  // MARK: Layers

  /// `Conv` with the module's PyTorch weight `[O, I/group, k, k]` and bias.
  mutating func conv(_ x: String, module: String, kernel: Int, stride: Int = 1, padding: Int = 0, group: Int = 1) throws
    -> String
  {
    let inputs = [x, try weight("\(module).weight"), try weight("\(module).bias")]
    return single(
      "Conv", inputs, scope: module,
      attributes: [
        Self.ints("kernel_shape", [kernel, kernel]), Self.ints("strides", [stride, stride]),
        Self.ints("pads", [padding, padding, padding, padding]), Self.ints("dilations", [1, 1]), Self.int("group", group),
      ])
  }

  mutating func toNHWC(_ x: String, scope: String) -> String {
    single("Transpose", [x], scope: scope, attributes: [Self.ints("perm", [0, 2, 3, 1])])
  }

  mutating func toNCHW(_ x: String, scope: String) -> String {
    single("Transpose", [x], scope: scope, attributes: [Self.ints("perm", [0, 3, 1, 2])])
  }

  /// `LayerNormalization` over the last axis (the engine's `LayerNorm` on NHWC).
  mutating func layerNorm(_ x: String, module: String) throws -> String {
    single(
      "LayerNormalization", [x, try weight("\(module).weight"), try weight("\(module).bias")], scope: module,
      attributes: [Self.int("axis", -1), Self.float("epsilon", epsilon)])
  }

  /// LayerNorm over the channels of an NCHW value (ConvNeXt's "channels_first" LayerNorm).
  mutating func channelNorm(_ x: String, module: String) throws -> String {
    let normalized = try layerNorm(toNHWC(x, scope: module), module: module)
    return toNCHW(normalized, scope: module)
  }

  /// `y = x Wᵀ + b` on the last axis; W stays the checkpoint's `[out, in]` initializer (a constant `Transpose`
  /// that runtimes fold at load time), so initializers equal the state dict.
  mutating func linear(_ x: String, module: String) throws -> String {
    let transposed = single("Transpose", [try weight("\(module).weight")], scope: module, attributes: [Self.ints("perm", [1, 0])])
    let product = single("MatMul", [x, transposed], scope: module)
    return single("Add", [product, try weight("\(module).bias")], scope: module)
  }

  /// GELU(x) = 0.5 · x · (1 + erf(x / √2)), exact (the engine's GELU).
  mutating func gelu(_ x: String, scope: String) -> String {
    let scaled = single("Div", [x, constant("const.sqrt2", [Float(2).squareRoot()])], scope: scope)
    let erf = single("Erf", [scaled], scope: scope)
    let shifted = single("Add", [erf, constant("const.one", [1])], scope: scope)
    let product = single("Mul", [x, shifted], scope: scope)
    return single("Mul", [product, constant("const.half", [0.5])], scope: scope)
  }

  /// `pwconv2(GELU(pwconv1(LN(x))))` · γ on an NHWC value.
  mutating func pointwiseMLP(_ x: String, norm: String, block: String, gamma: String) throws -> String {
    var y = try layerNorm(x, module: "\(block).\(norm)")
    y = try linear(y, module: "\(block).pwconv1")
    y = gelu(y, scope: "\(block).pwconv1")
    y = try linear(y, module: "\(block).pwconv2")
    return single("Mul", [y, try weight("\(block).\(gamma)")], scope: block)
  }

  /// γ `[C]` as `[C, 1, 1]`, to scale an NCHW value.
  mutating func channelScale(_ name: String, scope: String) throws -> String {
    single("Reshape", [try weight(name), constant("const.channel_shape", int64: [-1, 1, 1])], scope: scope)
  }

  // MARK: The network

  /// Emits the whole network on the NCHW input `input` and returns the logits value.
  mutating func emitNetwork(config: ModelConfig, input: String) throws -> String {
    var x = input
    for stage in 0..<config.depths.count {
      let downsample = "downsample_layers.\(stage)"
      if stage == 0 {
        x = try conv(
          x, module: "\(downsample).0", kernel: config.stemKernel, stride: config.stemPatchSize, padding: config.stemPadding)
        x = try channelNorm(x, module: "\(downsample).1")
      } else {
        x = try channelNorm(x, module: "\(downsample).0")
        x = try conv(x, module: "\(downsample).1", kernel: 2, stride: 2)
      }
      let channels = config.widths[stage]
      for index in 0..<config.depths[stage] {
        let block = "stages.\(stage).\(index)"
        switch config.mixers[stage] {
        case .quadratic(let kernel):
          x = try mixerBlock(x, block: block) { builder, normalized in
            try builder.quadraticMixer(normalized, module: "\(block).QuadraConv", channels: channels, kernel: kernel)
          }
        case .gnConv(let order, let scale):
          x = try mixerBlock(x, block: block) { builder, normalized in
            try builder.gnConv(normalized, module: "\(block).gnconv", channels: channels, order: order, scale: scale)
          }
        case .depthwise(let kernel):
          x = try convNeXtBlock(x, block: block, channels: channels, kernel: kernel)
        }
      }
    }
    let pooled = single(
      "ReduceMean", [x], scope: "pool", attributes: [GraphBuilder.ints("axes", [2, 3]), GraphBuilder.int("keepdims", 0)])
    let features = try layerNorm(pooled, module: "norm")
    return single(
      "Gemm", [features, try weight("head.weight"), try weight("head.bias")], scope: "head",
      attributes: [GraphBuilder.int("transB", 1)])
  }

  /// `x + γ₁ ⊙ mixer(LN₁(x))`, then `+ γ₂ ⊙ MLP(LN₂(·))` (QuadraBlock, HorNet block).
  mutating func mixerBlock(
    _ x: String, block: String, mixer: (inout GraphBuilder, String) throws -> String
  ) throws -> String {
    let normalized = try channelNorm(x, module: "\(block).norm1")
    let mixed = try mixer(&self, normalized)
    let scaled = single("Mul", [mixed, try channelScale("\(block).gamma1", scope: block)], scope: block)
    let first = single("Add", [x, scaled], scope: block)
    let mlp = try pointwiseMLP(toNHWC(first, scope: block), norm: "norm2", block: block, gamma: "gamma2")
    return single("Add", [first, toNCHW(mlp, scope: block)], scope: block)
  }

  /// `x + γ ⊙ MLP(LN(DWConv(x)))` (ConvNeXt block).
  mutating func convNeXtBlock(_ x: String, block: String, channels: Int, kernel: Int) throws -> String {
    let mixed = try conv(x, module: "\(block).dwconv", kernel: kernel, padding: kernel / 2, group: channels)
    let mlp = try pointwiseMLP(toNHWC(mixed, scope: block), norm: "norm", block: block, gamma: "gamma")
    return single("Add", [x, toNCHW(mlp, scope: block)], scope: block)
  }

  /// `(W_a∗x + b_a) ⊙ (W_b∗x + b_b) + (W_c∗x + b_c)` as three depthwise convolutions.
  mutating func quadraticMixer(_ x: String, module: String, channels: Int, kernel: Int) throws -> String {
    let maps = try (1...3).map { index in
      try conv(x, module: "\(module).conv\(index)", kernel: kernel, padding: kernel / 2, group: channels)
    }
    let product = single("Mul", [maps[0], maps[1]], scope: module)
    return single("Add", [product, maps[2]], scope: module)
  }

  /// HorNet's gⁿConv on NCHW (see ``GnConv``).
  mutating func gnConv(_ x: String, module: String, channels: Int, order: Int, scale: Float) throws -> String {
    let dims = (0..<order).map { channels >> $0 }.reversed() as [Int]
    let total = dims.reduce(0, +)
    let fused = try conv(x, module: "\(module).proj_in", kernel: 1)
    let parts = node(
      "Split", [fused, constant("\(module).const.split_in", int64: [Int64(dims[0]), Int64(total)])], scope: module,
      outputs: 2, attributes: [GraphBuilder.int("axis", 1)])
    let filtered = try conv(parts[1], module: "\(module).dwconv", kernel: 7, padding: 3, group: total)
    let scaled = single("Mul", [filtered, constant("\(module).const.scale", [scale])], scope: module)
    let gates =
      order == 1
      ? [scaled]
      : node(
        "Split", [scaled, constant("\(module).const.split_gates", int64: dims.map(Int64.init))], scope: module,
        outputs: order, attributes: [GraphBuilder.int("axis", 1)])
    var y = single("Mul", [parts[0], gates[0]], scope: module)
    for i in 0..<(order - 1) {
      let projected = try conv(y, module: "\(module).pws.\(i)", kernel: 1)
      y = single("Mul", [projected, gates[i + 1]], scope: module)
    }
    return try conv(y, module: "\(module).proj_out", kernel: 1)
  }
}
