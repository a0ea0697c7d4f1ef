import Foundation
import QuadraData
import QuadraDeploy
import QuadraModels
import QuadraTraining
import SwiftProtobuf
import Testing

@Suite("ONNX export")
struct ONNXExportTests {
  /// Writes the model with the exporter, reads the file back with the generated messages.
  func roundTrip(_ deployable: DeployableModel, resolution: Int? = nil) throws -> Onnx_ModelProto {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("model.onnx")
    try ONNXExporter.export(deployable, resolution: resolution, to: url)
    return try Onnx_ModelProto(serializedBytes: try Data(contentsOf: url))
  }

  /// Checks opset, inputs/outputs, initializers against the state dict, op types and metadata.
  func checkStructure(_ proto: Onnx_ModelProto, _ deployable: DeployableModel, resolution: Int?) throws {
    let config = deployable.config
    #expect(proto.irVersion == 8)
    #expect(proto.opsetImport.count == 1)
    #expect(proto.opsetImport.first?.domain == "")
    #expect(proto.opsetImport.first?.version == 17)

    let graph = proto.graph
    #expect(graph.input.map(\.name) == ["images"])
    #expect(graph.output.map(\.name) == ["logits"])
    let inputDims = graph.input[0].type.tensorType.shape.dim
    #expect(inputDims.count == 4)
    #expect(inputDims[0].dimParam == "batch")
    #expect(inputDims[1].dimValue == Int64(config.inputChannels))
    if let resolution {
      #expect(inputDims[2].dimValue == Int64(resolution) && inputDims[3].dimValue == Int64(resolution))
    } else {
      #expect(inputDims[2].dimParam == "height" && inputDims[3].dimParam == "width")
    }
    let outputDims = graph.output[0].type.tensorType.shape.dim
    #expect(outputDims.count == 2 && outputDims[0].dimParam == "batch" && outputDims[1].dimValue == Int64(config.classCount))
    #expect(graph.input[0].type.tensorType.elemType == Int32(Onnx_TensorProto.DataType.float.rawValue))

    // Every state-dict tensor is an initializer of the same name, shape and values; the rest are named constants.
    let stateDict = WeightsCheckpoint.torchStateDict(of: deployable.model)
    let initializers = Dictionary(uniqueKeysWithValues: graph.initializer.map { ($0.name, $0) })
    #expect(initializers.count == graph.initializer.count, "initializer names must be unique")
    for (name, tensor) in stateDict {
      guard let initializer = initializers[name] else {
        Issue.record("\(config.name): no initializer \(name)")
        continue
      }
      #expect(initializer.dims.map(Int.init) == tensor.shape, "\(name)")
      #expect(initializer.rawData.count == 4 * tensor.count, "\(name)")
      let first = initializer.rawData.prefix(4).withUnsafeBytes { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
      #expect(first == tensor.scalars[0], "\(name): first value")
    }
    for name in initializers.keys where stateDict[name] == nil {
      #expect(name.hasPrefix("const.") || name.contains(".const."), "unexpected initializer \(name)")
    }

    let opTypes = Set(graph.node.map(\.opType))
    #expect(opTypes.isSubset(of: ONNXExporter.emittedOperators), "ops \(opTypes.subtracting(ONNXExporter.emittedOperators))")
    #expect(graph.node.allSatisfy { $0.domain.isEmpty })
    // Every node input is produced before it is used (the graph is topologically sorted).
    var available = Set(initializers.keys).union(["images"])
    for node in graph.node {
      for input in node.input { #expect(available.contains(input), "\(node.name) reads \(input) before it exists") }
      available.formUnion(node.output)
    }
    #expect(available.contains("logits"))
    // Depthwise convolutions are Conv with group = C.
    for node in graph.node where node.opType == "Conv" && node.input[1].hasSuffix("dwconv.weight") {
      let group = node.attribute.first { $0.name == "group" }?.i ?? 1
      #expect(group == Int64(stateDict[node.input[1]]!.shape[0]))
    }

    let metadata = Dictionary(uniqueKeysWithValues: proto.metadataProps.map { ($0.key, $0.value) })
    #expect(metadata["model"] == config.name)
    let savedConfig = try JSONDecoder().decode(ModelConfig.self, from: Data(metadata["config"]!.utf8))
    #expect(savedConfig == config)
    let normalization = try JSONDecoder().decode(Normalization.self, from: Data(metadata["normalization"]!.utf8))
    #expect(normalization == TestModels.normalization)
    let classNames = try JSONDecoder().decode([String].self, from: Data(metadata["class_names"]!.utf8))
    #expect(classNames.count == config.classCount)
    #expect(metadata["input_layout"] == "NCHW")
  }

  @Test("every family and the hybrid round-trip: opset, inputs, initializers, ops, metadata", arguments: TestModels.all)
  func structure(config: ModelConfig) throws {
    let deployable = try TestModels.deployable(config)
    try checkStructure(try roundTrip(deployable), deployable, resolution: nil)
    try checkStructure(try roundTrip(deployable, resolution: 12), deployable, resolution: 12)
  }

  @Test("the exported graph computes the engine's logits (reference interpreter)", arguments: TestModels.all)
  func numericalAgreement(config: ModelConfig) throws {
    let deployable = try TestModels.deployable(config)
    let proto = try roundTrip(deployable)
    // Two images of a size that is not a power of two, so odd spatial sizes and padding are exercised.
    let (count, size) = (2, 10)
    let raw = TestModels.rawImages(count: count, size: size)
    let input = try ImageInput(
      source: "memory", shape: [count, size, size], values: raw, model: deployable, layout: .auto)
    let engine = try Predictor(deployable).logits(input)
    let normalized = raw.map { TestModels.normalization.normalize(raw: $0) }
    let onnx = try ONNXInterpreter(model: proto).run(NDArray(shape: [count, 1, size, size], data: normalized))
    #expect(onnx.shape == engine.shape)
    let scale = engine.scalars.map(abs).max()!
    let difference = zip(onnx.data, engine.scalars).map { abs($0 - $1) }.max()!
    #expect(difference <= 1e-4 * scale, "\(config.name): max |Δ| \(difference), max |logit| \(scale)")
    #expect(engine.argmaxAlongLastAxis() == NDArray(shape: onnx.shape, data: onnx.data).argmaxRows)
  }

  @Test("registered models export, small and ImageNet-size (HorNet-T: gnConv orders 2-5)")
  func registeredModels() throws {
    for name in ["quadranet-digits", "quadranet-28", "hornet-28", "convnext-28", "hornet-t"] {
      let config = try ModelRegistry.config(named: name)
      let model = try VisionModel(config: config)
      let checkpoint = WeightsCheckpoint(model: model, dataset: "fashion-mnist", normalization: TestModels.normalization)
      let deployable = try DeployableModel(checkpoint: checkpoint)
      let proto = try ONNXExporter.makeModel(deployable)
      let stateDict = WeightsCheckpoint.torchStateDict(of: model)
      let names = Set(proto.graph.initializer.map(\.name))
      #expect(Set(stateDict.keys).isSubset(of: names), "\(name)")
      #expect(Set(proto.graph.node.map(\.opType)).isSubset(of: ONNXExporter.emittedOperators))
      let classNames = proto.metadataProps.first { $0.key == "class_names" }!.value
      if config.classCount == 10 {
        #expect(classNames.contains("Ankle boot"), "Fashion-MNIST checkpoints carry class names")
      }
    }
  }

  @Test("a resolution below the model's minimum or above the limit is refused, naming the flag and range")
  func resolutionRange() throws {
    let deployable = try TestModels.deployable(TestModels.quadratic)
    let small = errorMessage { _ = try ONNXExporter.makeModel(deployable, resolution: 3) }
    #expect(small?.contains("--resolution") == true && small?.contains("4...8192") == true)
    let large = errorMessage { _ = try ONNXExporter.makeModel(deployable, resolution: 9000) }
    #expect(large?.contains("--resolution") == true)
  }
}

extension NDArray {
  /// The index of each row's largest value (first on ties), as `argmaxAlongLastAxis`.
  var argmaxRows: [Int] {
    let width = shape.last!
    return stride(from: 0, to: count, by: width).map { start in
      var best = start
      for i in start..<start + width where data[i] > data[best] { best = i }
      return best - start
    }
  }
}
