import Testing

@testable import QuadraModels

/// Whole models run unchanged on another backend: selecting the reference backend for a
/// forward and backward pass of each family gives the CPU backend's loss and gradients.
/// (Layers, autograd and models only call tensor ops, which dispatch through `Backends.current`.)
@Suite struct BackendModelTests {
  @Test(arguments: ["quadranet", "hornet", "convnext"])
  func referenceBackendReproducesTheCPUBackend(family: String) throws {
    let config = ModelConfig(
      name: "backend-\(family)", inputChannels: 2, classCount: 4, stemPatchSize: 2, depths: [1, 1], widths: [8, 16],
      mixers: tinyMixers(family: family), layerScaleInit: 0.7)
    var generator = RandomGenerator(seed: 31)
    let images = Tensor.normal(shape: [3, 8, 8, 2], using: &generator)
    let labels = [0, 3, 1]

    /// The loss and every parameter's gradient, from a fresh model with the same seed.
    func lossAndGradients() throws -> (loss: Float, gradients: [String: Tensor]) {
      let model = try VisionModel(config: config, seed: 32)
      model.setTraining(false)
      let loss = model(Variable(images)).softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1)
      try loss.backward()
      var gradients: [String: Tensor] = [:]
      for (name, parameter) in model.namedParameters() { gradients[name] = parameter.variable.grad }
      return (loss.value.scalar, gradients)
    }

    let cpu = try Backends.withCurrent(CPUBackend()) { try lossAndGradients() }
    let reference = try Backends.withCurrent(ReferenceBackend()) { try lossAndGradients() }
    #expect(abs(cpu.loss - reference.loss) <= 1e-5 * (1 + abs(reference.loss)))
    #expect(cpu.gradients.keys.sorted() == reference.gradients.keys.sorted())
    #expect(!cpu.gradients.isEmpty)
    // Independent implementations (Double sums vs SIMD Float sums) differ in the last bits
    // somewhere; identical results would mean the reference backend was never selected.
    #expect(cpu.gradients.contains { name, value in value.scalars != reference.gradients[name]?.scalars })
    for (name, expected) in reference.gradients {
      let actual = try #require(cpu.gradients[name])
      let scale = max(expected.maxAbs(), 1e-3)
      let difference = (actual - expected).maxAbs()
      #expect(difference <= 1e-4 * scale, "\(family) \(name): max difference \(difference), gradient scale \(scale)")
    }
  }
}
