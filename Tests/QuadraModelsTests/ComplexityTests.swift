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
}
