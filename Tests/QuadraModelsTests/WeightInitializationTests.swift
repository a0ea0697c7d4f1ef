import Foundation
import Testing

@testable import QuadraModels

@Suite struct WeightInitializationTests {
  /// Sample standard deviation and largest magnitude of a weight.
  private func statistics(_ variable: Variable) -> (std: Double, maxAbs: Float) {
    let values = variable.value.scalars
    let mean = values.reduce(0.0) { $0 + Double($1) } / Double(values.count)
    let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(values.count)
    return (variance.squareRoot(), values.map(abs).max() ?? 0)
  }

  @Test func fanInScaledDrawsEachWeightWithGainOverRootFanIn() throws {
    let config = ModelConfig(
      name: "init-test", inputChannels: 3, classCount: 10, stemPatchSize: 2, depths: [1, 1], widths: [64, 128],
      mixers: [.quadratic(kernelSize: 7), .quadratic(kernelSize: 5)], mlpRatio: 2, layerScaleInit: 0.5,
      weightInitialization: .fanInScaled(gain: 1))
    let model = try VisionModel(config: config, seed: 3)
    // Fan-in per weight, from the PyTorch shapes: [out, in] → in, [O, I, k, k] → I·k², [C, 1, k, k] → k².
    let expectedFanIn: [String: Int] = [
      "downsample_layers.0.0.weight": 3 * 2 * 2, "downsample_layers.1.1.weight": 64 * 2 * 2,
      "stages.0.0.QuadraConv.conv1.weight": 49, "stages.1.0.QuadraConv.conv2.weight": 25,
      "stages.0.0.pwconv1.weight": 64, "stages.0.0.pwconv2.weight": 128, "head.weight": 128,
    ]
    let parameters = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.parameter) })
    for (name, fanIn) in expectedFanIn {
      let parameter = try #require(parameters[name], "missing \(name)")
      #expect(parameter.fanIn == fanIn, "\(name)")
      let expected = 1 / Double(fanIn).squareRoot()
      let (std, maxAbs) = statistics(parameter.variable)
      // A normal truncated at ±2σ has standard deviation 0.88σ.
      #expect(abs(std / (0.88 * expected) - 1) < 0.12, "\(name): std \(std), expected ≈ \(0.88 * expected)")
      #expect(Double(maxAbs) <= 2 * expected * 1.0001, "\(name): |w| up to \(maxAbs) beyond 2σ")
    }
    // Only weights are redrawn: biases stay zero, norms one, layer scales at their init.
    #expect(parameters["stages.0.0.QuadraConv.conv1.bias"]!.variable.value.scalars.allSatisfy { $0 == 0 })
    #expect(parameters["stages.0.0.norm1.weight"]!.variable.value.scalars.allSatisfy { $0 == 1 })
    #expect(parameters["stages.1.0.gamma1"]!.variable.value.scalars.allSatisfy { $0 == 0.5 })
  }

  @Test func defaultKeepsTimmInitialization() throws {
    let config = ModelConfig(
      name: "init-test", inputChannels: 1, classCount: 10, stemPatchSize: 2, depths: [1], widths: [96],
      mixers: [.quadratic(kernelSize: 7)])
    let model = try VisionModel(config: config, seed: 1)
    let weight = model.namedParameters().first { $0.name == "stages.0.0.pwconv1.weight" }!.parameter.variable
    let (std, maxAbs) = statistics(weight)
    #expect(abs(std / 0.02 - 1) < 0.05, "std \(std)")
    #expect(maxAbs < 0.1)
  }

  @Test func configsWithoutTheFieldDecodeAsTimm() throws {
    var config = try ModelRegistry.config(named: "quadranet-digits")
    config.weightInitialization = .fanInScaled(gain: 1)
    let encoded = try JSONEncoder().encode(config)
    #expect(try JSONDecoder().decode(ModelConfig.self, from: encoded) == config)

    var object = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any])
    object.removeValue(forKey: "weightInitialization")
    let legacy = try JSONDecoder().decode(ModelConfig.self, from: JSONSerialization.data(withJSONObject: object))
    #expect(legacy.weightInitialization == .timm)
  }
}
