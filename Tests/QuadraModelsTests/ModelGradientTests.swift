import Testing

@testable import QuadraModels

/// End-to-end gradient check of whole models: the analytic gradient of the loss with respect to
/// a sample of parameters (every tensor) and input pixels against central finite differences.
/// The per-op checks live in QuadraAutogradTests; this one catches wiring mistakes between ops.
@Suite struct ModelGradientTests {
  @Test(arguments: ["quadranet", "hornet", "convnext"])
  func lossGradientMatchesFiniteDifferences(family: String) throws {
    let mixers = tinyMixers(family: family)
    let config = ModelConfig(
      name: "grad-\(family)", inputChannels: 2, classCount: 4, stemPatchSize: 2, depths: [1, 1], widths: [8, 16],
      mixers: mixers, layerScaleInit: 0.7)
    let model = try VisionModel(config: config, seed: 21)
    // Larger random weights than the 0.02 init, so every branch contributes measurably.
    var generator = RandomGenerator(seed: 22)
    for (_, parameter) in model.namedParameters() {
      let shape = parameter.variable.shape
      parameter.variable.update(parameter.variable.value + Tensor.normal(shape: shape, std: 0.2, using: &generator))
    }
    model.setTraining(false)
    let images = Tensor.normal(shape: [2, 8, 8, 2], using: &generator)
    let labels = [1, 3]
    let input = Variable(images, requiresGrad: true)
    try model(input).softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1).backward()

    func lossWith(_ images: Tensor) -> Double {
      Double(
        GradientMode.withoutRecording {
          model(Variable(images)).softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1).value.scalar
        })
    }
    let epsilon: Float = 1e-2
    func check(_ numeric: Double, _ analytic: Float, _ what: String) {
      let scale = max(abs(numeric), Double(abs(analytic)), 1e-3)
      #expect(abs(numeric - Double(analytic)) <= 3e-2 * scale, "\(what): analytic \(analytic), numeric \(numeric)")
    }
    for (name, parameter) in model.namedParameters() {
      let variable = parameter.variable
      let gradient = try #require(variable.grad, "\(name) has no gradient")
      let index = (name.utf8.reduce(7) { ($0 &* 31 &+ Int($1)) & 0xFFFF }) % variable.value.count
      let original = variable.value
      var plus = original
      plus.withUnsafeMutableBufferPointer { $0[index] += epsilon }
      variable.update(plus)
      let lossPlus = lossWith(images)
      var minus = original
      minus.withUnsafeMutableBufferPointer { $0[index] -= epsilon }
      variable.update(minus)
      let lossMinus = lossWith(images)
      variable.update(original)
      check((lossPlus - lossMinus) / Double(2 * epsilon), gradient.scalars[index], "\(name)[\(index)]")
    }
    let inputGradient = try #require(input.grad)
    for index in stride(from: 0, to: images.count, by: 37) {
      var plus = images
      plus.withUnsafeMutableBufferPointer { $0[index] += epsilon }
      var minus = images
      minus.withUnsafeMutableBufferPointer { $0[index] -= epsilon }
      check((lossWith(plus) - lossWith(minus)) / Double(2 * epsilon), inputGradient.scalars[index], "input[\(index)]")
    }
  }
}

/// Two-stage token mixers of a tiny model of `family` (3×3 kernels; gⁿConv orders 2 and 3).
func tinyMixers(family: String) -> [TokenMixer] {
  switch family {
  case "quadranet": [.quadratic(kernelSize: 3), .quadratic(kernelSize: 3)]
  case "hornet": [.gnConv(order: 2, scale: 1.0 / 3.0), .gnConv(order: 3, scale: 1.0 / 3.0)]
  default: [.depthwise(kernelSize: 3), .depthwise(kernelSize: 3)]
  }
}
