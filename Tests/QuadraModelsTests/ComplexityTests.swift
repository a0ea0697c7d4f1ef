import Testing

@testable import QuadraModels

/// Params and MACs at 224², 1000 classes, against the official PyTorch definitions
/// (hornet.py, convnext.py, the authors' QuadraNet.py; MACs as fvcore counts convs and linears).
@Suite struct ComplexityTests {
  @Test(arguments: [
    ("hornet-t", 22.41e6, 3.97e9), ("convnext-t", 28.59e6, 4.46e9), ("quadranet-t", 23.60e6, 4.13e9),
  ])
  func matchesOfficialDefinitions(name: String, params: Double, macs: Double) throws {
    let config = try ModelRegistry.config(named: name)
    #expect(abs(Double(config.parameterCount) / params - 1) < 0.005, "\(name) params \(config.parameterCount)")
    #expect(abs(Double(config.macs(resolution: 224)) / macs - 1) < 0.005, "\(name) MACs \(config.macs(resolution: 224))")
  }

  @Test func quadraNetT18HasFewerMACsThanHorNetT() throws {
    let quadra = try ModelRegistry.config(named: "quadranet-t18").macs(resolution: 224)
    let hornet = try ModelRegistry.config(named: "hornet-t").macs(resolution: 224)
    #expect(Double(quadra) < 0.75 * Double(hornet))
  }

  @Test(arguments: ModelRegistry.names)
  func countedParametersEqualInstantiatedModel(name: String) throws {
    // Small class count keeps instantiation cheap; the count must still agree exactly.
    var config = try ModelRegistry.config(named: name, classCount: 7)
    if config.widths[0] > 64 { config.widths = config.widths.map { $0 / 4 } }
    let model = try VisionModel(config: config)
    #expect(model.parameterCount == config.parameterCount)
  }

  @Test func invalidConfigsAreRejectedWithAMessage() {
    var config = ModelConfig(name: "bad", depths: [1, 1], widths: [8], mixers: [.quadratic(kernelSize: 7)])
    #expect(throws: ModelConfigError.self) { try config.validate() }
    config = ModelConfig(name: "bad", depths: [1], widths: [8], mixers: [.quadratic(kernelSize: 4)])
    #expect(throws: ModelConfigError.self) { try config.validate() }
    #expect(throws: ModelConfigError.self) { try ModelRegistry.config(named: "no-such-model") }
  }

  @Test(arguments: [(2, 2, 0), (3, 2, 1), (4, 2, 1), (4, 4, 0), (7, 4, 2)])
  func overlappingStemKeepsThePatchifyOutputSize(kernel: Int, stride: Int, padding: Int) throws {
    let config = ModelConfig(
      name: "stem-test", inputChannels: 1, classCount: 5, stemPatchSize: stride, stemKernelSize: kernel,
      depths: [1, 1], widths: [8, 16], mixers: [.quadratic(kernelSize: 3), .depthwise(kernelSize: 3)], mlpRatio: 2)
    try config.validate()
    #expect(config.stemPadding == padding)
    #expect(config.stageResolutions(inputResolution: 28) == [28 / stride, 28 / stride / 2])
    let model = try VisionModel(config: config, seed: 2)
    #expect(model.parameterCount == config.parameterCount)
    let stem = try #require(model.namedParameters().first { $0.name == "downsample_layers.0.0.weight" })
    #expect(stem.parameter.variable.shape == [8, kernel, kernel, 1])
    // The stem's output has the patchify stem's size: run it on a batch and check the logits' shape.
    let images = Variable(Tensor(shape: [2, 28, 28, 1], scalars: (0..<(2 * 28 * 28)).map { Float($0 % 17) / 17 }))
    #expect(model(images).shape == [2, 5])
    #expect(model.downsampleLayers[0](images).shape == [2, 28 / stride, 28 / stride, 8])
  }

  @Test func stemKernelSmallerThanItsStrideIsRejected() {
    let config = ModelConfig(
      name: "bad-stem", stemPatchSize: 4, stemKernelSize: 3, depths: [1], widths: [8], mixers: [.quadratic(kernelSize: 3)])
    #expect(throws: ModelConfigError.self) { try config.validate() }
  }
}
