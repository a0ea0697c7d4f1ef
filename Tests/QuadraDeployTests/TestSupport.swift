import Foundation
import QuadraData
import QuadraDeploy
import QuadraModels
import QuadraTraining

/// Small configs of every family for 8×8 single-channel images (the digits), plus a hybrid with one mixer
/// family per stage and an overlapping stem.
enum TestModels {
  static func config(_ name: String, mixers: [TokenMixer], widths: [Int], stemKernelSize: Int? = nil) -> ModelConfig {
    ModelConfig(
      name: name, inputChannels: 1, classCount: 10, stemPatchSize: 2, stemKernelSize: stemKernelSize,
      depths: [Int](repeating: 1, count: widths.count), widths: widths, mixers: mixers, mlpRatio: 2,
      layerScaleInit: 0.5, dropPathRate: 0.1, weightInitialization: .fanInScaled(gain: 1))
  }

  static let quadratic = config("quadratic-test", mixers: [.quadratic(kernelSize: 3), .quadratic(kernelSize: 3)], widths: [8, 16])
  static let hornet = config(
    "hornet-test", mixers: [.gnConv(order: 2, scale: 1.0 / 3.0), .gnConv(order: 3, scale: 1.0 / 3.0)], widths: [8, 16])
  static let convnext = config("convnext-test", mixers: [.depthwise(kernelSize: 3), .depthwise(kernelSize: 5)], widths: [8, 16])
  static let hybrid = config(
    "hybrid-test", mixers: [.quadratic(kernelSize: 3), .gnConv(order: 2, scale: 0.5), .depthwise(kernelSize: 3)],
    widths: [8, 16, 32], stemKernelSize: 4)

  static let all = [quadratic, hornet, convnext, hybrid]

  /// A normalization unlike any dataset's, so tests notice when another one is used.
  static let normalization = Normalization(maxValue: 16, mean: 0.3, std: 0.4)

  /// A model whose every parameter (norms, biases and layer scales included) is random, so a
  /// parameter mapped to the wrong place changes the output.
  static func deployable(_ config: ModelConfig, seed: UInt64 = 1, dataset: String = "digits") throws -> DeployableModel {
    let model = try VisionModel(config: config, seed: seed)
    var generator = RandomGenerator(seed: seed &+ 99)
    for (_, parameter) in model.namedParameters() {
      let value = parameter.variable.value
      let noise = Tensor.truncatedNormal(shape: value.shape, std: 0.3, using: &generator)
      parameter.variable.update(Tensor(shape: value.shape, scalars: zip(value.scalars, noise.scalars).map { $0 + $1 }))
    }
    let checkpoint = WeightsCheckpoint(model: model, dataset: dataset, normalization: normalization, epoch: 1, globalStep: 10)
    return try DeployableModel(checkpoint: checkpoint)
  }

  /// Raw digit-like pixel values in 0...16, `[count, size, size]`.
  static func rawImages(count: Int, size: Int = 8, seed: UInt64 = 7) -> [Float] {
    var generator = RandomGenerator(seed: seed)
    return (0..<(count * size * size)).map { _ in Float(generator.next() % 17) }
  }
}

/// A fresh temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("quadradeploy-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// The message of the error `body` throws, or nil when it does not throw.
func errorMessage(_ body: () throws -> Void) -> String? {
  do {
    try body()
    return nil
  } catch {
    return "\(error)"
  }
}
